//! The audit log: who sent what, when, on which verdict and acknowledgements, with which
//! fields. Events are hash-chained with a MAC under a key derived from the master key, so
//! editing or deleting one breaks the chain at that event, and nobody without the key can
//! re-seal a forged log.
//!
//! A chain alone cannot tell that events were deleted from its end: what is left still
//! chains. So every append also seals the head (the last sequence number and MAC) in the
//! same transaction, and `verify` checks that the chain reaches that head exactly: a log
//! cut short, emptied, or with its head put back to an older copy is reported. What no
//! store can tell is a restore of the whole store (events and head) to an earlier moment;
//! `audit --verify` prints the head so it can be kept elsewhere and compared.

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

/// Where the chain breaks: the first event that is wrong or missing, and why, as a phrase
/// that follows "it" ("event 3: it is missing …").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: i64,
    pub why: String,
}

/// What an intact log verified to: how many events, and the sealed head they end at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub events: usize,
    /// The last sequence number and a prefix of its MAC in hex; `None` for a log that
    /// never had an event.
    pub head: Option<(i64, String)>,
    /// Every verified event (and the purge checkpoint's) as (seq, MAC prefix in hex), to
    /// check a head recorded earlier against.
    marks: Vec<(i64, String)>,
}

impl Verified {
    /// The head as `SEQ:MAC`, the form `audit --verify --expect-head` takes back.
    pub fn head_mark(&self) -> Option<String> {
        self.head.as_ref().map(|(seq, mac)| format!("{seq}:{mac}"))
    }

    /// Checks a head recorded earlier (`SEQ:MAC`, as `head_mark` gave it) against this
    /// log: the log must still hold that very event. This is what catches a restore of the
    /// whole store to an earlier moment, which no check inside the store can see. `Err`
    /// says why, as a phrase; an input error for a mark that does not parse.
    pub fn reaches(&self, recorded: &str) -> Result<std::result::Result<(), String>> {
        let parsed = recorded.trim().split_once(':').and_then(|(seq, mac)| {
            let mac = mac.trim().to_ascii_lowercase();
            let ok = mac.len() == 16 && mac.bytes().all(|b| b.is_ascii_hexdigit());
            Some((seq.trim().parse::<i64>().ok()?, mac)).filter(|_| ok)
        });
        let Some((seq, mac)) = parsed else {
            return Err(crate::Error::Other(format!(
                "--expect-head {recorded:?}: expected SEQ:MAC as `audit --verify` prints it (like 12:0a1b2c3d4e5f6071)"
            )));
        };
        let last = self.head.as_ref().map_or(0, |h| h.0);
        Ok(match self.marks.iter().find(|(s, _)| *s == seq) {
            Some((_, m)) if *m == mac => Ok(()),
            Some(_) => Err(format!(
                "holds another event {seq} than the recorded head: the log was rewritten from there"
            )),
            None if seq > last => Err(format!(
                "ends at event {last}, before the recorded head (event {seq}): the store was rolled back to an earlier copy"
            )),
            None => Err(format!(
                "no longer holds event {seq} (purged): the recorded head cannot be checked; record the current one"
            )),
        })
    }
}

/// The sealed head of the chain as a store keeps it (one row): the newest event's
/// sequence number and MAC, and a MAC over both under the audit key.
pub(super) struct Head {
    pub seq: i64,
    pub mac: Vec<u8>,
    pub seal: Vec<u8>,
}

fn head_seal(keys: &Keys, seq: i64, mac: &[u8]) -> [u8; 32] {
    let mut data = b"tact audit head".to_vec();
    data.extend_from_slice(&seq.to_be_bytes());
    data.extend_from_slice(mac);
    keys.audit_mac(&data)
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
    /// The head to store with it, in the same transaction.
    pub head_seal: [u8; 32],
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
        head_seal: head_seal(keys, seq, &mac),
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

fn broken(seq: i64, why: impl Into<String>) -> Broken {
    Broken {
        seq,
        why: why.into(),
    }
}

/// Walks the chain in `seq` order from the checkpoint (or from event 1), then checks that
/// it ends exactly at the sealed head; the first event that does not fit is named.
/// `head`, the checkpoint and `rows` must come from one snapshot of the store.
pub(super) fn verify(
    keys: &Keys,
    checkpoint: Option<std::result::Result<Checkpoint, ()>>,
    head: Option<Head>,
    rows: impl IntoIterator<Item = Result<Stored>>,
) -> Result<std::result::Result<Verified, Broken>> {
    // After a purge the chain starts at the sealed checkpoint instead of at event 1.
    let had_checkpoint = checkpoint.is_some();
    let (mut expected_prev, start) = match checkpoint {
        None => (vec![0u8; 32], 1),
        Some(Ok(c)) => (c.prev, c.next_seq),
        Some(Err(())) => return Ok(Err(broken(0, "checkpoint was edited after a purge"))),
    };
    let mut expected_seq = start;
    let mut n = 0;
    let mark = |seq: i64, mac: &[u8]| (seq, super::hex(&mac[..8.min(mac.len())]));
    let mut marks = Vec::new();
    if start > 1 {
        marks.push(mark(start - 1, &expected_prev));
    }
    for r in rows {
        let r = r?;
        if r.seq != expected_seq {
            return Ok(Err(broken(expected_seq, "event is missing (deleted)")));
        }
        if r.prev != expected_prev {
            return Ok(Err(broken(r.seq, "does not follow the event before it")));
        }
        let want = seal(
            keys,
            &r.prev,
            r.seq,
            r.at,
            [&r.campaign, &r.kind, &r.operator, &r.body],
        );
        if want[..] != r.mac[..] {
            return Ok(Err(broken(r.seq, "was edited after it was written")));
        }
        marks.push(mark(r.seq, &r.mac));
        expected_prev = r.mac;
        expected_seq = r.seq + 1;
        n += 1;
    }
    // Where the chain ends: its last event, or the checkpoint of a purge that took all.
    let last_seq = expected_seq - 1;
    let Some(head) = head else {
        return Ok(if n == 0 && !had_checkpoint {
            Ok(Verified {
                events: 0,
                head: None,
                marks,
            })
        } else {
            Err(broken(
                last_seq,
                "is the last event, but the sealed head of the log is missing (deleted)",
            ))
        });
    };
    if head_seal(keys, head.seq, &head.mac)[..] != head.seal[..] {
        return Ok(Err(broken(
            head.seq,
            "is where the head of the log says it ends, but the head was edited after it was written",
        )));
    }
    if head.seq > last_seq {
        let what = if n == 0 {
            "every event was deleted"
        } else {
            "events were deleted from the end"
        };
        return Ok(Err(broken(
            last_seq + 1,
            format!(
                "is missing: the log was cut short ({what}; its sealed head says it ends at event {})",
                head.seq
            ),
        )));
    }
    if head.seq < last_seq {
        return Ok(Err(broken(
            head.seq + 1,
            format!(
                "comes after the sealed head of the log (event {}): the head was rolled back to an older copy",
                head.seq
            ),
        )));
    }
    if head.mac != expected_prev {
        return Ok(Err(broken(
            head.seq,
            "is not the event the sealed head of the log names: it was replaced",
        )));
    }
    Ok(Ok(Verified {
        events: n,
        head: Some(mark(head.seq, &head.mac)),
        marks,
    }))
}
