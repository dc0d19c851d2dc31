//! The hard-bounce breaker and pacing per mailbox provider, over real SMTP on 127.0.0.1
//! (the scripted relay of `hostile.rs`, and smtp-sink for the runs that follow).
//!
//! - A run whose RCPTs are refused as unknown above `[send] max_hard_bounce_rate` pauses
//!   once 200 recipients have been answered (exit 1), leaves the rest pending, and a later
//!   run sends exactly the rest; a rate under the limit, or fewer than 200 answered, never
//!   trips it.
//! - A `421 4.7.0` for gmail.com recipients backs off Gmail alone: every other provider's
//!   recipient is delivered before Gmail's first is accepted, and Gmail's are delivered
//!   within `max_attempts`; a provider that never stops deferring is given up for the run,
//!   its recipients left pending for the next.
//! - A provider's rate holds (spacing counted at the server, a lower bound only, so a slow
//!   machine cannot fail it), and so does the relay's.
//!
//! Timing: every wall-clock assertion is a lower bound on spacing the limits must cause, or
//! an ordering with seconds of margin.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use super::hostile::{Script, Scripted};
use super::*;

const PACE: &str = "pace";

/// A tree with campaign `pace`: one recipient per address `pN@DOMAIN` for each
/// `(domain, count)`, marketing consent and nothing else, a plain template, and
/// `[send]` = fast (5000/s, `conns` connections) plus `send` (more TOML lines, which may
/// open `[send.pacing.*]` tables). Returns the tree and the addresses.
fn pace_tree(domains: &[(&str, usize)], conns: usize, send: &str) -> (Tree, Vec<String>) {
    let t = tree();
    let mut csv = String::from("email,consent_marketing,consent_at\n");
    let mut all = Vec::new();
    let mut i = 0;
    for (domain, count) in domains {
        for _ in 0..*count {
            let a = format!("p{i}@{domain}");
            csv.push_str(&format!("{a},yes,2026-01-01\n"));
            all.push(a);
            i += 1;
        }
    }
    t.write("sample-data/pace.csv", &csv);
    t.write(
        "pace-templates/pace.txt.tera",
        "Hello.\n\n{{ why_you_got_this }}\nUnsubscribe: {{ unsubscribe_url }}\n{{ postal_address }}\n",
    );
    t.write(
        &campaign_rel(PACE),
        &format!(
            r#"name = "pace"
audience = "../pace.csv"
templates = "../../pace-templates"
template = "pace"
subject = "News"
from = "Northwind <news@northwind.example>"
unsubscribe_url = "https://northwind.example/unsubscribe"
postal_address = "1 Quay St, Bristol BS1 1AA, UK"

[policy]
min_segment_size = 1

[send]
rate_per_second = 5000
concurrency = {conns}
{send}
"#
        ),
    );
    (t, all)
}

fn send_to(t: &Tree, url: &str, code: i32) -> (Run, Value) {
    let r = run_expect(send_cmd(t, PACE, url).arg("--json"), code);
    let v = parse_json(&r);
    (r, v)
}

fn provider(v: &Value, p: &str, key: &str) -> u64 {
    n(v, &format!("summary.by_provider.{p}.{key}"))
}

/// Each address once at most among the RCPTs the relay accepted and the messages it took.
fn each_once(addrs: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for a in addrs {
        *count.entry(a).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "mailed more than once: {twice:?}");
    count.into_keys().collect()
}

// ---------------------------------------------------------------------------------------
// The hard-bounce breaker
// ---------------------------------------------------------------------------------------

/// 10% of 400 unknown, over 5%: the run pauses once 200 are answered, exactly then (one
/// connection), with the rest pending. A later run with the rate raised to 20% sends
/// exactly the rest: nobody twice, and no refused address tried again.
#[test]
fn ten_percent_unknown_pauses_after_200_and_a_later_run_resumes_without_resending() {
    let (t, all) = pace_tree(&[("example.org", 400)], 1, "");
    let relay = Scripted::start(Script::UnknownShare(10));
    let (r, v) = send_to(&t, &relay.url(""), 1);
    let paused = v["summary"]["paused"].as_str().unwrap_or_default();
    assert!(
        paused.contains("20 of 200 recipients were refused as unknown")
            && paused.contains("max_hard_bounce_rate 5%")
            && paused.contains("stay pending"),
        "{}",
        r.stdout
    );
    assert_eq!(n(&v, "summary.unknown_recipients"), 20);
    assert_eq!(n(&v, "summary.sent"), 180);
    assert_eq!(n(&v, "summary.failed"), 20);
    assert_eq!(n(&v, "ledger.pending"), 200);
    assert_eq!(n(&v, "ledger.failed"), 20);
    assert_eq!(n(&v, "ledger.sending"), 0);
    assert_eq!(relay.events().len(), 200, "RCPTs after the breaker tripped");

    t.edit(&campaign_rel(PACE), |s| {
        s.replace("[send]\n", "[send]\nmax_hard_bounce_rate = 0.2\n")
    });
    let (r, v) = send_to(&t, &relay.url(""), 5);
    assert!(v["summary"]["paused"].is_null(), "{}", r.stdout);
    assert_eq!(n(&v, "summary.sent"), 180);
    assert_eq!(n(&v, "summary.unknown_recipients"), 20);
    assert_eq!(n(&v, "ledger.pending"), 0);
    assert_eq!(n(&v, "ledger.failed"), 40);
    assert_eq!(n(&v, "ledger.sent"), 360);
    // Over both runs every address reached RCPT exactly once: the refused were not tried
    // again, the delivered not mailed again.
    let everyone = each_once(relay.events().into_iter().map(|e| e.rcpt));
    assert_eq!(everyone, all.iter().cloned().collect());
    assert_eq!(each_once(relay.delivered()).len(), 360);
}

/// As a cron log shows it: one `stopped:` line with the reason and no address; then a
/// relay that refuses nobody gets exactly the pending ones.
#[test]
fn after_the_breaker_a_fixed_run_sends_exactly_the_pending_ones() {
    let (t, all) = pace_tree(&[("example.org", 400)], 2, "");
    let relay = Scripted::start(Script::UnknownShare(10));
    let r = run_expect(&mut send_cmd(&t, PACE, &relay.url("")), 1);
    let stopped: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("stopped: "))
        .collect();
    assert_eq!(stopped.len(), 1, "{}", r.stdout);
    assert!(stopped[0].contains("refused as unknown"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("of which refused as unknown at RCPT TO: "),
        "{}",
        r.stdout
    );
    assert!(
        !r.all_output().contains("@example.org"),
        "{}",
        r.all_output()
    );
    let answered = relay.events().len();
    // Two connections: the one in flight when it tripped is finished, never more.
    assert!((200..=201).contains(&answered), "{answered}");
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let (_, v) = send_to(&t, &sink.url(), 0);
    assert_eq!(n(&v, "summary.sent") as usize, 400 - answered);
    let everyone = each_once(
        relay
            .events()
            .into_iter()
            .map(|e| e.rcpt)
            .chain(delivered_once(&dump.deliveries())),
    );
    assert_eq!(everyone, all.iter().cloned().collect());
}

/// 3% unknown is under 5%: the run goes to the end (exit 5: some failed).
#[test]
fn three_percent_unknown_does_not_trip() {
    let (t, _) = pace_tree(&[("example.org", 400)], 4, "");
    let relay = Scripted::start(Script::UnknownShare(3));
    let (r, v) = send_to(&t, &relay.url(""), 5);
    assert!(v["summary"]["paused"].is_null(), "{}", r.stdout);
    assert_eq!(n(&v, "summary.unknown_recipients"), 12);
    assert_eq!(n(&v, "summary.sent"), 388);
    assert_eq!(n(&v, "ledger.pending"), 0);
    assert_eq!(n(&v, "ledger.failed"), 12);
}

/// Below 200 answered it never trips, not even at 100%; the 200th answer does.
#[test]
fn all_unknown_trips_at_200_and_not_before() {
    let (t, _) = pace_tree(&[("example.org", 199)], 4, "");
    let relay = Scripted::start(Script::UnknownShare(100));
    let (r, v) = send_to(&t, &relay.url(""), 5);
    assert!(v["summary"]["paused"].is_null(), "{}", r.stdout);
    assert_eq!(n(&v, "summary.unknown_recipients"), 199);
    assert_eq!(n(&v, "ledger.failed"), 199);
    assert_eq!(n(&v, "ledger.pending"), 0);

    let (t, _) = pace_tree(&[("example.org", 260)], 1, "");
    let relay = Scripted::start(Script::UnknownShare(100));
    let (r, v) = send_to(&t, &relay.url(""), 1);
    let paused = v["summary"]["paused"].as_str().unwrap_or_default();
    assert!(paused.contains("200 of 200"), "{}", r.stdout);
    assert_eq!(n(&v, "ledger.failed"), 200);
    assert_eq!(n(&v, "ledger.pending"), 60);
}

// ---------------------------------------------------------------------------------------
// Pacing per provider
// ---------------------------------------------------------------------------------------

/// Gmail answers 421 4.7.0 twice: Gmail alone rests (1 s, then 2 s) while every other
/// provider's recipient is delivered, and Gmail's are delivered after, each once, within
/// `max_attempts`. The relay is not blamed: no pause, nothing given up.
#[test]
fn a_421_from_gmail_backs_off_gmail_only() {
    let (t, all) = pace_tree(
        &[("gmail.com", 4), ("yahoo.com", 4), ("example.org", 40)],
        4,
        "retry_delay_seconds = 1\nmax_attempts = 5\n\n\
         [send.pacing.gmail]\nconcurrency = 1\nrate_per_second = 1000\n\n\
         [send.pacing.yahoo]\nrate_per_second = 1000\n",
    );
    let relay = Scripted::start(Script::DeferDomain {
        domain: "gmail.com",
        times: 2,
    });
    let (r, v) = send_to(&t, &relay.url(""), 0);
    assert!(v["summary"]["paused"].is_null(), "{}", r.stdout);
    assert_eq!(v["summary"]["relays_out"], serde_json::json!([]));
    assert_eq!(n(&v, "summary.sent"), 48);
    assert_eq!(provider(&v, "gmail", "sent"), 4);
    assert_eq!(provider(&v, "gmail", "deferrals"), 2);
    assert_eq!(provider(&v, "yahoo", "sent"), 4);
    assert_eq!(provider(&v, "other", "sent"), 40);
    assert_eq!(each_once(relay.delivered()), all.iter().cloned().collect());

    let events = relay.events();
    let gmail = |e: &&super::hostile::Event| e.rcpt.ends_with("@gmail.com");
    let deferred: Vec<_> = events.iter().filter(|e| e.code == 421).collect();
    assert_eq!(deferred.len(), 2);
    assert!(deferred.iter().all(gmail));
    let first_gmail_ok = events
        .iter()
        .position(|e| e.code == 250 && gmail(&e))
        .expect("gmail accepted");
    let others_done_at = events
        .iter()
        .rposition(|e| !gmail(&e))
        .expect("others accepted");
    assert!(
        others_done_at < first_gmail_ok,
        "another provider waited for Gmail's backoff: {events:?}"
    );
    // The backoff doubles: 1 s, then 2 s, between Gmail's tries.
    let gmail_at: Vec<_> = events.iter().filter(gmail).map(|e| e.at).collect();
    assert!(gmail_at[1] - gmail_at[0] >= Duration::from_millis(900));
    assert!(gmail_at[2] - gmail_at[1] >= Duration::from_millis(1900));
    // The deferred recipient was tried three times, the others once.
    let rows = rows_by_address(&t.state(), PACE, &all.iter().cloned().collect());
    let tries: i64 = rows
        .iter()
        .filter(|(a, _)| a.ends_with("@gmail.com"))
        .map(|(_, r)| r.attempts)
        .sum();
    assert_eq!(tries, 4 + 2);
    assert!(rows.values().all(|r| r.status == "sent"));
}

/// Gmail never stops deferring: after `max_attempts` deferrals in a row it is given up for
/// the run, the other providers finish, Gmail's recipients stay pending (exit 5), and the
/// next run delivers exactly them.
#[test]
fn a_provider_that_keeps_deferring_is_left_for_a_later_run() {
    let (t, all) = pace_tree(
        &[("gmail.com", 5), ("outlook.com", 3), ("example.org", 20)],
        4,
        "retry_delay_seconds = 0.05\nmax_attempts = 3\n\n\
         [send.pacing.microsoft]\nrate_per_second = 1000\n",
    );
    let relay = Scripted::start(Script::DeferDomain {
        domain: "gmail.com",
        times: 1_000,
    });
    let (r, v) = send_to(&t, &relay.url(""), 5);
    assert!(v["summary"]["paused"].is_null(), "{}", r.stdout);
    assert_eq!(n(&v, "summary.sent"), 23);
    assert_eq!(provider(&v, "gmail", "sent"), 0);
    assert_eq!(provider(&v, "gmail", "deferred"), 5);
    assert_eq!(provider(&v, "microsoft", "sent"), 3);
    let why = v["summary"]["by_provider"]["gmail"]["gave_out"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("421 4.7.0"), "{}", r.stdout);
    assert_eq!(n(&v, "ledger.pending"), 5);
    // Three deferrals in a row, then no more tries.
    let tried = relay
        .events()
        .iter()
        .filter(|e| e.rcpt.ends_with("@gmail.com"))
        .count();
    assert!((3..=4).contains(&tried), "{tried}");

    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let human = run_expect(&mut send_cmd(&t, PACE, &sink.url()), 0);
    assert!(
        human.stdout.contains("by provider (sent/total): gmail 5/5"),
        "{}",
        human.stdout
    );
    let later = delivered_once(&dump.deliveries());
    assert!(later.iter().all(|a| a.ends_with("@gmail.com")));
    let everyone = each_once(relay.delivered().into_iter().chain(later));
    assert_eq!(everyone, all.iter().cloned().collect());
}

/// Microsoft at 4/s: consecutive Microsoft messages are at least a quarter second apart
/// (a lower bound, at the server), while every other recipient is delivered before the
/// last Microsoft one: the slow provider holds back nobody else.
#[test]
fn a_providers_rate_holds_and_holds_back_only_that_provider() {
    let (t, all) = pace_tree(
        &[
            ("outlook.com", 6),
            ("hotmail.co.uk", 2),
            ("example.org", 40),
        ],
        4,
        "[send.pacing.microsoft]\nrate_per_second = 4\nconcurrency = 2\n",
    );
    let relay = Scripted::start(Script::UnknownShare(0));
    let (_, v) = send_to(&t, &relay.url(""), 0);
    assert_eq!(provider(&v, "microsoft", "sent"), 8);
    assert_eq!(provider(&v, "microsoft", "total"), 8);
    assert_eq!(each_once(relay.delivered()), all.iter().cloned().collect());
    let events = relay.events();
    let ms = |e: &&super::hostile::Event| {
        e.rcpt.ends_with("@outlook.com") || e.rcpt.ends_with("@hotmail.co.uk")
    };
    let at: Vec<_> = events.iter().filter(ms).map(|e| e.at).collect();
    assert_eq!(at.len(), 8);
    // Two connections share the one pace: turns a quarter second apart, so seven gaps
    // take 1.75 s. Measured at the server, a connect can delay one RCPT past its turn:
    // hence half a gap each, and 1.5 s in all (unpaced, the eight take milliseconds).
    for w in at.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(125),
            "{:?}",
            w[1] - w[0]
        );
    }
    assert!(at[7] - at[0] >= Duration::from_millis(1_500));
    let last_ms = events.iter().rposition(|e| ms(&e)).expect("microsoft");
    let last_other = events.iter().rposition(|e| !ms(&e)).expect("others");
    assert!(last_other < last_ms, "the others waited for Microsoft");
}

/// Both limits hold: Gmail may go at 1000/s, the relay only at 10/s, so the relay's pace
/// is what Gmail gets.
#[test]
fn the_relays_own_rate_still_holds() {
    let (t, _) = pace_tree(
        &[("gmail.com", 8)],
        4,
        "[send.pacing.gmail]\nrate_per_second = 1000\nconcurrency = 4\n",
    );
    t.edit(&campaign_rel(PACE), |s| {
        s.replace("rate_per_second = 5000", "rate_per_second = 10")
    });
    let relay = Scripted::start(Script::UnknownShare(0));
    let (_, v) = send_to(&t, &relay.url(""), 0);
    assert_eq!(provider(&v, "gmail", "sent"), 8);
    let at: Vec<_> = relay.events().iter().map(|e| e.at).collect();
    // Seven gaps of 0.1 s; a connect may delay the first RCPT a little past its turn.
    assert!(
        at[7] - at[0] >= Duration::from_millis(500),
        "{:?}",
        at[7] - at[0]
    );
}
