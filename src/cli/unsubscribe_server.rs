//! `tact unsubscribe-server --listen ADDR`: the one-click unsubscribe endpoint (RFC 8058).
//!
//! Any path, with the token in the query (`?t=TOKEN`, as the campaign's unsubscribe URL
//! gets it). `POST` with the body `List-Unsubscribe=One-Click` (urlencoded or multipart)
//! opens the token with the token key alone and suppresses that recipient (reason
//! `unsubscribe`; again is harmless). `GET` only shows a page with a button that makes that
//! POST: mail scanners follow links, so a GET never unsubscribes anyone. No redirects, no
//! cookies; a bad, forged or missing token gets 400 and changes nothing. The log names a
//! campaign at most, never an address, a token or a client.

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use tact::state::Keys;
use tact::state::ledger::Ledger;

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address and port to listen on, e.g. 127.0.0.1:8058 behind a TLS-terminating proxy
    /// (port 0 picks a free one; the address is printed).
    #[arg(long, value_name = "ADDR")]
    listen: String,
}

/// Bodies larger than this are refused: the real one is 26 bytes.
const MAX_BODY: u64 = 64 * 1024;
/// Requests handled at once; more get 503 at once rather than waiting.
const MAX_IN_FLIGHT: usize = 64;

/// What to answer, free of any HTTP crate's types.
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
    keys: &Keys,
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
    let Some((campaign, _)) = keys.open_token(token) else {
        return Answer::invalid("invalid token");
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
        Ok(l) => l.unsubscribe_token(keys, token, now),
        Err(_) => Err(tact::Error::Other("the ledger lock is poisoned".into())),
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

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond(rq: tiny_http::Request, answer: &Answer) {
    let mut resp =
        tiny_http::Response::from_string(answer.html.clone()).with_status_code(answer.status);
    for (k, v) in [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Robots-Tag", "noindex"),
        (
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        if let Some(h) = header(k, v) {
            resp.add_header(h);
        }
    }
    if let Some(h) = header("Allow", "GET, HEAD, POST").filter(|_| answer.status == 405) {
        resp.add_header(h);
    }
    // Answer and close: nothing is kept per client.
    if let Some(h) = header("Connection", "close") {
        resp.add_header(h);
    }
    let _ = rq.respond(resp);
}

fn serve_one(mut rq: tiny_http::Request, keys: &Keys, ledger: &Mutex<Ledger>, now: DateTime<Utc>) {
    let method = rq.method().as_str().to_string();
    let url = rq.url().to_string();
    let content_type = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.as_str().to_string());
    if rq.body_length().is_some_and(|n| n as u64 > MAX_BODY) {
        respond(
            rq,
            &Answer::page(413, "Too large", "This request is too large.", "", None),
        );
        return;
    }
    let mut body = Vec::new();
    if rq
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .is_err()
        || body.len() as u64 > MAX_BODY
    {
        respond(
            rq,
            &Answer::page(
                400,
                "Bad request",
                "The request could not be read.",
                "",
                None,
            ),
        );
        return;
    }
    let answer = handle(
        keys,
        ledger,
        &method,
        &url,
        content_type.as_deref(),
        &body,
        now,
    );
    if let Some(line) = &answer.log {
        eprintln!(
            "{} tact unsubscribe-server: {line}",
            Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    respond(rq, &answer);
}

/// Waits for Ctrl-C or SIGTERM, then unblocks the server. `ready` is sent once the
/// handlers are installed, so a signal that arrives after the "listening" line is never
/// the default one that kills the process mid-write.
fn watch_signals(
    server: &tiny_http::Server,
    stop: &AtomicBool,
    interrupted: &AtomicBool,
    ready: &std::sync::mpsc::Sender<()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        let _ = ready.send(());
        return;
    };
    rt.block_on(async {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            let _ = ready.send(());
            return;
        };
        let _ = ready.send(());
        tokio::select! {
            _ = int.recv() => interrupted.store(true, Ordering::SeqCst),
            _ = term.recv() => {}
        }
        stop.store(true, Ordering::SeqCst);
        server.unblock();
    });
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    let ledger = Arc::new(Mutex::new(state.ledger(false)?));
    let keys = Arc::new(state.keys.clone());
    let server = match tiny_http::Server::http(args.listen.as_str()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("tact: error: cannot listen on {}: {e}", args.listen);
            return Ok(2);
        }
    };
    let addr = server
        .server_addr()
        .to_ip()
        .map_or_else(|| args.listen.clone(), |a| a.to_string());
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    {
        let (server, stop, interrupted) = (server.clone(), stop.clone(), interrupted.clone());
        std::thread::spawn(move || watch_signals(&server, &stop, &interrupted, &ready_tx));
    }
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    // `--now` shifts the clock; time still passes while the server runs.
    let (started, base) = (Instant::now(), g.now);
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "listening on http://{addr} (state: {}); Ctrl-C stops",
            state.store
        )
        .context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let rq = match server.recv() {
            Ok(rq) => rq,
            Err(_) if stop.load(Ordering::SeqCst) => break,
            Err(e) => {
                eprintln!("tact unsubscribe-server: a connection failed: {e}");
                continue;
            }
        };
        workers.retain(|w| !w.is_finished());
        if in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT {
            respond(
                rq,
                &Answer::page(503, "Please try again", "Too busy just now.", "", None),
            );
            continue;
        }
        let now = base + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        let (keys, ledger, in_flight) = (keys.clone(), ledger.clone(), in_flight.clone());
        in_flight.fetch_add(1, Ordering::SeqCst);
        workers.push(std::thread::spawn(move || {
            serve_one(rq, &keys, &ledger, now);
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    for w in workers {
        let _ = w.join();
    }
    eprintln!("tact unsubscribe-server: stopped");
    Ok(if interrupted.load(Ordering::SeqCst) {
        130
    } else {
        0
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        tact::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
    }

    #[test]
    fn only_a_one_click_post_with_a_valid_token_unsubscribes() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::from_master(&[9; 32]);
        let ledger = Mutex::new(Ledger::open(dir.path(), false).unwrap());
        let h = keys.recipient_hash("ann@example.com");
        let t = keys.seal_token("winter-sale", &h);
        let url = format!("/unsubscribe?t={t}");
        let form = Some("application/x-www-form-urlencoded");
        let suppressed = || ledger.lock().unwrap().is_suppressed(&h).unwrap();

        let get = handle(&keys, &ledger, "GET", &url, None, b"", now());
        assert_eq!(get.status, 200);
        assert!(get.html.contains("method=\"post\""));
        assert!(!suppressed(), "a GET must never unsubscribe");

        let no_body = handle(&keys, &ledger, "POST", &url, form, b"", now());
        assert_eq!(no_body.status, 400);
        assert!(!suppressed());

        let mut forged = t.clone().into_bytes();
        forged[40] = if forged[40] == b'A' { b'B' } else { b'A' };
        let forged = format!("/u?t={}", String::from_utf8(forged).unwrap());
        let body = b"List-Unsubscribe=One-Click";
        assert_eq!(
            handle(&keys, &ledger, "POST", &forged, form, body, now()).status,
            400
        );
        assert_eq!(
            handle(&keys, &ledger, "POST", "/u", form, body, now()).status,
            400
        );
        assert_eq!(
            handle(
                &keys,
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

        let ok = handle(&keys, &ledger, "POST", &url, form, body, now());
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.log.as_deref(),
            Some("unsubscribed one recipient of campaign winter-sale")
        );
        assert!(suppressed());
        assert!(!ok.html.contains("ann"));
        let again = handle(&keys, &ledger, "POST", &url, form, body, now());
        assert_eq!(again.status, 200, "idempotent");
        assert_eq!(
            handle(&keys, &ledger, "DELETE", &url, None, b"", now()).status,
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
}
