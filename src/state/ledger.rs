//! The ledger and suppression list: SQLite in the state directory, keyed hashes only.
//!
//! One row per campaign × recipient. `sending` is committed before the SMTP transaction
//! starts and `sent` after the server's 250, so a crash can only leave a row `sending`:
//! the next run counts it as uncertain and never resends it unless asked. At most once, by
//! construction. SMTP replies are kept as code and enhanced status only, because servers
//! quote addresses in their text.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::RecipientHash;
use crate::error::{Error, Result};
use crate::plan::Facts;

pub const LEDGER_FILE: &str = "ledger.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    campaign      TEXT    NOT NULL,
    recipient     BLOB    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    variant       TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    message_id    TEXT,
    smtp_code     INTEGER,
    smtp_enhanced TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (campaign, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaigns (
    name          TEXT    PRIMARY KEY,
    started_at    INTEGER NOT NULL,
    completed_at  INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq           INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    campaign      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    operator      TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    prev          BLOB    NOT NULL,
    mac           BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS suppression (
    recipient     BLOB    PRIMARY KEY,
    reason        TEXT    NOT NULL,
    added_at      INTEGER NOT NULL
) WITHOUT ROWID;
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Sending,
    Sent,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }
}

/// An SMTP reply without its text: `550` and `5.1.1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub code: Option<u16>,
    pub enhanced: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusCounts {
    pub pending: usize,
    pub sending: usize,
    pub sent: usize,
    pub failed: usize,
}

pub struct Ledger {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ledger({})", self.path.display())
    }
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::State {
        path: path.to_path_buf(),
        message: format!("ledger: {e}"),
    }
}

impl Ledger {
    /// Opens (creating) the ledger in WAL mode. `synchronous=NORMAL` survives a killed
    /// process; `durable` asks for FULL, which also survives a power cut, at a tenth of the
    /// speed.
    pub fn open(dir: &Path, durable: bool) -> Result<Ledger> {
        let path = dir.join(LEDGER_FILE);
        if !path.exists() {
            // Created empty with mode 0600 so SQLite never makes it world-readable.
            super::write_private(&path, b"", true)?;
        }
        let conn = {
            let e = db_err(&path);
            let conn = Connection::open(&path).map_err(&e)?;
            conn.busy_timeout(std::time::Duration::from_secs(30))
                .map_err(&e)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(&e)?;
            conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })
                .map_err(&e)?;
            conn.execute_batch(SCHEMA).map_err(&e)?;
            // Every index page is one more write per commit, two commits a message; the
            // frequency-cap query runs once per run and can scan.
            conn.execute_batch("DROP INDEX IF EXISTS deliveries_recent")
                .map_err(&e)?;
            conn.execute_batch(super::retention::CHECKPOINT_SCHEMA)
                .map_err(&e)?;
            conn
        };
        // WAL and SHM files appear with the process umask; keep them private too.
        for extra in ["-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{extra}", path.display()));
            if p.exists() {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
        Ok(Ledger { conn, path })
    }

    pub(super) fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        db_err(&self.path)
    }

    /// What the plan needs to know about this campaign and the others.
    pub fn facts(
        &self,
        campaign: &str,
        min_hours_between: u32,
        now: DateTime<Utc>,
    ) -> Result<Facts> {
        let e = self.err();
        let mut facts = Facts::default();
        let mut q = self
            .conn
            .prepare("SELECT recipient FROM suppression")
            .map_err(&e)?;
        facts.suppressed =
            collect_hashes(q.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(&e)?)?;
        // Sent, left uncertain, or refused for good: this campaign is done with them.
        let mut q = self
            .conn
            .prepare("SELECT recipient FROM deliveries WHERE campaign = ?1 AND status IN ('sending', 'sent', 'failed')")
            .map_err(&e)?;
        facts.already = collect_hashes(
            q.query_map([campaign], |r| r.get::<_, Vec<u8>>(0))
                .map_err(&e)?,
        )?;
        if min_hours_between > 0 {
            let since = (now - TimeDelta::hours(i64::from(min_hours_between))).timestamp();
            let mut q = self
                .conn
                .prepare(
                    "SELECT recipient FROM deliveries WHERE campaign != ?1 AND status IN ('sending', 'sent') AND updated_at >= ?2",
                )
                .map_err(&e)?;
            facts.recent = collect_hashes(
                q.query_map(params![campaign, since], |r| r.get::<_, Vec<u8>>(0))
                    .map_err(&e)?,
            )?;
        }
        Ok(facts)
    }

    pub fn is_suppressed(&self, hash: &RecipientHash) -> Result<bool> {
        let found: Option<i64> = self
            .conn
            .prepare_cached("SELECT 1 FROM suppression WHERE recipient = ?1")
            .and_then(|mut q| q.query_row([&hash[..]], |r| r.get(0)).optional())
            .map_err(self.err())?;
        Ok(found.is_some())
    }

    /// Returns whether the address was new to the list.
    pub fn suppress(&self, hash: &RecipientHash, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO suppression (recipient, reason, added_at) VALUES (?1, ?2, ?3)",
                params![&hash[..], reason, now.timestamp()],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    pub fn suppression(&self, hash: &RecipientHash) -> Result<Option<(String, DateTime<Utc>)>> {
        self.conn
            .query_row(
                "SELECT reason, added_at FROM suppression WHERE recipient = ?1",
                [&hash[..]],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map(|o| {
                o.map(|(reason, t)| (reason, DateTime::from_timestamp(t, 0).unwrap_or_default()))
            })
            .map_err(self.err())
    }

    pub fn completed_at(&self, campaign: &str) -> Result<Option<DateTime<Utc>>> {
        let t: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT completed_at FROM campaigns WHERE name = ?1",
                [campaign],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        Ok(t.flatten().and_then(|t| DateTime::from_timestamp(t, 0)))
    }

    pub fn mark_complete(&self, campaign: &str, now: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE campaigns SET completed_at = ?2 WHERE name = ?1",
                params![campaign, now.timestamp()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Records the run's recipients as pending, in one transaction; rows that already exist
    /// keep their status.
    pub fn enqueue(
        &mut self,
        campaign: &str,
        recipients: &[(RecipientHash, bool)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let path = self.path.clone();
        let e = db_err(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        tx.execute(
            "INSERT OR IGNORE INTO campaigns (name, started_at) VALUES (?1, ?2)",
            params![campaign, now.timestamp()],
        )
        .map_err(&e)?;
        {
            let mut q = tx
                .prepare(
                    "INSERT OR IGNORE INTO deliveries (campaign, recipient, status, variant, updated_at) VALUES (?1, ?2, 'pending', ?3, ?4)",
                )
                .map_err(&e)?;
            for (hash, personalised) in recipients {
                let variant = if *personalised {
                    "personalised"
                } else {
                    "generic"
                };
                q.execute(params![campaign, &hash[..], variant, now.timestamp()])
                    .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// Claims one pending recipient for sending, in the same statement that re-reads the
    /// suppression list (one transaction, so an unsubscribe committed before it is always
    /// seen). `false` when the recipient is suppressed, claimed by another run or not
    /// pending: the caller must then not send.
    pub fn claim(&self, campaign: &str, hash: &RecipientHash, now: DateTime<Utc>) -> Result<bool> {
        claim_on(&self.conn, campaign, hash, now).map_err(self.err())
    }

    pub fn finish(
        &self,
        campaign: &str,
        hash: &RecipientHash,
        status: Status,
        reply: &Reply,
        message_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        finish_on(&self.conn, campaign, hash, status, reply, message_id, now).map_err(self.err())
    }

    /// Records one recipient's 250 and claims the next in a single transaction: one
    /// commit a message instead of two. The order still holds (the next message's
    /// `sending` is committed before its SMTP transaction), and a crash in between leaves
    /// the delivered one `sending`, uncertain, never resent: at most one per connection.
    pub fn sent_then_claim(
        &mut self,
        campaign: &str,
        done: Option<&Delivered>,
        next: &RecipientHash,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done: &[Delivered] = done.map_or(&[], std::slice::from_ref);
        Ok(!self
            .settle_and_claim(campaign, done, std::slice::from_ref(next), now)?
            .is_empty())
    }

    /// Records every `done` as sent and claims those of `next` that are pending and not
    /// suppressed, all in one transaction; returns the claimed ones. Several connections'
    /// steps committed together cost one commit instead of one each.
    pub fn settle_and_claim(
        &mut self,
        campaign: &str,
        done: &[Delivered],
        next: &[RecipientHash],
        now: DateTime<Utc>,
    ) -> Result<Vec<RecipientHash>> {
        let path = self.path.clone();
        let e = db_err(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        for d in done {
            finish_on(
                &tx,
                campaign,
                &d.hash,
                Status::Sent,
                &d.reply,
                d.message_id.as_deref(),
                d.at,
            )
            .map_err(&e)?;
        }
        let mut claimed = Vec::with_capacity(next.len());
        for h in next {
            if claim_on(&tx, campaign, h, now).map_err(&e)? {
                claimed.push(*h);
            }
        }
        tx.commit().map_err(&e)?;
        Ok(claimed)
    }

    pub fn attempts(&self, campaign: &str, hash: &RecipientHash) -> Result<u32> {
        self.conn
            .query_row(
                "SELECT attempts FROM deliveries WHERE campaign = ?1 AND recipient = ?2",
                params![campaign, &hash[..]],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(self.err())
    }

    /// `--retry-uncertain`: the operator has checked with the relay and wants them resent.
    pub fn release_uncertain(&self, campaign: &str) -> Result<usize> {
        self.conn
            .execute("UPDATE deliveries SET status = 'pending' WHERE campaign = ?1 AND status = 'sending'", [campaign])
            .map_err(self.err())
    }

    /// The recipients a broken connection left `sending` (uncertain).
    pub fn uncertain(&self, campaign: &str) -> Result<HashSet<RecipientHash>> {
        let e = self.err();
        let mut q = self
            .conn
            .prepare("SELECT recipient FROM deliveries WHERE campaign = ?1 AND status = 'sending'")
            .map_err(&e)?;
        collect_hashes(
            q.query_map([campaign], |r| r.get::<_, Vec<u8>>(0))
                .map_err(&e)?,
        )
    }

    /// Drops this campaign's `pending` rows, except those of `keep`: people who left the
    /// plan since they were queued (suppressed, consent withdrawn, gone from the CSV). A
    /// pending row was never handed to a server, so this loses no delivery, and the campaign
    /// can complete without them. Returns how many were dropped.
    pub fn drop_pending_except(
        &mut self,
        campaign: &str,
        keep: &dyn Fn(&RecipientHash) -> bool,
    ) -> Result<usize> {
        let path = self.path.clone();
        let e = db_err(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        let stale: Vec<Vec<u8>> = {
            let mut q = tx
                .prepare(
                    "SELECT recipient FROM deliveries WHERE campaign = ?1 AND status = 'pending'",
                )
                .map_err(&e)?;
            let rows = q
                .query_map([campaign], |r| r.get::<_, Vec<u8>>(0))
                .map_err(&e)?;
            let mut stale = Vec::new();
            for r in rows {
                let h = r.map_err(&e)?;
                if !<RecipientHash>::try_from(h.as_slice()).is_ok_and(|h| keep(&h)) {
                    stale.push(h);
                }
            }
            stale
        };
        for h in &stale {
            tx.execute(
                "DELETE FROM deliveries WHERE campaign = ?1 AND recipient = ?2 AND status = 'pending'",
                params![campaign, h],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        Ok(stale.len())
    }

    /// Drops one recipient's `pending` row (suppressed while the run was going).
    pub fn drop_pending(&self, campaign: &str, hash: &RecipientHash) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM deliveries WHERE campaign = ?1 AND recipient = ?2 AND status = 'pending'",
                params![campaign, &hash[..]],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    pub fn counts(&self, campaign: &str) -> Result<StatusCounts> {
        let mut q = self
            .conn
            .prepare("SELECT status, COUNT(*) FROM deliveries WHERE campaign = ?1 GROUP BY status")
            .map_err(self.err())?;
        let rows = q
            .query_map([campaign], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(self.err())?;
        let mut c = StatusCounts::default();
        for row in rows {
            let (status, n) = row.map_err(self.err())?;
            let n = usize::try_from(n).unwrap_or_default();
            match status.as_str() {
                "pending" => c.pending = n,
                "sending" => c.sending = n,
                "sent" => c.sent = n,
                _ => c.failed = n,
            }
        }
        Ok(c)
    }
}

/// A recipient the server accepted, not yet recorded: see `Ledger::sent_then_claim`.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub hash: RecipientHash,
    pub reply: Reply,
    pub message_id: Option<String>,
    pub at: DateTime<Utc>,
}

fn claim_on(
    conn: &Connection,
    campaign: &str,
    hash: &RecipientHash,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = ?3
             WHERE campaign = ?1 AND recipient = ?2 AND status = 'pending'
             AND NOT EXISTS (SELECT 1 FROM suppression WHERE recipient = ?2)",
        )?
        .execute(params![campaign, &hash[..], now.timestamp()])?;
    Ok(n == 1)
}

fn finish_on(
    conn: &Connection,
    campaign: &str,
    hash: &RecipientHash,
    status: Status,
    reply: &Reply,
    message_id: Option<&str>,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = ?3, smtp_code = ?4, smtp_enhanced = ?5,
         message_id = COALESCE(?6, message_id), updated_at = ?7
         WHERE campaign = ?1 AND recipient = ?2",
    )?
    .execute(params![
        campaign,
        &hash[..],
        status.as_str(),
        reply.code,
        reply.enhanced,
        message_id,
        now.timestamp()
    ])?;
    Ok(())
}

fn collect_hashes(
    rows: impl Iterator<Item = rusqlite::Result<Vec<u8>>>,
) -> Result<HashSet<RecipientHash>> {
    let mut out = HashSet::new();
    for r in rows {
        let v = r.map_err(|e| Error::Other(format!("ledger: {e}")))?;
        if let Ok(h) = <RecipientHash>::try_from(v.as_slice()) {
            out.insert(h);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
    }

    #[test]
    fn a_recipient_can_be_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path(), false).unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        l.enqueue("c", &[(a, true), (b, false)], now()).unwrap();
        assert!(l.claim("c", &a, now()).unwrap());
        assert!(
            !l.claim("c", &a, now()).unwrap(),
            "a second claim must fail"
        );
        let other = Ledger::open(dir.path(), false).unwrap();
        assert!(
            !other.claim("c", &a, now()).unwrap(),
            "another process cannot claim it either"
        );
        l.finish(
            "c",
            &a,
            Status::Sent,
            &Reply {
                code: Some(250),
                enhanced: Some("2.0.0".into()),
            },
            Some("<x@y>"),
            now(),
        )
        .unwrap();
        // Re-enqueueing keeps the status.
        l.enqueue("c", &[(a, true)], now()).unwrap();
        assert_eq!(
            l.counts("c").unwrap(),
            StatusCounts {
                pending: 1,
                sending: 0,
                sent: 1,
                failed: 0
            }
        );
        assert!(l.claim("c", &b, now()).unwrap());
        let f = l.facts("c", 0, now()).unwrap();
        assert_eq!(
            f.already,
            HashSet::from([a, b]),
            "sent and uncertain both count"
        );
        assert_eq!(l.uncertain("c").unwrap(), HashSet::from([b]));
        assert_eq!(l.release_uncertain("c").unwrap(), 1);
        assert_eq!(l.facts("c", 0, now()).unwrap().already, HashSet::from([a]));
        assert!(l.uncertain("c").unwrap().is_empty());
    }

    #[test]
    fn pending_rows_of_people_who_left_the_plan_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path(), false).unwrap();
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        l.enqueue("x", &[(a, true), (b, true), (c, false)], now())
            .unwrap();
        l.enqueue("other", &[(b, true)], now()).unwrap();
        assert!(l.claim("x", &a, now()).unwrap());
        // a is sending (never dropped), b left the plan, c stays.
        assert_eq!(l.drop_pending_except("x", &|h| *h == c).unwrap(), 1);
        assert_eq!(
            l.counts("x").unwrap(),
            StatusCounts {
                pending: 1,
                sending: 1,
                sent: 0,
                failed: 0
            }
        );
        assert_eq!(l.counts("other").unwrap().pending, 1, "another campaign");
        assert!(l.drop_pending("x", &c).unwrap());
        assert!(!l.drop_pending("x", &a).unwrap(), "only pending rows go");
        assert_eq!(l.counts("x").unwrap().pending, 0);
    }

    #[test]
    fn frequency_cap_and_suppression_facts() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path(), false).unwrap();
        let a = [1u8; 32];
        l.enqueue("first", &[(a, true)], now()).unwrap();
        l.claim("first", &a, now()).unwrap();
        l.finish("first", &a, Status::Sent, &Reply::default(), None, now())
            .unwrap();
        assert_eq!(
            l.facts("second", 24, now() + TimeDelta::hours(23))
                .unwrap()
                .recent,
            HashSet::from([a])
        );
        assert!(
            l.facts("second", 24, now() + TimeDelta::hours(25))
                .unwrap()
                .recent
                .is_empty()
        );
        assert!(l.facts("second", 0, now()).unwrap().recent.is_empty());
        assert!(l.suppress(&a, "unsubscribe", now()).unwrap());
        assert!(!l.suppress(&a, "unsubscribe", now()).unwrap());
        assert!(l.is_suppressed(&a).unwrap());
        assert!(!l.is_suppressed(&[9; 32]).unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(LEDGER_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_delivery_is_recorded_with_the_next_claim() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path(), false).unwrap();
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        l.enqueue("k", &[(a, true), (b, true), (c, true)], now())
            .unwrap();
        assert!(l.sent_then_claim("k", None, &a, now()).unwrap());
        let done = Delivered {
            hash: a,
            reply: Reply {
                code: Some(250),
                enhanced: None,
            },
            message_id: Some("<m@x>".into()),
            at: now(),
        };
        assert!(l.sent_then_claim("k", Some(&done), &b, now()).unwrap());
        assert_eq!(
            l.counts("k").unwrap(),
            StatusCounts {
                pending: 1,
                sending: 1,
                sent: 1,
                failed: 0
            }
        );
        // A suppressed next recipient is not claimed, but the delivery is still recorded.
        l.suppress(&c, "unsubscribe", now()).unwrap();
        let done = Delivered { hash: b, ..done };
        assert!(!l.sent_then_claim("k", Some(&done), &c, now()).unwrap());
        assert_eq!(
            l.counts("k").unwrap(),
            StatusCounts {
                pending: 1,
                sending: 0,
                sent: 2,
                failed: 0
            }
        );
    }
}
