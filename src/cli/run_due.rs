//! `tact run-due DIR [--smtp URL]`: for cron and systemd timers. Sends every campaign in DIR
//! whose `send_at` has come; holds future ones; never fires one later than
//! `[policy].late_window_hours` (a restored server must not send last week's promotion),
//! and reports such a missed campaign once, not on every tick. A due campaign with
//! `[bounces] imap` imports its bounce mailbox first, so what bounced since the last send
//! is suppressed before this one.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::TimeDelta;

use tact::campaign::Campaign;
use tact::state::State;

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder of campaign files (*.toml).
    dir: PathBuf,
    /// As for `tact send`; also TACT_SMTP_URL.
    #[arg(
        long,
        env = "TACT_SMTP_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    smtp: Option<String>,
}

/// What became of one campaign file on this tick.
#[derive(Debug)]
enum Fate {
    Sent(u8),
    Waiting(String),
    Unscheduled,
    /// With the rows an earlier run left uncertain: a cron log must keep saying so.
    Complete(usize),
    Missed {
        first_time: bool,
        send_at: String,
    },
    /// With the exit code its error maps to (2: the file is bad input).
    Invalid {
        why: String,
        code: u8,
    },
}

impl Fate {
    fn invalid(e: anyhow::Error) -> Fate {
        Fate::Invalid {
            why: format!("{e:#}"),
            code: super::exit_code_for(&e),
        }
    }
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    // Overlapping ticks queue here; the second then finds the work done.
    let lock_path = state.dir.join("run-due.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;

    let entries = std::fs::read_dir(&args.dir).map_err(|source| tact::Error::Read {
        path: args.dir.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut worst = 0u8;
    for file in &files {
        let fate = tick(g, &state, file, args.smtp.as_deref());
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (line, code) = match &fate {
            Fate::Sent(code @ (0 | 5)) => (format!("sent (exit {code})"), *code),
            Fate::Sent(code @ (3 | 4)) => (
                format!("NOT SENT: the check verdict stops it (exit {code})"),
                *code,
            ),
            Fate::Sent(2) => ("FAILED: did not start (exit 2)".into(), 2),
            Fate::Sent(130) => ("interrupted (exit 130)".into(), 130),
            // A relay that gave out may have taken part of the run: the ledger knows who.
            Fate::Sent(code) => (format!("FAILED: the send stopped (exit {code})"), *code),
            Fate::Waiting(at) => (format!("waiting until {at}"), 0),
            Fate::Unscheduled => ("no send_at: not scheduled".into(), 0),
            Fate::Complete(0) => ("complete".into(), 0),
            Fate::Complete(n) => (
                format!(
                    "complete; {}",
                    tact::send::orchestrate::uncertain_note(*n).unwrap_or_default()
                ),
                5,
            ),
            Fate::Missed {
                first_time: true,
                send_at,
            } => (
                format!("MISSED: send_at {send_at} is past the late window; not sent"),
                1,
            ),
            Fate::Missed {
                first_time: false, ..
            } => ("missed earlier (already reported)".into(), 0),
            Fate::Invalid { why, code } => (format!("FAILED: {why}"), *code),
        };
        println!("{name}: {line}");
        worst = worst.max(code);
    }
    drop(lock);
    Ok(worst)
}

fn tick(g: &Globals, state: &State, file: &Path, smtp: Option<&str>) -> Fate {
    let campaign = match Campaign::load(file) {
        Ok(c) => c,
        Err(e) => return Fate::invalid(e.into()),
    };
    let Some(send_at) = campaign.send_at else {
        return Fate::Unscheduled;
    };
    let mut ledger = match state.ledger(false) {
        Ok(l) => l,
        Err(e) => return Fate::invalid(e.into()),
    };
    match ledger.completed_at(&campaign.name) {
        Ok(Some(_)) => {
            let uncertain = ledger.counts(&campaign.name).map_or(0, |c| c.sending);
            return Fate::Complete(uncertain);
        }
        Ok(None) => {}
        Err(e) => return Fate::invalid(e.into()),
    }
    let send_at_utc = send_at.with_timezone(&chrono::Utc);
    if send_at_utc > g.now {
        return Fate::Waiting(send_at.to_rfc3339());
    }
    let late = g.now - send_at_utc > TimeDelta::hours(i64::from(campaign.policy.late_window_hours));
    // A campaign that started in time may finish late: only a campaign that never started
    // is held back as missed.
    let started = ledger
        .counts(&campaign.name)
        .map(|c| c.sent + c.failed + c.sending + c.pending > 0)
        .unwrap_or(false);
    if late && !started {
        let stamp = send_at.to_rfc3339();
        let already = ledger
            .audit_events(Some(&campaign.name))
            .map(|evs| {
                evs.iter()
                    .any(|e| e.kind == "missed" && e.body["send_at"] == stamp.as_str())
            })
            .unwrap_or(false);
        if !already {
            let body = serde_json::json!({ "send_at": stamp, "late_window_hours": campaign.policy.late_window_hours });
            if let Err(e) = ledger.audit_append(&state.keys, &campaign.name, "missed", &body, g.now)
            {
                return Fate::invalid(e.into());
            }
        }
        return Fate::Missed {
            first_time: !already,
            send_at: stamp,
        };
    }
    // A bounce or complaint that arrived since the last send suppresses before this one.
    // A mailbox that cannot be read holds the send back (the next tick tries again):
    // sending without it could mail an address known to be dead.
    if let Some(url) = &campaign.bounces.imap {
        let policy = tact::bounce::import::BouncePolicy::from(&campaign.bounces);
        match tact::imap::import_url(
            &mut ledger,
            &state.keys,
            &policy,
            url,
            &|k| std::env::var(k).ok(),
            g.now,
            &mut |_| {},
        ) {
            Ok(done) => println!(
                "{}: bounces imported first: {}",
                file.file_stem().unwrap_or_default().to_string_lossy(),
                done.line()
            ),
            Err(e) => {
                return Fate::Invalid {
                    code: if e.is_usage() { 2 } else { 1 },
                    why: format!("bounces not imported, so not sent: {e}"),
                };
            }
        }
    }
    drop(ledger);
    match super::send::send_scheduled(g, file, smtp) {
        Ok(code) => Fate::Sent(code),
        Err(e) => Fate::invalid(e),
    }
}
