//! One raw message → a [`Report`]: what kind of report it is, and for whom.
//!
//! Tried in this order, the first that applies deciding:
//!
//! 1. an ARF complaint (RFC 5965): a `message/feedback-report` part;
//! 2. a DSN (RFC 3464): a `message/delivery-status` part, one finding per recipient group;
//! 3. an Amazon SES notification sent as JSON in the mail body;
//! 4. an MTA's or provider's own bounce text (no status part): recognised by its sender
//!    (MAILER-DAEMON, postmaster), subject or wording, and read paragraph by paragraph;
//! 5. an auto-reply (RFC 3834): `Auto-Submitted: auto-replied`, `X-Autoreply`,
//!    `Precedence: auto_reply`, vacation subjects. After the bounces, because MTAs mark
//!    their bounces `Auto-Submitted: auto-replied` too;
//! 6. anything else: one `unknown` finding, `not-a-report`.
//!
//! Bounded: at most [`MAX_PARTS`] MIME parts, [`MAX_TEXT`] bytes of human-readable text
//! and [`MAX_FINDINGS`] findings; a report over the bound is `unknown`.

use std::borrow::Cow;
use std::sync::LazyLock;

use mail_parser::{Message, MessageParser, MimeHeaders as _, PartType};
use regex::Regex;

use super::classify::classify;
use super::{Finding, Kind, MAX_REPORT_BYTES, Report, sha256};

/// More MIME parts than any real bounce has (a DSN has three or four).
pub const MAX_PARTS: usize = 256;
/// The human-readable text read for diagnostics; bounce texts are short.
pub const MAX_TEXT: usize = 64 * 1024;
/// Recipients per report: a DSN for a message to many people lists each, but not more.
pub const MAX_FINDINGS: usize = 1000;
/// The delivery-status or feedback-report part read (a recipient group is ~200 bytes).
pub const MAX_STATUS: usize = 1024 * 1024;
/// Header lines (of the message and its parts) and MIME delimiter lines: mail-parser
/// keeps an object per header line, so a 10 MiB report of `A:b` lines would cost
/// hundreds of megabytes. Real bounces have a few hundred.
pub const MAX_HEADER_LINES: usize = 20_000;
pub const MAX_DELIMITERS: usize = 1_000;

/// Never panics; a report that cannot be read is one `unknown` finding with the reason.
pub fn parse_message(file: &str, raw: &[u8]) -> Report {
    if raw.len() > MAX_REPORT_BYTES {
        return Report {
            file: file.to_string(),
            key: sha256(raw),
            findings: vec![Finding::unknown("too-large")],
        };
    }
    // mail-parser promises not to panic; a bounce mailbox is attacker-controlled, so a
    // broken promise is one unknown report, not an abort of the whole run.
    let (id, findings) = std::panic::catch_unwind(|| analyse(raw))
        .unwrap_or_else(|_| (None, vec![Finding::unknown("unreadable")]));
    let key = match id {
        Some(id) => sha256(format!("message-id\0{id}").as_bytes()),
        None => sha256(raw),
    };
    Report {
        file: file.to_string(),
        key,
        findings,
    }
}

fn analyse(raw: &[u8]) -> (Option<String>, Vec<Finding>) {
    if too_complex(raw) {
        return (None, vec![Finding::unknown("too-complex")]);
    }
    let Some(msg) = MessageParser::default().parse(raw) else {
        return (None, vec![Finding::unknown("unreadable")]);
    };
    if msg.headers().is_empty() {
        return (None, vec![Finding::unknown("no-headers")]);
    }
    let id = msg
        .message_id()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if msg.parts.len() > MAX_PARTS {
        return (id, vec![Finding::unknown("too-complex")]);
    }
    let top = Headers::of(&msg);
    let parts = Parts::of(&msg);
    let returned = parts.returned.clone().unwrap_or_else(|| {
        // Bounces without a message/rfc822 part (Exim, qmail, Yahoo) quote the returned
        // message after a marker in the text.
        parts
            .after_marker
            .as_deref()
            .map(Returned::from_headers_text)
            .unwrap_or_default()
    });

    let mut findings = if let Some(arf) = &parts.feedback {
        arf_findings(arf, &returned)
    } else if let Some(dsn) = parts
        .delivery_status
        .as_deref()
        .map(|d| dsn_findings(d, &returned))
        .filter(|f| !f.is_empty())
    {
        dsn
    } else if let Some(ses) = ses_findings(&parts.text) {
        ses
    } else if is_bounce(&top, &msg, &parts.text) {
        text_findings(&top, &parts.text, &returned)
    } else if let Some(reason) = auto_reply(&top, &msg, &parts.text) {
        vec![Finding {
            kind: Kind::AutoReply,
            reason: reason.to_string(),
            recipient: first_address(top.get("from").unwrap_or_default()),
            ..Finding::unknown("")
        }]
    } else {
        vec![Finding::unknown("not-a-report")]
    };
    if findings.is_empty() {
        findings.push(Finding::unknown("unrecognised"));
    }
    findings.truncate(MAX_FINDINGS);

    let mut tokens: Vec<String> = Vec::new();
    for name in [
        "to",
        "delivered-to",
        "x-original-to",
        "envelope-to",
        "original-recipient",
    ] {
        for value in top.all(name) {
            add_tokens(&mut tokens, value);
        }
    }
    if let Some(rp) = &returned.return_path {
        add_tokens(&mut tokens, rp);
    }
    let campaign = returned.campaign.clone();
    for f in &mut findings {
        if f.tokens.is_empty() {
            f.tokens.clone_from(&tokens);
        }
        if f.campaign.is_none() {
            f.campaign.clone_from(&campaign);
        }
    }
    (id, findings)
}

// ---------------------------------------------------------------------------------------
// Headers and parts
// ---------------------------------------------------------------------------------------

/// One pass before MIME parsing: too many header lines (in the message's, its parts' and
/// its nested messages' header blocks), MIME delimiter lines or Content-Type fields.
/// Nested `message/rfc822` parts need no delimiter: without the last bound, 300,000 of them
/// in 9 MB overflow the stack when mail-parser's nested messages are dropped (an abort
/// that no catch_unwind can stop).
fn too_complex(raw: &[u8]) -> bool {
    let (mut headers, mut delimiters, mut types) = (0usize, 0usize, 0usize);
    let mut in_header = true;
    // The header block being read declares a message/* part: its body is headers too.
    let mut nests = false;
    for line in raw.split(|&b| b == b'\n') {
        if line.starts_with(b"--") {
            delimiters += 1;
            in_header = true;
            nests = false;
        } else if in_header {
            if line.is_empty() || line == b"\r" {
                in_header = nests;
                nests = false;
            } else {
                headers += 1;
                if line.len() >= 13 && line[..13].eq_ignore_ascii_case(b"content-type:") {
                    types += 1;
                    let value = String::from_utf8_lossy(&line[13..]).to_ascii_lowercase();
                    nests = value.contains("message/");
                }
            }
        }
        if headers > MAX_HEADER_LINES || delimiters > MAX_DELIMITERS || types > 2 * MAX_PARTS {
            return true;
        }
    }
    false
}

/// The address header fields of the report itself: ours or the reporting system's, so
/// never where a failed recipient is read from.
const OURS: &[&str] = &[
    "from",
    "to",
    "cc",
    "reply-to",
    "sender",
    "return-path",
    "delivered-to",
    "x-original-to",
    "envelope-to",
];

/// The header fields a report is read by besides `OURS`; others are not kept.
const WANTED: &[&str] = &[
    "original-recipient",
    "x-failed-recipients",
    "auto-submitted",
    "x-autoreply",
    "x-autorespond",
    "x-autogenerated",
    "x-auto-response-suppress",
    "precedence",
    "feedback-id",
    "list-id",
];

/// At most this many of them (a header may repeat).
const MAX_WANTED: usize = 200;

/// A message's header fields, unfolded, by lower-case name.
struct Headers(Vec<(String, String)>);

impl Headers {
    fn of(msg: &Message<'_>) -> Self {
        Headers(
            msg.headers_raw()
                .filter_map(|(n, v)| {
                    let n = n.to_ascii_lowercase();
                    (OURS.contains(&n.as_str()) || WANTED.contains(&n.as_str()))
                        .then(|| (n, unfold(cut(v, MAX_TEXT))))
                })
                .take(MAX_WANTED)
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn unfold(v: &str) -> String {
    v.split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the returned (original) message says about itself.
#[derive(Debug, Clone, Default)]
struct Returned {
    to: Vec<String>,
    return_path: Option<String>,
    campaign: Option<String>,
}

impl Returned {
    fn from_message(m: &Message<'_>) -> Self {
        Self::from_headers(&Headers::of(m))
    }

    fn from_headers_text(text: &str) -> Self {
        let text = text.trim_start();
        match MessageParser::default().parse_headers(text.as_bytes()) {
            Some(m) => Self::from_message(&m),
            None => Returned::default(),
        }
    }

    fn from_headers(h: &Headers) -> Self {
        let to = h.all("to").flat_map(addresses).collect();
        let return_path = h.get("return-path").and_then(first_address);
        let campaign = h
            .get("feedback-id")
            .and_then(|f| f.split(':').next())
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .or_else(|| h.get("list-id").and_then(list_id_campaign));
        Returned {
            to,
            return_path,
            campaign,
        }
    }
}

/// `winter-sale <winter-sale.example.com>` → `winter-sale` (the phrase tact writes),
/// else the id's first label.
fn list_id_campaign(v: &str) -> Option<String> {
    let phrase = v.split('<').next().unwrap_or("").trim().trim_matches('"');
    if !phrase.is_empty() {
        return Some(phrase.to_string());
    }
    let id = v.trim().trim_start_matches('<').trim_end_matches('>');
    id.split('.')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The parts of a report that matter, from the top-level message only (a returned
/// message's own parts are the sender's mail, not the report).
#[derive(Default)]
struct Parts {
    delivery_status: Option<String>,
    feedback: Option<String>,
    returned: Option<Returned>,
    /// The human-readable text, cut before any quoted original message.
    text: String,
    /// The text after a returned-message marker (quoted headers), if any.
    after_marker: Option<String>,
}

impl Parts {
    fn of(msg: &Message<'_>) -> Self {
        let mut p = Parts::default();
        let mut texts: Vec<Cow<'_, str>> = Vec::new();
        let mut htmls: Vec<Cow<'_, str>> = Vec::new();
        for part in &msg.parts {
            let (ctype, sub) = part
                .content_type()
                .map(|c| {
                    (
                        c.ctype().to_ascii_lowercase(),
                        c.subtype().unwrap_or("").to_ascii_lowercase(),
                    )
                })
                .unwrap_or_else(|| ("text".into(), "plain".into()));
            match (ctype.as_str(), sub.as_str(), &part.body) {
                ("message", "delivery-status" | "global-delivery-status", _) => {
                    p.delivery_status
                        .get_or_insert_with(|| status_text(part.contents()));
                }
                ("message", "feedback-report", _) => {
                    p.feedback
                        .get_or_insert_with(|| status_text(part.contents()));
                }
                (_, _, PartType::Message(inner)) => {
                    p.returned
                        .get_or_insert_with(|| Returned::from_message(inner));
                }
                ("text", "rfc822-headers" | "rfc822" | "global-headers", _) => {
                    let t = lossy(part.contents());
                    p.returned
                        .get_or_insert_with(|| Returned::from_headers_text(&t));
                }
                (_, _, PartType::Text(t)) => texts.push(Cow::Borrowed(t.as_ref())),
                (_, _, PartType::Html(h)) => htmls.push(Cow::Owned(strip_tags(h))),
                _ => {}
            }
        }
        let sources = if texts.is_empty() { htmls } else { texts };
        let mut text = String::new();
        for t in sources {
            if text.len() >= MAX_TEXT {
                break;
            }
            text.push_str(cut(&t, MAX_TEXT - text.len()));
            text.push('\n');
        }
        if let Some(at) = marker(&text) {
            let rest = &text[at..];
            let after = rest.find('\n').map_or("", |nl| &rest[nl + 1..]);
            p.after_marker = Some(after.to_string());
            text.truncate(at);
        }
        p.text = text;
        p
    }
}

fn status_text(b: &[u8]) -> String {
    String::from_utf8_lossy(cut_bytes(b, MAX_STATUS)).into_owned()
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(cut_bytes(b, MAX_TEXT))
}

fn cut_bytes(b: &[u8], max: usize) -> &[u8] {
    &b[..b.len().min(max)]
}

/// At most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn strip_tags(html: &str) -> String {
    let html = cut(html, MAX_TEXT);
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Where a bounce text starts quoting the original message (lower-cased search).
fn marker(text: &str) -> Option<usize> {
    const MARKERS: &[&str] = &[
        "------ this is a copy of the message",
        "--- below this line is a copy of the message",
        "----- original message -----",
        "------- returned message",
        "----- unsent message follows -----",
        "--- the header of the original message is following",
        "original message headers:",
        "----- message header follows -----",
        "------ original message headers ------",
        "--- original message ---",
    ];
    let lower = text.to_ascii_lowercase();
    MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .map(|at| lower[..at].rfind('\n').map_or(0, |nl| nl + 1))
}

// ---------------------------------------------------------------------------------------
// Addresses, codes, statuses, tokens
// ---------------------------------------------------------------------------------------

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+",
    )
    .expect("address pattern")
});

static STATUS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}").expect("status pattern"));

static CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[245][0-9][0-9]").expect("code pattern"));

fn addresses(v: &str) -> impl Iterator<Item = String> + '_ {
    ADDRESS.find_iter(v).map(|m| m.as_str().to_string())
}

fn first_address(v: &str) -> Option<String> {
    addresses(v).next()
}

/// The address of a DSN recipient field: `rfc822; jane@example.com` (or `utf-8; …`).
fn dsn_address(v: &str) -> Option<String> {
    let value = v.split_once(';').map_or(v, |(_, a)| a);
    let value = value.trim().trim_start_matches('<').trim_end_matches('>');
    if value.is_empty() {
        return None;
    }
    first_address(value).or_else(|| value.contains('@').then(|| value.to_string()))
}

/// The first enhanced status code standing alone (not inside an IP address or version).
pub(crate) fn find_status(text: &str) -> Option<String> {
    let b = text.as_bytes();
    STATUS.find_iter(text).find_map(|m| {
        let before = m.start().checked_sub(1).map(|i| b[i]);
        let after = b.get(m.end()).copied();
        let after2 = b.get(m.end() + 1).copied();
        let bad_before = before.is_some_and(|c| c.is_ascii_digit() || c == b'.');
        let bad_after = after.is_some_and(|c| c.is_ascii_digit())
            || (after == Some(b'.') && after2.is_some_and(|c| c.is_ascii_digit()));
        (!bad_before && !bad_after).then(|| m.as_str().to_string())
    })
}

/// The first SMTP reply code standing alone that SMTP servers actually send.
pub(crate) fn find_code(text: &str) -> Option<u16> {
    const KNOWN: &[u16] = &[
        250, 251, 252, 421, 450, 451, 452, 454, 455, 500, 501, 502, 503, 504, 521, 530, 534, 535,
        538, 550, 551, 552, 553, 554, 556,
    ];
    let b = text.as_bytes();
    CODE.find_iter(text).find_map(|m| {
        let before = m.start().checked_sub(1).map(|i| b[i]);
        let after = b.get(m.end()).copied();
        let ok_before = before.is_none_or(|c| {
            c.is_ascii_whitespace() || matches!(c, b'(' | b':' | b';' | b'\'' | b'"' | b'#' | b'[')
        });
        let ok_after =
            after.is_none_or(|c| c.is_ascii_whitespace() || matches!(c, b'-' | b':' | b')'));
        let code: u16 = m.as_str().parse().ok()?;
        (ok_before && ok_after && KNOWN.contains(&code)).then_some(code)
    })
}

/// `local+TOKEN@domain` → TOKEN, for each address in a header value.
fn add_tokens(tokens: &mut Vec<String>, value: &str) {
    for a in addresses(value) {
        let Some((local, _)) = a.rsplit_once('@') else {
            continue;
        };
        if let Some((_, token)) = local.split_once('+')
            && !token.is_empty()
            && !tokens.iter().any(|t| t == token)
        {
            tokens.push(token.to_string());
        }
    }
}

// ---------------------------------------------------------------------------------------
// RFC 3464 and RFC 5965 fields
// ---------------------------------------------------------------------------------------

/// Field groups separated by blank lines, continuation lines unfolded, names lower-cased.
/// At most `max` groups.
fn field_groups(text: &str, max: usize) -> Vec<Vec<(String, String)>> {
    let mut groups: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if groups.last().is_some_and(|g| !g.is_empty()) {
                if groups.len() >= max {
                    break;
                }
                groups.push(Vec::new());
            }
            continue;
        }
        let Some(group) = groups.last_mut() else {
            continue;
        };
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = group.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

fn field<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn dsn_findings(text: &str, returned: &Returned) -> Vec<Finding> {
    let mut out = Vec::new();
    // The per-message group, then one per recipient.
    for group in field_groups(text, MAX_FINDINGS + 1) {
        let is_recipient = ["final-recipient", "original-recipient", "action", "status"]
            .iter()
            .any(|n| field(&group, n).is_some());
        if !is_recipient {
            continue;
        }
        let recipient = field(&group, "final-recipient")
            .and_then(dsn_address)
            .or_else(|| field(&group, "original-recipient").and_then(dsn_address))
            .or_else(|| returned.to.first().cloned());
        let action = field(&group, "action")
            .map(|a| a.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let diag = field(&group, "diagnostic-code")
            .map(|d| d.split_once(';').map_or(d, |(_, t)| t).trim())
            .unwrap_or("");
        let declared = field(&group, "status").and_then(find_status);
        let in_diag = find_status(diag);
        // A generic x.0.0 status says less than the diagnostic's own.
        let status = match (declared, in_diag) {
            (Some(d), Some(t)) if d.ends_with(".0.0") => Some(t),
            (Some(d), _) => Some(d),
            (None, t) => t,
        };
        let code = find_code(diag);
        let (kind, reason) = match action.split_whitespace().next().unwrap_or("") {
            a @ ("delivered" | "relayed" | "expanded") => (Kind::Delivered, a.to_string()),
            // Still being retried: no outcome yet. The final DSN, if any, will say.
            "delayed" => (Kind::Unknown, "delayed".to_string()),
            _ => {
                let (k, r) = classify(status.as_deref(), code, diag);
                (k, r.to_string())
            }
        };
        out.push(Finding {
            kind,
            status,
            code,
            reason,
            recipient,
            tokens: Vec::new(),
            campaign: None,
        });
        if out.len() >= MAX_FINDINGS {
            break;
        }
    }
    out
}

fn arf_findings(text: &str, returned: &Returned) -> Vec<Finding> {
    let fields: Vec<(String, String)> = field_groups(text, 16)
        .into_iter()
        .flatten()
        .take(MAX_WANTED)
        .collect();
    let ftype = field(&fields, "feedback-type")
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let (kind, reason): (Kind, String) = match ftype.as_str() {
        "abuse" | "fraud" => (Kind::Complaint, ftype.clone()),
        "opt-out" | "optout" | "unsubscribe" => (Kind::Complaint, "opt-out".into()),
        "virus" => (Kind::Sender, "virus".into()),
        "auth-failure" => {
            let what = field(&fields, "auth-failure")
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            let reason = if what.contains("dmarc") {
                "dmarc"
            } else if what.contains("spf") {
                "spf"
            } else {
                "dkim"
            };
            (Kind::Sender, reason.into())
        }
        "not-spam" => (Kind::Unknown, "not-spam".into()),
        _ => (Kind::Unknown, "feedback".into()),
    };
    let mut recipients: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n == "original-rcpt-to")
        .filter_map(|(_, v)| first_address(v))
        .collect();
    if recipients.is_empty() {
        recipients.extend(returned.to.first().cloned());
    }
    let finding = |recipient: Option<String>| Finding {
        kind,
        status: None,
        code: None,
        reason: reason.clone(),
        recipient,
        tokens: Vec::new(),
        campaign: None,
    };
    if recipients.is_empty() {
        // Many feedback loops redact the recipient; the VERP token may still say who.
        return vec![finding(None)];
    }
    recipients.into_iter().map(|r| finding(Some(r))).collect()
}

// ---------------------------------------------------------------------------------------
// Amazon SES notifications (JSON in the body)
// ---------------------------------------------------------------------------------------

fn ses_findings(text: &str) -> Option<Vec<Finding>> {
    let body = text.trim();
    if !body.starts_with('{') || !body.contains("Type") {
        return None;
    }
    // The first JSON value; a mail footer may follow it.
    let mut v: serde_json::Value = serde_json::Deserializer::from_str(body)
        .into_iter()
        .next()?
        .ok()?;
    // The SNS envelope (email-json subscriptions) carries the notification as a string.
    if let Some(inner) = v.get("Message").and_then(|m| m.as_str())
        && let Ok(parsed) = serde_json::from_str::<serde_json::Value>(inner)
    {
        v = parsed;
    }
    let kind = v
        .get("notificationType")
        .or_else(|| v.get("eventType"))
        .and_then(|t| t.as_str())?
        .to_string();
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let list = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let campaign = v
        .get("mail")
        .and_then(|m| m.get("headers"))
        .and_then(|h| h.as_array())
        .and_then(|hs| {
            hs.iter().find_map(|h| {
                let name = s(h, "name")?;
                name.eq_ignore_ascii_case("feedback-id")
                    .then(|| s(h, "value"))
                    .flatten()
            })
        })
        .and_then(|f| f.split(':').next().map(str::to_string));
    let mut tokens = Vec::new();
    if let Some(source) = v.get("mail").and_then(|m| s(m, "source")) {
        add_tokens(&mut tokens, &source);
    }
    let base = |kind: Kind, reason: &str, recipient: Option<String>| Finding {
        kind,
        status: None,
        code: None,
        reason: reason.to_string(),
        recipient,
        tokens: tokens.clone(),
        campaign: campaign.clone(),
    };
    let mut out = Vec::new();
    match kind.as_str() {
        "Bounce" => {
            let b = v.get("bounce")?;
            let btype = s(b, "bounceType").unwrap_or_default();
            let sub = s(b, "bounceSubType").unwrap_or_default();
            for r in list(b, "bouncedRecipients").iter().take(MAX_FINDINGS) {
                let diag = s(r, "diagnosticCode").unwrap_or_default();
                let diag = diag
                    .split_once(';')
                    .map_or(diag.as_str(), |(_, t)| t.trim());
                let status = s(r, "status")
                    .as_deref()
                    .and_then(find_status)
                    .or_else(|| find_status(diag));
                let code = find_code(diag);
                let (mut k, mut reason) = classify(status.as_deref(), code, diag);
                if k == Kind::Unknown {
                    (k, reason) = ses_type(&btype, &sub);
                }
                let mut f = base(
                    k,
                    reason,
                    s(r, "emailAddress").and_then(|a| first_address(&a)),
                );
                f.status = status;
                f.code = code;
                out.push(f);
            }
        }
        "Complaint" => {
            let c = v.get("complaint")?;
            let ftype = s(c, "complaintFeedbackType").unwrap_or_else(|| "abuse".into());
            let reason = if ftype == "opt-out" {
                "opt-out"
            } else {
                "abuse"
            };
            for r in list(c, "complainedRecipients").iter().take(MAX_FINDINGS) {
                out.push(base(
                    Kind::Complaint,
                    reason,
                    s(r, "emailAddress").and_then(|a| first_address(&a)),
                ));
            }
        }
        "Delivery" => {
            let d = v.get("delivery")?;
            for r in list(d, "recipients").iter().take(MAX_FINDINGS) {
                let a = r.as_str().and_then(first_address);
                out.push(base(Kind::Delivered, "delivered", a));
            }
        }
        _ => return None,
    }
    (!out.is_empty()).then_some(out)
}

/// SES's own bounce types, for when the diagnostic says nothing we recognise.
fn ses_type(btype: &str, sub: &str) -> (Kind, &'static str) {
    match (btype, sub) {
        ("Permanent", "NoEmail") => (Kind::Hard, "no-such-user"),
        ("Permanent", "Suppressed" | "OnAccountSuppressionList") => (Kind::Hard, "suppressed"),
        ("Permanent", "UnsupportedAttachment") => (Kind::Sender, "content"),
        // SES: "remove the recipient's address from your mailing list".
        ("Permanent", _) => (Kind::Hard, "permanent"),
        ("Transient", "MailboxFull") => (Kind::Soft, "mailbox-full"),
        ("Transient", "MessageTooLarge") => (Kind::Sender, "too-large"),
        ("Transient", "ContentRejected" | "AttachmentRejected") => (Kind::Sender, "content"),
        ("Transient", _) => (Kind::Soft, "temporary"),
        _ => (Kind::Unknown, "unclassified"),
    }
}

// ---------------------------------------------------------------------------------------
// Bounce texts without a status part
// ---------------------------------------------------------------------------------------

/// Words that only bounces use, in a subject or in the text.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "delivery status notification",
    "delivery failure",
    "delivery has failed",
    "failure notice",
    "mail delivery failed",
    "returned mail",
    "non-delivery",
    "nondeliverable",
    "could not be delivered",
    "message not delivered",
    "delivery problem",
    "mail system error",
    "delivery notification: delivery has failed",
];

const BOUNCE_TEXTS: &[&str] = &[
    "this message was created automatically by mail delivery software",
    "this is the qmail-send program",
    "this is the mail system at host",
    "delivery to the following recipient",
    "the following addresses had permanent fatal errors",
    "delivery has failed to these recipients",
    "your message couldn't be delivered",
    "your message wasn't delivered",
    "your message could not be delivered",
    "sorry, we were unable to deliver your message",
    "i'm afraid i wasn't able to deliver",
    "message could not be delivered to",
    "retry timeout exceeded",
];

const DAEMONS: &[&str] = &[
    "mailer-daemon",
    "mailerdaemon",
    "mail-daemon",
    "postmaster",
    "mdaemon",
    "mail delivery",
];

fn is_bounce(top: &Headers, msg: &Message<'_>, text: &str) -> bool {
    if top.get("x-failed-recipients").is_some() {
        return true;
    }
    let from = top.get("from").unwrap_or_default().to_ascii_lowercase();
    if DAEMONS.iter().any(|d| from.contains(d)) {
        return true;
    }
    let report = msg.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    if report {
        return true;
    }
    let subject = msg.subject().unwrap_or_default().to_lowercase();
    if BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s)) {
        return true;
    }
    let lower = cut(text, 4096).to_lowercase();
    BOUNCE_TEXTS.iter().any(|s| lower.contains(s))
}

/// Header lines inside a bounce text whose addresses are never the failed recipient.
const NOT_RECIPIENT_LINES: &[&str] = &[
    "from:",
    "sender:",
    "reply-to:",
    "return-path:",
    "message-id:",
    "in-reply-to:",
    "references:",
    "received:",
    "original-sender:",
];

fn text_findings(top: &Headers, text: &str, returned: &Returned) -> Vec<Finding> {
    // Addresses that are ours or the reporting system's, never a failed recipient.
    let mut ours: Vec<String> = Vec::new();
    for name in OURS {
        for v in top.all(name) {
            ours.extend(addresses(v).map(|a| a.to_ascii_lowercase()));
        }
    }
    ours.extend(returned.return_path.iter().map(|a| a.to_ascii_lowercase()));
    let not_ours = |a: &str| {
        let lower = a.to_ascii_lowercase();
        let local = lower.split('@').next().unwrap_or("");
        !ours.contains(&lower) && !DAEMONS.contains(&local)
    };

    // Occurrences of candidate addresses, in order, skipping header-like lines.
    let mut hits: Vec<(usize, usize, String)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let lower = line.trim_start().to_ascii_lowercase();
        if !NOT_RECIPIENT_LINES.iter().any(|p| lower.starts_with(p)) {
            for m in ADDRESS.find_iter(line) {
                let a = m.as_str().trim_end_matches('.');
                if not_ours(a) {
                    hits.push((offset + m.start(), offset + m.end(), a.to_string()));
                }
            }
        }
        offset += line.len();
        if hits.len() > 4 * MAX_FINDINGS {
            break;
        }
    }

    let mut recipients: Vec<String> = top
        .get("x-failed-recipients")
        .map(|v| addresses(v).collect())
        .unwrap_or_default();
    if recipients.is_empty() {
        for (_, _, a) in &hits {
            if !recipients.iter().any(|r| r.eq_ignore_ascii_case(a)) {
                recipients.push(a.clone());
            }
        }
    }
    if recipients.is_empty() {
        recipients.extend(returned.to.first().cloned());
    }
    if recipients.is_empty() {
        let (status, code) = (find_status(text), find_code(text));
        let (kind, reason) = classify(status.as_deref(), code, text);
        return vec![Finding {
            kind,
            status,
            code,
            reason: reason.to_string(),
            ..Finding::unknown("")
        }];
    }

    recipients
        .into_iter()
        .take(MAX_FINDINGS)
        .map(|r| {
            // One recipient: the whole text is its diagnostic. Several: the text from
            // each mention of it to the next mention of another address.
            let diag: Cow<'_, str> = if hits.iter().all(|(_, _, a)| a.eq_ignore_ascii_case(&r)) {
                Cow::Borrowed(text)
            } else {
                let mut d = String::new();
                for (i, (start, _, a)) in hits.iter().enumerate() {
                    if !a.eq_ignore_ascii_case(&r) {
                        continue;
                    }
                    let end = hits
                        .iter()
                        .skip(i + 1)
                        .find(|(_, _, b)| !b.eq_ignore_ascii_case(&r))
                        .map_or(text.len(), |(s, _, _)| *s);
                    d.push_str(cut(&text[*start..end], 2048));
                    d.push('\n');
                }
                Cow::Owned(d)
            };
            let status = find_status(&diag);
            let code = find_code(&diag);
            let (mut kind, mut reason) = classify(status.as_deref(), code, &diag);
            if kind == Kind::Unknown {
                // The words around every recipient ("This is a permanent error").
                (kind, reason) = classify(status.as_deref(), code, text);
            }
            Finding {
                kind,
                status,
                code,
                reason: reason.to_string(),
                recipient: Some(r),
                tokens: Vec::new(),
                campaign: None,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Auto-replies (RFC 3834)
// ---------------------------------------------------------------------------------------

/// Out-of-office subjects: at the start of the subject (after an `Auto:`-like prefix),
/// so that a person's "Re: vacation plans" is not one.
const VACATION_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "ooo",
    "vacation",
    "away from",
    "on leave",
    "abwesenheit",
    "absence",
    "afwezig",
    "congés",
    "fuera de la oficina",
];

/// An auto-reply's own words for being away.
const VACATION_TEXTS: &[&str] = &[
    "out of the office",
    "out of office",
    "on vacation",
    "on holiday",
    "on leave",
    "away until",
    "back on",
    "no access to email",
];

const AUTO_SUBJECTS: &[&str] = &[
    "auto:",
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "auto response",
    "autoresponse",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "automatisch antwoord",
];

/// `Some(reason)` for an auto-reply: `vacation` for an out-of-office, else `auto-reply`.
fn auto_reply(top: &Headers, msg: &Message<'_>, text: &str) -> Option<&'static str> {
    let subject = msg.subject().unwrap_or_default().trim().to_lowercase();
    let rest = AUTO_SUBJECTS
        .iter()
        .find_map(|p| subject.strip_prefix(p))
        .unwrap_or(&subject)
        .trim_start_matches([' ', ':', '-']);
    let vacation = VACATION_SUBJECTS.iter().any(|s| rest.starts_with(s))
        || subject.contains("out of office")
        || subject.contains("out of the office");
    let header = |name: &str| top.get(name).map(str::to_ascii_lowercase);
    let by_header = header("auto-submitted").is_some_and(|v| v.starts_with("auto-replied"))
        || header("x-autoreply").is_some_and(|v| v != "no")
        || header("x-autorespond").is_some()
        || header("x-autogenerated").is_some_and(|v| v.contains("reply"))
        || header("precedence").is_some_and(|v| v == "auto_reply")
        || header("x-auto-response-suppress").is_some() && subject.starts_with("automatic reply");
    let by_subject = vacation || AUTO_SUBJECTS.iter().any(|s| subject.starts_with(s));
    if !(by_header || by_subject) {
        return None;
    }
    let body = cut(text, 2048).to_lowercase();
    let away = VACATION_TEXTS.iter().any(|t| body.contains(t));
    Some(if vacation || away || header("x-autoreply").is_some() {
        "vacation"
    } else {
        "auto-reply"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_found_alone_not_inside_addresses_or_versions() {
        assert_eq!(find_status("550 5.1.1 <x>"), Some("5.1.1".into()));
        assert_eq!(find_status("status 5.1.10."), Some("5.1.10".into()));
        assert_eq!(
            find_status("from 10.5.1.1 said 4.2.2"),
            Some("4.2.2".into())
        );
        assert_eq!(find_status("version 2.5.1.3"), None);
        assert_eq!(find_status("nothing"), None);
    }

    #[test]
    fn reply_codes_are_real_smtp_codes_standing_alone() {
        assert_eq!(find_code("550-5.1.1 The email account"), Some(550));
        assert_eq!(find_code("said: 452 4.2.2 over quota"), Some(452));
        assert_eq!(find_code("port 465 then 1550 then 5501"), None);
        assert_eq!(find_code("(reason: 554 delivery error"), Some(554));
    }

    #[test]
    fn tokens_are_the_plus_part_of_local_parts() {
        let mut t = Vec::new();
        add_tokens(
            &mut t,
            "Bounces <bounces+AbC-_9@example.org>, x@example.org",
        );
        add_tokens(&mut t, "bounces+AbC-_9@example.org");
        assert_eq!(t, ["AbC-_9"]);
    }

    #[test]
    fn dsn_recipient_fields_lose_their_type() {
        assert_eq!(
            dsn_address("rfc822; <j@example.com>"),
            Some("j@example.com".into())
        );
        assert_eq!(dsn_address("rfc822;"), None);
    }

    #[test]
    fn list_ids_name_the_campaign() {
        assert_eq!(
            list_id_campaign("winter-sale <winter-sale.example.com>"),
            Some("winter-sale".into())
        );
        assert_eq!(
            list_id_campaign("<winter-sale.example.com>"),
            Some("winter-sale".into())
        );
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;

    #[test]
    fn dsn_actions_relayed_expanded_and_bare_statuses() {
        let raw = "From: MAILER-DAEMON@example.org\nMessage-ID: <a@example.org>\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"z\"\n\n--z\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; example.org\n\nFinal-Recipient: rfc822; a@example.com\nAction: relayed\nStatus: 2.0.0\n\nFinal-Recipient: rfc822; b@example.com\nAction: expanded (to 3 addresses)\nStatus: 2.0.0\n\nOriginal-Recipient: rfc822; c@example.com\nStatus: 2.1.5\n\nFinal-Recipient: rfc822; d@example.com\nAction: failed\nStatus: 5.0.0\n\nFinal-Recipient: rfc822; e@example.com\nAction: failed\nStatus: 4.0.0\n--z--\n";
        let got: Vec<(Kind, String, Option<String>)> = parse_message("x", raw.as_bytes())
            .findings
            .into_iter()
            .map(|f| (f.kind, f.reason, f.recipient))
            .collect();
        let want = [
            (Kind::Delivered, "relayed", "a@example.com"),
            (Kind::Delivered, "expanded", "b@example.com"),
            (Kind::Delivered, "delivered", "c@example.com"),
            (Kind::Unknown, "unclassified", "d@example.com"),
            (Kind::Soft, "temporary", "e@example.com"),
        ]
        .map(|(k, r, a)| (k, r.to_string(), Some(a.to_string())));
        assert_eq!(got, want);
    }

    #[test]
    fn a_postfix_dsn_gives_the_recipient_status_code_token_and_campaign() {
        let raw = include_bytes!("../../tests/bounces/fixtures/postfix-dsn-user-unknown.eml");
        let r = parse_message("f.eml", raw);
        assert_eq!(r.findings.len(), 1, "{r:?}");
        let f = &r.findings[0];
        assert_eq!(f.kind, Kind::Hard);
        assert_eq!(f.reason, "no-such-user");
        assert_eq!(f.status.as_deref(), Some("5.1.1"));
        assert_eq!(f.code, Some(550));
        assert_eq!(f.recipient.as_deref(), Some("jane.doe@example.com"));
        assert_eq!(f.tokens, ["AAAAtokenPostfix1"]);
        assert_eq!(f.campaign.as_deref(), Some("winter-sale"));
        assert_eq!(
            r.key,
            sha256(b"message-id\x0020261130041000.4F1A2C0001@mail.example.org")
        );
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURES: &[&[u8]] = &[
        include_bytes!("../../tests/bounces/fixtures/postfix-dsn-user-unknown.eml"),
        include_bytes!("../../tests/bounces/fixtures/dsn-three-recipients.eml"),
        include_bytes!("../../tests/bounces/fixtures/arf-abuse.eml"),
        include_bytes!("../../tests/bounces/fixtures/qmail-text-two-recipients.eml"),
        include_bytes!("../../tests/bounces/fixtures/exchange-text-recipient-not-found.eml"),
        include_bytes!("../../tests/bounces/fixtures/ses-json-bounce.eml"),
        include_bytes!("../../tests/bounces/fixtures/auto-reply-out-of-office.eml"),
    ];

    /// `analyse` itself, not `parse_message`: its catch_unwind would hide a panic.
    fn never_empty(raw: &[u8]) {
        let (_, findings) = analyse(raw);
        assert!(!findings.is_empty() && findings.len() <= MAX_FINDINGS);
    }

    #[test]
    fn nesting_at_the_bound_fits_a_threads_default_stack() {
        // Just under the bound is parsed (and its nested messages dropped) on a 2 MiB
        // thread stack, the default for threads an importer or the TUI might start.
        let nested = |depth: usize| {
            String::from("From: MAILER-DAEMON@example.org\n")
                + &"Content-Type: message/rfc822\n\n".repeat(depth)
                + "Subject: x\n\nuser unknown\n"
        };
        let (raw, over) = (nested(2 * MAX_PARTS), nested(2 * MAX_PARTS + 1));
        let t = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let inside = parse_message("x", raw.as_bytes());
                let outside = parse_message("x", over.as_bytes());
                (inside, outside)
            })
            .expect("thread");
        let (inside, outside) = t.join().expect("no overflow");
        assert_ne!(inside.findings[0].reason, "too-complex");
        assert_eq!(outside.findings[0].reason, "too-complex");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
            never_empty(&raw);
        }

        #[test]
        fn cut_and_damaged_reports_never_panic(
            which in 0..FIXTURES.len(),
            cut in 0usize..8192,
            flips in proptest::collection::vec((0usize..8192, any::<u8>()), 0..16),
        ) {
            let mut raw = FIXTURES[which].to_vec();
            raw.truncate(cut.min(raw.len()));
            let len = raw.len();
            for (at, b) in flips {
                if len > 0 {
                    raw[at % len] = b;
                }
            }
            never_empty(&raw);
        }

        #[test]
        fn boundary_soup_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("--b\n".to_string()),
                    Just("Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n".to_string()),
                    Just("Content-Type: message/delivery-status\n\n".to_string()),
                    Just("Content-Type: message/rfc822\n\n".to_string()),
                    Just("Final-Recipient: rfc822; j@example.com\nAction: failed\n".to_string()),
                    Just("Status: 5.1.1\nDiagnostic-Code: smtp; 550\n\n".to_string()),
                    "[ -~]{0,40}\n",
                ],
                0..64,
            )
        ) {
            let raw = format!("From: MAILER-DAEMON@example.org\n{}", parts.concat());
            never_empty(raw.as_bytes());
        }
    }
}
