//! The campaign file: load, validate, resolve paths against the file's folder.
//!
//! Validation runs in two stages (the ripgrep habit): serde reads what was written, with
//! spans, then `Campaign::load` turns it into a checked, typed campaign whose errors point
//! at the line and column the user typed.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use lettre::message::Mailbox;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Location, Result, did_you_mean};
use crate::schema::line_col;

const TOP_KEYS: &[&str] = &[
    "name",
    "audience",
    "schema",
    "templates",
    "template",
    "subject",
    "preheader",
    "from",
    "reply_to",
    "return_path",
    "segment",
    "unsubscribe_url",
    "postal_address",
    "send_at",
    "policy",
    "send",
    "dkim",
    "bounces",
];
const POLICY_KEYS: &[&str] = &[
    "min_segment_size",
    "consent_max_age_days",
    "acknowledge",
    "late_window_hours",
    "min_hours_between",
];
const SEND_KEYS: &[&str] = &[
    "rate_per_second",
    "concurrency",
    "max_attempts",
    "retry_delay_seconds",
    "relay",
    "test_to",
    "max_hard_bounce_rate",
    "pacing",
];
const RELAY_KEYS: &[&str] = &[
    "name",
    "url",
    "concurrency",
    "rate_per_second",
    "daily_quota",
    "password_env",
];
/// `[send.pacing.<provider>]`.
const PACE_KEYS: &[&str] = &["rate_per_second", "concurrency"];
const DKIM_KEYS: &[&str] = &["domain", "selector", "private_key"];
const BOUNCES_KEYS: &[&str] = &["address", "soft_limit", "soft_window_days", "imap"];
const ACK_KEYS: &[&str] = &["rule", "fields", "reason"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    name: Spanned<String>,
    audience: Spanned<String>,
    schema: Option<Spanned<String>>,
    templates: Option<Spanned<String>>,
    template: Spanned<String>,
    subject: Spanned<String>,
    preheader: Option<Spanned<String>>,
    from: Spanned<String>,
    reply_to: Option<Spanned<String>>,
    return_path: Option<Spanned<String>>,
    segment: Option<Spanned<String>>,
    unsubscribe_url: Spanned<String>,
    #[serde(default)]
    postal_address: String,
    send_at: Option<Spanned<String>>,
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    send: SendSettings,
    dkim: Option<Dkim>,
    #[serde(default)]
    bounces: RawBounces,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounces {
    address: Option<Spanned<String>>,
    soft_limit: Option<Spanned<u32>>,
    soft_window_days: Option<Spanned<u32>>,
    imap: Option<Spanned<String>>,
}

/// `[bounces]`: where returned mail goes and how it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounces {
    /// The VERP base: each message's envelope sender is `local+TOKEN@domain` of it.
    pub address: Option<lettre::Address>,
    /// Soft bounces within `soft_window_days` that suppress an address.
    pub soft_limit: u32,
    pub soft_window_days: u32,
    /// The bounce mailbox, `imaps://user@host[:port]/MAILBOX`, for `bounces import` and
    /// `run-due` (no password in it: that comes from TACT_IMAP_PASSWORD).
    pub imap: Option<String>,
}

impl Default for Bounces {
    fn default() -> Self {
        Bounces {
            address: None,
            soft_limit: 3,
            soft_window_days: 30,
            imap: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Acknowledgement {
    pub rule: String,
    pub fields: Vec<String>,
    pub reason: String,
}

impl Acknowledgement {
    /// Whether it covers a finding of `rule` on `fields`: only when every field of the
    /// finding is among its own.
    pub fn covers(&self, rule: &str, fields: &[String]) -> bool {
        self.rule == rule && fields.iter().all(|x| self.fields.contains(x))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub min_segment_size: usize,
    pub consent_max_age_days: u32,
    pub acknowledge: Vec<Acknowledgement>,
    pub late_window_hours: u32,
    pub min_hours_between: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_segment_size: 50,
            consent_max_age_days: 730,
            acknowledge: Vec::new(),
            late_window_hours: 24,
            min_hours_between: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendSettings {
    pub rate_per_second: f64,
    pub concurrency: usize,
    /// Tries per recipient within one run before a 4xx leaves them pending for a later run.
    pub max_attempts: u32,
    /// The first retry delay after a 4xx; it doubles with each further try.
    pub retry_delay_seconds: f64,
    /// `[[send.relay]]`: several relays used together, each within its own limits. Used
    /// when no `--smtp` is given; `rate_per_second` and `concurrency` above then apply to
    /// `--smtp` only.
    pub relay: Vec<RelaySettings>,
    /// The marketer's own addresses for test messages (`send --test` with no address, the
    /// composer's `t`); any other address needs an explicit flag or a typed confirmation.
    pub test_to: Vec<String>,
    /// The share of RCPT-time "no such user" refusals, over the first 200 recipients of a
    /// run and after, above which the run pauses (a stale list burns the sender's name).
    pub max_hard_bounce_rate: f64,
    /// `[send.pacing.<provider>]`: limits per mailbox provider, on top of the relays'.
    /// Keys are checked against the providers when the campaign loads.
    pub pacing: std::collections::BTreeMap<String, PaceSettings>,
}

/// One `[send.pacing.<provider>]` table; what is not given keeps the provider's default
/// (`send::provider::Pace::default_for`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PaceSettings {
    pub rate_per_second: Option<f64>,
    pub concurrency: Option<usize>,
}

/// One `[[send.relay]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// What the ledger records (never the URL, which may name a user); default `relay-N`.
    pub name: Option<String>,
    /// `smtp://…`, `smtps://…` or `sendmail:…`.
    pub url: String,
    #[serde(default = "default_relay_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_relay_rate")]
    pub rate_per_second: f64,
    /// Messages this relay may take in any 24 hours, over every campaign and run.
    pub daily_quota: Option<u64>,
    /// The environment variable holding this relay's password (default TACT_SMTP_PASSWORD).
    pub password_env: Option<String>,
}

fn default_relay_concurrency() -> usize {
    4
}

fn default_relay_rate() -> f64 {
    20.0
}

impl Default for SendSettings {
    fn default() -> Self {
        SendSettings {
            rate_per_second: 20.0,
            concurrency: 4,
            max_attempts: 5,
            retry_delay_seconds: 2.0,
            relay: Vec::new(),
            test_to: Vec::new(),
            max_hard_bounce_rate: 0.05,
            pacing: std::collections::BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    pub private_key: PathBuf,
}

/// A checked campaign, with every path resolved.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub path: PathBuf,
    pub name: String,
    pub audience: PathBuf,
    pub schema: Option<PathBuf>,
    pub templates: PathBuf,
    pub template: String,
    pub subject: String,
    pub preheader: String,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub return_path: Option<lettre::Address>,
    pub segment: Option<String>,
    pub unsubscribe_url: String,
    pub postal_address: String,
    pub send_at: Option<DateTime<FixedOffset>>,
    pub policy: Policy,
    pub send: SendSettings,
    pub dkim: Option<Dkim>,
    pub bounces: Bounces,
}

impl Campaign {
    pub fn load(path: &Path) -> Result<Campaign> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Campaign> {
        let mut raw: RawCampaign =
            toml::from_str(text).map_err(|e| campaign_toml_error(path, text, &e))?;
        // `set.toml` has the parent "", which names no directory (canonicalize fails on it).
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let at = |span: std::ops::Range<usize>, msg: String| {
            let (line, col) = line_col(text, span.start);
            Error::input(Location::at(path, line, col), msg)
        };
        let name = raw.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(at(
                raw.name.span(),
                format!("name `{name}` may use only lowercase letters, digits and '-'"),
            ));
        }
        let mailbox = |s: &Spanned<String>, key: &str| -> Result<Mailbox> {
            s.get_ref().parse::<Mailbox>().map_err(|e| {
                at(
                    s.span(),
                    format!("{key} `{}` is not an address: {e}", s.get_ref()),
                )
            })
        };
        let from = mailbox(&raw.from, "from")?;
        let reply_to = raw
            .reply_to
            .as_ref()
            .map(|r| mailbox(r, "reply_to"))
            .transpose()?;
        let return_path = raw
            .return_path
            .as_ref()
            .map(|r| {
                r.get_ref().parse::<lettre::Address>().map_err(|e| {
                    at(
                        r.span(),
                        format!("return_path `{}` is not an address: {e}", r.get_ref()),
                    )
                })
            })
            .transpose()?;
        let bounces = bounces(
            &raw.bounces,
            return_path.as_ref(),
            raw.return_path.as_ref(),
            &at,
        )?;
        let url = raw.unsubscribe_url.get_ref().trim();
        // RFC 8058 one-click needs an HTTPS URI; a mailto or http link would be refused by
        // the big mailbox providers.
        if !url.starts_with("https://")
            || url.len() <= "https://".len()
            || url.contains(char::is_whitespace)
        {
            return Err(at(
                raw.unsubscribe_url.span(),
                format!("unsubscribe_url `{url}` must be an https:// URL"),
            ));
        }
        if url.contains('#') {
            return Err(at(
                raw.unsubscribe_url.span(),
                "unsubscribe_url must not contain a #fragment".into(),
            ));
        }
        let send_at = raw
            .send_at
            .as_ref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s.get_ref()).map_err(|e| {
                    at(s.span(), format!("send_at `{}` must be RFC 3339 with an offset, like 2026-12-01T09:00:00+00:00 ({e})", s.get_ref()))
                })
            })
            .transpose()?;
        let template = raw.template.get_ref().trim().to_string();
        if template.is_empty() || template.contains(['/', '\\']) || template.starts_with('.') {
            return Err(at(
                raw.template.span(),
                format!("template `{template}` must be a plain name like `winter-sale`"),
            ));
        }
        if let Some(seg) = &raw.segment
            && let Err((_, why)) = crate::segment::check_limits(seg.get_ref())
        {
            // Refused here, before any parser recurses into it; the position is the
            // segment's value in this file, the column in `why` one inside the segment.
            return Err(at(seg.span(), format!("segment {why}")));
        }
        let at_key = |steps: &[Step], msg: String| {
            let (line, col) = position_of(text, steps);
            Error::input(Location::at(path, line, col), msg)
        };
        let ack_at = |i: usize, key: &'static str| {
            [
                Step::Key("policy"),
                Step::Key("acknowledge"),
                Step::Index(i),
                Step::Key(key),
            ]
        };
        for (i, ack) in raw.policy.acknowledge.iter().enumerate() {
            if ack.reason.trim().is_empty() {
                return Err(at_key(
                    &ack_at(i, "reason"),
                    format!(
                        "[policy].acknowledge[{i}] ({}) needs a reason: say why this is acceptable",
                        ack.rule
                    ),
                ));
            }
            if ack.fields.is_empty() {
                return Err(at_key(
                    &ack_at(i, "fields"),
                    format!(
                        "[policy].acknowledge[{i}] ({}) must list the fields it covers",
                        ack.rule
                    ),
                ));
            }
        }
        if raw.send.concurrency == 0
            || raw.send.rate_per_second.is_nan()
            || raw.send.rate_per_second <= 0.0
        {
            let key = if raw.send.concurrency == 0 {
                "concurrency"
            } else {
                "rate_per_second"
            };
            return Err(at_key(
                &[Step::Key("send"), Step::Key(key)],
                "[send] concurrency and rate_per_second must be above 0".into(),
            ));
        }
        if raw.send.max_attempts == 0
            || !raw.send.retry_delay_seconds.is_finite()
            || raw.send.retry_delay_seconds <= 0.0
            || raw.send.retry_delay_seconds > 86_400.0
        {
            let key = if raw.send.max_attempts == 0 {
                "max_attempts"
            } else {
                "retry_delay_seconds"
            };
            return Err(at_key(
                &[Step::Key("send"), Step::Key(key)],
                "[send] max_attempts must be above 0, and retry_delay_seconds above 0 and at most 86400".into(),
            ));
        }
        let rate = raw.send.max_hard_bounce_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(at_key(
                &[Step::Key("send"), Step::Key("max_hard_bounce_rate")],
                format!(
                    "[send] max_hard_bounce_rate is a share between 0 and 1 (0.05 is 5%), not {rate}"
                ),
            ));
        }
        for (key, pace) in &raw.send.pacing {
            let bad = |step: Option<&'static str>, m: String| {
                let mut steps = vec![Step::Key("send"), Step::Key("pacing"), Step::Key(key)];
                steps.extend(step.map(Step::Key));
                Err(at_key(&steps, m))
            };
            if crate::send::provider::Provider::from_key(key).is_none() {
                let known = crate::send::provider::Provider::ALL.map(|p| p.key());
                let hint = crate::send::provider::Provider::of_domain(&format!("{key}.com"));
                let hint = if hint == crate::send::provider::Provider::Other {
                    String::new()
                } else {
                    format!(" ({key} is part of `{hint}`)")
                };
                return bad(
                    None,
                    format!(
                        "[send.pacing] has no provider `{key}`{hint}: there are {}",
                        known.join(", ")
                    ),
                );
            }
            if pace
                .rate_per_second
                .is_some_and(|r| !r.is_finite() || r <= 0.0)
            {
                return bad(
                    Some("rate_per_second"),
                    format!("[send.pacing.{key}] rate_per_second must be above 0"),
                );
            }
            if pace.concurrency == Some(0) {
                return bad(
                    Some("concurrency"),
                    format!("[send.pacing.{key}] concurrency must be above 0"),
                );
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in raw.send.relay.iter_mut().enumerate() {
            let name = r.name.get_or_insert_with(|| format!("relay-{}", i + 1));
            let bad = |key: &'static str, m: String| {
                Err(at_key(
                    &[
                        Step::Key("send"),
                        Step::Key("relay"),
                        Step::Index(i),
                        Step::Key(key),
                    ],
                    m,
                ))
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return bad(
                    "name",
                    format!(
                        "[[send.relay]] {}: a name is letters, digits, `-`, `_` and `.`",
                        i + 1
                    ),
                );
            }
            if !names.insert(name.clone()) {
                return bad(
                    "name",
                    format!("[[send.relay]] name `{name}` is used twice"),
                );
            }
            if r.concurrency == 0
                || r.rate_per_second.is_nan()
                || r.rate_per_second <= 0.0
                || r.daily_quota == Some(0)
            {
                return bad(
                    "url",
                    format!(
                        "[[send.relay]] `{name}`: concurrency, rate_per_second and daily_quota must be above 0"
                    ),
                );
            }
        }
        let audience = clean(dir.join(raw.audience.get_ref()));
        let schema = match &raw.schema {
            Some(s) => Some(clean(dir.join(s.get_ref()))),
            None => crate::schema::beside(&audience),
        };
        let templates = match &raw.templates {
            Some(t) => clean(dir.join(t.get_ref())),
            None => nearest_templates(&dir).ok_or_else(|| {
                at(
                    raw.template.span(),
                    "no `templates` key and no templates/ folder in this or a parent directory"
                        .into(),
                )
            })?,
        };
        Ok(Campaign {
            path: path.to_path_buf(),
            name: name.clone(),
            audience,
            schema,
            templates,
            template,
            subject: raw.subject.into_inner(),
            preheader: raw.preheader.map(Spanned::into_inner).unwrap_or_default(),
            from,
            reply_to,
            return_path,
            segment: raw
                .segment
                .map(Spanned::into_inner)
                .filter(|s| !s.trim().is_empty()),
            unsubscribe_url: url.to_string(),
            postal_address: raw.postal_address.trim().to_string(),
            send_at,
            policy: raw.policy,
            send: raw.send,
            dkim: raw.dkim.map(|d| Dkim {
                private_key: clean(dir.join(&d.private_key)),
                ..d
            }),
            bounces,
        })
    }

    /// The address each message's envelope sender is the VERP form of: `[bounces] address`,
    /// else `return_path`. None: the envelope sender is the From address, as it is.
    pub fn bounce_base(&self) -> Option<&lettre::Address> {
        self.bounces.address.as_ref().or(self.return_path.as_ref())
    }

    /// The domain of the From address: Message-IDs and List-Id use it, never the host name.
    pub fn from_domain(&self) -> &str {
        self.from.email.domain()
    }
}

/// Checks `[bounces]`; `return_path` too, which is the VERP base when `[bounces] address`
/// is absent, so either must leave room for the token in its local part.
fn bounces(
    raw: &RawBounces,
    return_path: Option<&lettre::Address>,
    raw_return_path: Option<&Spanned<String>>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> Error,
) -> Result<Bounces> {
    let mut out = Bounces::default();
    if let Some(a) = &raw.address {
        let addr = a.get_ref().parse::<lettre::Address>().map_err(|e| {
            at(
                a.span(),
                format!("[bounces] address `{}` is not an address: {e}", a.get_ref()),
            )
        })?;
        crate::state::verp::verp_address(addr.as_ref(), &"a".repeat(crate::state::verp::TOKEN_LEN))
            .map_err(|why| at(a.span(), format!("[bounces] address: {why}")))?;
        out.address = Some(addr);
    } else if let (Some(rp), Some(raw_rp)) = (return_path, raw_return_path) {
        crate::state::verp::verp_address(rp.as_ref(), &"a".repeat(crate::state::verp::TOKEN_LEN))
            .map_err(|why| at(raw_rp.span(), format!("return_path (the VERP base): {why}")))?;
    }
    for (value, key, slot, max) in [
        (&raw.soft_limit, "soft_limit", &mut out.soft_limit, 1_000),
        (
            &raw.soft_window_days,
            "soft_window_days",
            &mut out.soft_window_days,
            3_650,
        ),
    ] {
        if let Some(v) = value {
            if *v.get_ref() == 0 || *v.get_ref() > max {
                return Err(at(
                    v.span(),
                    format!("[bounces] {key} must be from 1 to {max}"),
                ));
            }
            *slot = *v.get_ref();
        }
    }
    if let Some(u) = &raw.imap {
        let url = u.get_ref().trim();
        // The one parser `bounces import` uses; its messages never quote a password.
        crate::imap::MailboxUrl::parse(url)
            .map_err(|e| at(u.span(), format!("[bounces] imap: {e}")))?;
        out.imap = Some(url.to_string());
    }
    Ok(out)
}

/// `campaigns/../customers.csv` → `customers.csv`, without touching the file system, so
/// messages name files the way the user would.
fn clean(path: PathBuf) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

fn nearest_templates(start: &Path) -> Option<PathBuf> {
    let start = start.canonicalize().ok()?;
    start
        .ancestors()
        .map(|d| d.join("templates"))
        .find(|t| t.is_dir())
}

/// One step of a path into the campaign file: a key, or an index into an array.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The line and column of the deepest part of `steps` found in `text`, for the checks
/// that run after serde (whose spans end at the value it read). The text has parsed once
/// already, so only a path that is not there falls back to the start of the file.
fn position_of(text: &str, steps: &[Step]) -> (usize, usize) {
    let Ok(doc) = toml_edit::Document::parse(text) else {
        return (1, 1);
    };
    let mut item = doc.as_item();
    let mut best: Option<std::ops::Range<usize>> = None;
    for step in steps {
        let next = match step {
            Step::Key(k) => {
                item.as_table_like()
                    .and_then(|t| t.get_key_value(k))
                    .map(|(key, v)| {
                        best = key.span().or(best.clone());
                        v
                    })
            }
            Step::Index(i) => item.get(*i),
        };
        let Some(next) = next else { break };
        if let Some(span) = next.span().filter(|_| matches!(step, Step::Index(_))) {
            best = Some(span);
        }
        item = next;
    }
    best.map_or((1, 1), |s| line_col(text, s.start))
}

/// serde's "unknown field" error plus a "did you mean" from the keys valid at that place.
fn campaign_toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let mut message = e.message().trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(wrong) = rest.split('`').next()
    {
        let all = TOP_KEYS
            .iter()
            .chain(POLICY_KEYS)
            .chain(SEND_KEYS)
            .chain(DKIM_KEYS)
            .chain(BOUNCES_KEYS)
            .chain(ACK_KEYS)
            .chain(RELAY_KEYS)
            .chain(PACE_KEYS);
        let hint = did_you_mean(wrong, all.copied());
        message = format!("unknown key `{wrong}`{hint}");
    }
    Error::input(Location::at(path, line, col), message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "winter-sale"
audience = "../customers.csv"
templates = "../templates"
template = "winter-sale"
subject = "Our winter picks"
from = "Northwind <news@northwind.example>"
unsubscribe_url = "https://northwind.example/unsubscribe"
postal_address = "1 Quay St, Bristol BS1 1AA, UK"
[policy]
min_segment_size = 20
"#;

    fn parse(text: &str) -> Result<Campaign> {
        Campaign::parse(Path::new("/c/campaigns/winter-sale.toml"), text)
    }

    #[test]
    fn paths_are_relative_to_the_campaign_file() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.audience, Path::new("/c/customers.csv"));
        assert_eq!(c.templates, Path::new("/c/templates"));
        assert_eq!(c.policy.min_segment_size, 20);
        assert_eq!(c.policy.consent_max_age_days, 730);
        assert_eq!(c.from_domain(), "northwind.example");
    }

    #[test]
    fn unknown_keys_get_a_suggestion_and_a_position() {
        let e = parse(&GOOD.replace("subject =", "subjct ="))
            .unwrap_err()
            .to_string();
        assert!(e.contains("winter-sale.toml:6:1"), "{e}");
        assert!(
            e.contains("unknown key `subjct` (did you mean `subject`?)"),
            "{e}"
        );
        let e = parse(&GOOD.replace("min_segment_size", "min_segmnt_size"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `min_segment_size`"), "{e}");
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let e = parse(&GOOD.replace("news@northwind.example", "news-at-northwind"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":7:") || e.contains(":8:"), "{e}");
        assert!(e.contains("from"), "{e}");
        let e = parse(&GOOD.replace("https://northwind", "http://northwind"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("https://"), "{e}");
        let e = parse(&GOOD.replace("winter-sale\"\naud", "Winter Sale\"\naud"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lowercase"), "{e}");
        let e = parse(&format!("{GOOD}acknowledge = [{{ rule = \"high-risk-field\", fields = [\"income\"], reason = \" \" }}]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a reason"), "{e}");
    }

    #[test]
    fn a_hostile_segment_is_refused_at_its_line() {
        let deep = format!(
            "segment = \"{}x{}\"\n",
            "(".repeat(2_000),
            ")".repeat(2_000)
        );
        let e = parse(&GOOD.replace("[policy]\n", &format!("{deep}[policy]\n")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("winter-sale.toml:10:11:"), "{e}");
        assert!(e.contains("nested") && e.contains("at column 33"), "{e}");
        let long = format!("segment = '{}'\n", "a".repeat(5_000));
        let e = parse(&GOOD.replace("[policy]\n", &format!("{long}[policy]\n")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("winter-sale.toml:10:11:") && e.contains("4096"),
            "{e}"
        );
        assert!(e.len() < 300, "{e}");
    }

    /// The checks after serde's point at the key they judge, not just the file.
    #[test]
    fn later_checks_point_at_their_key() {
        let cases = [
            (
                "[[policy.acknowledge]]\nrule = \"high-risk-field\"\nfields = [\"income\"]\nreason = \"\"\n",
                "needs a reason",
                ":15:1:",
            ),
            (
                "acknowledge = [{ rule = \"r\", fields = [], reason = \"ok\" }]\n",
                "must list the fields",
                ":12:30:",
            ),
            ("[send]\nconcurrency = 0\n", "above 0", ":13:1:"),
            ("[send]\nmax_attempts = 0\n", "max_attempts", ":13:1:"),
            (
                "[[send.relay]]\nurl = \"smtp://x\"\nname = \"a b\"\n",
                "a name is",
                ":14:1:",
            ),
            (
                "[[send.relay]]\nurl = \"smtp://x\"\ndaily_quota = 0\n",
                "daily_quota",
                ":13:1:",
            ),
        ];
        for (extra, what, at) in cases {
            let e = parse(&format!("{GOOD}{extra}")).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains(at), "{extra}: {e}");
        }
    }

    #[test]
    fn the_bounces_table_has_defaults_and_is_checked_where_it_was_written() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.bounces, Bounces::default());
        assert_eq!((c.bounces.soft_limit, c.bounces.soft_window_days), (3, 30));
        assert_eq!(c.bounce_base(), None);
        let c = parse(&format!(
            "{GOOD}[bounces]\naddress = \"bounces@northwind.example\"\nsoft_limit = 5\nsoft_window_days = 14\nimap = \"imaps://bounces@imap.northwind.example/Bounces\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.bounce_base().map(ToString::to_string).as_deref(),
            Some("bounces@northwind.example")
        );
        assert_eq!((c.bounces.soft_limit, c.bounces.soft_window_days), (5, 14));
        assert_eq!(
            c.bounces.imap.as_deref(),
            Some("imaps://bounces@imap.northwind.example/Bounces")
        );
        let plus = parse(&format!(
            "{GOOD}[bounces]\naddress = \"news+bounces@northwind.example\"\n"
        ))
        .unwrap();
        assert_eq!(
            plus.bounce_base().map(ToString::to_string).as_deref(),
            Some("news+bounces@northwind.example")
        );
        let rp = GOOD.replace(
            "postal_address",
            "return_path = \"rp@northwind.example\"\npostal_address",
        );
        assert_eq!(
            parse(&rp)
                .unwrap()
                .bounce_base()
                .map(ToString::to_string)
                .as_deref(),
            Some("rp@northwind.example"),
            "return_path is the base without [bounces] address"
        );
        let long = "b".repeat(27);
        let cases = [
            (
                "imap = \"imaps://b@x.example/B\"\nsoft_limt = 2\n",
                "unknown key `soft_limt` (did you mean `soft_limit`?)",
                ":14:1:",
            ),
            ("soft_limit = 0\n", "soft_limit must be from 1", ":13:14:"),
            ("soft_limit = -1\n", "integer `-1`", ":13:14:"),
            (
                "soft_window_days = 0\n",
                "soft_window_days must be from 1",
                ":13:20:",
            ),
            ("address = \"nobody\"\n", "not an address", ":13:11:"),
            (
                &format!("address = \"{long}@x.example\"\n"),
                "at most 26 characters",
                ":13:11:",
            ),
            ("imap = \"https://x.example/\"\n", "imaps://", ":13:8:"),
            (
                "imap = \"imaps://u:s3cret@x.example/INBOX\"\n",
                "TACT_IMAP_PASSWORD",
                ":13:8:",
            ),
        ];
        for (extra, what, at) in cases {
            let e = parse(&format!("{GOOD}[bounces]\n{extra}")).unwrap_err();
            assert!(e.is_input(), "{extra}: {e}");
            let e = e.to_string();
            assert!(e.contains(what) && e.contains(at), "{extra}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        let e = parse(&GOOD.replace(
            "postal_address",
            &format!("return_path = \"{long}@northwind.example\"\npostal_address"),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("return_path") && e.contains(":9:15:"), "{e}");
    }

    #[test]
    fn pacing_and_the_hard_bounce_rate() {
        use crate::send::{Pace, Provider};
        let c = parse(GOOD).unwrap();
        assert_eq!(c.send.max_hard_bounce_rate, 0.05);
        assert_eq!(
            Pace::for_campaign(&c.send, Provider::Gmail),
            Pace::default_for(Provider::Gmail)
        );
        let c = parse(&format!(
            "{GOOD}[send]\nmax_hard_bounce_rate = 0.1\n[send.pacing.gmail]\nrate_per_second = 2.5\n[send.pacing.other]\nconcurrency = 3\n"
        ))
        .unwrap();
        assert_eq!(c.send.max_hard_bounce_rate, 0.1);
        let gmail = Pace::for_campaign(&c.send, Provider::Gmail);
        assert_eq!(gmail.rate_per_second, Some(2.5));
        // What is not set keeps the provider's default.
        assert_eq!(
            gmail.concurrency,
            Pace::default_for(Provider::Gmail).concurrency
        );
        let other = Pace::for_campaign(&c.send, Provider::Other);
        assert_eq!((other.rate_per_second, other.concurrency), (None, Some(3)));
        assert_eq!(
            Pace::for_campaign(&c.send, Provider::Yahoo),
            Pace::default_for(Provider::Yahoo)
        );
    }

    #[test]
    fn bad_pacing_points_at_its_key() {
        let cases = [
            (
                "[send.pacing.hotmail]\nrate_per_second = 1\n",
                "no provider `hotmail` (hotmail is part of `microsoft`): there are gmail, microsoft, yahoo, apple, other",
                ":12:14:",
            ),
            (
                "[send.pacing.mailchimp]\nconcurrency = 1\n",
                "no provider `mailchimp`: there are",
                ":12:14:",
            ),
            (
                "[send]\nrate_per_second = 5\n\n[send.pacing.Gmail]\nconcurrency = 1\n",
                "no provider `Gmail`",
                ":15:14:",
            ),
            (
                "[send.pacing.gmail]\nrate_per_second = 0\n",
                "[send.pacing.gmail] rate_per_second must be above 0",
                ":13:1:",
            ),
            (
                "[send.pacing.yahoo]\nrate_per_second = nan\n",
                "rate_per_second must be above 0",
                ":13:1:",
            ),
            (
                "[send.pacing.apple]\nconcurrency = 0\n",
                "[send.pacing.apple] concurrency must be above 0",
                ":13:1:",
            ),
            (
                "[send.pacing.gmail]\nburst = 3\n",
                "unknown key `burst`",
                ":13:1:",
            ),
            (
                "[send.pacing.gmail]\nrate_per_secnd = 3\n",
                "did you mean `rate_per_second`",
                ":13:1:",
            ),
            (
                "[send]\nmax_hard_bounce_rate = 5\n",
                "between 0 and 1",
                ":13:1:",
            ),
            (
                "[send]\nmax_hard_bounce_rate = -0.1\n",
                "between 0 and 1",
                ":13:1:",
            ),
            (
                "[send]\nmax_hard_bounce_rate = nan\n",
                "between 0 and 1",
                ":13:1:",
            ),
            (
                "[send]\nmax_hard_bounce_rte = 0.1\n",
                "did you mean `max_hard_bounce_rate`",
                ":13:1:",
            ),
        ];
        for (extra, what, at) in cases {
            let e = parse(&format!("{GOOD}{extra}")).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains(at), "{extra}: {e}");
        }
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// Lines a campaign file might hold, right and wrong.
        const LINES: &[&str] = &[
            "name = \"x\"",
            "name = \"Bad Name\"",
            "audience = \"a.csv\"",
            "templates = \"t\"",
            "template = \"t\"",
            "template = \"../t\"",
            "subject = \"s\"",
            "from = \"A <a@b.example>\"",
            "from = \"nobody\"",
            "reply_to = \"x\"",
            "return_path = \"@\"",
            "unsubscribe_url = \"https://u.example/u\"",
            "unsubscribe_url = \"http://u\"",
            "unsubscribe_url = \"https://u#f\"",
            "segment = 'country == \"GB\"'",
            "segment = \"((((((((((((((((((((((((((((((((((x\"",
            "send_at = \"tomorrow\"",
            "[policy]",
            "min_segment_size = -1",
            "consent_max_age_days = 99999999999",
            "acknowledge = [{ rule = \"r\", fields = [], reason = \"\" }]",
            "acknowledge = [{ rule = \"r\", fields = [\"f\"], reason = \" \" }]",
            "[[policy.acknowledge]]",
            "rule = \"x\"",
            "[send]",
            "concurrency = 0",
            "rate_per_second = nan",
            "rate_per_second = -inf",
            "retry_delay_seconds = 1e9",
            "max_attempts = 0",
            "[[send.relay]]",
            "url = \"smtp://x\"",
            "name = \"a b\"",
            "daily_quota = 0",
            "max_hard_bounce_rate = 2",
            "[send.pacing.gmail]",
            "[send.pacing.hotmail]",
            "[send.pacing]",
            "gmail = { concurrency = 0 }",
            "[dkim]",
            "domain = 1",
            "[bounces]",
            "address = \"b@x.example\"",
            "address = \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb@x.example\"",
            "soft_limit = 0",
            "soft_window_days = 99999",
            "imap = \"imaps://u:p@h/INBOX\"",
            "imap = \"ftp://h\"",
            "subjct = \"typo\"",
            "= =",
            "\"unterminated",
            "[[[",
            "a.b.c = 1",
            "x = [1, [2, [3]]]",
            "\u{0}",
            "é = 'ü'",
        ];

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            /// Any mix of right and wrong lines, and any bytes spliced into a good file:
            /// a campaign, or an input error naming the file, with a line and column
            /// inside the text. Never a panic.
            #[test]
            fn any_campaign_text_parses_or_names_file_line_and_column(
                on_good in proptest::bool::weighted(0.8),
                picks in proptest::collection::vec(0..LINES.len(), 0..5),
                splice in proptest::option::of((0usize..400, "[ -~\n\"'\\[\\]=]{0,12}")),
            ) {
                let picked = picks.iter().map(|i| LINES[*i]).collect::<Vec<_>>().join("\n");
                // Most picks follow a good file, so the checks after serde's are reached.
                let mut text = if on_good { format!("{GOOD}{picked}") } else { picked };
                if let Some((at, junk)) = splice {
                    let mut at = at.min(text.len());
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    text.insert_str(at, &junk);
                }
                let path = Path::new("/c/campaigns/p.toml");
                if let Err(e) = Campaign::parse(path, &text) {
                    let Error::Input { location, message } = &e else {
                        return Err(TestCaseError::fail(format!("not an input error: {e}")));
                    };
                    prop_assert_eq!(&location.path, path);
                    prop_assert!(!message.is_empty());
                    let (Some(line), Some(col)) = (location.line, location.column) else {
                        return Err(TestCaseError::fail(format!("no line and column: {e}\n{text}")));
                    };
                    let lines: Vec<&str> = text.split('\n').collect();
                    prop_assert!(line >= 1 && line <= lines.len(), "{}\n{}", e, text);
                    prop_assert!(col >= 1 && col <= lines[line - 1].chars().count() + 1, "{}\n{}", e, text);
                }
            }
        }
    }
}
