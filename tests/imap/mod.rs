//! The bounce mailbox over IMAP against a real Dovecot on 127.0.0.1 (`dovecot.rs`): fetch,
//! flag after the handler, never delete; the second run fetches nothing; the bounds; TLS
//! that trusts only what it should; a password that never travels in the URL.

mod cli;
pub mod dovecot;
mod tui;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use tact::imap::{self, Fetched, ImapError, MailboxUrl, Options, PROCESSED};

use dovecot::{Dovecot, PASSWORD, USER};

/// A small message with CRLF line ends (what IMAP hands back byte for byte).
pub fn message(n: usize, body: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: {USER}\r\nSubject: report {n}\r\n\
         Message-ID: <report-{n}@mx.example.net>\r\nDate: Mon, 30 Nov 2026 04:00:00 +0000\r\n\
         \r\n{body}\r\n"
    )
    .into_bytes()
}

fn options(env: &[(&str, &str)]) -> Options {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Options::from_env(&|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        .expect("options")
}

fn plain_options() -> Options {
    options(&[(imap::PASSWORD_ENV, PASSWORD)])
}

/// Runs `process`, keeping every batch the handler saw.
fn collect(url: &str, opts: &Options) -> (Result<imap::Outcome, ImapError>, Vec<Vec<Fetched>>) {
    let url = MailboxUrl::parse(url).expect("url");
    let mut seen: Vec<Vec<Fetched>> = Vec::new();
    let r = imap::process(&url, opts, &mut |batch| {
        seen.push(
            batch
                .iter()
                .map(|f| Fetched {
                    uid: f.uid,
                    name: f.name.clone(),
                    raw: f.raw.clone(),
                    truncated: f.truncated,
                })
                .collect(),
        );
        Ok(())
    });
    (r, seen)
}

fn has(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f == flag)
}

#[test]
fn messages_are_fetched_once_flagged_and_never_deleted() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let sent: Vec<Vec<u8>> = (0..3).map(|n| message(n, "The mailbox is full.")).collect();
    for m in &sent {
        d.deliver("INBOX", m);
    }
    let (r, seen) = collect(&d.url("INBOX"), &plain_options());
    let outcome = r.unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(outcome.processed, 3);
    assert_eq!(outcome.left, 0);
    let got: Vec<&Fetched> = seen.iter().flatten().collect();
    assert_eq!(got.len(), 3);
    for (f, m) in got.iter().zip(&sent) {
        assert_eq!(&f.raw, m, "message {} came back changed", f.uid);
        assert!(!f.truncated);
        // Named without the user, which is an address.
        assert!(f.name.starts_with("imap://127.0.0.1:"), "{}", f.name);
        assert!(
            f.name.ends_with(&format!("/INBOX;UID={}", f.uid)),
            "{}",
            f.name
        );
        assert!(!f.name.contains("bounces"), "{}", f.name);
    }
    // Read back from the Maildir, not through IMAP: all three are still there, seen and
    // carrying the keyword; none is marked deleted.
    let flags = d.flags("INBOX");
    assert_eq!(flags.len(), 3, "{flags:?}");
    for (file, f) in &flags {
        assert!(has(f, "S"), "{file} not \\Seen: {f:?}");
        assert!(has(f, PROCESSED), "{file} lacks {PROCESSED}: {f:?}");
        assert!(!has(f, "T"), "{file} is marked \\Deleted: {f:?}");
    }

    let (r, seen) = collect(&d.url("INBOX"), &plain_options());
    assert_eq!(r.expect("second run").processed, 0);
    assert!(
        seen.is_empty(),
        "the second run fetched {} batches",
        seen.len()
    );

    // A report that arrives later is the only one the next run sees.
    let late = message(9, "User unknown.");
    d.deliver("INBOX", &late);
    let (r, seen) = collect(&d.url("INBOX"), &plain_options());
    assert_eq!(r.expect("third run").processed, 1);
    let got: Vec<&Fetched> = seen.iter().flatten().collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].raw, late);
    assert_eq!(d.flags("INBOX").len(), 4);
    // Dovecot's own account of each session: nothing deleted, nothing expunged.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sessions = loop {
        let log = d.log();
        let done: Vec<String> = log
            .lines()
            .filter(|l| l.contains("Logged out"))
            .map(str::to_string)
            .collect();
        if done.len() >= 3 || Instant::now() > deadline {
            break done;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sessions.len(), 3, "{}", d.log());
    for l in &sessions {
        assert!(
            l.contains(" deleted=0 ") && l.contains(" expunged=0 "),
            "{l}"
        );
    }
}

/// A scripted IMAP server for one connection: greets, then answers each command line
/// with `respond(tag, command)` (LOGOUT ends it). Returns every command it saw.
fn scripted(
    respond: impl Fn(&str, &str) -> String + Send + 'static,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        let mut w = s.try_clone().expect("clone");
        let mut r = std::io::BufReader::new(s);
        w.write_all(b"* OK ready\r\n").expect("greet");
        let mut seen = Vec::new();
        let mut line = String::new();
        while {
            line.clear();
            std::io::BufRead::read_line(&mut r, &mut line).is_ok_and(|n| n > 0)
        } {
            let (tag, cmd) = line.trim_end().split_once(' ').unwrap_or(("*", ""));
            seen.push(cmd.to_string());
            if cmd.eq_ignore_ascii_case("LOGOUT") {
                let _ = w.write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes());
                break;
            }
            if w.write_all(respond(tag, cmd).as_bytes()).is_err() {
                break;
            }
        }
        seen
    });
    (port, server)
}

fn starts(cmd: &str, verb: &str) -> bool {
    cmd.get(..verb.len())
        .is_some_and(|c| c.eq_ignore_ascii_case(verb))
}

/// A mailbox that cannot keep the keyword cannot tell processed messages apart: the run
/// stops before it searches, fetches or flags anything.
#[test]
fn a_mailbox_without_keywords_is_refused_before_anything_is_fetched() {
    let (port, server) = scripted(|tag, cmd| {
        if starts(cmd, "SELECT") {
            format!(
                "* FLAGS (\\Seen \\Deleted)\r\n* OK [PERMANENTFLAGS (\\Seen \\Deleted)] limited\r\n\
                 * 3 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n{tag} OK [READ-WRITE] selected\r\n"
            )
        } else {
            format!("{tag} OK done\r\n")
        }
    });
    let (r, seen) = collect(
        &format!("imap://someone%40example.com@127.0.0.1:{port}/INBOX"),
        &plain_options(),
    );
    let e = r
        .expect_err("a mailbox without keywords was used")
        .to_string();
    assert!(e.contains(PROCESSED) && e.contains("PERMANENTFLAGS"), "{e}");
    assert!(seen.is_empty());
    let commands = server.join().expect("server");
    assert!(commands.iter().any(|c| starts(c, "SELECT")), "{commands:?}");
    assert!(!commands.iter().any(|c| starts(c, "UID")), "{commands:?}");
}

/// UIDs the client did not ask for (a server's unsolicited FETCH, or a lie) are neither
/// imported nor flagged.
#[test]
fn only_the_messages_asked_for_are_imported_and_flagged() {
    let (port, server) = scripted(|tag, cmd| {
        if starts(cmd, "LOGIN") {
            format!("{tag} OK in\r\n")
        } else if starts(cmd, "SELECT") {
            format!(
                "* OK [PERMANENTFLAGS (\\Seen \\*)] ok\r\n* 2 EXISTS\r\n{tag} OK [READ-WRITE] ok\r\n"
            )
        } else if starts(cmd, "UID SEARCH") {
            format!("* SEARCH 5\r\n{tag} OK search\r\n")
        } else if starts(cmd, "UID FETCH") {
            format!(
                "* 1 FETCH (UID 5 RFC822.SIZE 5 BODY[]<0> {{5}}\r\nhello)\r\n\
                 * 2 FETCH (UID 9 RFC822.SIZE 5 BODY[]<0> {{5}}\r\nnasty)\r\n{tag} OK fetched\r\n"
            )
        } else if starts(cmd, "UID STORE") {
            format!("{tag} OK stored\r\n")
        } else {
            format!("{tag} BAD what\r\n")
        }
    });
    let (r, seen) = collect(
        &format!("imap://someone%40example.com@127.0.0.1:{port}/INBOX"),
        &plain_options(),
    );
    assert_eq!(r.expect("run").processed, 1);
    let got: Vec<(u32, Vec<u8>)> = seen
        .iter()
        .flatten()
        .map(|f| (f.uid, f.raw.clone()))
        .collect();
    assert_eq!(got, vec![(5, b"hello".to_vec())]);
    let stores: Vec<String> = server
        .join()
        .expect("server")
        .into_iter()
        .filter(|c| starts(c, "UID STORE"))
        .collect();
    assert_eq!(stores.len(), 1, "{stores:?}");
    assert!(
        stores[0].starts_with("UID STORE 5 +FLAGS.SILENT"),
        "{stores:?}"
    );
}

#[test]
fn a_failing_handler_leaves_its_batch_for_the_next_run() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    for n in 0..4 {
        d.deliver("Bounces", &message(n, "bounce"));
    }
    let url = MailboxUrl::parse(&d.url("Bounces")).expect("url");
    let mut opts = plain_options();
    opts.limits.batch = 2;
    let mut calls = 0;
    let r = imap::process(&url, &opts, &mut |batch| {
        calls += 1;
        assert_eq!(batch.len(), 2);
        if calls == 2 {
            return Err(tact::Error::Other("the store is down".into()));
        }
        Ok(())
    });
    let e = r.expect_err("the handler's error was swallowed");
    assert!(matches!(e, ImapError::Handler(_)), "{e}");
    assert!(e.to_string().contains("the store is down"), "{e}");
    let flagged = d
        .flags("Bounces")
        .iter()
        .filter(|(_, f)| has(f, PROCESSED))
        .count();
    assert_eq!(
        flagged,
        2,
        "only the first batch was handled: {:?}",
        d.flags("Bounces")
    );

    let (r, seen) = collect(&d.url("Bounces"), &opts);
    assert_eq!(r.expect("rerun").processed, 2);
    let subjects: Vec<String> = seen
        .iter()
        .flatten()
        .map(|f| String::from_utf8_lossy(&f.raw).into_owned())
        .collect();
    assert!(subjects[0].contains("report 2") && subjects[1].contains("report 3"));
}

#[test]
fn a_run_takes_at_most_its_count_and_the_start_of_a_big_message() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let big = message(0, &"x".repeat(200_000));
    d.deliver("INBOX", &big);
    for n in 1..5 {
        d.deliver("INBOX", &message(n, "small"));
    }
    let mut opts = plain_options();
    opts.limits.max_messages = 2;
    opts.limits.max_message_bytes = 1000;
    let (r, seen) = collect(&d.url("INBOX"), &opts);
    let o = r.expect("first run");
    assert_eq!((o.processed, o.left), (2, 3));
    let got: Vec<&Fetched> = seen.iter().flatten().collect();
    assert_eq!(got[0].raw.len(), 1000);
    assert_eq!(got[0].raw, big[..1000]);
    assert!(got[0].truncated);
    assert!(!got[1].truncated);
    assert_eq!(
        d.flags("INBOX")
            .iter()
            .filter(|(_, f)| has(f, PROCESSED))
            .count(),
        2
    );
    let (r, _) = collect(&d.url("INBOX"), &opts);
    assert_eq!(r.expect("second run").processed, 2);
    let (r, _) = collect(&d.url("INBOX"), &opts);
    let o = r.expect("third run");
    assert_eq!((o.processed, o.left), (1, 0));
}

#[test]
fn a_wrong_password_fails_without_naming_the_user() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    d.deliver("INBOX", &message(0, "bounce"));
    let opts = options(&[(imap::PASSWORD_ENV, "not-the-password")]);
    let (r, seen) = collect(&d.url("INBOX"), &opts);
    let e = r.expect_err("a wrong password logged in").to_string();
    assert!(seen.is_empty());
    assert!(e.contains(imap::PASSWORD_ENV), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{}", d.port)), "{e}");
    assert!(!e.contains("bounces"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");
    // A mailbox that does not exist is named, and nothing is flagged anywhere.
    let (r, _) = collect(&d.url("NoSuchFolder"), &plain_options());
    let e = r.expect_err("a missing mailbox was read").to_string();
    assert!(e.contains("NoSuchFolder"), "{e}");
    assert!(!e.contains("bounces"), "{e}");
    assert!(d.flags("INBOX").iter().all(|(_, f)| f.is_empty()));
}

#[test]
fn imaps_trusts_the_configured_ca_and_refuses_any_other() {
    let Some(d) = Dovecot::start_tls() else {
        return;
    };
    let certs = d.certs.as_ref().expect("a TLS instance");
    d.deliver("INBOX", &message(0, "bounce"));
    let url = d.url("INBOX");
    assert!(url.starts_with("imaps://"));
    // The Mozilla roots do not know the test CA, nor does an unrelated CA.
    for (what, opts) in [
        ("webpki roots", plain_options()),
        (
            "another CA",
            options(&[
                (imap::PASSWORD_ENV, PASSWORD),
                (imap::CA_FILE_ENV, certs.other_ca.to_str().expect("path")),
            ]),
        ),
    ] {
        let (r, seen) = collect(&url, &opts);
        let e = r.expect_err(&format!("{what}: an untrusted certificate was accepted"));
        assert!(seen.is_empty(), "{what}");
        let e = e.to_string();
        assert!(e.contains("TLS"), "{what}: {e}");
        assert!(e.to_lowercase().contains("certificate"), "{what}: {e}");
    }
    assert!(d.flags("INBOX").iter().all(|(_, f)| f.is_empty()));
    let opts = options(&[
        (imap::PASSWORD_ENV, PASSWORD),
        (imap::CA_FILE_ENV, certs.ca.to_str().expect("path")),
    ]);
    let (r, seen) = collect(&url, &opts);
    assert_eq!(
        r.unwrap_or_else(|e| panic!("{e}\n{}", d.log())).processed,
        1
    );
    assert_eq!(seen.iter().flatten().count(), 1);
    // The certificate names 127.0.0.1 and localhost, not this name.
    let other_name = url.replace("127.0.0.1", "127.0.0.2");
    let (r, _) = collect(&other_name, &opts);
    let e = r
        .expect_err("a certificate for another name was accepted")
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

/// A server that greets and then never answers: the run ends at the step timeout.
#[test]
fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(b"* OK ready\r\n").expect("greet");
        let mut buf = [0u8; 256];
        // Read the LOGIN and say nothing until the client gives up.
        while s.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let mut opts = plain_options();
    opts.limits.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let (r, _) = collect(
        &format!("imap://someone%40example.com@127.0.0.1:{port}/INBOX"),
        &opts,
    );
    let e = r.expect_err("a silent server");
    assert!(matches!(e, ImapError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("login"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
    server.join().expect("server thread");
}

/// A server that answers with an endless literal is cut off at the run's byte budget.
#[test]
fn a_flooding_server_is_cut_off() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(b"* OK ready\r\n").expect("greet");
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"* 1 FETCH (UID 1 BODY[] {400000000}\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        while s.write_all(&chunk).is_ok() {}
    });
    let mut opts = plain_options();
    opts.limits.max_messages = 1;
    opts.limits.max_message_bytes = 1024;
    opts.limits.timeout = Duration::from_secs(30);
    let (r, _) = collect(
        &format!("imap://someone%40example.com@127.0.0.1:{port}/INBOX"),
        &opts,
    );
    let e = r.expect_err("a flooding server").to_string();
    assert!(e.contains("byte budget"), "{e}");
    assert!(!e.contains("someone"), "{e}");
}
