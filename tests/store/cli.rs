//! The commands against a shared PostgreSQL store, as several hosts would run them: each
//! "host" is its own local state directory (its own copy of the key) pointing at one
//! database.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use crate::send::sink::{DumpDir, Sink};
use crate::util::*;

use super::server::{PASSWORD, PgServer};

/// `tact --now NOW` with nothing of the user's environment, the password in PGPASSWORD.
fn tact_bare() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("tact").unwrap();
    cmd.current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("TACT_HOME")
        .env_remove("TACT_SMTP_URL")
        .env_remove("TACT_SMTP_PASSWORD")
        .env_remove("TACT_DATABASE_URL")
        .env("PGPASSWORD", PASSWORD)
        .arg("--now")
        .arg(NOW);
    cmd
}

/// A host: `--state DIR` for the key, `TACT_DATABASE_URL` for the store.
fn host(state: &Path, url: &str) -> assert_cmd::Command {
    let mut cmd = tact_bare();
    cmd.env("TACT_DATABASE_URL", url).arg("--state").arg(state);
    cmd
}

fn key_id(init_stdout: &str) -> String {
    let at = init_stdout
        .find("key id ")
        .unwrap_or_else(|| panic!("no key id in `tact init` output:\n{init_stdout}"));
    init_stdout[at + 7..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

#[test]
fn hosts_share_one_suppression_list_and_audit_log_and_must_share_one_key() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.new_database();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );

    // The first host makes its key and records the key's identifier in the database.
    let r = run_expect(host(&a, &url).arg("init"), 0);
    assert!(r.stdout.contains(&url), "{}", r.stdout);
    let id_a = key_id(&r.stdout);
    run_expect(
        host(&a, &url).args(["suppress", "add", "ann@example.com"]),
        0,
    );
    let r = run_expect(
        host(&a, &url).args(["suppress", "check", "ann@example.com"]),
        0,
    );
    assert!(r.stdout.contains("suppressed: manual"), "{}", r.stdout);
    // The suppression is in the database, not in the local ledger.
    run_expect(
        tact_bare()
            .arg("--state")
            .arg(&a)
            .args(["suppress", "check", "ann@example.com"]),
        6,
    );

    // `--state postgres://…` names the database; the key comes from TACT_HOME.
    let r = run_expect(
        tact_bare()
            .env("TACT_HOME", &a)
            .arg("--state")
            .arg(&url)
            .args(["suppress", "check", "ann@example.com"]),
        0,
    );
    assert!(r.stdout.contains("suppressed"), "{}", r.stdout);

    // A password on the command line is refused, and never echoed.
    let with_password = url.replace("tact@", "tact:hunter2@");
    let r = run_expect(
        tact_bare()
            .env("TACT_HOME", &a)
            .arg("--state")
            .arg(&with_password)
            .args(["suppress", "check", "ann@example.com"]),
        2,
    );
    assert!(r.stderr.contains("PGPASSWORD"), "{}", r.stderr);
    assert!(!r.all_output().contains("hunter2"), "{}", r.all_output());
    // In TACT_DATABASE_URL (the environment) it is accepted.
    run_expect(
        tact_bare()
            .env(
                "TACT_DATABASE_URL",
                with_password.replace("hunter2", PASSWORD),
            )
            .env_remove("PGPASSWORD")
            .arg("--state")
            .arg(&a)
            .args(["suppress", "check", "ann@example.com"]),
        0,
    );
    // No password at all: a clear error, not a hang.
    let r = run_expect(
        tact_bare()
            .env_remove("PGPASSWORD")
            .env("TACT_DATABASE_URL", &url)
            .arg("--state")
            .arg(&a)
            .args(["suppress", "check", "ann@example.com"]),
        1,
    );
    assert!(r.stderr.contains("PGPASSWORD"), "{}", r.stderr);

    // A second host with its own, different key is refused: its hashes would not match.
    run_expect(tact_bare().arg("--state").arg(&b).arg("init"), 0);
    for args in [&["init"][..], &["suppress", "check", "ann@example.com"][..]] {
        let r = run_expect(host(&b, &url).args(args), 2);
        assert!(
            r.stderr.contains("same key") && r.stderr.contains("--import-key"),
            "{args:?}: {}",
            r.stderr
        );
    }

    // A world-readable copy of the key is refused; a private one makes the same key.
    let copy = tmp.path().join("master.key");
    std::fs::copy(a.join("master.key"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = run_expect(host(&c, &url).args(["init", "--import-key"]).arg(&copy), 2);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    assert!(!c.join("master.key").exists());
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = run_expect(host(&c, &url).args(["init", "--import-key"]).arg(&copy), 0);
    assert_eq!(key_id(&r.stdout), id_a);
    assert_eq!(mode(&c.join("master.key")), 0o600);
    assert_eq!(mode(&c), 0o700);
    // Importing again is harmless; another key over it is refused.
    run_expect(host(&c, &url).args(["init", "--import-key"]).arg(&copy), 0);
    let r = run_expect(
        tact_bare()
            .arg("--state")
            .arg(&c)
            .args(["init", "--import-key"])
            .arg(b.join("master.key")),
        2,
    );
    assert!(r.stderr.contains("different master key"), "{}", r.stderr);

    // The third host sees the first host's suppression (same key, same hash), and an
    // unsubscribe it takes stops the first host too.
    run_expect(
        host(&c, &url).args(["suppress", "check", "ann@example.com"]),
        0,
    );
    run_expect(
        host(&c, &url).args(["suppress", "add", "bob@example.com"]),
        0,
    );
    run_expect(
        host(&a, &url).args(["suppress", "check", "bob@example.com"]),
        0,
    );

    // One audit log: a purge on each host appends to one chain, which both verify.
    run_expect(host(&a, &url).args(["purge", "--older-than", "30"]), 0);
    run_expect(host(&c, &url).args(["purge", "--older-than", "30"]), 0);
    for h in [&a, &c] {
        let r = run_expect(host(h, &url).args(["audit", "--verify"]), 0);
        assert!(r.stdout.contains("2 event(s) verified"), "{}", r.stdout);
    }
    server.sql(
        &url,
        "UPDATE audit SET operator = 'someone-else' WHERE seq = 1",
    );
    let r = run(host(&a, &url).args(["audit", "--verify"]));
    assert_ne!(r.code, 0, "an edited audit log verified:\n{}", r.stdout);

    // Nothing in the database is an address.
    let dump = server.dump(&url);
    for needle in ["ann@example.com", "bob@example.com", "example.com"] {
        assert!(!dump.contains(needle), "{needle} is in the database");
    }
}

/// Hosts sharing one database, each with the same key, and a campaign slow enough that
/// their runs overlap.
struct Hosts {
    t: Tree,
    url: String,
    states: Vec<std::path::PathBuf>,
    dump: DumpDir,
    sink: Sink,
}

impl Hosts {
    fn new(server: &PgServer, n: usize, send: &str) -> Hosts {
        let url = server.new_database();
        let t = Tree::new();
        let states: Vec<_> = (0..n).map(|i| t.path(&format!("host-{i}"))).collect();
        run_expect(host(&states[0], &url).arg("init"), 0);
        for s in &states[1..] {
            run_expect(
                host(s, &url)
                    .args(["init", "--import-key"])
                    .arg(states[0].join("master.key")),
                0,
            );
        }
        t.edit("sample-data/campaigns/winter-sale.toml", |s| {
            format!("{s}\n[send]\n{send}\n")
        });
        let dump = DumpDir::new();
        let sink = Sink::start(&dump, &[]);
        Hosts {
            t,
            url,
            states,
            dump,
            sink,
        }
    }

    fn spawn(&self, i: usize) -> std::process::Child {
        StdCommand::new(assert_cmd::cargo::cargo_bin("tact"))
            .current_dir(self.t.root())
            .env("NO_COLOR", "1")
            .env_remove("TACT_HOME")
            .env_remove("TACT_SMTP_PASSWORD")
            .env("TACT_DATABASE_URL", &self.url)
            .env("PGPASSWORD", PASSWORD)
            .arg("--state")
            .arg(&self.states[i])
            .arg("--now")
            .arg(NOW)
            .arg("send")
            .arg(self.t.campaign("winter-sale"))
            .arg("--smtp")
            .arg(self.sink.url())
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn per_address(&self) -> BTreeMap<String, usize> {
        std::thread::sleep(Duration::from_millis(200));
        let mut out: BTreeMap<String, usize> = BTreeMap::new();
        for d in self.dump.deliveries() {
            for r in &d.rcpts {
                *out.entry(r.clone()).or_default() += 1;
            }
        }
        out
    }
}

/// Two, then three hosts send the same campaign at the same time to one database: every
/// recipient gets the message exactly once, between them.
#[test]
fn two_and_three_hosts_sending_one_campaign_at_once_never_mail_anyone_twice() {
    let Some(server) = PgServer::start() else {
        return;
    };
    for n in [2, 3] {
        let h = Hosts::new(&server, n, "rate_per_second = 300\nconcurrency = 2");
        let children: Vec<_> = (0..n).map(|i| h.spawn(i)).collect();
        let mut sent = 0;
        let mut busy = 0;
        for c in children {
            let o = c.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{stdout}\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            let one = v["summary"]["sent"].as_u64().unwrap();
            eprintln!("{n} hosts: one sent {one}");
            sent += one;
            busy += usize::from(one > 0);
        }
        let per_address = h.per_address();
        let twice: Vec<_> = per_address.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{n} hosts: mailed twice: {} addresses",
            twice.len()
        );
        assert_eq!(per_address.len(), 220, "{n} hosts: every recipient once");
        assert_eq!(sent, 220, "{n} hosts: the counts add up");
        assert!(busy >= 2, "{n} hosts: the work was shared");
        // The campaign is complete for every host: none sends again.
        let r = run_expect(
            host(&h.states[n - 1], &h.url)
                .current_dir(h.t.root())
                .arg("send")
                .arg(h.t.campaign("winter-sale"))
                .arg("--smtp")
                .arg(h.sink.url()),
            0,
        );
        assert!(r.stdout.contains("completed"), "{}", r.stdout);
        assert_eq!(h.dump.count(), 220);
    }
}

/// A host killed mid-send leaves only what it had claimed in doubt (at most one batch of
/// 16 per connection); the other finishes the rest, and nobody is mailed twice.
#[test]
fn a_host_killed_mid_send_leaves_at_most_its_claimed_batches_uncertain() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let h = Hosts::new(&server, 2, "rate_per_second = 150\nconcurrency = 2");
    let mut victim = h.spawn(0);
    let started = std::time::Instant::now();
    while h.dump.count() < 30 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing arrived"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let survivor = h.spawn(1).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&survivor.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let uncertain = v["ledger"]["sending"].as_u64().unwrap() as usize;
    assert!(
        uncertain <= 2 * 16,
        "{uncertain} uncertain: more than two connections' batches"
    );
    let per_address = h.per_address();
    assert!(
        per_address.values().all(|&n| n == 1),
        "someone was mailed twice"
    );
    // Everyone got it once, except the uncertain ones, who may or may not have.
    assert!(per_address.len() + uncertain >= 220, "{stdout}");
    assert!(per_address.len() <= 220);
    assert_eq!(
        v["ledger"]["sent"].as_u64().unwrap() as usize + uncertain,
        220,
        "{stdout}"
    );
    // A rerun resends none of the uncertain.
    let before = h.dump.count();
    let r = host(&h.states[1], &h.url)
        .current_dir(h.t.root())
        .arg("send")
        .arg(h.t.campaign("winter-sale"))
        .arg("--smtp")
        .arg(h.sink.url())
        .output()
        .unwrap();
    assert!(r.status.code().is_some());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(h.dump.count(), before, "a rerun resent someone");
}

/// The unsubscribe server of a shared database runs where nothing but its key file is:
/// `--state URL`, no state directory, no master key; the suppression reaches every host.
#[test]
fn the_unsubscribe_server_runs_on_its_key_alone_against_the_shared_database() {
    use crate::ops::{FORM, ONE_CLICK, Server, post};
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.new_database();
    let tmp = tempfile::tempdir().unwrap();
    let (a, key, empty) = (
        tmp.path().join("a"),
        tmp.path().join("unsubscribe.key"),
        tmp.path().join("nothing-here"),
    );
    run_expect(
        host(&a, &url)
            .arg("init")
            .arg("--unsubscribe-key")
            .arg(&key),
        0,
    );
    let keys = crate::master_keys(&a);
    let token = keys.seal_token("winter-sale", &keys.recipient_hash("ann@example.com"));
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_tact"));
    cmd.env_remove("TACT_HOME")
        .env_remove("TACT_DATABASE_URL")
        .env("HOME", &empty)
        .env("XDG_DATA_HOME", &empty)
        .env("PGPASSWORD", PASSWORD)
        .arg("--state")
        .arg(&url)
        .args(["unsubscribe-server", "--listen", "127.0.0.1:0", "--key"])
        .arg(&key);
    let endpoint = Server::spawn(cmd);
    let r = post(
        &format!("{}/unsubscribe?t={token}", endpoint.base),
        FORM,
        ONE_CLICK,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (code, log) = endpoint.interrupt();
    assert_eq!(code, Some(130), "{log}");
    assert!(!empty.exists(), "the server made a state directory");
    let r = run_expect(
        host(&a, &url).args(["suppress", "check", "ann@example.com"]),
        0,
    );
    assert!(r.stdout.contains("unsubscribe"), "{}", r.stdout);
}

/// DESIGN §6: suppression is re-read immediately before each message. A shared store claims
/// 16 recipients at a time, so an opt-out committed after the claim must still stop that
/// message: here four are claimed at once over one slow connection (the relay answers DATA
/// after a second), and the last of them opts out while the first is being sent.
#[test]
fn an_opt_out_committed_after_the_claim_still_stops_that_message() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let mut h = Hosts::new(&server, 1, "rate_per_second = 5000\nconcurrency = 1");
    h.sink = Sink::start(&h.dump, &["-w", "1"]);
    let all = customers(&h.t.path("sample-data/customers.csv"));
    let people: Vec<Customer> = expected_recipients(&all, true)
        .into_iter()
        .filter(|c| !c.get("customer_id").trim().is_empty())
        .take(4)
        .collect();
    let ids: Vec<String> = people
        .iter()
        .map(|c| format!("\"{}\"", c.get("customer_id")))
        .collect();
    h.t.edit("sample-data/campaigns/winter-sale.toml", |s| {
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
    let target =
        tact::state::postgres::PgTarget::parse(&h.url, false, Some(PASSWORD.into())).unwrap();
    let ledger = tact::state::ledger::Ledger::connect(&target).unwrap();
    let child = h.spawn(0);
    let started = std::time::Instant::now();
    while ledger.counts("winter-sale").unwrap().sending < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the four were never claimed together"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // One connection sends its claim in hash order: the largest hash goes last, seconds
    // after this opt-out lands.
    let keys = crate::master_keys(&h.states[0]);
    let last = people
        .iter()
        .max_by_key(|c| keys.recipient_hash(&c.email()))
        .unwrap()
        .email();
    run_expect(
        host(&h.states[0], &h.url)
            .current_dir(h.t.root())
            .args(["suppress", "add", &last]),
        0,
    );
    assert!(
        h.dump.count() <= 1,
        "the opt-out came too late to prove anything"
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["summary"]["suppressed_during_send"], 1, "{stdout}");
    assert_eq!(v["summary"]["sent"], 3, "{stdout}");
    let got = h.per_address();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert!(!got.contains_key(&last), "mailed after opting out");
    assert_eq!(ledger.counts("winter-sale").unwrap().sending, 0);
}

/// `tact bounces import` on two hosts sharing one database: the suppression each import
/// makes is everyone's, a mailbox read by both counts each report once, and soft bounces
/// imported on different hosts add up to one window.
#[test]
fn hosts_importing_bounces_share_the_list_and_count_each_report_once() {
    use crate::send::bounce_loop::dsn;
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.new_database();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_expect(host(&a, &url).arg("init"), 0);
    let copy = tmp.path().join("master.key");
    std::fs::copy(a.join("master.key"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    run_expect(host(&b, &url).args(["init", "--import-key"]).arg(&copy), 0);
    // A report without a token counts only for someone this state has mailed (a forged
    // one must not suppress a stranger), so both were sent winter-sale first.
    {
        use tact::state::ledger::{Reply, Status};
        let target =
            tact::state::postgres::PgTarget::parse(&url, false, Some(PASSWORD.into())).unwrap();
        let mut ledger = tact::state::ledger::Ledger::connect(&target).unwrap();
        let keys = crate::master_keys(&a);
        let at = chrono::Utc::now();
        for who in ["gone@example.org", "full@example.org"] {
            let h = keys.recipient_hash(who);
            ledger.enqueue("winter-sale", &[(h, true)], at).unwrap();
            ledger.claim("winter-sale", &h, at).unwrap();
            ledger
                .finish("winter-sale", &h, Status::Sent, &Reply::default(), None, at)
                .unwrap();
        }
    }

    let mailbox = tmp.path().join("reports");
    std::fs::create_dir(&mailbox).unwrap();
    let write = |name: &str, text: String| std::fs::write(mailbox.join(name), text).unwrap();
    write(
        "hard.eml",
        dsn(
            "h1",
            "gone@example.org",
            "5.1.1",
            "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown",
        ),
    );
    write(
        "soft1.eml",
        dsn(
            "s1",
            "full@example.org",
            "5.2.2",
            "552 5.2.2 <full@example.org>: user is over quota",
        ),
    );
    let import = |h: &Path| -> serde_json::Value {
        let r = run_expect(
            host(h, &url)
                .args(["bounces", "import", "--json"])
                .arg(&mailbox),
            0,
        );
        serde_json::from_str(&r.stdout).unwrap()
    };
    let check = |h: &Path, who: &str| run(host(h, &url).args(["suppress", "check", who])).code;

    let v = import(&a);
    assert_eq!(
        (
            v["hard"].as_u64(),
            v["soft"].as_u64(),
            v["suppressed"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(
        check(&b, "gone@example.org"),
        0,
        "host b sees host a's suppression"
    );
    assert_eq!(check(&b, "full@example.org"), 6);
    // Host b reads the same mailbox: every report is known.
    let v = import(&b);
    assert_eq!(
        (
            v["duplicates"].as_u64(),
            v["hard"].as_u64(),
            v["soft"].as_u64()
        ),
        (Some(2), Some(0), Some(0)),
        "{v}"
    );
    // Two more soft bounces, one imported on each host: three in the window.
    write(
        "soft2.eml",
        dsn(
            "s2",
            "full@example.org",
            "5.2.2",
            "552 5.2.2 <full@example.org>: user is over quota",
        ),
    );
    assert_eq!(import(&b)["soft"].as_u64(), Some(1));
    assert_eq!(check(&a, "full@example.org"), 6);
    write(
        "soft3.eml",
        dsn(
            "s3",
            "full@example.org",
            "5.2.2",
            "552 5.2.2 <full@example.org>: user is over quota",
        ),
    );
    let v = import(&a);
    assert_eq!(
        (v["soft"].as_u64(), v["suppressed"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let r = run_expect(
        host(&b, &url).args(["suppress", "check", "full@example.org"]),
        0,
    );
    assert!(r.stdout.contains("suppressed: bounce"), "{}", r.stdout);
    // Nothing went into either host's local ledger.
    run_expect(
        tact_bare()
            .arg("--state")
            .arg(&a)
            .args(["suppress", "check", "gone@example.org"]),
        6,
    );
}
