//! The audit log: who sent what, when, on which verdict and acknowledgements, with which
//! fields. Events are hash-chained with a MAC under a key derived from the master key, so
//! editing or deleting one breaks the chain at that event, and nobody without the key can
//! re-seal a forged log.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Keys;
use super::retention::Checkpoint;
use crate::error::Result;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub campaign: String,
    pub kind: String,
    pub operator: String,
    pub body: serde_json::Value,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: i64,
    pub why: &'static str,
}

/// `parts`: campaign, kind, operator, body.
fn seal(keys: &Keys, prev: &[u8], seq: i64, at: i64, parts: [&str; 4]) -> [u8; 32] {
    let body = parts[3];
    // Length-prefixed fields, so no two different events serialise alike.
    let mut data = Vec::with_capacity(64 + body.len());
    data.extend_from_slice(prev);
    data.extend_from_slice(&seq.to_be_bytes());
    data.extend_from_slice(&at.to_be_bytes());
    for part in parts {
        data.extend_from_slice(&(part.len() as u64).to_be_bytes());
        data.extend_from_slice(part.as_bytes());
    }
    keys.audit_mac(&data)
}

/// The operator as the OS names them; never an address.
pub fn operator() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// One stored event as a store reads it back, for the chain walk.
pub(super) struct Stored {
    pub seq: i64,
    pub at: i64,
    pub campaign: String,
    pub kind: String,
    pub operator: String,
    pub body: String,
    pub prev: Vec<u8>,
    pub mac: Vec<u8>,
}

/// What a store writes for a new event: where it goes in the chain, and its seal.
pub(super) struct Link {
    pub seq: i64,
    pub at: i64,
    pub operator: String,
    pub body: String,
    pub prev: Vec<u8>,
    pub mac: [u8; 32],
}

/// Seals the next event. `last` is the newest event's (seq, mac); with none left (all
/// purged) the chain continues from the purge's checkpoint, else from the start. The store
/// must hold its append lock from reading `last` until the event is committed.
pub(super) fn link(
    keys: &Keys,
    last: Option<(i64, Vec<u8>)>,
    checkpoint: Option<(i64, Vec<u8>)>,
    campaign: &str,
    kind: &str,
    body: &serde_json::Value,
    now: DateTime<Utc>,
) -> Link {
    let (seq, prev) = match last {
        Some((s, mac)) => (s + 1, mac),
        None => checkpoint.unwrap_or((1, vec![0u8; 32])),
    };
    let at = now.timestamp();
    let body = body.to_string();
    let operator = operator();
    let mac = seal(keys, &prev, seq, at, [campaign, kind, &operator, &body]);
    Link {
        seq,
        at,
        operator,
        body,
        prev,
        mac,
    }
}

pub(super) fn event(
    seq: i64,
    at: i64,
    campaign: String,
    kind: String,
    operator: String,
    body: &str,
) -> Event {
    Event {
        seq,
        at: DateTime::from_timestamp(at, 0).unwrap_or_default(),
        campaign,
        kind,
        operator,
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    }
}

/// Walks the chain in `seq` order from the checkpoint (or from event 1); the first event
/// that does not fit is named.
pub(super) fn verify(
    keys: &Keys,
    checkpoint: Option<std::result::Result<Checkpoint, ()>>,
    rows: impl IntoIterator<Item = Result<Stored>>,
) -> Result<std::result::Result<usize, Broken>> {
    // After a purge the chain starts at the sealed checkpoint instead of at event 1.
    let (mut expected_prev, start) = match checkpoint {
        None => (vec![0u8; 32], 1),
        Some(Ok(c)) => (c.prev, c.next_seq),
        Some(Err(())) => {
            return Ok(Err(Broken {
                seq: 0,
                why: "checkpoint was edited after a purge",
            }));
        }
    };
    let mut expected_seq = start;
    let mut n = 0;
    for r in rows {
        let r = r?;
        if r.seq != expected_seq {
            return Ok(Err(Broken {
                seq: expected_seq,
                why: "event is missing (deleted)",
            }));
        }
        if r.prev != expected_prev {
            return Ok(Err(Broken {
                seq: r.seq,
                why: "does not follow the event before it",
            }));
        }
        let want = seal(
            keys,
            &r.prev,
            r.seq,
            r.at,
            [&r.campaign, &r.kind, &r.operator, &r.body],
        );
        if want[..] != r.mac[..] {
            return Ok(Err(Broken {
                seq: r.seq,
                why: "was edited after it was written",
            }));
        }
        expected_prev = r.mac;
        expected_seq = r.seq + 1;
        n += 1;
    }
    Ok(Ok(n))
}
