//! The shared store: PostgreSQL, so several hosts can send one campaign and keep one
//! suppression list. Same tables as SQLite (BYTEA hashes, BIGINT Unix times).
//!
//! Hosts split a campaign by claiming rows with `FOR UPDATE SKIP LOCKED`: a row another
//! host is claiming is skipped, never waited for and never claimed twice. Audit appends and
//! purges take one advisory lock, so the hash chain cannot fork however many hosts append.
//!
//! The URL never carries a password on the command line (it would show in `ps` and shell
//! history): it comes from `PGPASSWORD` or from the whole URL in `TACT_DATABASE_URL`, and no
//! message ever prints it. TLS (rustls, verified against the Mozilla roots or
//! `sslrootcert`) is required unless every host is loopback or a Unix socket, or the URL
//! says `sslmode=disable`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use postgres::config::{Host, SslMode};
use postgres::{Client, Config, GenericClient, NoTls, Statement};

use super::audit::{self, Broken, Event, Verified};
use super::bounces::{
    BounceEvent, BounceFigures, BounceRow, Recorded, ReportHash, Step, record_events,
};
use super::erase::{Delivery, REASON_ERASURE};
use super::ledger::Facts;
use super::ledger::{Delivered, Reply, Status, StatusCounts};
use super::retention::{self, Checkpoint, Purged};
use super::sqlite::variant;
use super::store::{Store, key_mismatch};
use super::{KeyId, Keys, RecipientHash};
use crate::error::{Error, Location, Result};

/// Advisory lock keys ("tact" and a number): schema creation, and the audit chain's head.
const SCHEMA_LOCK: i64 = 0x7461_6374_0001;
const AUDIT_LOCK: i64 = 0x7461_6374_0002;
/// Bounce imports: one at a time, so a soft-bounce window counts every host's events.
const BOUNCE_LOCK: i64 = 0x7461_6374_0003;

/// Everything `SCHEMA` creates. A database made by an older tact lacks the newer ones:
/// it goes through `SCHEMA` again, whose `IF NOT EXISTS` adds only what is missing.
const OBJECTS: [&str; 12] = [
    "deliveries",
    "deliveries_recipient",
    "campaigns",
    "audit",
    "suppression",
    "audit_checkpoint",
    "audit_head",
    "meta",
    "bounce_reports",
    "bounces",
    "bounces_recipient",
    "bounces_campaign",
];

/// Rows per statement when a list is sent as an array (enqueue, drop).
const CHUNK: usize = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    campaign      TEXT    NOT NULL,
    recipient     BYTEA   NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    variant       TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    message_id    TEXT,
    smtp_code     INTEGER,
    smtp_enhanced TEXT,
    updated_at    BIGINT  NOT NULL,
    relay         TEXT,
    PRIMARY KEY (campaign, recipient)
);
CREATE INDEX IF NOT EXISTS deliveries_recipient ON deliveries (recipient);
CREATE TABLE IF NOT EXISTS campaigns (
    name          TEXT    PRIMARY KEY,
    started_at    BIGINT  NOT NULL,
    completed_at  BIGINT
);
CREATE TABLE IF NOT EXISTS audit (
    seq           BIGINT  PRIMARY KEY,
    at            BIGINT  NOT NULL,
    campaign      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    operator      TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    prev          BYTEA   NOT NULL,
    mac           BYTEA   NOT NULL
);
CREATE TABLE IF NOT EXISTS suppression (
    recipient     BYTEA   PRIMARY KEY,
    reason        TEXT    NOT NULL,
    added_at      BIGINT  NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq  BIGINT  NOT NULL,
    prev      BYTEA   NOT NULL,
    at        BIGINT  NOT NULL,
    mac       BYTEA   NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       BIGINT  NOT NULL,
    mac       BYTEA   NOT NULL,
    seal      BYTEA   NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name      TEXT    PRIMARY KEY,
    value     BYTEA   NOT NULL
);
CREATE TABLE IF NOT EXISTS bounce_reports (
    report    BYTEA   PRIMARY KEY,
    at        BIGINT  NOT NULL
);
CREATE TABLE IF NOT EXISTS bounces (
    campaign  TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('hard', 'soft', 'sender', 'complaint', 'auto-reply', 'delivered', 'unknown')),
    recipient BYTEA,
    at        BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS bounces_recipient ON bounces (recipient, kind, at);
CREATE INDEX IF NOT EXISTS bounces_campaign ON bounces (campaign, kind);
";

/// How to reach the database, checked: no password from the command line, and TLS
/// unless the server is on this machine or plain text was asked for by name.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    tls: Tls,
    shown: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tls {
    Off,
    On {
        mode: SslMode,
        root_cert: Option<PathBuf>,
    },
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTarget({}, tls: {:?})", self.shown, self.tls)
    }
}

/// The URL with any password cut out, for messages about a URL that did not parse.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    // A password can also be a query parameter.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .map(|kv| {
                    if kv.starts_with("password=") {
                        "password=…"
                    } else {
                        kv
                    }
                })
                .collect();
            format!("{path}?{}", kept.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn is_loopback(host: &Host) -> bool {
    match host {
        Host::Tcp(h) => {
            h.eq_ignore_ascii_case("localhost")
                || h.trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Host::Unix(_) => true,
    }
}

impl PgTarget {
    /// Whether `--state` names a database rather than a directory.
    pub fn is_url(s: &str) -> bool {
        s.starts_with("postgres://") || s.starts_with("postgresql://")
    }

    /// Parses a `postgres://user@host:port/db?sslmode=…&sslrootcert=FILE` URL.
    /// `on_command_line`: from `--state`, where a password is refused; `password`: from
    /// `PGPASSWORD`, used when the URL has none.
    pub fn parse(url: &str, on_command_line: bool, password: Option<String>) -> Result<PgTarget> {
        let origin = if on_command_line {
            "--state"
        } else {
            "TACT_DATABASE_URL"
        };
        let bad = |m: &str| Error::input(Location::file(origin), format!("`{}`: {m}", redact(url)));
        if !Self::is_url(url) {
            return Err(bad("expected postgres://user@host:port/database"));
        }
        // tokio-postgres knows neither verify-full nor sslrootcert: take them out first.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ssl: Option<&str> = None;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("sslmode", v)) => ssl = Some(v),
                Some(("sslrootcert", v)) => root_cert = Some(PathBuf::from(v)),
                _ => rest.push(kv),
            }
        }
        let cleaned = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config =
            Config::from_str(&cleaned).map_err(|e| bad(&format!("not a PostgreSQL URL: {e}")))?;
        if config.get_password().is_some() && on_command_line {
            return Err(bad(
                "never put the password on the command line: set PGPASSWORD, or put the whole \
                 URL in TACT_DATABASE_URL",
            ));
        }
        if config.get_password().is_none()
            && let Some(p) = password.filter(|p| !p.is_empty())
        {
            config.password(p);
        }
        // An unreachable server fails in seconds, not after the kernel's TCP timeout.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("tact");
        }
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(bad("no host"));
        }
        let local = config.get_hosts().iter().all(is_loopback)
            && config.get_hostaddrs().iter().all(IpAddr::is_loopback);
        let tls = match ssl {
            Some("disable") => Tls::Off,
            // Plain text on loopback never leaves the machine; anywhere else it must be
            // asked for by name.
            None if local => Tls::Off,
            Some("prefer" | "allow") if local => Tls::On {
                mode: SslMode::Prefer,
                root_cert,
            },
            // rustls always verifies the certificate and the host name, so `require` is as
            // strict as `verify-full` here.
            None | Some("prefer" | "allow" | "require" | "verify-ca" | "verify-full") => Tls::On {
                mode: SslMode::Require,
                root_cert,
            },
            Some(_) => {
                return Err(bad(
                    "sslmode must be disable, prefer, require, verify-ca or verify-full",
                ));
            }
        };
        let shown = {
            let user = config.get_user().unwrap_or("");
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    Host::Tcp(h) => h.clone(),
                    Host::Unix(p) => p.display().to_string(),
                })
                .collect();
            let port = config
                .get_ports()
                .first()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let db = config.get_dbname().unwrap_or("");
            let at = if user.is_empty() { "" } else { "@" };
            format!("postgres://{user}{at}{}{port}/{db}", hosts.join(","))
        };
        Ok(PgTarget { config, tls, shown })
    }

    /// Whether this connection will use TLS (prefer: if the server offers it).
    pub fn uses_tls(&self) -> bool {
        self.tls != Tls::Off
    }

    /// A connection under this target's TLS and password rules, outside any store (tools,
    /// tests). Drop it outside an async runtime.
    pub fn client(&self) -> Result<Client> {
        let fail = |e: &dyn std::fmt::Display| {
            let mut m = format!("database {}: cannot connect: {e}", self.shown);
            if m.contains("password missing") {
                m.push_str(" (set PGPASSWORD, or put the whole URL in TACT_DATABASE_URL)");
            }
            Error::Other(m)
        };
        let mut config = self.config.clone();
        match &self.tls {
            Tls::Off => {
                config.ssl_mode(SslMode::Disable);
                off_runtime(|| config.connect(NoTls)).map_err(|e| fail(&pg_error(&e)))
            }
            Tls::On { mode, root_cert } => {
                config.ssl_mode(*mode);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
                    rustls_config(root_cert.as_deref()).map_err(|e| fail(&e))?,
                );
                off_runtime(|| config.connect(tls)).map_err(|e| fail(&pg_error(&e)))
            }
        }
    }
}

fn rustls_config(root_cert: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    crate::tls::client_config(root_cert).map_err(|e| format!("sslrootcert {e}"))
}

/// Runs blocking database work. The `postgres` client drives its own Tokio runtime, which
/// refuses to start inside another (the sender calls the ledger from async tasks): there,
/// the work leaves the runtime first.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

struct Conn {
    client: Client,
    /// Prepared statements of the hot path: one round trip a statement instead of two.
    stmts: HashMap<&'static str, Statement>,
}

pub struct PgStore {
    // RefCell: the client needs `&mut` for every query while the trait's one-row methods
    // take `&self`; callers share a store through a Mutex, never between threads at once.
    conn: RefCell<Option<Conn>>,
    shown: String,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing the connection blocks on the client's runtime too.
        if let Some(c) = self.conn.get_mut().take() {
            off_runtime(move || drop(c));
        }
    }
}

type PgResult<T> = std::result::Result<T, postgres::Error>;

/// The server's own words ("db error" alone says nothing); its details name constraint
/// columns and keyed hashes at most, never an address, which no table holds.
fn pg_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut m = e.to_string();
            let mut cur = std::error::Error::source(e);
            while let Some(c) = cur {
                m.push_str(": ");
                m.push_str(&c.to_string());
                cur = c.source();
            }
            m
        }
    }
}

fn prepared(
    stmts: &mut HashMap<&'static str, Statement>,
    c: &mut impl GenericClient,
    sql: &'static str,
) -> PgResult<Statement> {
    if let Some(s) = stmts.get(sql) {
        return Ok(s.clone());
    }
    let s = c.prepare(sql)?;
    stmts.insert(sql, s.clone());
    Ok(s)
}

fn hashes(rows: &[postgres::Row]) -> HashSet<RecipientHash> {
    rows.iter()
        .filter_map(|r| <RecipientHash>::try_from(r.get::<_, &[u8]>(0)).ok())
        .collect()
}

fn time(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

const CLAIM_ONE: &str =
    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = $3
     WHERE campaign = $1 AND recipient = $2 AND status = 'pending'
     AND NOT EXISTS (SELECT 1 FROM suppression WHERE recipient = $2)";

const FINISH: &str = "UPDATE deliveries SET status = $3, smtp_code = $4, smtp_enhanced = $5,
     message_id = COALESCE($6, message_id), updated_at = $7
     WHERE campaign = $1 AND recipient = $2";

const SETTLE: &str = "UPDATE deliveries d SET status = 'sent', smtp_code = u.code,
     smtp_enhanced = u.enhanced, message_id = COALESCE(u.mid, d.message_id), updated_at = u.at,
     relay = COALESCE(u.relay, d.relay)
     FROM UNNEST($2::bytea[], $3::int4[], $4::text[], $5::text[], $6::int8[], $7::text[])
          AS u(recipient, code, enhanced, mid, at, relay)
     WHERE d.campaign = $1 AND d.recipient = u.recipient";

// SKIP LOCKED: a row another host is claiming right now is left to it, not waited for;
// the re-check of status and suppression happens on the locked, current row.
const CLAIM_MANY: &str = "WITH picked AS (
         SELECT recipient FROM deliveries
         WHERE campaign = $1 AND recipient = ANY($2) AND status = 'pending'
         AND NOT EXISTS (SELECT 1 FROM suppression s WHERE s.recipient = deliveries.recipient)
         FOR UPDATE SKIP LOCKED)
     UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1, updated_at = $3
     FROM picked WHERE d.campaign = $1 AND d.recipient = picked.recipient AND d.status = 'pending'
     RETURNING d.recipient";

impl PgStore {
    pub fn connect(target: &PgTarget) -> Result<PgStore> {
        let client = target.client()?;
        let store = PgStore {
            conn: RefCell::new(Some(Conn {
                client,
                stmts: HashMap::new(),
            })),
            shown: target.shown.clone(),
        };
        store.with("create the tables", |c| {
            // Once they exist, a user without CREATE on the schema can still run.
            let present: bool = c
                .client
                .query_one(
                    "SELECT bool_and(to_regclass(t) IS NOT NULL) FROM UNNEST($1::text[]) AS u(t)",
                    &[&OBJECTS.to_vec()],
                )?
                .get(0);
            if !present {
                // Two hosts creating the tables at once would collide in the catalogue.
                let mut tx = c.client.transaction()?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
                tx.batch_execute(SCHEMA)?;
                tx.commit()?;
            }
            // Databases made before relays had names.
            let has_relay: bool = c
                .client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'deliveries' AND column_name = 'relay')",
                    &[],
                )?
                .get(0);
            if !has_relay {
                c.client
                    .batch_execute("ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS relay TEXT")?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    /// Runs `f` on the connection, off any async runtime; errors name the database and
    /// the step, never the password.
    fn with<R: Send>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Conn) -> PgResult<R> + Send,
    ) -> Result<R> {
        let mut guard = self
            .conn
            .try_borrow_mut()
            .map_err(|_| Error::Other(format!("database {}: used re-entrantly", self.shown)))?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::Other(format!("database {}: closed", self.shown)))?;
        off_runtime(move || f(conn))
            .map_err(|e| Error::Other(format!("database {}: {what}: {}", self.shown, pg_error(&e))))
    }
}

impl Store for PgStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn key_recorded(&self) -> Result<bool> {
        self.with("look for the key", |c| {
            Ok(c.client
                .query_opt("SELECT 1 FROM meta WHERE name = 'key_id'", &[])?
                .is_some())
        })
    }

    fn check_key(&mut self, id: &KeyId) -> Result<()> {
        let stored: Vec<u8> = self.with("check the key", |c| {
            // Read first: every open checks, and only the first needs a write.
            if let Some(r) = c
                .client
                .query_opt("SELECT value FROM meta WHERE name = 'key_id'", &[])?
            {
                return Ok(r.get(0));
            }
            let mut tx = c.client.transaction()?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('key_id', $1) ON CONFLICT (name) DO NOTHING",
                &[&&id[..]],
            )?;
            let v = tx
                .query_one("SELECT value FROM meta WHERE name = 'key_id'", &[])?
                .get(0);
            tx.commit()?;
            Ok(v)
        })?;
        if stored[..] == id[..] {
            Ok(())
        } else {
            Err(key_mismatch(&self.shown))
        }
    }

    fn facts(&self, campaign: &str, min_hours_between: u32, now: DateTime<Utc>) -> Result<Facts> {
        let since = (now - TimeDelta::hours(i64::from(min_hours_between))).timestamp();
        self.with("read the facts", |c| {
            // One snapshot for the three reads, as SQLite gives.
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let mut facts = Facts {
                suppressed: hashes(&tx.query("SELECT recipient FROM suppression", &[])?),
                // Sent, left uncertain, or refused for good: this campaign is done with them.
                already: hashes(&tx.query(
                    "SELECT recipient FROM deliveries WHERE campaign = $1 AND status IN ('sending', 'sent', 'failed')",
                    &[&campaign],
                )?),
                uncertain: hashes(&tx.query(
                    "SELECT recipient FROM deliveries WHERE campaign = $1 AND status = 'sending'",
                    &[&campaign],
                )?),
                completed_at: tx
                    .query_opt(
                        "SELECT completed_at FROM campaigns WHERE name = $1",
                        &[&campaign],
                    )?
                    .and_then(|r| r.get::<_, Option<i64>>(0))
                    .and_then(|t| DateTime::from_timestamp(t, 0)),
                ..Facts::default()
            };
            if min_hours_between > 0 {
                facts.recent = hashes(&tx.query(
                    "SELECT recipient FROM deliveries WHERE campaign <> $1 AND status IN ('sending', 'sent') AND updated_at >= $2",
                    &[&campaign, &since],
                )?);
            }
            tx.commit()?;
            Ok(facts)
        })
    }

    fn is_suppressed(&self, hash: &RecipientHash) -> Result<bool> {
        self.with("read the suppression list", |c| {
            let q = prepared(
                &mut c.stmts,
                &mut c.client,
                "SELECT 1 FROM suppression WHERE recipient = $1",
            )?;
            Ok(c.client.query_opt(&q, &[&&hash[..]])?.is_some())
        })
    }

    fn suppress(&self, hash: &RecipientHash, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        self.with("suppress", |c| {
            let n = c.client.execute(
                "INSERT INTO suppression (recipient, reason, added_at) VALUES ($1, $2, $3) ON CONFLICT (recipient) DO NOTHING",
                &[&&hash[..], &reason, &now.timestamp()],
            )?;
            Ok(n == 1)
        })
    }

    fn suppress_many(
        &mut self,
        list: &[RecipientHash],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        self.with("suppress", |c| {
            let mut tx = c.client.transaction()?;
            let mut new = 0;
            for chunk in list.chunks(CHUNK) {
                let arr: Vec<&[u8]> = chunk.iter().map(|h| &h[..]).collect();
                new += tx.execute(
                    "INSERT INTO suppression (recipient, reason, added_at)
                     SELECT DISTINCT r, $2::text, $3::int8 FROM UNNEST($1::bytea[]) AS u(r)
                     ON CONFLICT (recipient) DO NOTHING",
                    &[&arr, &reason, &now.timestamp()],
                )?;
            }
            tx.commit()?;
            Ok(usize::try_from(new).unwrap_or_default())
        })
    }

    fn suppression(&self, hash: &RecipientHash) -> Result<Option<(String, DateTime<Utc>)>> {
        self.with("read the suppression list", |c| {
            Ok(c.client
                .query_opt(
                    "SELECT reason, added_at FROM suppression WHERE recipient = $1",
                    &[&&hash[..]],
                )?
                .map(|r| (r.get(0), time(r.get(1)))))
        })
    }

    fn completed_at(&self, campaign: &str) -> Result<Option<DateTime<Utc>>> {
        self.with("read the campaign", |c| {
            Ok(c.client
                .query_opt(
                    "SELECT completed_at FROM campaigns WHERE name = $1",
                    &[&campaign],
                )?
                .and_then(|r| r.get::<_, Option<i64>>(0))
                .and_then(|t| DateTime::from_timestamp(t, 0)))
        })
    }

    fn mark_complete(&self, campaign: &str, now: DateTime<Utc>) -> Result<()> {
        self.with("mark the campaign complete", |c| {
            c.client.execute(
                "UPDATE campaigns SET completed_at = $2 WHERE name = $1",
                &[&campaign, &now.timestamp()],
            )?;
            Ok(())
        })
    }

    fn enqueue(
        &mut self,
        campaign: &str,
        recipients: &[(RecipientHash, bool)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.with("queue the recipients", |c| {
            let mut tx = c.client.transaction()?;
            tx.execute(
                "INSERT INTO campaigns (name, started_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&campaign, &now.timestamp()],
            )?;
            let q = tx.prepare(
                "INSERT INTO deliveries (campaign, recipient, status, variant, updated_at)
                 SELECT $1::text, r, 'pending', v, $4::int8 FROM UNNEST($2::bytea[], $3::text[]) AS u(r, v)
                 ON CONFLICT (campaign, recipient) DO NOTHING",
            )?;
            for chunk in recipients.chunks(CHUNK) {
                let hashes: Vec<&[u8]> = chunk.iter().map(|(h, _)| &h[..]).collect();
                let variants: Vec<&str> = chunk.iter().map(|(_, p)| variant(*p)).collect();
                tx.execute(&q, &[&campaign, &hashes, &variants, &now.timestamp()])?;
            }
            tx.commit()
        })
    }

    fn claim(&self, campaign: &str, hash: &RecipientHash, now: DateTime<Utc>) -> Result<bool> {
        self.with("claim a recipient", |c| {
            let q = prepared(&mut c.stmts, &mut c.client, CLAIM_ONE)?;
            Ok(c.client
                .execute(&q, &[&campaign, &&hash[..], &now.timestamp()])?
                == 1)
        })
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
        self.with("record a delivery", |c| {
            let q = prepared(&mut c.stmts, &mut c.client, FINISH)?;
            c.client.execute(
                &q,
                &[
                    &campaign,
                    &&hash[..],
                    &status.as_str(),
                    &reply.code.map(i32::from),
                    &reply.enhanced,
                    &message_id,
                    &now.timestamp(),
                ],
            )?;
            Ok(())
        })
    }

    fn settle_and_claim(
        &mut self,
        campaign: &str,
        done: &[Delivered],
        next: &[RecipientHash],
        now: DateTime<Utc>,
    ) -> Result<Vec<RecipientHash>> {
        let claimed: HashSet<RecipientHash> = self.with("record and claim", |c| {
            let settle = prepared(&mut c.stmts, &mut c.client, SETTLE)?;
            let claim = prepared(&mut c.stmts, &mut c.client, CLAIM_MANY)?;
            let mut tx = c.client.transaction()?;
            if !done.is_empty() {
                let recipients: Vec<&[u8]> = done.iter().map(|d| &d.hash[..]).collect();
                let codes: Vec<Option<i32>> =
                    done.iter().map(|d| d.reply.code.map(i32::from)).collect();
                let enhanced: Vec<Option<&str>> =
                    done.iter().map(|d| d.reply.enhanced.as_deref()).collect();
                let ids: Vec<Option<&str>> = done.iter().map(|d| d.message_id.as_deref()).collect();
                let at: Vec<i64> = done.iter().map(|d| d.at.timestamp()).collect();
                let relays: Vec<Option<&str>> = done.iter().map(|d| d.relay.as_deref()).collect();
                tx.execute(
                    &settle,
                    &[
                        &campaign,
                        &recipients,
                        &codes,
                        &enhanced,
                        &ids,
                        &at,
                        &relays,
                    ],
                )?;
            }
            let mut claimed = HashSet::new();
            if !next.is_empty() {
                let wanted: Vec<&[u8]> = next.iter().map(|h| &h[..]).collect();
                claimed = hashes(&tx.query(&claim, &[&campaign, &wanted, &now.timestamp()])?);
            }
            tx.commit()?;
            Ok(claimed)
        })?;
        // In the caller's order, which RETURNING does not keep.
        Ok(next
            .iter()
            .filter(|h| claimed.contains(*h))
            .copied()
            .collect())
    }

    fn claim_batch(&self) -> usize {
        // A round trip per claim would cap a host near 4,000 messages/s on loopback and far
        // lower across a network; 16 keeps what a dead host leaves uncertain small.
        16
    }

    fn relay_usage(&self, relay: &str, since: DateTime<Utc>) -> Result<u64> {
        self.with("count the relay's messages", |c| {
            let n: i64 = c
                .client
                .query_one(
                    "SELECT COUNT(*) FROM deliveries WHERE relay = $1 AND updated_at >= $2 AND status IN ('sending', 'sent')",
                    &[&relay, &since.timestamp()],
                )?
                .get(0);
            Ok(u64::try_from(n).unwrap_or_default())
        })
    }

    fn attempts(&self, campaign: &str, hash: &RecipientHash) -> Result<u32> {
        self.with("read the attempts", |c| {
            Ok(c.client
                .query_opt(
                    "SELECT attempts FROM deliveries WHERE campaign = $1 AND recipient = $2",
                    &[&campaign, &&hash[..]],
                )?
                .map(|r| u32::try_from(r.get::<_, i32>(0)).unwrap_or_default())
                .unwrap_or_default())
        })
    }

    fn release_uncertain(&self, campaign: &str) -> Result<usize> {
        self.with("release the uncertain", |c| {
            let n = c.client.execute(
                "UPDATE deliveries SET status = 'pending' WHERE campaign = $1 AND status = 'sending'",
                &[&campaign],
            )?;
            Ok(usize::try_from(n).unwrap_or_default())
        })
    }

    fn uncertain(&self, campaign: &str) -> Result<HashSet<RecipientHash>> {
        self.with("read the uncertain", |c| {
            Ok(hashes(&c.client.query(
                "SELECT recipient FROM deliveries WHERE campaign = $1 AND status = 'sending'",
                &[&campaign],
            )?))
        })
    }

    fn drop_pending_except(
        &mut self,
        campaign: &str,
        keep: &dyn Fn(&RecipientHash) -> bool,
    ) -> Result<usize> {
        let pending = self.with("read the pending", |c| {
            Ok(hashes(&c.client.query(
                "SELECT recipient FROM deliveries WHERE campaign = $1 AND status = 'pending'",
                &[&campaign],
            )?))
        })?;
        // `keep` is the caller's and need not be Send: decide here, delete there.
        let stale: Vec<RecipientHash> = pending.into_iter().filter(|h| !keep(h)).collect();
        self.with("drop the pending", |c| {
            let mut tx = c.client.transaction()?;
            let mut n = 0;
            for chunk in stale.chunks(CHUNK) {
                let arr: Vec<&[u8]> = chunk.iter().map(|h| &h[..]).collect();
                n += tx.execute(
                    "DELETE FROM deliveries WHERE campaign = $1 AND recipient = ANY($2) AND status = 'pending'",
                    &[&campaign, &arr],
                )?;
            }
            tx.commit()?;
            Ok(usize::try_from(n).unwrap_or_default())
        })
    }

    fn unclaim(&self, campaign: &str, hash: &RecipientHash, now: DateTime<Utc>) -> Result<()> {
        self.with("give back a claim", |c| {
            c.client.execute(
                "UPDATE deliveries SET status = 'pending', attempts = GREATEST(attempts - 1, 0), updated_at = $3
                 WHERE campaign = $1 AND recipient = $2 AND status = 'sending'",
                &[&campaign, &&hash[..], &now.timestamp()],
            )?;
            Ok(())
        })
    }

    fn drop_pending(&self, campaign: &str, hash: &RecipientHash) -> Result<bool> {
        self.with("drop a pending row", |c| {
            Ok(c.client.execute(
                "DELETE FROM deliveries WHERE campaign = $1 AND recipient = $2 AND status = 'pending'",
                &[&campaign, &&hash[..]],
            )? == 1)
        })
    }

    fn counts(&self, campaign: &str) -> Result<StatusCounts> {
        self.with("count", |c| {
            let mut counts = StatusCounts::default();
            for r in c.client.query(
                "SELECT status, COUNT(*) FROM deliveries WHERE campaign = $1 GROUP BY status",
                &[&campaign],
            )? {
                counts.add(r.get(0), r.get(1));
            }
            Ok(counts)
        })
    }

    fn audit_append(
        &mut self,
        keys: &Keys,
        campaign: &str,
        kind: &str,
        body: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        self.with("append to the audit log", |c| {
            let mut tx = c.client.transaction()?;
            // Held to commit: appenders on every host queue here, so each reads the head
            // the one before it wrote and the chain never forks.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])?;
            let last = tx
                .query_opt("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1", &[])?
                .map(|r| (r.get(0), r.get(1)));
            let checkpoint = tx
                .query_opt(
                    "SELECT next_seq, prev FROM audit_checkpoint WHERE id = 1",
                    &[],
                )?
                .map(|r| (r.get(0), r.get(1)));
            let l = audit::link(keys, last, checkpoint, campaign, kind, body, now);
            tx.execute(
                "INSERT INTO audit (seq, at, campaign, kind, operator, body, prev, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&l.seq, &l.at, &campaign, &kind, &l.operator, &l.body, &l.prev, &&l.mac[..]],
            )?;
            tx.execute(
                "INSERT INTO audit_head (id, seq, mac, seal) VALUES (1, $1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, mac = excluded.mac,
                 seal = excluded.seal",
                &[&l.seq, &&l.mac[..], &&l.head_seal[..]],
            )?;
            tx.commit()?;
            Ok(l.seq)
        })
    }

    fn audit_events(&self, campaign: Option<&str>) -> Result<Vec<Event>> {
        self.with("read the audit log", |c| {
            Ok(c.client
                .query(
                    "SELECT seq, at, campaign, kind, operator, body FROM audit
                     WHERE $1::text IS NULL OR campaign = $1 ORDER BY seq",
                    &[&campaign],
                )?
                .iter()
                .map(|r| {
                    audit::event(
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get::<_, &str>(5),
                    )
                })
                .collect())
        })
    }

    fn audit_verify(&self, keys: &Keys) -> Result<std::result::Result<Verified, Broken>> {
        let (checkpoint, head, rows) = self.with("read the audit log", |c| {
            // The checkpoint and the events from one snapshot: a purge in between would
            // otherwise look like a break.
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let checkpoint = tx
                .query_opt(
                    "SELECT next_seq, prev, at, mac FROM audit_checkpoint WHERE id = 1",
                    &[],
                )?
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)));
            let head = tx
                .query_opt("SELECT seq, mac, seal FROM audit_head WHERE id = 1", &[])?
                .map(|r| audit::Head {
                    seq: r.get(0),
                    mac: r.get(1),
                    seal: r.get(2),
                });
            let rows = tx.query(
                "SELECT seq, at, campaign, kind, operator, body, prev, mac FROM audit ORDER BY seq",
                &[],
            )?;
            tx.commit()?;
            Ok((checkpoint, head, rows))
        })?;
        audit::verify(
            keys,
            retention::open_checkpoint(keys, checkpoint),
            head,
            rows.iter().map(|r| {
                Ok(audit::Stored {
                    seq: r.get(0),
                    at: r.get(1),
                    campaign: r.get(2),
                    kind: r.get(3),
                    operator: r.get(4),
                    body: r.get(5),
                    prev: r.get(6),
                    mac: r.get(7),
                })
            }),
        )
    }

    fn audit_checkpoint(&self, keys: &Keys) -> Result<Option<std::result::Result<Checkpoint, ()>>> {
        let row = self.with("read the audit checkpoint", |c| {
            Ok(c.client
                .query_opt(
                    "SELECT next_seq, prev, at, mac FROM audit_checkpoint WHERE id = 1",
                    &[],
                )?
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
        })?;
        Ok(retention::open_checkpoint(keys, row))
    }

    fn purge(&mut self, keys: &Keys, older_than_days: u32, now: DateTime<Utc>) -> Result<Purged> {
        let cutoff = retention::cutoff(older_than_days, now);
        let purged = self.with("purge", |c| {
            let mut tx = c.client.transaction()?;
            // The chain's head moves: no append may interleave.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])?;
            let kept: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM deliveries d JOIN campaigns c ON c.name = d.campaign
                     WHERE c.completed_at IS NULL AND d.updated_at < $1",
                    &[&cutoff],
                )?
                .get(0);
            let deliveries = tx.execute(
                "DELETE FROM deliveries WHERE updated_at < $1
                 AND campaign IN (SELECT name FROM campaigns WHERE completed_at IS NOT NULL)",
                &[&cutoff],
            )?;
            let bounces = tx.execute("DELETE FROM bounces WHERE at < $1", &[&cutoff])?;
            // The last event to go becomes the checkpoint the remaining chain hangs from.
            let last_gone: Option<(i64, Vec<u8>)> = tx
                .query_opt(
                    "SELECT seq, mac FROM audit WHERE at < $1 ORDER BY seq DESC LIMIT 1",
                    &[&cutoff],
                )?
                .map(|r| (r.get(0), r.get(1)));
            let mut audit_events = 0;
            if let Some((seq, mac)) = last_gone {
                audit_events = tx.execute("DELETE FROM audit WHERE seq <= $1", &[&seq])?;
                let at = now.timestamp();
                let seal = retention::checkpoint_mac(keys, seq + 1, &mac, at);
                tx.execute(
                    "INSERT INTO audit_checkpoint (id, next_seq, prev, at, mac) VALUES (1, $1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET next_seq = excluded.next_seq, prev = excluded.prev,
                     at = excluded.at, mac = excluded.mac",
                    &[&(seq + 1), &mac, &at, &&seal[..]],
                )?;
            }
            tx.commit()?;
            Ok(Purged {
                deliveries: usize::try_from(deliveries).unwrap_or_default(),
                bounces: usize::try_from(bounces).unwrap_or_default(),
                audit_events: usize::try_from(audit_events).unwrap_or_default(),
                kept_incomplete: usize::try_from(kept).unwrap_or_default(),
            })
        })?;
        let body = retention::purge_event(older_than_days, &purged);
        self.audit_append(keys, "-", "purge", &body, now)?;
        Ok(purged)
    }

    fn rows_with_hash_prefix(&self, prefix: &[u8]) -> Result<Vec<(String, RecipientHash)>> {
        let (lo, hi) = super::verp::prefix_range(prefix);
        self.with("attribute a bounce token", |c| {
            Ok(c.client
                .query(
                    "SELECT campaign, recipient FROM deliveries
                     WHERE recipient BETWEEN $1 AND $2",
                    &[&&lo[..], &&hi[..]],
                )?
                .iter()
                .filter_map(|r| {
                    let hash: Vec<u8> = r.get(1);
                    Some((r.get(0), RecipientHash::try_from(hash.as_slice()).ok()?))
                })
                .collect())
        })
    }

    fn deliveries_of(&self, hash: &RecipientHash) -> Result<Vec<Delivery>> {
        self.with("read one person's rows", |c| {
            Ok(c.client
                .query(
                    "SELECT campaign, status, variant, attempts, updated_at FROM deliveries
                     WHERE recipient = $1 ORDER BY updated_at, campaign",
                    &[&&hash[..]],
                )?
                .iter()
                .map(|r| Delivery {
                    campaign: r.get(0),
                    status: r.get(1),
                    variant: r.get(2),
                    attempts: u32::try_from(r.get::<_, i32>(3)).unwrap_or_default(),
                    at: time(r.get(4)),
                })
                .collect())
        })
    }

    /// Deleted rows stay in the table's dead tuples until (auto)vacuum reclaims them; they
    /// hold a keyed hash and delivery states, never an address.
    fn forget(&mut self, hash: &RecipientHash, now: DateTime<Utc>) -> Result<usize> {
        self.with("erase", |c| {
            let mut tx = c.client.transaction()?;
            tx.execute(
                "INSERT INTO suppression (recipient, reason, added_at) VALUES ($1, $2, $3)
                 ON CONFLICT (recipient) DO UPDATE SET reason = excluded.reason, added_at = excluded.added_at",
                &[&&hash[..], &REASON_ERASURE, &now.timestamp()],
            )?;
            let n = tx.execute("DELETE FROM deliveries WHERE recipient = $1", &[&&hash[..]])?;
            tx.execute("DELETE FROM bounces WHERE recipient = $1", &[&&hash[..]])?;
            tx.commit()?;
            Ok(usize::try_from(n).unwrap_or_default())
        })
    }

    fn record_report(
        &mut self,
        report: &ReportHash,
        events: &[BounceEvent],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Recorded>>> {
        self.with("record a bounce report", |c| {
            let mut tx = c.client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&BOUNCE_LOCK])?;
            let new = tx.execute(
                "INSERT INTO bounce_reports (report, at) VALUES ($1, $2) ON CONFLICT (report) DO NOTHING",
                &[&&report[..], &now.timestamp()],
            )?;
            if new == 0 {
                return Ok(None);
            }
            let at = now.timestamp();
            let out = record_events(events, |step| match step {
                Step::Insert(ev) => tx
                    .execute(
                        "INSERT INTO bounces (campaign, kind, recipient, at) VALUES ($1, $2, $3, $4)",
                        &[&ev.campaign, &ev.kind, &ev.recipient.as_ref().map(|h| &h[..]), &at],
                    )
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                Step::Count(hash, kind, since) => tx
                    .query_one(
                        "SELECT COUNT(*) FROM bounces WHERE recipient = $1 AND kind = $2 AND at >= $3",
                        &[&&hash[..], &kind, &since.timestamp()],
                    )
                    .map(|r| r.get(0)),
                Step::Suppress(hash, reason) => tx
                    .execute(
                        "INSERT INTO suppression (recipient, reason, added_at) VALUES ($1, $2, $3) ON CONFLICT (recipient) DO NOTHING",
                        &[&&hash[..], &reason, &at],
                    )
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            })?;
            tx.commit()?;
            Ok(Some(out))
        })
    }

    fn bounces_of(&self, hash: &RecipientHash) -> Result<Vec<BounceRow>> {
        self.with("read one person's bounces", |c| {
            Ok(c.client
                .query(
                    "SELECT campaign, kind, at FROM bounces WHERE recipient = $1 ORDER BY at",
                    &[&&hash[..]],
                )?
                .iter()
                .map(|r| BounceRow {
                    campaign: r.get(0),
                    kind: r.get(1),
                    at: time(r.get(2)),
                })
                .collect())
        })
    }

    fn bounce_figures(&self, campaign: &str) -> Result<BounceFigures> {
        self.with("read the bounce figures", |c| {
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let sent: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM deliveries WHERE campaign = $1 AND status = 'sent'",
                    &[&campaign],
                )?
                .get(0);
            let mut f = BounceFigures {
                sent: u64::try_from(sent).unwrap_or_default(),
                ..BounceFigures::default()
            };
            for r in tx.query(
                "SELECT kind, COUNT(*) FROM bounces WHERE campaign = $1 GROUP BY kind",
                &[&campaign],
            )? {
                f.add(r.get::<_, &str>(0), r.get(1));
            }
            tx.commit()?;
            Ok(f)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_off_the_command_line_and_out_of_messages() {
        let e = PgTarget::parse("postgres://tact:s3cret@db.example/tact", true, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("PGPASSWORD") && !e.contains("s3cret"), "{e}");
        let e = PgTarget::parse(
            "postgres://tact@db.example/tact?password=s3cret",
            true,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("PGPASSWORD") && !e.contains("s3cret"), "{e}");
        // From the environment a password is fine, and still never shown.
        let t = PgTarget::parse("postgres://tact:s3cret@db.example/tact", false, None).unwrap();
        assert!(!t.to_string().contains("s3cret") && !format!("{t:?}").contains("s3cret"));
        let e = PgTarget::parse(
            "postgres://tact:s3cret@db.example/tact?sslmode=bogus",
            false,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslmode") && !e.contains("s3cret"), "{e}");
        assert_eq!(
            redact("postgres://u:pw@h:5/d?x=1"),
            "postgres://u@h:5/d?x=1"
        );
    }

    #[test]
    fn tls_is_required_off_this_machine_unless_disabled_by_name() {
        let tls = |url: &str| PgTarget::parse(url, true, None).unwrap().tls;
        let require = Tls::On {
            mode: SslMode::Require,
            root_cert: None,
        };
        assert_eq!(tls("postgres://tact@db.example/tact"), require);
        assert_eq!(
            tls("postgres://tact@db.example/tact?sslmode=prefer"),
            require
        );
        assert_eq!(
            tls("postgresql://tact@10.0.0.5/tact?sslmode=verify-full"),
            require
        );
        assert_eq!(
            tls("postgres://tact@db.example/tact?sslmode=disable"),
            Tls::Off
        );
        assert_eq!(tls("postgres://tact@127.0.0.1:5433/tact"), Tls::Off);
        assert_eq!(tls("postgres://tact@localhost/tact"), Tls::Off);
        assert_eq!(tls("postgres://tact@[::1]:5432/tact"), Tls::Off);
        assert_eq!(
            tls("postgres://tact@localhost/tact?sslmode=require&sslrootcert=/etc/ca.pem"),
            Tls::On {
                mode: SslMode::Require,
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        let t = PgTarget::parse("postgres://tact@db.example:6432/campaigns", true, None).unwrap();
        assert_eq!(t.to_string(), "postgres://tact@db.example:6432/campaigns");
        assert!(PgTarget::parse("mysql://x", true, None).is_err());
        assert!(PgTarget::is_url("postgresql://h/d") && !PgTarget::is_url("/var/lib/tact"));
    }
}
