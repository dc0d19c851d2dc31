//! `tact bounces parse` (issue 13, items 2 and 3), run as a user would: the real binary on
//! the fixtures in tests/bounces/fixtures (written after real Postfix, Exim, Sendmail,
//! qmail, Exchange/Office 365, Gmail, Yahoo, Outlook.com and Amazon SES reports, with
//! example.com/example.org addresses), as .eml files, as an mbox and as a Maildir; and on
//! hostile input, which must give one `unknown` entry per report and never a crash.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

fn fixtures() -> PathBuf {
    repo().join("tests/bounces/fixtures")
}

/// `tact bounces parse ARGS...` (no state is needed, nor created).
fn parse(args: &[&dyn AsRef<std::ffi::OsStr>], code: i32) -> Run {
    let state = tempfile::tempdir().expect("tempdir");
    let mut cmd = tact(&state.path().join("never-made"));
    cmd.args(["bounces", "parse"]);
    for a in args {
        cmd.arg(a);
    }
    let r = run_expect(&mut cmd, code);
    assert!(
        !state.path().join("never-made").exists(),
        "bounces parse made a state directory"
    );
    r
}

fn json_rows(r: &Run) -> Vec<Value> {
    let v: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("--json is not JSON ({e}):\n{}", r.stdout));
    v.as_array().expect("--json prints one array").clone()
}

/// (kind, status, code, reason, recipient) of a row, every field checked.
type Row = (String, Option<String>, Option<u64>, String, Option<String>);

fn row(v: &Value) -> Row {
    let keys: Vec<&str> = v
        .as_object()
        .expect("row is an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["code", "file", "kind", "reason", "recipient", "status"],
        "{v}"
    );
    (
        v["kind"].as_str().expect("kind").to_string(),
        v["status"].as_str().map(str::to_string),
        v["code"].as_u64(),
        v["reason"].as_str().expect("reason").to_string(),
        v["recipient"].as_str().map(str::to_string),
    )
}

fn file_name(v: &Value) -> String {
    let f = v["file"].as_str().expect("file");
    Path::new(f)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn ex(
    kind: &str,
    status: Option<&str>,
    code: Option<u64>,
    reason: &str,
    recipient: Option<&str>,
) -> Row {
    (
        kind.into(),
        status.map(Into::into),
        code,
        reason.into(),
        recipient.map(Into::into),
    )
}

/// What every fixture must give, recipient by recipient, in report order.
fn expected() -> BTreeMap<&'static str, Vec<Row>> {
    BTreeMap::from([
        // RFC 3464 DSNs (Postfix's own, and the providers' through it)
        (
            "postfix-dsn-user-unknown.eml",
            vec![ex(
                "hard",
                Some("5.1.1"),
                Some(550),
                "no-such-user",
                Some("jane.doe@example.com"),
            )],
        ),
        (
            "postfix-dsn-mailbox-full.eml",
            vec![ex(
                "soft",
                Some("5.2.2"),
                Some(552),
                "mailbox-full",
                Some("sam.full@example.com"),
            )],
        ),
        // The issue's own case: a 5.7.1 block is the sender's, never a hard bounce.
        (
            "postfix-dsn-blocked-571.eml",
            vec![ex(
                "sender",
                Some("5.7.1"),
                Some(554),
                "blocked",
                Some("lee.blocked@example.com"),
            )],
        ),
        (
            "postfix-dsn-no-such-domain.eml",
            vec![ex(
                "hard",
                Some("5.4.4"),
                None,
                "no-such-domain",
                Some("ann@nowhere.example.com"),
            )],
        ),
        (
            "postfix-dsn-timeout.eml",
            vec![ex(
                "soft",
                Some("4.4.1"),
                None,
                "timeout",
                Some("tim@slow.example.com"),
            )],
        ),
        // A delay warning is no outcome yet: never counted as a bounce.
        (
            "postfix-dsn-delayed.eml",
            vec![ex(
                "unknown",
                Some("4.2.2"),
                Some(452),
                "delayed",
                Some("dee@example.com"),
            )],
        ),
        (
            "postfix-dsn-delivered.eml",
            vec![ex(
                "delivered",
                Some("2.0.0"),
                Some(250),
                "delivered",
                Some("del@example.com"),
            )],
        ),
        (
            "dsn-three-recipients.eml",
            vec![
                ex(
                    "hard",
                    Some("5.1.1"),
                    Some(550),
                    "no-such-user",
                    Some("gone@example.com"),
                ),
                ex(
                    "soft",
                    Some("4.7.0"),
                    Some(421),
                    "too-many-connections",
                    Some("busy@example.com"),
                ),
                ex(
                    "sender",
                    Some("5.7.23"),
                    Some(550),
                    "spf",
                    Some("spf@example.com"),
                ),
            ],
        ),
        (
            "office365-dsn-dbeb.eml",
            vec![ex(
                "hard",
                Some("5.4.1"),
                Some(550),
                "no-such-user",
                Some("nobody@example.com"),
            )],
        ),
        (
            "office365-dsn-blocklist.eml",
            vec![ex(
                "sender",
                Some("5.7.1"),
                Some(550),
                "blocked",
                Some("pat@example.com"),
            )],
        ),
        (
            "gmail-dsn-over-quota.eml",
            vec![ex(
                "soft",
                Some("4.2.2"),
                Some(452),
                "mailbox-full",
                Some("quota@example.com"),
            )],
        ),
        (
            "gmail-dsn-unsolicited.eml",
            vec![ex(
                "sender",
                Some("5.7.1"),
                Some(550),
                "spam",
                Some("ok.person@example.com"),
            )],
        ),
        (
            "yahoo-dsn-tss04.eml",
            vec![ex(
                "sender",
                Some("4.7.0"),
                Some(421),
                "reputation",
                Some("vol@example.com"),
            )],
        ),
        (
            "outlook-com-dsn-unavailable.eml",
            vec![ex(
                "hard",
                Some("5.5.0"),
                Some(550),
                "no-such-user",
                Some("old.friend@example.com"),
            )],
        ),
        // SES's DSN says 5.0.0; its diagnostic says 5.1.1.
        (
            "ses-dsn-user-unknown.eml",
            vec![ex(
                "hard",
                Some("5.1.1"),
                Some(550),
                "no-such-user",
                Some("sesuser@example.com"),
            )],
        ),
        // Bounce texts without a status part
        (
            "exim-text-user-unknown.eml",
            vec![ex(
                "hard",
                Some("5.1.1"),
                Some(550),
                "no-such-user",
                Some("kim.gone@example.com"),
            )],
        ),
        (
            "exim-text-retry-timeout.eml",
            vec![ex(
                "soft",
                None,
                None,
                "timeout",
                Some("rita@slow.example.com"),
            )],
        ),
        (
            "sendmail-text-user-unknown.eml",
            vec![ex(
                "hard",
                Some("5.1.1"),
                Some(550),
                "no-such-user",
                Some("sid.unknown@example.com"),
            )],
        ),
        (
            "qmail-text-two-recipients.eml",
            vec![
                ex(
                    "hard",
                    Some("5.1.1"),
                    Some(550),
                    "no-such-user",
                    Some("quinn@example.com"),
                ),
                ex(
                    "soft",
                    Some("5.2.2"),
                    Some(552),
                    "mailbox-full",
                    Some("quota.q@example.com"),
                ),
            ],
        ),
        (
            "exchange-text-recipient-not-found.eml",
            vec![ex(
                "hard",
                Some("5.1.10"),
                Some(550),
                "no-such-user",
                Some("erin.left@example.com"),
            )],
        ),
        (
            "gmail-text-no-such-user.eml",
            vec![ex(
                "hard",
                Some("5.1.1"),
                Some(550),
                "no-such-user",
                Some("gina.nobody@example.com"),
            )],
        ),
        (
            "yahoo-text-no-account.eml",
            vec![ex(
                "hard",
                None,
                Some(554),
                "no-such-user",
                Some("yuki@example.com"),
            )],
        ),
        // Amazon SES notifications as JSON in the mail
        (
            "ses-json-bounce.eml",
            vec![
                ex(
                    "hard",
                    Some("5.1.1"),
                    Some(550),
                    "no-such-user",
                    Some("sj.gone@example.com"),
                ),
                ex(
                    "soft",
                    Some("5.2.2"),
                    Some(552),
                    "mailbox-full",
                    Some("sj.full@example.com"),
                ),
            ],
        ),
        (
            "ses-json-complaint.eml",
            vec![ex(
                "complaint",
                None,
                None,
                "abuse",
                Some("cc.complains@example.com"),
            )],
        ),
        // RFC 5965 ARF
        (
            "arf-abuse.eml",
            vec![ex(
                "complaint",
                None,
                None,
                "abuse",
                Some("carla.complains@example.com"),
            )],
        ),
        (
            "arf-opt-out-redacted.eml",
            vec![ex(
                "complaint",
                None,
                None,
                "opt-out",
                Some("redacted@example.net"),
            )],
        ),
        (
            "arf-auth-failure.eml",
            vec![ex(
                "sender",
                None,
                None,
                "dmarc",
                Some("amy.auth@example.com"),
            )],
        ),
        // RFC 3834 auto-replies: never a bounce
        (
            "auto-reply-out-of-office.eml",
            vec![ex(
                "auto-reply",
                None,
                None,
                "vacation",
                Some("olga.away@example.com"),
            )],
        ),
        (
            "auto-reply-x-autoreply.eml",
            vec![ex(
                "auto-reply",
                None,
                None,
                "vacation",
                Some("vic@example.com"),
            )],
        ),
        (
            "auto-reply-precedence.eml",
            vec![ex(
                "auto-reply",
                None,
                None,
                "auto-reply",
                Some("help@example.com"),
            )],
        ),
        // Near misses and junk: one unknown entry each
        (
            "human-reply-vacation-plans.eml",
            vec![ex("unknown", None, None, "not-a-report", None)],
        ),
        (
            "empty.eml",
            vec![ex("unknown", None, None, "unreadable", None)],
        ),
        (
            "binary-garbage.eml",
            vec![ex("unknown", None, None, "not-a-report", None)],
        ),
    ])
}

fn by_file(rows: &[Value]) -> BTreeMap<String, Vec<Row>> {
    let mut got: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for v in rows {
        got.entry(file_name(v)).or_default().push(row(v));
    }
    got
}

#[test]
fn every_fixture_gives_its_kind_status_code_reason_and_recipient() {
    let r = parse(&[&"--json", &"--reveal", &fixtures()], 0);
    let got = by_file(&json_rows(&r));
    let want = expected();
    // No fixture goes untested, and none is missing from the output.
    let on_disk: Vec<String> = fs::read_dir(fixtures())
        .expect("fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for f in &on_disk {
        assert!(
            want.contains_key(f.as_str()),
            "fixture {f} has no expectation"
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{:?}",
        got.keys().collect::<Vec<_>>()
    );
    for (file, rows) in &want {
        assert_eq!(got.get(*file), Some(rows), "{file}");
    }
}

#[test]
fn recipients_are_masked_unless_revealed() {
    let r = parse(&[&"--json", &fixtures()], 0);
    let rows = json_rows(&r);
    for rows in expected().values() {
        for (_, _, _, _, recipient) in rows {
            if let Some(addr) = recipient {
                assert!(!r.stdout.contains(addr.as_str()), "{addr} printed unmasked");
            }
        }
    }
    let masked: Vec<&str> = rows
        .iter()
        .filter_map(|v| v["recipient"].as_str())
        .collect();
    assert!(masked.contains(&"j***@e***.com"), "{masked:?}");
    for m in masked {
        let (local, domain) = m.split_once('@').expect("masked keeps the @");
        assert_eq!(local.chars().count(), 4, "{m}");
        assert!(local.ends_with("***") && domain.contains("***."), "{m}");
    }
    // And the table, the same.
    let t = parse(&[&fixtures().join("postfix-dsn-user-unknown.eml")], 0);
    assert!(!t.stdout.contains("jane.doe"), "{}", t.stdout);
    assert!(t.stdout.contains("j***@e***.com"), "{}", t.stdout);
}

#[test]
fn the_table_has_one_row_per_recipient_and_the_counts() {
    let r = parse(
        &[&"--reveal", &fixtures().join("dsn-three-recipients.eml")],
        0,
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    assert!(lines[0].starts_with("KIND"), "{}", lines[0]);
    for (line, want) in lines[1..4].iter().zip([
        ["hard", "5.1.1", "550", "no-such-user", "gone@example.com"],
        [
            "soft",
            "4.7.0",
            "421",
            "too-many-connections",
            "busy@example.com",
        ],
        ["sender", "5.7.23", "550", "spf", "spf@example.com"],
    ]) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[..5], want, "{line}");
        assert!(cols[5].ends_with("dsn-three-recipients.eml"), "{line}");
    }
    assert_eq!(
        lines[4],
        "1 report(s): hard 1, soft 1, sender 1, complaint 0, auto-reply 0, delivered 0, unknown 0"
    );
}

#[test]
fn a_path_that_does_not_exist_exits_2_before_printing_anything() {
    let missing = fixtures().join("no-such-report.eml");
    let r = parse(&[&"--json", &fixtures().join("arf-abuse.eml"), &missing], 2);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("no-such-report.eml"), "{}", r.stderr);
    // An empty directory is no error: an empty array.
    let empty = tempfile::tempdir().expect("tempdir");
    let r = parse(&[&"--json", &empty.path()], 0);
    assert_eq!(json_rows(&r).len(), 0);
}

/// Every fixture as a line-numbered mbox message (with a body line that needs `>From `
/// quoting) and as a Maildir entry, in cur/ and new/.
fn mailboxes(dir: &Path) -> (PathBuf, PathBuf, Vec<Row>) {
    let mut names: Vec<&str> = expected().keys().copied().collect();
    names.retain(|n| *n != "empty.eml" && *n != "binary-garbage.eml");
    let mut mbox = Vec::new();
    let maildir = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let mut want = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let raw = fs::read(fixtures().join(n)).expect("fixture");
        mbox.extend_from_slice(b"From MAILER-DAEMON Mon Nov 30 04:10:00 2026\n");
        let text = String::from_utf8(raw.clone()).expect("fixtures are text");
        for line in text.lines() {
            // mboxrd: a body line starting "From " is written ">From ".
            if line.trim_start_matches('>').starts_with("From ") {
                mbox.push(b'>');
            }
            mbox.extend_from_slice(line.as_bytes());
            mbox.push(b'\n');
        }
        mbox.extend_from_slice(b"\nFrom this line on, nothing changes.\n\n");
        let sub = if i % 2 == 0 { "cur" } else { "new" };
        let flags = if sub == "cur" { ":2,S" } else { "" };
        fs::write(
            maildir
                .join(sub)
                .join(format!("17960{i:05}.M1P1.host{flags}")),
            &raw,
        )
        .expect("maildir entry");
        want.extend(expected()[n].iter().cloned());
    }
    // Not a message: Maildir's tmp/ and hidden files are never read.
    fs::write(maildir.join("tmp/1796.partial"), b"From: x\n\nhalf").expect("tmp");
    fs::write(maildir.join("cur/.hidden"), b"junk").expect("hidden");
    let mbox_path = dir.join("bounces.mbox");
    fs::write(&mbox_path, mbox).expect("mbox");
    want.sort();
    (mbox_path, maildir, want)
}

#[test]
fn an_mbox_and_a_maildir_give_what_the_files_give() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mbox, maildir, want) = mailboxes(dir.path());
    for path in [&mbox, &maildir] {
        let r = parse(&[&"--json", &"--reveal", path], 0);
        let rows = json_rows(&r);
        let mut got: Vec<Row> = rows.iter().map(row).collect();
        got.sort();
        assert_eq!(got, want, "{}", path.display());
        if path == &mbox {
            // mbox reports are named by the line of their `From ` separator.
            let first = rows[0]["file"].as_str().expect("file");
            assert!(first.ends_with("bounces.mbox:1"), "{first}");
            assert!(
                rows.iter().all(|v| v["file"]
                    .as_str()
                    .is_some_and(|f| f.contains("bounces.mbox:"))),
                "{rows:?}"
            );
        }
    }
}

#[test]
fn hostile_reports_are_one_unknown_entry_each_and_never_abort_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Larger than a report may be.
    let mut big = b"From: MAILER-DAEMON@example.org\nSubject: Undelivered Mail\n\n".to_vec();
    big.resize(10 * 1024 * 1024 + 1, b'a');
    fs::write(d.join("a-too-large.eml"), &big).expect("write");
    // MIME nested 20,000 deep.
    let mut deep = String::from("From: MAILER-DAEMON@example.org\nSubject: x\n");
    for i in 0..20_000 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\n\nuser unknown\n");
    fs::write(d.join("b-deep.eml"), deep).expect("write");
    // 300,000 message/rfc822 parts nested in one another (no delimiter needed).
    let nested = String::from("From: MAILER-DAEMON@example.org\n")
        + &"Content-Type: message/rfc822\n\n".repeat(300_000)
        + "Subject: x\n\nuser unknown\n";
    fs::write(d.join("b-nested-messages.eml"), nested).expect("write");
    // An endless header line, and a million header fields.
    let mut long = b"Subject: ".to_vec();
    long.resize(5 * 1024 * 1024, b'x');
    long.extend_from_slice(b"\n\nbody\n");
    fs::write(d.join("c-long-header.eml"), long).expect("write");
    let many = "X-A: b\n".repeat(1_000_000) + "\nbody\n";
    fs::write(d.join("d-many-headers.eml"), many).expect("write");
    // A DSN whose status part lists 100,000 recipients.
    let mut dsn = String::from(
        "From: MAILER-DAEMON@example.org\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"z\"\n\n--z\nContent-Type: message/delivery-status\n\n",
    );
    for i in 0..100_000 {
        dsn.push_str(&format!(
            "Final-Recipient: rfc822; u{i}@example.com\nAction: failed\nStatus: 5.1.1\n\n"
        ));
    }
    dsn.push_str("--z--\n");
    fs::write(d.join("e-many-recipients.eml"), dsn).expect("write");
    // NUL bytes and invalid UTF-8 in the headers.
    fs::write(
        d.join("f-binary-headers.eml"),
        b"From: \xff\xfe\x00MAILER-DAEMON\x00@example.org\nSubject: \xc3\x28\n\n\x00\x01",
    )
    .expect("write");

    let r = parse(&[&"--json", &d], 0);
    let got = by_file(&json_rows(&r));
    assert_eq!(got.len(), 7, "{got:?}");
    assert_eq!(
        got["a-too-large.eml"],
        [ex("unknown", None, None, "too-large", None)]
    );
    for name in [
        "b-deep.eml",
        "c-long-header.eml",
        "d-many-headers.eml",
        "f-binary-headers.eml",
    ] {
        assert_eq!(got[name].len(), 1, "{name}: {:?}", got[name]);
    }
    assert_eq!(got["b-deep.eml"][0].3, "too-complex");
    assert_eq!(got["b-nested-messages.eml"][0].3, "too-complex");
    // Bounded: a report names at most 1,000 recipients.
    assert_eq!(got["e-many-recipients.eml"].len(), 1000);

    // In an mbox, the huge message is skipped as it is read and its neighbours survive.
    let mut mbox = b"From a Mon Nov 30 04:10:00 2026\n".to_vec();
    mbox.extend_from_slice(&fs::read(fixtures().join("arf-abuse.eml")).expect("fixture"));
    mbox.extend_from_slice(b"\nFrom b Mon Nov 30 04:10:00 2026\n");
    mbox.extend_from_slice(&big);
    mbox.extend_from_slice(b"\n\nFrom c Mon Nov 30 04:10:00 2026\n");
    mbox.extend_from_slice(
        &fs::read(fixtures().join("postfix-dsn-user-unknown.eml")).expect("fixture"),
    );
    let path = d.join("mixed.mbox");
    fs::write(&path, mbox).expect("write");
    let r = parse(&[&"--json", &path], 0);
    let kinds: Vec<(String, String)> = json_rows(&r)
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or("").into(),
                v["reason"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("complaint".into(), "abuse".into()),
            ("unknown".into(), "too-large".into()),
            ("hard".into(), "no-such-user".into())
        ]
    );
}

#[test]
fn truncated_fixtures_never_crash_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    for name in expected().keys() {
        let raw = fs::read(fixtures().join(name)).expect("fixture");
        for cut in [
            1,
            7,
            raw.len() / 3,
            raw.len() / 2,
            raw.len().saturating_sub(9),
        ] {
            let cut = cut.min(raw.len());
            fs::write(dir.path().join(format!("{n:04}-{name}")), &raw[..cut]).expect("write");
            n += 1;
        }
    }
    let r = parse(&[&"--json", &dir.path()], 0);
    let got = by_file(&json_rows(&r));
    assert_eq!(
        got.len(),
        n,
        "every truncated report gives at least one entry"
    );
}
