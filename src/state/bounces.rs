//! What the bounce loop keeps in a store: which reports were imported (a keyed hash of
//! each report's key, so the same report never counts twice), one row per bounce event
//! (campaign, kind, time, and the recipient's keyed hash only where the policy needs it:
//! the soft-bounce window), and the figures per campaign that the summaries and the TUI
//! show. The policy itself is `crate::bounce::import`; a store only does what an event
//! asks, in one transaction per report.

use chrono::{DateTime, Utc};

use super::RecipientHash;

/// The suppression reasons the bounce loop writes.
pub const REASON_BOUNCE: &str = "bounce";
pub const REASON_COMPLAINT: &str = "complaint";

/// Every kind a bounce event may have (the `kind` of a parsed report).
pub const KINDS: [&str; 7] = [
    "hard",
    "soft",
    "sender",
    "complaint",
    "auto-reply",
    "delivered",
    "unknown",
];

/// The campaign of an event nobody could attribute.
pub const NO_CAMPAIGN: &str = "-";

/// A keyed hash of a report's key (`Keys::report_hash`): a store never sees the
/// Message-ID, nor even its plain SHA-256.
pub type ReportHash = [u8; 32];

/// One finding of a report, as the policy decided to record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceEvent {
    /// One of `KINDS`.
    pub kind: &'static str,
    /// The campaign it counts for, `NO_CAMPAIGN` when unknown.
    pub campaign: String,
    /// Kept only when the policy needs it (`suppress` is set); `None` otherwise, so a
    /// sender refusal or an auto-reply leaves no trace of the person.
    pub recipient: Option<RecipientHash>,
    pub suppress: Option<SuppressWhen>,
}

/// Suppress the event's recipient with `reason` once they have `at_least` events of this
/// kind since `since`, this one included (1: at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuppressWhen {
    pub reason: &'static str,
    pub at_least: u32,
    pub since: DateTime<Utc>,
}

/// What recording one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The recipient's events of this kind since `SuppressWhen::since`, this one included
    /// (0 when the event asked for no suppression).
    pub count: u32,
    pub suppressed: Suppressed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suppressed {
    /// Below the limit, or no suppression asked for.
    No,
    /// Added to the list now.
    New,
    /// Already on the list: the entry keeps its reason and date.
    Already,
}

/// One bounce event kept about a person (the soft-bounce window's rows, and those of hard
/// bounces and complaints): what `export` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BounceRow {
    pub campaign: String,
    pub kind: String,
    pub at: DateTime<Utc>,
}

/// One campaign's loop: what the ledger says was sent and what came back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BounceFigures {
    pub sent: u64,
    pub hard: u64,
    pub soft: u64,
    pub sender: u64,
    pub complaint: u64,
    pub auto_reply: u64,
    pub delivered: u64,
    pub unknown: u64,
}

impl BounceFigures {
    pub(super) fn add(&mut self, kind: &str, n: i64) {
        let n = u64::try_from(n).unwrap_or_default();
        let slot = match kind {
            "hard" => &mut self.hard,
            "soft" => &mut self.soft,
            "sender" => &mut self.sender,
            "complaint" => &mut self.complaint,
            "auto-reply" => &mut self.auto_reply,
            "delivered" => &mut self.delivered,
            _ => &mut self.unknown,
        };
        *slot += n;
    }

    /// `n` over the messages sent; `None` before anything was sent.
    pub fn rate(&self, n: u64) -> Option<f64> {
        // Counts stay far below 2^52, where f64 is exact.
        #[allow(clippy::cast_precision_loss)]
        (self.sent > 0).then(|| n as f64 / self.sent as f64)
    }
}

/// One statement of `record_events`, which each store runs in its own SQL.
pub(super) enum Step<'a> {
    /// Insert the event's row; returns nothing of use.
    Insert(&'a BounceEvent),
    /// The recipient's events of this kind since then.
    Count(&'a RecipientHash, &'static str, DateTime<Utc>),
    /// Add the recipient to the list with this reason unless there; 1 when added.
    Suppress(&'a RecipientHash, &'static str),
}

/// What both stores' `record_report` does with the events once the report is new, inside
/// their transaction: insert each, and where one asks for it, count the recipient's events
/// in the window and suppress at the limit. `run` is the store's SQL for each step.
pub(super) fn record_events<E>(
    events: &[BounceEvent],
    mut run: impl FnMut(Step<'_>) -> std::result::Result<i64, E>,
) -> std::result::Result<Vec<Recorded>, E> {
    let mut out = Vec::with_capacity(events.len());
    for ev in events {
        run(Step::Insert(ev))?;
        let (Some(rule), Some(hash)) = (ev.suppress, ev.recipient.as_ref()) else {
            out.push(Recorded {
                count: 0,
                suppressed: Suppressed::No,
            });
            continue;
        };
        let count = u32::try_from(run(Step::Count(hash, ev.kind, rule.since))?).unwrap_or(u32::MAX);
        let suppressed = if count < rule.at_least {
            Suppressed::No
        } else if run(Step::Suppress(hash, rule.reason))? == 1 {
            Suppressed::New
        } else {
            Suppressed::Already
        };
        out.push(Recorded { count, suppressed });
    }
    Ok(out)
}
