//! One person's rows in the ledger: what `forget` (GDPR Art. 17) deletes and `export`
//! (Art. 15) shows, plus the suppression writes of the unsubscribe paths (bulk import,
//! tokens). Every row is found by the keyed hash alone, never by an address.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::ledger::Ledger;
use super::{Keys, RecipientHash};
use crate::error::{Error, Result};

fn db_err(path: &std::path::Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::State {
        path: path.to_path_buf(),
        message: format!("ledger: {e}"),
    }
}

/// The suppression reasons these paths write.
pub const REASON_ERASURE: &str = "erasure";
pub const REASON_UNSUBSCRIBE: &str = "unsubscribe";
pub const REASON_IMPORT: &str = "import";

/// One ledger row of one recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub campaign: String,
    pub status: String,
    pub variant: String,
    pub attempts: u32,
    /// When the row last changed: for `sent`, when the server accepted the message.
    pub at: DateTime<Utc>,
}

/// What a valid unsubscribe token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribed {
    pub campaign: String,
    /// False when the recipient was already on the list (the request is idempotent).
    pub new: bool,
}

impl Ledger {
    /// Adds many hashes in one transaction; returns how many were new to the list.
    pub fn suppress_many(
        &mut self,
        hashes: &[RecipientHash],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let path = self.path.clone();
        let e = db_err(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        let mut new = 0;
        {
            let mut q = tx
                .prepare(
                    "INSERT OR IGNORE INTO suppression (recipient, reason, added_at) VALUES (?1, ?2, ?3)",
                )
                .map_err(&e)?;
            for h in hashes {
                new += q
                    .execute(params![&h[..], reason, now.timestamp()])
                    .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)?;
        Ok(new)
    }

    /// Opens an unsubscribe token with the token key alone and suppresses that recipient
    /// (reason `unsubscribe`). `None` for a forged, truncated or foreign token: nothing is
    /// written then. An existing entry keeps its reason and date.
    pub fn unsubscribe_token(
        &self,
        keys: &Keys,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Unsubscribed>> {
        let Some((campaign, hash)) = keys.open_token(token) else {
            return Ok(None);
        };
        let new = self.suppress(&hash, REASON_UNSUBSCRIBE, now)?;
        Ok(Some(Unsubscribed { campaign, new }))
    }

    /// Every ledger row of this recipient, oldest first.
    pub fn deliveries_of(&self, hash: &RecipientHash) -> Result<Vec<Delivery>> {
        let mut q = self
            .conn
            .prepare(
                "SELECT campaign, status, variant, attempts, updated_at FROM deliveries
                 WHERE recipient = ?1 ORDER BY updated_at, campaign",
            )
            .map_err(self.err())?;
        let rows = q
            .query_map([&hash[..]], |r| {
                Ok(Delivery {
                    campaign: r.get(0)?,
                    status: r.get(1)?,
                    variant: r.get(2)?,
                    attempts: r.get(3)?,
                    at: DateTime::from_timestamp(r.get(4)?, 0).unwrap_or_default(),
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    /// Erasure (GDPR Art. 17), in one transaction: the hash goes on the suppression list
    /// with reason `erasure` (replacing an older reason, so the list says why it is there),
    /// so a later import of the same address can never mail them; then every delivery row of
    /// theirs, for every campaign, is deleted. The deleted rows are overwritten on disk
    /// (`secure_delete`) and the WAL is checkpointed, so they do not linger in free pages.
    /// Returns how many delivery rows were deleted.
    pub fn forget(&mut self, hash: &RecipientHash, now: DateTime<Utc>) -> Result<usize> {
        let path = self.path.clone();
        let e = db_err(&path);
        self.conn
            .pragma_update(None, "secure_delete", "ON")
            .map_err(&e)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        tx.execute(
            "INSERT INTO suppression (recipient, reason, added_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (recipient) DO UPDATE SET reason = excluded.reason, added_at = excluded.added_at",
            params![&hash[..], REASON_ERASURE, now.timestamp()],
        )
        .map_err(&e)?;
        let deleted = tx
            .execute("DELETE FROM deliveries WHERE recipient = ?1", [&hash[..]])
            .map_err(&e)?;
        tx.commit().map_err(&e)?;
        // Best effort: another process holding a read transaction can delay the truncation,
        // and the rows are gone from every reader's view already.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(deleted)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::ledger::{Reply, Status};

    fn now() -> DateTime<Utc> {
        crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
    }

    #[test]
    fn forget_suppresses_and_deletes_every_campaigns_rows_of_one_person() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::from_master(&[3; 32]);
        let mut l = Ledger::open(dir.path(), false).unwrap();
        let ann = keys.recipient_hash("ann@example.com");
        let bob = keys.recipient_hash("bob@example.com");
        for c in ["a", "b"] {
            l.enqueue(c, &[(ann, true), (bob, false)], now()).unwrap();
            l.claim(c, &ann, now()).unwrap();
            l.finish(c, &ann, Status::Sent, &Reply::default(), None, now())
                .unwrap();
        }
        l.suppress(&ann, "manual", now()).unwrap();
        let rows = l.deliveries_of(&ann).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].status, "sent");
        assert_eq!(l.forget(&ann, now()).unwrap(), 2);
        assert!(l.deliveries_of(&ann).unwrap().is_empty());
        assert_eq!(l.deliveries_of(&bob).unwrap().len(), 2, "others untouched");
        assert_eq!(
            l.suppression(&ann).unwrap().map(|(r, _)| r).as_deref(),
            Some(REASON_ERASURE)
        );
        // Forgetting twice is harmless.
        assert_eq!(l.forget(&ann, now()).unwrap(), 0);
    }

    #[test]
    fn tokens_suppress_once_and_forged_ones_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::from_master(&[4; 32]);
        let mut l = Ledger::open(dir.path(), false).unwrap();
        let h = keys.recipient_hash("ann@example.com");
        let t = keys.seal_token("winter-sale", &h);
        let first = l.unsubscribe_token(&keys, &t, now()).unwrap().unwrap();
        assert_eq!(first.campaign, "winter-sale");
        assert!(first.new);
        assert!(!l.unsubscribe_token(&keys, &t, now()).unwrap().unwrap().new);
        let other = Keys::from_master(&[5; 32]);
        let foreign = other.seal_token("winter-sale", &other.recipient_hash("x@example.com"));
        assert_eq!(l.unsubscribe_token(&keys, &foreign, now()).unwrap(), None);
        assert_eq!(
            l.suppression(&h).unwrap().map(|(r, _)| r).as_deref(),
            Some(REASON_UNSUBSCRIBE)
        );
        let many = [[1u8; 32], [2u8; 32], h];
        assert_eq!(l.suppress_many(&many, REASON_IMPORT, now()).unwrap(), 2);
        assert_eq!(l.suppress_many(&many, REASON_IMPORT, now()).unwrap(), 0);
    }
}
