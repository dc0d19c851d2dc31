//! `tact bounces import imaps://…` and `run-due` with `[bounces] imap`, as a user runs them,
//! against the private Dovecot: a DSN in the mailbox suppresses its recipient, the message
//! is flagged and kept, the second import finds nothing new, and `run-due` imports before
//! it sends, so the bounced recipient is not mailed. Refusals (a password in the URL, plain
//! text off loopback, no password, an untrusted certificate) read nothing and change
//! nothing.

use std::path::Path;

use crate::schedule::{rcpts, scheduled};
use crate::send::sink::{DumpDir, Sink};
use crate::util::*;

use super::dovecot::{Dovecot, PASSWORD};
use super::message;

/// A recipient of winter-sale (line 2 of the sample audience).
const BOUNCED: &str = "ngozi.okafor@example.com";

/// A Postfix-style RFC 3464 report: `rcpt` does not exist (5.1.1).
pub fn dsn(n: usize, rcpt: &str) -> Vec<u8> {
    format!(
        "Return-Path: <>\r\n\
         From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n\
         To: bounces@northwind.example\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <dsn-{n}@mx.example.net>\r\n\
         Date: Mon, 23 Nov 2026 11:00:00 +0000\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B{n}\"\r\n\
         \r\n\
         --B{n}\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\
         \r\n\
         <{rcpt}>: host mx.example.com said: 550 5.1.1 <{rcpt}>: Recipient address\r\n\
         \x20   rejected: User unknown in virtual mailbox table\r\n\
         \r\n\
         --B{n}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.example.net\r\n\
         \r\n\
         Final-Recipient: rfc822; {rcpt}\r\n\
         Original-Recipient: rfc822;{rcpt}\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Remote-MTA: dns; mx.example.com\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User\r\n\
         \x20   unknown in virtual mailbox table\r\n\
         \r\n\
         --B{n}--\r\n"
    )
    .into_bytes()
}

fn suppressed(t: &Tree, email: &str) -> bool {
    match run(t.tact().args(["suppress", "check", email])).code {
        0 => true,
        6 => false,
        c => panic!("suppress check exited {c}"),
    }
}

/// Messages in INBOX carrying both the keyword and \\Seen.
pub(super) fn flagged(d: &Dovecot) -> usize {
    d.flags("INBOX")
        .iter()
        .filter(|(_, f)| f.iter().any(|x| x == tact::imap::PROCESSED) && f.iter().any(|x| x == "S"))
        .count()
}

#[test]
fn bounces_import_reads_an_imaps_mailbox_suppresses_and_flags_once() {
    let Some(d) = Dovecot::start_tls() else {
        return;
    };
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    record_sent(&t.state(), "autumn", BOUNCED, "2026-11-01T09:00:00Z");
    d.deliver("INBOX", &dsn(1, BOUNCED));
    d.deliver("INBOX", &message(2, "Thanks for the newsletter!"));
    let ca = d.certs.as_ref().expect("TLS").ca.clone();
    let url = d.url("INBOX");
    let import = |env: &[(&str, &str)], url: &str| {
        let mut c = t.tact();
        c.env_remove("TACT_IMAP_PASSWORD")
            .env_remove("TACT_IMAP_CA_FILE");
        for (k, v) in env {
            c.env(k, v);
        }
        run(c.args(["bounces", "import", url]))
    };
    let ca_env = ca.to_str().expect("path");
    let good = [
        ("TACT_IMAP_PASSWORD", PASSWORD),
        ("TACT_IMAP_CA_FILE", ca_env),
    ];

    // Refusals first: nothing is read, flagged or suppressed.
    let with_password = url.replacen("%40northwind.example@", "%40northwind.example:hunter2@", 1);
    let r = import(&good, &with_password);
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(r.stderr.contains("TACT_IMAP_PASSWORD"), "{}", r.stderr);
    assert!(!r.all_output().contains("hunter2"), "{}", r.all_output());
    let r = import(&good, "imap://bounces@imap.northwind.example/INBOX");
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(r.stderr.contains("loopback"), "{}", r.stderr);
    let r = import(&[("TACT_IMAP_CA_FILE", ca_env)], &url);
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(r.stderr.contains("TACT_IMAP_PASSWORD"), "{}", r.stderr);
    // The Mozilla roots do not know the test CA.
    let r = import(&[("TACT_IMAP_PASSWORD", PASSWORD)], &url);
    assert_eq!(r.code, 1, "{}", r.all_output());
    assert!(
        r.stderr.to_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );
    assert_eq!(flagged(&d), 0);
    assert!(!suppressed(&t, BOUNCED));

    let r = import(&good, &url);
    assert_eq!(r.code, 0, "{}\n{}", r.all_output(), d.log());
    assert!(
        r.stdout
            .contains("hard 1, soft 0, complaints 0, sender 0, unknown 1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!(
            "mailbox imaps://127.0.0.1:{}/INBOX: 2 message(s) imported and flagged $TactProcessed (never deleted)",
            d.port
        )),
        "{}",
        r.stdout
    );
    for secret in [
        BOUNCED,
        "ngozi",
        "bounces%40",
        "bounces@northwind",
        PASSWORD,
    ] {
        assert!(
            !r.all_output().contains(secret),
            "{secret}: {}",
            r.all_output()
        );
    }
    assert!(suppressed(&t, BOUNCED));
    assert_eq!(d.flags("INBOX").len(), 2, "a message was deleted");
    assert_eq!(flagged(&d), 2);

    let again = import(&good, &url);
    assert_eq!(again.code, 0, "{}", again.all_output());
    assert!(
        again
            .stdout
            .contains("hard 0, soft 0, complaints 0, sender 0, unknown 0"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("0 message(s) imported"),
        "{}",
        again.stdout
    );
    assert_eq!(d.flags("INBOX").len(), 2);
}

/// `[bounces] imap` on a scheduled campaign: the report that arrived since the last send
/// suppresses its recipient before `run-due` sends.
#[test]
fn run_due_imports_the_mailbox_before_it_sends() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    scheduled(&t, "sched", "due", Some("2026-11-23T09:00:00+00:00"), "");
    t.edit("sched/due.toml", |s| {
        format!("{s}\n[bounces]\nimap = \"{}\"\n", d.url("INBOX"))
    });
    record_sent(&t.state(), "autumn", BOUNCED, "2026-11-01T09:00:00Z");
    d.deliver("INBOX", &dsn(1, BOUNCED));
    let tick = |env: Option<&str>| {
        let mut c = t.tact();
        c.env_remove("TACT_IMAP_PASSWORD");
        if let Some(p) = env {
            c.env("TACT_IMAP_PASSWORD", p);
        }
        run(c
            .arg("run-due")
            .arg(t.path("sched"))
            .arg("--smtp")
            .arg(sink.url()))
    };

    // Without the mailbox's password nothing is imported, so nothing is sent.
    let r = tick(None);
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(
        r.stdout
            .contains("due: FAILED: bounces not imported, so not sent"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("TACT_IMAP_PASSWORD"), "{}", r.stdout);
    assert_eq!(dump.count(), 0);
    assert_eq!(flagged(&d), 0);

    let r = tick(Some(PASSWORD));
    assert_eq!(r.code, 0, "{}\n{}", r.all_output(), d.log());
    assert!(
        r.stdout.contains("due: bounces imported first: hard 1,"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("due: sent (exit 0)"), "{}", r.stdout);
    let got = rcpts(&dump);
    assert_eq!(got.len(), 219, "everyone but the bounced recipient");
    assert!(
        !got.iter().any(|a| a == BOUNCED),
        "the bounced recipient was mailed"
    );
    assert!(!r.all_output().contains(BOUNCED), "{}", r.all_output());
    assert_eq!(flagged(&d), 1);
    drop(sink);
    assert!(Path::new(&t.path("sched/due.toml")).exists());
}
