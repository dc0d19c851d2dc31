//! The `sendmail` transport: each message is handed to the local MTA's queue (Postfix's
//! `sendmail`), which then owns delivery, retries and bounces. For big lists the MTA is the
//! better delivery engine: per-domain concurrency, backoff and a persistent queue.
//!
//! At most once still holds. The program's exit status says whether the MTA took the
//! message, and only a status that proves nothing was queued lets the recipient be tried
//! again:
//!
//! | how it ended | attempt | why |
//! | --- | --- | --- |
//! | exit 0, the whole message written | `Sent` | queued: the MTA has it |
//! | could not start the program | `Retry` | nothing ran |
//! | exit 75 `EX_TEMPFAIL`, 69 `EX_UNAVAILABLE`, 68 `EX_NOHOST`, 77 `EX_NOPERM`, 78 `EX_CONFIG` | `Retry` | refused before taking it |
//! | exit 64 `EX_USAGE`, 65 `EX_DATAERR` | `Failed` | this address or message is refused |
//! | exit 67 `EX_NOUSER` | `NoSuchUser` | no such mailbox: failed, and counted by the hard-bounce breaker |
//! | killed, or timed out, before stdin was written and closed | `Retry` | with `-i` only end of input ends the message |
//! | killed, or timed out, after the whole message was written | `Uncertain` | it may have been queued |
//! | exit 0 before the whole message was written, any other code | `Uncertain` | unknown meaning |
//! | a recipient that is not a plain `local@domain` (see `plain_address`) | `Failed` (`5.1.3`) | never run |
//! | a return path that is not (a campaign setting: `plain_address` lets a run refuse it first) | `SenderRefused` (`5.1.7`) | never run |
//! | a permanent status with the program saying the sender was refused (msmtp: "envelope from address … not accepted") | `SenderRefused` | the sender's problem, not the recipient's |
//!
//! A `SenderRefused` stops the run with every recipient still pending, as a 5xx to MAIL FROM
//! does over SMTP; a `Retry` counts as a fault of the relay (see `RelayState::fault`).
//!
//! Postfix's own `sendmail` turns every fatal error into 75 (its run-time error handler
//! exits `EX_TEMPFAIL`) and checks addresses only after queueing, where a refusal becomes a
//! bounce to the return path; the permanent codes come from other sendmails (msmtp exits 65
//! when the relay refuses a recipient with 5xx, and 69 when it answers 4xx). 68 is a retry
//! because msmtp uses it for a relay name that did not resolve.
//!
//! Replies carry no SMTP code: `enhanced` is `sysexit N`, so summaries can count failures
//! by exit status. The program's stderr quotes addresses, so it is never stored; only its
//! last line with every address masked is offered, for a pause message.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lettre::Address;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

use super::smtp::Attempt;
use crate::error::{Error, Location, Result};
use crate::state::ledger::Reply;

/// Where Debian's postfix (and every other MTA on Debian) installs its sendmail.
pub const DEFAULT_PROGRAM: &str = "/usr/sbin/sendmail";
/// Postfix queues a message in milliseconds; a minute is a stuck queue, not a slow one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

const EX_USAGE: i32 = 64;
const EX_DATAERR: i32 = 65;
const EX_NOUSER: i32 = 67;
const EX_NOHOST: i32 = 68;
const EX_UNAVAILABLE: i32 = 69;
const EX_TEMPFAIL: i32 = 75;
const EX_NOPERM: i32 = 77;
const EX_CONFIG: i32 = 78;

/// Where the local MTA's sendmail is, and its options.
///
/// Written `sendmail:[PROGRAM][?config=PATH][&timeout=SECONDS]`:
///
/// - `sendmail:` runs `/usr/sbin/sendmail`, the MTA's default instance;
/// - `sendmail:/opt/postfix/sbin/sendmail` runs that program (an absolute path);
/// - `sendmail:?config=/etc/postfix-out` passes `-C /etc/postfix-out`: a second Postfix
///   instance's configuration directory (msmtp reads `-C` as its configuration file);
/// - `timeout=SECONDS` (default 60) bounds each hand-over.
///
/// Paths are taken literally (no percent-decoding), so they cannot contain `?` or `&`.
#[derive(Debug, Clone, PartialEq)]
pub struct SendmailTarget {
    pub program: PathBuf,
    /// `-C PATH`: a non-default Postfix instance's configuration directory.
    pub config_dir: Option<PathBuf>,
    /// How long one hand-over may take before the program is killed.
    pub timeout: Duration,
}

impl SendmailTarget {
    pub fn parse(url: &str) -> Result<SendmailTarget> {
        let bad = |m: &str| Error::input(Location::file("--smtp"), format!("`{url}`: {m}"));
        let rest = url.strip_prefix("sendmail:").ok_or_else(|| {
            bad("expected sendmail:[/path/to/sendmail][?config=DIR][&timeout=SECONDS]")
        })?;
        let (program, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let absolute = |what: &str, p: &str| {
            if p.starts_with("//") {
                return Err(bad(&format!(
                    "{what} is a local path: one leading slash, no host"
                )));
            }
            if !Path::new(p).is_absolute() {
                return Err(bad(&format!("{what} must be an absolute path")));
            }
            Ok(PathBuf::from(p))
        };
        let mut target = SendmailTarget {
            program: if program.is_empty() {
                PathBuf::from(DEFAULT_PROGRAM)
            } else {
                absolute("the program", program)?
            },
            config_dir: None,
            timeout: DEFAULT_TIMEOUT,
        };
        let mut timeout_set = false;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(&format!("`{pair}`: expected KEY=VALUE")))?;
            match key {
                "config" if target.config_dir.is_none() => {
                    target.config_dir = Some(absolute("config", value)?);
                }
                "timeout" if !timeout_set => {
                    target.timeout = value
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| bad("timeout is seconds, more than 0 and at most 3600"))?;
                    timeout_set = true;
                }
                "config" | "timeout" => return Err(bad(&format!("`{key}` is given twice"))),
                _ => {
                    return Err(bad(&format!(
                        "unknown option `{key}` (there are config and timeout)"
                    )));
                }
            }
        }
        Ok(target)
    }

    /// Fails fast, before a send, on a program or configuration path that is not there: at
    /// send time each of those would be one retry per recipient.
    pub fn check(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let bad = |m: String| Error::input(Location::file("--smtp"), m);
        let executable = std::fs::metadata(&self.program)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !executable {
            return Err(bad(format!(
                "{} is not an executable file (is an MTA such as postfix installed?)",
                self.program.display()
            )));
        }
        if let Some(c) = &self.config_dir
            && !c.exists()
        {
            return Err(bad(format!("config {} does not exist", c.display())));
        }
        Ok(())
    }
}

impl std::fmt::Display for SendmailTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sendmail:{}", self.program.display())?;
        let mut sep = '?';
        if let Some(c) = &self.config_dir {
            write!(f, "{sep}config={}", c.display())?;
            sep = '&';
        }
        if self.timeout != DEFAULT_TIMEOUT {
            write!(f, "{sep}timeout={}", self.timeout.as_secs_f64())?;
        }
        Ok(())
    }
}

/// How a hand-over ended, before it is read as an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The program could not be started.
    NotStarted,
    /// It exited with this status; `fed`: the whole message was written and stdin closed.
    Exited { code: i32, fed: bool },
    /// A signal ended it, or the timeout did.
    Killed { fed: bool },
    /// Waiting for it failed: how it ended is unknown.
    Lost,
}

fn sysexit(code: i32) -> Reply {
    Reply {
        code: None,
        enhanced: Some(format!("sysexit {code}")),
    }
}

fn attempt(e: Ending) -> Attempt {
    match e {
        Ending::NotStarted => Attempt::Retry(Reply::default()),
        Ending::Exited { code: 0, fed: true } => Attempt::Sent(Reply::default()),
        // It says it queued something, but not what we wrote to the end.
        Ending::Exited {
            code: 0,
            fed: false,
        } => Attempt::Uncertain,
        Ending::Exited { code, .. } => match code {
            EX_TEMPFAIL | EX_UNAVAILABLE | EX_NOHOST | EX_NOPERM | EX_CONFIG => {
                Attempt::Retry(sysexit(code))
            }
            EX_USAGE | EX_DATAERR => Attempt::Failed(sysexit(code)),
            EX_NOUSER => Attempt::NoSuchUser(sysexit(code)),
            _ => Attempt::Uncertain,
        },
        // With -i only the end of input ends the message, so unfed means nothing queued.
        Ending::Killed { fed: false } => Attempt::Retry(Reply::default()),
        Ending::Killed { fed: true } | Ending::Lost => Attempt::Uncertain,
    }
}

/// Whether an address can go on sendmail's command line as exactly one address. Postfix
/// parses each recipient argument like a header (`a@x, b@y` is two, `(x)` a comment, `g:`
/// a group), so only plain `local@domain` passes: RFC 5322 atext in the local part (no
/// quoted strings), letters, digits, `-`, `_` and dots or an address literal in the domain.
/// No leading `-` either, though it comes after `--` or `-f`: Postfix bounces such an
/// address (`allow_min_user = no`), and a sendmail without `--` would read an option.
pub fn plain_address(a: &Address) -> bool {
    let (local, domain) = (a.user(), a.domain());
    let local_ok = !local.is_empty()
        && !local.starts_with('-')
        && local.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || "!#$%&'*+-/=?^_`{|}~.".contains(c)
                || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
        });
    let domain_ok = match domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        Some(literal) => {
            !literal.is_empty()
                && literal
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == ':')
        }
        None => {
            !domain.is_empty()
                && domain.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || c == '-'
                        || c == '.'
                        || c == '_'
                        || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
                })
        }
    };
    local_ok && domain_ok
}

/// The message in the local form sendmail expects: lines end in LF. Postfix strips a CR
/// before LF by default (`sendmail_fix_line_endings = always`), but not under `strict` or
/// `never`, where the queue file would keep the CRs and the relay would get `CR CR LF`.
fn unix_lines(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\r' && body.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

/// The last line of the program's stderr, for a pause message: every address masked (its
/// messages quote the sender and the recipient), printable characters only, 200 at most.
fn note_of(stderr: &[u8], from: &Address, to: &Address) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let mut line = line.to_string();
    for a in [from, to].map(AsRef::<str>::as_ref) {
        line = replace_ignoring_case(&line, a, "<address>");
    }
    let masked: Vec<String> = line
        .split(' ')
        .map(|w| {
            if w.contains('@') {
                "<address>".to_string()
            } else {
                w.chars().filter(|c| !c.is_control()).collect()
            }
        })
        .collect();
    let note: String = masked.join(" ").chars().take(200).collect();
    Some(note)
}

fn replace_ignoring_case(haystack: &str, needle: &str, with: &str) -> String {
    let lower = haystack.to_lowercase();
    let needle = needle.to_lowercase();
    // Lowercasing can change byte lengths outside ASCII; then whole-word masking suffices.
    if needle.is_empty() || lower.len() != haystack.len() {
        return haystack.to_string();
    }
    let mut out = String::with_capacity(haystack.len());
    let mut at = 0;
    while let Some(i) = lower[at..].find(&needle) {
        out.push_str(&haystack[at..at + i]);
        out.push_str(with);
        at += i + needle.len();
    }
    out.push_str(&haystack[at..]);
    out
}

/// Reads up to 4 KiB of stderr and drains the rest.
async fn read_stderr(stderr: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut stderr) = stderr else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = 4096usize.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Writes the whole message and closes stdin: true only if the program got all of it
/// and its end.
async fn feed(stdin: Option<ChildStdin>, message: &[u8]) -> bool {
    let Some(mut stdin) = stdin else {
        return false;
    };
    stdin.write_all(message).await.is_ok() && stdin.shutdown().await.is_ok()
}

async fn kill(child: &mut Child) {
    let _ = tokio::time::timeout(Duration::from_secs(5), child.kill()).await;
}

/// Hands one message to the MTA: `PROGRAM -i [-C CONFIG] [-B 8BITMIME] -f FROM -- TO`, run
/// directly (no shell), the message on stdin.
pub(super) async fn submit(
    t: &SendmailTarget,
    from: &Address,
    to: &Address,
    body: &[u8],
) -> Attempt {
    submit_noted(t, from, to, body).await.0
}

/// `submit`, with the program's last stderr line, addresses masked (see `note_of`).
pub(super) async fn submit_noted(
    t: &SendmailTarget,
    from: &Address,
    to: &Address,
    body: &[u8],
) -> (Attempt, Option<String>) {
    if !plain_address(from) {
        // The campaign's setting, not the recipient's fault: they stay pending for a run
        // with a fixed return path.
        let reply = Reply {
            code: None,
            enhanced: Some("5.1.7".into()),
        };
        return (Attempt::SenderRefused(reply), None);
    }
    if !plain_address(to) {
        let reply = Reply {
            code: None,
            enhanced: Some("5.1.3".into()),
        };
        return (Attempt::Failed(reply), None);
    }
    let message = unix_lines(body);
    let mut cmd = Command::new(&t.program);
    cmd.arg("-i");
    if let Some(c) = &t.config_dir {
        cmd.arg("-C").arg(c);
    }
    if !message.is_ascii() {
        // What BODY=8BITMIME says over SMTP: Postfix then keeps the content as it is.
        cmd.args(["-B", "8BITMIME"]);
    }
    cmd.arg("-f")
        .arg(from)
        .arg("--")
        .arg(to)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(_) => return (attempt(Ending::NotStarted), None),
    };
    let deadline = Instant::now() + t.timeout;
    let stdin = child.stdin.take();
    // Read alongside, so that a chatty program never blocks on a full pipe.
    let mut reader = tokio::spawn(read_stderr(child.stderr.take()));
    let ending = async {
        let fed = match tokio::time::timeout_at(deadline, feed(stdin, &message)).await {
            Ok(fed) => fed,
            Err(_) => {
                kill(&mut child).await;
                return Ending::Killed { fed: false };
            }
        };
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) => match status.code() {
                Some(code) => Ending::Exited { code, fed },
                None => Ending::Killed { fed },
            },
            Ok(Err(_)) => Ending::Lost,
            Err(_) => {
                kill(&mut child).await;
                Ending::Killed { fed }
            }
        }
    }
    .await;
    let mut outcome = attempt(ending);
    let note = match ending {
        Ending::Exited { code: 0, fed: true } => None,
        // A process the program left behind (a background delivery) may hold stderr open:
        // what has come by a moment after the exit is all there is.
        _ => match tokio::time::timeout(Duration::from_millis(200), &mut reader).await {
            Ok(Ok(err)) => {
                if let Attempt::Failed(reply) = &outcome
                    && sender_refused(&err)
                {
                    outcome = Attempt::SenderRefused(reply.clone());
                }
                note_of(&err, from, to)
            }
            _ => None,
        },
    };
    reader.abort();
    (outcome, note)
}

/// Whether the program said the relay refused the sender, not the recipient: the same
/// permanent exit status (msmtp exits 65 for both) would otherwise mark every recipient
/// failed for what is the sender's problem.
fn sender_refused(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr).to_lowercase();
    // msmtp: "envelope from address X not accepted by the server".
    text.contains("envelope from address")
}

/// What became of one hand-over, as `send_one` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// In the MTA's queue.
    Queued,
    /// Not queued; may be tried again.
    Retry(Reply),
    /// Refused for good.
    Failed(Reply),
    /// The sender was refused: nobody is marked, the run stops.
    SenderRefused(Reply),
    /// May or may not have been queued: never tried again.
    Uncertain,
}

impl From<Attempt> for Submitted {
    fn from(a: Attempt) -> Submitted {
        match a {
            Attempt::Sent(_) => Submitted::Queued,
            Attempt::Retry(r) | Attempt::Deferred(r) => Submitted::Retry(r),
            Attempt::Failed(r) | Attempt::NoSuchUser(r) => Submitted::Failed(r),
            Attempt::SenderRefused(r) => Submitted::SenderRefused(r),
            Attempt::Uncertain => Submitted::Uncertain,
        }
    }
}

/// Hands one message to the MTA outside any send run (no ledger): for `--test` sends and
/// for tests. `body` is the formatted message (CRLF). Returns the outcome and the
/// program's last stderr line with addresses masked.
pub fn send_one(
    t: &SendmailTarget,
    from: &Address,
    to: &Address,
    body: &[u8],
) -> Result<(Submitted, Option<String>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the sender: {e}")))?;
    let (attempt, note) = runtime.block_on(submit_noted(t, from, to, body));
    Ok((attempt.into(), note))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn urls() {
        let t = SendmailTarget::parse("sendmail:").unwrap();
        assert_eq!(t.program, PathBuf::from("/usr/sbin/sendmail"));
        assert_eq!((t.config_dir, t.timeout), (None, DEFAULT_TIMEOUT));
        let t = SendmailTarget::parse("sendmail:/opt/pf/sendmail").unwrap();
        assert_eq!(t.program, PathBuf::from("/opt/pf/sendmail"));
        let t =
            SendmailTarget::parse("sendmail:/usr/sbin/sendmail?config=/etc/postfix-out").unwrap();
        assert_eq!(t.config_dir, Some(PathBuf::from("/etc/postfix-out")));
        let t = SendmailTarget::parse("sendmail:?config=/etc/postfix-out&timeout=2.5").unwrap();
        assert_eq!(t.program, PathBuf::from(DEFAULT_PROGRAM));
        assert_eq!(t.timeout, Duration::from_millis(2500));
        assert_eq!(
            t.to_string(),
            "sendmail:/usr/sbin/sendmail?config=/etc/postfix-out&timeout=2.5"
        );
        assert_eq!(SendmailTarget::parse(&t.to_string()).unwrap(), t);
        for bad in [
            "sendmail",
            "smtp://x",
            "sendmail:sendmail",
            "sendmail://host/usr/sbin/sendmail",
            "sendmail:?config=etc/postfix",
            "sendmail:?config",
            "sendmail:?cfg=/etc/postfix",
            "sendmail:?config=/a&config=/b",
            "sendmail:?timeout=0",
            "sendmail:?timeout=soon",
        ] {
            let e = SendmailTarget::parse(bad).unwrap_err();
            assert!(e.is_input(), "{bad}: {e}");
        }
    }

    #[test]
    fn exit_statuses() {
        let fed = |code| Ending::Exited { code, fed: true };
        let sysexit = |n: i32| Some(format!("sysexit {n}"));
        let table: Vec<(Ending, Submitted)> = vec![
            (fed(0), Submitted::Queued),
            (Ending::NotStarted, Submitted::Retry(Reply::default())),
            (
                fed(75),
                Submitted::Retry(Reply {
                    code: None,
                    enhanced: sysexit(75),
                }),
            ),
            (
                fed(69),
                Submitted::Retry(Reply {
                    code: None,
                    enhanced: sysexit(69),
                }),
            ),
            (
                fed(68),
                Submitted::Retry(Reply {
                    code: None,
                    enhanced: sysexit(68),
                }),
            ),
            (
                fed(77),
                Submitted::Retry(Reply {
                    code: None,
                    enhanced: sysexit(77),
                }),
            ),
            (
                fed(78),
                Submitted::Retry(Reply {
                    code: None,
                    enhanced: sysexit(78),
                }),
            ),
            (
                fed(64),
                Submitted::Failed(Reply {
                    code: None,
                    enhanced: sysexit(64),
                }),
            ),
            (
                fed(65),
                Submitted::Failed(Reply {
                    code: None,
                    enhanced: sysexit(65),
                }),
            ),
            (
                fed(67),
                Submitted::Failed(Reply {
                    code: None,
                    enhanced: sysexit(67),
                }),
            ),
            // Refusals mean the same however much of the message was read.
            (
                Ending::Exited {
                    code: 65,
                    fed: false,
                },
                Submitted::Failed(Reply {
                    code: None,
                    enhanced: sysexit(65),
                }),
            ),
            (
                Ending::Exited {
                    code: 75,
                    fed: false,
                },
                Submitted::Retry(Reply {
                    code: None,
                    enhanced: sysexit(75),
                }),
            ),
            (
                Ending::Exited {
                    code: 0,
                    fed: false,
                },
                Submitted::Uncertain,
            ),
            (fed(1), Submitted::Uncertain),
            (fed(66), Submitted::Uncertain),
            (fed(70), Submitted::Uncertain),
            (fed(71), Submitted::Uncertain),
            (fed(74), Submitted::Uncertain),
            (fed(76), Submitted::Uncertain),
            (fed(255), Submitted::Uncertain),
            (Ending::Killed { fed: true }, Submitted::Uncertain),
            (
                Ending::Killed { fed: false },
                Submitted::Retry(Reply::default()),
            ),
            (Ending::Lost, Submitted::Uncertain),
        ];
        for (ending, want) in table {
            assert_eq!(Submitted::from(attempt(ending)), want, "{ending:?}");
        }
        // EX_NOUSER is the breaker's "no such user"; the other refusals are not.
        assert!(matches!(attempt(fed(67)), Attempt::NoSuchUser(_)));
        assert!(matches!(attempt(fed(65)), Attempt::Failed(_)));
    }

    #[test]
    fn only_plain_addresses_reach_the_command_line() {
        for ok in [
            "a@example.com",
            "first.last+tag@example.co.uk",
            "x-y@example.org",
            "o'neil@example.ie",
            "x@[127.0.0.1]",
        ] {
            assert!(plain_address(&addr(ok)), "{ok}");
        }
        // lettre takes all of these: an option-like local part, and quoted ones that Postfix
        // would split, or read as a comment or a group.
        for no in [
            "-bv@example.org",
            "\"a b\"@example.com",
            "\"a,b\"@example.com",
            "\"x (y)\"@example.com",
            "\"g:h\"@example.com",
        ] {
            assert!(!plain_address(&addr(no)), "{no}");
        }
    }

    #[test]
    fn line_endings() {
        assert_eq!(
            unix_lines(b"A: b\r\n\r\nx\ry\r\n.\r\n"),
            b"A: b\n\nx\ry\n.\n"
        );
        assert_eq!(unix_lines(b"no newline"), b"no newline");
        assert_eq!(unix_lines(b"\r\r\n"), b"\r\n");
    }

    #[test]
    fn notes_mask_addresses() {
        let from = addr("News@Northwind.example");
        let to = addr("ngozi.okafor@example.com");
        let err = b"msmtp: recipient address ngozi.okafor@example.com not accepted by the server\n\
                    msmtp: could not send mail (account default from news@northwind.example)\n";
        let note = note_of(err, &from, &to).unwrap();
        assert_eq!(
            note,
            "msmtp: could not send mail (account default from <address>)"
        );
        let err = b"sendmail: fatal: NGOZI.OKAFOR@EXAMPLE.COM(0): No recipient\n\n";
        let note = note_of(err, &from, &to).unwrap();
        assert!(!note.to_lowercase().contains("ngozi"), "{note}");
        assert_eq!(note_of(b"\n  \n", &from, &to), None);
    }

    #[tokio::test]
    async fn unsafe_addresses_never_reach_the_program() {
        let t = SendmailTarget::parse("sendmail:/nonexistent/sendmail").unwrap();
        let (good, body) = (addr("a@example.com"), b"x\r\n");
        let a = submit(&t, &good, &addr("\"a,b\"@example.org"), body).await;
        let reply = |x: &str| Reply {
            code: None,
            enhanced: Some(x.into()),
        };
        assert_eq!(Submitted::from(a), Submitted::Failed(reply("5.1.3")));
        let a = submit(&t, &addr("-oQ@example.com"), &good, body).await;
        assert_eq!(Submitted::from(a), Submitted::SenderRefused(reply("5.1.7")));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_retry() {
        let t = SendmailTarget::parse("sendmail:/nonexistent/sendmail").unwrap();
        assert!(t.check().is_err());
        let a = submit(&t, &addr("a@example.com"), &addr("b@example.org"), b"x\r\n").await;
        assert_eq!(Submitted::from(a), Submitted::Retry(Reply::default()));
    }
}
