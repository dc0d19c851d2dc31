//! `tact send CAMPAIGN [--smtp URL] [--dry-run] [--test ADDR...] [--retry-uncertain]`:
//! the check gate, then every recipient at most once over real SMTP.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rayon::prelude::*;

use tact::plan::Prepared;
use tact::send::{Relay, Run, SendOptions, Summary, Tally, Transport};
use tact::state::RecipientHash;

use super::Globals;
use super::report::{Style, write_report, write_row_warnings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The campaign file (TOML).
    campaign: PathBuf,
    /// smtp://[user@]host:port (STARTTLS) or smtps://[user@]host:port; the password comes
    /// from TACT_SMTP_PASSWORD only. Without it, the campaign's [[send.relay]] entries.
    #[arg(
        long,
        env = "TACT_SMTP_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    smtp: Option<String>,
    /// Render every message and count, but send nothing and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Send the personalised and generic renderings of the first recipients to these
    /// addresses, subject prefixed [TEST]; not recorded in the ledger.
    #[arg(long, value_name = "ADDR", num_args = 1..)]
    test: Vec<String>,
    /// Resend recipients a crashed run left uncertain (only after checking with the relay).
    #[arg(long)]
    retry_uncertain: bool,
    /// synchronous=FULL for the ledger: survives a power cut, at a tenth of the speed.
    #[arg(long)]
    durable: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    let env = |k: &str| std::env::var(k).ok();
    let flag = match &args.smtp {
        Some(url) => Some(Transport::parse(url, env("TACT_SMTP_PASSWORD"))?),
        None => None,
    };
    if flag.is_none() && !args.dry_run {
        // Cheap: the campaign file alone says whether it names its relays.
        let c = tact::campaign::Campaign::load(&args.campaign)
            .with_context(|| format!("cannot send {}", args.campaign.display()))?;
        if c.send.relay.is_empty() {
            eprintln!(
                "tact: error: no SMTP server: pass --smtp URL, set TACT_SMTP_URL or add [[send.relay]] to the campaign (tact never guesses)"
            );
            return Ok(2);
        }
    }
    let mut ledger = state.ledger(args.durable)?;
    let p = Prepared::load(&args.campaign, g.now)
        .with_context(|| format!("cannot send {}", args.campaign.display()))?;
    let name = p.campaign.name.clone();
    // When set, this run sends to these recipients only.
    let mut only: Option<HashSet<RecipientHash>> = None;
    if !args.dry_run && args.test.is_empty() {
        let completed = ledger.completed_at(&name)?;
        if args.retry_uncertain {
            let uncertain = ledger.uncertain(&name)?;
            let n = ledger.release_uncertain(&name)?;
            eprintln!("released {n} uncertain recipient(s) for resending");
            // A complete campaign resends them and nobody else (not rows the CSV gained).
            if completed.is_some() && n > 0 {
                only = Some(uncertain);
            }
        }
        if let (None, Some(t)) = (&only, completed) {
            if args.json {
                let v = serde_json::json!({
                    "campaign": name,
                    "state": state.store.to_string(),
                    "completed_at": t.to_rfc3339(),
                    "summary": Summary::default(),
                    "ledger": ledger.counts(&name)?,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "campaign {name} completed on {}: nothing to send (state: {})",
                    t.format("%Y-%m-%d %H:%M UTC"),
                    state.store
                );
            }
            return Ok(0);
        }
    }
    // An unusable DKIM key (unreadable, readable by others, not a key) stops every mode
    // before a message is built, rather than pausing the run on its first message or
    // making a dry run count nothing.
    if let Some(d) = &p.campaign.dkim {
        tact::send::load_dkim_key(&d.private_key)?;
    }
    let opts = SendOptions::for_campaign(&p.campaign);
    let relays = match flag {
        Some(t) => vec![Relay::single(t, &opts)],
        None => Relay::from_campaign(&p.campaign, &env)?,
    };
    let facts = ledger.facts(&name, p.campaign.policy.min_hours_between, g.now)?;
    let (plan, report) = tact::check::run(&p, &state.keys, &facts, g.now);
    {
        // Scoped: the progress thread writes to stderr later, and a held lock would block it.
        let mut stderr = std::io::stderr().lock();
        write_row_warnings(&mut stderr, &p, &report.problems, 20)?;
        if report.audience.targeted() == 0 {
            writeln!(
                stderr,
                "tact: error: campaign {name} has 0 recipients: check the segment and the consent columns"
            )?;
            return Ok(2);
        }
        let code = report.exit_code();
        if code != 0 {
            write_report(&mut stderr, &p, &report, Style::detect())?;
            writeln!(
                stderr,
                "tact: nothing sent: the check verdict is {}",
                report.verdict.as_str()
            )?;
            return Ok(code as u8);
        }
    }
    let recipients: Vec<(usize, bool)> = plan
        .recipients()
        .filter(|&(row, _)| {
            only.as_ref()
                .is_none_or(|o| o.contains(&state.keys.recipient_hash(p.audience.email(row))))
        })
        .collect();

    if !args.test.is_empty() {
        let Some(transport) = relays.first().map(|r| r.transport.clone()) else {
            anyhow::bail!("--test needs --smtp or a [[send.relay]]");
        };
        let mut messages = Vec::new();
        for pick in [true, false] {
            let Some(&(row, personalised)) = recipients.iter().find(|r| r.1 == pick) else {
                continue;
            };
            let letter = p
                .letter(&state.keys, row, personalised)
                .map_err(|e| anyhow::anyhow!(e.detail))?;
            for addr in &args.test {
                let to: lettre::Address = addr
                    .parse()
                    .with_context(|| format!("--test {addr} is not an address"))?;
                let msg = tact::message::build(
                    &p.campaign,
                    &letter,
                    addr,
                    std::time::SystemTime::now(),
                    "[TEST] ",
                )?;
                messages.push((to, msg));
            }
        }
        let results = tact::send::send_tests(&transport, &p.campaign, messages)?;
        println!(
            "test messages: {} ({} not recorded in the ledger)",
            results.join(", "),
            results.len()
        );
        return Ok(0);
    }

    if args.dry_run {
        let started = Instant::now();
        let built: usize = recipients
            .par_iter()
            .filter(|&&(row, personalised)| {
                p.letter(&state.keys, row, personalised)
                    .ok()
                    .and_then(|l| {
                        tact::message::build(
                            &p.campaign,
                            &l,
                            p.audience.email(row),
                            std::time::SystemTime::now(),
                            "",
                        )
                        .ok()
                    })
                    .and_then(|m| tact::send::sign(&p.campaign, m).ok())
                    .is_some()
            })
            .count();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "dry run: {built} message(s) built ({} personalised, {} generic) in {secs:.2}s; nothing sent, nothing recorded",
            report.audience.personalised, report.audience.generic
        );
        return Ok(0);
    }

    let jobs = tact::send::queue(&p, &state.keys, &mut ledger, &recipients, g.now)?;
    // A million recipients' plan and list are no longer needed: the jobs are.
    drop((plan, recipients));
    ledger.audit_append(
        &state.keys,
        &name,
        "send-started",
        &started_event(&report, jobs.len()),
        g.now,
    )?;
    let tally = Tally::default();
    let stop = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let run_started = Instant::now();
    let summary = std::thread::scope(|scope| {
        scope.spawn(|| watch_ctrl_c(&stop, &finished));
        let progress = scope.spawn(|| show_progress(&tally, &finished));
        let run = Run {
            prepared: &p,
            keys: &state.keys,
            tally: &tally,
            stop: &stop,
            now: g.now,
        };
        let result = tact::send::send_all(run, ledger, jobs, &relays, opts);
        finished.store(true, Ordering::SeqCst);
        let _ = progress.join();
        result
    })?;
    let mut ledger = state.ledger(false)?;
    let totals = ledger.counts(&name)?;
    let finished_event = serde_json::json!({ "summary": summary, "ledger": totals });
    ledger.audit_append(
        &state.keys,
        &name,
        "send-finished",
        &finished_event,
        g.now + chrono::TimeDelta::from_std(run_started.elapsed()).unwrap_or_default(),
    )?;
    if args.json {
        let v = serde_json::json!({
            "campaign": name,
            "state": state.store.to_string(),
            "summary": summary,
            "skipped": report.audience.excluded,
            "ledger": totals,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_summary(&summary, &report, &totals);
    }
    Ok(exit_code(&summary))
}

/// What the audit log keeps of a run's start: the verdict it ran on, the acknowledgements
/// that allowed it, the fields it used with their classes, and who would get what.
fn started_event(report: &tact::check::Report, recipients: usize) -> serde_json::Value {
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

fn exit_code(s: &Summary) -> u8 {
    if s.interrupted {
        130
    } else if s.paused.is_some() {
        1
    } else if s.failed > 0 || s.uncertain > 0 || s.deferred > 0 {
        5
    } else {
        0
    }
}

fn print_summary(
    s: &Summary,
    report: &tact::check::Report,
    totals: &tact::state::ledger::StatusCounts,
) {
    println!(
        "sent {} in {:.1}s ({:.0}/s)",
        s.sent, s.elapsed_seconds, s.rate_per_second
    );
    if s.sent_by_relay.len() > 1 {
        let by: Vec<String> = s
            .sent_by_relay
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        println!("by relay: {}", by.join(", "));
    }
    if s.failed > 0 {
        let codes: Vec<String> = s
            .failed_by_code
            .iter()
            .map(|(c, n)| format!("{n}×{c}"))
            .collect();
        println!("failed permanently: {} ({})", s.failed, codes.join(", "));
    }
    if s.uncertain > 0 {
        println!(
            "uncertain: {} (the connection broke after the message was handed over; not resent)",
            s.uncertain
        );
    }
    if s.deferred > 0 {
        println!(
            "deferred: {} (temporary failures; a later run retries them)",
            s.deferred
        );
    }
    if !s.quota_spent.is_empty() {
        println!("daily quota spent: {}", s.quota_spent.join(", "));
    }
    if s.paused.is_none() {
        // When every relay gave out, the `stopped:` line says it.
        for line in &s.relays_out {
            println!("given up: {line}");
        }
    }
    if s.suppressed_during_send > 0 {
        println!("suppressed while sending: {}", s.suppressed_during_send);
    }
    for reason in tact::plan::Reason::ALL {
        let n = report.audience.excluded(reason);
        if n > 0 {
            println!("skipped {}: {n}", reason.key());
        }
    }
    println!(
        "ledger for this campaign: {} sent, {} failed, {} uncertain, {} pending",
        totals.sent, totals.failed, totals.sending, totals.pending
    );
    if let Some(why) = &s.paused {
        println!("stopped: {why}");
    }
    if s.interrupted {
        println!(
            "interrupted: in-flight messages were finished and recorded; run again to continue"
        );
    }
}

/// Ctrl-C stops new messages; in-flight ones finish and are recorded.
fn watch_ctrl_c(stop: &AtomicBool, finished: &AtomicBool) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    if r.is_ok() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    return;
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if finished.load(Ordering::SeqCst) {
                        return;
                    }
                }
            }
        }
    });
}

/// A bar on a terminal, a line every five seconds otherwise (cron logs).
fn show_progress(t: &Tally, finished: &AtomicBool) {
    // The sender sets the total once it starts: read it each time, not before.
    let total = || t.total.load(Ordering::Relaxed) as u64;
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        while !finished.load(Ordering::SeqCst) {
            bar.set_length(total());
            bar.set_position(t.done() as u64);
            bar.set_message(format!(
                "failed {} uncertain {}",
                t.failed.load(Ordering::Relaxed),
                t.uncertain.load(Ordering::Relaxed)
            ));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.set_position(t.done() as u64);
        bar.finish_and_clear();
    } else {
        let mut last = Instant::now();
        while !finished.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() >= Duration::from_secs(5) {
                eprintln!(
                    "progress: {}/{} done, {} sent",
                    t.done(),
                    total(),
                    t.sent.load(Ordering::Relaxed)
                );
                last = Instant::now();
            }
        }
    }
}

/// `run-due`'s way in: a plain send of one scheduled campaign.
pub fn send_scheduled(
    g: &Globals,
    campaign: &std::path::Path,
    smtp: Option<&str>,
) -> anyhow::Result<u8> {
    let args = Args {
        campaign: campaign.to_path_buf(),
        smtp: smtp.map(str::to_string),
        dry_run: false,
        test: Vec::new(),
        retry_uncertain: false,
        durable: false,
        json: false,
    };
    run(g, &args)
}
