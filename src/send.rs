//! Sending: SMTP transport, connection pool, rate limit, retries and ledger updates.
//!
//! Stock lettre writes the message and its `\r\n.\r\n` terminator in two writes without
//! TCP_NODELAY, so Nagle waits for the server's delayed ACK (~40 ms) on every message. We
//! open the sockets ourselves with TCP_NODELAY and hand them to lettre's connection, then
//! drive MAIL / RCPT / DATA one by one so that every failure is known to have happened
//! before or after the message could have been accepted: before, the recipient goes back to
//! pending; after, without a reply, it stays `sending` (uncertain) and is never resent.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use lettre::Address;
use lettre::message::header::HeaderName;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use crate::campaign::Campaign;
use crate::error::{Error, Location, Result};
use crate::plan::Prepared;
use crate::state::ledger::{Delivered, Ledger, Reply, Status};
use crate::state::{Keys, RecipientHash};

/// How to reach the relay. The password comes only from the environment.
#[derive(Debug, Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub implicit_tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl SmtpTarget {
    /// `smtp://[user@]host:port` (STARTTLS) or `smtps://[user@]host:port` (implicit TLS).
    pub fn parse(url: &str, password: Option<String>) -> Result<SmtpTarget> {
        let bad = |m: &str| {
            Error::input(
                Location::file("--smtp"),
                format!("`{}`: {m}", redact_url(url)),
            )
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected smtp://host:port or smtps://host:port"))?;
        let implicit_tls = match scheme {
            "smtp" => false,
            "smtps" => true,
            _ => return Err(bad("the scheme must be smtp or smtps")),
        };
        let rest = rest.trim_end_matches('/');
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => {
                if u.contains(':') {
                    return Err(bad(
                        "put the password in TACT_SMTP_PASSWORD, never in the URL",
                    ));
                }
                (Some(u.to_string()), h)
            }
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (
                hostport.trim_matches(['[', ']']).to_string(),
                if implicit_tls { 465 } else { 587 },
            ),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(SmtpTarget {
            host,
            port,
            implicit_tls,
            user,
            password,
        })
    }
}

/// The URL as it may be printed: never with a password in it.
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_string(),
    }
}

/// A resolved relay: its addresses, and whether they are all loopback (where plain SMTP
/// is allowed, for local test servers and a local MTA).
#[derive(Debug, Clone)]
struct Resolved {
    addrs: Vec<SocketAddr>,
    loopback: bool,
}

async fn resolve(t: &SmtpTarget) -> Result<Resolved> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|e| Error::Other(format!("cannot resolve SMTP host {}: {e}", t.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Other(format!("SMTP host {} has no address", t.host)));
    }
    let loopback = addrs.iter().all(|a| match a.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    });
    Ok(Resolved { addrs, loopback })
}

/// One open, greeted (and where required, encrypted and authenticated) SMTP connection.
async fn connect(
    t: &SmtpTarget,
    r: &Resolved,
    hello: &ClientId,
) -> std::result::Result<AsyncSmtpConnection, String> {
    let tls = || TlsParameters::new(t.host.clone()).map_err(|e| format!("TLS setup: {e}"));
    let mut conn = if t.implicit_tls {
        // lettre opens this socket itself, so implicit TLS goes without TCP_NODELAY.
        AsyncSmtpConnection::connect_tokio1(
            r.addrs.as_slice(),
            Some(Duration::from_secs(30)),
            hello,
            Some(tls()?),
            None,
        )
        .await
        .map_err(|e| format!("cannot connect: {e}"))?
    } else {
        let mut last = String::from("no address");
        let mut stream = None;
        for addr in &r.addrs {
            match tokio::time::timeout(
                Duration::from_secs(30),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        let stream =
            stream.ok_or_else(|| format!("cannot connect to {}:{}: {last}", t.host, t.port))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), hello)
            .await
            .map_err(|e| format!("greeting: {e}"))?;
        if conn.can_starttls() {
            conn.starttls(tls()?, hello)
                .await
                .map_err(|e| format!("STARTTLS: {e}"))?;
        } else if !r.loopback {
            let _ = conn.quit().await;
            return Err(format!(
                "{} does not offer STARTTLS; tact sends in clear text only to loopback addresses (use smtps:// or a relay with TLS)",
                t.host
            ));
        }
        conn
    };
    if let Some(user) = &t.user {
        let password = t
            .password
            .clone()
            .ok_or("the URL names a user but TACT_SMTP_PASSWORD is not set")?;
        let creds = Credentials::new(user.clone(), password);
        conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
            .await
            .map_err(|e| format!("authentication failed: {}", code_of(&e)))?;
    }
    Ok(conn)
}

/// The reply code and enhanced status of an SMTP error, never its text (servers quote
/// addresses there).
fn reply_of(e: &lettre::transport::smtp::Error) -> Reply {
    let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
    let text = e.to_string();
    let enhanced = text
        .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && ["2", "4", "5"].contains(&parts[0])
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_string);
    Reply { code, enhanced }
}

fn code_of(e: &lettre::transport::smtp::Error) -> String {
    let r = reply_of(e);
    match (r.code, r.enhanced) {
        (Some(c), Some(x)) => format!("{c} {x}"),
        (Some(c), None) => c.to_string(),
        _ if e.is_timeout() => "timeout".into(),
        _ if e.is_tls() => "TLS error".into(),
        _ => "connection error".into(),
    }
}

fn reply_of_response(r: &lettre::transport::smtp::response::Response) -> Reply {
    let code = r.code().to_string().parse::<u16>().ok();
    let enhanced = r
        .first_word()
        .filter(|w| w.split('.').count() == 3 && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string);
    Reply { code, enhanced }
}

/// What became of one attempt.
enum Attempt {
    Sent(Reply),
    /// 4xx, or the connection failed before the message could have been accepted.
    Retry(Reply),
    /// 5xx: never retried.
    Failed(Reply),
    /// The connection failed after the message was handed over: it may have arrived.
    Uncertain,
}

async fn transact(
    conn: &mut AsyncSmtpConnection,
    from: &Address,
    to: &Address,
    body: &[u8],
) -> (Attempt, bool) {
    let mut params = Vec::new();
    if !body.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    // Before DATA's content is written, nothing can have been delivered.
    for step in 0..3 {
        let r = match step {
            0 => {
                conn.command(Mail::new(Some(from.clone()), params.clone()))
                    .await
            }
            1 => conn.command(Rcpt::new(to.clone(), vec![])).await,
            _ => conn.command(Data).await,
        };
        if let Err(e) = r {
            if e.is_response() || e.status().is_some() {
                let reply = reply_of(&e);
                // 421: the server is closing the connection (RFC 5321 §3.8).
                let open = reply.code != Some(421);
                if open {
                    let _ = conn.command(Rset).await;
                }
                return (
                    if e.is_permanent() {
                        Attempt::Failed(reply)
                    } else {
                        Attempt::Retry(reply)
                    },
                    open,
                );
            }
            return (Attempt::Retry(reply_of(&e)), false);
        }
    }
    match conn.message(body).await {
        Ok(resp) => (Attempt::Sent(reply_of_response(&resp)), true),
        Err(e) if e.status().is_some() => {
            let reply = reply_of(&e);
            let open = reply.code != Some(421);
            (
                if e.is_permanent() {
                    Attempt::Failed(reply)
                } else {
                    Attempt::Retry(reply)
                },
                open,
            )
        }
        Err(_) => (Attempt::Uncertain, false),
    }
}

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
    let mut conn: Option<AsyncSmtpConnection> = None;
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
        let _ = c.quit().await;
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
    conn: &mut Option<AsyncSmtpConnection>,
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
        .ledger()
        .sent_then_claim(campaign, carry.as_ref(), &hash, now);
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
        dead.abort().await;
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

/// The headers RFC 8058 §4 needs under the signature for one-click unsubscribe.
pub const DKIM_HEADERS: [&str; 6] = [
    "From",
    "Subject",
    "Date",
    "To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Signs with the campaign's `[dkim]` key, if it has one.
pub fn sign(
    c: &Campaign,
    mut msg: lettre::Message,
) -> std::result::Result<lettre::Message, String> {
    let Some(d) = &c.dkim else { return Ok(msg) };
    let key = load_dkim_key(&d.private_key).map_err(|e| e.to_string())?;
    let headers = DKIM_HEADERS
        .iter()
        .map(|h| HeaderName::new_from_ascii_str(h))
        .collect();
    let config = lettre::message::dkim::DkimConfig::new(
        d.selector.clone(),
        d.domain.clone(),
        key,
        headers,
        // relaxed/relaxed: with lettre 0.11's `simple` header canonicalization the
        // DKIM-Signature header is hashed folded differently from how it is sent, and no
        // verifier accepts the signature; relaxed also survives relays that refold headers.
        lettre::message::dkim::DkimCanonicalization {
            header: lettre::message::dkim::DkimCanonicalizationType::Relaxed,
            body: lettre::message::dkim::DkimCanonicalizationType::Relaxed,
        },
    );
    msg.sign(&config);
    Ok(msg)
}

/// RSA keys as PKCS#1 PEM; Ed25519 keys as the base64 of the 32-byte seed (RFC 8463),
/// optionally in a PEM-style wrapper. The file must be 0600.
pub fn load_dkim_key(path: &std::path::Path) -> Result<lettre::message::dkim::DkimSigningKey> {
    use lettre::message::dkim::{DkimSigningAlgorithm, DkimSigningKey};
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::input(
            Location::file(path),
            "the DKIM key is readable by others: chmod 600 it",
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |e: String| Error::input(Location::file(path), format!("not a usable DKIM key: {e}"));
    if text.contains("BEGIN RSA PRIVATE KEY") {
        DkimSigningKey::new(&text, DkimSigningAlgorithm::Rsa).map_err(|e| bad(e.to_string()))
    } else {
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        DkimSigningKey::new(body.trim(), DkimSigningAlgorithm::Ed25519)
            .map_err(|e| bad(e.to_string()))
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
        let _ = conn.quit().await;
        Ok(results)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let t = SmtpTarget::parse("smtp://127.0.0.1:2525", None).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.implicit_tls, t.user),
            ("127.0.0.1", 2525, false, None)
        );
        let t = SmtpTarget::parse("smtps://mailer@relay.example", Some("pw".into())).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.implicit_tls, t.user.as_deref()),
            ("relay.example", 465, true, Some("mailer"))
        );
        let t = SmtpTarget::parse("smtp://[::1]:25", None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 25));
        let e = SmtpTarget::parse("smtp://u:secret@relay.example:587", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TACT_SMTP_PASSWORD") && !e.contains("secret"),
            "{e}"
        );
        assert!(SmtpTarget::parse("http://x", None).is_err());
    }
}
