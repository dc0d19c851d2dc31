//! One send of a campaign, the same from the command line and from the composer: the
//! ledger's facts, completion, the check gate, the relays, `--retry-uncertain`, the queue,
//! the audit events and the run. The front ends only show what comes back and, on the
//! command line, turn it into an exit code.
//!
//! The order is the at-most-once promise: nothing is written to the ledger before the gate
//! has passed. `gate` only reads (facts, completion) and renders; the uncertain rows that
//! `--retry-uncertain` will release are planned as released (`Facts::retrying_uncertain`)
//! and released by `send`, which only a passed gate can call.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::{
    Provider, Relay, Run, SendOptions, Summary, Tally, Transport, load_dkim_key, queue, send_all,
};
use crate::campaign::Campaign;
use crate::check::{Level, Report};
use crate::error::Result;
use crate::plan::{Counts, Plan, Prepared};
use crate::state::ledger::{Ledger, StatusCounts};
use crate::state::{Keys, RecipientHash, State};

/// What the caller means to do once the gate has passed. Only `Send` changes the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Send,
    /// Build every message and count them; needs no relay.
    DryRun,
    /// Renderings to the marketer's own addresses (`--test`), not recorded.
    Test,
}

pub struct Request<'a> {
    pub state: &'a State,
    pub campaign: Campaign,
    /// `--smtp URL` (or `TACT_SMTP_URL`): one relay with the campaign's `[send]` limits.
    /// None: the campaign's `[[send.relay]]` entries.
    pub smtp: Option<&'a str>,
    /// Where passwords come from: `TACT_SMTP_PASSWORD`, a relay's `password_env`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Resend the recipients an earlier run left uncertain (only `Send` releases them).
    pub retry_uncertain: bool,
    /// `synchronous=FULL` for a SQLite ledger.
    pub durable: bool,
    pub purpose: Purpose,
    pub now: DateTime<Utc>,
}

/// Why nothing was sent (or built).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Neither `--smtp` nor `[[send.relay]]`: tact never guesses a server.
    NoRelay,
    NoRecipients,
    /// An unacknowledged caution, a block, or a self-check miss; `code` is its exit code.
    Verdict {
        verdict: Level,
        code: u8,
    },
}

impl Refusal {
    pub fn exit_code(self) -> u8 {
        match self {
            Refusal::NoRelay | Refusal::NoRecipients => 2,
            Refusal::Verdict { code, .. } => code,
        }
    }

    pub fn message(self, campaign: &str) -> String {
        match self {
            Refusal::NoRelay => "no SMTP server: pass --smtp URL, set TACT_SMTP_URL or add \
                                 [[send.relay]] to the campaign (tact never guesses)"
                .into(),
            Refusal::NoRecipients => format!(
                "campaign {campaign} has 0 recipients: check the segment and the consent columns"
            ),
            Refusal::Verdict { verdict, .. } => {
                format!("nothing sent: the check verdict is {}", verdict.as_str())
            }
        }
    }
}

/// What the operator must hear while a campaign has uncertain rows: they are never resent
/// by themselves, and never forgotten either.
pub fn uncertain_note(n: usize) -> Option<String> {
    (n > 0).then(|| {
        format!(
            "{n} uncertain from an earlier run: confirm with the relay whether they were \
             delivered, then `tact send --retry-uncertain` to resend them (never resent without it)"
        )
    })
}

/// Progress by mailbox provider, `gmail 40/40 · microsoft 10/12 (2 deferred) · other
/// 300/300`, sent of total; `None` when everyone is at `other` (the totals say it all).
pub fn by_provider_line(s: &Summary) -> Option<String> {
    if s.by_provider.keys().all(|p| *p == Provider::Other) {
        return None;
    }
    let parts: Vec<String> = s
        .by_provider
        .iter()
        .map(|(p, n)| {
            let mut notes = Vec::new();
            if n.failed > 0 {
                notes.push(format!("{} failed", n.failed));
            }
            if n.deferred > 0 {
                notes.push(format!("{} deferred", n.deferred));
            }
            if n.deferrals > 0 && n.deferred == 0 {
                notes.push(format!("backed off {}×", n.deferrals));
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            format!("{p} {}/{}{notes}", n.sent, n.total)
        })
        .collect();
    Some(parts.join(" · "))
}

/// Providers given up during the run, one line each: `gmail: deferred 5 times in a row
/// (last: 421 4.7.0); the rest wait for a later run`.
pub fn providers_out(s: &Summary) -> Vec<String> {
    s.by_provider
        .iter()
        .filter_map(|(p, n)| n.gave_out.as_ref().map(|why| format!("{p}: {why}")))
        .collect()
}

/// The line every command gives for a complete campaign.
pub fn completed_note(campaign: &str, at: DateTime<Utc>) -> String {
    format!(
        "campaign {campaign} completed on {}: nothing to send",
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

/// The plan the gate judged, with its report.
#[derive(Debug)]
pub struct Checked {
    pub prepared: Prepared,
    pub plan: Plan,
    pub report: Report,
    /// Uncertain rows of earlier runs that this run leaves alone.
    pub uncertain: usize,
}

#[derive(Debug, Clone)]
pub struct Completed {
    pub campaign: String,
    pub at: DateTime<Utc>,
    pub ledger: StatusCounts,
    pub uncertain: usize,
}

impl Completed {
    pub fn exit_code(&self) -> u8 {
        if self.uncertain > 0 { 5 } else { 0 }
    }
}

#[derive(Debug)]
pub struct Refused {
    pub campaign: String,
    pub refusal: Refusal,
    /// None when the refusal came before planning (`NoRelay`).
    pub checked: Option<Box<Checked>>,
}

/// A gate that passed: what `send` needs, and what a dry run or a test builds from.
pub struct Ready<'a> {
    pub checked: Checked,
    pub relays: Vec<Relay>,
    state: &'a State,
    ledger: Ledger,
    /// The uncertain rows this run leaves alone, to tell at the end which still are.
    earlier: HashSet<RecipientHash>,
    release: bool,
    opts: SendOptions,
    now: DateTime<Utc>,
}

pub enum Gate<'a> {
    Completed(Completed),
    Refused(Refused),
    Passed(Box<Ready<'a>>),
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Sent {
    pub campaign: String,
    pub summary: Summary,
    pub audience: Counts,
    /// The campaign's rows in the ledger afterwards.
    pub ledger: StatusCounts,
    /// Uncertain rows `--retry-uncertain` released before the run.
    pub released: usize,
    /// Uncertain rows of earlier runs still uncertain at the end (this run's own are in
    /// `summary.uncertain`). A row another host held when this run started and settled
    /// while it ran is not counted.
    pub uncertain_earlier: usize,
}

impl Sent {
    /// Uncertain rows the operator must resolve: this run's and earlier ones.
    pub fn uncertain(&self) -> usize {
        self.summary.uncertain + self.uncertain_earlier
    }

    /// DESIGN §5: 130 interrupted, 1 paused, 5 while anyone failed, is deferred or
    /// uncertain (earlier runs' too), else 0.
    pub fn exit_code(&self) -> u8 {
        let s = &self.summary;
        if s.interrupted {
            130
        } else if s.paused.is_some() {
            1
        } else if s.failed > 0 || s.deferred > 0 || self.uncertain() > 0 {
            5
        } else {
            0
        }
    }
}

pub enum Outcome {
    Completed(Completed),
    Refused(Refused),
    Sent(Box<Sent>),
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Completed(c) => c.exit_code(),
            Outcome::Refused(r) => r.refusal.exit_code(),
            Outcome::Sent(s) => s.exit_code(),
        }
    }
}

/// Reads the ledger, plans and checks; writes nothing. A complete campaign stops here
/// (unless uncertain rows are to be retried), as does a campaign with no relay, no
/// recipients, or a verdict that is not sendable.
pub fn gate(req: Request<'_>) -> Result<Gate<'_>> {
    let Request {
        state,
        campaign,
        smtp,
        env,
        retry_uncertain,
        durable,
        purpose,
        now,
    } = req;
    let name = campaign.name.clone();
    let flag = smtp
        .map(|url| Transport::parse(url, env("TACT_SMTP_PASSWORD")))
        .transpose()?;
    if purpose != Purpose::DryRun && flag.is_none() && campaign.send.relay.is_empty() {
        return Ok(Gate::Refused(Refused {
            campaign: name,
            refusal: Refusal::NoRelay,
            checked: None,
        }));
    }
    let ledger = state.ledger(durable)?;
    let p = Prepared::from_campaign(campaign, now)?;
    let mut facts = ledger.facts(&name, p.campaign.policy.min_hours_between, now)?;
    // A test send rehearses the campaign; it has nobody to release.
    let release = retry_uncertain && purpose != Purpose::Test;
    if release {
        facts = facts.retrying_uncertain();
    }
    if let Some(at) = facts.completed_at
        && facts.retrying.is_empty()
    {
        return Ok(Gate::Completed(Completed {
            ledger: ledger.counts(&name)?,
            campaign: name,
            at,
            uncertain: facts.uncertain.len(),
        }));
    }
    // An unusable DKIM key (unreadable, readable by others, not a key) stops every mode
    // before a message is built, rather than pausing the run on its first message or
    // making a dry run count nothing.
    if let Some(d) = &p.campaign.dkim {
        load_dkim_key(&d.private_key)?;
    }
    let opts = SendOptions::for_campaign(&p.campaign);
    let relays = match flag {
        Some(t) => vec![Relay::single(t, &opts)],
        None => Relay::from_campaign(&p.campaign, env)?,
    };
    let (plan, report) = crate::check::run(&p, &state.keys, &facts, now);
    let earlier = facts.uncertain;
    let checked = Checked {
        prepared: p,
        plan,
        report,
        uncertain: earlier.len(),
    };
    let refusal = if checked.report.audience.targeted() == 0 {
        Some(Refusal::NoRecipients)
    } else {
        match checked.report.exit_code() {
            0 => None,
            code => Some(Refusal::Verdict {
                verdict: checked.report.verdict,
                code: u8::try_from(code).unwrap_or(1),
            }),
        }
    };
    if let Some(refusal) = refusal {
        return Ok(Gate::Refused(Refused {
            campaign: name,
            refusal,
            checked: Some(Box::new(checked)),
        }));
    }
    Ok(Gate::Passed(Box::new(Ready {
        checked,
        relays,
        state,
        ledger,
        earlier,
        release,
        opts,
        now,
    })))
}

/// The run, after a passed gate: releases the uncertain rows when asked, queues the plan's
/// recipients, records `send-started`, sends, records `send-finished`.
pub fn send(ready: Ready<'_>, tally: &Tally, stop: &AtomicBool) -> Result<Sent> {
    let Ready {
        checked,
        relays,
        state,
        mut ledger,
        earlier,
        release,
        opts,
        now,
    } = ready;
    let Checked {
        prepared: p,
        plan,
        report,
        ..
    } = checked;
    let name = p.campaign.name.clone();
    let released = if release {
        ledger.release_uncertain(&name)?
    } else {
        0
    };
    let recipients: Vec<(usize, bool)> = plan.recipients().collect();
    let jobs = queue(&p, &state.keys, &mut ledger, &recipients, now)?;
    // A million recipients' plan and list are no longer needed: the jobs are.
    drop((plan, recipients));
    ledger.audit_append(
        &state.keys,
        &name,
        "send-started",
        &started_event(&report, jobs.len()),
        now,
    )?;
    let started = Instant::now();
    let run = Run {
        prepared: &p,
        keys: &state.keys,
        tally,
        stop,
        now,
    };
    let summary = send_all(run, ledger, jobs, &relays, opts)?;
    let mut ledger = state.ledger(false)?;
    let totals = ledger.counts(&name)?;
    let uncertain_earlier = if earlier.is_empty() {
        0
    } else {
        ledger.uncertain(&name)?.intersection(&earlier).count()
    };
    let finished = serde_json::json!({ "summary": summary, "ledger": totals });
    ledger.audit_append(
        &state.keys,
        &name,
        "send-finished",
        &finished,
        now + chrono::TimeDelta::from_std(started.elapsed()).unwrap_or_default(),
    )?;
    Ok(Sent {
        campaign: name,
        summary,
        audience: report.audience,
        ledger: totals,
        released,
        uncertain_earlier,
    })
}

/// `gate`, then `send` when it passed: for callers with nothing to show in between.
pub fn run(req: Request<'_>, tally: &Tally, stop: &AtomicBool) -> Result<Outcome> {
    Ok(match gate(req)? {
        Gate::Completed(c) => Outcome::Completed(c),
        Gate::Refused(r) => Outcome::Refused(r),
        Gate::Passed(ready) => Outcome::Sent(Box::new(send(*ready, tally, stop)?)),
    })
}

/// What a dry run built: every message a send would send, rendered, built and signed.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    pub built: usize,
    pub personalised: usize,
    pub generic: usize,
    /// Recipients whose message could not be built or signed.
    pub failed: usize,
    pub seconds: f64,
}

/// Builds every message for `recipients` (row, personalised) as `send` would, dated
/// `date`, on all cores; sends and records nothing.
pub fn dry_run(
    p: &Prepared,
    keys: &Keys,
    recipients: &[(usize, bool)],
    date: SystemTime,
) -> DryRun {
    use rayon::prelude::*;
    let started = Instant::now();
    let built: Vec<bool> = recipients
        .par_iter()
        .map(|&(row, personalised)| {
            p.letter(keys, row, personalised)
                .ok()
                .and_then(|l| {
                    crate::message::build(&p.campaign, &l, p.audience.email(row), date, "").ok()
                })
                .and_then(|m| super::sign(&p.campaign, m).ok())
                .is_some()
        })
        .collect();
    let ok = |want: bool| {
        recipients
            .iter()
            .zip(&built)
            .filter(|((_, pers), b)| **b && *pers == want)
            .count()
    };
    DryRun {
        built: built.iter().filter(|b| **b).count(),
        personalised: ok(true),
        generic: ok(false),
        failed: built.iter().filter(|b| !**b).count(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// What the audit log keeps of a run's start: the verdict it ran on, the acknowledgements
/// that allowed it, the fields it used with their classes, and who would get what.
fn started_event(report: &Report, recipients: usize) -> serde_json::Value {
    let acks: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.acknowledged)
        .map(|f| serde_json::json!({ "rule": f.rule, "fields": f.fields, "reason": f.reason }))
        .collect();
    let fields: Vec<_> = report
        .fields
        .iter()
        .map(|f| serde_json::json!({ "name": f.name, "class": f.class, "places": f.places }))
        .collect();
    serde_json::json!({
        "verdict": report.verdict,
        "acknowledged": acks,
        "fields": fields,
        "recipients": recipients,
        "audience": report.audience,
    })
}
