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

/// How to reach the relay. The password comes only from the environment.
#[derive(Debug, Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub implicit_tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl SmtpTarget {
    /// `smtp://[user@]host:port` (STARTTLS) or `smtps://[user@]host:port` (implicit TLS).
    pub fn parse(url: &str, password: Option<String>) -> Result<SmtpTarget> {
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
        Ok(SmtpTarget {
            host,
            port,
            implicit_tls,
            user,
            password,
        })
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

async fn resolve(t: &SmtpTarget) -> Result<Resolved> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|e| Error::Other(format!("cannot resolve SMTP host {}: {e}", t.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Other(format!("SMTP host {} has no address", t.host)));
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
}

pub(super) async fn connect(t: &SmtpTarget, hello: &ClientId) -> std::result::Result<Conn, String> {
    // Resolved on every connect: a relay's addresses may change during a long run, and a
    // name that does not resolve is one more reason for the relay to rest.
    let r = resolve(t).await.map_err(|e| e.to_string())?;
    let mut smtp = open(t, &r, hello).await?;
    let pipelining = match smtp.command(Ehlo::new(hello.clone())).await {
        Ok(resp) => resp
            .message()
            .any(|l| l.trim().eq_ignore_ascii_case("PIPELINING")),
        Err(e) => return Err(format!("EHLO: {}", code_of(&e))),
    };
    Ok(Conn { smtp, pipelining })
}

async fn open(
    t: &SmtpTarget,
    r: &Resolved,
    hello: &ClientId,
) -> std::result::Result<AsyncSmtpConnection, String> {
    let tls = || TlsParameters::new(t.host.clone()).map_err(|e| format!("TLS setup: {e}"));
    let mut conn = if t.implicit_tls {
        // lettre opens this socket itself, so implicit TLS goes without TCP_NODELAY.
        AsyncSmtpConnection::connect_tokio1(
            r.addrs.as_slice(),
            Some(Duration::from_secs(30)),
            hello,
            Some(tls()?),
            None,
        )
        .await
        .map_err(|e| format!("cannot connect: {e}"))?
    } else {
        let mut last = String::from("no address");
        let mut stream = None;
        for addr in &r.addrs {
            match tokio::time::timeout(
                Duration::from_secs(30),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        let stream =
            stream.ok_or_else(|| format!("cannot connect to {}:{}: {last}", t.host, t.port))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), hello)
            .await
            .map_err(|e| format!("greeting: {e}"))?;
        if conn.can_starttls() {
            conn.starttls(tls()?, hello)
                .await
                .map_err(|e| format!("STARTTLS: {e}"))?;
        } else if !r.loopback {
            let _ = conn.quit().await;
            return Err(format!(
                "{} does not offer STARTTLS; tact sends in clear text only to loopback addresses (use smtps:// or a relay with TLS)",
                t.host
            ));
        }
        conn
    };
    if let Some(user) = &t.user {
        let password = t
            .password
            .clone()
            .ok_or("the URL names a user but TACT_SMTP_PASSWORD is not set")?;
        let creds = Credentials::new(user.clone(), password);
        conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
            .await
            .map_err(|e| format!("authentication failed: {}", code_of(&e)))?;
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

fn code_of(e: &lettre::transport::smtp::Error) -> String {
    let r = reply_of(e);
    match (r.code, r.enhanced) {
        (Some(c), Some(x)) => format!("{c} {x}"),
        (Some(c), None) => c.to_string(),
        _ if e.is_timeout() => "timeout".into(),
        _ if e.is_tls() => "TLS error".into(),
        _ => "connection error".into(),
    }
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
    /// 5xx: never retried.
    Failed(Reply),
    /// The connection failed after the message was handed over: it may have arrived.
    Uncertain,
}

/// An error reply to a command, or `None` for a dead connection (lettre reports an
/// end of stream as an "incomplete response", without a code).
fn refusal(e: &lettre::transport::smtp::Error) -> Option<(Reply, bool)> {
    e.status()
        .is_some()
        .then(|| (reply_of(e), e.is_permanent()))
}

/// The attempt a refusal makes, and whether the connection can go on (421: the server is
/// closing it, RFC 5321 §3.8).
fn refused(reply: Reply, permanent: bool) -> (Attempt, bool) {
    let open = reply.code != Some(421);
    let attempt = if permanent {
        Attempt::Failed(reply)
    } else {
        Attempt::Retry(reply)
    };
    (attempt, open)
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

pub(super) async fn transact(
    conn: &mut Conn,
    from: &Address,
    to: &Address,
    body: &[u8],
) -> (Attempt, bool) {
    let smtp = &mut conn.smtp;
    let mut params = Vec::new();
    if !body.is_ascii() && smtp.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(Some(from.clone()), params);
    let rcpt = Rcpt::new(to.clone(), vec![]);
    // Before DATA's content is written, nothing can have been delivered.
    let replies = if conn.pipelining {
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
    };
    let accepted_data = replies.len() == 3 && replies[2].is_ok();
    if let Some(e) = replies.iter().find_map(|r| r.as_ref().err()) {
        let Some((reply, permanent)) = refusal(e) else {
            return (Attempt::Retry(reply_of(e)), false);
        };
        if accepted_data {
            // A server that said 354 after refusing the sender or recipient (allowed under
            // pipelining) gets an empty message, which has no valid recipient.
            if smtp.command(Content::new("")).await.is_err() {
                return (refused(reply, permanent).0, false);
            }
        }
        let (attempt, open) = refused(reply, permanent);
        if open {
            let _ = smtp.command(Rset).await;
        }
        return (attempt, open);
    }
    let written = match std::str::from_utf8(body) {
        Ok(text) => smtp.command(Content::new(text)).await,
        Err(_) => smtp.message(body).await,
    };
    match written {
        Ok(resp) => (Attempt::Sent(reply_of_response(&resp)), true),
        Err(e) => match refusal(&e) {
            Some((reply, permanent)) => refused(reply, permanent),
            None => (Attempt::Uncertain, false),
        },
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
}
