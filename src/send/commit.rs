//! Group commit: the ledger steps of all connections that are waiting at the same moment
//! go into one transaction.
//!
//! Each connection still waits for its own claim to be committed before it starts the SMTP
//! transaction, so the order that makes a resend impossible is unchanged; only the number
//! of commits (each a handful of syscalls and WAL page writes) shrinks.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::state::RecipientHash;
use crate::state::ledger::{Delivered, Ledger};

/// One connection's step: record its last delivery (if any) and claim its next recipient.
struct Step {
    done: Option<Delivered>,
    next: RecipientHash,
    reply: oneshot::Sender<std::result::Result<bool, String>>,
}

#[derive(Default)]
pub(super) struct Committer {
    queue: Mutex<Vec<Step>>,
    /// Held by whoever is committing; the others' steps queue up behind it.
    gate: tokio::sync::Mutex<()>,
}

impl Committer {
    /// Commits `done` as sent and claims `next`, together with whatever other connections
    /// have queued meanwhile. `Ok(false)`: not claimed (suppressed, or not pending).
    pub(super) async fn step(
        &self,
        ledger: &Mutex<Ledger>,
        campaign: &str,
        done: Option<Delivered>,
        next: RecipientHash,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (reply, mut answer) = oneshot::channel();
        lock(&self.queue).push(Step { done, next, reply });
        loop {
            let _gate = self.gate.lock().await;
            // Whoever held the gate before may have committed this step with theirs; the
            // answer is sent before the gate is released, so it is here by now.
            if let Ok(r) = answer.try_recv() {
                return r.map_err(Error::Other);
            }
            let steps = std::mem::take(&mut *lock(&self.queue));
            if steps.is_empty() {
                continue;
            }
            let done: Vec<Delivered> = steps.iter().filter_map(|s| s.done.clone()).collect();
            let next: Vec<RecipientHash> = steps.iter().map(|s| s.next).collect();
            let result = lock(ledger).settle_and_claim(campaign, &done, &next, now);
            for s in steps {
                let r = match &result {
                    Ok(claimed) => Ok(claimed.contains(&s.next)),
                    Err(e) => Err(e.to_string()),
                };
                // A receiver only goes away with its connection's task, which is waiting.
                let _ = s.reply.send(r);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
