//! `tact check CAMPAIGN [--json] [--report FILE]`: plan, render every recipient offline, apply the rules.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use tact::plan::Prepared;
use tact::privacy_report::Format;
use tact::send::orchestrate;

use super::Globals;
use super::report::{Style, write_report, write_row_warnings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The campaign file (TOML).
    campaign: PathBuf,
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    json: bool,
    /// Also write the privacy report (no customer values) to FILE: .html for one
    /// self-contained page, .md for Markdown. Replaces FILE if it exists.
    #[arg(long, value_name = "FILE", value_parser = report_path)]
    report: Option<(PathBuf, Format)>,
}

fn report_path(s: &str) -> Result<(PathBuf, Format), String> {
    let path = PathBuf::from(s);
    match Format::of(&path) {
        Some(f) => Ok((path, f)),
        None => Err(format!(
            "{s}: the report is .html (one page) or .md (Markdown)"
        )),
    }
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let state = g.state_or_init()?;
    let p = Prepared::load(&args.campaign, g.now)
        .with_context(|| format!("cannot check {}", args.campaign.display()))?;
    let ledger = state.ledger(false)?;
    let facts = ledger.facts(&p.campaign.name, p.campaign.policy.min_hours_between, g.now)?;
    let (_, mut report) = tact::check::run(&p, &state.keys, &facts, g.now);
    // What send would refuse about its set-up blocks here too, with the relay send would
    // use: TACT_SMTP_URL when set (as `send` reads it), else [[send.relay]].
    tact::send::setup::check(&mut report, &p.campaign, &|k| std::env::var(k).ok());
    let mut stderr = std::io::stderr().lock();
    // Whatever the verdict: a blocked campaign is when the privacy officer needs it.
    if let Some((path, format)) = &args.report {
        let text = tact::privacy_report::build(&p, &report, g.now).render(*format);
        tact::privacy_report::save(path, &text)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
        writeln!(stderr, "tact: privacy report written to {}", path.display())?;
    }
    write_row_warnings(&mut stderr, &p, &report.problems, 20)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["state"] = serde_json::Value::String(state.store.to_string());
        v["missing_roles"] = serde_json::to_value(&p.audience.header.missing)?;
        v["constant_roles"] = serde_json::to_value(&p.audience.header.constants)?;
        v["ledger"] = serde_json::json!({
            "completed_at": facts.completed_at.map(|t| t.to_rfc3339()),
            "uncertain": facts.uncertain.len(),
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "tact check {}  (state: {})",
            p.campaign.name, state.store
        )?;
        write_report(&mut out, &p, &report, Style::detect())?;
        if let Some(at) = facts.completed_at {
            writeln!(out, "{}", orchestrate::completed_note(&p.campaign.name, at))?;
        }
    }
    if let Some(note) = orchestrate::uncertain_note(facts.uncertain.len()) {
        writeln!(stderr, "tact: {note}")?;
    }
    if report.audience.targeted() == 0 {
        writeln!(
            stderr,
            "tact: error: campaign {} has 0 recipients: check the segment and the consent columns",
            p.campaign.name
        )?;
        return Ok(2);
    }
    if !report.self_check.is_empty() {
        writeln!(
            stderr,
            "tact: error: the self-check found a field the report missed; refusing to under-report"
        )?;
    }
    // Uncertain rows make it 5 only when it would be 0: a verdict that stops the send
    // (3, 4, or 1 for a self-check miss) is the first thing to fix.
    Ok(match report.exit_code() {
        0 if !facts.uncertain.is_empty() => 5,
        code => code as u8,
    })
}
