//! The bounce loop end to end, with reports written by a real MTA: `tact send` hands a
//! campaign to a private Postfix (`Postfix::with_mailboxes`) that delivers to an unknown
//! user, to a domain that does not exist, to a full mailbox and to a server that refuses
//! the sender (554 5.7.1, a block list), and to the sink for everyone else. Postfix's
//! bounce daemon writes its delivery status notifications into a Maildir, which
//! `tact bounces import` reads. Then: who is suppressed and why, what a second import
//! changes (nothing), when the full mailbox is suppressed (at the soft limit), and who the
//! next campaign reaches.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::postfix::Postfix;
use super::*;

const UNKNOWN_USER: &str = "gone@mail.test";
const NO_DOMAIN: &str = "someone@nowhere.invalid";
const FULL: &str = "full@mail.test";
const BLOCKED: &str = "reader@blocked.test";

/// An SMTP server that refuses the sender at RCPT the way a block list does; stops when
/// dropped.
struct BlockList {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl BlockList {
    fn start() -> BlockList {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        std::thread::spawn(move || refuse(conn));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        BlockList { port, stop }
    }
}

impl Drop for BlockList {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn refuse(conn: std::net::TcpStream) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let _ = w.write_all(b"220 mx.blocked.test ESMTP\r\n");
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 0) {
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 mx.blocked.test\r\n",
            "RCPT" => b"554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/127.0.0.1\r\n",
            "DATA" => b"554 5.5.1 Error: no valid recipients\r\n",
            "QUIT" => {
                let _ = w.write_all(b"221 2.0.0 Bye\r\n");
                return;
            }
            _ => b"250 2.0.0 Ok\r\n",
        };
        if w.write_all(reply).is_err() {
            return;
        }
        line.clear();
    }
}

/// Gives these customers these addresses in the tree's CSV.
fn readdress(t: &Tree, moves: &[(&Customer, &str)]) {
    t.edit("sample-data/customers.csv", |csv| {
        csv.lines()
            .map(|l| {
                let hit = moves.iter().find(|(c, _)| {
                    l.starts_with(&format!("{},{},", c.get("customer_id"), c.get("email")))
                });
                let l = match hit {
                    Some((c, to)) => l.replacen(c.get("email"), to, 1),
                    None => l.to_string(),
                };
                l + "\n"
            })
            .collect()
    });
}

fn suppress_check(t: &Tree, who: &str) -> Run {
    run(t.tact().args(["suppress", "check", who]))
}

fn import(t: &Tree, maildir: &Path) -> Value {
    let r = run_expect(
        t.tact()
            .args(["bounces", "import", "--json"])
            .arg(maildir)
            .arg("--campaign")
            .arg(t.campaign(WINTER)),
        0,
    );
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("import --json printed no JSON ({e}): {}", r.stdout))
}

fn counts(v: &Value) -> [u64; 7] {
    [
        "hard",
        "soft",
        "sender",
        "complaints",
        "unknown",
        "duplicates",
        "suppressed",
    ]
    .map(|k| n(v, k))
}

fn bounce_events(t: &Tree) -> Vec<Value> {
    let r = run_expect(t.tact().args(["audit", "--json"]), 0);
    let all: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    all.into_iter().filter(|e| e["kind"] == "bounce").collect()
}

#[test]
fn real_postfix_bounces_suppress_the_right_people_once() {
    let blocklist = BlockList::start();
    let Some(pf) = Postfix::with_mailboxes(&[
        "nowhere.invalid error:5.4.4 Host or domain name not found. Name service error for name=nowhere.invalid type=A: Host not found".into(),
        format!("blocked.test smtp:[127.0.0.1]:{}", blocklist.port),
    ]) else {
        return;
    };
    let t = tree();
    let people = pick(&t, 3, 3);
    readdress(
        &t,
        &[
            (&people[0], UNKNOWN_USER),
            (&people[1], NO_DOMAIN),
            (&people[3], FULL),
            (&people[4], BLOCKED),
        ],
    );
    let people = {
        let all = customers(&t.path("sample-data/customers.csv"));
        let ids: Vec<&str> = people.iter().map(|c| c.get("customer_id")).collect();
        let mut p: Vec<Customer> = all
            .into_iter()
            .filter(|c| ids.contains(&c.get("customer_id")))
            .collect();
        p.sort_by_key(|c| ids.iter().position(|i| *i == c.get("customer_id")));
        p
    };
    let fine = [people[2].email(), people[5].email()];
    narrow(&t, WINTER, &people);
    t.edit(&campaign_rel(WINTER), |s| {
        format!("{s}\n[bounces]\naddress = \"bounces@northwind.example\"\n")
    });

    let url = pf.target().to_string();
    let r = run_expect(send_cmd(&t, WINTER, &url).arg("--json"), 0);
    assert_eq!(n(&parse_json(&r), "summary.sent"), 6, "{}", r.stdout);
    pf.wait_for_bounces(4);
    let relayed = delivered_once(&pf.dump.deliveries());
    assert_eq!(relayed, fine.iter().cloned().collect(), "the sink's share");

    // Two hard bounces suppress at once; the full mailbox is one soft bounce of three;
    // the block list refused us, not the reader.
    let maildir = pf.bounce_maildir();
    let v = import(&t, &maildir);
    assert_eq!(counts(&v), [2, 1, 1, 0, 0, 0, 2], "{v:#}");
    for who in [UNKNOWN_USER, NO_DOMAIN] {
        let r = suppress_check(&t, who);
        assert_eq!(r.code, 0, "{who}: {}", r.stdout);
        assert!(
            r.stdout.contains("suppressed: bounce"),
            "{who}: {}",
            r.stdout
        );
    }
    for who in [FULL, BLOCKED, &fine[0], &fine[1]] {
        let r = suppress_check(&t, who);
        assert_eq!(r.code, 6, "{who} should stay mailable: {}", r.stdout);
    }
    let events = bounce_events(&t);
    assert_eq!(events.len(), 4, "one audit event per decision");
    let audit = run_expect(t.tact().args(["audit", "--json"]), 0).stdout;
    for p in &people {
        assert!(
            !audit.contains(&p.email()),
            "{} in the audit log",
            p.email()
        );
        assert!(
            !audit.contains(p.get("first_name")),
            "a name in the audit log"
        );
    }
    for e in &events {
        assert!(!e["body"].to_string().contains('@'), "{e}");
        let kind = e["body"]["kind"].as_str().unwrap();
        let recipient = e["body"]["recipient"].as_str().unwrap_or("");
        assert_eq!(
            recipient.len(),
            12,
            "a hash prefix names the recipient: {e}"
        );
        assert!(["hard", "soft", "sender"].contains(&kind), "{e}");
        // The campaign's messages went out with VERP envelope senders.
        assert_eq!(e["body"]["by"], "token", "{e}");
        assert_eq!(e["campaign"], WINTER, "{e}");
    }
    let text = run_expect(t.tact().arg("audit"), 0).stdout;
    assert!(
        text.contains("hard 5.1.1 no-such-user: recipient ")
            && text.contains("suppressed (by token)"),
        "{text}"
    );

    // The same Maildir again: every report is known, nothing changes.
    let v = import(&t, &maildir);
    assert_eq!(counts(&v), [0, 0, 0, 0, 0, 4, 0], "{v:#}");
    assert_eq!(bounce_events(&t), events, "a second import decided again");
    assert_eq!(suppress_check(&t, FULL).code, 6);

    // Two more messages to the full mailbox: the second makes three soft bounces within
    // the window, and only then is the address suppressed.
    let body = b"From: news@northwind.example\r\nSubject: x\r\n\r\nx\r\n";
    let from: lettre::Address = "bounces@northwind.example".parse().unwrap();
    for (sent, suppressed) in [(5, 6), (6, 0)] {
        let to: lettre::Address = FULL.parse().unwrap();
        tact::send::sendmail::send_one(&pf.target(), &from, &to, body).unwrap();
        pf.wait_for_bounces(sent);
        let v = import(&t, &maildir);
        assert_eq!(n(&v, "soft"), 1, "{v:#}");
        assert_eq!(n(&v, "duplicates"), sent as u64 - 1, "{v:#}");
        let r = suppress_check(&t, FULL);
        assert_eq!(r.code, suppressed, "after {sent} reports: {}", r.stdout);
    }
    assert!(
        suppress_check(&t, FULL)
            .stdout
            .contains("suppressed: bounce")
    );
    assert_no_personal_data_in_state(&t);

    // The next campaign skips the bounced people and reaches the rest, the blocked
    // reader included.
    let again = "winter-again";
    clone_campaign(&t, WINTER, again);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let r = run_expect(send_cmd(&t, again, &sink.url()).arg("--json"), 0);
    let v = parse_json(&r);
    assert_eq!(n(&v, "summary.sent"), 3, "{}", r.stdout);
    let got = delivered_once(&dump.deliveries());
    let want: BTreeSet<String> = [BLOCKED.to_string(), fine[0].clone(), fine[1].clone()].into();
    assert_eq!(got, want);
}

/// A delivery status notification as Postfix writes one (the layout of the reports the
/// test above gets from a real Postfix), for tests that need a report without an MTA.
pub fn dsn(id: &str, recipient: &str, status: &str, diagnostic: &str) -> String {
    format!(
        "Return-Path: <>\r\n\
         Delivered-To: bounces@northwind.example\r\n\
         Date: Mon, 23 Nov 2026 12:00:00 +0000 (UTC)\r\n\
         From: MAILER-DAEMON@mx.northwind.example (Mail Delivery System)\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         To: bounces@northwind.example\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{id}.b\"\r\n\
         Message-Id: <{id}@mx.northwind.example>\r\n\
         \r\n\
         --{id}.b\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is the mail system at host mx.northwind.example.\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\
         \r\n\
         <{recipient}>: {diagnostic}\r\n\
         \r\n\
         --{id}.b\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.northwind.example\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Original-Recipient: rfc822;{recipient}\r\n\
         Action: failed\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\
         \r\n\
         --{id}.b--\r\n"
    )
}

#[test]
fn bounces_import_needs_a_state_and_real_paths_and_takes_the_campaigns_soft_limit() {
    let t = tree();
    let ann = pick(&t, 1, 0)[0].email();
    let ann = ann.as_str();
    let dir = t.path("reports");
    fs::create_dir(&dir).unwrap();
    record_sent(&t.state(), "autumn", ann, "2026-11-01T09:00:00Z");
    let soft = dir.join("soft.eml");
    fs::write(
        &soft,
        dsn(
            "soft1",
            ann,
            "5.2.2",
            &format!("552 5.2.2 <{ann}>: user is over quota"),
        ),
    )
    .unwrap();

    // No state: nothing is created, exit 2, as for every command that needs one.
    let nowhere = t.path("no-state");
    let r = run_expect(tact(&nowhere).args(["bounces", "import"]).arg(&dir), 2);
    assert!(r.stderr.contains("tact init"), "{}", r.stderr);
    assert!(!nowhere.exists());
    // A path that does not exist: exit 2, and nothing was imported.
    let r = run_expect(
        t.tact()
            .args(["bounces", "import"])
            .arg(&soft)
            .arg(t.path("missing.eml")),
        2,
    );
    assert!(r.stderr.contains("missing.eml"), "{}", r.stderr);
    // A campaign file with a bad [bounces] table: exit 2 naming the place.
    t.edit(&campaign_rel(WINTER), |s| {
        format!("{s}\n[bounces]\nsoft_limit = 0\n")
    });
    let r = run_expect(
        t.tact()
            .args(["bounces", "import"])
            .arg(&dir)
            .arg("--campaign")
            .arg(t.campaign(WINTER)),
        2,
    );
    assert!(
        r.stderr.contains("winter-sale.toml:") && r.stderr.contains("soft_limit"),
        "{}",
        r.stderr
    );
    assert_eq!(suppress_check(&t, ann).code, 6);
    let audit = run_expect(t.tact().args(["audit", "--json"]), 0).stdout;
    assert!(
        !audit.contains("bounce"),
        "nothing may be recorded: {audit}"
    );

    // Its own soft limit: 1 suppresses at the first soft bounce (the default, 3, would not).
    t.edit(&campaign_rel(WINTER), |s| {
        s.replace("soft_limit = 0", "soft_limit = 1")
    });
    let r = run_expect(
        t.tact()
            .args(["bounces", "import"])
            .arg(&dir)
            .arg("--campaign")
            .arg(t.campaign(WINTER)),
        0,
    );
    assert!(
        r.stdout
            .contains("hard 0, soft 1, complaints 0, sender 0, unknown 0"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(ann), "{}", r.stdout);
    let r = suppress_check(&t, ann);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("suppressed: bounce"), "{}", r.stdout);
    // What is kept about them is theirs to see (Art. 15), and goes with them (Art. 17).
    let export = |code| {
        let r = run_expect(
            t.tact()
                .args(["export", ann, "--audience"])
                .arg(t.path("sample-data/customers.csv")),
            code,
        );
        serde_json::from_str::<Value>(&r.stdout).unwrap()
    };
    let v = export(0);
    assert_eq!(v["bounces"][0]["kind"], "soft", "{v:#}");
    assert_eq!(v["bounces"][0]["campaign"], "autumn", "{v:#}");
    assert_eq!(v["suppression"]["reason"], "bounce");
    run_expect(
        t.tact()
            .args(["forget", ann, "--audience"])
            .arg(t.path("sample-data/customers.csv")),
        0,
    );
    let db = rusqlite::Connection::open(t.state().join("ledger.db")).unwrap();
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM bounces", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "erasure left bounce events behind");
}

/// Every fixture of the parser's tests imported at once: the counts by kind are what
/// `bounces parse` says of the same files (import decides nothing of its own about a kind),
/// a complaint suppresses with its reason, a block list's 5.7.1 suppresses nobody, and an
/// unreadable file is one `unknown`.
#[test]
fn importing_the_parsers_fixtures_counts_what_parse_classifies() {
    let t = tree();
    let fixtures = repo().join("tests/bounces/fixtures");
    let r = run_expect(
        t.tact()
            .args(["bounces", "parse", "--json", "--reveal"])
            .arg(&fixtures),
        0,
    );
    let parsed: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for p in &parsed {
        *by_kind
            .entry(p["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let blocked: Vec<String> = parsed
        .iter()
        .filter(|p| {
            p["file"]
                .as_str()
                .unwrap()
                .ends_with("postfix-dsn-blocked-571.eml")
        })
        .map(|p| {
            assert_eq!(p["kind"], "sender", "{p}");
            p["recipient"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(blocked.len(), 1);

    let r = run_expect(
        t.tact()
            .args(["bounces", "import", "--json"])
            .arg(&fixtures),
        0,
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    for (kind, key) in [
        ("hard", "hard"),
        ("soft", "soft"),
        ("sender", "sender"),
        ("complaint", "complaints"),
        ("auto-reply", "auto_reply"),
        ("delivered", "delivered"),
        ("unknown", "unknown"),
    ] {
        assert_eq!(
            v[key].as_u64().unwrap(),
            by_kind.get(kind).copied().unwrap_or(0),
            "{kind}: import {v:#} vs parse {by_kind:?}"
        );
    }
    assert_eq!(v["duplicates"], 0);
    let r = suppress_check(&t, "carla.complains@example.com");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("suppressed: complaint"), "{}", r.stdout);
    assert_eq!(
        suppress_check(&t, &blocked[0]).code,
        6,
        "the sender was refused, not them"
    );
    let v2: Value = serde_json::from_str(
        &run_expect(
            t.tact()
                .args(["bounces", "import", "--json"])
                .arg(&fixtures),
            0,
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(v2["duplicates"], v["reports"], "{v2:#}");
    assert_eq!(v2["suppressed"], 0);
}
