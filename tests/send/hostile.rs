//! Hostile relays: ones that refuse connections, never answer, hang up after the greeting,
//! refuse the sender, go away with 421 mid-run, stall mid-transaction or do not offer
//! STARTTLS. Each run ends within a bounded time with exit 1 and one line naming the relay
//! and the cause, marks nobody failed (everyone not sent stays pending; a stall after the
//! message's content is uncertain, as the at-most-once rules say), and a second run
//! against a good smtp-sink delivers exactly the rest, each once.
//!
//! smtp-sink plays what it can (`-q ehlo`, `-f mail`, `-w`); a tiny scripted server
//! (`Scripted`, a std `TcpListener` thread) plays the rest, and the recipient-level
//! refusals the pacing tests need (`tests/send/pacing.rs`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;

/// How the scripted relay behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Script {
    /// Accepts connections and never says a word.
    Silent,
    /// 554 5.7.1 for a greeting: no service for this client.
    RefuseClient,
    /// 550 5.7.1 to every MAIL FROM.
    RefuseSender,
    /// Takes this many messages, then answers the next MAIL FROM with 421 and hangs up;
    /// every later connection gets a 421 greeting.
    GoAwayAfter(usize),
    /// Answers MAIL FROM, then never answers RCPT TO.
    StallAtRcpt,
    /// Takes the message's content, then never answers the final dot.
    StallAfterData,
    /// Refuses this percentage of RCPTs with `550 5.1.1` (no such user), spread evenly
    /// over the RCPTs in the order they arrive (over all connections): with 10, every
    /// tenth.
    UnknownShare(u32),
    /// Answers RCPT to an address at `domain` with `421 4.7.0` and closes the connection,
    /// the first `times` times; accepts it afterwards.
    DeferDomain { domain: &'static str, times: usize },
}

/// One answered RCPT: when, to whom (lowercase) and the reply code.
#[derive(Debug, Clone)]
pub(super) struct Event {
    pub at: Instant,
    pub rcpt: String,
    pub code: u16,
}

/// What the scripted relay saw over all its connections.
#[derive(Default)]
pub(super) struct Seen {
    rcpts: AtomicUsize,
    deferred: AtomicUsize,
    events: Mutex<Vec<Event>>,
}

/// A scripted SMTP server on 127.0.0.1; stops when dropped.
pub(super) struct Scripted {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Envelope recipients of every message it answered 250 to.
    delivered: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    seen: Arc<Seen>,
    accept: Option<JoinHandle<()>>,
}

impl Scripted {
    pub(super) fn start(script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Seen::default());
        let (s, d, c, seen2) = (
            stop.clone(),
            delivered.clone(),
            connections.clone(),
            seen.clone(),
        );
        let accept = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        stream.set_nonblocking(false).unwrap();
                        if script == Script::Silent {
                            // Open, and silent, until the server stops.
                            held.push(stream);
                            continue;
                        }
                        let (s, d, seen) = (s.clone(), d.clone(), seen2.clone());
                        std::thread::spawn(move || {
                            let _ = serve(script, stream, &s, &d, &seen);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Scripted {
            port,
            stop,
            delivered,
            connections,
            seen,
            accept: Some(accept),
        }
    }

    pub(super) fn url(&self, query: &str) -> String {
        format!("smtp://127.0.0.1:{}{query}", self.port)
    }

    pub(super) fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }

    /// Every RCPT it answered, in order.
    pub(super) fn events(&self) -> Vec<Event> {
        self.seen.events.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// One connection, by the script. Lines are read one at a time, so pipelined commands
/// are answered in order too.
fn serve(
    script: Script,
    stream: TcpStream,
    stop: &AtomicBool,
    delivered: &Mutex<Vec<String>>,
    seen: &Seen,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let going_away = |d: &Mutex<Vec<String>>| match script {
        Script::GoAwayAfter(n) => d.lock().unwrap().len() >= n,
        _ => false,
    };
    if going_away(delivered) {
        out.write_all(b"421 4.3.2 scripted: service shutting down\r\n")?;
        return Ok(());
    }
    if script == Script::RefuseClient {
        out.write_all(b"554 5.7.1 scripted: no service for you\r\n")?;
        return Ok(());
    }
    out.write_all(b"220 scripted ESMTP\r\n")?;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    while next_line(&mut lines, &mut line, stop)? {
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-scripted\r\n250 8BITMIME\r\n",
            "HELO" | "RSET" | "NOOP" => {
                rcpts.clear();
                b"250 2.0.0 ok\r\n"
            }
            "MAIL" => match script {
                Script::RefuseSender => b"550 5.7.1 scripted: sender not allowed\r\n",
                _ if going_away(delivered) => {
                    out.write_all(b"421 4.3.2 scripted: service shutting down\r\n")?;
                    return Ok(());
                }
                _ => b"250 2.1.0 ok\r\n",
            },
            "RCPT" if script == Script::StallAtRcpt => {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Ok(());
            }
            "RCPT" => {
                let addr = line
                    .split_once(':')
                    .map_or("", |(_, a)| a)
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches(['<', '>'])
                    .to_lowercase();
                let n = seen.rcpts.fetch_add(1, Ordering::SeqCst);
                let (code, reply): (u16, &[u8]) = match script {
                    Script::UnknownShare(pct)
                        if (n + 1) * pct as usize / 100 > n * pct as usize / 100 =>
                    {
                        (550, b"550 5.1.1 scripted: no such user here\r\n")
                    }
                    Script::DeferDomain { domain, times }
                        if addr.ends_with(&format!("@{domain}"))
                            && seen.deferred.fetch_add(1, Ordering::SeqCst) < times =>
                    {
                        (
                            421,
                            b"421 4.7.0 scripted: try again later, closing connection\r\n",
                        )
                    }
                    _ => (250, b"250 2.1.5 ok\r\n"),
                };
                seen.events.lock().unwrap().push(Event {
                    at: Instant::now(),
                    rcpt: addr.clone(),
                    code,
                });
                if code == 421 {
                    out.write_all(reply)?;
                    return Ok(());
                }
                if code == 250 {
                    rcpts.push(addr);
                }
                reply
            }
            "DATA" => {
                out.write_all(b"354 go ahead\r\n")?;
                // Up to the lone dot.
                loop {
                    if !next_line(&mut lines, &mut line, stop)? {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                }
                if script == Script::StallAfterData {
                    // The whole message is here; no answer, ever.
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    return Ok(());
                }
                delivered.lock().unwrap().append(&mut rcpts);
                b"250 2.0.0 queued\r\n"
            }
            "QUIT" => {
                out.write_all(b"221 2.0.0 bye\r\n")?;
                return Ok(());
            }
            _ => b"502 5.5.2 scripted: not implemented\r\n",
        };
        out.write_all(reply)?;
    }
    Ok(())
}

/// The next line into `line`, waiting out read timeouts; false at the end of the stream or
/// once the server stops.
fn next_line(
    lines: &mut BufReader<TcpStream>,
    line: &mut String,
    stop: &AtomicBool,
) -> std::io::Result<bool> {
    loop {
        line.clear();
        match lines.read_line(line) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A tree whose winter-sale sends fast and rests briefly between reconnects.
fn hostile_tree() -> Tree {
    let t = tree();
    set_send(&t, WINTER, &[("retry_delay_seconds", "0.2")]);
    t
}

/// How long any of these runs may take: generous, against a hang.
const BOUND: Duration = Duration::from_secs(60);

/// `send` to `url`, without --json (the output a person or a cron log reads), killed
/// after `BOUND`.
fn hostile_send(t: &Tree, url: &str, code: i32) -> (Run, Duration) {
    let started = Instant::now();
    let r = run_expect(send_cmd(t, WINTER, url).timeout(BOUND), code);
    let took = started.elapsed();
    assert!(
        took < BOUND,
        "the run took {took:?}\n{}\n{}",
        r.stdout,
        r.stderr
    );
    (r, took)
}

/// The cause is said once, on one line, with every piece in `wanted`; no customer's
/// address is printed.
fn says_once(t: &Tree, r: &Run, wanted: &[&str]) -> String {
    let all = r.all_output();
    let lines: Vec<&str> = all
        .lines()
        .filter(|l| wanted.iter().all(|w| l.contains(w)))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "wanted one line with {wanted:?}\n--- stdout\n{}\n--- stderr\n{}",
        r.stdout,
        r.stderr
    );
    for c in customers(&t.path("sample-data/customers.csv")) {
        let a = c.email();
        assert!(
            a.len() < 5 || !all.contains(&a),
            "an address was printed:\n{all}"
        );
    }
    lines[0].to_string()
}

/// The ledger's statuses for winter-sale.
fn statuses(t: &Tree) -> BTreeMap<String, usize> {
    status_counts(&campaign_rows(&t.state(), WINTER))
}

fn only_pending(t: &Tree, pending: usize) {
    let want = if pending == 0 {
        BTreeMap::new()
    } else {
        BTreeMap::from([("pending".to_string(), pending)])
    };
    let got: BTreeMap<String, usize> = statuses(t)
        .into_iter()
        .filter(|(s, _)| s != "sent")
        .collect();
    assert_eq!(got, want, "nobody failed or uncertain, the rest pending");
}

/// A second run against a good sink: exactly the ones not yet delivered, each once; with
/// `earlier`, everyone the campaign plans is then delivered exactly once overall.
fn rerun_delivers_the_rest(t: &Tree, earlier: &[String], uncertain: usize) {
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let r = run(send_cmd(t, WINTER, &sink.url()).arg("--json"));
    // Uncertain rows from the earlier run may (by the exit-code contract) make this 5.
    let codes: &[i32] = if uncertain > 0 { &[0, 5] } else { &[0] };
    assert!(
        codes.contains(&r.code),
        "exit {}\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let v = parse_json(&r);
    let want = WINTER_RECIPIENTS - earlier.len() - uncertain;
    assert_eq!(n(&v, "summary.sent") as usize, want, "{}", r.stdout);
    let now = delivered_once(&dump.deliveries());
    assert_eq!(now.len(), want);
    let mut all: BTreeMap<&str, usize> = BTreeMap::new();
    for a in earlier.iter().chain(now.iter()) {
        *all.entry(a.as_str()).or_default() += 1;
    }
    assert!(
        all.values().all(|&k| k == 1),
        "mailed twice across the runs"
    );
    assert_eq!(all.len(), WINTER_RECIPIENTS - uncertain);
    assert_eq!(n(&v, "ledger.failed"), 0);
    assert_eq!(n(&v, "ledger.pending"), 0);
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Test timeouts, short: the defaults are tens of seconds.
const QUICK: &str = "?connect_timeout=1&greeting_timeout=1&command_timeout=1&data_timeout=1";

#[test]
fn a_relay_that_refuses_every_connection_stops_the_run_with_one_line() {
    let t = hostile_tree();
    let port = closed_port();
    let (r, took) = hostile_send(&t, &format!("smtp://127.0.0.1:{port}"), 1);
    let line = says_once(
        &t,
        &r,
        &[
            &format!("relay 127.0.0.1:{port}"),
            "connection refused",
            "attempts",
        ],
    );
    assert!(!line.contains("os error"), "{line}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    only_pending(&t, WINTER_RECIPIENTS);
    rerun_delivers_the_rest(&t, &[], 0);
}

#[test]
fn a_relay_that_accepts_and_never_greets_stops_the_run() {
    let t = hostile_tree();
    let silent = Scripted::start(Script::Silent);
    let (r, _) = hostile_send(&t, &silent.url(QUICK), 1);
    says_once(
        &t,
        &r,
        &[&format!("relay 127.0.0.1:{}", silent.port), "no greeting"],
    );
    let tries = silent.connections.load(Ordering::SeqCst);
    assert!((1..=10).contains(&tries), "{tries} connections");
    only_pending(&t, WINTER_RECIPIENTS);
    rerun_delivers_the_rest(&t, &[], 0);
}

#[test]
fn a_relay_that_hangs_up_after_the_greeting_stops_the_run() {
    let t = hostile_tree();
    let dump = DumpDir::new();
    let rude = Sink::start(&dump, &["-q", "ehlo"]);
    let (r, _) = hostile_send(&t, &rude.url(), 1);
    says_once(
        &t,
        &r,
        &[
            &format!("relay 127.0.0.1:{}", rude.port),
            "closed the connection",
        ],
    );
    assert_eq!(dump.count(), 0);
    only_pending(&t, WINTER_RECIPIENTS);
    rerun_delivers_the_rest(&t, &[], 0);
}

/// A 5xx greeting or answer to EHLO is a refusal of the client: said at once, not tried
/// five times.
#[test]
fn a_relay_that_refuses_us_at_the_greeting_stops_the_run_at_once() {
    let t = hostile_tree();
    let scripted = Scripted::start(Script::RefuseClient);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &["-f", "ehlo"]);
    for (port, url, code) in [
        (scripted.port, scripted.url(""), "554 5.7.1 at the greeting"),
        (sink.port, sink.url(), "500 5.3.0 at the greeting"),
    ] {
        let (r, _) = hostile_send(&t, &url, 1);
        let line = says_once(&t, &r, &[&format!("relay 127.0.0.1:{port}"), code]);
        assert!(!line.contains("attempts"), "tried again: {line}");
        only_pending(&t, WINTER_RECIPIENTS);
    }
    assert!(scripted.connections.load(Ordering::SeqCst) <= CONCURRENCY);
    assert_eq!(dump.count(), 0);
    rerun_delivers_the_rest(&t, &[], 0);
}

/// The sender's problem, not the recipients': the run pauses at once with the reply code
/// and nobody is marked failed.
#[test]
fn a_refused_sender_pauses_the_run_and_fails_nobody() {
    let t = hostile_tree();
    let scripted = Scripted::start(Script::RefuseSender);
    let (r, _) = hostile_send(&t, &scripted.url(""), 1);
    says_once(
        &t,
        &r,
        &[
            &format!("relay 127.0.0.1:{}", scripted.port),
            "550 5.7.1",
            "MAIL FROM",
        ],
    );
    only_pending(&t, WINTER_RECIPIENTS);
    // smtp-sink's hard refusal of MAIL (500 5.3.0), pipelined: the same.
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &["-f", "mail"]);
    let (r, _) = hostile_send(&t, &sink.url(), 1);
    says_once(&t, &r, &["500 5.3.0", "MAIL FROM"]);
    only_pending(&t, WINTER_RECIPIENTS);
    rerun_delivers_the_rest(&t, &[], 0);
}

#[test]
fn a_relay_that_goes_away_with_421_mid_run_stops_it_and_the_rest_go_later() {
    let t = tree();
    // One connection, so the count before the 421 is exact.
    set_send(
        &t,
        WINTER,
        &[("concurrency", "1"), ("retry_delay_seconds", "0.2")],
    );
    let scripted = Scripted::start(Script::GoAwayAfter(7));
    let (r, _) = hostile_send(&t, &scripted.url(QUICK), 1);
    says_once(
        &t,
        &r,
        &[&format!("relay 127.0.0.1:{}", scripted.port), "421"],
    );
    let first = scripted.delivered();
    assert_eq!(first.len(), 7);
    assert_eq!(statuses(&t).get("sent"), Some(&7));
    only_pending(&t, WINTER_RECIPIENTS - 7);
    rerun_delivers_the_rest(&t, &first, 0);
}

/// No reply to a command before the message's content: pending. No reply to its final
/// dot: uncertain, never resent. Either way the run stops.
#[test]
fn a_relay_that_stalls_mid_transaction_stops_the_run() {
    let t = hostile_tree();
    let at_rcpt = Scripted::start(Script::StallAtRcpt);
    let (r, _) = hostile_send(&t, &at_rcpt.url(QUICK), 1);
    says_once(
        &t,
        &r,
        &[&format!("relay 127.0.0.1:{}", at_rcpt.port), "no answer"],
    );
    assert!(at_rcpt.delivered().is_empty());
    only_pending(&t, WINTER_RECIPIENTS);
    drop(at_rcpt);

    let stall = Scripted::start(Script::StallAfterData);
    let (r, _) = hostile_send(&t, &stall.url(QUICK), 1);
    says_once(
        &t,
        &r,
        &[&format!("relay 127.0.0.1:{}", stall.port), "no answer"],
    );
    let s = statuses(&t);
    let uncertain = s.get("sending").copied().unwrap_or(0);
    assert!((1..=CONCURRENCY).contains(&uncertain), "{s:?}");
    assert_eq!(s.get("failed"), None, "{s:?}");
    assert_eq!(
        s.get("pending").copied().unwrap_or(0),
        WINTER_RECIPIENTS - uncertain
    );
    rerun_delivers_the_rest(&t, &[], uncertain);
}

/// `starttls=required` holds a loopback relay to the rule every other relay has: one
/// that does not offer STARTTLS gets nothing, and the run says so at once.
#[test]
fn a_relay_without_starttls_where_it_is_required_gets_nothing() {
    let t = hostile_tree();
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let (r, took) = hostile_send(&t, &format!("{}?starttls=required", sink.url()), 1);
    says_once(&t, &r, &["does not offer STARTTLS"]);
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(dump.count(), 0);
    only_pending(&t, WINTER_RECIPIENTS);
}

/// A URL with a user and no password is refused before anything is queued.
#[test]
fn a_user_without_a_password_is_refused_before_sending() {
    let t = hostile_tree();
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let url = format!("smtp://mailer@127.0.0.1:{}", sink.port);
    let (r, took) = hostile_send(&t, &url, 2);
    says_once(&t, &r, &["TACT_SMTP_PASSWORD"]);
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(dump.count(), 0);
    assert!(campaign_rows(&t.state(), WINTER).is_empty());
    // And the same for a campaign's relay, naming its own variable.
    t.edit(&campaign_rel(WINTER), |s| {
        format!("{s}\n[[send.relay]]\nname = \"ses\"\nurl = \"{url}\"\npassword_env = \"TACT_SES_PASSWORD\"\n")
    });
    let r = run_expect(t.tact().arg("send").arg(t.campaign(WINTER)), 2);
    says_once(&t, &r, &["TACT_SES_PASSWORD"]);
    assert!(campaign_rows(&t.state(), WINTER).is_empty());
}
