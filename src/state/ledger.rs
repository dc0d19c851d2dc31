//! The ledger and suppression list, keyed hashes only: the handle callers hold, whichever
//! store (`store.rs`) is behind it — SQLite in the state directory, or a PostgreSQL
//! database shared by several hosts.
//!
//! One row per campaign × recipient. `sending` is committed before the SMTP transaction
//! starts and `sent` after the server's 250, so a crash can only leave a row `sending`:
//! the next run counts it as uncertain and never resends it unless asked. At most once, by
//! construction. SMTP replies are kept as code and enhanced status only, because servers
//! quote addresses in their text.

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::RecipientHash;
use super::postgres::PgTarget;
use super::store::Store;
use crate::error::Result;

pub use super::sqlite::LEDGER_FILE;

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

/// What the ledger knows of a campaign and the others, by keyed hash: what the plan is made
/// of, so that `check`, `preview`, the dry run, the composer and `send` all count alike.
/// Empty for a campaign never sent.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub suppressed: HashSet<RecipientHash>,
    /// Reached by this campaign, refused for good, or left uncertain by a broken run.
    pub already: HashSet<RecipientHash>,
    /// Reached by another campaign within `min_hours_between`.
    pub recent: HashSet<RecipientHash>,
    /// Left `sending` by a run that broke off around the hand-over: maybe delivered, maybe
    /// not. Also in `already`, so never resent unless the operator asks.
    pub uncertain: HashSet<RecipientHash>,
    /// When a run of this campaign ended with nothing pending. Nobody else gets it then,
    /// not even rows the CSV gained, and not after a purge took the per-recipient rows.
    pub completed_at: Option<DateTime<Utc>>,
    /// The uncertain recipients `--retry-uncertain` puts back in the plan: in a complete
    /// campaign, they alone.
    pub retrying: HashSet<RecipientHash>,
}

impl Facts {
    pub(crate) fn is_empty(&self) -> bool {
        self.suppressed.is_empty()
            && self.already.is_empty()
            && self.recent.is_empty()
            && self.completed_at.is_none()
    }

    /// Whether completion keeps this recipient out (a complete campaign sends nobody new).
    pub(crate) fn closed_to(&self, h: &RecipientHash) -> bool {
        self.completed_at.is_some() && !self.retrying.contains(h)
    }

    /// The facts as `--retry-uncertain` will make them once the gate has passed: the
    /// uncertain recipients are pending again (and, in a complete campaign, the only ones).
    pub fn retrying_uncertain(mut self) -> Facts {
        for h in &self.uncertain {
            self.already.remove(h);
        }
        self.retrying = std::mem::take(&mut self.uncertain);
        self
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

impl StatusCounts {
    pub(super) fn add(&mut self, status: &str, n: i64) {
        let n = usize::try_from(n).unwrap_or_default();
        match status {
            "pending" => self.pending += n,
            "sending" => self.sending += n,
            "sent" => self.sent += n,
            _ => self.failed += n,
        }
    }
}

/// Where a state's store is: the SQLite file in the local state directory, or a shared
/// PostgreSQL database. The master key is always local.
#[derive(Debug, Clone)]
pub enum Location {
    Local(std::path::PathBuf),
    Postgres(Box<PgTarget>),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(dir) => write!(f, "{}", dir.display()),
            Location::Postgres(t) => write!(f, "{t}"),
        }
    }
}

/// The handle every caller holds: a store, used through `Deref` as `dyn Store`.
pub struct Ledger(Box<dyn Store>);

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ledger({})", self.0.describe())
    }
}

impl std::ops::Deref for Ledger {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl std::ops::DerefMut for Ledger {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.0
    }
}

impl Ledger {
    /// Opens (creating) the SQLite ledger in `dir`, in WAL mode. `synchronous=NORMAL`
    /// survives a killed process; `durable` asks for FULL, which also survives a power cut,
    /// at a tenth of the speed.
    pub fn open(dir: &Path, durable: bool) -> Result<Ledger> {
        Ok(Ledger(Box::new(super::sqlite::SqliteStore::open(
            dir, durable,
        )?)))
    }

    /// Connects to a shared PostgreSQL store, creating its tables when missing.
    pub fn connect(target: &PgTarget) -> Result<Ledger> {
        Ok(Ledger(Box::new(super::postgres::PgStore::connect(target)?)))
    }

    /// Opens the store at `location`. `durable` only matters to SQLite: PostgreSQL's own
    /// settings decide what a commit survives.
    pub fn open_at(location: &Location, durable: bool) -> Result<Ledger> {
        match location {
            Location::Local(dir) => Ledger::open(dir, durable),
            Location::Postgres(t) => Ledger::connect(t),
        }
    }

    /// Wraps any store (tests, other backends).
    pub fn from_store(store: Box<dyn Store>) -> Ledger {
        Ledger(store)
    }
}

/// A recipient the server accepted, not yet recorded: see `Store::settle_and_claim`.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub hash: RecipientHash,
    pub reply: Reply,
    pub message_id: Option<String>,
    pub at: DateTime<Utc>,
    /// The relay's name from the campaign (never its URL), for its daily quota.
    pub relay: Option<String>,
}
