//! Operations of the privacy officer and the operator (issue 6): `suppress import` of a
//! messy file, `suppress token`, the one-click `unsubscribe-server` over loopback with a
//! real HTTP client, `forget` (Art. 17) and `export` (Art. 15). Always `--state <tempdir>`
//! and `--now 2026-11-23T12:00:00Z`.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use tact::state::ledger::{Ledger, Reply, Status};

use crate::util::*;

/// `suppress check EMAIL`: the exit code and what it printed.
fn suppression(state: &Path, email: &str) -> (i32, String) {
    let r = run(tact(state).args(["suppress", "check", email]));
    (r.code, r.stdout)
}

fn excluded_suppressed(state: &Path, campaign: &Path) -> u64 {
    let (_, v) = check_json(tact(state).arg("check").arg(campaign).arg("--json"));
    v["audience"]["excluded"]["suppressed"].as_u64().unwrap()
}

/// `preview --recipient EMAIL` must refuse, naming `suppressed`.
fn assert_skipped_as_suppressed(state: &Path, campaign: &Path, email: &str) {
    let r = run(tact(state)
        .arg("preview")
        .arg(campaign)
        .arg("--recipient")
        .arg(email));
    assert_ne!(r.code, 0, "{email} would still be sent to");
    assert!(r.stdout.is_empty(), "a message was printed: {}", r.stdout);
    assert!(
        r.stderr.contains("suppressed"),
        "{email}: no `suppressed` in {}",
        r.stderr
    );
}

fn token_of(state: &Path, email: &str) -> String {
    crate::one_recipient(state, &sample_campaign("winter-sale"), email).token()
}

/// A copy of `token` with one character changed in the middle of the sealed part.
fn forged(token: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    let i = b.len() / 2;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// Two personalised winter-sale recipients with plain, unique addresses.
fn two_recipients() -> (String, String) {
    let r = expected_recipients(&customers(&sample_csv()), true);
    (r[0].email(), r[1].email())
}

// ---------------------------------------------------------------------------------------
// suppress import / suppress token
// ---------------------------------------------------------------------------------------

#[test]
fn suppress_import_of_a_messy_csv_counts_and_names_bad_lines_by_number_only() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("unsubscribes.csv");
    // BOM, CRLF, a quoted comma, a blank line, padding and capitals, a duplicate in other
    // case, three invalid entries, a header that is not spelt `email`.
    fs::write(
        &file,
        "\u{feff}Name,E-Mail Address,note\r\n\
         Ann,ann.import@example.com,\"likes, commas\"\r\n\
         \r\n\
         Bob,  BOB.Import@Example.COM  ,\r\n\
         Ann again,ANN.IMPORT@example.com,dup\r\n\
         Eve,eve-at-example.invalid,\r\n\
         Mallory,mallory@,\r\n\
         Shorty\r\n\
         Ngozi, NGOZI.OKAFOR@example.com,from the sample\r\n",
    )
    .unwrap();
    run_expect(tact(state.path()).arg("init"), 0);
    let r = run_expect(
        tact(state.path()).args(["suppress", "import"]).arg(&file),
        0,
    );
    assert!(
        r.stdout
            .contains("3 new, 0 already on the list, 1 duplicate line(s), 3 invalid"),
        "{}",
        r.stdout
    );
    for line in [6, 7, 8] {
        assert!(
            r.stderr
                .contains(&format!("unsubscribes.csv:{line}: not an email address")),
            "no warning for line {line} in\n{}",
            r.stderr
        );
    }
    assert_eq!(r.stderr.matches("not an email address").count(), 3);
    for value in [
        "eve-at-example",
        "mallory@",
        "Shorty",
        "ann.import",
        "bob.import",
    ] {
        assert!(
            !r.all_output()
                .to_lowercase()
                .contains(&value.to_lowercase()),
            "`{value}` was echoed:\n{}",
            r.all_output()
        );
    }
    let (code, out) = suppression(state.path(), "  Ann.Import@EXAMPLE.com ");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("import"), "{out}");
    assert_eq!(suppression(state.path(), "bob.import@example.com").0, 0);
    assert_eq!(suppression(state.path(), "eve@example.com").0, 6);
    // The sample's Ngozi is now skipped by the plan.
    assert_skipped_as_suppressed(
        state.path(),
        &sample_campaign("winter-sale"),
        "ngozi.okafor@example.com",
    );

    // Again: nothing new. A plain list, one address a line, with one new address.
    let r = run_expect(
        tact(state.path()).args(["suppress", "import"]).arg(&file),
        0,
    );
    assert!(
        r.stdout.contains("0 new, 3 already on the list"),
        "{}",
        r.stdout
    );
    let list = dir.path().join("list.txt");
    fs::write(
        &list,
        "\n  carol.import@example.com\nANN.import@example.com\n\n",
    )
    .unwrap();
    let r = run_expect(
        tact(state.path()).args(["suppress", "import"]).arg(&list),
        0,
    );
    assert!(
        r.stdout
            .contains("1 new, 1 already on the list, 0 duplicate line(s), 0 invalid"),
        "{}",
        r.stdout
    );
    // A CSV without an email column is bad input, and changes nothing.
    let bad = dir.path().join("bad.csv");
    fs::write(&bad, "name,phone\nDan,0123\n").unwrap();
    let r = run_expect(tact(state.path()).args(["suppress", "import"]).arg(&bad), 2);
    assert!(r.stderr.contains("no email column"), "{}", r.stderr);
}

#[test]
fn suppress_token_takes_a_real_token_and_a_forged_one_changes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let (a, b) = two_recipients();
    let (ta, tb) = (token_of(state.path(), &a), token_of(state.path(), &b));
    let campaign = sample_campaign("winter-sale");
    let before = excluded_suppressed(state.path(), &campaign);

    let bad = forged(&tb);
    let r = run_expect(tact(state.path()).args(["suppress", "token", &ta, &bad]), 2);
    assert!(r.stderr.contains("argument 2"), "{}", r.stderr);
    assert!(!r.all_output().contains(&bad) && !r.all_output().contains(&ta));
    assert_eq!(
        suppression(state.path(), &a).0,
        6,
        "a forged token in the same call must leave the good one undone too"
    );

    let r = run_expect(tact(state.path()).args(["suppress", "token", &ta]), 0);
    assert!(
        r.stdout.contains("unsubscribed 1 recipient(s)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("winter-sale"), "{}", r.stdout);
    assert!(!r.all_output().contains(&a));
    let (code, out) = suppression(state.path(), &a);
    assert_eq!(code, 0);
    assert!(out.contains("unsubscribe"), "{out}");
    assert_skipped_as_suppressed(state.path(), &campaign, &a);
    assert_eq!(excluded_suppressed(state.path(), &campaign), before + 1);

    // The whole URL from the header works too; a repeat is harmless.
    let url = format!("https://northwind.example/unsubscribe?t={tb}");
    run_expect(tact(state.path()).args(["suppress", "token", &url, &ta]), 0);
    assert_eq!(suppression(state.path(), &b).0, 0);
    assert_eq!(excluded_suppressed(state.path(), &campaign), before + 2);

    // Without state there is no key to open tokens with: refuse rather than start over.
    let empty = tempfile::tempdir().unwrap();
    let r = run_expect(
        tact(&empty.path().join("nothing")).args(["suppress", "token", &ta]),
        2,
    );
    assert!(r.stderr.contains("tact init"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------
// unsubscribe-server
// ---------------------------------------------------------------------------------------

/// The server as a child process; killed if a test fails before it stops it.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

/// `tact init --unsubscribe-key` into a new private directory: the key file's path.
fn export_unsubscribe_key(state: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("unsubscribe.key");
    let r = run_expect(
        tact(state).arg("init").arg("--unsubscribe-key").arg(&file),
        0,
    );
    assert!(r.stdout.contains("unsubscribe key"), "{}", r.stdout);
    (dir, file)
}

impl Server {
    /// The server on `state`'s suppression list, with a key exported from it.
    fn start(state: &Path) -> Server {
        let (_dir, key) = export_unsubscribe_key(state);
        Server::start_with(state, &key)
    }

    fn start_with(state: &Path, key: &Path) -> Server {
        let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_tact"));
        cmd.env_remove("TACT_HOME")
            .env_remove("TACT_DATABASE_URL")
            .arg("--state")
            .arg(state)
            .arg("--now")
            .arg(NOW)
            .args(["unsubscribe-server", "--listen", "127.0.0.1:0", "--key"])
            .arg(key);
        Server::spawn(cmd)
    }

    /// Runs `cmd` (an `unsubscribe-server` command line) and waits for its address.
    pub(crate) fn spawn(mut cmd: StdCommand) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| {
                let _ = child.kill();
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("the server did not say where it listens: {line:?}\n{err}")
            })
            .to_string();
        Server { child, base }
    }

    /// Ctrl-C, then the exit code and everything it logged.
    pub(crate) fn interrupt(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        assert!(
            StdCommand::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "Ctrl-C did not stop the server");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        (status.code(), log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Reply1 {
    pub(crate) status: u16,
    pub(crate) body: String,
    headers: Vec<String>,
    took: Duration,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn reply(started: Instant, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply1 {
    let mut r = r.unwrap();
    let took = started.elapsed();
    let headers = r
        .headers()
        .keys()
        .map(|k| k.as_str().to_ascii_lowercase())
        .collect();
    Reply1 {
        status: r.status().as_u16(),
        body: r.body_mut().read_to_string().unwrap(),
        headers,
        took,
    }
}

fn get(url: &str) -> Reply1 {
    let t = Instant::now();
    reply(t, agent().get(url).call())
}

pub(crate) fn post(url: &str, content_type: &str, body: &str) -> Reply1 {
    let t = Instant::now();
    reply(
        t,
        agent()
            .post(url)
            .header("Content-Type", content_type)
            .send(body),
    )
}

pub(crate) const FORM: &str = "application/x-www-form-urlencoded";
pub(crate) const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

#[test]
fn unsubscribe_server_one_click_post_suppresses_get_does_not_forged_is_400() {
    let state = tempfile::tempdir().unwrap();
    let (a, b) = two_recipients();
    let (ta, tb) = (token_of(state.path(), &a), token_of(state.path(), &b));
    let campaign = sample_campaign("winter-sale");
    let before = excluded_suppressed(state.path(), &campaign);
    let server = Server::start(state.path());
    let url_a = format!("{}/unsubscribe?t={ta}", server.base);
    let mut replies = Vec::new();

    // GET: a page with a button that POSTs; nobody is unsubscribed by following a link.
    let page = get(&url_a);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("method=\"post\""), "{}", page.body);
    assert!(
        page.body
            .contains("name=\"List-Unsubscribe\" value=\"One-Click\"")
    );
    assert!(!page.body.contains(&a));
    assert_eq!(suppression(state.path(), &a).0, 6, "a GET unsubscribed");
    replies.push(page);

    // Bad requests: 400 and nothing changes.
    for (url, body) in [
        (
            format!("{}/unsubscribe?t={}", server.base, forged(&ta)),
            ONE_CLICK,
        ),
        (format!("{}/unsubscribe", server.base), ONE_CLICK),
        (format!("{}/unsubscribe?t=", server.base), ONE_CLICK),
        (url_a.clone(), ""),
        (url_a.clone(), "List-Unsubscribe=Later"),
    ] {
        let r = post(&url, FORM, body);
        assert_eq!(r.status, 400, "{url} {body:?}: {}", r.body);
        replies.push(r);
    }
    assert_eq!(
        suppression(state.path(), &a).0,
        6,
        "a bad request unsubscribed"
    );

    // The one-click POST (RFC 8058), urlencoded; again is harmless.
    for _ in 0..2 {
        let r = post(&url_a, FORM, ONE_CLICK);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("unsubscribed"), "{}", r.body);
        replies.push(r);
    }
    let (code, out) = suppression(state.path(), &a);
    assert_eq!(code, 0);
    assert!(out.contains("unsubscribe"), "{out}");

    // Multipart, with the token after another parameter (`&t=`).
    let boundary = "tact-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--{boundary}--\r\n"
    );
    let r = post(
        &format!("{}/u?list=news&t={tb}", server.base),
        &format!("multipart/form-data; boundary={boundary}"),
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    replies.push(r);
    assert_eq!(suppression(state.path(), &b).0, 0);

    for r in &replies {
        assert!(
            r.took < Duration::from_secs(1),
            "an answer took {:?}",
            r.took
        );
        for h in ["set-cookie", "location", "refresh"] {
            assert!(!r.headers.contains(&h.to_string()), "{h} header sent");
        }
        assert!(!r.body.contains(&a) && !r.body.contains(&b));
    }

    // The plan now skips both as suppressed.
    assert_skipped_as_suppressed(state.path(), &campaign, &a);
    assert_eq!(excluded_suppressed(state.path(), &campaign), before + 2);

    let (code, log) = server.interrupt();
    assert_eq!(code, Some(130), "Ctrl-C: {log}");
    assert!(
        log.contains("unsubscribed one recipient of campaign winter-sale"),
        "{log}"
    );
    for secret in [&a, &b, &ta, &tb] {
        assert!(
            !log.contains(secret.as_str()),
            "the log names an address or token:\n{log}"
        );
    }
}

#[test]
fn unsubscribe_server_refuses_to_start_without_state() {
    let state = tempfile::tempdir().unwrap();
    let (_keydir, key) = export_unsubscribe_key(state.path());
    let dir = tempfile::tempdir().unwrap();
    let r = run_expect(
        tact(&dir.path().join("missing"))
            .args(["unsubscribe-server", "--listen", "127.0.0.1:0", "--key"])
            .arg(&key),
        2,
    );
    assert!(r.stderr.contains("tact init"), "{}", r.stderr);
    assert!(!dir.path().join("missing").exists());
}

// ---------------------------------------------------------------------------------------
// forget / export
// ---------------------------------------------------------------------------------------

/// Puts sent and pending ledger rows for these addresses in place, as a send would, plus
/// the `send-started` audit event with the campaign's fields from `check --json`.
fn seed_ledger(state: &Path, campaign: &Path, sent: &[&str], pending: &[&str]) -> Value {
    let (_, v) = check_json(tact(state).arg("check").arg(campaign).arg("--json"));
    let keys = crate::master_keys(state);
    let mut ledger = Ledger::open(state, false).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap().to_utc();
    let name = "winter-sale";
    ledger
        .audit_append(
            &keys,
            name,
            "send-started",
            &json!({ "verdict": v["verdict"], "fields": v["fields"], "acknowledged": [] }),
            now - chrono::TimeDelta::hours(1),
        )
        .unwrap();
    let all: Vec<_> = sent
        .iter()
        .chain(pending)
        .map(|e| (keys.recipient_hash(e), true))
        .collect();
    ledger.enqueue(name, &all, now).unwrap();
    for e in sent {
        let h = keys.recipient_hash(e);
        assert!(ledger.claim(name, &h, now).unwrap());
        ledger
            .finish(
                name,
                &h,
                Status::Sent,
                &Reply::default(),
                Some("<m@x>"),
                now,
            )
            .unwrap();
    }
    ledger.enqueue("spring-news", &all[..1], now).unwrap();
    v["fields"].clone()
}

fn contains_ci(bytes: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(bytes)
        .to_lowercase()
        .contains(&needle.to_lowercase())
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v = files_under(dir);
    v.sort();
    v
}

#[test]
fn forget_erases_rows_ledger_and_every_trace_and_a_readded_row_stays_suppressed() {
    let tree = Tree::new();
    let csv = tree.path("sample-data/customers.csv");
    let folder = tree.path("sample-data");
    let campaign = tree.campaign("winter-sale");
    let all = customers(&csv);
    // A plain personalised recipient that nothing but the CSV mentions (the generator
    // script beside it spells out a few special rows).
    let script = fs::read_to_string(folder.join("generate_customers.py")).unwrap_or_default();
    let person = expected_recipients(&all, true)
        .into_iter()
        .find(|c| !script.to_lowercase().contains(&c.email()))
        .unwrap();
    let email = person.email();
    let other = expected_recipients(&all, false)[0].email();
    // Give them a second row in the middle of the file, in capitals and padded.
    let original = fs::read(&csv).unwrap();
    let lines: Vec<&[u8]> = original.split_inclusive(|&b| b == b'\n').collect();
    let own = String::from_utf8(lines[person.line as usize - 1].to_vec()).unwrap();
    assert!(!own.contains('"'), "pick a one-line row");
    let raw_email = person.get("email");
    let twin = own.replacen(raw_email, &format!("  {}  ", raw_email.to_uppercase()), 1);
    let mut with_twin: Vec<u8> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        with_twin.extend_from_slice(l);
        if i == 99 {
            with_twin.extend_from_slice(twin.as_bytes());
        }
    }
    fs::write(&csv, &with_twin).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&csv, fs::Permissions::from_mode(0o640)).unwrap();

    // No state yet: refuse (exit 2) and leave the CSV alone.
    run_expect(
        tree.tact()
            .arg("forget")
            .arg(&email)
            .arg("--audience")
            .arg(&csv),
        2,
    );
    assert_eq!(fs::read(&csv).unwrap(), with_twin);

    run_expect(tree.tact().arg("init"), 0);
    seed_ledger(&tree.state(), &campaign, &[&email, &other], &[]);
    let files_before = listing(&folder);

    let r = run_expect(
        tree.tact()
            .arg("forget")
            .arg(format!(" {}", email.to_uppercase()))
            .arg("--audience")
            .arg(&csv),
        0,
    );
    assert!(r.stdout.contains("2 row(s) removed"), "{}", r.stdout);
    // winter-sale (sent) and spring-news (pending): every campaign's rows.
    assert!(
        r.stdout.contains("2 delivery row(s) deleted"),
        "{}",
        r.stdout
    );
    assert!(
        !contains_ci(r.all_output().as_bytes(), &email),
        "{}",
        r.all_output()
    );

    // The file: exactly the original bytes without that person's row.
    let mut expected = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i != person.line as usize - 1 {
            expected.extend_from_slice(l);
        }
    }
    assert_eq!(fs::read(&csv).unwrap(), expected, "other bytes changed");
    assert_eq!(customers(&csv).len(), all.len() - 1);
    assert_eq!(mode(&csv), 0o640, "permissions not kept");
    assert_eq!(
        listing(&folder),
        files_before,
        "a temporary or backup file was left"
    );

    // The address is in no file of the state directory or of the CSV's folder.
    for f in files_under(&tree.state())
        .into_iter()
        .chain(files_under(&folder))
    {
        assert!(
            !contains_ci(&fs::read(&f).unwrap(), &email),
            "{} still holds the address",
            f.display()
        );
    }

    // The ledger: their rows are gone, other people's stay.
    let keys = crate::master_keys(&tree.state());
    let ledger = Ledger::open(&tree.state(), false).unwrap();
    assert!(
        ledger
            .deliveries_of(&keys.recipient_hash(&email))
            .unwrap()
            .is_empty()
    );
    assert_eq!(ledger.counts("winter-sale").unwrap().sent, 1);
    drop(ledger);
    let (code, out) = suppression(&tree.state(), &email);
    assert_eq!(code, 0);
    assert!(out.contains("erasure"), "{out}");

    // The audit log records the erasure by counts only, and still verifies.
    let (_, events) = check_json(tree.tact().args(["audit", "--json"]));
    let forget = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "forget")
        .expect("no forget event");
    assert_eq!(
        forget["body"],
        json!({ "rows_removed": 2, "ledger_rows": 2 })
    );
    run_expect(tree.tact().args(["audit", "--verify"]), 0);

    // A later import of the same person is never mailed.
    let mut readded = fs::read(&csv).unwrap();
    readded.extend_from_slice(own.as_bytes());
    fs::write(&csv, readded).unwrap();
    assert_skipped_as_suppressed(&tree.state(), &campaign, &email);
    assert_eq!(excluded_suppressed(&tree.state(), &campaign), 1);
}

#[test]
fn export_lists_rows_consent_campaigns_and_suppression() {
    let state = tempfile::tempdir().unwrap();
    let csv = sample_csv();
    let email = "priya.raghunathan@example.org";
    let rows: Vec<Customer> = customers(&csv)
        .into_iter()
        .filter(|c| c.email() == email)
        .collect();
    assert_eq!(rows.len(), 2, "the sample has two rows of this address");
    let export = |who: &str| {
        let (_, v) = check_json(
            tact(state.path())
                .arg("export")
                .arg(who)
                .arg("--audience")
                .arg(&csv),
        );
        v
    };

    // No state: nothing to read it from, and none is made.
    let r = run_expect(
        tact(&state.path().join("none"))
            .arg("export")
            .arg(email)
            .arg("--audience")
            .arg(&csv),
        2,
    );
    assert!(r.stderr.contains("tact init"), "{}", r.stderr);

    run_expect(tact(state.path()).arg("init"), 0);
    let fields = seed_ledger(state.path(), &sample_campaign("winter-sale"), &[email], &[]);
    let v = export(" Priya.Raghunathan@EXAMPLE.org");
    assert_eq!(v["email"], email);
    let got = v["audience"]["rows"].as_array().unwrap();
    assert_eq!(got.len(), 2);
    for (row, c) in got.iter().zip(&rows) {
        assert_eq!(row["line"], c.line);
        let want: serde_json::Map<String, Value> = c
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        assert_eq!(row["fields"], Value::Object(want));
        let consent = &row["consent"];
        assert_eq!(consent["marketing"]["value"], c.get("consent_marketing"));
        assert_eq!(consent["marketing"]["granted"], true);
        assert_eq!(
            consent["personalisation"]["value"],
            c.get("consent_personalisation")
        );
        assert_eq!(consent["personalisation"]["granted"], true);
        assert_eq!(consent["given_at"]["value"], c.get("consent_at"));
        assert_eq!(consent["given_at"]["time"], "2025-09-21T22:15:00Z");
    }
    assert_eq!(v["audience"]["rows"][0]["line"], 8);
    let campaigns = v["campaigns"].as_array().unwrap();
    let winter = campaigns
        .iter()
        .find(|c| c["campaign"] == "winter-sale")
        .unwrap();
    assert_eq!(winter["status"], "sent");
    assert_eq!(winter["variant"], "personalised");
    assert_eq!(winter["date"], NOW);
    assert_eq!(winter["fields"], fields);
    assert!(
        winter["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "first_name" && f["class"] == "declared"),
        "{}",
        winter["fields"]
    );
    let spring = campaigns
        .iter()
        .find(|c| c["campaign"] == "spring-news")
        .unwrap();
    assert_eq!(spring["status"], "pending");
    assert_eq!(spring["fields"], Value::Null, "no audit event for it");
    assert_eq!(
        v["suppression"],
        json!({ "suppressed": false, "reason": null, "since": null })
    );

    run_expect(tact(state.path()).args(["suppress", "add", email]), 0);
    let v = export(email);
    assert_eq!(
        v["suppression"],
        json!({ "suppressed": true, "reason": "manual", "since": NOW })
    );

    // Someone tact knows nothing about: an empty but well-formed answer.
    let v = export("nobody@example.com");
    assert_eq!(v["audience"]["rows"], json!([]));
    assert_eq!(v["campaigns"], json!([]));
    assert_eq!(v["suppression"]["suppressed"], false);
}

// ---------------------------------------------------------------------------------------
// audit --verify
// ---------------------------------------------------------------------------------------

/// The report: events deleted from the end (or all of them) left a chain that
/// verified as "intact: 2 events". Each `purge` appends one event, so five make a log.
#[test]
fn audit_verify_reports_a_log_cut_short_or_emptied() {
    let state = tempfile::tempdir().unwrap();
    run_expect(tact(state.path()).arg("init"), 0);
    for _ in 0..5 {
        run_expect(tact(state.path()).args(["purge", "--older-than", "1"]), 0);
    }
    let ok = run_expect(tact(state.path()).args(["audit", "--verify"]), 0);
    assert!(
        ok.stdout.contains("5 event(s) verified") && ok.stdout.contains("head 5:"),
        "{}",
        ok.stdout
    );
    let db = || rusqlite::Connection::open(state.path().join("ledger.db")).unwrap();
    db().execute_batch("DELETE FROM audit WHERE seq >= 3")
        .unwrap();
    let cut = run(tact(state.path()).args(["audit", "--verify"]));
    assert_eq!(cut.code, 1, "a cut log verified: {}", cut.stdout);
    assert!(
        cut.stderr
            .contains("audit log broken at event 3: it is missing: the log was cut short")
            && cut.stderr.contains("ends at event 5"),
        "{}",
        cut.stderr
    );
    db().execute_batch("DELETE FROM audit").unwrap();
    let empty = run(tact(state.path()).args(["audit", "--verify"]));
    assert_eq!(empty.code, 1, "an emptied log verified: {}", empty.stdout);
    assert!(
        empty.stderr.contains("event 1") && empty.stderr.contains("every event was deleted"),
        "{}",
        empty.stderr
    );
}

// ---------------------------------------------------------------------------------------
// unsubscribe-server under hostile clients
// ---------------------------------------------------------------------------------------

/// `tact init`, then `n` personalised winter-sale tokens sealed with the state's key, and
/// the hashes a suppression of each would store.
fn tokens_for(state: &Path, n: usize) -> Vec<(String, tact::state::RecipientHash)> {
    run_expect(tact(state).arg("init"), 0);
    let keys = crate::master_keys(state);
    (0..n)
        .map(|i| {
            let h = keys.recipient_hash(&format!("reader{i}@example.com"));
            (keys.seal_token("winter-sale", &h), h)
        })
        .collect()
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// Everyone in `people` unsubscribes with a one-click POST, `per_client` of them in turn
/// on each of several concurrent clients: each answer's status and time.
fn unsubscribe_all(
    base: &str,
    people: &[(String, tact::state::RecipientHash)],
    per_client: usize,
) -> Vec<(u16, Duration)> {
    std::thread::scope(|s| {
        let workers: Vec<_> = people
            .chunks(per_client)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(t, _)| {
                            let r = post(&format!("{base}/unsubscribe?t={t}"), FORM, ONE_CLICK);
                            (r.status, r.took)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// Every one of `people` is on the suppression list.
fn all_suppressed(state: &Path, people: &[(String, tact::state::RecipientHash)]) {
    let ledger = Ledger::open(state, false).unwrap();
    for (i, (_, h)) in people.iter().enumerate() {
        assert!(
            ledger.is_suppressed(h).unwrap(),
            "person {i} not suppressed"
        );
    }
}

/// A client that connects, sends `prefix` and then nothing: the slowloris of the issue.
/// The test drops it at its end, so it stops by itself.
fn stall(addr: &str, prefix: &[u8]) -> std::net::TcpStream {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    if !prefix.is_empty() {
        // The server may already have answered and closed (too large): fine.
        let _ = s.write_all(prefix);
    }
    s
}

/// The report: ~65 connections declaring `Content-Length: 60000` and sending 4
/// bytes stopped every one-click POST. 150 of them (and of two other kinds of stall) are
/// held open while 124 people unsubscribe: every one must be answered 200 and suppressed.
/// The per-request timeout is generous (this is not the latency figure: that is measured
/// in release by `benches/unsubscribe.rs`).
#[test]
fn unsubscribe_server_answers_everyone_while_150_slow_clients_hold_connections() {
    let state = tempfile::tempdir().unwrap();
    let people = tokens_for(state.path(), 124);
    let server = Server::start(state.path());
    let addr = host_port(&server.base);
    let kinds: [&[u8]; 3] = [
        b"POST /unsubscribe?t=x HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\nList",
        b"POST /unsubscribe?t=x HTTP/1.1\r\nHost: a\r\nX-Slow: ",
        b"",
    ];
    // 100 of the kind, 25 stuck in their headers, 25 that never send a byte.
    let stalled: Vec<_> = (0..150)
        .map(|i| stall(&addr, kinds[usize::from(i >= 100) + usize::from(i >= 125)]))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let answers = unsubscribe_all(&server.base, &people, 31);
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "not every one-click POST was answered 200: {statuses:?}"
    );
    all_suppressed(state.path(), &people);
    // A stop does not wait for stalled clients: fresh ones would hold each connection for
    // the 5 s read timeout (and the 10 s deadline), the stop takes at most its 2 s grace.
    let fresh: Vec<_> = (0..20).map(|_| stall(&addr, kinds[1])).collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let (code, _) = server.interrupt();
    assert_eq!(code, Some(130));
    assert!(
        t.elapsed() < Duration::from_millis(4500),
        "stopping took {:?}",
        t.elapsed()
    );
    drop((stalled, fresh));
}

/// Past the connection cap: an attacker holding more stalled connections than the server
/// serves at once (700 > 512) must not lock anyone out. A new connection evicts the oldest
/// one still waiting for its request, so the 60 people who unsubscribe next are all
/// answered 200 and suppressed, never 503.
#[test]
fn unsubscribe_server_answers_everyone_while_more_stalled_clients_than_its_cap_hold_on() {
    let state = tempfile::tempdir().unwrap();
    let people = tokens_for(state.path(), 60);
    let server = Server::start(state.path());
    let addr = host_port(&server.base);
    let head: &[u8] =
        b"POST /unsubscribe?t=x HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\n\r\nList";
    let stalled: Vec<_> = (0..tact::unsubscribe::MAX_CONNECTIONS + 188)
        .map(|_| stall(&addr, head))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let statuses: Vec<u16> = unsubscribe_all(&server.base, &people, 15)
        .iter()
        .map(|a| a.0)
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "someone was locked out past the cap: {statuses:?}"
    );
    all_suppressed(state.path(), &people);
    drop(stalled);
}

/// Sends `bytes` on a new connection (as far as the server lets it), then reads whatever
/// the server answers until it closes: the answer's first line, and how long it took.
fn exchange(addr: &str, bytes: &[u8]) -> (String, Duration) {
    use std::io::Write as _;
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    (text.lines().next().unwrap_or("").to_string(), t.elapsed())
}

/// A client that sends its head one byte every 200 ms (or nothing at all), forever: how
/// long until the server gives up on it, and what it said.
fn dribble(addr: &str, head: &'static [u8]) -> (String, Duration) {
    use std::io::Write as _;
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut answer = Vec::new();
    for b in head.iter().cycle() {
        assert!(t.elapsed() < Duration::from_secs(60), "never closed");
        if !head.is_empty() {
            let _ = s.write_all(&[*b]);
        }
        let mut chunk = [0u8; 1024];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    (text.lines().next().unwrap_or("").to_string(), t.elapsed())
}

/// Every kind of malformed or hostile request is answered (or closed) at once or at the
/// request deadline (10 s), and none of them holds up a real unsubscribe meanwhile.
#[test]
fn unsubscribe_server_answers_hostile_requests_promptly_and_never_blocks_others() {
    let state = tempfile::tempdir().unwrap();
    let people = tokens_for(state.path(), 2);
    let server = Server::start(state.path());
    let addr = host_port(&server.base);
    let token = &people[0].0;
    let slow: Vec<_> = [
        &b"POST /unsubscribe HTTP/1.1\r\nHost: a\r\nX-Header: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..],
        &b""[..],
    ]
    .into_iter()
    .map(|head| {
        let addr = addr.clone();
        std::thread::spawn(move || dribble(&addr, head))
    })
    .collect();

    let many_headers: String = (0..1000).map(|i| format!("X-{i}: v\r\n")).collect();
    let post_head = format!("POST /unsubscribe?t={token} HTTP/1.1\r\nHost: a\r\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "an oversized body",
            format!("{post_head}Content-Type: {FORM}\r\nContent-Length: 1000000000\r\n\r\nList-Unsubscribe=One-Click").into_bytes(),
            "413",
        ),
        (
            "a body a little over the limit",
            format!("{post_head}Content-Type: {FORM}\r\nContent-Length: 60000\r\n\r\n{}", "x".repeat(60000)).into_bytes(),
            "413",
        ),
        (
            "a thousand headers",
            format!("{post_head}{many_headers}\r\n").into_bytes(),
            "431",
        ),
        (
            "a 64 KiB request line",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(64 * 1024)).into_bytes(),
            "431",
        ),
        (
            "a TLS hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "a garbage request line",
            b"HELLO THERE\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "chunked",
            format!("{post_head}Transfer-Encoding: chunked\r\n\r\n1a\r\nList-Unsubscribe=One-Click\r\n0\r\n\r\n").into_bytes(),
            "411",
        ),
        (
            "two lengths",
            format!("{post_head}Content-Length: 26\r\nContent-Length: 27\r\n\r\nList-Unsubscribe=One-Click").into_bytes(),
            "400",
        ),
        (
            "a body shorter than its length, then silence",
            format!("{post_head}Content-Type: {FORM}\r\nContent-Length: 100\r\n\r\nList-Unsubscribe=One-Click").into_bytes(),
            "408",
        ),
    ];
    let ledger = Ledger::open(state.path(), false).unwrap();
    for (what, bytes, status) in &cases {
        let (line, took) = exchange(&addr, bytes);
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: answered {line:?}"
        );
        // Refused at once, except the one that waits for its missing bytes.
        let bound = if *status == "408" { 15 } else { 2 };
        assert!(took < Duration::from_secs(bound), "{what}: took {took:?}");
        assert!(
            !ledger.is_suppressed(&people[0].1).unwrap(),
            "{what} unsubscribed"
        );
    }

    // Meanwhile the slow ones are still being waited for; a real unsubscribe gets through.
    let r = post(
        &format!("{}/unsubscribe?t={}", server.base, people[1].0),
        FORM,
        ONE_CLICK,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
    assert!(ledger.is_suppressed(&people[1].1).unwrap());

    for s in slow {
        let (line, took) = s.join().unwrap();
        assert!(
            took < Duration::from_secs(20),
            "a slow client was kept for {took:?}"
        );
        assert!(
            line.is_empty() || line.starts_with("HTTP/1.1 408 "),
            "{line:?}"
        );
    }
    assert!(!ledger.is_suppressed(&people[0].1).unwrap());
}

/// The internet-facing process runs on the exported key alone: here it gets a copy of the
/// state with no master key in it at all (and a `master.key` that is a directory, which
/// any attempt to read it would trip over), and still unsubscribes people.
#[test]
fn unsubscribe_server_runs_on_the_exported_key_without_the_master_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let state = tempfile::tempdir().unwrap();
    let people = tokens_for(state.path(), 1);
    let (_keydir, key) = export_unsubscribe_key(state.path());

    // The file: private, never overwritten, and not the master key.
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = fs::read_to_string(&key).unwrap();
    let master = fs::read_to_string(state.path().join("master.key")).unwrap();
    assert!(!text.contains(master.trim()), "the master key was exported");
    let again = run_expect(
        tact(state.path())
            .arg("init")
            .arg("--unsubscribe-key")
            .arg(&key),
        2,
    );
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(fs::read_to_string(&key).unwrap(), text, "overwritten");

    // What the server sees: the suppression list, no master key.
    let view = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(state.path()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("ledger.db") {
            fs::copy(&p, view.path().join(&name)).unwrap();
        }
    }
    fs::create_dir(view.path().join("master.key")).unwrap();
    let server = Server::start_with(view.path(), &key);
    let r = post(
        &format!("{}/unsubscribe?t={}", server.base, people[0].0),
        FORM,
        ONE_CLICK,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (code, log) = server.interrupt();
    assert_eq!(code, Some(130), "{log}");
    assert!(
        Ledger::open(view.path(), false)
            .unwrap()
            .is_suppressed(&people[0].1)
            .unwrap()
    );

    // Without its key it does not start; nor with a key others can read, or another
    // state's key (the store records which master key it belongs to).
    let no_key = run(tact(view.path()).args(["unsubscribe-server", "--listen", "127.0.0.1:0"]));
    assert_eq!(no_key.code, 2, "{}", no_key.stderr);
    assert!(no_key.stderr.contains("--key"), "{}", no_key.stderr);
    let shared = view.path().join("shared.key");
    fs::write(&shared, &text).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o644)).unwrap();
    let r = run_expect(
        tact(view.path())
            .args(["unsubscribe-server", "--listen", "127.0.0.1:0", "--key"])
            .arg(&shared),
        2,
    );
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    let other = tempfile::tempdir().unwrap();
    let (_otherdir, other_key) = export_unsubscribe_key(other.path());
    let r = run_expect(
        tact(view.path())
            .args(["unsubscribe-server", "--listen", "127.0.0.1:0", "--key"])
            .arg(&other_key),
        2,
    );
    assert!(r.stderr.contains("different master key"), "{}", r.stderr);
}

/// The head `audit --verify` prints, as `SEQ:MAC`.
fn head_mark(state: &Path) -> String {
    let r = run_expect(tact(state).args(["audit", "--verify"]), 0);
    r.stdout
        .split_whitespace()
        .skip_while(|w| *w != "head")
        .nth(1)
        .unwrap_or_else(|| panic!("no head in {}", r.stdout))
        .to_string()
}

/// A restore of the whole store to an earlier copy is consistent inside: only a head
/// recorded outside it (`--expect-head`, as a cron job would keep it) can tell.
#[test]
fn audit_verify_with_a_recorded_head_catches_a_store_rolled_back_to_an_older_copy() {
    let state = tempfile::tempdir().unwrap();
    run_expect(tact(state.path()).arg("init"), 0);
    let purge = || run_expect(tact(state.path()).args(["purge", "--older-than", "1"]), 0);
    for _ in 0..3 {
        purge();
    }
    let at3 = head_mark(state.path());
    assert!(at3.starts_with("3:"), "{at3}");
    let backup = tempfile::tempdir().unwrap();
    let files = |from: &Path, to: &Path| {
        for f in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
            let _ = fs::remove_file(to.join(f));
            if from.join(f).exists() {
                fs::copy(from.join(f), to.join(f)).unwrap();
            }
        }
    };
    files(state.path(), backup.path());
    purge();
    purge();
    let at5 = head_mark(state.path());
    run_expect(
        tact(state.path()).args(["audit", "--verify", "--expect-head", &at3]),
        0,
    );
    run_expect(
        tact(state.path()).args(["audit", "--verify", "--expect-head", &at5]),
        0,
    );

    files(backup.path(), state.path());
    // Inside, the old copy is a perfectly good log of 3 events ...
    run_expect(tact(state.path()).args(["audit", "--verify"]), 0);
    // ... which does not reach the head recorded after event 5.
    let r = run(tact(state.path()).args(["audit", "--verify", "--expect-head", &at5]));
    assert_eq!(r.code, 1, "a rolled-back store verified: {}", r.stdout);
    assert!(
        r.stderr.contains("rolled back") && r.stderr.contains(&at5),
        "{}",
        r.stderr
    );
    // Another event 3 than the one recorded: rewritten.
    let forged = format!("3:{}", "0".repeat(16));
    let r = run(tact(state.path()).args(["audit", "--verify", "--expect-head", &forged]));
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("rewritten"), "{}", r.stderr);
    let r = run(tact(state.path()).args(["audit", "--verify", "--expect-head", "five"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// A Windows-1252 file with `;` (Excel's "CSV" in much of Europe), declared in its schema:
/// `forget` cuts the person's row and writes the file back in Windows-1252, every other
/// byte as it was; and a UTF-16 file with a BOM (Excel's "Unicode text") keeps its BOM and
/// encoding.
#[test]
fn forget_writes_a_windows_1252_or_utf16_file_back_in_its_own_encoding() {
    let tree = Tree::new();
    run_expect(tree.tact().arg("init"), 0);
    let latin: &[u8] = b"email;first_name;consent_marketing\r\nsoren@example.com;S\xf8ren;yes\r\nforget.me@example.com;Ren\xe9e;yes\r\nb@example.com;Jos\xe9;no\r\n";
    let csv = tree.path("latin.csv");
    fs::write(&csv, latin).unwrap();
    fs::write(
        tree.path("latin.schema.toml"),
        "[csv]\nencoding = \"windows-1252\"\n",
    )
    .unwrap();
    let r = run_expect(
        tree.tact()
            .args(["forget", "forget.me@example.com", "--audience"])
            .arg(&csv),
        0,
    );
    assert!(r.stdout.contains("1 row(s) removed"), "{}", r.stdout);
    assert_eq!(
        fs::read(&csv).unwrap(),
        b"email;first_name;consent_marketing\r\nsoren@example.com;S\xf8ren;yes\r\nb@example.com;Jos\xe9;no\r\n"
    );

    let text = "email\tfirst_name\r\nforget.me@example.com\tRen\u{e9}e\r\nsoren@example.com\tS\u{f8}ren\r\n";
    let utf16 = |t: &str| -> Vec<u8> {
        let mut b = vec![0xFF, 0xFE];
        b.extend(t.encode_utf16().flat_map(u16::to_le_bytes));
        b
    };
    let wide = tree.path("wide.csv");
    fs::write(&wide, utf16(text)).unwrap();
    run_expect(
        tree.tact()
            .args(["forget", "FORGET.me@example.com", "--audience"])
            .arg(&wide),
        0,
    );
    assert_eq!(
        fs::read(&wide).unwrap(),
        utf16("email\tfirst_name\r\nsoren@example.com\tS\u{f8}ren\r\n")
    );
}
