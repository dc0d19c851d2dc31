//! Sending: the send loop, its rate limit, retries and ledger updates.
//!
//! Every connection claims its next recipient in the ledger (`sending`, committed) before
//! the SMTP transaction starts and records the 250 afterwards, together with its next
//! claim: a crash leaves at most one uncertain recipient per connection, never a resend.
//! The transport lives in `smtp` (and `dkim` signs).

mod commit;
mod dkim;
mod smtp;

pub use dkim::{DKIM_HEADERS, load_dkim_key, sign};
use smtp::{Attempt, Conn, Resolved, connect, resolve, transact};
pub use smtp::{SmtpTarget, redact_url};

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
}

impl SendOptions {
    pub fn for_campaign(c: &Campaign) -> SendOptions {
        SendOptions {
            concurrency: c.send.concurrency,
            rate_per_second: c.send.rate_per_second,
            max_attempts: c.send.max_attempts,
            backoff: Duration::from_secs_f64(c.send.retry_delay_seconds),
            pause_after: 50,
        }
    }
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
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub sent: usize,
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
}

/// One recipient to send to. Small on purpose: a million of them wait in the queue; the
/// keyed hash is recomputed when the job runs (one HMAC, about a microsecond).
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub row: u32,
    pub personalised: bool,
    not_before: Option<Instant>,
}

impl Job {
    pub fn new(row: usize, personalised: bool) -> Job {
        Job {
            row: row as u32,
            personalised,
            not_before: None,
        }
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
    let mut hashes: Vec<(RecipientHash, bool)> = recipients
        .par_iter()
        .map(|&(row, personalised)| (keys.recipient_hash(p.audience.email(row)), personalised))
        .collect();
    ledger.enqueue(&p.campaign.name, &hashes, now)?;
    hashes.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let in_plan = |h: &RecipientHash| hashes.binary_search_by(|x| x.0.cmp(h)).is_ok();
    ledger.drop_pending_except(&p.campaign.name, &in_plan)?;
    Ok(recipients
        .iter()
        .map(|&(row, personalised)| Job::new(row, personalised))
        .collect())
}

/// Spaces messages out to `rate` per second across all connections.
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

    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
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

struct Shared<'a> {
    p: &'a Prepared,
    keys: &'a Keys,
    ledger: Mutex<Ledger>,
    committer: commit::Committer,
    queue: Mutex<VecDeque<Job>>,
    in_flight: AtomicUsize,
    tally: &'a Tally,
    stop: &'a AtomicBool,
    rate: RateLimit,
    opts: SendOptions,
    target: SmtpTarget,
    resolved: Resolved,
    hello: ClientId,
    from: Address,
    now: DateTime<Utc>,
    started: Instant,
    consecutive_failures: AtomicUsize,
    paused: Mutex<Option<String>>,
    failed_by_code: Mutex<BTreeMap<String, usize>>,
}

impl Shared<'_> {
    /// The run's "now" moving forward with the wall clock: `--now` stays the reference, so
    /// a pinned clock keeps ledger times consistent with the plan's.
    fn clock(&self) -> DateTime<Utc> {
        self.now + chrono::TimeDelta::from_std(self.started.elapsed()).unwrap_or_default()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pause(&self, why: String) {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        self.stop.store(true, Ordering::SeqCst);
    }

    fn next_job(&self) -> Option<Job> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let job = q.pop_front()?;
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Some(job)
    }

    fn requeue(&self, mut job: Job, attempts: u32) {
        let delay = self
            .opts
            .backoff
            .saturating_mul(1 << attempts.saturating_sub(1).min(10));
        job.not_before = Some(Instant::now() + delay);
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(job);
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

/// Sends to every job's recipient, recording each step in the ledger. `jobs` is the whole
/// plan: the campaign's pending rows outside it (people who left the plan since they were
/// queued: suppressed, consent withdrawn, gone from the CSV) are dropped first, so that the
/// campaign can complete without them.
pub fn send_all(
    run: Run<'_>,
    ledger: Ledger,
    jobs: Vec<Job>,
    target: &SmtpTarget,
    opts: SendOptions,
) -> Result<Summary> {
    let Run {
        prepared: p,
        keys,
        tally,
        stop,
        now,
    } = run;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the sender: {e}")))?;
    let started = Instant::now();
    tally.total.store(jobs.len(), Ordering::Relaxed);
    let from = p
        .campaign
        .return_path
        .clone()
        .unwrap_or_else(|| p.campaign.from.email.clone());
    let concurrency = opts.concurrency.max(1).min(jobs.len().max(1));
    let resolved = runtime.block_on(resolve(target))?;
    let shared = Shared {
        p,
        keys,
        ledger: Mutex::new(ledger),
        committer: commit::Committer::default(),
        queue: Mutex::new(jobs.into()),
        in_flight: AtomicUsize::new(0),
        tally,
        stop,
        rate: RateLimit::new(opts.rate_per_second),
        hello: ClientId::Domain(p.campaign.from_domain().to_string()),
        opts,
        target: target.clone(),
        resolved,
        from,
        now,
        started,
        consecutive_failures: AtomicUsize::new(0),
        paused: Mutex::new(None),
        failed_by_code: Mutex::new(BTreeMap::new()),
    };
    runtime.block_on(async {
        let workers = (0..concurrency).map(|_| worker(&shared));
        futures_join_all(workers).await;
    });
    let elapsed = started.elapsed().as_secs_f64();
    let sent = tally.sent.load(Ordering::Relaxed);
    let complete = shared.ledger().counts(&p.campaign.name)?.pending == 0;
    if complete && !stop.load(Ordering::SeqCst) {
        shared.ledger().mark_complete(&p.campaign.name, now)?;
    }
    Ok(Summary {
        sent,
        failed: tally.failed.load(Ordering::Relaxed),
        failed_by_code: shared
            .failed_by_code
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
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
        interrupted: stop.load(Ordering::SeqCst)
            && shared
                .paused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none(),
        paused: shared
            .paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
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

async fn worker(s: &Shared<'_>) {
    let mut conn: Option<Conn> = None;
    // The last accepted message, recorded together with the next claim.
    let mut carry: Option<Delivered> = None;
    let campaign = s.p.campaign.name.as_str();
    loop {
        if s.stop.load(Ordering::SeqCst) {
            break;
        }
        let Some(job) = s.next_job() else {
            // Others may still requeue a retry; wait for them before giving up.
            if s.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        run_job(s, &mut conn, &mut carry, job, campaign).await;
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    record_carry(s, &mut carry, campaign);
    if let Some(mut c) = conn {
        let _ = c.smtp.quit().await;
    }
}

/// Records a carried delivery on its own, before anything that may wait or stop.
fn record_carry(s: &Shared<'_>, carry: &mut Option<Delivered>, campaign: &str) {
    if let Some(d) = carry.take() {
        let r = s.ledger().finish(
            campaign,
            &d.hash,
            Status::Sent,
            &d.reply,
            d.message_id.as_deref(),
            d.at,
        );
        if let Err(e) = r {
            s.pause(format!("ledger: {e}"));
        }
    }
}

async fn run_job(
    s: &Shared<'_>,
    conn: &mut Option<Conn>,
    carry: &mut Option<Delivered>,
    job: Job,
    campaign: &str,
) {
    if let Some(t) = job.not_before {
        record_carry(s, carry, campaign);
        tokio::time::sleep_until(t.into()).await;
    }
    s.rate.wait().await;
    let now = s.clock();
    let row = job.row as usize;
    let hash = s.keys.recipient_hash(s.p.audience.email(row));
    // An unsubscribe that landed a moment ago stops this message: the claim re-reads the
    // suppression list in the same statement.
    let claimed = s
        .committer
        .step(&s.ledger, campaign, carry.clone(), hash, now)
        .await;
    if claimed.is_ok() {
        *carry = None;
    }
    match claimed {
        Ok(true) => {}
        Ok(false) => {
            let l = s.ledger();
            if l.is_suppressed(&hash).unwrap_or(false) {
                // Never sent, and never to be: the campaign can complete without them.
                if let Err(e) = l.drop_pending(campaign, &hash) {
                    s.pause(format!("ledger: {e}"));
                }
                s.tally.suppressed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        Err(e) => {
            s.pause(format!("ledger: {e}"));
            return;
        }
    }
    let release = |reply: &Reply| {
        let _ = s
            .ledger()
            .finish(campaign, &hash, Status::Pending, reply, None, s.clock());
    };
    let built =
        s.p.letter(s.keys, row, job.personalised)
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
    let to = match s.p.audience.email(row).parse::<Address>() {
        Ok(a) => a,
        Err(_) => {
            release(&Reply::default());
            return;
        }
    };
    if conn.is_none() {
        match connect(&s.target, &s.resolved, &s.hello).await {
            Ok(c) => *conn = Some(c),
            Err(why) => {
                release(&Reply::default());
                let n = s.consecutive_failures.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= s.opts.pause_after {
                    s.pause(format!(
                        "paused after {n} consecutive failures; last: {why}"
                    ));
                } else {
                    s.tally.retries.fetch_add(1, Ordering::Relaxed);
                    s.requeue(job, n.min(6) as u32);
                }
                return;
            }
        }
    }
    let Some(c) = conn.as_mut() else { return };
    let body = msg.formatted();
    let (attempt, keep) = transact(c, &s.from, &to, &body).await;
    if !keep && let Some(mut dead) = conn.take() {
        dead.smtp.abort().await;
    }
    let now = s.clock();
    let record = |status: Status, reply: &Reply, id: Option<&str>| {
        if let Err(e) = s.ledger().finish(campaign, &hash, status, reply, id, now) {
            s.pause(format!("ledger: {e}"));
        }
    };
    match attempt {
        Attempt::Sent(reply) => {
            *carry = Some(Delivered {
                hash,
                reply,
                message_id,
                at: now,
            });
            s.consecutive_failures.store(0, Ordering::SeqCst);
            s.tally.sent.fetch_add(1, Ordering::Relaxed);
        }
        Attempt::Failed(reply) => {
            record(Status::Failed, &reply, None);
            let key = reply
                .code
                .map_or_else(|| "unknown".to_string(), |c| c.to_string());
            *s.failed_by_code
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key)
                .or_default() += 1;
            s.tally.failed.fetch_add(1, Ordering::Relaxed);
            note_failure(s);
        }
        Attempt::Retry(reply) => {
            record(Status::Pending, &reply, None);
            let attempts = s.ledger().attempts(campaign, &hash).unwrap_or(u32::MAX);
            if attempts >= s.opts.max_attempts {
                s.tally.deferred.fetch_add(1, Ordering::Relaxed);
            } else {
                s.tally.retries.fetch_add(1, Ordering::Relaxed);
                s.requeue(job, attempts);
            }
            note_failure(s);
        }
        Attempt::Uncertain => {
            // Left `sending`: the next run reports it and does not resend it.
            s.tally.uncertain.fetch_add(1, Ordering::Relaxed);
            note_failure(s);
        }
    }
}

fn note_failure(s: &Shared<'_>) {
    let n = s.consecutive_failures.fetch_add(1, Ordering::SeqCst) + 1;
    if n >= s.opts.pause_after {
        s.pause(format!(
            "paused after {n} consecutive failures: check the relay before running again"
        ));
    }
}

/// Sends one-off test messages (not in the ledger) to `to`.
pub fn send_tests(
    target: &SmtpTarget,
    campaign: &Campaign,
    messages: Vec<(Address, lettre::Message)>,
) -> Result<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the sender: {e}")))?;
    runtime.block_on(async {
        let resolved = resolve(target).await?;
        let hello = ClientId::Domain(campaign.from_domain().to_string());
        let mut conn = connect(target, &resolved, &hello)
            .await
            .map_err(Error::Other)?;
        let from = campaign
            .return_path
            .clone()
            .unwrap_or_else(|| campaign.from.email.clone());
        let mut results = Vec::new();
        for (to, msg) in messages {
            let msg = sign(campaign, msg).map_err(Error::Other)?;
            let (attempt, _) = transact(&mut conn, &from, &to, &msg.formatted()).await;
            results.push(match attempt {
                Attempt::Sent(_) => "sent".to_string(),
                Attempt::Failed(r) | Attempt::Retry(r) => {
                    format!("refused ({})", r.code.unwrap_or_default())
                }
                Attempt::Uncertain => "uncertain".to_string(),
            });
        }
        let _ = conn.smtp.quit().await;
        Ok(results)
    })
}
