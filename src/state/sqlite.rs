//! The embedded store: one SQLite file (WAL mode, 0600) in the state directory. SQLite has
//! one writer at a time, so a claim needs no row locks: the write transaction is the lock.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::audit::{self, Broken, Event, Verified};
use super::bounces::{
    BounceEvent, BounceFigures, BounceRow, Recorded, ReportHash, Step, record_events,
};
use super::erase::{Delivery, REASON_ERASURE};
use super::ledger::Facts;
use super::ledger::{Delivered, Reply, Status, StatusCounts};
use super::retention::{self, Checkpoint, Purged};
use super::store::{Store, key_mismatch};
use super::{KeyId, Keys, RecipientHash};
use crate::error::{Error, Result};

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
    relay         TEXT,
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
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq  INTEGER NOT NULL,
    prev      BLOB    NOT NULL,
    at        INTEGER NOT NULL,
    mac       BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       INTEGER NOT NULL,
    mac       BLOB    NOT NULL,
    seal      BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name      TEXT    PRIMARY KEY,
    value     BLOB    NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bounce_reports (
    report    BLOB    PRIMARY KEY,
    at        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bounces (
    campaign  TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('hard', 'soft', 'sender', 'complaint', 'auto-reply', 'delivered', 'unknown')),
    recipient BLOB,
    at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bounces_recipient ON bounces (recipient, kind, at);
CREATE INDEX IF NOT EXISTS bounces_campaign ON bounces (campaign, kind);
";

pub struct SqliteStore {
    pub(super) conn: Connection,
    path: PathBuf,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::State {
        path: path.to_path_buf(),
        message: format!("ledger: {e}"),
    }
}

impl SqliteStore {
    pub fn open(dir: &Path, durable: bool) -> Result<SqliteStore> {
        let path = dir.join(LEDGER_FILE);
        if !path.exists() {
            // Created empty with mode 0600 so SQLite never makes it world-readable. Another
            // process opening a new state at the same moment may win the race: fine.
            match super::write_private(&path, b"", true) {
                Err(Error::Write { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                r => r?,
            }
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
            // Ledgers made before relays had names.
            let has_relay: bool = conn
                .query_row(
                    "SELECT COUNT(*) > 0 FROM pragma_table_info('deliveries') WHERE name = 'relay'",
                    [],
                    |r| r.get(0),
                )
                .map_err(&e)?;
            if !has_relay {
                conn.execute_batch("ALTER TABLE deliveries ADD COLUMN relay TEXT")
                    .map_err(&e)?;
            }
            // Every index page is one more write per commit, two commits a message; the
            // frequency-cap query runs once per run and can scan.
            conn.execute_batch("DROP INDEX IF EXISTS deliveries_recent")
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
        Ok(SqliteStore { conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        db_err(&self.path)
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn key_recorded(&self) -> Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM meta WHERE name = 'key_id'", [], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(db_err(&self.path))
    }

    fn check_key(&mut self, id: &KeyId) -> Result<()> {
        let path = self.path.clone();
        let e = db_err(&path);
        // Read first: every open checks, and only the first needs a write.
        let recorded: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'key_id'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&e)?;
        if let Some(v) = recorded {
            return if v[..] == id[..] {
                Ok(())
            } else {
                Err(key_mismatch(&self.describe()))
            };
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('key_id', ?1)",
            [&id[..]],
        )
        .map_err(&e)?;
        let stored: Vec<u8> = tx
            .query_row("SELECT value FROM meta WHERE name = 'key_id'", [], |r| {
                r.get(0)
            })
            .map_err(&e)?;
        tx.commit().map_err(&e)?;
        if stored[..] == id[..] {
            Ok(())
        } else {
            Err(key_mismatch(&self.describe()))
        }
    }

    fn facts(&self, campaign: &str, min_hours_between: u32, now: DateTime<Utc>) -> Result<Facts> {
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
        let mut q = self
            .conn
            .prepare("SELECT recipient FROM deliveries WHERE campaign = ?1 AND status = 'sending'")
            .map_err(&e)?;
        facts.uncertain = collect_hashes(
            q.query_map([campaign], |r| r.get::<_, Vec<u8>>(0))
                .map_err(&e)?,
        )?;
        facts.completed_at = self.completed_at(campaign)?;
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

    fn is_suppressed(&self, hash: &RecipientHash) -> Result<bool> {
        let found: Option<i64> = self
            .conn
            .prepare_cached("SELECT 1 FROM suppression WHERE recipient = ?1")
            .and_then(|mut q| q.query_row([&hash[..]], |r| r.get(0)).optional())
            .map_err(self.err())?;
        Ok(found.is_some())
    }

    fn suppress(&self, hash: &RecipientHash, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO suppression (recipient, reason, added_at) VALUES (?1, ?2, ?3)",
                params![&hash[..], reason, now.timestamp()],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn suppress_many(
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

    fn suppression(&self, hash: &RecipientHash) -> Result<Option<(String, DateTime<Utc>)>> {
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

    fn completed_at(&self, campaign: &str) -> Result<Option<DateTime<Utc>>> {
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

    fn mark_complete(&self, campaign: &str, now: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE campaigns SET completed_at = ?2 WHERE name = ?1",
                params![campaign, now.timestamp()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn enqueue(
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
                q.execute(params![
                    campaign,
                    &hash[..],
                    variant(*personalised),
                    now.timestamp()
                ])
                .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    fn claim(&self, campaign: &str, hash: &RecipientHash, now: DateTime<Utc>) -> Result<bool> {
        claim_on(&self.conn, campaign, hash, now).map_err(self.err())
    }

    fn finish(
        &self,
        campaign: &str,
        hash: &RecipientHash,
        status: Status,
        reply: &Reply,
        message_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        finish_on(
            &self.conn, campaign, hash, status, reply, message_id, None, now,
        )
        .map_err(self.err())
    }

    fn settle_and_claim(
        &mut self,
        campaign: &str,
        done: &[Delivered],
        next: &[RecipientHash],
        now: DateTime<Utc>,
    ) -> Result<Vec<RecipientHash>> {
        let path = self.path.clone();
        let e = db_err(&path);
        // IMMEDIATE: take the one write lock up front rather than upgrade a read later,
        // which WAL mode answers with SQLITE_BUSY instead of waiting.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        for d in done {
            finish_on(
                &tx,
                campaign,
                &d.hash,
                Status::Sent,
                &d.reply,
                d.message_id.as_deref(),
                d.relay.as_deref(),
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

    fn relay_usage(&self, relay: &str, since: DateTime<Utc>) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE relay = ?1 AND updated_at >= ?2 AND status IN ('sending', 'sent')",
                params![relay, since.timestamp()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or_default())
            .map_err(self.err())
    }

    fn attempts(&self, campaign: &str, hash: &RecipientHash) -> Result<u32> {
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

    fn release_uncertain(&self, campaign: &str) -> Result<usize> {
        self.conn
            .execute("UPDATE deliveries SET status = 'pending' WHERE campaign = ?1 AND status = 'sending'", [campaign])
            .map_err(self.err())
    }

    fn uncertain(&self, campaign: &str) -> Result<HashSet<RecipientHash>> {
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

    fn drop_pending_except(
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

    fn unclaim(&self, campaign: &str, hash: &RecipientHash, now: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'pending', attempts = MAX(attempts - 1, 0), updated_at = ?3
                 WHERE campaign = ?1 AND recipient = ?2 AND status = 'sending'",
            )
            .and_then(|mut q| q.execute(params![campaign, &hash[..], now.timestamp()]))
            .map_err(self.err())?;
        Ok(())
    }

    fn drop_pending(&self, campaign: &str, hash: &RecipientHash) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM deliveries WHERE campaign = ?1 AND recipient = ?2 AND status = 'pending'",
                params![campaign, &hash[..]],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn counts(&self, campaign: &str) -> Result<StatusCounts> {
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
            c.add(&status, n);
        }
        Ok(c)
    }

    fn audit_append(
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
        // IMMEDIATE: two processes appending at once must not fork the chain.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let last: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&e)?;
        let checkpoint: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT next_seq, prev FROM audit_checkpoint WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&e)?;
        let l = audit::link(keys, last, checkpoint, campaign, kind, body, now);
        tx.execute(
            "INSERT INTO audit (seq, at, campaign, kind, operator, body, prev, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![l.seq, l.at, campaign, kind, l.operator, l.body, l.prev, &l.mac[..]],
        )
        .map_err(&e)?;
        tx.execute(
            "INSERT OR REPLACE INTO audit_head (id, seq, mac, seal) VALUES (1, ?1, ?2, ?3)",
            params![l.seq, &l.mac[..], &l.head_seal[..]],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(l.seq)
    }

    fn audit_events(&self, campaign: Option<&str>) -> Result<Vec<Event>> {
        let mut q = self
            .conn
            .prepare("SELECT seq, at, campaign, kind, operator, body FROM audit WHERE ?1 IS NULL OR campaign = ?1 ORDER BY seq")
            .map_err(self.err())?;
        let rows = q
            .query_map([campaign], |r| {
                Ok(audit::event(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    &r.get::<_, String>(5)?,
                ))
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    fn audit_verify(&self, keys: &Keys) -> Result<std::result::Result<Verified, Broken>> {
        let e = self.err();
        // The checkpoint, the head and the events from one snapshot: an append or a purge
        // in between would otherwise look like a break.
        let tx = self.conn.unchecked_transaction().map_err(&e)?;
        let checkpoint = checkpoint_on(&tx, keys).map_err(&e)?;
        let head = tx
            .query_row(
                "SELECT seq, mac, seal FROM audit_head WHERE id = 1",
                [],
                |r| {
                    Ok(audit::Head {
                        seq: r.get(0)?,
                        mac: r.get(1)?,
                        seal: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(&e)?;
        let mut q = tx
            .prepare(
                "SELECT seq, at, campaign, kind, operator, body, prev, mac FROM audit ORDER BY seq",
            )
            .map_err(&e)?;
        let rows = q
            .query_map([], |r| {
                Ok(audit::Stored {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    campaign: r.get(2)?,
                    kind: r.get(3)?,
                    operator: r.get(4)?,
                    body: r.get(5)?,
                    prev: r.get(6)?,
                    mac: r.get(7)?,
                })
            })
            .map_err(&e)?;
        audit::verify(keys, checkpoint, head, rows.map(|r| r.map_err(&e)))
    }

    fn audit_checkpoint(&self, keys: &Keys) -> Result<Option<std::result::Result<Checkpoint, ()>>> {
        checkpoint_on(&self.conn, keys).map_err(self.err())
    }

    fn purge(&mut self, keys: &Keys, older_than_days: u32, now: DateTime<Utc>) -> Result<Purged> {
        let cutoff = retention::cutoff(older_than_days, now);
        let path = self.path.clone();
        let e = |err: rusqlite::Error| Error::State {
            path: path.clone(),
            message: format!("purge: {err}"),
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let kept_incomplete: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM deliveries d JOIN campaigns c ON c.name = d.campaign
                 WHERE c.completed_at IS NULL AND d.updated_at < ?1",
                [cutoff],
                |r| r.get(0),
            )
            .map_err(&e)?;
        let deliveries = tx
            .execute(
                "DELETE FROM deliveries WHERE updated_at < ?1
                 AND campaign IN (SELECT name FROM campaigns WHERE completed_at IS NOT NULL)",
                [cutoff],
            )
            .map_err(&e)?;
        let bounces = tx
            .execute("DELETE FROM bounces WHERE at < ?1", [cutoff])
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
            let seal = retention::checkpoint_mac(keys, seq + 1, &mac, at);
            tx.execute(
                "INSERT OR REPLACE INTO audit_checkpoint (id, next_seq, prev, at, mac) VALUES (1, ?1, ?2, ?3, ?4)",
                params![seq + 1, mac, at, &seal[..]],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        let purged = Purged {
            deliveries,
            bounces,
            audit_events,
            kept_incomplete: usize::try_from(kept_incomplete).unwrap_or_default(),
        };
        let body = retention::purge_event(older_than_days, &purged);
        self.audit_append(keys, "-", "purge", &body, now)?;
        Ok(purged)
    }

    fn rows_with_hash_prefix(&self, prefix: &[u8]) -> Result<Vec<(String, RecipientHash)>> {
        let (lo, hi) = super::verp::prefix_range(prefix);
        // CROSS JOIN keeps campaigns outside: one primary-key seek per campaign, since
        // deliveries has no index on the recipient alone.
        let mut q = self
            .conn
            .prepare(
                "SELECT d.campaign, d.recipient FROM campaigns c CROSS JOIN deliveries d
                 ON d.campaign = c.name WHERE d.recipient BETWEEN ?1 AND ?2",
            )
            .map_err(self.err())?;
        let rows = q
            .query_map([&lo[..], &hi[..]], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (campaign, hash) = row.map_err(self.err())?;
            if let Ok(hash) = RecipientHash::try_from(hash.as_slice()) {
                out.push((campaign, hash));
            }
        }
        Ok(out)
    }

    fn deliveries_of(&self, hash: &RecipientHash) -> Result<Vec<Delivery>> {
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

    /// Also overwrites the deleted rows on disk (`secure_delete`) and checkpoints the WAL,
    /// so they do not linger in free pages.
    fn forget(&mut self, hash: &RecipientHash, now: DateTime<Utc>) -> Result<usize> {
        let path = self.path.clone();
        let e = db_err(&path);
        self.conn
            .pragma_update(None, "secure_delete", "ON")
            .map_err(&e)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
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
        tx.execute("DELETE FROM bounces WHERE recipient = ?1", [&hash[..]])
            .map_err(&e)?;
        tx.commit().map_err(&e)?;
        // Best effort: another process holding a read transaction can delay the truncation,
        // and the rows are gone from every reader's view already.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(deleted)
    }

    fn record_report(
        &mut self,
        report: &ReportHash,
        events: &[BounceEvent],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Recorded>>> {
        let path = self.path.clone();
        let e = db_err(&path);
        // IMMEDIATE: the window counts below must see every other import's events.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let new = tx
            .execute(
                "INSERT OR IGNORE INTO bounce_reports (report, at) VALUES (?1, ?2)",
                params![&report[..], now.timestamp()],
            )
            .map_err(&e)?;
        if new == 0 {
            return Ok(None);
        }
        let at = now.timestamp();
        let out = record_events(events, |step| match step {
            Step::Insert(ev) => tx
                .execute(
                    "INSERT INTO bounces (campaign, kind, recipient, at) VALUES (?1, ?2, ?3, ?4)",
                    params![ev.campaign, ev.kind, ev.recipient.as_ref().map(|h| &h[..]), at],
                )
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            Step::Count(hash, kind, since) => tx.query_row(
                "SELECT COUNT(*) FROM bounces WHERE recipient = ?1 AND kind = ?2 AND at >= ?3",
                params![&hash[..], kind, since.timestamp()],
                |r| r.get(0),
            ),
            Step::Suppress(hash, reason) => tx
                .execute(
                    "INSERT OR IGNORE INTO suppression (recipient, reason, added_at) VALUES (?1, ?2, ?3)",
                    params![&hash[..], reason, at],
                )
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        })
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(Some(out))
    }

    fn bounces_of(&self, hash: &RecipientHash) -> Result<Vec<BounceRow>> {
        let e = self.err();
        let mut q = self
            .conn
            .prepare(
                "SELECT campaign, kind, at FROM bounces WHERE recipient = ?1 ORDER BY at, rowid",
            )
            .map_err(&e)?;
        let rows = q
            .query_map([&hash[..]], |r| {
                Ok(BounceRow {
                    campaign: r.get(0)?,
                    kind: r.get(1)?,
                    at: DateTime::from_timestamp(r.get(2)?, 0).unwrap_or_default(),
                })
            })
            .map_err(&e)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&e)
    }

    fn bounce_figures(&self, campaign: &str) -> Result<BounceFigures> {
        let e = self.err();
        let mut f = BounceFigures {
            sent: self
                .conn
                .query_row(
                    "SELECT COUNT(*) FROM deliveries WHERE campaign = ?1 AND status = 'sent'",
                    [campaign],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| u64::try_from(n).unwrap_or_default())
                .map_err(&e)?,
            ..BounceFigures::default()
        };
        let mut q = self
            .conn
            .prepare("SELECT kind, COUNT(*) FROM bounces WHERE campaign = ?1 GROUP BY kind")
            .map_err(&e)?;
        let rows = q
            .query_map([campaign], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(&e)?;
        for row in rows {
            let (kind, n) = row.map_err(&e)?;
            f.add(&kind, n);
        }
        Ok(f)
    }
}

fn checkpoint_on(
    conn: &Connection,
    keys: &Keys,
) -> rusqlite::Result<Option<std::result::Result<Checkpoint, ()>>> {
    let row = conn
        .query_row(
            "SELECT next_seq, prev, at, mac FROM audit_checkpoint WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    Ok(retention::open_checkpoint(keys, row))
}

pub(super) fn variant(personalised: bool) -> &'static str {
    if personalised {
        "personalised"
    } else {
        "generic"
    }
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

// One argument per column of the UPDATE.
#[allow(clippy::too_many_arguments)]
fn finish_on(
    conn: &Connection,
    campaign: &str,
    hash: &RecipientHash,
    status: Status,
    reply: &Reply,
    message_id: Option<&str>,
    relay: Option<&str>,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = ?3, smtp_code = ?4, smtp_enhanced = ?5,
         message_id = COALESCE(?6, message_id), updated_at = ?7, relay = COALESCE(?8, relay)
         WHERE campaign = ?1 AND recipient = ?2",
    )?
    .execute(params![
        campaign,
        &hash[..],
        status.as_str(),
        reply.code,
        reply.enhanced,
        message_id,
        now.timestamp(),
        relay
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
