//! Sending: the send loop, its rate limit, retries and ledger updates.
//!
//! Every connection claims its next recipient in the ledger (`sending`, committed) before
//! the SMTP transaction starts and records the 250 afterwards, together with its next
//! claim: a crash leaves at most one uncertain recipient per connection, never a resend.
//! The transport lives in `smtp` (and `dkim` signs).

mod commit;
mod dkim;
pub mod orchestrate;
pub mod provider;
pub mod sendmail;
pub mod setup;
mod smtp;
pub mod test_send;

pub use dkim::{DKIM_HEADERS, load_dkim_key, sign};
pub use provider::{Pace, Provider};
use smtp::{After, Attempt, Conn, connect, transact};
pub use smtp::{SmtpTarget, Timeouts, redact_url};

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use lettre::Address;
use lettre::transport::smtp::extension::ClientId;

use crate::campaign::Campaign;
use crate::error::{Error, Result};
use crate::plan::Prepared;
use crate::state::ledger::{Delivered, Ledger, Reply, Status};
use crate::state::{Keys, RecipientHash};

#[derive(Debug, Clone)]
pub struct SendOptions {
    pub concurrency: usize,
    pub rate_per_second: f64,
    /// How many tries a recipient gets before a 4xx leaves them pending for a later run.
    pub max_attempts: u32,
    /// First retry delay; doubles each time.
    pub backoff: Duration,
    /// Consecutive failures after which the run stops by itself.
    pub pause_after: usize,
    /// RCPT-time "no such user" refusals, as a share of the recipients answered, above
    /// which the run pauses, once `BREAKER_AFTER` recipients have been answered.
    pub max_hard_bounce_rate: f64,
    /// Each provider's limits, in `Provider::ALL` order.
    pub pacing: [Pace; 5],
}

impl SendOptions {
    pub fn for_campaign(c: &Campaign) -> SendOptions {
        SendOptions {
            concurrency: c.send.concurrency,
            rate_per_second: c.send.rate_per_second,
            max_attempts: c.send.max_attempts,
            backoff: Duration::from_secs_f64(c.send.retry_delay_seconds),
            pause_after: 50,
            max_hard_bounce_rate: c.send.max_hard_bounce_rate,
            pacing: Provider::ALL.map(|p| Pace::for_campaign(&c.send, p)),
        }
    }
}

/// The hard-bounce breaker judges a run only once this many recipients have been answered:
/// a few unknown addresses among the first dozen say nothing about a list.
pub const BREAKER_AFTER: usize = 200;

/// One provider's progress, for the gauge.
#[derive(Debug, Default)]
pub struct ProviderTally {
    pub total: AtomicUsize,
    pub sent: AtomicUsize,
    pub failed: AtomicUsize,
    /// Left pending for a later run: deferred to the end, or the provider gave out.
    pub deferred: AtomicUsize,
    /// The provider is backing off after a deferral.
    pub backing_off: AtomicBool,
}

/// Live counters, shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct Tally {
    pub total: AtomicUsize,
    pub sent: AtomicUsize,
    pub failed: AtomicUsize,
    pub uncertain: AtomicUsize,
    pub deferred: AtomicUsize,
    pub suppressed: AtomicUsize,
    pub retries: AtomicUsize,
    /// By provider, in `Provider::ALL` order.
    pub providers: [ProviderTally; 5],
}

impl Tally {
    pub fn done(&self) -> usize {
        [
            &self.sent,
            &self.failed,
            &self.uncertain,
            &self.deferred,
            &self.suppressed,
        ]
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum()
    }

    pub fn provider(&self, p: Provider) -> &ProviderTally {
        &self.providers[p.index()]
    }
}

/// One provider's part of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProviderSummary {
    pub total: usize,
    pub sent: usize,
    pub failed: usize,
    /// Still pending for a later run.
    pub deferred: usize,
    /// Deferrals (421 / 4.7.x) it answered during the run.
    pub deferrals: usize,
    /// Why it was given up for the run, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gave_out: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub sent: usize,
    /// Accepted messages by relay name.
    pub sent_by_relay: BTreeMap<String, usize>,
    pub failed: usize,
    /// Failed recipients by SMTP reply code.
    pub failed_by_code: BTreeMap<String, usize>,
    pub uncertain: usize,
    /// 4xx to the end: still pending, a later run retries them.
    pub deferred: usize,
    /// Suppressed while the run was going.
    pub suppressed_during_send: usize,
    pub retries: usize,
    pub elapsed_seconds: f64,
    pub rate_per_second: f64,
    pub interrupted: bool,
    /// Why the run stopped by itself, if it did.
    pub paused: Option<String>,
    /// Relays whose daily quota is spent (what is left waits for a later run).
    pub quota_spent: Vec<String>,
    /// Relays given up during the run after faults in a row, one line each (`relay NAME
    /// (host:port): cause (N attempts)`); the others went on without them.
    pub relays_out: Vec<String>,
    /// Recipients refused at RCPT TO as unknown (the hard-bounce breaker's count; also in
    /// `failed`).
    pub unknown_recipients: usize,
    /// Progress by mailbox provider, for the providers this run had recipients at.
    pub by_provider: BTreeMap<Provider, ProviderSummary>,
}

/// One recipient to send to: the row, and the variant in the top bit. Four bytes, because
/// a million of them wait in the queue; the keyed hash is recomputed when the job runs
/// (one HMAC, about a microsecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job(u32);

const PERSONALISED: u32 = 1 << 31;

impl Job {
    /// `None` past two billion rows, far beyond what a CSV held in memory can have.
    pub fn new(row: usize, personalised: bool) -> Option<Job> {
        let row = u32::try_from(row).ok().filter(|r| r & PERSONALISED == 0)?;
        Some(Job(if personalised {
            row | PERSONALISED
        } else {
            row
        }))
    }

    pub fn row(self) -> usize {
        (self.0 & !PERSONALISED) as usize
    }

    pub fn personalised(self) -> bool {
        self.0 & PERSONALISED != 0
    }
}

/// Records the plan's recipients as pending (rows already in the ledger keep their status),
/// drops pending rows of people who left the plan since they were queued (suppressed,
/// consent withdrawn, gone from the CSV: never handed to a server, so nothing is lost and
/// the campaign can complete), and returns the jobs to send.
pub fn queue(
    p: &Prepared,
    keys: &Keys,
    ledger: &mut Ledger,
    recipients: &[(usize, bool)],
    now: DateTime<Utc>,
) -> Result<Vec<Job>> {
    use rayon::prelude::*;
    let mut hashed: Vec<(RecipientHash, Job)> = recipients
        .par_iter()
        .map(|&(row, personalised)| {
            let job = Job::new(row, personalised).ok_or_else(|| {
                Error::Other("more than two billion recipients in one run".into())
            })?;
            Ok((keys.recipient_hash(p.audience.email(row)), job))
        })
        .collect::<Result<_>>()?;
    // In hash order, which is the ledger's key order: consecutive messages, from every
    // connection, then update the same few pages, so each commit writes one page to the
    // WAL rather than two.
    hashed.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // Stale rows first: on a campaign's first run there are none to read back, where
    // after the enqueue there would be a million.
    let in_plan = |h: &RecipientHash| hashed.binary_search_by(|x| x.0.cmp(h)).is_ok();
    ledger.drop_pending_except(&p.campaign.name, &in_plan)?;
    // In slices, so that a million recipients are not held twice.
    for slice in hashed.chunks(1 << 16) {
        let rows: Vec<(RecipientHash, bool)> =
            slice.iter().map(|(h, j)| (*h, j.personalised())).collect();
        ledger.enqueue(&p.campaign.name, &rows, now)?;
    }
    Ok(hashed.into_iter().map(|(_, j)| j).collect())
}

/// Where a relay's messages go.
#[derive(Debug, Clone)]
pub enum Transport {
    Smtp(SmtpTarget),
    /// The local MTA's queue (Postfix's `sendmail`): it does delivery, retries, bounces.
    Sendmail(sendmail::SendmailTarget),
}

impl Transport {
    /// `smtp://…`, `smtps://…` or `sendmail:…`; the password, if an SMTP URL names a
    /// user, is `password`.
    pub fn parse(url: &str, password: Option<String>) -> Result<Transport> {
        Transport::parse_for(url, password, "TACT_SMTP_PASSWORD")
    }

    /// `parse`, where the password comes from the variable `var`.
    pub fn parse_for(url: &str, password: Option<String>, var: &str) -> Result<Transport> {
        if url.starts_with("sendmail:") {
            let t = sendmail::SendmailTarget::parse(url)?;
            t.check()?;
            return Ok(Transport::Sendmail(t));
        }
        Ok(Transport::Smtp(SmtpTarget::parse_for(url, password, var)?))
    }

    /// Where it goes, as messages name it: `host:port`, or the sendmail program.
    pub fn address(&self) -> String {
        match self {
            Transport::Smtp(t) => t.address(),
            Transport::Sendmail(t) => format!("sendmail:{}", t.program.display()),
        }
    }
}

/// One relay and its own limits. `--smtp URL` is one relay with the campaign's `[send]`
/// limits; `[[send.relay]]` entries are several, used together.
#[derive(Debug, Clone)]
pub struct Relay {
    /// What the ledger and the summary show: never the URL, which may name a user.
    pub name: String,
    pub transport: Transport,
    pub concurrency: usize,
    pub rate_per_second: f64,
    /// Messages it may take in any 24 hours, over every campaign and run.
    pub daily_quota: Option<u64>,
}

impl Relay {
    pub fn single(transport: Transport, opts: &SendOptions) -> Relay {
        Relay {
            name: "smtp".into(),
            transport,
            concurrency: opts.concurrency,
            rate_per_second: opts.rate_per_second,
            daily_quota: None,
        }
    }

    /// The campaign's `[[send.relay]]` entries, each password from its own variable.
    pub fn from_campaign(c: &Campaign, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Relay>> {
        c.send
            .relay
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let var = r.password_env.as_deref().unwrap_or("TACT_SMTP_PASSWORD");
                Ok(Relay {
                    name: r.name.clone().unwrap_or_else(|| format!("relay-{}", i + 1)),
                    transport: Transport::parse_for(&r.url, env(var), var)?,
                    concurrency: r.concurrency,
                    rate_per_second: r.rate_per_second,
                    daily_quota: r.daily_quota,
                })
            })
            .collect()
    }
}

/// Spaces messages out to `rate` per second across all of a relay's connections.
struct RateLimit {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimit {
    fn new(rate: f64) -> RateLimit {
        RateLimit {
            interval: Duration::from_secs_f64(1.0 / rate.max(0.001)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// When the next message may go, without taking the turn.
    fn ready_at(&self) -> Instant {
        *lock(&self.next)
    }

    async fn wait(&self) {
        let at = {
            let mut next = lock(&self.next);
            let now = Instant::now();
            // A bucket of one interval: idle time is not saved up into a burst.
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        // Tokio's timer rounds up to the next millisecond even for a deadline already past,
        // which alone would cap a connection near 1,000 messages/s.
        if at > Instant::now() {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// A relay during the run.
struct RelayState {
    spec: Relay,
    rate: RateLimit,
    /// What is left of its daily quota.
    left: Option<AtomicI64>,
    /// After a refused connection or a 421 the relay rests, and the other relays take the
    /// queue meanwhile.
    down_until: Mutex<Option<Instant>>,
    failures: AtomicU32,
    sent: AtomicUsize,
    /// Faults (failed connects, stalls, hang-ups, 421s) since the relay last answered a
    /// transaction, over all its connections, and the last one's cause.
    faults: AtomicU32,
    last_fault: Mutex<String>,
    /// Given up for this run after `fault_limit` faults in a row.
    out: AtomicBool,
}

impl RelayState {
    fn resting(&self) -> Option<Instant> {
        lock(&self.down_until).filter(|&t| t > Instant::now())
    }

    fn rest(&self, base: Duration) {
        let n = self.failures.fetch_add(1, Ordering::SeqCst).min(10);
        let pause = base.saturating_mul(1 << n).min(Duration::from_secs(30));
        *lock(&self.down_until) = Some(Instant::now() + pause);
    }

    fn recovered(&self) {
        self.failures.store(0, Ordering::SeqCst);
    }

    /// The relay answered a transaction (even with a refusal): it is there.
    fn answered(&self) {
        self.faults.store(0, Ordering::SeqCst);
    }

    /// How many faults in a row end the relay's part in the run: five, and at least one
    /// more than its connections, so that one moment in which every connection breaks at
    /// once (a restart) is not the end of it.
    fn fault_limit(&self) -> u32 {
        let c = u32::try_from(self.spec.concurrency).unwrap_or(u32::MAX);
        MAX_FAULTS.max(c.saturating_add(1))
    }

    /// Counts a fault; true if it is the one that puts the relay out of the run. A
    /// `decisive` one does at once.
    fn fault(&self, why: String, decisive: bool) -> bool {
        let n = self.faults.fetch_add(1, Ordering::SeqCst) + 1;
        *lock(&self.last_fault) = why;
        (decisive || n >= self.fault_limit()) && !self.out.swap(true, Ordering::SeqCst)
    }

    fn is_out(&self) -> bool {
        self.out.load(Ordering::SeqCst)
    }

    /// `relay 127.0.0.1:2525` for `--smtp`, `relay ses (email-smtp…:587)` for a named one.
    fn label(&self) -> String {
        let at = self.spec.transport.address();
        if self.spec.name == "smtp" {
            format!("relay {at}")
        } else {
            format!("relay {} ({at})", self.spec.name)
        }
    }

    /// The one line that says why the relay is out.
    fn out_line(&self) -> String {
        let n = self.faults.load(Ordering::SeqCst);
        let why = lock(&self.last_fault).clone();
        let s = if n == 1 { "" } else { "s" };
        format!("{}: {why} ({n} attempt{s})", self.label())
    }

    /// Takes one message off the quota; `false` when none is left.
    fn take_quota(&self) -> bool {
        match &self.left {
            None => true,
            Some(left) => {
                if left.fetch_sub(1, Ordering::SeqCst) > 0 {
                    true
                } else {
                    left.fetch_add(1, Ordering::SeqCst);
                    false
                }
            }
        }
    }

    fn quota_spent(&self) -> bool {
        self.left
            .as_ref()
            .is_some_and(|l| l.load(Ordering::SeqCst) <= 0)
    }
}

/// Faults in a row (counted over a relay's connections and reconnects) after which a relay
/// is given up for the run; see `RelayState::fault_limit`.
const MAX_FAULTS: u32 = 5;

/// One provider's fresh jobs in plan order, and its retries each with the moment it may go.
#[derive(Default)]
struct Jobs {
    fresh: VecDeque<Job>,
    retry: Vec<(Instant, Job)>,
}

impl Jobs {
    fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.retry.is_empty()
    }

    fn len(&self) -> usize {
        self.fresh.len() + self.retry.len()
    }

    fn has_due(&self, now: Instant) -> bool {
        !self.fresh.is_empty() || self.retry.iter().any(|&(at, _)| at <= now)
    }

    /// A due retry first, then fresh jobs.
    fn pop_due(&mut self, now: Instant) -> Option<Job> {
        if let Some(i) = self.retry.iter().position(|&(at, _)| at <= now) {
            return Some(self.retry.swap_remove(i).1);
        }
        self.fresh.pop_front()
    }

    fn next_due(&self) -> Option<Instant> {
        self.retry.iter().map(|&(at, _)| at).min()
    }
}

/// The jobs by provider (`Provider::ALL` order), and whose turn is next among equals.
#[derive(Default)]
struct Queue {
    by: [Jobs; 5],
    cursor: usize,
}

impl Queue {
    fn len(&self) -> usize {
        self.by.iter().map(Jobs::len).sum()
    }

    fn next_due(&self) -> Option<Instant> {
        self.by.iter().filter_map(Jobs::next_due).min()
    }
}

/// The longest a provider rests after deferrals in a row: its backoff doubles up to this.
const MAX_PROVIDER_REST: Duration = Duration::from_secs(300);

/// A mailbox provider during the run: its own pace (on top of the relays'), and its backoff
/// after deferrals, which slows it alone.
struct Lane {
    provider: Provider,
    rate: Option<RateLimit>,
    concurrency: usize,
    /// Connections holding its recipients now (claimed, not yet all handed over).
    active: AtomicUsize,
    down_until: Mutex<Option<Instant>>,
    /// Deferrals since it last accepted a message.
    deferrals: AtomicU32,
    all_deferrals: AtomicUsize,
    /// Why it was given up for the run after deferrals in a row: its recipients wait for a
    /// later run while the others go on.
    out: Mutex<Option<String>>,
}

impl Lane {
    fn new(provider: Provider, pace: Pace) -> Lane {
        Lane {
            provider,
            rate: pace.rate_per_second.map(RateLimit::new),
            concurrency: pace.concurrency.unwrap_or(usize::MAX).max(1),
            active: AtomicUsize::new(0),
            down_until: Mutex::new(None),
            deferrals: AtomicU32::new(0),
            all_deferrals: AtomicUsize::new(0),
            out: Mutex::new(None),
        }
    }

    fn resting(&self) -> bool {
        lock(&self.down_until).is_some_and(|t| t > Instant::now())
    }

    fn is_out(&self) -> bool {
        lock(&self.out).is_some()
    }

    /// Whether a connection may take its recipients now.
    fn open(&self) -> bool {
        self.active.load(Ordering::SeqCst) < self.concurrency && !self.resting() && !self.is_out()
    }

    /// A deferral: the provider rests, twice as long as the last time (up to
    /// `MAX_PROVIDER_REST`), and after `limit` in a row it is out of the run.
    fn defer(&self, base: Duration, limit: u32, reply: &Reply) {
        self.all_deferrals.fetch_add(1, Ordering::Relaxed);
        let n = self.deferrals.fetch_add(1, Ordering::SeqCst) + 1;
        let pause = base
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_PROVIDER_REST);
        *lock(&self.down_until) = Some(Instant::now() + pause);
        if n >= limit {
            let code = said(reply, "deferred");
            lock(&self.out).get_or_insert_with(|| {
                format!("deferred {n} times in a row (last: {code}); the rest wait for a later run")
            });
        }
    }

    fn accepted(&self) {
        self.deferrals.store(0, Ordering::SeqCst);
    }
}

struct Shared<'a> {
    p: &'a Prepared,
    keys: &'a Keys,
    ledger: Mutex<Ledger>,
    committer: commit::Committer,
    /// How many recipients one claim takes (`Store::claim_batch`).
    batch: usize,
    queue: Mutex<Queue>,
    in_flight: AtomicUsize,
    tally: &'a Tally,
    stop: &'a AtomicBool,
    opts: SendOptions,
    relays: Vec<RelayState>,
    hello: ClientId,
    now: DateTime<Utc>,
    started: Instant,
    consecutive_failures: AtomicUsize,
    paused: Mutex<Option<String>>,
    failed_by_code: Mutex<BTreeMap<String, usize>>,
    lanes: [Lane; 5],
    /// Recipients answered for good this run (accepted or refused), and how many of them
    /// were refused as unknown: the hard-bounce breaker's figures.
    answered: AtomicUsize,
    unknown: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared<'_> {
    /// The run's "now" moving forward with the wall clock: `--now` stays the reference, so
    /// a pinned clock keeps ledger times consistent with the plan's.
    fn clock(&self) -> DateTime<Utc> {
        self.now + chrono::TimeDelta::from_std(self.started.elapsed()).unwrap_or_default()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    fn pause(&self, why: String) {
        lock(&self.paused).get_or_insert(why);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Up to `n` jobs of one provider that may go now: of the providers with a job due
    /// that are not resting, not out and under their concurrency, the one whose turn comes
    /// first (in rotation among equals). The caller then holds one place of that provider's
    /// concurrency until it has handed the jobs over (`end_lease`).
    fn take(&self, n: usize) -> Option<(Provider, Vec<Job>)> {
        let mut q = lock(&self.queue);
        let now = Instant::now();
        let mut best: Option<(Instant, usize)> = None;
        for k in 0..Provider::ALL.len() {
            let i = (q.cursor + k) % Provider::ALL.len();
            let lane = &self.lanes[i];
            if !q.by[i].has_due(now) || !lane.open() {
                continue;
            }
            let at = lane.rate.as_ref().map_or(now, |r| r.ready_at().max(now));
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, i));
            }
        }
        let (_, i) = best?;
        q.cursor = (i + 1) % Provider::ALL.len();
        let jobs: Vec<Job> = std::iter::from_fn(|| q.by[i].pop_due(now))
            .take(n)
            .collect();
        self.lanes[i].active.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(jobs.len(), Ordering::SeqCst);
        Some((self.lanes[i].provider, jobs))
    }

    fn end_lease(&self, lease: &mut Option<Provider>) {
        if let Some(p) = lease.take() {
            self.lanes[p.index()].active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn lane(&self, p: Provider) -> &Lane {
        &self.lanes[p.index()]
    }

    /// Nothing queued (but for providers out of the run) and nobody holding a job: the run
    /// is over.
    fn drained(&self) -> bool {
        let q = lock(&self.queue);
        q.by.iter()
            .zip(&self.lanes)
            .all(|(jobs, lane)| jobs.is_empty() || lane.is_out())
            && self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// Back in its provider's queue, at once (another relay may take it) or after a backoff.
    fn requeue(&self, job: Job, after: Option<Duration>) {
        let i = Provider::of_address(self.p.audience.email(job.row())).index();
        let mut q = lock(&self.queue);
        match after {
            Some(d) => q.by[i].retry.push((Instant::now() + d, job)),
            None => q.by[i].fresh.push_front(job),
        }
    }

    /// A recipient answered for good; past `BREAKER_AFTER` of them, too many unknown ones
    /// pause the run (DESIGN §5's auto-pause: everyone not yet tried stays pending).
    fn answered(&self, unknown: bool) {
        let u = if unknown {
            self.unknown.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.unknown.load(Ordering::SeqCst)
        };
        let n = self.answered.fetch_add(1, Ordering::SeqCst) + 1;
        let max = self.opts.max_hard_bounce_rate;
        if n >= BREAKER_AFTER && u as f64 > max * n as f64 {
            self.pause(format!(
                "{u} of {n} recipients were refused as unknown at RCPT TO ({:.1}%, above [send] max_hard_bounce_rate {}%): the list looks stale, and mailing on would harm the sender's reputation; the rest stay pending: clean the list (import the bounces, suppress the unknown) or raise the rate, then run again",
                100.0 * u as f64 / n as f64,
                100.0 * max
            ));
        }
    }

    /// A relay fault: the relay rests, and when it was the last relay still in the run,
    /// the run stops with one line per relay that gave out. Nobody is marked: whoever was
    /// not handed over is still pending.
    fn relay_fault(&self, r: &RelayState, why: String, decisive: bool) {
        r.rest(self.opts.backoff);
        if r.fault(why, decisive) && self.relays.iter().all(|x| x.is_out() || x.quota_spent()) {
            let lines: Vec<String> = self
                .relays
                .iter()
                .filter(|x| x.is_out())
                .map(RelayState::out_line)
                .collect();
            self.pause(lines.join("; "));
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        self.opts
            .backoff
            .saturating_mul(1 << attempts.saturating_sub(1).min(10))
    }
}

/// What a send run works with and reports into.
pub struct Run<'a> {
    pub prepared: &'a Prepared,
    pub keys: &'a Keys,
    /// Live counters for whoever shows progress.
    pub tally: &'a Tally,
    /// Set it to stop: in-flight messages finish and are recorded.
    pub stop: &'a AtomicBool,
    pub now: DateTime<Utc>,
}

/// Sends to every job's recipient over `relays`, recording each step in the ledger.
pub fn send_all(
    run: Run<'_>,
    ledger: Ledger,
    jobs: Vec<Job>,
    relays: &[Relay],
    opts: SendOptions,
) -> Result<Summary> {
    let Run {
        prepared: p,
        keys,
        tally,
        stop,
        now,
    } = run;
    if relays.is_empty() {
        return Err(Error::Other("no relay to send through".into()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the sender: {e}")))?;
    let started = Instant::now();
    tally.total.store(jobs.len(), Ordering::Relaxed);
    let since = now - chrono::TimeDelta::hours(24);
    let mut states = Vec::with_capacity(relays.len());
    for r in relays {
        let left = match r.daily_quota {
            None => None,
            Some(q) => {
                let used = ledger.relay_usage(&r.name, since)?;
                Some(AtomicI64::new(
                    i64::try_from(q.saturating_sub(used)).unwrap_or(i64::MAX),
                ))
            }
        };
        states.push(RelayState {
            spec: r.clone(),
            rate: RateLimit::new(r.rate_per_second),
            left,
            down_until: Mutex::new(None),
            failures: AtomicU32::new(0),
            sent: AtomicUsize::new(0),
            faults: AtomicU32::new(0),
            last_fault: Mutex::new(String::new()),
            out: AtomicBool::new(false),
        });
    }
    let batch = ledger.claim_batch().max(1);
    let total = jobs.len();
    // By provider, each in plan order: one lookup per recipient, here, not per message.
    let mut by: [Jobs; 5] = Default::default();
    for job in jobs {
        by[Provider::of_address(p.audience.email(job.row())).index()]
            .fresh
            .push_back(job);
    }
    for (t, jobs) in tally.providers.iter().zip(&by) {
        t.total.store(jobs.len(), Ordering::Relaxed);
    }
    let lanes = Provider::ALL.map(|prov| Lane::new(prov, opts.pacing[prov.index()]));
    let shared = Shared {
        p,
        keys,
        ledger: Mutex::new(ledger),
        committer: commit::Committer::default(),
        batch,
        queue: Mutex::new(Queue { by, cursor: 0 }),
        in_flight: AtomicUsize::new(0),
        tally,
        stop,
        opts,
        relays: states,
        hello: ClientId::Domain(p.campaign.from_domain().to_string()),
        now,
        started,
        consecutive_failures: AtomicUsize::new(0),
        paused: Mutex::new(None),
        failed_by_code: Mutex::new(BTreeMap::new()),
        lanes,
        answered: AtomicUsize::new(0),
        unknown: AtomicUsize::new(0),
    };
    runtime.block_on(async {
        let workers = shared.relays.iter().flat_map(|r| {
            let n = r.spec.concurrency.max(1).min(total.max(1));
            (0..n).map(|_| worker(&shared, r))
        });
        futures_join_all(workers).await;
    });
    let elapsed = started.elapsed().as_secs_f64();
    let left = lock(&shared.queue).len();
    if left > 0 && !stop.load(Ordering::SeqCst) {
        // Every relay's quota is spent, or a provider gave out: the rest stay pending for
        // a later run.
        tally.deferred.fetch_add(left, Ordering::Relaxed);
        for (t, jobs) in tally.providers.iter().zip(&lock(&shared.queue).by) {
            t.deferred.fetch_add(jobs.len(), Ordering::Relaxed);
        }
    }
    let sent = tally.sent.load(Ordering::Relaxed);
    let complete = shared.ledger().counts(&p.campaign.name)?.pending == 0;
    if complete && !stop.load(Ordering::SeqCst) {
        shared.ledger().mark_complete(&p.campaign.name, now)?;
    }
    let paused = lock(&shared.paused).clone();
    Ok(Summary {
        sent,
        sent_by_relay: shared
            .relays
            .iter()
            .map(|r| (r.spec.name.clone(), r.sent.load(Ordering::Relaxed)))
            .collect(),
        failed: tally.failed.load(Ordering::Relaxed),
        failed_by_code: lock(&shared.failed_by_code).clone(),
        uncertain: tally.uncertain.load(Ordering::Relaxed),
        deferred: tally.deferred.load(Ordering::Relaxed),
        suppressed_during_send: tally.suppressed.load(Ordering::Relaxed),
        retries: tally.retries.load(Ordering::Relaxed),
        elapsed_seconds: elapsed,
        rate_per_second: if elapsed > 0.0 {
            sent as f64 / elapsed
        } else {
            0.0
        },
        interrupted: stop.load(Ordering::SeqCst) && paused.is_none(),
        paused,
        quota_spent: shared
            .relays
            .iter()
            .filter(|r| r.quota_spent())
            .map(|r| r.spec.name.clone())
            .collect(),
        relays_out: shared
            .relays
            .iter()
            .filter(|r| r.is_out())
            .map(RelayState::out_line)
            .collect(),
        unknown_recipients: shared.unknown.load(Ordering::SeqCst),
        by_provider: shared
            .lanes
            .iter()
            .zip(&tally.providers)
            .filter(|(_, t)| t.total.load(Ordering::Relaxed) > 0)
            .map(|(lane, t)| {
                let n = |a: &AtomicUsize| a.load(Ordering::Relaxed);
                let summary = ProviderSummary {
                    total: n(&t.total),
                    sent: n(&t.sent),
                    failed: n(&t.failed),
                    deferred: n(&t.deferred),
                    deferrals: n(&lane.all_deferrals),
                    gave_out: lock(&lane.out).clone(),
                };
                (lane.provider, summary)
            })
            .collect(),
    })
}

/// Joins futures on this task without pulling in a futures crate.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let set: Vec<_> = futs.map(Box::pin).collect();
    let mut set: Vec<_> = set.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in set.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
}

/// One connection to one relay. It claims recipients `s.batch` at a time, sends them, and
/// records each accepted message with its next claim.
async fn worker(s: &Shared<'_>, r: &RelayState) {
    let campaign = s.p.campaign.name.as_str();
    let mut conn: Option<Conn> = None;
    // Accepted, not yet recorded: recorded with the next claim.
    let mut done: Vec<Delivered> = Vec::new();
    // Claimed (`sending` in the ledger), not yet handed to the relay.
    let mut claimed: VecDeque<(Job, RecipientHash)> = VecDeque::new();
    // The provider whose recipients are claimed: a place in its concurrency while any are.
    let mut lease: Option<Provider> = None;
    loop {
        if claimed.is_empty() {
            s.end_lease(&mut lease);
        }
        if s.stop.load(Ordering::SeqCst) || r.is_out() {
            break;
        }
        if let Some(until) = r.resting() {
            // Claimed ones go back for the other relays; the resting one waits.
            settle(s, &mut done, campaign);
            release(s, &mut claimed, campaign);
            if let Some(idle) = conn.take() {
                idle.quit().await;
            }
            if s.drained() {
                break;
            }
            tokio::time::sleep_until(
                until
                    .min(Instant::now() + Duration::from_millis(100))
                    .into(),
            )
            .await;
            continue;
        }
        if claimed.is_empty() {
            if r.quota_spent() {
                break;
            }
            let Some((provider, jobs)) = s.take(s.batch) else {
                settle(s, &mut done, campaign);
                if s.drained() {
                    break;
                }
                let wake = lock(&s.queue)
                    .next_due()
                    .unwrap_or_else(Instant::now)
                    .max(Instant::now() + Duration::from_millis(1))
                    .min(Instant::now() + Duration::from_millis(20));
                tokio::time::sleep_until(wake.into()).await;
                continue;
            };
            lease = Some(provider);
            let hashes: Vec<RecipientHash> = jobs
                .iter()
                .map(|j| s.keys.recipient_hash(s.p.audience.email(j.row())))
                .collect();
            // An unsubscribe that landed a moment ago stops these messages: the claim
            // re-reads the suppression list in the same transaction.
            let step = s
                .committer
                .step(
                    &s.ledger,
                    campaign,
                    std::mem::take(&mut done),
                    hashes.clone(),
                    s.clock(),
                )
                .await;
            let got = match step {
                Ok(got) => got,
                Err((e, back)) => {
                    done = back;
                    s.in_flight.fetch_sub(jobs.len(), Ordering::SeqCst);
                    s.pause(format!("ledger: {e}"));
                    break;
                }
            };
            for (job, hash) in jobs.into_iter().zip(hashes) {
                if got.contains(&hash) {
                    claimed.push_back((job, hash));
                } else {
                    unclaimed(s, &hash, campaign);
                    s.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
            }
            continue;
        }
        let Some(provider) = lease else {
            // Claimed without a lease cannot happen; were it to, they go back.
            release(s, &mut claimed, campaign);
            continue;
        };
        let lane = s.lane(provider);
        if lane.resting() || lane.is_out() {
            // Deferred meanwhile: its recipients go back and wait; this connection serves
            // the other providers.
            release(s, &mut claimed, campaign);
            continue;
        }
        let Some((job, hash)) = claimed.pop_front() else {
            continue;
        };
        if !r.take_quota() {
            claimed.push_front((job, hash));
            release(s, &mut claimed, campaign);
            break;
        }
        if let Some(rate) = &lane.rate {
            rate.wait().await;
        }
        r.rate.wait().await;
        if s.batch > 1 && suppressed_since_claim(s, &mut claimed, job, &hash, campaign) {
            continue;
        }
        attempt(s, r, &mut conn, &mut done, (job, provider), hash, campaign).await;
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    settle(s, &mut done, campaign);
    release(s, &mut claimed, campaign);
    s.end_lease(&mut lease);
    if let Some(c) = conn {
        c.quit().await;
    }
}

/// Records accepted messages on their own, before anything that may wait or stop.
fn settle(s: &Shared<'_>, done: &mut Vec<Delivered>, campaign: &str) {
    if done.is_empty() {
        return;
    }
    let r = s.ledger().settle_and_claim(campaign, done, &[], s.clock());
    match r {
        Ok(_) => done.clear(),
        Err(e) => s.pause(format!("ledger: {e}")),
    }
}

/// Claimed recipients never handed to a relay go back to pending and to the queue.
fn release(s: &Shared<'_>, claimed: &mut VecDeque<(Job, RecipientHash)>, campaign: &str) {
    for (job, hash) in claimed.drain(..) {
        let r = s.ledger().unclaim(campaign, &hash, s.clock());
        if let Err(e) = r {
            s.pause(format!("ledger: {e}"));
        }
        s.requeue(job, None);
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A recipient the claim did not give: suppressed (never sent, and never to be: the
/// campaign can complete without them), or another run's.
fn unclaimed(s: &Shared<'_>, hash: &RecipientHash, campaign: &str) {
    let l = s.ledger();
    if l.is_suppressed(hash).unwrap_or(false) {
        if let Err(e) = l.drop_pending(campaign, hash) {
            s.pause(format!("ledger: {e}"));
        }
        s.tally.suppressed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A shared store claims a batch at a time (`Store::claim_batch`), so an opt-out may land
/// between the claim and this recipient's turn: one indexed lookup right before MAIL FROM
/// (DESIGN §6). A suppressed one is never handed over; like one the claim found suppressed,
/// its row is dropped and the campaign can complete without them. When the lookup fails,
/// nobody is sent on a guess: the run pauses and the recipient goes back to pending.
fn suppressed_since_claim(
    s: &Shared<'_>,
    claimed: &mut VecDeque<(Job, RecipientHash)>,
    job: Job,
    hash: &RecipientHash,
    campaign: &str,
) -> bool {
    let l = s.ledger();
    match l.is_suppressed(hash) {
        Ok(false) => false,
        Ok(true) => {
            let dropped = l
                .finish(
                    campaign,
                    hash,
                    Status::Pending,
                    &Reply::default(),
                    None,
                    s.clock(),
                )
                .and_then(|()| l.drop_pending(campaign, hash));
            drop(l);
            if let Err(e) = dropped {
                s.pause(format!("ledger: {e}"));
            }
            s.tally.suppressed.fetch_add(1, Ordering::Relaxed);
            s.in_flight.fetch_sub(1, Ordering::SeqCst);
            true
        }
        Err(e) => {
            drop(l);
            // Back in front of the claimed ones: the worker stops and releases them all.
            claimed.push_front((job, *hash));
            s.pause(format!("ledger: {e}"));
            true
        }
    }
}

async fn attempt(
    s: &Shared<'_>,
    r: &RelayState,
    conn: &mut Option<Conn>,
    done: &mut Vec<Delivered>,
    (job, provider): (Job, Provider),
    hash: RecipientHash,
    campaign: &str,
) {
    let row = job.row();
    let lane = s.lane(provider);
    let counts = s.tally.provider(provider);
    let release = |reply: &Reply| {
        let _ = s
            .ledger()
            .finish(campaign, &hash, Status::Pending, reply, None, s.clock());
    };
    let built =
        s.p.letter(s.keys, row, job.personalised())
            .map_err(|e| e.detail)
            .and_then(|letter| {
                let date = SystemTime::from(s.clock());
                crate::message::build(&s.p.campaign, &letter, s.p.audience.email(row), date, "")
                    .map_err(|e| e.to_string())
            });
    let msg = match built.and_then(|m| sign(&s.p.campaign, m)) {
        Ok(m) => m,
        Err(why) => {
            // The check rendered everyone already, so this is not the data: stop.
            release(&Reply::default());
            s.pause(format!("cannot build a message: {why}"));
            return;
        }
    };
    let message_id = msg.headers().get_raw("Message-ID").map(str::to_string);
    let Ok(to) = s.p.audience.email(row).parse::<Address>() else {
        release(&Reply::default());
        return;
    };
    let body = msg.formatted();
    let from = envelope_from(&s.p.campaign, &msg);
    let (outcome, after) = match &r.spec.transport {
        Transport::Smtp(target) => {
            if conn.is_none() {
                match connect(target, &s.hello).await {
                    Ok(c) => *conn = Some(c),
                    Err(e) => {
                        // Nothing was handed over: the recipient goes back, at once, for
                        // whichever relay is up; this one rests, or is out of the run.
                        release(&Reply::default());
                        s.requeue(job, None);
                        if e.fatal {
                            s.pause(format!("{}: {}", r.label(), e.why));
                        } else {
                            s.tally.retries.fetch_add(1, Ordering::Relaxed);
                            s.relay_fault(r, e.why, false);
                        }
                        return;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { return };
            let (outcome, after) = transact(c, &from, &to, &body).await;
            if after != After::Open {
                // A broken connection is dropped, not QUIT: it may not answer anymore.
                *conn = None;
            }
            (outcome, after)
        }
        // A temporary failure of the local MTA is the MTA's, not the recipient's: it
        // rests like a relay that closed the connection.
        Transport::Sendmail(t) => match sendmail::submit(t, &from, &to, &body).await {
            Attempt::Retry(reply) => {
                let why = match (&reply.enhanced, reply.code) {
                    (Some(x), _) => format!("refused the message ({x})"),
                    (None, Some(c)) => format!("refused the message ({c})"),
                    (None, None) => "did not take the message".to_string(),
                };
                (Attempt::Retry(reply), After::Fault(why))
            }
            other => (other, After::Open),
        },
    };
    let keep = match after {
        After::Fault(why) => {
            s.relay_fault(r, why, false);
            false
        }
        After::Stalled(why) => {
            s.relay_fault(r, why, true);
            false
        }
        After::Open | After::Drop => {
            r.answered();
            true
        }
    };
    let now = s.clock();
    let record = |status: Status, reply: &Reply| {
        if let Err(e) = s.ledger().finish(campaign, &hash, status, reply, None, now) {
            s.pause(format!("ledger: {e}"));
        }
    };
    match outcome {
        Attempt::Sent(reply) => {
            done.push(Delivered {
                hash,
                reply,
                message_id,
                at: now,
                relay: Some(r.spec.name.clone()),
            });
            r.recovered();
            r.sent.fetch_add(1, Ordering::Relaxed);
            s.consecutive_failures.store(0, Ordering::SeqCst);
            s.tally.sent.fetch_add(1, Ordering::Relaxed);
            lane.accepted();
            counts.sent.fetch_add(1, Ordering::Relaxed);
            counts.backing_off.store(false, Ordering::Relaxed);
            s.answered(false);
        }
        Attempt::NoSuchUser(reply) => {
            // The recipient's own fault, and the breaker's to judge: not a sign of a relay
            // in trouble, so it leaves the run of consecutive failures as it was.
            record(Status::Failed, &reply);
            count_failure(s, &reply);
            counts.failed.fetch_add(1, Ordering::Relaxed);
            s.answered(true);
        }
        Attempt::Deferred(reply) => {
            record(Status::Pending, &reply);
            let limit = s.opts.max_attempts.max(
                u32::try_from(lane.concurrency)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1),
            );
            lane.defer(s.opts.backoff, limit, &reply);
            counts.backing_off.store(true, Ordering::Relaxed);
            if tries_left(s, counts, campaign, &hash).is_some() {
                // Back in its provider's queue, which rests: when it wakes, first in line.
                s.requeue(job, None);
            }
        }
        Attempt::Failed(reply) => {
            record(Status::Failed, &reply);
            count_failure(s, &reply);
            counts.failed.fetch_add(1, Ordering::Relaxed);
            s.answered(false);
            note_failure(s, "permanent refusals");
        }
        Attempt::SenderRefused(reply) => {
            // The sender's problem: the recipient stays pending, and the run stops before
            // it marks anyone else.
            record(Status::Pending, &reply);
            s.requeue(job, None);
            let code = said(&reply, "refused");
            s.pause(format!(
                "{}: the sender was refused at MAIL FROM ({code}); nobody was marked failed: fix the sender address or the relay's policy for it, then run again",
                r.label()
            ));
        }
        Attempt::Retry(reply) => {
            record(Status::Pending, &reply);
            if let Some(attempts) = tries_left(s, counts, campaign, &hash) {
                if keep {
                    // This recipient, at this relay, now: try again later.
                    s.requeue(job, Some(s.backoff(attempts)));
                } else {
                    // The relay is going away (421, or it dropped the connection before the
                    // message): it rests, and the others take the recipient now.
                    s.requeue(job, None);
                }
            }
            note_failure(s, "temporary refusals");
        }
        Attempt::Uncertain => {
            // Left `sending`: the next run reports it and does not resend it.
            s.tally.uncertain.fetch_add(1, Ordering::Relaxed);
            note_failure(s, "connections lost after the message");
        }
    }
}

/// After a 4xx: the recipient's tries so far while it has more this run (the caller puts it
/// back in the queue), else `None`: counted deferred, pending for a later run.
fn tries_left(
    s: &Shared<'_>,
    counts: &ProviderTally,
    campaign: &str,
    hash: &RecipientHash,
) -> Option<u32> {
    let attempts = s.ledger().attempts(campaign, hash).unwrap_or(u32::MAX);
    if attempts >= s.opts.max_attempts {
        s.tally.deferred.fetch_add(1, Ordering::Relaxed);
        counts.deferred.fetch_add(1, Ordering::Relaxed);
        None
    } else {
        s.tally.retries.fetch_add(1, Ordering::Relaxed);
        Some(attempts)
    }
}

/// `421 4.7.0`, `550`, `5.1.1`; `none` for a reply with neither.
fn said(reply: &Reply, none: &str) -> String {
    match (reply.code, &reply.enhanced) {
        (Some(c), Some(x)) => format!("{c} {x}"),
        (Some(c), None) => c.to_string(),
        (None, Some(x)) => x.clone(),
        (None, None) => none.to_string(),
    }
}

/// A permanent refusal, counted by its reply code.
fn count_failure(s: &Shared<'_>, reply: &Reply) {
    // A sendmail's refusal has no SMTP code, only its exit status.
    let key = match (reply.code, &reply.enhanced) {
        (Some(c), _) => c.to_string(),
        (None, Some(e)) => e.clone(),
        (None, None) => "unknown".to_string(),
    };
    *lock(&s.failed_by_code).entry(key).or_default() += 1;
    s.tally.failed.fetch_add(1, Ordering::Relaxed);
}

fn note_failure(s: &Shared<'_>, last: &str) {
    let n = s.consecutive_failures.fetch_add(1, Ordering::SeqCst) + 1;
    if n >= s.opts.pause_after {
        s.pause(format!(
            "paused after {n} consecutive failures (last: {last}): check the relay before running again"
        ));
    }
}

/// Sends one-off test messages (not in the ledger) to `to`.
pub fn send_tests(
    transport: &Transport,
    campaign: &Campaign,
    messages: Vec<(Address, lettre::Message)>,
) -> Result<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the sender: {e}")))?;
    let said = |attempt: Attempt| match attempt {
        Attempt::Sent(_) => "sent".to_string(),
        Attempt::Failed(r) | Attempt::NoSuchUser(r) | Attempt::Retry(r) | Attempt::Deferred(r) => {
            match (r.code, r.enhanced) {
                (Some(c), _) => format!("refused ({c})"),
                (None, Some(e)) => format!("refused ({e})"),
                (None, None) => "refused".to_string(),
            }
        }
        Attempt::SenderRefused(r) => match (r.code, r.enhanced) {
            (Some(c), _) => format!("sender refused ({c})"),
            (None, Some(e)) => format!("sender refused ({e})"),
            (None, None) => "sender refused".to_string(),
        },
        Attempt::Uncertain => "uncertain".to_string(),
    };
    runtime.block_on(async {
        let mut results = Vec::new();
        match transport {
            Transport::Smtp(target) => {
                let hello = ClientId::Domain(campaign.from_domain().to_string());
                let mut conn = connect(target, &hello)
                    .await
                    .map_err(|e| Error::Other(format!("relay {}: {}", target.address(), e.why)))?;
                for (to, msg) in messages {
                    let msg = sign(campaign, msg).map_err(Error::Other)?;
                    let from = envelope_from(campaign, &msg);
                    let (attempt, _) = transact(&mut conn, &from, &to, &msg.formatted()).await;
                    results.push(said(attempt));
                }
                conn.quit().await;
            }
            Transport::Sendmail(t) => {
                for (to, msg) in messages {
                    let msg = sign(campaign, msg).map_err(Error::Other)?;
                    let from = envelope_from(campaign, &msg);
                    results.push(said(
                        sendmail::submit(t, &from, &to, &msg.formatted()).await,
                    ));
                }
            }
        }
        Ok(results)
    })
}

/// MAIL FROM as `message::build` set it (the VERP form of the bounce address, or From).
fn envelope_from(campaign: &Campaign, msg: &lettre::Message) -> Address {
    msg.envelope()
        .from()
        .cloned()
        .unwrap_or_else(|| campaign.from.email.clone())
}
