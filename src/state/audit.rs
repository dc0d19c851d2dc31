//! The audit log: who sent what, when, on which verdict and acknowledgements, with which
//! fields. Events are hash-chained with a MAC under a key derived from the master key, so
//! editing or deleting one breaks the chain at that event, and nobody without the key can
//! re-seal a forged log.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use super::Keys;
use super::ledger::Ledger;
use crate::error::{Error, Result};

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

impl Ledger {
    pub fn audit_append(
        &mut self,
        keys: &Keys,
        campaign: &str,
        kind: &str,
        body: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let path = self.path.clone();
        let e = |err: rusqlite::Error| Error::State {
            path: path.clone(),
            message: format!("audit: {err}"),
        };
        let body = body.to_string();
        let operator = operator();
        // IMMEDIATE: two processes appending at once must not fork the chain.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        let last: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        let (seq, prev) = match last {
            Some((s, mac)) => (s + 1, mac),
            // Everything was purged: continue from the checkpoint the purge left.
            None => tx
                .query_row(
                    "SELECT next_seq, prev FROM audit_checkpoint WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap_or((1, vec![0u8; 32])),
        };
        let at = now.timestamp();
        let mac = seal(keys, &prev, seq, at, [campaign, kind, &operator, &body]);
        tx.execute(
            "INSERT INTO audit (seq, at, campaign, kind, operator, body, prev, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![seq, at, campaign, kind, operator, body, prev, &mac[..]],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(seq)
    }

    pub fn audit_events(&self, campaign: Option<&str>) -> Result<Vec<Event>> {
        let mut q = self
            .conn
            .prepare("SELECT seq, at, campaign, kind, operator, body FROM audit WHERE ?1 IS NULL OR campaign = ?1 ORDER BY seq")
            .map_err(self.err())?;
        let rows = q
            .query_map([campaign], |r| {
                Ok(Event {
                    seq: r.get(0)?,
                    at: DateTime::from_timestamp(r.get(1)?, 0).unwrap_or_default(),
                    campaign: r.get(2)?,
                    kind: r.get(3)?,
                    operator: r.get(4)?,
                    body: serde_json::from_str(&r.get::<_, String>(5)?)
                        .unwrap_or(serde_json::Value::Null),
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    /// Walks the whole chain; the first event that does not fit is named.
    pub fn audit_verify(&self, keys: &Keys) -> Result<std::result::Result<usize, Broken>> {
        let mut q = self
            .conn
            .prepare(
                "SELECT seq, at, campaign, kind, operator, body, prev, mac FROM audit ORDER BY seq",
            )
            .map_err(self.err())?;
        // After a purge the chain starts at the sealed checkpoint instead of at event 1.
        let (mut expected_prev, start) = match self.audit_checkpoint(keys)? {
            None => (vec![0u8; 32], 1),
            Some(Ok(c)) => (c.prev, c.next_seq),
            Some(Err(())) => {
                return Ok(Err(Broken {
                    seq: 0,
                    why: "checkpoint was edited after a purge",
                }));
            }
        };
        let mut rows = q.query([]).map_err(self.err())?;
        let mut expected_seq: Option<i64> = None;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(self.err())? {
            let get = |i| r.get::<_, String>(i);
            let seq: i64 = r.get(0).map_err(self.err())?;
            let at: i64 = r.get(1).map_err(self.err())?;
            let (campaign, kind, operator, body) = (
                get(2).map_err(self.err())?,
                get(3).map_err(self.err())?,
                get(4).map_err(self.err())?,
                get(5).map_err(self.err())?,
            );
            let prev: Vec<u8> = r.get(6).map_err(self.err())?;
            let mac: Vec<u8> = r.get(7).map_err(self.err())?;
            if let Some(want) = expected_seq {
                if seq != want {
                    return Ok(Err(Broken {
                        seq: want,
                        why: "event is missing (deleted)",
                    }));
                }
            } else if seq != start {
                return Ok(Err(Broken {
                    seq: start,
                    why: "event is missing (deleted)",
                }));
            }
            if prev != expected_prev {
                return Ok(Err(Broken {
                    seq,
                    why: "does not follow the event before it",
                }));
            }
            if seal(keys, &prev, seq, at, [&campaign, &kind, &operator, &body])[..] != mac[..] {
                return Ok(Err(Broken {
                    seq,
                    why: "was edited after it was written",
                }));
            }
            expected_prev = mac;
            expected_seq = Some(seq + 1);
            n += 1;
        }
        Ok(Ok(n))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_catches_edits_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::from_master(&[5; 32]);
        let mut l = Ledger::open(dir.path(), false).unwrap();
        let now = Utc::now();
        for i in 0..4 {
            l.audit_append(&keys, "c", "send", &serde_json::json!({ "sent": i }), now)
                .unwrap();
        }
        assert_eq!(l.audit_verify(&keys).unwrap(), Ok(4));
        assert_eq!(l.audit_events(Some("c")).unwrap().len(), 4);
        assert!(l.audit_events(Some("other")).unwrap().is_empty());
        // Another key cannot vouch for this log.
        assert!(
            l.audit_verify(&Keys::from_master(&[6; 32]))
                .unwrap()
                .is_err()
        );
        l.conn
            .execute("UPDATE audit SET body = '{\"sent\":99}' WHERE seq = 2", [])
            .unwrap();
        assert_eq!(
            l.audit_verify(&keys).unwrap(),
            Err(Broken {
                seq: 2,
                why: "was edited after it was written"
            })
        );
        l.conn
            .execute("DELETE FROM audit WHERE seq = 2", [])
            .unwrap();
        assert_eq!(
            l.audit_verify(&keys).unwrap(),
            Err(Broken {
                seq: 2,
                why: "event is missing (deleted)"
            })
        );
    }

    #[test]
    fn a_purge_leaves_a_chain_that_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::from_master(&[5; 32]);
        let mut l = Ledger::open(dir.path(), false).unwrap();
        let old = crate::consent::parse_time("2025-01-01T00:00:00Z").unwrap();
        let now = crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap();
        for _ in 0..3 {
            l.audit_append(&keys, "old", "send-started", &serde_json::json!({}), old)
                .unwrap();
        }
        l.audit_append(&keys, "new", "send-started", &serde_json::json!({}), now)
            .unwrap();
        // An incomplete old campaign keeps its rows: they are what stops a resend.
        let (a, b) = ([1u8; 32], [2u8; 32]);
        l.enqueue("old", &[(a, true)], old).unwrap();
        l.enqueue("open", &[(b, true)], old).unwrap();
        l.mark_complete("old", old).unwrap();
        let p = l.purge(&keys, 365, now).unwrap();
        assert_eq!(
            p,
            crate::state::retention::Purged {
                deliveries: 1,
                audit_events: 3,
                kept_incomplete: 1
            }
        );
        assert_eq!(
            l.audit_verify(&keys).unwrap(),
            Ok(2),
            "the kept event and the purge event"
        );
        assert!(
            l.completed_at("old").unwrap().is_some(),
            "a purged campaign still never sends again"
        );
        l.conn
            .execute("UPDATE audit_checkpoint SET next_seq = 3", [])
            .unwrap();
        assert!(l.audit_verify(&keys).unwrap().is_err());
    }

    #[test]
    fn events_after_a_purge_of_everything_continue_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::from_master(&[5; 32]);
        let mut l = Ledger::open(dir.path(), false).unwrap();
        let old = crate::consent::parse_time("2025-01-01T00:00:00Z").unwrap();
        let now = crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap();
        l.audit_append(&keys, "old", "send-started", &serde_json::json!({}), old)
            .unwrap();
        l.purge(&keys, 1, old + chrono::TimeDelta::days(30))
            .unwrap();
        l.purge(&keys, 1, now).unwrap();
        l.audit_append(&keys, "new", "send-started", &serde_json::json!({}), now)
            .unwrap();
        assert_eq!(l.audit_verify(&keys).unwrap(), Ok(2));
    }
}
