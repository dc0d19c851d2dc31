//! Operations over time against a real SMTP server (smtp-sink on 127.0.0.1): `run-due`
//! sends what is due once and never fires a late campaign, overlapping ticks deliver once,
//! the frequency cap holds a second campaign back, and the audit chain catches an edited
//! byte yet still verifies after a purge.

use std::collections::BTreeSet;
use std::path::Path;

use assert_cmd::Command;

use crate::send::sink::{DumpDir, Sink};
use crate::util::*;

const SAMPLE_RECIPIENTS: usize = 220;

/// `tact --state STATE --now WHEN`, run from the tree's root.
fn tact_at(t: &Tree, when: &str) -> Command {
    let mut cmd = Command::cargo_bin("tact").unwrap();
    cmd.current_dir(t.root())
        .env("NO_COLOR", "1")
        .env_remove("TACT_HOME")
        .env_remove("TACT_SMTP_URL")
        .env_remove("TACT_SMTP_PASSWORD")
        .arg("--state")
        .arg(t.state())
        .arg("--now")
        .arg(when);
    cmd
}

/// A copy of winter-sale named `name` in `folder`, fast, optionally scheduled.
pub(crate) fn scheduled(t: &Tree, folder: &str, name: &str, send_at: Option<&str>, policy: &str) {
    let text = t.read("sample-data/campaigns/winter-sale.toml");
    let text = text
        .replacen("name = \"winter-sale\"", &format!("name = \"{name}\""), 1)
        .replace("\"../customers.csv\"", "\"../sample-data/customers.csv\"")
        .replace(
            "\"../customers.schema.toml\"",
            "\"../sample-data/customers.schema.toml\"",
        )
        .replace("\"../../templates\"", "\"../templates\"");
    // Top-level keys must come before the first table.
    let at = send_at
        .map(|s| format!("send_at = \"{s}\"\n"))
        .unwrap_or_default();
    let text = match text.find("\n[") {
        Some(i) => format!("{}\n{at}{}", &text[..i], &text[i..]),
        None => format!("{text}\n{at}"),
    };
    let text = format!("{text}\n[send]\nrate_per_second = 5000\nconcurrency = 4\n");
    let text = if policy.is_empty() {
        text
    } else {
        text.replacen("[policy]", &format!("[policy]\n{policy}"), 1)
    };
    t.write(&format!("{folder}/{name}.toml"), &text);
    let check = run(tact_at(t, "2026-11-23T12:00:00Z")
        .arg("check")
        .arg(t.path(&format!("{folder}/{name}.toml"))));
    assert!(
        check.code == 0 || check.code == 2,
        "campaign {name} does not load: {}",
        check.stderr
    );
}

pub(crate) fn rcpts(d: &DumpDir) -> Vec<String> {
    d.deliveries()
        .iter()
        .map(|x| x.rcpt().to_lowercase())
        .collect()
}

fn unique(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

#[test]
fn run_due_sends_the_due_once_holds_the_future_and_reports_a_late_one_once() {
    let t = Tree::new();
    run_expect(tact_at(&t, "2026-11-23T12:00:00Z").arg("init"), 0);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    scheduled(&t, "sched", "due", Some("2026-11-23T09:00:00+00:00"), "");
    scheduled(&t, "sched", "later", Some("2026-11-24T09:00:00+00:00"), "");
    scheduled(&t, "sched", "late", Some("2026-11-20T09:00:00+00:00"), "");
    let tick = |when: &str| {
        run(tact_at(&t, when)
            .arg("run-due")
            .arg(t.path("sched"))
            .arg("--smtp")
            .arg(sink.url()))
    };

    let first = tick("2026-11-23T12:00:00Z");
    assert_eq!(
        first.code, 1,
        "a newly missed campaign makes the tick fail: {}",
        first.stdout
    );
    assert!(
        first.stdout.contains("due: sent (exit 0)"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("later: waiting until 2026-11-24T09:00:00+00:00"),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains("late: MISSED"), "{}", first.stdout);
    let got = rcpts(&dump);
    assert_eq!(got.len(), SAMPLE_RECIPIENTS);
    assert_eq!(unique(&got).len(), SAMPLE_RECIPIENTS);

    // The next tick: nothing new, and the missed campaign is not reported again.
    let second = tick("2026-11-23T12:05:00Z");
    assert_eq!(second.code, 0, "{}", second.stdout);
    assert!(second.stdout.contains("due: complete"), "{}", second.stdout);
    assert!(
        second.stdout.contains("late: missed earlier"),
        "{}",
        second.stdout
    );
    assert_eq!(dump.count(), SAMPLE_RECIPIENTS);

    // Its time comes: `later` goes out, once; `late` never does.
    let third = tick("2026-11-24T09:01:00Z");
    assert_eq!(third.code, 0, "{}", third.stdout);
    assert!(
        third.stdout.contains("later: sent (exit 0)"),
        "{}",
        third.stdout
    );
    assert_eq!(dump.count(), 2 * SAMPLE_RECIPIENTS);
    let audit = run_expect(
        tact_at(&t, "2026-11-24T09:02:00Z").arg("audit").arg("late"),
        0,
    );
    assert_eq!(
        audit.stdout.matches(" missed by ").count(),
        1,
        "{}",
        audit.stdout
    );
    drop(sink);
}

#[test]
fn two_overlapping_run_due_ticks_deliver_each_message_once() {
    let t = Tree::new();
    run_expect(tact_at(&t, "2026-11-23T12:00:00Z").arg("init"), 0);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    scheduled(&t, "sched", "due", Some("2026-11-23T09:00:00+00:00"), "");
    let spawn = || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("tact"))
            .current_dir(t.root())
            .env_remove("TACT_HOME")
            .env_remove("TACT_SMTP_URL")
            .args(["--state"])
            .arg(t.state())
            .args(["--now", "2026-11-23T12:00:00Z", "run-due"])
            .arg(t.path("sched"))
            .args(["--smtp", &sink.url()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let got = rcpts(&dump);
    assert_eq!(
        got.len(),
        SAMPLE_RECIPIENTS,
        "overlapping ticks sent some messages twice"
    );
    assert_eq!(unique(&got).len(), SAMPLE_RECIPIENTS);
    drop(sink);
}

#[test]
fn a_frequency_cap_holds_a_second_campaign_back_from_people_the_first_reached() {
    let t = Tree::new();
    run_expect(tact_at(&t, "2026-11-23T12:00:00Z").arg("init"), 0);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    scheduled(&t, "c", "first", None, "");
    scheduled(&t, "c", "second", None, "min_hours_between = 24");
    let send = |name: &str, when: &str, code: i32| {
        run_expect(
            tact_at(&t, when)
                .arg("send")
                .arg(t.path(&format!("c/{name}.toml")))
                .arg("--smtp")
                .arg(sink.url()),
            code,
        )
    };
    send("first", "2026-11-23T12:00:00Z", 0);
    assert_eq!(dump.count(), SAMPLE_RECIPIENTS);
    // Ten hours later everyone is capped: nobody is left to send to.
    let json = run(tact_at(&t, "2026-11-23T22:00:00Z")
        .arg("check")
        .arg(t.path("c/second.toml"))
        .arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v["audience"]["excluded"]["frequency_capped"],
        SAMPLE_RECIPIENTS
    );
    send("second", "2026-11-23T22:00:00Z", 2);
    assert_eq!(
        dump.count(),
        SAMPLE_RECIPIENTS,
        "the capped campaign reached someone"
    );
    // A day and more later the cap has passed.
    let r = send("second", "2026-11-24T13:00:00Z", 0);
    assert!(r.stdout.contains("sent 220"), "{}", r.stdout);
    assert_eq!(dump.count(), 2 * SAMPLE_RECIPIENTS);
    drop(sink);
}

fn edit_audit_body(state: &Path, seq: i64) {
    let db = rusqlite::Connection::open(state.join("ledger.db")).unwrap();
    let body: String = db
        .query_row("SELECT body FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
        .unwrap();
    // A few bytes: the verdict the run went out on, as someone covering tracks might.
    let edited = body.replacen("\"verdict\":\"notice\"", "\"verdict\":\"ok\"", 1);
    assert_ne!(body, edited);
    db.execute(
        "UPDATE audit SET body = ?1 WHERE seq = ?2",
        rusqlite::params![edited, seq],
    )
    .unwrap();
}

#[test]
fn audit_verify_catches_an_edited_byte_and_still_verifies_after_a_purge() {
    let t = Tree::new();
    run_expect(tact_at(&t, "2026-11-23T12:00:00Z").arg("init"), 0);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    scheduled(&t, "c", "first", None, "");
    run_expect(
        tact_at(&t, "2026-11-23T12:00:00Z")
            .arg("send")
            .arg(t.path("c/first.toml"))
            .arg("--smtp")
            .arg(sink.url()),
        0,
    );
    let ok = run_expect(
        tact_at(&t, "2026-11-23T12:00:00Z")
            .arg("audit")
            .arg("--verify"),
        0,
    );
    assert!(ok.stdout.contains("2 event(s) verified"), "{}", ok.stdout);
    let listed = run_expect(
        tact_at(&t, "2026-11-23T12:00:00Z")
            .arg("audit")
            .arg("first"),
        0,
    );
    assert!(
        listed.stdout.contains("send-started") && listed.stdout.contains("first_name (declared)"),
        "{}",
        listed.stdout
    );

    // A purge of everything older than a day keeps the chain verifiable.
    let purged = run_expect(
        tact_at(&t, "2026-12-10T00:00:00Z")
            .arg("purge")
            .arg("--older-than")
            .arg("1"),
        0,
    );
    assert!(
        purged
            .stdout
            .contains("purged 220 delivery row(s) and 2 audit event(s)"),
        "{}",
        purged.stdout
    );
    run_expect(
        tact_at(&t, "2026-12-10T00:00:00Z")
            .arg("audit")
            .arg("--verify"),
        0,
    );
    // The purged campaign still never sends again.
    let again = run_expect(
        tact_at(&t, "2026-12-10T00:00:00Z")
            .arg("send")
            .arg(t.path("c/first.toml"))
            .arg("--smtp")
            .arg(sink.url()),
        0,
    );
    assert!(again.stdout.contains("nothing to send"), "{}", again.stdout);
    assert_eq!(dump.count(), SAMPLE_RECIPIENTS);

    // A new run after the purge, then one edited byte in its record.
    scheduled(&t, "c", "second", None, "");
    run_expect(
        tact_at(&t, "2026-12-10T00:00:00Z")
            .arg("send")
            .arg(t.path("c/second.toml"))
            .arg("--smtp")
            .arg(sink.url()),
        0,
    );
    run_expect(
        tact_at(&t, "2026-12-10T00:00:00Z")
            .arg("audit")
            .arg("--verify"),
        0,
    );
    edit_audit_body(&t.state(), 4);
    let broken = run_expect(
        tact_at(&t, "2026-12-10T00:00:00Z")
            .arg("audit")
            .arg("--verify"),
        1,
    );
    assert!(
        broken.stderr.contains("broken at event 4"),
        "{}",
        broken.stderr
    );
    drop(sink);
}
