#![allow(clippy::unwrap_used)]
//! `tact send` against a real SMTP server (Postfix's `smtp-sink` on 127.0.0.1, one per
//! test): exactly the plan's recipients, at most once across reruns and a `kill -9`, 4xx
//! retried, 5xx never, disconnects, suppression mid-send, no personal data in the state
//! directory, `--dry-run` / `--test`, and DKIM signatures checked by an independent verifier
//! (Python's dkimpy). Without smtp-sink (or python3 + dkimpy for the DKIM test) the tests
//! fail and say to run `tests/setup.sh`: they never skip.
//!
//! Campaigns are copies of the samples with `[send] rate_per_second = 5000, concurrency =
//! 4`; tests that need a handful of recipients narrow the segment to named customer ids.

pub mod bounce_loop;
mod dkim;
mod hostile;
mod pacing;
pub mod postfix;
mod relays;
pub mod sink;
pub mod test_send;
mod uncertain;
mod verp;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;
use sink::{Delivery, DumpDir, Sink};

const WINTER: &str = "winter-sale";
/// The sample's winter-sale recipients (personalised + generic), as the CLI tests pin them.
const WINTER_RECIPIENTS: usize = 220;
const CONCURRENCY: usize = 4;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A writable copy of the samples with an initialised state directory.
fn tree() -> Tree {
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    t
}

fn campaign_rel(name: &str) -> String {
    format!("sample-data/campaigns/{name}.toml")
}

/// Appends a `[send]` table: fast (5000/s, 4 connections) unless overridden.
fn set_send(t: &Tree, name: &str, overrides: &[(&str, &str)]) {
    let mut table: Vec<(String, String)> = vec![
        ("rate_per_second".into(), "5000".into()),
        ("concurrency".into(), CONCURRENCY.to_string()),
    ];
    for (k, v) in overrides {
        match table.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = (*v).to_string(),
            None => table.push(((*k).to_string(), (*v).to_string())),
        }
    }
    let lines: String = table.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    t.edit(&campaign_rel(name), |s| format!("{s}\n[send]\n{lines}"));
}

/// A copy of campaign `from` named `to` (same folder, so its relative paths still hold).
fn clone_campaign(t: &Tree, from: &str, to: &str) {
    let text = t.read(&campaign_rel(from)).replacen(
        &format!("name = \"{from}\""),
        &format!("name = \"{to}\""),
        1,
    );
    assert!(text.contains(&format!("name = \"{to}\"")));
    t.write(&campaign_rel(to), &text);
}

/// The first `pers` personalised and `generic` generic recipients the test oracle is sure
/// of (GB, current consent, a clean unique address).
fn pick(t: &Tree, pers: usize, generic: usize) -> Vec<Customer> {
    let all = customers(&t.path("sample-data/customers.csv"));
    let ok = |c: &Customer| !c.get("customer_id").trim().is_empty();
    let p: Vec<Customer> = expected_recipients(&all, true)
        .into_iter()
        .filter(ok)
        .take(pers)
        .collect();
    let g: Vec<Customer> = expected_recipients(&all, false)
        .into_iter()
        .filter(ok)
        .take(generic)
        .collect();
    assert_eq!(
        (p.len(), g.len()),
        (pers, generic),
        "not enough sample rows"
    );
    p.into_iter().chain(g).collect()
}

/// Narrows campaign `name` to these customers (still GB only), and lets so small a segment
/// past the `min_segment_size` caution. Checks that the plan is exactly them.
fn narrow(t: &Tree, name: &str, people: &[Customer]) {
    let ids: Vec<String> = people
        .iter()
        .map(|c| format!("\"{}\"", c.get("customer_id")))
        .collect();
    t.edit(&campaign_rel(name), |s| {
        s.replacen(
            "segment = 'country == \"GB\"'",
            &format!(
                "segment = 'country == \"GB\" and customer_id in [{}]'",
                ids.join(", ")
            ),
            1,
        )
        .replacen("min_segment_size = 50", "min_segment_size = 1", 1)
    });
    let (_, v) = check_json(t.tact().arg("check").arg(t.campaign(name)).arg("--json"));
    let pers = people
        .iter()
        .filter(|c| granted(c.get("consent_personalisation")))
        .count();
    assert_eq!(
        (
            v["audience"]["personalised"].as_u64(),
            v["audience"]["generic"].as_u64()
        ),
        (Some(pers as u64), Some((people.len() - pers) as u64)),
        "the narrowed plan is not the picked people: {v}"
    );
}

fn emails(people: &[Customer]) -> BTreeSet<String> {
    people.iter().map(Customer::email).collect()
}

fn send_cmd(t: &Tree, name: &str, url: &str) -> assert_cmd::Command {
    let mut c = t.tact();
    c.arg("send").arg(t.campaign(name)).arg("--smtp").arg(url);
    c
}

fn parse_json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "send --json printed no JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
            r.stdout, r.stderr
        )
    })
}

/// `send --json`, expecting `code`; returns the run and its JSON.
fn send_json(t: &Tree, name: &str, sink: &Sink, code: i32) -> (Run, Value) {
    let r = run_expect(send_cmd(t, name, &sink.url()).arg("--json"), code);
    let v = parse_json(&r);
    (r, v)
}

fn n(v: &Value, path: &str) -> u64 {
    let mut at = v;
    for k in path.split('.') {
        at = &at[k];
    }
    at.as_u64()
        .unwrap_or_else(|| panic!("no number at {path} in {v:#}"))
}

/// A `tact send --json` running in the background; killed if the test ends first.
struct Background {
    child: Option<Child>,
}

impl Background {
    fn send(t: &Tree, name: &str, url: &str) -> Background {
        Background::send_via(t, name, &["--smtp", url])
    }

    /// `args` say where to send: `--smtp URL`, or nothing for the campaign's relays.
    fn send_via(t: &Tree, name: &str, args: &[&str]) -> Background {
        let child = StdCommand::new(env!("CARGO_BIN_EXE_tact"))
            .current_dir(t.root())
            .env("NO_COLOR", "1")
            .env_remove("TACT_HOME")
            .env_remove("TACT_SMTP_URL")
            .env_remove("TACT_SMTP_PASSWORD")
            .arg("--state")
            .arg(t.state())
            .arg("--now")
            .arg(NOW)
            .arg("send")
            .arg(t.campaign(name))
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Background { child: Some(child) }
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, as `kill -9` would.
    fn kill9(mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap()
    }

    fn wait(mut self, timeout: Duration) -> Run {
        let started = Instant::now();
        while self.running() {
            assert!(
                started.elapsed() < timeout,
                "tact send (pid {}) still running after {timeout:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One ledger row, read with SQLite directly (not through tact).
#[derive(Debug, Clone)]
struct LedgerRow {
    campaign: String,
    recipient: Vec<u8>,
    status: String,
    attempts: i64,
    message_id: Option<String>,
    smtp_code: Option<i64>,
    smtp_enhanced: Option<String>,
}

fn ledger_rows(state: &Path) -> Vec<LedgerRow> {
    let path = state.join("ledger.db");
    if !path.exists() {
        return Vec::new();
    }
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let has_table: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'deliveries'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if has_table == 0 {
        return Vec::new();
    }
    let mut q = conn
        .prepare("SELECT campaign, recipient, status, attempts, message_id, smtp_code, smtp_enhanced FROM deliveries")
        .unwrap();
    q.query_map([], |r| {
        Ok(LedgerRow {
            campaign: r.get(0)?,
            recipient: r.get(1)?,
            status: r.get(2)?,
            attempts: r.get(3)?,
            message_id: r.get(4)?,
            smtp_code: r.get(5)?,
            smtp_enhanced: r.get(6)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn campaign_rows(state: &Path, name: &str) -> Vec<LedgerRow> {
    ledger_rows(state)
        .into_iter()
        .filter(|r| r.campaign == name)
        .collect()
}

fn status_counts(rows: &[LedgerRow]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.status.clone()).or_default() += 1;
    }
    m
}

/// The ledger row of each address, through the state's own recipient hash.
fn rows_by_address(
    state: &Path,
    name: &str,
    addresses: &BTreeSet<String>,
) -> BTreeMap<String, LedgerRow> {
    let keys = crate::master_keys(state);
    let by_hash: HashMap<Vec<u8>, LedgerRow> = campaign_rows(state, name)
        .into_iter()
        .map(|r| (r.recipient.clone(), r))
        .collect();
    addresses
        .iter()
        .filter_map(|a| {
            by_hash
                .get(keys.recipient_hash(a).as_slice())
                .map(|r| (a.clone(), r.clone()))
        })
        .collect()
}

/// Envelope recipients of all deliveries, failing on any address delivered twice.
fn delivered_once(deliveries: &[Delivery]) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for d in deliveries {
        for r in &d.rcpts {
            seen.entry(r.clone()).or_default().push(&d.file);
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, f)| f.len() > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    seen.into_keys().collect()
}

/// DESIGN §6: no plain address, name or identifier from the CSV in any state file.
fn assert_no_personal_data_in_state(t: &Tree) {
    let files = files_under(&t.state());
    assert!(!files.is_empty(), "no state files to look at");
    // Every needle is text (no byte below 0x20), so only runs of such bytes can hold one:
    // keep those, lowercased, 0-separated.
    let mut all = Vec::new();
    for f in &files {
        let bytes = fs::read(f).unwrap();
        for run in bytes.split(|&b| b < 0x20 || b == 0x7f) {
            if run.len() >= 5 {
                all.extend(run.to_ascii_lowercase());
                all.push(0);
            }
        }
    }
    // A positive control: the campaign name is stored in plain text, so the search works.
    assert!(
        all.windows(WINTER.len()).any(|w| w == WINTER.as_bytes()),
        "the state does not even name the campaign"
    );
    let mut needles = BTreeSet::new();
    for c in customers(&t.path("sample-data/customers.csv")) {
        let email = c.email();
        needles.insert(email.clone());
        let local = email.split('@').next().unwrap_or("").to_string();
        needles.insert(local);
        for f in ["first_name", "last_name", "customer_id", "postcode"] {
            for piece in c.get(f).split(char::is_control) {
                needles.insert(piece.trim().to_ascii_lowercase());
            }
        }
    }
    // Short strings turn up by chance inside 32-byte hashes, and digits inside Message-IDs
    // (a zip code like 30307): keep five bytes or more with a letter in them.
    needles.retain(|s| s.len() >= 5 && s.chars().any(char::is_alphabetic));
    assert!(needles.len() > 500, "too few needles: {}", needles.len());
    // One pass over the bytes, looking needles up by their first five bytes.
    let needles: Vec<&[u8]> = needles.iter().map(String::as_bytes).collect();
    let key = |w: &[u8]| w[..5].iter().fold(0u64, |k, &b| (k << 8) | u64::from(b));
    let mut index: Vec<(u64, usize)> = needles
        .iter()
        .enumerate()
        .map(|(i, n)| (key(n), i))
        .collect();
    index.sort_unstable();
    let mut found = BTreeSet::new();
    for at in 0..all.len().saturating_sub(4) {
        let k = key(&all[at..]);
        let from = index.partition_point(|&(x, _)| x < k);
        for &(x, i) in &index[from..] {
            if x != k {
                break;
            }
            if all[at..].starts_with(needles[i]) {
                found.insert(String::from_utf8_lossy(needles[i]).into_owned());
            }
        }
    }
    assert!(
        found.is_empty(),
        "personal data in the state directory ({} files): {found:?}",
        files.len()
    );
}

/// `preview --out` of a campaign: what send must deliver, by address.
fn preview_by_address(t: &Tree, name: &str) -> BTreeMap<String, Msg> {
    let out = t.path(&format!("preview-{name}"));
    let (_, msgs) = preview_all(&t.state(), &t.campaign(name), &out);
    let mut by = BTreeMap::new();
    for m in msgs {
        assert!(by.insert(m.to_addr(), m).is_none(), "preview: duplicate To");
    }
    by
}

// ---------------------------------------------------------------------------------------
// 1. Exactly the plan, once, with the contract headers
// ---------------------------------------------------------------------------------------

#[test]
fn send_delivers_exactly_the_plans_recipients_once_with_the_contract_headers() {
    let t = tree();
    set_send(&t, WINTER, &[]);
    let want = preview_by_address(&t, WINTER);
    assert_eq!(want.len(), WINTER_RECIPIENTS);
    let (_, check) = check_json(t.tact().arg("check").arg(t.campaign(WINTER)).arg("--json"));
    let personalised = n(&check, "audience.personalised") as usize;
    let generic = n(&check, "audience.generic") as usize;
    assert_eq!(personalised + generic, WINTER_RECIPIENTS);

    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let (r, v) = send_json(&t, WINTER, &sink, 0);
    assert_eq!(
        n(&v, "summary.sent"),
        WINTER_RECIPIENTS as u64,
        "{}",
        r.stdout
    );
    for k in ["failed", "uncertain", "deferred", "retries"] {
        assert_eq!(n(&v, &format!("summary.{k}")), 0, "summary.{k}");
    }
    assert_eq!(n(&v, "ledger.sent"), WINTER_RECIPIENTS as u64);
    assert_eq!(n(&v, "ledger.pending") + n(&v, "ledger.sending"), 0);
    assert_eq!(v["campaign"], WINTER);
    assert!(
        !r.all_output().contains('@'),
        "send printed an address:\n{}",
        r.all_output()
    );

    let got = dump.deliveries();
    assert_eq!(got.len(), WINTER_RECIPIENTS, "messages the sink accepted");
    let delivered = delivered_once(&got);
    let wanted: BTreeSet<String> = want.keys().cloned().collect();
    assert_eq!(delivered, wanted, "envelope recipients != the plan");

    let by_address: BTreeMap<String, Customer> = customers(&t.path("sample-data/customers.csv"))
        .into_iter()
        .filter(|c| !c.ragged)
        .map(|c| (c.email(), c))
        .collect();
    let mut ids = BTreeSet::new();
    let (mut saw_pers, mut saw_generic) = (0, 0);
    for d in &got {
        let to = d.rcpt();
        let m = &d.msg;
        let p = &want[to];
        assert_eq!(m.to_addr(), to, "{}: To differs from the envelope", d.file);
        assert!(
            d.mail_from.starts_with("<news@northwind.example>"),
            "{}: MAIL FROM {}",
            d.file,
            d.mail_from
        );
        // What preview showed is what was sent (DESIGN §6), apart from Date, Message-ID,
        // boundaries and a signature.
        // (The sink stores lines with LF.)
        let lf = |s: &str| s.replace("\r\n", "\n");
        assert_eq!(m.subject, p.subject, "{}: subject", d.file);
        assert_eq!(lf(&m.text), lf(&p.text), "{}: text part", d.file);
        assert_eq!(lf(&m.html), lf(&p.html), "{}: html part", d.file);
        assert_eq!(m.from_addr, "news@northwind.example");
        assert_eq!(m.from_name.as_deref(), Some("Northwind"));
        assert_eq!(m.reply_to_addr, "help@northwind.example");
        assert_eq!(m.list_id, p.list_id, "{}", d.file);
        assert_eq!(m.list_unsubscribe, p.list_unsubscribe, "{}", d.file);
        assert!(
            m.list_unsubscribe
                .starts_with("<https://northwind.example/unsubscribe?t="),
            "{}: {}",
            d.file,
            m.list_unsubscribe
        );
        assert_eq!(m.list_unsubscribe_post, "List-Unsubscribe=One-Click");
        assert_eq!(m.leaf_types, ["text/plain", "text/html"], "{}", d.file);
        assert!(m.date.is_some(), "{}: no Date", d.file);
        let (_, domain) = m
            .message_id
            .rsplit_once('@')
            .unwrap_or_else(|| panic!("{}: Message-ID {:?}", d.file, m.message_id));
        assert_eq!(domain, "northwind.example", "{}: Message-ID", d.file);
        assert!(ids.insert(m.message_id.clone()), "Message-ID reused");
        // The footer says why, in the words of the check report: the personalised one
        // names the fields it uses and where they came from; the generic one none.
        let why = "You get this because you opted in to Northwind news on ";
        assert!(m.text.contains(why), "{}", d.file);
        if m.text.starts_with("Hi ") {
            saw_pers += 1;
            assert!(
                m.subject.ends_with(", our winter picks are in"),
                "{}",
                d.file
            );
            // By hand from the row: the fields it has a value for, by origin.
            let c = &by_address[to];
            let has = |f: &str| !c.get(f).trim().is_empty();
            let told: Vec<&str> = [
                ("favourite_category", "your favourite category"),
                ("first_name", "your first name"),
            ]
            .into_iter()
            .filter(|(f, _)| has(f))
            .map(|(_, l)| l)
            .collect();
            let mut items = Vec::new();
            if !told.is_empty() {
                items.push(format!("{} (you told us)", told.join(" and ")));
            }
            if has("loyalty_tier") {
                items.push("your loyalty tier (from your orders)".to_string());
            }
            let uses = if items.is_empty() {
                String::new()
            } else {
                format!(" It uses {}.", items.join(" and "))
            };
            let want = format!("and to content tailored to you.{uses}\n");
            assert!(
                lf(&m.text).contains(&want),
                "{}: {want}\n{}",
                d.file,
                m.text
            );
        } else {
            assert!(m.text.starts_with("Hello,"), "{}: {:?}", d.file, &m.text);
            assert_eq!(m.subject, "our winter picks are in");
            assert!(!m.text.contains("It uses"), "{}", d.file);
            assert!(!m.text.contains("tailored"), "{}", d.file);
            saw_generic += 1;
        }
    }
    assert_eq!((saw_pers, saw_generic), (personalised, generic));
    // The oracle's personalised rows got their own name.
    let all = customers(&t.path("sample-data/customers.csv"));
    for c in expected_recipients(&all, true) {
        let first = c.get("first_name");
        let d = got.iter().find(|d| d.rcpt() == c.email()).unwrap();
        if !first.is_empty() {
            assert!(
                d.msg.text.starts_with(&format!("Hi {first},")),
                "line {}",
                c.line
            );
        }
    }

    // The ledger: one `sent` row per recipient, one attempt, the 250 and the Message-ID
    // that was actually delivered.
    let rows = rows_by_address(&t.state(), WINTER, &wanted);
    assert_eq!(rows.len(), WINTER_RECIPIENTS);
    assert_eq!(campaign_rows(&t.state(), WINTER).len(), WINTER_RECIPIENTS);
    for d in &got {
        let row = &rows[d.rcpt()];
        assert_eq!(
            (row.status.as_str(), row.attempts, row.smtp_code),
            ("sent", 1, Some(250)),
            "{}",
            d.file
        );
        let stored = row.message_id.as_deref().unwrap_or("");
        assert_eq!(
            stored.trim_matches(['<', '>']),
            d.msg.message_id,
            "{}: ledger Message-ID",
            d.file
        );
    }
    assert_no_personal_data_in_state(&t);
}

// ---------------------------------------------------------------------------------------
// 2. A complete campaign stays complete
// ---------------------------------------------------------------------------------------

/// Appends `count` new GB rows with every consent, dated a month before NOW.
fn grow_csv(t: &Tree, count: usize) -> Vec<String> {
    let rel = "sample-data/customers.csv";
    let text = t.read(rel);
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let mut added = Vec::new();
    let mut rows = String::new();
    for i in 0..count {
        let email = format!("newcomer.{i}@example.net");
        let row: Vec<String> = header
            .iter()
            .map(|h| match *h {
                "customer_id" => format!("NW9{i:04}"),
                "email" => email.clone(),
                "first_name" => format!("Newcomer{i}"),
                "last_name" => "Late".into(),
                "language" => "en".into(),
                "country" => "GB".into(),
                "consent_marketing" | "consent_personalisation" => "yes".into(),
                "consent_at" => "2026-10-20T09:00:00Z".into(),
                _ => String::new(),
            })
            .collect();
        rows.push_str(&row.join(","));
        rows.push('\n');
        added.push(email);
    }
    let sep = if text.ends_with('\n') { "" } else { "\n" };
    t.write(rel, &format!("{text}{sep}{rows}"));
    added
}

#[test]
fn a_complete_campaign_sends_nothing_again_even_when_the_csv_grows() {
    let t = tree();
    set_send(&t, WINTER, &[]);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    send_json(&t, WINTER, &sink, 0);
    assert_eq!(dump.count(), WINTER_RECIPIENTS);

    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 0);
    assert!(
        r.stdout.contains("completed") && r.stdout.contains("nothing to send"),
        "second run: {}",
        r.stdout
    );
    assert_eq!(dump.count(), WINTER_RECIPIENTS, "the second run sent mail");

    let added = grow_csv(&t, 3);
    // The new rows would be eligible, but the campaign is complete: the plan (so check,
    // preview and the dry run too) says what send does, nobody gets it.
    let (_, v) = check_json(t.tact().arg("check").arg(t.campaign(WINTER)).arg("--json"));
    assert_eq!(n(&v, "audience.personalised"), 0, "{v:#}");
    assert_eq!(n(&v, "audience.generic"), 0, "{v:#}");
    // Everyone in the segment: the 220, the 3 newcomers, and the one row whose render
    // would fail (a complete campaign renders nobody, so nobody is skipped at render).
    assert_eq!(
        n(&v, "audience.excluded.already_sent"),
        WINTER_RECIPIENTS as u64 + 3 + 1
    );
    assert_eq!(n(&v, "audience.excluded.bad_header_value"), 0);
    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 0);
    assert!(r.stdout.contains("completed"), "third run: {}", r.stdout);
    let got = dump.deliveries();
    assert_eq!(
        got.len(),
        WINTER_RECIPIENTS,
        "a grown CSV reopened the campaign"
    );
    let delivered = delivered_once(&got);
    for a in &added {
        assert!(!delivered.contains(a), "{a} was mailed after completion");
    }
    assert_eq!(
        campaign_rows(&t.state(), WINTER).len(),
        WINTER_RECIPIENTS,
        "ledger rows"
    );
    // --json still prints JSON for a complete campaign.
    let r = run_expect(send_cmd(&t, WINTER, &sink.url()).arg("--json"), 0);
    let v = parse_json(&r);
    assert_eq!(n(&v, "summary.sent"), 0);
    assert_eq!(n(&v, "ledger.sent"), WINTER_RECIPIENTS as u64);
    assert!(v["completed_at"].is_string(), "{v:#}");
    assert_eq!(dump.count(), WINTER_RECIPIENTS);
}

// ---------------------------------------------------------------------------------------
// 3. The check gate
// ---------------------------------------------------------------------------------------

#[test]
fn caution_and_block_campaigns_send_nothing_and_record_nothing() {
    let t = tree();
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    for (name, code, verdict) in [
        ("birthday-treat", 3, "caution"),
        ("wellness-check", 4, "block"),
    ] {
        set_send(&t, name, &[]);
        let r = run_expect(&mut send_cmd(&t, name, &sink.url()), code);
        assert!(
            r.stderr
                .contains(&format!("nothing sent: the check verdict is {verdict}")),
            "{name}: {}",
            r.stderr
        );
        assert_eq!(dump.count(), 0, "{name}: mail was sent");
        assert!(
            campaign_rows(&t.state(), name).is_empty(),
            "{name}: ledger rows written"
        );
    }
    assert!(ledger_rows(&t.state()).is_empty());
}

// ---------------------------------------------------------------------------------------
// 4. kill -9 mid-send, then a rerun
// ---------------------------------------------------------------------------------------

#[test]
fn a_send_killed_mid_run_and_rerun_never_mails_anyone_twice() {
    let t = tree();
    set_send(&t, WINTER, &[]);
    let want: BTreeSet<String> = preview_by_address(&t, WINTER).into_keys().collect();
    let dump = DumpDir::new();
    // Answers DATA after a second: about four messages a second over four connections.
    let slow = Sink::start(&dump, &["-w", "1"]);
    let bg = Background::send(&t, WINTER, &slow.url());
    let state = t.state();
    wait_until(
        "six messages before the kill",
        Duration::from_secs(20),
        || {
            status_counts(&campaign_rows(&state, WINTER))
                .get("sent")
                .is_some_and(|&n| n >= 6)
        },
    );
    let status = bg.kill9();
    assert_eq!(status.signal(), Some(9), "tact was not killed: {status:?}");
    // The sink drops the transactions the kill cut short; what it kept is complete.
    let first = dump.deliveries();
    slow.stop();
    let after_kill = status_counts(&campaign_rows(&state, WINTER));
    let uncertain = after_kill.get("sending").copied().unwrap_or(0);
    assert!(
        uncertain <= CONCURRENCY,
        "{uncertain} recipients left uncertain with {CONCURRENCY} connections: {after_kill:?}"
    );
    assert!(
        first.len() >= 6 && first.len() < WINTER_RECIPIENTS,
        "{} delivered before the kill",
        first.len()
    );
    // Every row the ledger calls sent was delivered.
    let first_set = delivered_once(&first);
    for (addr, row) in rows_by_address(&state, WINTER, &want) {
        if row.status == "sent" {
            assert!(
                first_set.contains(&addr),
                "ledger says sent, sink never got it"
            );
        }
    }

    let sink = Sink::start(&dump, &[]);
    // Exit 5 while uncertain rows remain (0 only if the kill left none).
    let (r, v) = send_json(&t, WINTER, &sink, if uncertain > 0 { 5 } else { 0 });
    let all = dump.deliveries();
    let delivered = delivered_once(&all);
    assert!(
        delivered.is_subset(&want),
        "mail to someone outside the plan"
    );
    let missing: BTreeSet<String> = want.difference(&delivered).cloned().collect();
    let rows = rows_by_address(&state, WINTER, &want);
    for a in &missing {
        assert_eq!(
            rows[a].status, "sending",
            "an undelivered recipient is not marked uncertain"
        );
    }
    assert!(
        missing.len() <= uncertain,
        "{} never delivered, {uncertain} uncertain",
        missing.len()
    );
    assert_eq!(
        n(&v, "ledger.sending") as usize,
        uncertain,
        "the rerun resent uncertain recipients\n{}",
        r.stdout
    );
    assert_eq!(
        n(&v, "ledger.sent") as usize + uncertain,
        WINTER_RECIPIENTS,
        "{}",
        r.stdout
    );
    assert_eq!(n(&v, "ledger.pending"), 0);
    assert_eq!(
        n(&v, "summary.sent") as usize,
        all.len() - first.len(),
        "the rerun's count differs from what the sink got"
    );
    eprintln!(
        "kill -9 after {} delivered, {uncertain} left uncertain; the rerun sent {} (exit {}); {} never delivered",
        first.len(),
        n(&v, "summary.sent"),
        r.code,
        missing.len()
    );
    let (_, check) = check_json(t.tact().arg("check").arg(t.campaign(WINTER)).arg("--json"));
    assert_eq!(
        n(&check, "audience.personalised") + n(&check, "audience.generic"),
        0,
        "uncertain recipients must count as already_sent"
    );
    assert!(n(&check, "audience.excluded.already_sent") >= WINTER_RECIPIENTS as u64);
    assert_no_personal_data_in_state(&t);
}

// ---------------------------------------------------------------------------------------
// 5. 4xx: retried with backoff, left pending, sent by a later run
// ---------------------------------------------------------------------------------------

#[test]
fn soft_rejections_are_retried_then_left_pending_for_the_next_run() {
    for command in ["rcpt", "data"] {
        let t = tree();
        let people = pick(&t, 3, 3);
        let want = emails(&people);
        set_send(
            &t,
            WINTER,
            &[
                ("concurrency", "2"),
                ("max_attempts", "3"),
                ("retry_delay_seconds", "0.05"),
            ],
        );
        narrow(&t, WINTER, &people);
        let dump = DumpDir::new();
        let refusing = Sink::start(&dump, &["-r", command]);
        let (r, v) = send_json(&t, WINTER, &refusing, 5);
        assert_eq!(n(&v, "summary.sent"), 0, "{command}");
        assert_eq!(n(&v, "summary.deferred"), 6, "{command}: {}", r.stdout);
        assert_eq!(
            n(&v, "summary.retries"),
            12,
            "{command}: two retries each before giving up"
        );
        assert_eq!(n(&v, "summary.failed"), 0);
        assert_eq!(n(&v, "ledger.pending"), 6, "{command}");
        assert_eq!(
            dump.count(),
            0,
            "{command}: the sink kept a refused message"
        );
        for (a, row) in rows_by_address(&t.state(), WINTER, &want) {
            assert_eq!(
                (
                    row.status.as_str(),
                    row.attempts,
                    row.smtp_code,
                    row.smtp_enhanced.as_deref()
                ),
                ("pending", 3, Some(450), Some("4.3.0")),
                "{command}: {a}"
            );
        }
        refusing.stop();

        // Between the runs one of them unsubscribes: the rest are sent, and with nobody
        // left pending the campaign completes (their pending row must not hold it open).
        let gone = people[4].email();
        run_expect(t.tact().arg("suppress").arg("add").arg(&gone), 0);
        let sink = Sink::start(&dump, &[]);
        let (r, v) = send_json(&t, WINTER, &sink, 0);
        assert_eq!(n(&v, "summary.sent"), 5, "{command}");
        assert_eq!(n(&v, "ledger.sent"), 5);
        assert_eq!(n(&v, "ledger.pending"), 0, "{command}: {}", r.stdout);
        let got = dump.deliveries();
        assert_eq!(got.len(), 5, "{command}");
        let mut rest = want.clone();
        rest.remove(&gone);
        assert_eq!(delivered_once(&got), rest, "{command}");
        let newcomers = grow_csv(&t, 2);
        t.edit(&campaign_rel(WINTER), |s| {
            s.replacen(
                "customer_id in [",
                "customer_id in [\"NW90000\", \"NW90001\", ",
                1,
            )
        });
        let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 0);
        assert!(r.stdout.contains("completed"), "{command}: {}", r.stdout);
        assert_eq!(dump.count(), 5, "{command}: {newcomers:?}");
    }
}

#[test]
fn a_soft_rejection_is_retried_within_the_run_and_then_accepted() {
    let t = tree();
    let people = pick(&t, 1, 1);
    let want = emails(&people);
    set_send(
        &t,
        WINTER,
        &[
            ("concurrency", "1"),
            ("max_attempts", "5"),
            ("retry_delay_seconds", "1.0"),
        ],
    );
    narrow(&t, WINTER, &people);
    let dump = DumpDir::new();
    let refusing = Sink::start(&dump, &["-r", "rcpt"]);
    let port = refusing.port;
    let bg = Background::send(&t, WINTER, &refusing.url());
    let state = t.state();
    wait_until(
        "both recipients refused once",
        Duration::from_secs(10),
        || {
            let rows = campaign_rows(&state, WINTER);
            rows.len() == 2
                && rows
                    .iter()
                    .all(|r| r.status == "pending" && r.attempts >= 1 && r.smtp_code == Some(450))
        },
    );
    // During the backoff the relay recovers (on the same port).
    refusing.stop();
    let sink = Sink::start_on(port, &dump, &[]);
    let r = bg.wait(Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = parse_json(&r);
    assert_eq!(n(&v, "summary.sent"), 2);
    assert!(n(&v, "summary.retries") >= 2, "{}", r.stdout);
    assert_eq!(n(&v, "summary.deferred"), 0);
    let got = dump.deliveries();
    assert_eq!(got.len(), 2);
    assert_eq!(delivered_once(&got), want);
    for (a, row) in rows_by_address(&state, WINTER, &want) {
        assert_eq!(row.status, "sent", "{a}");
        assert!(row.attempts >= 2, "{a}: {} attempt(s)", row.attempts);
    }
    drop(sink);
}

// ---------------------------------------------------------------------------------------
// 6. 5xx: failed for good, never retried
// ---------------------------------------------------------------------------------------

#[test]
fn hard_rejections_are_recorded_failed_and_never_retried() {
    let t = tree();
    let people = pick(&t, 2, 2);
    let want = emails(&people);
    set_send(&t, WINTER, &[]);
    narrow(&t, WINTER, &people);
    let dump = DumpDir::new();
    // Servers quote the address in their reply text; tact must keep only the codes.
    let quoted = people[0].email();
    let reply = format!("550 5.1.1 <{quoted}>: Recipient address rejected");
    let refusing = Sink::start(&dump, &["-f", "rcpt", "-B", &reply]);
    let (r, v) = send_json(&t, WINTER, &refusing, 5);
    assert_eq!(n(&v, "summary.failed"), 4, "{}", r.stdout);
    assert_eq!(
        v["summary"]["failed_by_code"],
        serde_json::json!({"550": 4}),
        "{}",
        r.stdout
    );
    for k in ["sent", "retries", "deferred", "uncertain"] {
        assert_eq!(n(&v, &format!("summary.{k}")), 0, "summary.{k}");
    }
    assert_eq!(n(&v, "ledger.failed"), 4);
    assert_eq!(dump.count(), 0);
    for (a, row) in rows_by_address(&t.state(), WINTER, &want) {
        assert_eq!(
            (
                row.status.as_str(),
                row.attempts,
                row.smtp_code,
                row.smtp_enhanced.as_deref()
            ),
            ("failed", 1, Some(550), Some("5.1.1")),
            "{a}"
        );
    }
    assert!(
        !r.all_output().contains(&quoted),
        "the server's text reached the output"
    );
    refusing.stop();

    let sink = Sink::start(&dump, &[]);
    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 0);
    assert!(r.stdout.contains("completed"), "{}", r.stdout);
    assert_eq!(dump.count(), 0, "a failed recipient was tried again");
    let (_, check) = check_json(t.tact().arg("check").arg(t.campaign(WINTER)).arg("--json"));
    assert_eq!(n(&check, "audience.excluded.already_sent"), 4);
    assert_no_personal_data_in_state(&t);
}

#[test]
fn a_relay_refusing_everything_pauses_the_run_and_a_rerun_sends_the_rest() {
    let t = tree();
    set_send(&t, WINTER, &[]);
    let want: BTreeSet<String> = preview_by_address(&t, WINTER).into_keys().collect();
    let dump = DumpDir::new();
    let refusing = Sink::start(&dump, &["-f", "rcpt"]);
    let (r, v) = send_json(&t, WINTER, &refusing, 1);
    let failed = n(&v, "summary.failed") as usize;
    assert!(
        (50..50 + CONCURRENCY).contains(&failed),
        "{failed} failed before the pause\n{}",
        r.stdout
    );
    assert_eq!(
        v["summary"]["failed_by_code"],
        serde_json::json!({"500": failed})
    );
    assert!(
        v["summary"]["paused"]
            .as_str()
            .is_some_and(|s| s.contains("consecutive failures")),
        "{}",
        r.stdout
    );
    assert_eq!(n(&v, "ledger.failed") as usize, failed);
    assert_eq!(n(&v, "ledger.pending") as usize, WINTER_RECIPIENTS - failed);
    refusing.stop();

    let sink = Sink::start(&dump, &[]);
    let (_, v) = send_json(&t, WINTER, &sink, 0);
    assert_eq!(n(&v, "summary.sent") as usize, WINTER_RECIPIENTS - failed);
    let delivered = delivered_once(&dump.deliveries());
    assert_eq!(delivered.len(), WINTER_RECIPIENTS - failed);
    let rows = rows_by_address(&t.state(), WINTER, &want);
    for a in &want {
        assert_eq!(
            rows[a].status == "failed",
            !delivered.contains(a),
            "{a}: failed ones are never retried, the rest are sent"
        );
    }
}

/// MAIL, RCPT and DATA go in one write when the server offers PIPELINING (RFC 2920), and
/// one by one when it does not (`-p`). A refused recipient under pipelining still gets its
/// DATA reply read, so the connection stays in step for the next message.
#[test]
fn pipelined_and_plain_transactions_both_keep_the_connection_in_step() {
    let t = tree();
    let people = pick(&t, 2, 2);
    let want = emails(&people);
    set_send(&t, WINTER, &[("concurrency", "1")]);
    narrow(&t, WINTER, &people);
    let dump = DumpDir::new();
    let refusing = Sink::start(&dump, &["-f", "rcpt"]);
    let (r, v) = send_json(&t, WINTER, &refusing, 5);
    assert_eq!(n(&v, "summary.failed"), 4, "{}", r.stdout);
    assert_eq!(dump.count(), 0);
    refusing.stop();

    // The clone keeps the narrowed segment: the same four people, a fresh campaign.
    clone_campaign(&t, WINTER, "plain");
    let plain = Sink::start(&dump, &["-p"]);
    let (r, v) = send_json(&t, "plain", &plain, 0);
    assert_eq!(n(&v, "summary.sent"), 4, "{}", r.stdout);
    let got = dump.deliveries();
    assert_eq!(got.len(), 4);
    assert_eq!(delivered_once(&got), want);
}

// ---------------------------------------------------------------------------------------
// 7. Disconnects
// ---------------------------------------------------------------------------------------

/// The sink hangs up after the message's final dot without a reply: the message arrived,
/// tact cannot know it, so it is uncertain and never resent; each next message gets a new
/// connection.
#[test]
fn a_disconnect_after_the_message_leaves_it_uncertain_and_it_is_not_resent() {
    let t = tree();
    let people = pick(&t, 2, 2);
    let want = emails(&people);
    set_send(&t, WINTER, &[("concurrency", "2")]);
    narrow(&t, WINTER, &people);
    let dump = DumpDir::new();
    let hangup = Sink::start(&dump, &["-q", "."]);
    let (r, v) = send_json(&t, WINTER, &hangup, 5);
    assert_eq!(n(&v, "summary.uncertain"), 4, "{}", r.stdout);
    assert_eq!(n(&v, "summary.sent"), 0);
    assert_eq!(n(&v, "ledger.sending"), 4);
    // Four messages over connections that each died after one: it reconnected.
    let got = dump.deliveries();
    assert_eq!(delivered_once(&got), want);
    assert_eq!(got.len(), 4);
    hangup.stop();

    let sink = Sink::start(&dump, &[]);
    // Complete, and not forgotten: exit 5 while they are uncertain.
    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 5);
    assert_eq!(
        dump.count(),
        4,
        "an uncertain recipient was resent\n{}",
        r.stdout
    );
    assert!(r.stdout.contains("completed"), "{}", r.stdout);
    assert!(
        r.all_output().contains("4 uncertain from an earlier run"),
        "{}",
        r.all_output()
    );

    // The operator checked with the relay and asks for them again: they, and nobody else
    // (not the rows the CSV gained since the campaign completed), are sent once more.
    let newcomers = grow_csv(&t, 2);
    let r = run_expect(
        send_cmd(&t, WINTER, &sink.url()).arg("--retry-uncertain"),
        0,
    );
    assert!(
        r.stderr.contains("released 4 uncertain"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let got = dump.deliveries();
    let mut per_address: BTreeMap<String, usize> = BTreeMap::new();
    for d in &got {
        *per_address.entry(d.rcpt().to_string()).or_default() += 1;
    }
    assert_eq!(
        per_address,
        want.iter().map(|a| (a.clone(), 2)).collect(),
        "--retry-uncertain resends exactly the uncertain ones\n{}",
        r.stdout
    );
    for a in &newcomers {
        assert!(!per_address.contains_key(a), "{a}: mailed after completion");
    }
    assert_eq!(
        status_counts(&campaign_rows(&t.state(), WINTER)),
        BTreeMap::from([("sent".to_string(), 4)])
    );
    // And nothing left to retry.
    run_expect(
        send_cmd(&t, WINTER, &sink.url()).arg("--retry-uncertain"),
        0,
    );
    assert_eq!(dump.count(), 8);
}

/// Hang-ups before the message (`-q rcpt`: no reply at all; `-Q rcpt`: 421 and close) are
/// retried on a new connection; when they go on, the relay is given up after five in a row
/// (exit 1, one line), and everyone is left pending for the next run.
#[test]
fn a_disconnect_before_the_message_is_retried_and_sent_by_the_next_run() {
    for faults in [["-q", "rcpt"], ["-Q", "rcpt"]] {
        let t = tree();
        let people = pick(&t, 2, 2);
        let want = emails(&people);
        set_send(
            &t,
            WINTER,
            &[
                ("concurrency", "2"),
                ("max_attempts", "2"),
                ("retry_delay_seconds", "0.05"),
            ],
        );
        narrow(&t, WINTER, &people);
        let dump = DumpDir::new();
        let hangup = Sink::start(&dump, &faults);
        let (r, v) = send_json(&t, WINTER, &hangup, 1);
        let paused = v["summary"]["paused"].as_str().unwrap_or("");
        let cause = if faults[0] == "-Q" {
            "421"
        } else {
            "closed the connection at RCPT TO"
        };
        assert!(
            paused.starts_with(&format!("relay 127.0.0.1:{}: ", hangup.port))
                && paused.contains(cause)
                && paused.ends_with("attempts)"),
            "{faults:?}: {}",
            r.stdout
        );
        assert_eq!(n(&v, "summary.uncertain"), 0, "{faults:?}");
        assert_eq!(n(&v, "ledger.pending"), 4, "{faults:?}");
        assert_eq!(dump.count(), 0);
        let rows = rows_by_address(&t.state(), WINTER, &want);
        let tries: i64 = rows.values().map(|r| r.attempts).sum();
        // Five in a row end it; the other connection may have had one under way.
        assert!(
            (5..=6).contains(&tries),
            "{faults:?}: {tries} tries, {rows:?}"
        );
        // What the server said is kept: 421 on every try (so each try reached the server,
        // none was wasted on a connection it had closed); nothing when it just hung up.
        let code = (faults[0] == "-Q").then_some(421);
        for (a, row) in rows {
            if row.attempts > 0 {
                assert_eq!(row.smtp_code, code, "{faults:?} {a}");
            }
        }
        hangup.stop();
        let sink = Sink::start(&dump, &[]);
        let (_, v) = send_json(&t, WINTER, &sink, 0);
        assert_eq!(n(&v, "summary.sent"), 4, "{faults:?}");
        assert_eq!(delivered_once(&dump.deliveries()), want, "{faults:?}");
    }
}

/// The relay goes away between two messages and comes back: the pooled connection is dead,
/// tact notices before the message, reconnects, and everyone gets exactly one.
#[test]
fn a_connection_lost_between_messages_is_reopened_without_duplicates() {
    let t = tree();
    let people = pick(&t, 2, 2);
    let want = emails(&people);
    set_send(
        &t,
        WINTER,
        &[
            ("concurrency", "1"),
            ("rate_per_second", "3"),
            ("retry_delay_seconds", "0.05"),
        ],
    );
    narrow(&t, WINTER, &people);
    let dump = DumpDir::new();
    let first = Sink::start(&dump, &[]);
    let port = first.port;
    let bg = Background::send(&t, WINTER, &first.url());
    // Wait for the first message to arrive whole, then kill the relay in the ~330 ms gap
    // before the next one (at 3 messages/s). The ledger records a delivery together with
    // the next claim, so waiting for a `sent` row would kill it mid-transaction instead.
    wait_until("the first message", Duration::from_secs(10), || {
        dump.deliveries().len() == 1
    });
    first.stop();
    let _second = Sink::start_on(port, &dump, &[]);
    let r = bg.wait(Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = parse_json(&r);
    assert_eq!(n(&v, "summary.sent"), 4, "{}", r.stdout);
    assert_eq!(n(&v, "summary.uncertain"), 0);
    let got = dump.deliveries();
    assert_eq!(got.len(), 4);
    assert_eq!(delivered_once(&got), want);
}

// ---------------------------------------------------------------------------------------
// 8. Suppression
// ---------------------------------------------------------------------------------------

#[test]
fn an_address_suppressed_mid_send_never_gets_the_message() {
    let t = tree();
    set_send(&t, WINTER, &[("rate_per_second", "80")]);
    let want = preview_by_address(&t, WINTER);
    // The last recipient in CSV order is sent last.
    let victim = want
        .values()
        .max_by(|a, b| a.name.cmp(&b.name))
        .unwrap()
        .to_addr();
    let bystander = want
        .values()
        .min_by(|a, b| a.name.cmp(&b.name))
        .unwrap()
        .to_addr();
    let r = run_expect(t.tact().arg("suppress").arg("check").arg(&victim), 6);
    assert!(r.stdout.contains("not suppressed"), "{}", r.stdout);

    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let bg = Background::send(&t, WINTER, &sink.url());
    wait_until("the first messages", Duration::from_secs(10), || {
        dump.count() >= 5
    });
    let r = run_expect(t.tact().arg("suppress").arg("add").arg(&victim), 0);
    assert!(
        r.stdout.contains("suppressed 1 new"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let r = bg.wait(Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = parse_json(&r);
    assert_eq!(
        n(&v, "summary.suppressed_during_send"),
        1,
        "the suppression landed after the victim's turn? {}",
        r.stdout
    );
    assert_eq!(n(&v, "summary.sent") as usize, WINTER_RECIPIENTS - 1);
    let delivered = delivered_once(&dump.deliveries());
    assert!(
        !delivered.contains(&victim),
        "the suppressed address got mail"
    );
    assert_eq!(delivered.len(), WINTER_RECIPIENTS - 1);

    let r = run_expect(t.tact().arg("suppress").arg("check").arg(&victim), 0);
    assert!(r.stdout.starts_with("suppressed: manual"), "{}", r.stdout);
    let r = run_expect(t.tact().arg("suppress").arg("check").arg(&bystander), 6);
    assert!(r.stdout.contains("not suppressed"), "{}", r.stdout);
    // Case and surrounding space do not make it a different person.
    run_expect(
        t.tact()
            .arg("suppress")
            .arg("check")
            .arg(format!(" {} ", victim.to_uppercase())),
        0,
    );

    // Nobody is left to send to: the campaign is complete, and stays so when the CSV grows.
    let (_, check) = check_json(t.tact().arg("check").arg(t.campaign(WINTER)).arg("--json"));
    assert_eq!(n(&check, "audience.excluded.suppressed"), 1);
    run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 0);
    grow_csv(&t, 2);
    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 0);
    assert_eq!(
        dump.count(),
        WINTER_RECIPIENTS - 1,
        "the campaign never completed: a later run mailed new rows\n{}",
        r.stdout
    );
    assert_no_personal_data_in_state(&t);
}

// ---------------------------------------------------------------------------------------
// 10. --dry-run, --test, refusals
// ---------------------------------------------------------------------------------------

#[test]
fn dry_run_and_test_messages_send_or_record_nothing_of_the_campaign() {
    let t = tree();
    set_send(&t, WINTER, &[("test_to", "[\"you@example.com\"]")]);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);

    let r = run_expect(send_cmd(&t, WINTER, &sink.url()).arg("--dry-run"), 0);
    assert!(
        r.stdout
            .contains(&format!("dry run: {WINTER_RECIPIENTS} message(s) built")),
        "{}",
        r.stdout
    );
    let r = run_expect(
        t.tact()
            .arg("send")
            .arg(t.campaign(WINTER))
            .arg("--dry-run"),
        0,
    );
    assert!(r.stdout.contains("nothing sent"), "{}", r.stdout);
    assert_eq!(dump.count(), 0, "--dry-run sent mail");
    assert!(ledger_rows(&t.state()).is_empty(), "--dry-run wrote rows");

    let me = "you@example.com";
    let r = run_expect(send_cmd(&t, WINTER, &sink.url()).arg("--test").arg(me), 0);
    assert!(r.stdout.contains("not recorded"), "{}", r.stdout);
    let got = dump.deliveries();
    assert_eq!(
        got.len(),
        2,
        "--test sends one personalised and one generic"
    );
    for d in &got {
        assert_eq!(d.rcpt(), me);
        assert_eq!(d.msg.to_addr(), me);
        assert!(
            d.msg.subject.starts_with("[TEST] "),
            "{}: {}",
            d.file,
            d.msg.subject
        );
        assert_eq!(d.msg.list_unsubscribe_post, "List-Unsubscribe=One-Click");
    }
    let mut kinds: Vec<bool> = got.iter().map(|d| d.msg.text.starts_with("Hi ")).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, [false, true], "one generic, one personalised");
    assert!(
        got.iter().any(|d| d.msg.text.starts_with("Hello,")
            && d.msg.subject == "[TEST] our winter picks are in")
    );
    assert!(ledger_rows(&t.state()).is_empty(), "--test wrote rows");

    // TACT_SMTP_URL stands in for --smtp.
    run_expect(
        t.tact()
            .env("TACT_SMTP_URL", sink.url())
            .arg("send")
            .arg(t.campaign(WINTER))
            .arg("--test")
            .arg(me),
        0,
    );
    assert_eq!(dump.count(), 4);

    // Nobody of the campaign was marked: the real send still reaches all of them.
    let (_, v) = send_json(&t, WINTER, &sink, 0);
    assert_eq!(n(&v, "summary.sent"), WINTER_RECIPIENTS as u64);
    assert_eq!(dump.count(), 4 + WINTER_RECIPIENTS);
}

#[test]
fn send_refuses_without_a_state_directory_or_an_smtp_url() {
    let t = Tree::new();
    set_send(&t, WINTER, &[]);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    // No `tact init`: a cron job with the wrong HOME must not start from nothing.
    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 2);
    assert!(
        r.stderr.contains("no state at") && r.stderr.contains("tact init"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&t.state().display().to_string()),
        "{}",
        r.stderr
    );
    assert!(!t.state().exists(), "send created the state directory");

    run_expect(t.tact().arg("init"), 0);
    let r = run_expect(t.tact().arg("send").arg(t.campaign(WINTER)), 2);
    assert!(
        r.stderr.contains("--smtp") && r.stderr.contains("TACT_SMTP_URL"),
        "{}",
        r.stderr
    );
    assert_eq!(dump.count(), 0);
    assert!(ledger_rows(&t.state()).is_empty());
}

#[test]
fn retry_settings_are_validated_like_the_rest_of_send() {
    for (line, wanted) in [
        ("max_attempts = 0", "max_attempts must be above 0"),
        ("retry_delay_seconds = 0.0", "retry_delay_seconds above 0"),
        ("retry_delay_seconds = -1.5", "retry_delay_seconds above 0"),
        ("max_attempt = 3", "did you mean `max_attempts`"),
    ] {
        let t = Tree::new();
        let (k, v) = line.split_once(" = ").unwrap();
        set_send(&t, WINTER, &[(k, v)]);
        let r = run_expect(t.tact().arg("check").arg(t.campaign(WINTER)), 2);
        assert!(r.stderr.contains(wanted), "{line}: {}", r.stderr);
    }
}

// ---------------------------------------------------------------------------------------
// 11. DKIM, checked by dkimpy
// ---------------------------------------------------------------------------------------

fn python() -> PathBuf {
    let script = repo().join("tests/send/dkim_verify.py");
    let probe = StdCommand::new("python3")
        .arg("-c")
        .arg("import dkim, nacl")
        .output();
    match probe {
        Err(e) => panic!("python3 is needed for the DKIM test ({e}): run tests/setup.sh"),
        Ok(o) if !o.status.success() => panic!(
            "the DKIM test needs Python's dkimpy and PyNaCl: run tests/setup.sh\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => script,
    }
}

fn py(args: &[&std::ffi::OsStr]) -> String {
    let out = StdCommand::new("python3").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "dkim_verify.py failed\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Each delivery as a file in `dir`, for the verifier.
fn write_deliveries(dir: &Path, got: &[Delivery]) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    got.iter()
        .map(|d| {
            let f = dir.join(&d.file);
            fs::write(&f, &d.raw).unwrap();
            f
        })
        .collect()
}

/// dkimpy's verdict on each file, with `dns` ("selector._domainkey.domain." → TXT record)
/// as the only DNS: one JSON object per file (`file`, `ok`, `tags`).
fn dkim_verify(
    script: &Path,
    dns: serde_json::Map<String, Value>,
    files: &[PathBuf],
) -> Vec<Value> {
    let dns = Value::Object(dns).to_string();
    let mut args: Vec<&std::ffi::OsStr> = vec![script.as_os_str(), "verify".as_ref(), dns.as_ref()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    py(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn dkim_signatures_verify_with_an_independent_verifier() {
    let script = python();
    let t = tree();
    let keys = t.path("dkim");
    fs::create_dir_all(&keys).unwrap();
    let records: Value = serde_json::from_str(&py(&[
        script.as_os_str(),
        "keygen".as_ref(),
        keys.as_os_str(),
    ]))
    .unwrap();
    assert_eq!(mode(&keys.join("rsa.pem")), 0o600);
    assert!(t.read("dkim/rsa.pem").contains("BEGIN RSA PRIVATE KEY"));

    let people = pick(&t, 2, 2);
    let cases = [
        ("dkim-rsa", "s1", "rsa.pem", "rsa-sha256"),
        ("dkim-ed", "s2", "ed25519.key", "ed25519-sha256"),
    ];
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let mut dns = serde_json::Map::new();
    for (name, selector, key, _) in cases {
        clone_campaign(&t, WINTER, name);
        narrow(&t, name, &people);
        set_send(&t, name, &[]);
        t.edit(&campaign_rel(name), |s| {
            format!(
                "{s}\n[dkim]\ndomain = \"northwind.example\"\nselector = \"{selector}\"\nprivate_key = \"../../dkim/{key}\"\n"
            )
        });
        let record = if key.starts_with("rsa") {
            &records["rsa"]
        } else {
            &records["ed25519"]
        };
        dns.insert(
            format!("{selector}._domainkey.northwind.example."),
            record.clone(),
        );
        let before = dump.count();
        send_json(&t, name, &sink, 0);
        assert_eq!(dump.count(), before + 4, "{name}");
    }
    let got = dump.deliveries();
    assert_eq!(got.len(), 8);
    let msgs = t.path("delivered");
    let mut files = write_deliveries(&msgs, &got);
    // A tampered copy must fail: the verifier really verifies.
    let tampered = msgs.join("tampered");
    let raw = String::from_utf8(got[0].raw.clone()).unwrap();
    assert!(raw.contains("our winter picks are in"));
    fs::write(
        &tampered,
        raw.replacen("our winter picks are in", "our winter picks are IN", 1),
    )
    .unwrap();
    files.push(tampered);
    // So must one whose Feedback-ID was changed (Gmail trusts it only signed).
    let feedback = msgs.join("tampered-feedback-id");
    assert!(raw.contains("Feedback-ID: dkim-"), "{raw}");
    fs::write(
        &feedback,
        raw.replacen("Feedback-ID: dkim-", "Feedback-ID: spam-", 1),
    )
    .unwrap();
    files.push(feedback);

    let results = dkim_verify(&script, dns, &files);
    assert_eq!(results.len(), 10);
    let mut algorithms = BTreeSet::new();
    for r in &results {
        let file = r["file"].as_str().unwrap();
        if file.contains("tampered") {
            assert_eq!(r["ok"], false, "a tampered message verified: {r}");
            continue;
        }
        assert_eq!(r["ok"], true, "{file}: signature does not verify: {r}");
        let tags = &r["tags"];
        assert_eq!(tags["d"], "northwind.example", "{r}");
        let a = tags["a"].as_str().unwrap();
        let s = tags["s"].as_str().unwrap();
        let case = cases.iter().find(|c| c.1 == s).unwrap();
        assert_eq!(a, case.3, "{r}");
        algorithms.insert(a.to_string());
        let signed: BTreeSet<String> = tags["h"]
            .as_str()
            .unwrap()
            .split(':')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        for h in [
            "from",
            "subject",
            "date",
            "to",
            "list-unsubscribe",
            "list-unsubscribe-post",
            "feedback-id",
        ] {
            assert!(signed.contains(h), "{file}: h= lacks {h}: {r}");
        }
    }
    assert_eq!(algorithms.len(), 2, "both key types were used");

    // A key others can read is refused before anything is sent.
    clone_campaign(&t, "dkim-rsa", "dkim-loose");
    fs::copy(keys.join("rsa.pem"), keys.join("loose.pem")).unwrap();
    fs::set_permissions(
        keys.join("loose.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    t.edit(&campaign_rel("dkim-loose"), |s| {
        s.replace("rsa.pem", "loose.pem")
    });
    for dry in [false, true] {
        let mut cmd = send_cmd(&t, "dkim-loose", &sink.url());
        if dry {
            cmd.arg("--dry-run");
        }
        let r = run_expect(&mut cmd, 2);
        assert!(
            r.stderr.contains("loose.pem") && r.stderr.contains("chmod 600"),
            "dry run {dry}: {}",
            r.stderr
        );
    }
    assert_eq!(dump.count(), 8, "mail went out with a loose key");
    assert!(
        campaign_rows(&t.state(), "dkim-loose").is_empty(),
        "a loose-key run queued recipients"
    );
}
