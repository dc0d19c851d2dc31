//! `tact bounces import PATH... [--campaign FILE] [--json]`: applies what came back to the
//! suppression list (the policy is `tact::bounce::import`). Prints counts only: no
//! address, no report.

use std::path::PathBuf;

use tact::bounce::{self, import::BouncePolicy, import::ImportCounts};
use tact::campaign::Campaign;

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// .eml files, Maildir folders (cur/ and new/), directories of messages, mbox files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Take `soft_limit` and `soft_window_days` from this campaign's `[bounces]` table
    /// (default without it: 3 soft bounces within 30 days). Bounces are attributed to
    /// their own campaigns either way.
    #[arg(long, value_name = "FILE")]
    pub campaign: Option<PathBuf>,
    /// Print the counts as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    if let Some(p) = bounce::missing(&args.paths).first() {
        return Err(super::usage(format!(
            "{}: no such file or directory",
            p.display()
        )));
    }
    let policy = match &args.campaign {
        Some(file) => BouncePolicy::from(&Campaign::load(file)?.bounces),
        None => BouncePolicy::default(),
    };
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    let mut ledger = state.ledger(false)?;
    let counts = bounce::import::import(
        &mut ledger,
        &state.keys,
        &policy,
        bounce::read_paths(&args.paths),
        g.now,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&counts)?);
    } else {
        print!("{}", summary(&counts, &policy));
        println!("(state: {})", state.store);
    }
    Ok(0)
}

/// The counts as people read them.
pub fn summary(c: &ImportCounts, p: &BouncePolicy) -> String {
    format!(
        "imported {} report(s), {} already imported before (skipped)\n\
         hard {}, soft {}, complaints {}, sender {}, unknown {}\n\
         auto-reply {}, delivered {}, test messages {}, not attributable {}\n\
         suppressed {} new recipient(s) (hard and complaints at once, soft after {} within {} days)\n",
        c.reports - c.duplicates,
        c.duplicates,
        c.hard,
        c.soft,
        c.complaints,
        c.sender,
        c.unknown,
        c.auto_reply,
        c.delivered,
        c.tests,
        c.unattributed,
        c.suppressed,
        p.soft_limit,
        p.soft_window_days,
    )
}
