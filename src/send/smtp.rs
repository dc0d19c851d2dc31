//! SMTP: the relay's URL, connections, and one transaction at a time.
//!
//! Stock lettre writes the message and its `\r\n.\r\n` terminator in two writes without
//! TCP_NODELAY, so Nagle waits for the server's delayed ACK (~40 ms) on every message. We
//! open the sockets ourselves with TCP_NODELAY and hand them to lettre's connection, then
//! drive MAIL / RCPT / DATA ourselves so that every failure is known to have happened
//! before or after the message could have been accepted: before, the recipient goes back to
//! pending; after, without a reply, it stays `sending` (uncertain) and is never resent.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use crate::error::{Error, Location, Result};
use crate::state::ledger::Reply;

/// How long tact waits on a relay before it counts as not answering. A stall before the
/// message's content leaves the recipient pending; a stall after it, uncertain (the relay
/// may have taken the message), so `data` is the generous one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// For the TCP connection (and, with smtps://, the TLS handshake).
    pub connect: Duration,
    /// For the greeting and the reply to EHLO.
    pub greeting: Duration,
    /// For each other command: STARTTLS, AUTH, MAIL, RCPT, DATA.
    pub command: Duration,
    /// For the reply to the end of a message's content.
    pub data: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            greeting: Duration::from_secs(30),
            command: Duration::from_secs(30),
            data: Duration::from_secs(120),
        }
    }
}

/// How to reach the relay. The password comes only from the environment.
#[derive(Debug, Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub implicit_tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub timeouts: Timeouts,
    /// `starttls=required`: even a loopback relay must offer STARTTLS.
    pub require_tls: bool,
}

impl SmtpTarget {
    /// `smtp://[user@]host:port` (STARTTLS) or `smtps://[user@]host:port` (implicit TLS),
    /// with optional `?connect_timeout=S&greeting_timeout=S&command_timeout=S&data_timeout=S`
    /// (seconds) and `starttls=required`. A URL with a user needs its password.
    pub fn parse(url: &str, password: Option<String>) -> Result<SmtpTarget> {
        SmtpTarget::parse_for(url, password, "TACT_SMTP_PASSWORD")
    }

    /// `parse`, where the password comes from the variable `var`.
    pub fn parse_for(url: &str, password: Option<String>, var: &str) -> Result<SmtpTarget> {
        let bad = |m: &str| {
            Error::input(
                Location::file("--smtp"),
                format!("`{}`: {m}", redact_url(url)),
            )
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected smtp://host:port or smtps://host:port"))?;
        let implicit_tls = match scheme {
            "smtp" => false,
            "smtps" => true,
            _ => return Err(bad("the scheme must be smtp or smtps")),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let rest = rest.trim_end_matches('/');
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => {
                if u.contains(':') {
                    return Err(bad(
                        "put the password in TACT_SMTP_PASSWORD, never in the URL",
                    ));
                }
                (Some(u.to_string()), h)
            }
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (
                hostport.trim_matches(['[', ']']).to_string(),
                if implicit_tls { 465 } else { 587 },
            ),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let mut timeouts = Timeouts::default();
        let mut require_tls = false;
        let mut seen = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(&format!("`{pair}`: expected KEY=VALUE")))?;
            if seen.contains(&key) {
                return Err(bad(&format!("`{key}` is given twice")));
            }
            seen.push(key);
            let seconds = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| bad(&format!("{key} is seconds, more than 0 and at most 3600")))
            };
            match key {
                "connect_timeout" => timeouts.connect = seconds()?,
                "greeting_timeout" => timeouts.greeting = seconds()?,
                "command_timeout" => timeouts.command = seconds()?,
                "data_timeout" => timeouts.data = seconds()?,
                "starttls" if value == "required" && !implicit_tls => require_tls = true,
                "starttls" => {
                    return Err(bad(
                        "starttls takes one value, `required`, and only with smtp://",
                    ));
                }
                _ => {
                    return Err(bad(&format!(
                        "unknown option `{key}` (there are connect_timeout, greeting_timeout, command_timeout, data_timeout and starttls)"
                    )));
                }
            }
        }
        if user.is_some() && password.as_deref().is_none_or(str::is_empty) {
            // Said now, not as one failed login per recipient once the run has started.
            return Err(bad(&format!(
                "the URL names a user but {var} is not set: export the password in {var}"
            )));
        }
        Ok(SmtpTarget {
            host,
            port,
            implicit_tls,
            user,
            password,
            timeouts,
            require_tls,
        })
    }

    /// `host:port`, as messages name the relay (never the user).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl SmtpTarget {
    /// Resolves the host now, the way every connect does, so that `check` names a relay
    /// whose host does not resolve before a send rests on it.
    pub fn resolve_now(&self) -> std::result::Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no runtime: {e}"))?;
        runtime
            .block_on(resolve(self))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The URL as it may be printed: never with a password in it.
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_string(),
    }
}

/// A resolved relay: its addresses, and whether they are all loopback (where plain SMTP
/// is allowed, for local test servers and a local MTA).
#[derive(Debug, Clone)]
struct Resolved {
    addrs: Vec<SocketAddr>,
    loopback: bool,
}

async fn resolve(t: &SmtpTarget) -> std::result::Result<Resolved, String> {
    let lookup = tokio::net::lookup_host((t.host.as_str(), t.port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(t.timeouts.connect, lookup).await {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => return Err(format!("cannot resolve the host: {}", os_error(&e))),
        Err(_) => {
            return Err(format!(
                "cannot resolve the host within {}",
                secs(t.timeouts.connect)
            ));
        }
    };
    if addrs.is_empty() {
        return Err("the host has no address".into());
    }
    let loopback = addrs.iter().all(|a| match a.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    });
    Ok(Resolved { addrs, loopback })
}

/// One open, greeted (and where required, encrypted and authenticated) SMTP connection.
pub(super) struct Conn {
    pub(super) smtp: AsyncSmtpConnection,
    /// The server offers PIPELINING (RFC 2920): MAIL, RCPT and DATA go in one write, one
    /// round trip instead of three. lettre does not record the keyword, so `connect` asks
    /// with a second EHLO.
    pipelining: bool,
    timeouts: Timeouts,
}

impl Conn {
    /// QUIT, politely but briefly: a relay that does not answer it is simply dropped.
    pub(super) async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.smtp.quit()).await;
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(super) struct ConnectError {
    /// Trying again cannot help (no STARTTLS where it is required, a refused login, a TLS
    /// failure): the run stops at once.
    pub(super) fatal: bool,
    /// The cause, without host or port (the caller names the relay).
    pub(super) why: String,
}

fn transient(why: String) -> ConnectError {
    ConnectError { fatal: false, why }
}

fn fatal(why: String) -> ConnectError {
    ConnectError { fatal: true, why }
}

/// `1s`, `0.5s`.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// An OS error as a person reads it: `connection refused`, not `Connection refused (os
/// error 111)`.
fn os_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".into(),
    }
}

/// What went wrong with a command, without the server's text (it may quote addresses):
/// the reply code, or how the connection failed.
fn cause(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    let r = reply_of(e);
    if let Some(c) = r.code {
        return match r.enhanced {
            Some(x) => format!("{c} {x}"),
            None => c.to_string(),
        };
    }
    if e.is_tls() {
        return format!("TLS failed: {e}");
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return os_error(io);
        }
        source = s.source();
    }
    if e.is_response() {
        // lettre's word for an end of stream before a whole reply.
        "closed the connection".into()
    } else {
        "connection error".into()
    }
}

/// Whether to go on without STARTTLS: only on loopback, and not even there when the URL
/// says `starttls=required`. Everything else must be encrypted or is not sent.
pub(super) fn plain_allowed(offers_starttls: bool, loopback: bool, required: bool) -> bool {
    !offers_starttls && loopback && !required
}

pub(super) async fn connect(
    t: &SmtpTarget,
    hello: &ClientId,
) -> std::result::Result<Conn, ConnectError> {
    // Resolved on every connect: a relay's addresses may change during a long run, and a
    // name that does not resolve is one more reason for the relay to rest.
    let r = resolve(t).await.map_err(transient)?;
    let mut smtp = open(t, &r, hello).await?;
    let ehlo = tokio::time::timeout(t.timeouts.command, smtp.command(Ehlo::new(hello.clone())));
    let pipelining = match ehlo.await {
        Ok(Ok(resp)) => resp
            .message()
            .any(|l| l.trim().eq_ignore_ascii_case("PIPELINING")),
        Ok(Err(e)) if e.is_permanent() => return Err(fatal(format!("{} at EHLO", cause(&e)))),
        Ok(Err(e)) => return Err(transient(format!("{} at EHLO", cause(&e)))),
        Err(_) => {
            return Err(transient(format!(
                "no answer to EHLO within {}",
                secs(t.timeouts.command)
            )));
        }
    };
    Ok(Conn {
        smtp,
        pipelining,
        timeouts: t.timeouts,
    })
}

async fn open(
    t: &SmtpTarget,
    r: &Resolved,
    hello: &ClientId,
) -> std::result::Result<AsyncSmtpConnection, ConnectError> {
    let tm = t.timeouts;
    let tls = || TlsParameters::new(t.host.clone()).map_err(|e| fatal(format!("TLS setup: {e}")));
    let mut conn = if t.implicit_tls {
        // lettre opens this socket itself, so implicit TLS goes without TCP_NODELAY.
        let opened = AsyncSmtpConnection::connect_tokio1(
            r.addrs.as_slice(),
            Some(tm.connect),
            hello,
            Some(tls()?),
            None,
        );
        match tokio::time::timeout(tm.connect + tm.greeting, opened).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) if e.is_tls() => return Err(fatal(cause(&e))),
            Ok(Err(e)) => return Err(transient(cause(&e))),
            Err(_) => {
                return Err(transient(format!(
                    "no greeting within {}",
                    secs(tm.connect + tm.greeting)
                )));
            }
        }
    } else {
        let mut last = String::from("no address");
        let mut stream = None;
        for addr in &r.addrs {
            match tokio::time::timeout(tm.connect, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last = os_error(&e),
                Err(_) => last = format!("no answer to connect within {}", secs(tm.connect)),
            }
        }
        let stream = stream.ok_or_else(|| transient(last))?;
        stream
            .set_nodelay(true)
            .map_err(|e| transient(format!("TCP_NODELAY: {}", os_error(&e))))?;
        let greeted = AsyncSmtpConnection::connect_with_transport(Box::new(stream), hello);
        let mut conn = match tokio::time::timeout(tm.greeting, greeted).await {
            Ok(Ok(c)) => c,
            // RFC 5321 §3.1: a 554 greeting (or a 5xx to EHLO) is "no service for you here".
            Ok(Err(e)) if e.is_permanent() => {
                return Err(fatal(format!("{} at the greeting", cause(&e))));
            }
            Ok(Err(e)) => return Err(transient(format!("{} at the greeting", cause(&e)))),
            Err(_) => {
                return Err(transient(format!(
                    "no greeting within {}",
                    secs(tm.greeting)
                )));
            }
        };
        if conn.can_starttls() {
            match tokio::time::timeout(tm.command, conn.starttls(tls()?, hello)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(fatal(format!("STARTTLS failed: {}", cause(&e)))),
                Err(_) => {
                    return Err(transient(format!(
                        "no answer to STARTTLS within {}",
                        secs(tm.command)
                    )));
                }
            }
        } else if !plain_allowed(false, r.loopback, t.require_tls) {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
            return Err(fatal(if r.loopback {
                "does not offer STARTTLS, and the URL says starttls=required".into()
            } else {
                "does not offer STARTTLS; tact sends in clear text only to loopback addresses (use smtps:// or a relay with TLS)".into()
            }));
        }
        conn
    };
    if let Some(user) = &t.user {
        let password = t.password.clone().ok_or_else(|| {
            fatal("the URL names a user but TACT_SMTP_PASSWORD is not set".into())
        })?;
        let creds = Credentials::new(user.clone(), password);
        let login = conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds);
        match tokio::time::timeout(tm.command, login).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is_permanent() => {
                return Err(fatal(format!("authentication refused ({})", cause(&e))));
            }
            Ok(Err(e)) => return Err(transient(format!("{} at AUTH", cause(&e)))),
            Err(_) => {
                return Err(transient(format!(
                    "no answer to AUTH within {}",
                    secs(tm.command)
                )));
            }
        }
    }
    Ok(conn)
}

/// The reply code and enhanced status of an SMTP error, never its text (servers quote
/// addresses there).
fn reply_of(e: &lettre::transport::smtp::Error) -> Reply {
    let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
    let text = e.to_string();
    let enhanced = text
        .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && ["2", "4", "5"].contains(&parts[0])
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_string);
    Reply { code, enhanced }
}

fn reply_of_response(r: &lettre::transport::smtp::response::Response) -> Reply {
    let code = r.code().to_string().parse::<u16>().ok();
    let enhanced = r
        .first_word()
        .filter(|w| w.split('.').count() == 3 && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string);
    Reply { code, enhanced }
}

/// What became of one attempt.
pub(super) enum Attempt {
    Sent(Reply),
    /// 4xx, or the connection failed before the message could have been accepted.
    Retry(Reply),
    /// 5xx to RCPT or to the message: never retried.
    Failed(Reply),
    /// 5xx to RCPT saying the mailbox does not exist (`no_such_user`): failed, and counted
    /// by the run's hard-bounce breaker.
    NoSuchUser(Reply),
    /// The recipient's provider asked to slow down (`provider_deferral`): the recipient
    /// stays pending, and only that provider backs off.
    Deferred(Reply),
    /// The sender was refused (5xx to MAIL FROM): the sender's problem, not the
    /// recipient's, who stays pending while the run stops.
    SenderRefused(Reply),
    /// The connection failed after the message was handed over: it may have arrived.
    Uncertain,
}

/// What is left of the connection after an attempt.
#[derive(Debug, PartialEq)]
pub(super) enum After {
    /// Ready for the next message.
    Open,
    /// The relay answered, but the connection is no longer usable: open a new one.
    Drop,
    /// The relay stopped answering, hung up, or is going away (421): the connection is
    /// gone and the relay counts a fault (why, without host or port).
    Fault(String),
    /// It took a whole message and then did not answer within the data timeout: the
    /// message is uncertain, and a relay that does this gets no more of them this run.
    Stalled(String),
}

/// An error reply to a command, or `None` for a dead connection (lettre reports an
/// end of stream as an "incomplete response", without a code).
fn refusal(e: &lettre::transport::smtp::Error) -> Option<(Reply, bool)> {
    e.status()
        .is_some()
        .then(|| (reply_of(e), e.is_permanent()))
}

/// Whether a permanent refusal of RCPT TO says the mailbox does not exist, the sign of a
/// stale list. The enhanced status decides when it says something specific: `5.1.1` (bad
/// mailbox), `5.1.0` (bad address) and `5.1.10` (Exchange's RecipientNotFound) are, and any
/// other (`5.7.1` blocked, `5.2.2` full, `5.1.2` bad domain) is not. Without one, or with
/// the generic `5.0.0` / `5.5.0`, the reply's words decide: how Postfix, Exim, Sendmail,
/// qmail, Exchange, Gmail, Outlook.com and Yahoo say it. The text is read here and never
/// kept (servers quote the address in it).
pub(super) fn no_such_user(enhanced: Option<&str>, text: &str) -> bool {
    match enhanced {
        Some("5.1.1" | "5.1.0" | "5.1.10") => return true,
        Some(x) if x != "5.0.0" && x != "5.5.0" => return false,
        _ => {}
    }
    let text = text.to_ascii_lowercase();
    const SAID: &[&str] = &[
        "user unknown",
        "unknown user",
        "no such user",
        "no such recipient",
        "no such mailbox",
        "unknown recipient",
        "recipient unknown",
        "recipient not found",
        "recipientnotfound",
        "recipnotfound",
        "user not found",
        "mailbox not found",
        "no mailbox here",
        "mailbox does not exist",
        "account does not exist",
        "address does not exist",
        "does not exist here",
        "tried to reach does not exist",
        "user doesn't have a",
        "invalid recipient",
        "mailbox unavailable",
    ];
    SAID.iter().any(|s| text.contains(s))
}

/// Whether a temporary refusal of one recipient (at RCPT TO or after the message) is the
/// recipient's provider asking to slow down: an enhanced status `4.7.x` (Gmail's `4.7.28`
/// rate limit, Microsoft's `4.7.650`, Yahoo's `4.7.0 [TSS04]`, greylisting), or `421` with
/// no enhanced status or a `4.7.x` one. A `421` with another status (`4.3.2` shutting down,
/// `4.4.2` timeout) is the relay itself going away, a fault of the relay as before.
pub(super) fn provider_deferral(reply: &Reply) -> bool {
    let policy = reply
        .enhanced
        .as_deref()
        .is_some_and(|x| x.starts_with("4.7."));
    policy || (reply.code == Some(421) && reply.enhanced.is_none())
}

/// Several commands written at once (RFC 2920 pipelining).
struct Group(Mail, Rcpt, Data);

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.0, self.1, self.2)
    }
}

/// The message with SMTP transparency (RFC 5321 §4.5.2: a line starting with a dot gets
/// another) and the end-of-data line, so that content and terminator go in one write:
/// lettre's `message` writes them separately, two packets a message.
struct Content(String);

impl Content {
    fn new(body: &str) -> Content {
        let mut out = String::with_capacity(body.len() + 16);
        let mut rest = body;
        if rest.starts_with('.') {
            out.push('.');
        }
        // Whole runs between line-initial dots are copied at once: this runs for every
        // message, and a character at a time it cost more than the rest of the hand-over.
        while let Some(i) = rest.find("\n.") {
            out.push_str(&rest[..=i]);
            out.push('.');
            rest = &rest[i + 1..];
        }
        out.push_str(rest);
        out.push_str("\r\n.\r\n");
        Content(out)
    }
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const STEPS: [&str; 3] = ["MAIL FROM", "RCPT TO", "DATA"];

pub(super) async fn transact(
    conn: &mut Conn,
    from: &Address,
    to: &Address,
    body: &[u8],
) -> (Attempt, After) {
    let tm = conn.timeouts;
    let pipelining = conn.pipelining;
    let smtp = &mut conn.smtp;
    let mut params = Vec::new();
    if !body.is_ascii() && smtp.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(Some(from.clone()), params);
    let rcpt = Rcpt::new(to.clone(), vec![]);
    // Before DATA's content is written, nothing can have been delivered.
    let envelope = async {
        if pipelining {
            // Every reply is read, even after a refusal, to keep the stream in step.
            let first = smtp.command(Group(mail, rcpt, Data)).await;
            if first.as_ref().is_err_and(|e| refusal(e).is_none()) {
                vec![first]
            } else {
                let second = smtp.read_response().await;
                let third = if second.as_ref().is_err_and(|e| refusal(e).is_none()) {
                    None
                } else {
                    Some(smtp.read_response().await)
                };
                [Some(first), Some(second), third]
                    .into_iter()
                    .flatten()
                    .collect()
            }
        } else {
            let mut replies = Vec::new();
            for step in 0..3 {
                let r = match step {
                    0 => smtp.command(mail.clone()).await,
                    1 => smtp.command(rcpt.clone()).await,
                    _ => smtp.command(Data).await,
                };
                let stop = r.is_err();
                replies.push(r);
                if stop {
                    break;
                }
            }
            replies
        }
    };
    let Ok(replies) = tokio::time::timeout(tm.command, envelope).await else {
        return (
            Attempt::Retry(Reply::default()),
            After::Fault(format!(
                "no answer to MAIL FROM, RCPT TO or DATA within {}",
                secs(tm.command)
            )),
        );
    };
    let accepted_data = replies.len() == 3 && replies[2].is_ok();
    if let Some((step, e)) = replies
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
    {
        let Some((reply, permanent)) = refusal(e) else {
            return (
                Attempt::Retry(reply_of(e)),
                After::Fault(format!("{} at {}", cause(e), STEPS[step])),
            );
        };
        let said = format!("{} at {}", cause(e), STEPS[step]);
        let attempt = if step == 0 && permanent {
            Attempt::SenderRefused(reply.clone())
        } else if step == 1 && permanent && no_such_user(reply.enhanced.as_deref(), &e.to_string())
        {
            Attempt::NoSuchUser(reply.clone())
        } else if permanent {
            Attempt::Failed(reply.clone())
        } else if step == 1 && provider_deferral(&reply) {
            Attempt::Deferred(reply.clone())
        } else {
            Attempt::Retry(reply.clone())
        };
        if reply.code == Some(421) && matches!(attempt, Attempt::Deferred(_)) {
            // Closing, as 421 always is, but for this recipient's provider: the relay
            // answered and stays in the run.
            return (attempt, After::Drop);
        }
        if reply.code == Some(421) {
            // RFC 5321 §3.8: the server is closing the connection, whatever the command.
            return (attempt, After::Fault(said));
        }
        if accepted_data {
            // A server that said 354 after refusing the sender or recipient (allowed under
            // pipelining) gets an empty message, which has no valid recipient.
            let empty = tokio::time::timeout(tm.data, smtp.command(Content::new(""))).await;
            if !matches!(empty, Ok(Ok(_))) {
                return (attempt, After::Drop);
            }
        }
        let reset = tokio::time::timeout(tm.command, smtp.command(Rset)).await;
        let after = if matches!(reset, Ok(Ok(_))) {
            After::Open
        } else {
            After::Drop
        };
        return (attempt, after);
    }
    let written = tokio::time::timeout(tm.data, async {
        match std::str::from_utf8(body) {
            Ok(text) => smtp.command(Content::new(text)).await,
            Err(_) => smtp.message(body).await,
        }
    })
    .await;
    match written {
        Ok(Ok(resp)) => (Attempt::Sent(reply_of_response(&resp)), After::Open),
        Ok(Err(e)) => match refusal(&e) {
            Some((reply, false)) if provider_deferral(&reply) => {
                let after = if reply.code == Some(421) {
                    After::Drop
                } else {
                    After::Open
                };
                (Attempt::Deferred(reply), after)
            }
            Some((reply, _)) if reply.code == Some(421) => (
                Attempt::Retry(reply),
                After::Fault(format!("{} after a message", cause(&e))),
            ),
            Some((reply, true)) => (Attempt::Failed(reply), After::Open),
            Some((reply, false)) => (Attempt::Retry(reply), After::Open),
            None => (
                Attempt::Uncertain,
                After::Fault(format!("{} after a message", cause(&e))),
            ),
        },
        Err(_) => (
            Attempt::Uncertain,
            After::Stalled(format!(
                "no answer to the end of a message within {}",
                secs(tm.data)
            )),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_line_starting_with_a_dot_gets_another() {
        let c = |b: &str| Content::new(b).0;
        assert_eq!(c("a\r\nb"), "a\r\nb\r\n.\r\n");
        assert_eq!(
            c(".a\r\n.\r\n..b\r\nc.d"),
            "..a\r\n..\r\n...b\r\nc.d\r\n.\r\n"
        );
        assert_eq!(c(""), "\r\n.\r\n");
    }

    #[test]
    fn smtp_urls() {
        let t = SmtpTarget::parse("smtp://127.0.0.1:2525", None).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.implicit_tls, t.user),
            ("127.0.0.1", 2525, false, None)
        );
        let t = SmtpTarget::parse("smtps://mailer@relay.example", Some("pw".into())).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.implicit_tls, t.user.as_deref()),
            ("relay.example", 465, true, Some("mailer"))
        );
        let t = SmtpTarget::parse("smtp://[::1]:25", None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 25));
        let e = SmtpTarget::parse("smtp://u:secret@relay.example:587", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TACT_SMTP_PASSWORD") && !e.contains("secret"),
            "{e}"
        );
        assert!(SmtpTarget::parse("http://x", None).is_err());
    }

    #[test]
    fn a_user_without_a_password_is_refused_naming_the_variable() {
        for pw in [None, Some(String::new())] {
            let e = SmtpTarget::parse_for("smtp://mailer@relay.example:587", pw, "TACT_SES_PW")
                .unwrap_err();
            assert!(e.is_input(), "{e}");
            assert!(e.to_string().contains("TACT_SES_PW"), "{e}");
        }
        assert!(SmtpTarget::parse("smtp://relay.example:587", None).is_ok());
    }

    #[test]
    fn timeouts_and_starttls_from_the_query() {
        let t = SmtpTarget::parse("smtp://127.0.0.1:2525", None).unwrap();
        assert_eq!(t.timeouts, Timeouts::default());
        assert!(!t.require_tls);
        let t = SmtpTarget::parse(
            "smtp://127.0.0.1:2525?connect_timeout=0.5&greeting_timeout=2&command_timeout=3&data_timeout=4&starttls=required",
            None,
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 2525));
        assert_eq!(
            t.timeouts,
            Timeouts {
                connect: Duration::from_millis(500),
                greeting: Duration::from_secs(2),
                command: Duration::from_secs(3),
                data: Duration::from_secs(4),
            }
        );
        assert!(t.require_tls);
        let t =
            SmtpTarget::parse("smtps://u@relay.example?data_timeout=9", Some("p".into())).unwrap();
        assert_eq!((t.port, t.timeouts.data), (465, Duration::from_secs(9)));
        for bad in [
            "smtp://h:25?connect_timeout=0",
            "smtp://h:25?connect_timeout=soon",
            "smtp://h:25?connect_timeout=1&connect_timeout=2",
            "smtp://h:25?timeout=1",
            "smtp://h:25?starttls=maybe",
            "smtps://h:465?starttls=required",
            "smtp://h:25?data_timeout",
        ] {
            let e = SmtpTarget::parse(bad, None).unwrap_err();
            assert!(e.is_input(), "{bad}: {e}");
        }
    }

    /// Clear text only to loopback, and not even there when STARTTLS is required.
    #[test]
    fn starttls_is_required_off_loopback() {
        for (offers, loopback, required, plain) in [
            (true, true, false, false),
            (true, false, false, false),
            (false, true, false, true),
            (false, true, true, false),
            (false, false, false, false),
            (false, false, true, false),
        ] {
            assert_eq!(
                plain_allowed(offers, loopback, required),
                plain,
                "offers {offers} loopback {loopback} required {required}"
            );
        }
    }

    #[test]
    fn no_such_user_by_status_then_by_words() {
        for (enhanced, text, want) in [
            (Some("5.1.1"), "", true),
            (Some("5.1.0"), "", true),
            (Some("5.1.10"), "RESOLVER.ADR.RecipientNotFound", true),
            // The status says something else: the words do not overrule it.
            (Some("5.7.1"), "user unknown", false),
            (Some("5.2.2"), "mailbox full", false),
            (Some("5.1.2"), "domain not found", false),
            (Some("5.1.3"), "bad address syntax", false),
            (Some("5.1.11"), "", false),
            // No status, or a generic one: the words.
            (None, "permanent error (550): No Such User Here", true),
            (
                None,
                "550 sorry, no mailbox here by that name. (#5.1.1)",
                true,
            ),
            (None, "550 <x@y>... User unknown", true),
            (
                Some("5.5.0"),
                "Requested action not taken: mailbox unavailable",
                true,
            ),
            (
                None,
                "554 delivery error: dd This user doesn't have a yahoo.com account",
                true,
            ),
            (
                Some("5.0.0"),
                "Recipient address rejected: undeliverable",
                false,
            ),
            (None, "550 relay access denied", false),
            (None, "550 message rejected as spam", false),
            (None, "", false),
        ] {
            assert_eq!(no_such_user(enhanced, text), want, "{enhanced:?} {text:?}");
        }
    }

    #[test]
    fn provider_deferrals_are_421_or_4_7() {
        let r = |code: u16, x: Option<&str>| Reply {
            code: Some(code),
            enhanced: x.map(str::to_string),
        };
        for (reply, want) in [
            (r(421, Some("4.7.0")), true),
            (r(421, Some("4.7.28")), true),
            (r(421, None), true),
            (r(451, Some("4.7.650")), true),
            (r(450, Some("4.7.1")), true),
            (r(421, Some("4.3.2")), false),
            (r(421, Some("4.4.2")), false),
            (r(421, Some("4.0.0")), false),
            (r(450, Some("4.2.2")), false),
            (r(451, None), false),
            (r(452, Some("4.5.3")), false),
        ] {
            assert_eq!(provider_deferral(&reply), want, "{reply:?}");
        }
    }

    #[test]
    fn os_errors_read_like_words() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(os_error(&e), "connection refused");
        assert_eq!(secs(Duration::from_secs(30)), "30s");
        assert_eq!(secs(Duration::from_millis(500)), "0.5s");
    }
}
