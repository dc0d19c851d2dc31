//! Storage limitation (GDPR Art. 5(1)(e)): `tact purge --older-than DAYS` deletes
//! per-recipient delivery rows and audit detail older than that, keeping what the promises
//! need: suppression hashes (an unsubscribe is forever), the completion mark of each
//! campaign (so a purged campaign still never sends again), and a sealed checkpoint from
//! which the rest of the audit chain still verifies.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{OptionalExtension, params};

use super::Keys;
use super::ledger::Ledger;
use crate::error::{Error, Result};

pub(super) const CHECKPOINT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq  INTEGER NOT NULL,
    prev      BLOB    NOT NULL,
    at        INTEGER NOT NULL,
    mac       BLOB    NOT NULL
);";

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    pub deliveries: usize,
    pub audit_events: usize,
    /// Campaigns not complete yet: their rows are what stops a resend, so they stay.
    pub kept_incomplete: usize,
}

/// The checkpoint a purge leaves: the chain resumes at `next_seq`, after `prev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub next_seq: i64,
    pub prev: Vec<u8>,
}

pub(super) fn checkpoint_mac(keys: &Keys, next_seq: i64, prev: &[u8], at: i64) -> [u8; 32] {
    let mut data = b"tact audit checkpoint".to_vec();
    data.extend_from_slice(&next_seq.to_be_bytes());
    data.extend_from_slice(prev);
    data.extend_from_slice(&at.to_be_bytes());
    keys.audit_mac(&data)
}

impl Ledger {
    /// The sealed checkpoint, if a purge left one; `Err` if its seal is wrong.
    pub fn audit_checkpoint(
        &self,
        keys: &Keys,
    ) -> Result<Option<std::result::Result<Checkpoint, ()>>> {
        let row: Option<(i64, Vec<u8>, i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT next_seq, prev, at, mac FROM audit_checkpoint WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(self.err())?;
        Ok(row.map(|(next_seq, prev, at, mac)| {
            if checkpoint_mac(keys, next_seq, &prev, at)[..] == mac[..] {
                Ok(Checkpoint { next_seq, prev })
            } else {
                Err(())
            }
        }))
    }

    pub fn purge(
        &mut self,
        keys: &Keys,
        older_than_days: u32,
        now: DateTime<Utc>,
    ) -> Result<Purged> {
        let cutoff = (now - TimeDelta::days(i64::from(older_than_days))).timestamp();
        let path = self.path.clone();
        let e = |err: rusqlite::Error| Error::State {
            path: path.clone(),
            message: format!("purge: {err}"),
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        let kept_incomplete: usize = tx
            .query_row(
                "SELECT COUNT(*) FROM deliveries d JOIN campaigns c ON c.name = d.campaign
                 WHERE c.completed_at IS NULL AND d.updated_at < ?1",
                [cutoff],
                |r| r.get::<_, i64>(0),
            )
            .map_err(&e)? as usize;
        let deliveries = tx
            .execute(
                "DELETE FROM deliveries WHERE updated_at < ?1
                 AND campaign IN (SELECT name FROM campaigns WHERE completed_at IS NOT NULL)",
                [cutoff],
            )
            .map_err(&e)?;
        // The last event to go becomes the checkpoint the remaining chain hangs from.
        let last_gone: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT seq, mac FROM audit WHERE at < ?1 ORDER BY seq DESC LIMIT 1",
                [cutoff],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&e)?;
        let mut audit_events = 0;
        if let Some((seq, mac)) = last_gone {
            audit_events = tx
                .execute("DELETE FROM audit WHERE seq <= ?1", [seq])
                .map_err(&e)?;
            let at = now.timestamp();
            let seal = checkpoint_mac(keys, seq + 1, &mac, at);
            tx.execute(
                "INSERT OR REPLACE INTO audit_checkpoint (id, next_seq, prev, at, mac) VALUES (1, ?1, ?2, ?3, ?4)",
                params![seq + 1, mac, at, &seal[..]],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        let purged = Purged {
            deliveries,
            audit_events,
            kept_incomplete,
        };
        let body = serde_json::json!({ "older_than_days": older_than_days, "purged": purged });
        self.audit_append(keys, "-", "purge", &body, now)?;
        Ok(purged)
    }
}
