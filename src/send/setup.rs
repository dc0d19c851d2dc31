//! What `send` refuses to start on, found without sending, so that `check` says it first:
//! the marketer learns at check time that the DKIM key is readable by others or a relay
//! cannot be used, not from a send that stops. Each test here is the one `send` runs
//! (`load_dkim_key`, `Transport::parse`, `Relay::from_campaign`, the connect's own host
//! resolution), never a copy.

use crate::campaign::Campaign;
use crate::check::{Finding, Level, Report};
use crate::error::chain;

use super::{Relay, Transport, load_dkim_key};

/// The rule of every set-up finding.
pub const RULE: &str = "send-setup";

/// One reason a send would not start (or would rest on a relay that cannot be reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What it is about: `[dkim] private_key`, `TACT_SMTP_URL`, `[[send.relay]]`, a
    /// relay's name.
    pub what: String,
    /// The refusal, as send words it (never a password: URLs are redacted by the parser).
    pub why: String,
}

/// Every set-up problem of a send of `c`: its DKIM key, then the relays it would use, which
/// are `url` (the `--smtp` URL or `TACT_SMTP_URL`) when given, else the campaign's
/// `[[send.relay]]` entries. `env` reads password variables. No relay at all is not a
/// problem here: `send` asks for one, and `check` is also run where no relay is set.
pub fn problems(
    c: &Campaign,
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(d) = &c.dkim
        && let Err(e) = load_dkim_key(&d.private_key)
    {
        out.push(Problem {
            what: "[dkim] private_key".into(),
            why: chain(&e),
        });
    }
    let relays = match url {
        Some(u) => Transport::parse(u, env("TACT_SMTP_PASSWORD"))
            .map(|t| vec![("TACT_SMTP_URL".to_string(), t)])
            .map_err(|e| ("TACT_SMTP_URL", e)),
        None => Relay::from_campaign(c, env)
            .map(|rs| rs.into_iter().map(|r| (r.name, r.transport)).collect())
            .map_err(|e| ("[[send.relay]]", e)),
    };
    match relays {
        Err((what, e)) => out.push(Problem {
            what: what.into(),
            why: chain(&e),
        }),
        Ok(relays) => {
            for (name, t) in relays {
                if let Transport::Smtp(s) = &t
                    && let Err(why) = s.resolve_now()
                {
                    out.push(Problem {
                        what: format!("relay `{name}`"),
                        why,
                    });
                }
            }
        }
    }
    out
}

/// Adds the set-up findings of a send started as `tact send` would start it here: with
/// `TACT_SMTP_URL` when set (as `send` reads it), else the campaign's `[[send.relay]]`.
/// `tact check` and the composer's Check screen both call this, so they cannot disagree.
pub fn check(report: &mut Report, c: &Campaign, env: &dyn Fn(&str) -> Option<String>) {
    let url = env("TACT_SMTP_URL").filter(|u| !u.is_empty());
    add_to(report, &problems(c, url.as_deref(), env));
}

/// Adds one `send-setup` block per problem to a check report.
pub fn add_to(report: &mut Report, problems: &[Problem]) {
    for p in problems {
        report.findings.push(Finding {
            rule: RULE,
            level: Level::Block,
            fields: Vec::new(),
            message: format!("{}: {}", p.what, p.why),
            alternative: "fix the set-up before sending: `tact send` refuses to start (or stops) until it is fixed".into(),
            acknowledged: false,
            reason: None,
            measured: None,
        });
        report.verdict = report.verdict.max(Level::Block);
    }
}
