//! The `sendmail` transport against real programs: a private Postfix instance that relays
//! everything to an `smtp-sink`, and msmtp (a sendmail that talks SMTP itself) for the
//! refusals Postfix never reports at submission.
//!
//! The private Postfix lives in a temp dir: its own `config_directory` (main.cf and a
//! minimal master.cf, nothing chrooted, no `smtp inet` listener), queue and data
//! directories, `relayhost = [127.0.0.1]:SINK`, no local delivery and a one-second queue
//! run (`Postfix::with_mailboxes` adds virtual mailboxes, so that it bounces real mail and
//! keeps its reports: `bounce_loop.rs`). `postfix -c DIR start` brings it up and
//! `postfix -c DIR stop` takes it down on drop.
//! Nothing under /etc/postfix is read or written: as root, Postfix's `sendmail -C DIR`
//! needs no `alternate_config_directories` entry in a default main.cf (Debian's "No
//! configuration" install has none). The `postfix` command is for root only, so as another
//! user, or without Postfix or msmtp, the tests print a loud SKIP, unless `CI` is set: then
//! they fail.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lettre::Address;
use tact::send::sendmail::{SendmailTarget, Submitted, send_one};
use tact::state::ledger::Reply;
use tempfile::TempDir;

use super::sink::{Delivery, DumpDir, Sink};
use crate::util::*;

const POSTFIX: &str = "/usr/sbin/postfix";
const SENDMAIL: &str = "/usr/sbin/sendmail";
const MSMTP: &str = "/usr/bin/msmtp";
/// The envelope sender of every test message (a campaign's return path).
const BOUNCES: &str = "bounces@northwind.example";

/// Says why a test cannot run: a loud SKIP, or under CI a failure.
fn unavailable(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {why}: run tests/setup.sh as root");
    }
    eprintln!(
        "\n*** SKIP: {why}; the sendmail transport tests did not run. \
         tests/setup.sh installs what they need (run them as root). ***\n"
    );
}

/// uid and gid of the `postfix` user that Debian's package makes.
fn postfix_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let f: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("postfix:"))?
        .split(':')
        .collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn addr(s: &str) -> Address {
    s.parse().unwrap()
}

fn sysexit(n: i32) -> Reply {
    Reply {
        code: None,
        enhanced: Some(format!("sysexit {n}")),
    }
}

/// Every service this instance needs, unchrooted (a chroot would need copies of /etc
/// files in the queue directory). No `smtp inet`: mail comes in only through sendmail.
const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
flush     unix  n       -       n       1000?   0       flush
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
virtual   unix  -       n       n       -       -       virtual
";

/// The mailboxes of `Postfix::with_mailboxes`: the mbox of a customer whose mailbox is
/// full (`full@mail.test`, filled to `MAILBOX_LIMIT` less a few bytes), no other user at
/// mail.test, and every address at the sender's domain into one Maildir, `bounces/`, where
/// the bounce daemon's reports land.
const VMAILBOX: &str = "full@mail.test full\n@northwind.example bounces/\n";
/// The largest mailbox (and message) the virtual delivery agent writes, in bytes.
const MAILBOX_LIMIT: usize = 20_000;
/// The unprivileged owner of delivered mail (`nobody`).
const MAIL_OWNER: u32 = 65534;

/// A running private Postfix and the sink it relays to; stopped when dropped.
pub struct Postfix {
    // Dropped in this order, after `drop` has stopped Postfix.
    pub sink: Sink,
    pub dump: DumpDir,
    root: TempDir,
}

impl Postfix {
    /// Starts an instance, or `None` after a SKIP (see the module comment).
    pub fn start() -> Option<Postfix> {
        Self::start_with(None)
    }

    /// An instance that also delivers mail itself, so that its bounce daemon writes real
    /// delivery status notifications: the virtual delivery agent owns mail.test (one
    /// user, `full`, whose mailbox is full; any other is unknown) and northwind.example
    /// (everything into the Maildir `bounce_maildir()`, `+` as the recipient delimiter,
    /// so VERP addresses arrive there too). `transport` lines route other domains, e.g.
    /// `nowhere.invalid error:5.4.4 …` or `blocked.test smtp:[127.0.0.1]:PORT`; the rest
    /// still goes to the sink.
    pub fn with_mailboxes(transport: &[String]) -> Option<Postfix> {
        Self::start_with(Some(transport))
    }

    fn start_with(mailboxes: Option<&[String]>) -> Option<Postfix> {
        if !Path::new(POSTFIX).is_file() || !Path::new(SENDMAIL).is_file() {
            unavailable("Postfix is not installed");
            return None;
        }
        if euid() != 0 {
            unavailable("starting Postfix needs root (the postfix command is for root only)");
            return None;
        }
        let Some((uid, gid)) = postfix_user() else {
            unavailable("there is no `postfix` user (Debian's postfix package makes it)");
            return None;
        };
        // Under /tmp: Postfix's Unix sockets live in the queue directory, and a socket
        // path may not exceed 107 bytes.
        let root = tempfile::Builder::new()
            .prefix("tact-postfix-")
            .tempdir_in("/tmp")
            .unwrap();
        // Postfix's daemons run as `postfix` and must reach the queue inside.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let dump = DumpDir::new();
        let sink = Sink::start(&dump, &[]);
        let pf = Postfix { sink, dump, root };
        for d in ["conf", "queue", "data"] {
            fs::create_dir(pf.path(d)).unwrap();
        }
        std::os::unix::fs::chown(pf.path("data"), Some(uid), Some(gid)).unwrap();
        let r = pf.root.path().display().to_string();
        let main_cf = format!(
            "# A private instance for tact's tests: loopback only, no local delivery,\n\
             # everything relayed to one smtp-sink, queue runs every second.\n\
             compatibility_level = 3.6\n\
             queue_directory = {r}/queue\n\
             data_directory = {r}/data\n\
             myhostname = tact-test.localdomain\n\
             mydomain = localdomain\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             local_recipient_maps =\n\
             local_transport = error:5.1.1 local delivery is disabled\n\
             alias_maps =\n\
             alias_database =\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             relayhost = [127.0.0.1]:{port}\n\
             smtp_tls_security_level = none\n\
             # CRs are kept as given: the byte-for-byte test checks tact's own LF conversion.\n\
             sendmail_fix_line_endings = never\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             syslog_name = postfix-tact-test\n\
             maillog_file = {r}/maillog\n\
             maillog_file_prefixes = {r}\n",
            port = pf.sink.port,
        );
        let main_cf = match mailboxes {
            None => main_cf,
            Some(transport) => {
                pf.set_up_mailboxes(transport);
                format!(
                    "{main_cf}\
                     virtual_mailbox_domains = mail.test, northwind.example\n\
                     virtual_mailbox_base = {r}/mail\n\
                     virtual_mailbox_maps = texthash:{r}/conf/vmailbox\n\
                     virtual_uid_maps = static:{MAIL_OWNER}\n\
                     virtual_gid_maps = static:{MAIL_OWNER}\n\
                     virtual_minimum_uid = 1\n\
                     virtual_mailbox_limit = {MAILBOX_LIMIT}\n\
                     message_size_limit = {MAILBOX_LIMIT}\n\
                     recipient_delimiter = +\n\
                     transport_maps = texthash:{r}/conf/transport\n"
                )
            }
        };
        fs::write(pf.path("conf/main.cf"), main_cf).unwrap();
        fs::write(pf.path("conf/master.cf"), MASTER_CF).unwrap();
        let out = Command::new(POSTFIX)
            .arg("-c")
            .arg(pf.path("conf"))
            .arg("start")
            .output()
            .unwrap();
        if !out.status.success() {
            let why = format!(
                "the private Postfix did not start ({}): {}{}\nmaillog:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                pf.maillog()
            );
            unavailable(&why);
            return None;
        }
        Some(pf)
    }

    fn set_up_mailboxes(&self, transport: &[String]) {
        fs::write(self.path("conf/vmailbox"), VMAILBOX).unwrap();
        fs::write(self.path("conf/transport"), transport.join("\n") + "\n").unwrap();
        let mail = self.path("mail");
        fs::create_dir(&mail).unwrap();
        // Nearly full: any message appended takes it over the limit.
        let line = format!("{}\n", "x".repeat(79));
        fs::write(mail.join("full"), line.repeat((MAILBOX_LIMIT - 200) / 80)).unwrap();
        for p in [mail.clone(), mail.join("full")] {
            std::os::unix::fs::chown(&p, Some(MAIL_OWNER), Some(MAIL_OWNER)).unwrap();
        }
    }

    /// Where the reports to northwind.example land (`new/` until a reader moves them).
    pub fn bounce_maildir(&self) -> PathBuf {
        self.path("mail/bounces")
    }

    /// Waits until `n` messages are in the bounce Maildir and the queue is empty (so no
    /// more are coming), and returns their files.
    pub fn wait_for_bounces(&self, n: usize) -> Vec<PathBuf> {
        let started = Instant::now();
        loop {
            // Not tmp/: a message there is still being written.
            let got: Vec<PathBuf> = ["new", "cur"]
                .iter()
                .flat_map(|d| files_under(&self.bounce_maildir().join(d)))
                .collect();
            if got.len() >= n && self.queued() == 0 {
                assert_eq!(got.len(), n, "more reports than expected");
                return got;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} of {n} reports after 30 s; maillog:\n{}",
                got.len(),
                self.maillog()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub fn config_dir(&self) -> PathBuf {
        self.path("conf")
    }

    /// `sendmail:/usr/sbin/sendmail?config=DIR`, as a user would write it.
    pub fn target(&self) -> SendmailTarget {
        SendmailTarget::parse(&format!(
            "sendmail:{SENDMAIL}?config={}&timeout=20",
            self.config_dir().display()
        ))
        .unwrap()
    }

    pub fn maillog(&self) -> String {
        fs::read_to_string(self.path("maillog")).unwrap_or_default()
    }

    /// Messages anywhere in the queue: dropped off, being cleaned up, active or deferred.
    fn queued(&self) -> usize {
        ["maildrop", "incoming", "active", "deferred", "hold"]
            .iter()
            .map(|d| files_under(&self.path(&format!("queue/{d}"))).len())
            .sum()
    }

    /// Waits until the queue is empty, so that nothing more can reach the sink, then
    /// returns what the sink got.
    pub fn drain(&self) -> Vec<Delivery> {
        let started = Instant::now();
        // Twice empty in a row: a message moving back from `deferred` to `active` between
        // the two listings would be missed by one look.
        let mut empty = 0;
        while empty < 2 {
            empty = if self.queued() == 0 { empty + 1 } else { 0 };
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "Postfix still holds {} messages after 20 s; maillog:\n{}",
                self.queued(),
                self.maillog()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.dump.deliveries()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.config_dir())
            .arg("stop")
            .output();
    }
}

/// The message as the client sent it, without the `Received:` header Postfix puts on top.
fn without_received(raw: &[u8]) -> &[u8] {
    assert!(raw.starts_with(b"Received: "), "no Received on top");
    let mut at = 0;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let continued = at > 0 && (line.starts_with(b" ") || line.starts_with(b"\t"));
        if at > 0 && !continued {
            break;
        }
        at += line.len();
    }
    &raw[at..]
}

/// The bytes smtp-sink keeps for a message sent as `body`: LF line ends, plus the empty
/// line it writes at the end of every dump.
fn as_dumped(body: &[u8]) -> Vec<u8> {
    let mut out = String::from_utf8(body.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    out.push(b'\n');
    out
}

/// Real tact messages (the winter sale's previews) plus one that tries Postfix's edges:
/// 8-bit text that only `-B 8BITMIME` declares (no Content-Transfer-Encoding), lines that are
/// or start with a dot, a body line starting with "From ", and a recipient with an
/// apostrophe and a `+`.
fn messages(n: usize) -> Vec<(Address, Vec<u8>)> {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (_, previews) = preview_all(
        state.path(),
        &sample_campaign("winter-sale"),
        &out.path().join("eml"),
    );
    assert!(previews.len() >= n, "{} previews", previews.len());
    let mut msgs: Vec<(Address, Vec<u8>)> = previews
        .iter()
        .take(n)
        .map(|m| (addr(&m.to_addr()), m.raw.clone().into_bytes()))
        .collect();
    let edge = "From: Northwind <news@northwind.example>\r\n\
                To: o'neil+news@example.ie\r\n\
                Subject: =?utf-8?q?Caf=C3=A9?=\r\n\
                Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n\
                Message-ID: <edge.winter-sale@northwind.example>\r\n\
                MIME-Version: 1.0\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\
                \r\n\
                Café au lait, 30% off.\r\n\
                .\r\n\
                ..two dots\r\n\
                From the team\r\n";
    msgs.push((addr("o'neil+news@example.ie"), edge.as_bytes().to_vec()));
    msgs
}

#[test]
fn queued_messages_arrive_once_each_unchanged() {
    let Some(pf) = Postfix::start() else { return };
    let msgs = messages(24);
    let target = pf.target();
    let from = addr(BOUNCES);
    let started = Instant::now();
    for (to, body) in &msgs {
        let (outcome, note) = send_one(&target, &from, to, body).unwrap();
        assert_eq!(outcome, Submitted::Queued, "{to}: {note:?}");
        assert_eq!(note, None);
    }
    let handed = started.elapsed();
    let got = pf.drain();
    assert_eq!(
        got.len(),
        msgs.len(),
        "one delivery per message, no more; maillog:\n{}",
        pf.maillog()
    );
    for (to, body) in &msgs {
        let mine: Vec<&Delivery> = got.iter().filter(|d| d.rcpt() == to.to_string()).collect();
        assert_eq!(mine.len(), 1, "{to}: {} deliveries", mine.len());
        let d = mine[0];
        assert!(
            d.mail_from.starts_with(&format!("<{BOUNCES}>")),
            "{}",
            d.mail_from
        );
        if !body.is_ascii() {
            // Without `-B 8BITMIME` Postfix would relay 8-bit text as if it were 7-bit.
            assert!(d.mail_from.contains("BODY=8BITMIME"), "{}", d.mail_from);
        }
        let raw = without_received(&d.raw);
        assert!(
            raw == as_dumped(body).as_slice(),
            "{to}: the relayed message differs from the submitted one:\n{}",
            String::from_utf8_lossy(raw)
        );
    }
    // Hand-over is the MTA's queue write, not a delivery: well under a second apiece.
    assert!(
        handed < Duration::from_secs(10),
        "{} messages took {handed:?} to hand over",
        msgs.len()
    );
}

#[test]
fn a_postfix_refusal_is_a_retry_and_queues_nothing() {
    let Some(pf) = Postfix::start() else { return };
    let (to, body) = (
        addr("ngozi.okafor@example.com"),
        b"Subject: x\r\n\r\nx\r\n".as_slice(),
    );
    // The same instance, with nobody allowed to submit mail.
    let closed = pf.path("closed");
    fs::create_dir(&closed).unwrap();
    let main_cf = fs::read_to_string(pf.config_dir().join("main.cf")).unwrap();
    fs::write(
        closed.join("main.cf"),
        format!("{main_cf}authorized_submit_users =\n"),
    )
    .unwrap();
    fs::copy(pf.config_dir().join("master.cf"), closed.join("master.cf")).unwrap();
    let target = SendmailTarget {
        config_dir: Some(closed),
        ..pf.target()
    };
    let (outcome, note) = send_one(&target, &addr(BOUNCES), &to, body).unwrap();
    // Postfix's sendmail exits EX_TEMPFAIL on every fatal error.
    assert_eq!(outcome, Submitted::Retry(sysexit(75)));
    let note = note.unwrap();
    assert!(note.contains("not allowed to submit mail"), "{note}");
    assert!(!note.contains('@'), "{note}");

    // A configuration directory without main.cf.
    let empty = tempfile::tempdir().unwrap();
    let target = SendmailTarget {
        config_dir: Some(empty.path().to_path_buf()),
        ..pf.target()
    };
    let (outcome, note) = send_one(&target, &addr(BOUNCES), &to, body).unwrap();
    assert_eq!(outcome, Submitted::Retry(sysexit(75)));
    assert!(note.unwrap().contains("main.cf"));

    let (outcome, _) = send_one(
        &SendmailTarget::parse("sendmail:/nonexistent/sbin/sendmail").unwrap(),
        &addr(BOUNCES),
        &to,
        body,
    )
    .unwrap();
    assert_eq!(outcome, Submitted::Retry(Reply::default()));

    // Never on a command line: Postfix would bounce it, another sendmail take an option.
    let (outcome, _) =
        send_one(&pf.target(), &addr(BOUNCES), &addr("-bv@example.org"), body).unwrap();
    assert_eq!(
        outcome,
        Submitted::Failed(Reply {
            code: None,
            enhanced: Some("5.1.3".into())
        })
    );

    assert_eq!(pf.drain().len(), 0, "a refused message was delivered");
}

/// msmtp's configuration for a relay on this port (it wants the file private).
fn msmtprc(dir: &Path, port: u16) -> PathBuf {
    let rc = dir.join(format!("msmtprc-{port}"));
    fs::write(
        &rc,
        format!("account default\nhost 127.0.0.1\nport {port}\ntls off\nauth off\n"),
    )
    .unwrap();
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).unwrap();
    rc
}

fn msmtp(rc: &Path, timeout: &str) -> SendmailTarget {
    SendmailTarget::parse(&format!(
        "sendmail:{MSMTP}?config={}&timeout={timeout}",
        rc.display()
    ))
    .unwrap()
}

fn have_msmtp() -> bool {
    if Path::new(MSMTP).is_file() {
        return true;
    }
    unavailable("msmtp is not installed");
    false
}

#[test]
fn relay_refusals_through_msmtp_are_failed_or_retried() {
    if !have_msmtp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dump = DumpDir::new();
    let (from, to) = (addr(BOUNCES), addr("ngozi.okafor@example.com"));
    let body = b"Subject: x\r\n\r\nx\r\n";

    // 5xx to RCPT: msmtp exits EX_DATAERR, a permanent failure.
    let hard = Sink::start(&dump, &["-f", "RCPT"]);
    let (outcome, note) = send_one(
        &msmtp(&msmtprc(dir.path(), hard.port), "10"),
        &from,
        &to,
        body,
    )
    .unwrap();
    assert_eq!(outcome, Submitted::Failed(sysexit(65)));
    assert!(!note.unwrap_or_default().contains('@'));

    // 5xx to MAIL FROM: the same EX_DATAERR, but the sender's problem, not the recipient's
    // (msmtp says "envelope from address … not accepted"): nobody is marked failed.
    let no_sender = Sink::start(&dump, &["-f", "MAIL"]);
    let (outcome, note) = send_one(
        &msmtp(&msmtprc(dir.path(), no_sender.port), "10"),
        &from,
        &to,
        body,
    )
    .unwrap();
    assert_eq!(outcome, Submitted::SenderRefused(sysexit(65)));
    assert!(!note.unwrap_or_default().contains('@'));

    // 4xx to RCPT: EX_UNAVAILABLE, tried again later.
    let soft = Sink::start(&dump, &["-r", "RCPT"]);
    let (outcome, _) = send_one(
        &msmtp(&msmtprc(dir.path(), soft.port), "10"),
        &from,
        &to,
        body,
    )
    .unwrap();
    assert_eq!(outcome, Submitted::Retry(sysexit(69)));
    // The sink drops a refused transaction's file once it sees the client go; killing it
    // before then (a loaded machine) would leave that file behind as if it were a message.
    assert!(dump.deliveries().is_empty());

    // Nobody listening: EX_TEMPFAIL.
    let port = soft.port;
    soft.stop();
    let (outcome, _) =
        send_one(&msmtp(&msmtprc(dir.path(), port), "10"), &from, &to, body).unwrap();
    assert_eq!(outcome, Submitted::Retry(sysexit(75)));
    assert_eq!(dump.count(), 0);
}

#[test]
fn a_hand_over_cut_off_after_the_whole_message_is_uncertain() {
    if !have_msmtp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dump = DumpDir::new();
    // The relay takes the whole message and sits on its reply: cut off at the timeout,
    // the message may or may not have been taken, so it must never be sent again.
    let slow = Sink::start(&dump, &["-W", ".:30"]);
    let target = msmtp(&msmtprc(dir.path(), slow.port), "1");
    let started = Instant::now();
    let (outcome, _) = send_one(
        &target,
        &addr(BOUNCES),
        &addr("ngozi.okafor@example.com"),
        b"Subject: x\r\n\r\nx\r\n",
    )
    .unwrap();
    assert_eq!(outcome, Submitted::Uncertain);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// `tact send --smtp sendmail:…` end to end: the campaign goes into the MTA's queue, Postfix
/// delivers each message once, the ledger says sent, and a rerun hands over nothing more.
#[test]
fn a_campaign_sent_through_the_local_mta_arrives_once_each() {
    let Some(pf) = Postfix::start() else {
        return;
    };
    let t = super::tree();
    let people = super::pick(&t, 3, 3);
    let want = super::emails(&people);
    super::narrow(&t, super::WINTER, &people);
    let url = pf.target().to_string();
    let r = crate::util::run_expect(
        t.tact()
            .arg("send")
            .arg(t.campaign(super::WINTER))
            .arg("--smtp")
            .arg(&url)
            .arg("--json"),
        0,
    );
    let v = super::parse_json(&r);
    assert_eq!(super::n(&v, "summary.sent"), 6, "{}", r.stdout);
    assert_eq!(super::n(&v, "ledger.sent"), 6);
    let got = pf.drain();
    assert_eq!(super::delivered_once(&got), want);
    assert_eq!(got.len(), 6);
    let r = crate::util::run_expect(
        t.tact()
            .arg("send")
            .arg(t.campaign(super::WINTER))
            .arg("--smtp")
            .arg(&url),
        0,
    );
    assert!(r.stdout.contains("completed"), "{}", r.stdout);
    assert_eq!(pf.drain().len(), 6, "a rerun handed a message over again");
}
