//! The storage trait behind the ledger: one set of operations, two implementations — the
//! embedded SQLite file of one host (`sqlite.rs`) and a PostgreSQL database that several
//! hosts share (`postgres.rs`). Both pass the same test suite (`tests/store/`).
//!
//! Every operation the rest of tact performs on its ledger, suppression list and audit log
//! is here, so no caller ever reaches into a connection. What is stored is the same in both:
//! keyed hashes of addresses, SMTP codes without their text, audit events without data.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::audit::{Broken, Event, Verified};
use super::bounces::{BounceEvent, BounceFigures, BounceRow, Recorded, ReportHash};
use super::erase::{Delivery, REASON_UNSUBSCRIBE, Unsubscribed};
use super::ledger::Facts;
use super::ledger::{Delivered, Reply, Status, StatusCounts};
use super::retention::{Checkpoint, Purged};
use super::{KeyId, Keys, RecipientHash, TokenKey};
use crate::error::Result;

/// The ledger, suppression list and audit log of one state, wherever they are kept.
///
/// Methods that only read or change one row take `&self`; those that need one transaction
/// around several statements take `&mut self`.
pub trait Store: Send {
    /// Where this store is, for messages: a file path, or a database URL without its
    /// password.
    fn describe(&self) -> String;

    /// Records this key's identifier in an empty store, or refuses a key whose identifier
    /// differs from the one recorded: hosts that share a store must share one master key,
    /// or their hashes and tokens would not agree. An input error (exit 2) on a mismatch.
    fn check_key(&mut self, id: &KeyId) -> Result<()>;

    /// Whether some key's identifier is recorded: a shared database is set up by
    /// `tact init`, and one that never was is not where this state lives.
    fn key_recorded(&self) -> Result<bool>;

    /// What the plan needs to know about this campaign and the others.
    fn facts(&self, campaign: &str, min_hours_between: u32, now: DateTime<Utc>) -> Result<Facts>;

    fn is_suppressed(&self, hash: &RecipientHash) -> Result<bool>;

    /// Returns whether the address was new to the list; an existing entry keeps its reason.
    fn suppress(&self, hash: &RecipientHash, reason: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Adds many hashes in one transaction; returns how many were new to the list.
    fn suppress_many(
        &mut self,
        hashes: &[RecipientHash],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<usize>;

    /// The reason and date of a suppression, if the hash is on the list.
    fn suppression(&self, hash: &RecipientHash) -> Result<Option<(String, DateTime<Utc>)>>;

    fn completed_at(&self, campaign: &str) -> Result<Option<DateTime<Utc>>>;

    fn mark_complete(&self, campaign: &str, now: DateTime<Utc>) -> Result<()>;

    /// Records the run's recipients (hash, personalised) as pending, in one transaction;
    /// rows that already exist keep their status.
    fn enqueue(
        &mut self,
        campaign: &str,
        recipients: &[(RecipientHash, bool)],
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Claims one pending recipient for sending, in the same statement that re-reads the
    /// suppression list, so an unsubscribe committed before it is always seen. `false`
    /// when the recipient is suppressed, claimed by another run or not pending: the caller
    /// must then not send.
    fn claim(&self, campaign: &str, hash: &RecipientHash, now: DateTime<Utc>) -> Result<bool>;

    fn finish(
        &self,
        campaign: &str,
        hash: &RecipientHash,
        status: Status,
        reply: &Reply,
        message_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// In one transaction: records every `done` as `sent` (as `finish` does), then claims
    /// those of `next` that are pending and not suppressed (`sending`, attempts + 1) and
    /// returns the claimed ones. Nobody else can claim a row this returns, and a row
    /// another run holds is skipped rather than waited for: hosts walking the same list
    /// split it between them. A crash after the commit leaves the claimed batch `sending`,
    /// uncertain, never resent: that batch is all a dead host can leave in doubt.
    fn settle_and_claim(
        &mut self,
        campaign: &str,
        done: &[Delivered],
        next: &[RecipientHash],
        now: DateTime<Utc>,
    ) -> Result<Vec<RecipientHash>>;

    /// Records one recipient's 250 and claims the next in a single transaction: one commit
    /// a message instead of two (`settle_and_claim` with batches of one).
    fn sent_then_claim(
        &mut self,
        campaign: &str,
        done: Option<&Delivered>,
        next: &RecipientHash,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = done.map_or(&[][..], std::slice::from_ref);
        Ok(!self
            .settle_and_claim(campaign, done, std::slice::from_ref(next), now)?
            .is_empty())
    }

    /// How many recipients one claim should take. SQLite claims one at a time, so a crash
    /// leaves at most one uncertain per connection; a shared database claims batches, so
    /// that hosts spend their time sending rather than waiting on round trips.
    fn claim_batch(&self) -> usize {
        1
    }

    /// Messages this relay was handed since `since`, over every campaign (its daily quota).
    fn relay_usage(&self, relay: &str, since: DateTime<Utc>) -> Result<u64>;

    fn attempts(&self, campaign: &str, hash: &RecipientHash) -> Result<u32>;

    /// `--retry-uncertain`: the operator has checked with the relay and wants them resent.
    fn release_uncertain(&self, campaign: &str) -> Result<usize>;

    /// The recipients a broken connection or a dead host left `sending` (uncertain).
    fn uncertain(&self, campaign: &str) -> Result<HashSet<RecipientHash>>;

    /// Drops this campaign's `pending` rows, except those of `keep`: people who left the
    /// plan since they were queued (suppressed, consent withdrawn, gone from the CSV). A
    /// pending row was never handed to a server, so this loses no delivery, and the campaign
    /// can complete without them. Returns how many were dropped.
    fn drop_pending_except(
        &mut self,
        campaign: &str,
        keep: &dyn Fn(&RecipientHash) -> bool,
    ) -> Result<usize>;

    /// Drops one recipient's `pending` row (suppressed while the run was going).
    fn drop_pending(&self, campaign: &str, hash: &RecipientHash) -> Result<bool>;
    /// Gives back a claim that never reached a server (its relay began to rest before its
    /// turn): pending again, the claim's attempt not counted, and the last reply kept.
    fn unclaim(&self, campaign: &str, hash: &RecipientHash, now: DateTime<Utc>) -> Result<()>;

    fn counts(&self, campaign: &str) -> Result<StatusCounts>;

    /// Appends one event to the hash chain; concurrent appenders (processes or hosts) are
    /// serialised so the chain never forks. Returns the event's sequence number.
    fn audit_append(
        &mut self,
        keys: &Keys,
        campaign: &str,
        kind: &str,
        body: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<i64>;

    /// The events, oldest first; of one campaign when given.
    fn audit_events(&self, campaign: Option<&str>) -> Result<Vec<Event>>;

    /// Walks the whole chain and checks that it reaches the head sealed by the last
    /// append (kept in the same transaction as each event); the first event that does not
    /// fit, or is missing from the end, is named.
    fn audit_verify(&self, keys: &Keys) -> Result<std::result::Result<Verified, Broken>>;

    /// The sealed checkpoint, if a purge left one; `Err` if its seal is wrong.
    fn audit_checkpoint(&self, keys: &Keys) -> Result<Option<std::result::Result<Checkpoint, ()>>>;

    /// Storage limitation: see `retention.rs`.
    fn purge(&mut self, keys: &Keys, older_than_days: u32, now: DateTime<Utc>) -> Result<Purged>;

    /// The (campaign, recipient) of every ledger row whose recipient hash begins with
    /// `prefix`: what a VERP bounce token refers to (`verp.rs`). One index seek per
    /// campaign, never a scan of the rows.
    fn rows_with_hash_prefix(&self, prefix: &[u8]) -> Result<Vec<(String, RecipientHash)>>;

    /// Every ledger row of this recipient, oldest first.
    fn deliveries_of(&self, hash: &RecipientHash) -> Result<Vec<Delivery>>;

    /// Erasure (GDPR Art. 17), in one transaction: the hash goes on the suppression list
    /// with reason `erasure` (replacing an older reason), then every delivery row of
    /// theirs, for every campaign, is deleted, and their bounce events with them. Returns
    /// how many delivery rows were deleted.
    fn forget(&mut self, hash: &RecipientHash, now: DateTime<Utc>) -> Result<usize>;

    /// Records one imported bounce report in one transaction: its keyed hash, then each
    /// event, and the suppressions the events ask for (an existing entry keeps its reason
    /// and date). `None`, with nothing written, when this report was recorded before: the
    /// same report imported twice counts once, however many hosts import it at once.
    /// Imports are serialised, so a soft-bounce window is counted over every event.
    fn record_report(
        &mut self,
        report: &ReportHash,
        events: &[BounceEvent],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Recorded>>>;

    /// Every bounce event kept about this recipient, oldest first (`export`).
    fn bounces_of(&self, hash: &RecipientHash) -> Result<Vec<BounceRow>>;

    /// One campaign's loop: messages sent (the ledger) and bounce events by kind.
    fn bounce_figures(&self, campaign: &str) -> Result<BounceFigures>;

    /// Opens an unsubscribe token with the token key alone and suppresses that recipient
    /// (reason `unsubscribe`). `None` for a forged, truncated or foreign token: nothing is
    /// written then. An existing entry keeps its reason and date.
    fn unsubscribe_token(
        &self,
        key: &TokenKey,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Unsubscribed>> {
        let Some((campaign, hash)) = key.open(token) else {
            return Ok(None);
        };
        let new = self.suppress(&hash, REASON_UNSUBSCRIBE, now)?;
        Ok(Some(Unsubscribed { campaign, new }))
    }
}

/// The message every store gives when the key does not match the one it recorded.
pub(super) fn key_mismatch(store: &str) -> crate::error::Error {
    crate::error::Error::input(
        crate::error::Location::file(store),
        "this store was set up with a different master key: every host that shares it must \
         use the same key (copy master.key from the first host and run \
         `tact init --import-key FILE`)",
    )
}
