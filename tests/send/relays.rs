//! Several relays used together (`[[send.relay]]`), against real smtp-sinks: each keeps
//! to its own rate (read off the sinks' arrival times) and quota, and a relay that refuses,
//! answers 421 or dies is drained to the others without mailing anyone twice.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime};

use super::sink::{DumpDir, Sink};
use super::*;

struct RelayEntry<'a> {
    name: &'a str,
    url: String,
    rate: u32,
    concurrency: u32,
    quota: Option<u32>,
}

fn relay(name: &str, url: String, rate: u32, concurrency: u32) -> RelayEntry<'_> {
    RelayEntry {
        name,
        url,
        rate,
        concurrency,
        quota: None,
    }
}

/// Appends `[send]` (short rests, so a resting relay does not slow the test) and the
/// relays.
fn use_relays(t: &Tree, name: &str, relays: &[RelayEntry<'_>]) {
    let mut text = String::from("\n[send]\nretry_delay_seconds = 0.2\n");
    for r in relays {
        text.push_str(&format!(
            "\n[[send.relay]]\nname = \"{}\"\nurl = \"{}\"\nrate_per_second = {}\nconcurrency = {}\n",
            r.name, r.url, r.rate, r.concurrency
        ));
        if let Some(q) = r.quota {
            text.push_str(&format!("daily_quota = {q}\n"));
        }
    }
    t.edit(&campaign_rel(name), |s| format!("{s}{text}"));
}

/// `send --json` with no `--smtp`: the campaign's relays.
fn send_relays(t: &Tree, name: &str, now: &str, code: i32) -> (Run, Value) {
    let r = run_expect(
        t.tact_at(now)
            .arg("send")
            .arg(t.campaign(name))
            .arg("--json"),
        code,
    );
    let v = parse_json(&r);
    (r, v)
}

/// Recipient → how many messages they got, over several sinks.
fn per_address(dumps: &[&DumpDir]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in dumps {
        for m in d.deliveries() {
            *out.entry(m.rcpt().to_string()).or_default() += 1;
        }
    }
    out
}

/// The most messages a sink received within any one second.
fn busiest_second(dump: &DumpDir) -> usize {
    let mut times: Vec<SystemTime> = std::fs::read_dir(dump.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
        .collect();
    times.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]).unwrap() >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn two_relays_each_keep_to_their_own_rate_and_together_deliver_everyone_once() {
    let t = tree();
    let (da, db) = (DumpDir::new(), DumpDir::new());
    let (a, b) = (Sink::start(&da, &[]), Sink::start(&db, &[]));
    use_relays(
        &t,
        WINTER,
        &[
            relay("slow", a.url(), 40, 2),
            relay("fast", b.url(), 100, 2),
        ],
    );
    let (r, v) = send_relays(&t, WINTER, NOW, 0);
    let got = per_address(&[&da, &db]);
    assert_eq!(got.len(), WINTER_RECIPIENTS, "{}", r.stdout);
    assert!(got.values().all(|&n| n == 1), "someone was mailed twice");
    assert_eq!(n(&v, "summary.sent_by_relay.slow") as usize, da.count());
    assert_eq!(n(&v, "summary.sent_by_relay.fast") as usize, db.count());
    // Each within its own limit; the token bucket allows one at each end of a window.
    let (sa, sb) = (busiest_second(&da), busiest_second(&db));
    assert!(sa <= 40 + 2, "the 40/s relay took {sa} in one second");
    assert!(sb <= 100 + 2, "the 100/s relay took {sb} in one second");
    // Both were used in proportion to their rates, not one after the other.
    assert!(
        db.count() > da.count() && da.count() >= 40,
        "slow {} fast {}",
        da.count(),
        db.count()
    );
}

#[test]
fn a_relay_that_refuses_connections_or_answers_421_is_drained_to_the_others() {
    let t = tree();
    let (busy_dump, live_dump) = (DumpDir::new(), DumpDir::new());
    // 421 to every MAIL FROM, then hang up (RFC 5321 §3.8: the server is going away).
    let busy = Sink::start(&busy_dump, &["-Q", "mail"]);
    let live = Sink::start(&live_dump, &[]);
    use_relays(
        &t,
        WINTER,
        &[
            relay(
                "dead",
                format!("smtp://127.0.0.1:{}", closed_port()),
                1000,
                2,
            ),
            relay("busy", busy.url(), 1000, 2),
            relay("live", live.url(), 1000, 2),
        ],
    );
    let (r, v) = send_relays(&t, WINTER, NOW, 0);
    assert_eq!(
        n(&v, "summary.sent"),
        WINTER_RECIPIENTS as u64,
        "{}",
        r.stdout
    );
    assert_eq!(
        n(&v, "summary.sent_by_relay.live"),
        WINTER_RECIPIENTS as u64
    );
    assert_eq!(n(&v, "summary.sent_by_relay.dead"), 0);
    assert_eq!(n(&v, "summary.sent_by_relay.busy"), 0);
    assert_eq!(n(&v, "summary.failed") + n(&v, "summary.deferred"), 0);
    assert_eq!(busy_dump.count(), 0);
    let got = per_address(&[&live_dump]);
    assert_eq!(got.len(), WINTER_RECIPIENTS);
    assert!(got.values().all(|&n| n == 1));
}

#[test]
fn a_relay_that_dies_mid_send_is_drained_to_the_other_without_duplicates() {
    let t = tree();
    let (da, db) = (DumpDir::new(), DumpDir::new());
    let (a, b) = (Sink::start(&da, &[]), Sink::start(&db, &[]));
    use_relays(
        &t,
        WINTER,
        &[relay("a", a.url(), 100, 1), relay("b", b.url(), 50, 1)],
    );
    let bg = Background::send_via(&t, WINTER, &[]);
    let started = Instant::now();
    while da.count() < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "relay a got nothing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    a.stop();
    let before = db.count();
    let out = bg.wait(Duration::from_secs(30));
    let stdout = &out.stdout;
    let v = parse_json(&out);
    // 0, or 5 when the relay died with a message handed over but not acknowledged.
    let uncertain = n(&v, "summary.uncertain") as usize;
    assert!(
        uncertain <= 1,
        "one connection can leave one uncertain: {stdout}"
    );
    assert_eq!(out.code, if uncertain == 0 { 0 } else { 5 }, "{stdout}");
    // Killed mid-transaction, a's last file may be unfinished: not a delivery.
    let mut got = per_address(&[&db]);
    for m in da.deliveries_after_kill() {
        *got.entry(m.rcpt().to_string()).or_default() += 1;
    }
    assert!(got.values().all(|&n| n == 1), "someone was mailed twice");
    assert_eq!(got.len() + uncertain, WINTER_RECIPIENTS, "{stdout}");
    assert!(db.count() > before, "b took over after a died");
    assert_eq!(n(&v, "summary.sent_by_relay.b") as usize, db.count());
    drop(b);
}

#[test]
fn a_daily_quota_holds_across_runs_and_campaigns_and_comes_back_the_next_day() {
    let t = tree();
    let people = pick(&t, 4, 4);
    narrow(&t, WINTER, &people);
    let (da, db) = (DumpDir::new(), DumpDir::new());
    let (a, b) = (Sink::start(&da, &[]), Sink::start(&db, &[]));
    // The second campaign is the same eight people over both relays.
    clone_campaign(&t, WINTER, "second");
    let mut capped = relay("capped", a.url(), 1000, 2);
    capped.quota = Some(5);
    use_relays(&t, WINTER, &[capped]);
    let mut capped = relay("capped", a.url(), 1000, 2);
    capped.quota = Some(5);
    use_relays(&t, "second", &[capped, relay("open", b.url(), 1000, 2)]);

    let (r, v) = send_relays(&t, WINTER, NOW, 5);
    assert_eq!(n(&v, "summary.sent"), 5, "{}", r.stdout);
    assert_eq!(n(&v, "summary.deferred"), 3);
    assert_eq!(n(&v, "ledger.pending"), 3);
    assert_eq!(v["summary"]["quota_spent"], serde_json::json!(["capped"]));
    // Later the same day: the quota is spent, nothing more goes through that relay.
    let (_, v) = send_relays(&t, WINTER, "2026-11-23T20:00:00Z", 5);
    assert_eq!(n(&v, "summary.sent"), 0);
    assert_eq!(da.count(), 5);
    // Another campaign the same day: all of it through the other relay.
    let (r, v) = send_relays(&t, "second", "2026-11-23T21:00:00Z", 0);
    assert_eq!(n(&v, "summary.sent_by_relay.capped"), 0, "{}", r.stdout);
    assert_eq!(n(&v, "summary.sent_by_relay.open"), 8);
    assert_eq!(da.count(), 5);
    // A day after the first five, the relay takes the three that waited.
    let (r, v) = send_relays(&t, WINTER, "2026-11-24T12:30:00Z", 0);
    assert_eq!(n(&v, "summary.sent"), 3, "{}", r.stdout);
    assert!(r.stdout.contains("\"pending\": 0"), "{}", r.stdout);
    let got = per_address(&[&da]);
    assert_eq!(got.len(), 8);
    assert!(got.values().all(|&n| n == 1));
}

#[test]
fn relay_entries_are_checked_like_the_rest_of_the_campaign() {
    let t = tree();
    for (entry, says) in [
        (
            "url = \"smtp://127.0.0.1:25\"\nconcurrency = 0\n",
            "above 0",
        ),
        (
            "url = \"smtp://127.0.0.1:25\"\nname = \"a b\"\n",
            "letters, digits",
        ),
        (
            "url = \"smtp://127.0.0.1:25\"\nrate = 5\n",
            "unknown key `rate`",
        ),
        ("url = \"ftp://127.0.0.1\"\n", "smtp or smtps"),
    ] {
        clone_campaign(&t, WINTER, "bad");
        t.edit(&campaign_rel("bad"), |s| {
            format!("{s}\n[[send.relay]]\n{entry}")
        });
        let r = run_expect(t.tact().arg("send").arg(t.campaign("bad")), 2);
        assert!(r.stderr.contains(says), "{entry}: {}", r.stderr);
    }
}

/// A 5xx is about the recipient, not the relay: it stays a permanent failure and is not
/// tried again through another relay.
#[test]
fn a_permanent_refusal_at_one_relay_is_not_retried_at_another() {
    let t = tree();
    let people = pick(&t, 4, 4);
    narrow(&t, WINTER, &people);
    let (da, db) = (DumpDir::new(), DumpDir::new());
    let (a, b) = (Sink::start(&da, &["-f", "rcpt"]), Sink::start(&db, &[]));
    use_relays(
        &t,
        WINTER,
        &[
            relay("refusing", a.url(), 1000, 1),
            relay("fine", b.url(), 4, 1),
        ],
    );
    let (r, v) = send_relays(&t, WINTER, NOW, 5);
    let failed = n(&v, "summary.failed") as usize;
    let sent = n(&v, "summary.sent") as usize;
    assert!(failed >= 1, "the refusing relay got someone: {}", r.stdout);
    assert_eq!(failed + sent, 8, "{}", r.stdout);
    assert_eq!(n(&v, "ledger.failed") as usize, failed);
    assert_eq!(
        db.count(),
        sent,
        "a refused recipient was sent through the other relay"
    );
    assert_eq!(da.count(), 0);
    // And not on a later run either.
    let (_, v) = send_relays(&t, WINTER, NOW, 0);
    assert_eq!(n(&v, "summary.sent"), 0);
    assert_eq!(db.count(), sent);
}

/// A relay that refuses every connection beside one that works: it is given up after five
/// tries and named once in the summary, and the run completes through the other.
#[test]
fn a_dead_relay_beside_a_live_one_is_given_up_and_named() {
    let t = tree();
    let people = pick(&t, 3, 3);
    narrow(&t, WINTER, &people);
    let dump = DumpDir::new();
    let live = Sink::start(&dump, &[]);
    let port = closed_port();
    // The live relay takes six seconds; the dead one is out after about three (rests of
    // 0.2, 0.4, 0.8 and 1.6 s between its five tries).
    use_relays(
        &t,
        WINTER,
        &[
            relay("dead", format!("smtp://127.0.0.1:{port}"), 1000, 1),
            relay("live", live.url(), 1, 1),
        ],
    );
    let r = run_expect(t.tact().arg("send").arg(t.campaign(WINTER)), 0);
    let line = format!("given up: relay dead (127.0.0.1:{port}): connection refused (5 attempts)");
    assert_eq!(
        r.stdout.lines().filter(|l| *l == line).count(),
        1,
        "{}",
        r.stdout
    );
    assert_eq!(delivered_once(&dump.deliveries()), emails(&people));
}
