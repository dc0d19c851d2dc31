//! `tact send CAMPAIGN [--smtp URL] [--dry-run] [--test [ADDR...] [--test-as EMAIL]] [--retry-uncertain]`:
//! the check gate, then every recipient at most once over real SMTP.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use tact::campaign::Campaign;
use tact::send::orchestrate::{
    self, Checked, Completed, Gate, Purpose, Ready, Refusal, Refused, Request, Sent, uncertain_note,
};
use tact::send::{Summary, Tally, test_send};
use tact::state::State;

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
    /// Send a test: the personalised and generic renderings for a synthetic sample person
    /// ("Alex"), subject prefixed [TEST], with an unsubscribe link that unsubscribes nobody;
    /// not recorded in the ledger. No ADDR: [send] test_to or TACT_TEST_TO.
    #[arg(long, value_name = "ADDR", num_args = 0..)]
    test: Option<Vec<String>>,
    /// With --test: render this recipient instead of the sample person (only if the
    /// campaign would mail them); the audit log records the pick by its keyed hash.
    #[arg(long, value_name = "EMAIL", requires = "test")]
    test_as: Option<String>,
    /// With --test: allow addresses that are not in [send] test_to or TACT_TEST_TO.
    #[arg(long, requires = "test")]
    allow_other_test_address: bool,
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
    for (i, addr) in args.test.iter().flatten().enumerate() {
        super::address_arg(addr, &format!("argument {} of --test", i + 1))?;
    }
    if let Some(addr) = &args.test_as {
        super::address_arg(addr, "--test-as")?;
    }
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    let campaign = Campaign::load(&args.campaign)
        .with_context(|| format!("cannot send {}", args.campaign.display()))?;
    let purpose = if args.test.is_some() {
        Purpose::Test
    } else if args.dry_run {
        Purpose::DryRun
    } else {
        Purpose::Send
    };
    let env = |k: &str| std::env::var(k).ok();
    let request = Request {
        state: &state,
        campaign,
        smtp: args.smtp.as_deref(),
        env: &env,
        retry_uncertain: args.retry_uncertain,
        durable: args.durable,
        purpose,
        now: g.now,
    };
    let ready = match orchestrate::gate(request)
        .with_context(|| format!("cannot send {}", args.campaign.display()))?
    {
        Gate::Completed(c) => return completed(&state, &c, args.json),
        Gate::Refused(r) => return refused(&r),
        Gate::Passed(ready) => ready,
    };
    let c = &ready.checked;
    // Scoped: the progress thread writes to stderr later, and a held lock would block it.
    {
        let mut stderr = std::io::stderr().lock();
        write_row_warnings(&mut stderr, &c.prepared, &c.report.problems, 20)?;
        if let Some(note) = uncertain_note(c.uncertain) {
            writeln!(stderr, "tact: {note}")?;
        }
    }
    let uncertain = c.uncertain;
    match purpose {
        Purpose::Test => send_test(&state, &ready, args, &env),
        Purpose::DryRun => dry_run(&state, c).map(|()| if uncertain > 0 { 5 } else { 0 }),
        Purpose::Send => send(&state, *ready, args.json),
    }
}

/// A complete campaign: nothing to send, build or test, and its uncertain rows said again.
fn completed(state: &State, c: &Completed, json: bool) -> anyhow::Result<u8> {
    if json {
        let v = serde_json::json!({
            "campaign": c.campaign,
            "state": state.store.to_string(),
            "completed_at": c.at.to_rfc3339(),
            "summary": Summary::default(),
            "ledger": c.ledger,
            "uncertain": c.uncertain,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} (state: {})",
            orchestrate::completed_note(&c.campaign, c.at),
            state.store
        );
    }
    if let Some(note) = uncertain_note(c.uncertain) {
        eprintln!("tact: {note}");
    }
    Ok(c.exit_code())
}

fn refused(r: &Refused) -> anyhow::Result<u8> {
    let mut stderr = std::io::stderr().lock();
    if let Some(c) = &r.checked {
        write_row_warnings(&mut stderr, &c.prepared, &c.report.problems, 20)?;
        if matches!(r.refusal, Refusal::Verdict { .. }) {
            write_report(&mut stderr, &c.prepared, &c.report, Style::detect())?;
        }
    }
    let prefix = match r.refusal {
        Refusal::Verdict { .. } => "tact:",
        _ => "tact: error:",
    };
    writeln!(stderr, "{prefix} {}", r.refusal.message(&r.campaign))?;
    if let Some(note) = r.checked.as_ref().and_then(|c| uncertain_note(c.uncertain)) {
        writeln!(stderr, "tact: {note}")?;
    }
    Ok(r.refusal.exit_code())
}

/// `--test`: the sample person (or the `--test-as` pick) to the test addresses.
fn send_test(
    state: &State,
    ready: &Ready<'_>,
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<u8> {
    let Some(transport) = ready.relays.first().map(|r| &r.transport) else {
        return Err(super::usage("--test needs --smtp or a [[send.relay]]"));
    };
    let p = &ready.checked.prepared;
    let configured = test_send::configured(&p.campaign, env);
    let request = test_send::Request {
        prepared: p,
        plan: &ready.checked.plan,
        keys: &state.keys,
        state: Some(state),
        transport,
        to: args.test.as_deref().unwrap_or_default(),
        configured: &configured,
        allow_other: args.allow_other_test_address,
        who: args
            .test_as
            .clone()
            .map_or(test_send::Who::Sample, test_send::Who::Address),
    };
    match test_send::send(request)? {
        Ok(sent) => {
            println!("{}", sent.summary());
            Ok(0)
        }
        Err(refusal) => {
            eprintln!("tact: error: {}", refusal.message());
            Ok(2)
        }
    }
}

/// Builds (and signs) every message a send would send; sends and records nothing.
fn dry_run(state: &State, c: &Checked) -> anyhow::Result<()> {
    let recipients: Vec<(usize, bool)> = c.plan.recipients().collect();
    let d = orchestrate::dry_run(
        &c.prepared,
        &state.keys,
        &recipients,
        std::time::SystemTime::now(),
    );
    println!(
        "dry run: {} message(s) built ({} personalised, {} generic) in {:.2}s; nothing sent, nothing recorded",
        d.built, d.personalised, d.generic, d.seconds
    );
    Ok(())
}

/// The real run, with a progress display and Ctrl-C, then its summary.
fn send(state: &State, ready: Ready<'_>, json: bool) -> anyhow::Result<u8> {
    let tally = Tally::default();
    let stop = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let sent = std::thread::scope(|scope| {
        scope.spawn(|| watch_ctrl_c(&stop, &finished));
        let progress = scope.spawn(|| show_progress(&tally, &finished));
        let result = orchestrate::send(ready, &tally, &stop);
        finished.store(true, Ordering::SeqCst);
        let _ = progress.join();
        result
    })?;
    if sent.released > 0 {
        eprintln!(
            "released {} uncertain recipient(s) for resending",
            sent.released
        );
    }
    if json {
        let v = serde_json::json!({
            "campaign": sent.campaign,
            "state": state.store.to_string(),
            "summary": sent.summary,
            "skipped": sent.audience.excluded,
            "ledger": sent.ledger,
            "uncertain": sent.uncertain(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_summary(&sent);
    }
    if let Some(note) = uncertain_note(sent.uncertain_earlier) {
        eprintln!("tact: {note}");
    }
    Ok(sent.exit_code())
}

fn print_summary(sent: &Sent) {
    let s = &sent.summary;
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
    if let Some(line) = orchestrate::by_provider_line(s) {
        println!("by provider (sent/total): {line}");
    }
    for line in orchestrate::providers_out(s) {
        println!("provider given up for this run: {line}");
    }
    if s.failed > 0 {
        let codes: Vec<String> = s
            .failed_by_code
            .iter()
            .map(|(c, n)| format!("{n}×{c}"))
            .collect();
        println!("failed permanently: {} ({})", s.failed, codes.join(", "));
        if s.unknown_recipients > 0 {
            println!(
                "  of which refused as unknown at RCPT TO: {}",
                s.unknown_recipients
            );
        }
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
        let n = sent.audience.excluded(reason);
        if n > 0 {
            println!("skipped {}: {n}", reason.key());
        }
    }
    let totals = &sent.ledger;
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
        test: None,
        test_as: None,
        allow_other_test_address: false,
        retry_uncertain: false,
        durable: false,
        json: false,
    };
    run(g, &args)
}
