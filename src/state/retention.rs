//! Storage limitation (GDPR Art. 5(1)(e)): `tact purge --older-than DAYS` deletes
//! per-recipient delivery rows and audit detail older than that, keeping what the promises
//! need: suppression hashes (an unsubscribe is forever), the completion mark of each
//! campaign (so a purged campaign still never sends again), and a sealed checkpoint from
//! which the rest of the audit chain still verifies.

use chrono::{DateTime, TimeDelta, Utc};

use super::Keys;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    pub deliveries: usize,
    /// Bounce events (the soft-bounce window and the per-campaign figures).
    pub bounces: usize,
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

/// The moment before which per-recipient detail goes.
pub(super) fn cutoff(older_than_days: u32, now: DateTime<Utc>) -> i64 {
    (now - TimeDelta::days(i64::from(older_than_days))).timestamp()
}

/// A stored checkpoint row (next_seq, prev, at, mac), checked against its seal.
pub(super) fn open_checkpoint(
    keys: &Keys,
    row: Option<(i64, Vec<u8>, i64, Vec<u8>)>,
) -> Option<std::result::Result<Checkpoint, ()>> {
    row.map(|(next_seq, prev, at, mac)| {
        if checkpoint_mac(keys, next_seq, &prev, at)[..] == mac[..] {
            Ok(Checkpoint { next_seq, prev })
        } else {
            Err(())
        }
    })
}

/// The audit event a purge appends after it commits.
pub(super) fn purge_event(older_than_days: u32, purged: &Purged) -> serde_json::Value {
    serde_json::json!({ "older_than_days": older_than_days, "purged": purged })
}
