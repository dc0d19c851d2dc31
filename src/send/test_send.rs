//! Test messages (`tact send --test`, the composer's `t`): the campaign as a recipient
//! would get it, sent to the marketer's own addresses, never recorded in the ledger.
//!
//! What a test may carry is the point of this module. By default it renders the synthetic
//! sample person (`crate::sample`), personalised and generic, so no customer's data goes to
//! whatever address was typed. Every test message carries an inert unsubscribe token
//! (`Keys::seal_test_token`): clicking it in the test mail unsubscribes nobody. Only an
//! explicit pick of one recipient (`--test-as EMAIL`, the composer's "test as this
//! recipient") renders a real person, only if the plan would mail them (consent and
//! suppression respected), and the pick is written to the audit log by its keyed hash.
//! Test addresses come from `[send] test_to` or `TACT_TEST_TO`; any other needs the
//! caller's explicit confirmation (`allow_other`).

use lettre::Address;

use super::{Transport, send_tests};
use crate::campaign::Campaign;
use crate::error::Result;
use crate::plan::{Letter, Outcome, Plan, Prepared, unsubscribe_url};
use crate::state::{Keys, State, normalise_address};
use crate::template::ToolVars;

/// The environment variable with the marketer's test addresses, comma-separated.
pub const TEST_TO_ENV: &str = "TACT_TEST_TO";

/// The audit event of a test rendered for a real recipient.
pub const AUDIT_TEST_AS: &str = "test-as-recipient";

/// Whose data the test renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The synthetic sample person: the default.
    Sample,
    /// The recipient with this address (`--test-as`).
    Address(String),
    /// The recipient of this audience row (the composer's Preview).
    Row(usize),
}

/// Why a test was not sent; each is bad usage (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No address given and none configured.
    NoAddress,
    /// The `n`-th address (from 1) is not an address.
    NotAnAddress(usize),
    /// These addresses (by position, from 1) are outside `test_to` / `TACT_TEST_TO`.
    OutsideTestTo(Vec<usize>),
    /// The picked person is not in the audience.
    NotInAudience,
    /// The picked person is in the audience but the plan does not mail them.
    NotARecipient { line: u64, reason: &'static str },
    /// A pick is audited, and there is no state directory to hold the audit log.
    NoAuditLog,
    /// A template failed for the sample person (or the picked recipient).
    Render(String),
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::NoAddress => format!(
                "no test address: give one, or set [send] test_to in the campaign or {TEST_TO_ENV}"
            ),
            Refusal::NotAnAddress(i) => format!("test address {i} is not an email address"),
            Refusal::OutsideTestTo(which) => format!(
                "test address(es) {} are not in [send] test_to or {TEST_TO_ENV}: a test goes only \
                 to your own addresses unless you confirm another (--allow-other-test-address)",
                which
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Refusal::NotInAudience => {
                "the person picked for the test is not in the audience: nothing sent".into()
            }
            Refusal::NotARecipient { line, reason } => format!(
                "the person picked for the test (line {line}) is not a recipient of this campaign \
                 ({reason}): a test renders only someone the campaign would mail; nothing sent"
            ),
            Refusal::NoAuditLog => "a test as a real recipient is recorded in the audit log, \
                                    and there is no state directory: run `tact init`"
                .into(),
            Refusal::Render(why) => format!("the test could not be rendered: {why}"),
        }
    }
}

/// The configured test addresses: the campaign's `[send] test_to`, then `TACT_TEST_TO`.
pub fn configured(campaign: &Campaign, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out: Vec<String> = campaign.send.test_to.clone();
    if let Some(v) = env(TEST_TO_ENV) {
        out.extend(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    out
}

/// The addresses a test goes to: `to` (or the configured ones when it is empty), each an
/// address, and each configured unless `allow_other`.
pub fn addresses(
    to: &[String],
    configured: &[String],
    allow_other: bool,
) -> std::result::Result<Vec<(String, Address)>, Refusal> {
    let to: Vec<String> = if to.is_empty() {
        configured.to_vec()
    } else {
        to.to_vec()
    };
    if to.is_empty() {
        return Err(Refusal::NoAddress);
    }
    let known: Vec<String> = configured.iter().map(|a| normalise_address(a)).collect();
    let mut outside = Vec::new();
    let mut out = Vec::with_capacity(to.len());
    for (i, a) in to.iter().enumerate() {
        let a = a.trim();
        let parsed: Address = a.parse().map_err(|_| Refusal::NotAnAddress(i + 1))?;
        if !known.contains(&normalise_address(a)) {
            outside.push(i + 1);
        }
        out.push((a.to_string(), parsed));
    }
    if !outside.is_empty() && !allow_other {
        return Err(Refusal::OutsideTestTo(outside));
    }
    Ok(out)
}

/// The audience row and variant of the picked recipient, if the plan mails them.
pub fn pick(p: &Prepared, plan: &Plan, who: &Who) -> std::result::Result<(usize, bool), Refusal> {
    let a = &p.audience;
    let wanted = |row: usize| match who {
        Who::Address(addr) => normalise_address(a.email(row)) == normalise_address(addr),
        Who::Row(r) => row == *r,
        Who::Sample => false,
    };
    // A repeated address is decided by its first row, as the plan does.
    let d = plan
        .decisions
        .iter()
        .find(|d| wanted(d.row as usize))
        .ok_or(Refusal::NotInAudience)?;
    let row = d.row as usize;
    match d.outcome {
        Outcome::Personalised => Ok((row, true)),
        Outcome::Generic => Ok((row, false)),
        Outcome::Excluded(r) => Err(Refusal::NotARecipient {
            line: a.line(row),
            reason: r.key(),
        }),
    }
}

/// The letters of a test: the personalised and the generic variant for the sample person;
/// for a picked recipient, their own variant (and the generic one if theirs is
/// personalised). Every one carries the inert test token.
pub fn letters(
    p: &Prepared,
    keys: &Keys,
    picked: Option<(usize, bool)>,
) -> std::result::Result<Vec<Letter>, Refusal> {
    let inert = unsubscribe_url(
        &p.campaign.unsubscribe_url,
        &keys.seal_test_token(&p.campaign.name),
    );
    // The sample person consented a month ago; a picked recipient's letter is theirs
    // (their consent date in `why_you_got_this`, their `get_random` seed), with only the
    // unsubscribe link swapped for the inert one.
    let sample_vars = |personalised: bool| ToolVars {
        now: p.now,
        seed: 0,
        personalised,
        unsubscribe_url: inert.clone(),
        postal_address: p.campaign.postal_address.clone(),
        campaign: p.campaign.name.clone(),
        why_you_got_this: p
            .why
            .sample(Some(p.now - chrono::TimeDelta::days(30)), personalised),
    };
    // The envelope sender's token names nobody either: a bounce of a test suppresses no one.
    let inert_bounce = keys.seal_test_bounce_token(&p.campaign.name);
    let render = |row: usize, personalised: bool, vars: ToolVars, fields: &[(&str, &str)]| {
        p.letter_with(row, personalised, vars, [0; 32], fields)
            .map(|mut l| {
                l.bounce_token = Some(inert_bounce.clone());
                l
            })
            .map_err(|e| Refusal::Render(format!("{}: {}", e.reason.key(), e.detail)))
    };
    Ok(match picked {
        None => {
            let person = crate::sample::person(p);
            let fields: Vec<(&str, &str)> = person
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            vec![
                render(usize::MAX, true, sample_vars(true), &fields)?,
                render(usize::MAX, false, sample_vars(false), &[])?,
            ]
        }
        Some((row, personalised)) => {
            let theirs = |personalised: bool| {
                let (mut vars, _) = p.tool_vars(keys, row, personalised);
                vars.unsubscribe_url = inert.clone();
                vars
            };
            let generic = render(row, false, theirs(false), &[])?;
            if personalised {
                vec![
                    render(row, true, theirs(true), &p.render_fields(row))?,
                    generic,
                ]
            } else {
                vec![generic]
            }
        }
    })
}

/// A test to send.
pub struct Request<'a> {
    pub prepared: &'a Prepared,
    pub plan: &'a Plan,
    pub keys: &'a Keys,
    /// Where a pick is audited; without it, only the sample person can be tested.
    pub state: Option<&'a State>,
    pub transport: &'a Transport,
    /// Typed addresses; empty: the configured ones.
    pub to: &'a [String],
    pub configured: &'a [String],
    /// The marketer confirmed addresses outside the configured ones.
    pub allow_other: bool,
    pub who: Who,
}

/// What happened: one line per message ("sent", "refused (550)" …), and which variants.
#[derive(Debug, Clone)]
pub struct Sent {
    pub results: Vec<String>,
    pub variants: Vec<&'static str>,
    pub addresses: usize,
    /// A real recipient was rendered (and audited).
    pub as_recipient: bool,
}

impl Sent {
    pub fn summary(&self) -> String {
        format!(
            "test: {} message(s) ({} to {} address(es), {}): {}; not recorded in the ledger",
            self.results.len(),
            self.variants.join(" + "),
            self.addresses,
            if self.as_recipient {
                "rendered for the recipient you picked (audited)"
            } else {
                "rendered for the sample person Alex"
            },
            self.results.join(", ")
        )
    }
}

/// Checks the addresses and the pick, renders, audits a pick, sends. Nothing reaches the
/// ledger's recipient rows: a test never marks anyone as sent.
pub fn send(req: Request<'_>) -> Result<std::result::Result<Sent, Refusal>> {
    let Request {
        prepared: p,
        plan,
        keys,
        state,
        transport,
        to,
        configured,
        allow_other,
        who,
    } = req;
    let to = match addresses(to, configured, allow_other) {
        Ok(to) => to,
        Err(r) => return Ok(Err(r)),
    };
    let picked = match &who {
        Who::Sample => None,
        w => match pick(p, plan, w) {
            Ok(x) => Some(x),
            Err(r) => return Ok(Err(r)),
        },
    };
    let audit = match (picked, state) {
        (Some(_), None) => return Ok(Err(Refusal::NoAuditLog)),
        (Some(pick), Some(state)) => Some((pick, state)),
        (None, _) => None,
    };
    let letters = match letters(p, keys, picked) {
        Ok(l) => l,
        Err(r) => return Ok(Err(r)),
    };
    if let Some(((row, personalised), state)) = audit {
        let hash = keys.recipient_hash(p.audience.email(row));
        let event = serde_json::json!({
            "recipient": crate::state::hex(&hash),
            "variant": if personalised { "personalised" } else { "generic" },
            "messages": letters.len() * to.len(),
        });
        state
            .ledger(false)?
            .audit_append(keys, &p.campaign.name, AUDIT_TEST_AS, &event, p.now)?;
    }
    let mut messages = Vec::with_capacity(letters.len() * to.len());
    let mut variants = Vec::new();
    for letter in &letters {
        variants.push(if letter.personalised {
            "personalised"
        } else {
            "generic"
        });
        for (addr, parsed) in &to {
            let msg = crate::message::build(
                &p.campaign,
                letter,
                addr,
                std::time::SystemTime::now(),
                "[TEST] ",
            )?;
            messages.push((parsed.clone(), msg));
        }
    }
    let results = send_tests(transport, &p.campaign, messages)?;
    Ok(Ok(Sent {
        results,
        variants,
        addresses: to.len(),
        as_recipient: picked.is_some(),
    }))
}
