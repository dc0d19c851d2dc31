//! The one-click unsubscribe endpoint (RFC 8058), the only part of tact that faces the
//! internet: what it answers (`handle`), and a small HTTP/1.1 server built for hostile
//! clients (`serve`).
//!
//! Any path, with the token in the query (`?t=TOKEN`, as the campaign's unsubscribe URL
//! gets it). `POST` with the body `List-Unsubscribe=One-Click` (urlencoded or multipart)
//! opens the token with the token key alone and suppresses that recipient (reason
//! `unsubscribe`; again is harmless). `GET` only shows a page with a button that makes that
//! POST: mail scanners follow links, so a GET never unsubscribes anyone. No redirects, no
//! cookies; a bad, forged or missing token gets 400 and changes nothing. The log names a
//! campaign at most, never an address, a token or a client.
//!
//! Slow clients cannot hold anyone else up: the accept loop never reads; each connection
//! has its own thread, a timeout on every read and write, and one deadline for the whole
//! request; the head and the body have small limits, and a request over them is answered
//! at once without reading the rest. One request per connection. At `MAX_CONNECTIONS` a
//! new connection evicts the oldest one still waiting for its request: a client that sends
//! its request at once is done in milliseconds, so an attacker would have to open the
//! whole cap's worth of connections within those milliseconds to crowd it out, while
//! stalled connections are what get dropped. Only when every slot is busy answering (never
//! with stalled clients) does a newcomer get a canned 503.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::state::ledger::Ledger;
use crate::state::{Opened, TokenKey};

/// The request line and headers: a token is ~100 characters, but a browser may send the
/// cookies of a domain the endpoint shares (as nginx's default buffers allow).
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;
/// The RFC 8058 body is 26 bytes, a multipart one a few hundred.
pub const MAX_BODY: usize = 4 * 1024;
/// Connections served at once, each on its own thread; a newcomer past it evicts the
/// oldest connection still reading its request.
pub const MAX_CONNECTIONS: usize = 512;
/// Evicted connections' threads end within a read; until they have, this many more may
/// run, so that the number of threads stays bounded whatever clients do.
const EVICTION_SLACK: usize = 64;
/// Any one read or write may wait this long ...
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// ... and the whole request (head and body) must have arrived by this deadline.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// How long a stop waits for requests still being read or answered.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What to answer, free of any HTTP machinery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub html: String,
    /// Campaign-level line for the log, if the request is worth one.
    pub log: Option<String>,
}

impl Answer {
    fn page(status: u16, title: &str, text: &str, extra: &str, log: Option<String>) -> Answer {
        Answer {
            status,
            html: format!(
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                 <meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\n\
                 <body style=\"font-family: sans-serif; max-width: 32em; margin: 3em auto; padding: 0 1em\">\
                 <h1>{title}</h1>\n<p>{text}</p>\n{extra}</body></html>\n"
            ),
            log,
        }
    }

    fn invalid(why: &str) -> Answer {
        Answer::page(
            400,
            "This unsubscribe link is not valid",
            "It may have been cut short. Copy the whole link from the email, or reply to the email and ask to be unsubscribed.",
            "",
            Some(format!("rejected a request: {why}")),
        )
    }

    /// The inert token of a test message, whatever the method: nobody is unsubscribed.
    fn test_message(campaign: &str) -> Answer {
        Answer::page(
            200,
            "This was a test message",
            &format!(
                "This link came from a test message of campaign <code>{}</code>; nobody was unsubscribed.",
                escape(campaign)
            ),
            "",
            Some(format!(
                "answered a test message's token (campaign {campaign}); nobody was unsubscribed"
            )),
        )
    }

    /// A request refused for its form, before any token is looked at.
    fn refused(status: u16, text: &str) -> Answer {
        Answer::page(status, reason(status), text, "", None)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// `%41` and `+` decoding of one form or query component.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_pairs(s: &str) -> impl Iterator<Item = (String, String)> + '_ {
    s.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(k), percent_decode(v))
    })
}

/// The one `t` of the query; `None` when it is missing or given twice.
fn token_in(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    let mut tokens = form_pairs(query).filter(|(k, _)| k == "t").map(|(_, v)| v);
    let t = tokens.next()?;
    tokens.next().is_none().then_some(t)
}

fn is_one_click(key: &str, value: &str) -> bool {
    key.trim() == "List-Unsubscribe" && value.trim().eq_ignore_ascii_case("One-Click")
}

/// Whether the body says `List-Unsubscribe=One-Click`, urlencoded or as multipart/form-data.
fn says_one_click(content_type: Option<&str>, body: &[u8]) -> bool {
    let ct = content_type.unwrap_or("").trim();
    if ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return multipart_one_click(ct, body);
    }
    std::str::from_utf8(body).is_ok_and(|s| form_pairs(s.trim()).any(|(k, v)| is_one_click(&k, &v)))
}

fn multipart_one_click(content_type: &str, body: &[u8]) -> bool {
    let Some(boundary) = content_type.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    }) else {
        return false;
    };
    if boundary.is_empty() {
        return false;
    }
    let body = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    body.split(delimiter.as_str()).skip(1).any(|part| {
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'));
        let Some(part) = part else { return false };
        let (head, value) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))
            .unwrap_or((part, ""));
        let named = head.lines().any(|h| {
            let h = h.to_ascii_lowercase();
            h.starts_with("content-disposition:")
                && (h.contains("name=\"list-unsubscribe\"") || h.contains("name=list-unsubscribe"))
        });
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(value);
        named && value.trim().eq_ignore_ascii_case("One-Click")
    })
}

/// Answers one request. Only a valid token with a one-click POST writes anything.
pub fn handle(
    key: &TokenKey,
    ledger: &Mutex<Ledger>,
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Answer {
    let method = method.to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "HEAD" | "POST") {
        return Answer::page(
            405,
            "Method not allowed",
            "Open the link from the email in a browser.",
            "",
            None,
        );
    }
    let Some(token) = token_in(url) else {
        return Answer::invalid("no token");
    };
    let token = token.trim();
    let campaign = match key.open_any(token) {
        None => return Answer::invalid("invalid token"),
        Some(Opened::Test { campaign }) => return Answer::test_message(&campaign),
        Some(Opened::Recipient { campaign, .. }) => campaign,
    };
    let campaign_html = escape(&campaign);
    if method != "POST" {
        // The token opened, so it is base64url only: safe in an attribute as it is.
        let form = format!(
            "<form method=\"post\" action=\"?t={token}\">\
             <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\" style=\"font-size: 1.2em; padding: .5em 1.5em\">Unsubscribe</button></form>\n"
        );
        return Answer::page(
            200,
            "Unsubscribe?",
            &format!(
                "Press the button to get no more marketing email from us. (You reached this page from the email of campaign <code>{campaign_html}</code>.)"
            ),
            &form,
            None,
        );
    }
    if !says_one_click(content_type, body) {
        return Answer::page(
            400,
            "Nothing was changed",
            "This address unsubscribes with the body <code>List-Unsubscribe=One-Click</code> (RFC 8058). Use the button on the page the link opens.",
            "",
            Some("rejected a POST without List-Unsubscribe=One-Click".into()),
        );
    }
    let outcome = match ledger.lock() {
        Ok(l) => l.unsubscribe_token(key, token, now),
        Err(_) => Err(crate::Error::Other("the ledger lock is poisoned".into())),
    };
    match outcome {
        Ok(Some(u)) => Answer::page(
            200,
            "You are unsubscribed",
            "You will get no more marketing email from us. Nothing else is needed.",
            "",
            Some(if u.new {
                format!("unsubscribed one recipient of campaign {}", u.campaign)
            } else {
                format!(
                    "one recipient of campaign {} was already unsubscribed",
                    u.campaign
                )
            }),
        ),
        Ok(None) => Answer::invalid("invalid token"),
        Err(e) => Answer::page(
            503,
            "Please try again",
            "We could not record your request just now. Please try again in a minute.",
            "",
            Some(format!("could not record an unsubscribe: {e}")),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// A request head that parsed, and how long its body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub content_type: Option<String>,
    /// Bytes of the head, up to and including the blank line.
    pub len: usize,
    pub body_len: usize,
    /// `Expect: 100-continue`: the client waits for a go-ahead before the body.
    pub expect_continue: bool,
}

/// What the bytes received so far make of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not all of the head yet (and still within `MAX_HEAD`).
    Partial,
    Head(Head),
    /// Answer this and close, without reading any more.
    Refuse(Answer),
}

/// Parses the head from the start of `buf`, within the limits. Pure and total: whatever
/// the bytes, it returns (the property tests feed it anything).
pub fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut rq = httparse::Request::new(&mut headers);
    let len = match rq.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Parsed::Refuse(Answer::refused(431, "The request head is too large."));
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refuse(Answer::refused(431, "The request has too many headers."));
        }
        Err(_) => return Parsed::Refuse(Answer::refused(400, "The request could not be read.")),
    };
    if len > MAX_HEAD {
        return Parsed::Refuse(Answer::refused(431, "The request head is too large."));
    }
    let (Some(method), Some(target)) = (rq.method, rq.path) else {
        return Parsed::Refuse(Answer::refused(400, "The request could not be read."));
    };
    let value = |name: &str| -> Vec<String> {
        rq.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .collect()
    };
    // Bodies come with a Content-Length; a chunked or otherwise framed body is refused
    // rather than decoded (and both framings at once is how requests get smuggled).
    if !value("transfer-encoding").is_empty() {
        return Parsed::Refuse(Answer::refused(411, "Send the body with a Content-Length."));
    }
    let lengths = value("content-length");
    let body_len = match lengths.split_first() {
        None => 0,
        Some((first, rest)) => {
            let digits = !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit());
            if !digits || rest.iter().any(|r| r != first) {
                return Parsed::Refuse(Answer::refused(400, "The request could not be read."));
            }
            // Digits too many for a u64 are too large as well.
            match first.parse::<u64>() {
                Ok(n) if n <= MAX_BODY as u64 => n as usize,
                _ => return Parsed::Refuse(Answer::refused(413, "This request is too large.")),
            }
        }
    };
    Parsed::Head(Head {
        method: method.to_string(),
        target: target.to_string(),
        content_type: value("content-type").into_iter().next(),
        len,
        body_len,
        expect_continue: value("expect")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("100-continue")),
    })
}

/// The answer to one whole request as bytes, as `serve` would give it after reading them
/// all: a request cut short is a 400. For the property tests and anything that has the
/// request in hand.
pub fn answer_bytes(
    raw: &[u8],
    key: &TokenKey,
    ledger: &Mutex<Ledger>,
    now: DateTime<Utc>,
) -> Answer {
    match parse_head(raw) {
        Parsed::Partial => Answer::refused(400, "The request was cut short."),
        Parsed::Refuse(a) => a,
        Parsed::Head(h) => match raw.get(h.len..h.len + h.body_len) {
            Some(body) => handle(
                key,
                ledger,
                &h.method,
                &h.target,
                h.content_type.as_deref(),
                body,
                now,
            ),
            None => Answer::refused(400, "The request was cut short."),
        },
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The whole response, headers and (unless HEAD) body.
pub fn response_bytes(answer: &Answer, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         X-Robots-Tag: noindex\r\nContent-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; \
         form-action 'self'; frame-ancestors 'none'\r\n{}Connection: close\r\n\r\n",
        answer.status,
        reason(answer.status),
        Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        answer.html.len(),
        if answer.status == 405 {
            "Allow: GET, HEAD, POST\r\n"
        } else {
            ""
        },
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(answer.html.as_bytes());
    }
    out
}

/// What every connection shares.
pub struct Endpoint {
    pub key: TokenKey,
    pub ledger: Mutex<Ledger>,
    /// The time of a request (`--now` shifts it; it still runs).
    pub now: Box<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    /// Where campaign-level lines go (never an address, a token or a client).
    pub log: Box<dyn Fn(&str) + Send + Sync>,
}

/// One read into `buf`, of at most `max - buf.len()` bytes, waiting at most `IO_TIMEOUT`
/// and never past the deadline. `false` when nothing came: closed, timed out or failed.
fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>, max: usize, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || stream.set_read_timeout(Some(left.min(IO_TIMEOUT))).is_err() {
        return false;
    }
    let mut chunk = [0u8; 4096];
    let room = max.saturating_sub(buf.len()).min(chunk.len());
    match stream.read(&mut chunk[..room]) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads one request within the limits and the deadline, and says what to answer.
fn read_request(stream: &mut TcpStream, ep: &Endpoint, waiting: &AtomicBool) -> (Answer, bool) {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let head = loop {
        match parse_head(&buf) {
            Parsed::Head(h) => break h,
            Parsed::Refuse(a) => return (a, false),
            Parsed::Partial => {}
        }
        // The head is parsed again from the start after each read (at most 16 KiB).
        if buf.len() >= MAX_HEAD || !read_some(stream, &mut buf, MAX_HEAD, deadline) {
            return (
                Answer::refused(408, "The request did not arrive in time."),
                false,
            );
        }
    };
    let head_only = head.method.eq_ignore_ascii_case("HEAD");
    let want = head.len + head.body_len;
    if head.expect_continue && buf.len() < want {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    while buf.len() < want {
        if !read_some(stream, &mut buf, want, deadline) {
            return (
                Answer::refused(408, "The request did not arrive in time."),
                head_only,
            );
        }
    }
    // From here the request is being answered: evicting it now would drop an answer whose
    // suppression may already be committed.
    waiting.store(false, Ordering::SeqCst);
    let answer = handle(
        &ep.key,
        &ep.ledger,
        &head.method,
        &head.target,
        head.content_type.as_deref(),
        &buf[head.len..want],
        (ep.now)(),
    );
    (answer, head_only)
}

fn serve_connection(mut stream: TcpStream, ep: &Endpoint, waiting: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (answer, head_only) = read_request(&mut stream, ep, waiting);
    if let Some(line) = &answer.log {
        (ep.log)(line);
    }
    let _ = stream.write_all(&response_bytes(&answer, head_only));
    // Answered: what is left is draining the client, which may be cut short.
    waiting.store(true, Ordering::SeqCst);
    linger_close(stream);
}

/// The connections being served, oldest first, each with a handle to cut it and whether
/// it is still waiting for its client (reading the request, or draining after the answer).
#[derive(Default)]
struct Open {
    next: u64,
    conns: std::collections::BTreeMap<u64, (TcpStream, Arc<AtomicBool>)>,
}

/// The registry holds no invariant a panicking thread could break halfway: a poisoned
/// lock is taken as it is.
fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Open {
    /// Cuts the oldest connection still waiting for its client; its thread's next read
    /// ends at once. `false` when every connection is busy answering.
    fn evict_oldest_waiting(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .find(|(_, (_, waiting))| waiting.load(Ordering::SeqCst))
            .map(|(id, _)| *id);
        let Some((stream, _)) = oldest.and_then(|id| self.conns.remove(&id)) else {
            return false;
        };
        let _ = stream.shutdown(Shutdown::Both);
        true
    }
}

/// Closes after the answer. Closing with unread bytes from the client would reset the
/// connection, and the client could lose the answer (a 413 before its body): so the
/// write side is shut, and what still arrives is read and dropped, briefly and bounded.
fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Accepts until `stop` is set (and a connection wakes the loop: see `wake`), each
/// connection on its own thread. Then waits for those still running, at most
/// `SHUTDOWN_GRACE`: a client stalling its request must not hold up a stop, and an answer
/// is only written after its suppression is committed, so a cut connection loses nothing
/// (the client sees no 200 and may try again).
pub fn serve(listener: &TcpListener, ep: &Arc<Endpoint>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(Mutex::new(Open::default()));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = conn else {
            // Out of file descriptors, or a client that left before accept: go on.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let admitted = {
            let mut open = lock(&open);
            let room = open.conns.len() < MAX_CONNECTIONS || open.evict_oldest_waiting();
            room && active.load(Ordering::SeqCst) < MAX_CONNECTIONS + EVICTION_SLACK
        };
        let waiting = Arc::new(AtomicBool::new(true));
        let handle = stream.try_clone();
        let (true, Ok(handle)) = (admitted, handle) else {
            // Never read here: a canned answer fits the socket buffer, and close.
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let busy = Answer::refused(503, "Too busy just now. Please try again in a minute.");
            let _ = stream.write_all(&response_bytes(&busy, false));
            continue;
        };
        let id = {
            let mut open = lock(&open);
            let id = open.next;
            open.next += 1;
            open.conns.insert(id, (handle, waiting.clone()));
            id
        };
        active.fetch_add(1, Ordering::SeqCst);
        let (ep, count, registry) = (ep.clone(), active.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("unsubscribe".into())
            .stack_size(512 * 1024)
            .spawn(move || {
                serve_connection(stream, &ep, &waiting);
                lock(&registry).conns.remove(&id);
                count.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            lock(&open).conns.remove(&id);
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let until = Instant::now() + SHUTDOWN_GRACE;
    while active.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Unblocks `serve`'s accept after `stop` was set.
pub fn wake(listener_addr: std::net::SocketAddr) {
    let mut addr = listener_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::Keys;

    fn now() -> DateTime<Utc> {
        crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
    }

    #[test]
    fn a_test_message_token_answers_so_and_suppresses_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::from_master(&[9; 32]);
        let key = keys.token_key();
        let ledger = Mutex::new(Ledger::open(dir.path(), false).unwrap());
        let url = format!("/u?t={}", keys.seal_test_token("winter-sale"));
        let form = Some("application/x-www-form-urlencoded");
        for method in ["GET", "POST"] {
            let a = handle(
                key,
                &ledger,
                method,
                &url,
                form,
                b"List-Unsubscribe=One-Click",
                now(),
            );
            assert_eq!(a.status, 200, "{method}");
            assert!(a.html.contains("This was a test message"), "{}", a.html);
            assert!(a.html.contains("nobody was unsubscribed"), "{}", a.html);
            assert!(!a.html.contains("<form"), "a test page offers no button");
        }
        let l = ledger.lock().unwrap();
        assert!(!l.is_suppressed(&[0; 32]).unwrap());
        assert!(l.audit_events(None).unwrap().is_empty());
    }

    #[test]
    fn only_a_one_click_post_with_a_valid_token_unsubscribes() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::from_master(&[9; 32]);
        let key = keys.token_key();
        let ledger = Mutex::new(Ledger::open(dir.path(), false).unwrap());
        let h = keys.recipient_hash("ann@example.com");
        let t = keys.seal_token("winter-sale", &h);
        let url = format!("/unsubscribe?t={t}");
        let form = Some("application/x-www-form-urlencoded");
        let suppressed = || ledger.lock().unwrap().is_suppressed(&h).unwrap();

        let get = handle(key, &ledger, "GET", &url, None, b"", now());
        assert_eq!(get.status, 200);
        assert!(get.html.contains("method=\"post\""));
        assert!(!suppressed(), "a GET must never unsubscribe");

        let no_body = handle(key, &ledger, "POST", &url, form, b"", now());
        assert_eq!(no_body.status, 400);
        assert!(!suppressed());

        let mut forged = t.clone().into_bytes();
        forged[40] = if forged[40] == b'A' { b'B' } else { b'A' };
        let forged = format!("/u?t={}", String::from_utf8(forged).unwrap());
        let body = b"List-Unsubscribe=One-Click";
        assert_eq!(
            handle(key, &ledger, "POST", &forged, form, body, now()).status,
            400
        );
        assert_eq!(
            handle(key, &ledger, "POST", "/u", form, body, now()).status,
            400
        );
        assert_eq!(
            handle(
                key,
                &ledger,
                "POST",
                &format!("{url}&t={t}"),
                form,
                body,
                now()
            )
            .status,
            400,
            "two tokens are ambiguous"
        );
        assert!(!suppressed());

        let ok = handle(key, &ledger, "POST", &url, form, body, now());
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.log.as_deref(),
            Some("unsubscribed one recipient of campaign winter-sale")
        );
        assert!(suppressed());
        assert!(!ok.html.contains("ann"));
        let again = handle(key, &ledger, "POST", &url, form, body, now());
        assert_eq!(again.status, 200, "idempotent");
        assert_eq!(
            handle(key, &ledger, "DELETE", &url, None, b"", now()).status,
            405
        );
    }

    #[test]
    fn bodies_urlencoded_and_multipart() {
        let form = Some("application/x-www-form-urlencoded");
        assert!(says_one_click(form, b"List-Unsubscribe=One-Click"));
        assert!(says_one_click(form, b"List-Unsubscribe=One-Click\r\n"));
        assert!(says_one_click(None, b"a=1&List-Unsubscribe=One%2DClick"));
        assert!(!says_one_click(form, b"List-Unsubscribe=Maybe"));
        assert!(!says_one_click(form, b""));
        let mp = b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
        assert!(says_one_click(
            Some("multipart/form-data; boundary=XyZ"),
            mp
        ));
        assert!(says_one_click(
            Some("multipart/form-data; boundary=\"XyZ\""),
            mp
        ));
        assert!(!says_one_click(
            Some("multipart/form-data; boundary=other"),
            mp
        ));
        assert_eq!(percent_decode("a%2Db+c%zz%4"), "a-b c%zz%4");
        assert_eq!(token_in("/x?list=1&t=abc#frag").as_deref(), Some("abc"));
        assert_eq!(token_in("/x"), None);
    }

    #[test]
    fn heads_within_limits_parse_and_others_are_refused_at_once() {
        let status = |raw: &[u8]| match parse_head(raw) {
            Parsed::Refuse(a) => a.status,
            Parsed::Partial => 0,
            Parsed::Head(_) => 1,
        };
        let ok = b"POST /u?t=x HTTP/1.1\r\nHost: a\r\nContent-Length: 26\r\nExpect: 100-continue\r\n\r\n";
        match parse_head(ok) {
            Parsed::Head(h) => {
                assert_eq!((h.len, h.body_len, h.expect_continue), (ok.len(), 26, true));
                assert_eq!((h.method.as_str(), h.target.as_str()), ("POST", "/u?t=x"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(status(b"POST /u HTTP/1.1\r\nHost: a\r\n"), 0, "partial");
        assert_eq!(
            status(b"POST /u HTTP/1.1\r\nContent-Length: 60000\r\n\r\n"),
            413
        );
        assert_eq!(
            status(b"POST /u HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            413
        );
        assert_eq!(
            status(b"POST /u HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST /u HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(status(b"\x00\x01garbage\r\n\r\n"), 400);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(status(long.as_bytes()), 431);
    }

    mod requests {
        use super::super::*;
        use crate::state::Keys;
        use proptest::prelude::*;

        const MP: &str = "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";

        fn now() -> DateTime<Utc> {
            crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap_or_default()
        }

        fn suppressed(ledger: &Mutex<Ledger>) -> usize {
            ledger
                .lock()
                .map(|l| {
                    l.facts("-", 0, now())
                        .map(|f| f.suppressed.len())
                        .unwrap_or(usize::MAX)
                })
                .unwrap_or(usize::MAX)
        }

        fn fresh() -> (tempfile::TempDir, Mutex<Ledger>) {
            let dir = tempfile::tempdir().expect("tempdir");
            let ledger = Ledger::open(dir.path(), false).expect("ledger");
            (dir, Mutex::new(ledger))
        }

        #[derive(Debug, Clone)]
        enum Token {
            None,
            Valid,
            Twice,
            Forged(prop::sample::Index),
            OtherKey,
            Garbage(String),
        }

        #[derive(Debug, Clone)]
        enum Body {
            OneClick,
            Multipart,
            Other(Vec<u8>),
        }

        #[derive(Debug, Clone, Copy, PartialEq)]
        enum Length {
            Right,
            Missing,
            TooLong,
        }

        fn token() -> impl Strategy<Value = Token> {
            prop_oneof![
                Just(Token::None),
                Just(Token::Valid),
                Just(Token::Twice),
                any::<prop::sample::Index>().prop_map(Token::Forged),
                Just(Token::OtherKey),
                "[A-Za-z0-9_%+=&-]{0,120}".prop_map(Token::Garbage),
            ]
        }

        fn body() -> impl Strategy<Value = Body> {
            prop_oneof![
                Just(Body::OneClick),
                Just(Body::Multipart),
                proptest::collection::vec(any::<u8>(), 0..300).prop_map(Body::Other),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

            /// Bytes off the wire, whatever they are: an answer, never a panic, and nobody
            /// suppressed. Also behind a real request line with a real token.
            #[test]
            fn arbitrary_bytes_are_answered_and_suppress_nobody(
                raw in proptest::collection::vec(any::<u8>(), 0..2000),
                text in "\\PC{0,400}",
            ) {
                let keys = Keys::from_master(&[3; 32]);
                let (_d, ledger) = fresh();
                for bytes in [raw.clone(), text.clone().into_bytes()] {
                    let a = answer_bytes(&bytes, keys.token_key(), &ledger, now());
                    prop_assert!(a.status >= 400, "{}", a.status);
                }
                prop_assert_eq!(suppressed(&ledger), 0);
                let t = keys.seal_token("c", &[1; 32]);
                let mut prefixed = format!("POST /u?t={t} HTTP/1.1\r\n").into_bytes();
                prefixed.extend_from_slice(&raw);
                let _ = answer_bytes(&prefixed, keys.token_key(), &ledger, now());
                let _ = parse_head(&prefixed);
            }

            /// Requests of every shape: exactly a well-framed POST of the one-click body
            /// with one valid token suppresses, and only that token's recipient.
            #[test]
            fn only_a_valid_token_in_a_one_click_post_suppresses(
                method in prop_oneof![Just("POST".to_string()), Just("post".to_string()), Just("GET".to_string()), Just("HEAD".to_string()), Just("PUT".to_string()), "[A-Z]{1,8}"],
                path in "/[a-z/]{0,20}",
                tok in token(),
                // Any parameter but `t`: a second `t` makes the request ambiguous, refused.
                extra_query in "([a-su-z][a-z]{0,4}|t[a-z]{1,4})=[a-z0-9]{0,5}",
                query_first in any::<bool>(),
                content_type in prop_oneof![Just(None), Just(Some("application/x-www-form-urlencoded")), Just(Some("text/plain"))],
                headers in proptest::collection::vec(("X-[a-z]{1,8}", "[ -~]{0,40}"), 0..6),
                body in body(),
                length in prop_oneof![Just(Length::Right), Just(Length::Missing), Just(Length::TooLong)],
                hash in any::<[u8; 32]>(),
            ) {
                let keys = Keys::from_master(&[3; 32]);
                let valid = keys.seal_token("winter-sale", &hash);
                let t = match &tok {
                    Token::None => None,
                    Token::Valid => Some(valid.clone()),
                    Token::Twice => Some(format!("{valid}&t={valid}")),
                    Token::Forged(i) => {
                        let mut b = valid.clone().into_bytes();
                        let i = i.index(b.len() - 1);
                        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                        Some(String::from_utf8(b).unwrap_or_default())
                    }
                    Token::OtherKey => Some(Keys::from_master(&[4; 32]).seal_token("winter-sale", &hash)),
                    Token::Garbage(g) => Some(g.clone()),
                };
                let query = match (&t, query_first) {
                    (None, _) => format!("?{extra_query}"),
                    (Some(t), true) => format!("?{extra_query}&t={t}"),
                    (Some(t), false) => format!("?t={t}&{extra_query}"),
                };
                let (ct, payload) = match &body {
                    Body::OneClick => (content_type.map(str::to_string), b"List-Unsubscribe=One-Click".to_vec()),
                    Body::Multipart => (Some("multipart/form-data; boundary=XyZ".to_string()), MP.as_bytes().to_vec()),
                    Body::Other(b) => (content_type.map(str::to_string), b.clone()),
                };
                let mut raw = format!("{method} {path}{query} HTTP/1.1\r\nHost: example.com\r\n").into_bytes();
                for (k, v) in &headers {
                    raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
                }
                if let Some(ct) = &ct {
                    raw.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
                }
                match length {
                    Length::Right => raw.extend_from_slice(format!("Content-Length: {}\r\n", payload.len()).as_bytes()),
                    Length::TooLong => raw.extend_from_slice(format!("Content-Length: {}\r\n", payload.len() + 5).as_bytes()),
                    Length::Missing => {}
                }
                raw.extend_from_slice(b"\r\n");
                raw.extend_from_slice(&payload);

                let (_d, ledger) = fresh();
                let a = answer_bytes(&raw, keys.token_key(), &ledger, now());
                let should = matches!(tok, Token::Valid)
                    && method.eq_ignore_ascii_case("POST")
                    && !matches!(body, Body::Other(_))
                    && length == Length::Right;
                prop_assert_eq!(suppressed(&ledger), usize::from(should), "answered {}", a.status);
                if should {
                    prop_assert_eq!(a.status, 200);
                    let l = ledger.lock().map_err(|_| TestCaseError::fail("lock"))?;
                    prop_assert!(l.is_suppressed(&hash).unwrap_or(false));
                }
            }
        }
    }
}
