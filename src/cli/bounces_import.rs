//! `tact bounces import PATH...|imaps://user@host[:port]/MAILBOX [--campaign FILE] [--json]`:
//! applies what came back to the suppression list (the policy is `tact::bounce::import`).
//! A mailbox URL is read over IMAP (`tact::imap`): the password from TACT_IMAP_PASSWORD
//! only, processed messages flagged, never deleted. Prints counts only: no address, no
//! report.

use std::path::PathBuf;

use tact::bounce::{self, import::BouncePolicy, import::ImportCounts};
use tact::campaign::Campaign;
use tact::imap::{ImapError, MailboxImport, MailboxUrl};

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// .eml files, Maildir folders (cur/ and new/), directories of messages, mbox files,
    /// or a mailbox imaps://user@host[:port]/MAILBOX (imap:// only to a loopback host;
    /// password from TACT_IMAP_PASSWORD, private CA from TACT_IMAP_CA_FILE). Processed
    /// messages are flagged $TactProcessed and \Seen, never deleted. With --campaign and
    /// no PATH: the campaign's [bounces] imap.
    #[arg(value_name = "PATH|URL")]
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
    let (urls, paths): (Vec<&PathBuf>, Vec<&PathBuf>) = args
        .paths
        .iter()
        .partition(|p| p.to_str().is_some_and(MailboxUrl::is_url));
    let paths: Vec<PathBuf> = paths.into_iter().cloned().collect();
    let mut urls: Vec<String> = urls
        .iter()
        .map(|u| u.to_string_lossy().into_owned())
        .collect();
    if let Some(p) = bounce::missing(&paths).first() {
        return Err(super::usage(format!(
            "{}: no such file or directory",
            p.display()
        )));
    }
    let campaign = args.campaign.as_deref().map(Campaign::load).transpose()?;
    if args.paths.is_empty() {
        match campaign.as_ref().and_then(|c| c.bounces.imap.clone()) {
            Some(url) => urls.push(url),
            None => {
                return Err(super::usage(
                    "name reports to import (PATH or imaps:// URL), or --campaign FILE with [bounces] imap",
                ));
            }
        }
    }
    // Bad URLs and a missing password are bad usage, found before anything is read.
    for u in &urls {
        MailboxUrl::parse(u).map_err(imap_error)?;
        tact::imap::Options::from_env(&env).map_err(imap_error)?;
    }
    let policy = campaign
        .as_ref()
        .map_or_else(BouncePolicy::default, |c| BouncePolicy::from(&c.bounces));
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    let mut ledger = state.ledger(false)?;
    let mut counts = ImportCounts::default();
    if !paths.is_empty() {
        counts = bounce::import::import(
            &mut ledger,
            &state.keys,
            &policy,
            bounce::read_paths(&paths),
            g.now,
        )?;
    }
    let mut mailboxes = Vec::new();
    for u in &urls {
        let done = tact::imap::import_url(
            &mut ledger,
            &state.keys,
            &policy,
            u,
            &env,
            g.now,
            &mut |_| {},
        )
        .map_err(imap_error)?;
        counts.add(&done.counts);
        mailboxes.push((MailboxUrl::parse(u).map_err(imap_error)?.endpoint(), done));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&counts)?);
    } else {
        print!("{}", summary(&counts, &policy));
        for (endpoint, done) in &mailboxes {
            println!("{}", mailbox_line(endpoint, done));
        }
        println!("(state: {})", state.store);
    }
    Ok(0)
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Bad usage (a URL, the environment) exits 2; the rest is a failure (exit 1).
fn imap_error(e: ImapError) -> anyhow::Error {
    if e.is_usage() {
        super::usage(e.to_string())
    } else {
        e.into()
    }
}

/// What one mailbox gave, by host and mailbox only (the user is usually an address).
pub fn mailbox_line(endpoint: &str, done: &MailboxImport) -> String {
    let mut s = format!(
        "mailbox {endpoint}: {} message(s) imported and flagged {} (never deleted)",
        done.mailbox.processed,
        tact::imap::PROCESSED
    );
    if done.mailbox.left > 0 {
        s.push_str(&format!("; {} left for the next run", done.mailbox.left));
    }
    s
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
