//! Command-line front end: one file per command. The doc comments are the `--help`.

mod audit;
mod bounces;
mod bounces_import;
mod check;
mod completions;
mod export;
mod forget;
mod init;
mod man;
mod new;
mod preview;
mod purge;
mod report;
mod run_due;
mod send;
mod suppress;
mod unsubscribe_server;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

pub use crate::globals::Globals;
use tact::state::postgres::PgTarget;

/// The package version and the commit it was built from (`build.rs`), so a bug report
/// names the exact code.
const VERSION: &str = env!("TACT_VERSION");

/// tact — email campaigns that know which customer fields they touch.
#[derive(Debug, Parser)]
#[command(name = "tact", version = VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// State directory (keys, ledger, suppression, audit). Default: $TACT_HOME, else
    /// $XDG_DATA_HOME/tact, else ~/.local/share/tact. A postgres://user@host/db URL keeps
    /// the ledger, suppression list and audit log in that shared database instead (as
    /// TACT_DATABASE_URL does; password from PGPASSWORD), with the key still local.
    #[arg(long, global = true, value_name = "DIR|URL")]
    state: Option<PathBuf>,

    /// Pretend it is this moment (RFC 3339), for consent ages, days_since and schedules.
    #[arg(long, global = true, value_name = "RFC3339", value_parser = parse_now)]
    now: Option<DateTime<Utc>>,

    /// Open this campaign file in the composer (TUI). With no command and no campaign, the
    /// composer lists ./campaigns (else sample-data/campaigns) to pick from.
    #[arg(value_name = "CAMPAIGN")]
    campaign: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the state directory and its keys (or take another host's key).
    Init(init::Args),
    /// Validate, classify, run the creepiness check and count who would get what.
    Check(check::Args),
    /// Write what send would send, one .eml per recipient, unsigned (send adds the
    /// DKIM-Signature); sends nothing.
    Preview(preview::Args),
    /// Send the campaign over SMTP: at most once per recipient, never to the suppressed.
    Send(send::Args),
    /// Send every campaign in DIR whose send_at has come (for cron and systemd timers).
    RunDue(run_due::Args),
    /// Every recorded send, and whether the audit chain is intact.
    Audit(audit::Args),
    /// Delete per-recipient detail older than a number of days (storage limitation).
    Purge(purge::Args),
    /// Manage the suppression list.
    #[command(subcommand)]
    Suppress(suppress::Command),
    /// One-click unsubscribe endpoint (RFC 8058): a POST with a valid token suppresses.
    UnsubscribeServer(unsubscribe_server::Args),
    /// Erase a person (GDPR Art. 17): suppress, drop ledger rows, rewrite the CSV without them.
    Forget(forget::Args),
    /// Everything held about a person (GDPR Art. 15), as JSON.
    Export(export::Args),
    /// Start a campaign from your own customer file (a Mailchimp, Shopify, Klaviyo,
    /// HubSpot or WooCommerce export, or any CSV): schema, campaign and templates, and what
    /// the file is missing. Never overwrites.
    New(new::Args),
    /// Print the shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::Args),
    /// Print the manual page (roff), or write one page per command with --dir.
    Man(man::Args),
    /// Bounces, complaints and auto-replies: classify them by who is at fault, and import
    /// them into the suppression list.
    #[command(subcommand)]
    Bounces(bounces::Command),
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not RFC 3339 (like 2026-11-23T09:00:00Z): {e}"))
}

/// `--state` is a directory, or a database URL; with a URL the key directory is found as
/// if `--state` were not given. `TACT_DATABASE_URL` names the database when `--state` does
/// not, and may carry a password (the environment is not on the command line).
fn split_state(flag: Option<PathBuf>) -> anyhow::Result<(Option<PathBuf>, Option<PgTarget>)> {
    let password = std::env::var("PGPASSWORD").ok();
    if let Some(url) = flag
        .as_deref()
        .and_then(|p| p.to_str())
        .filter(|s| PgTarget::is_url(s))
    {
        return Ok((None, Some(PgTarget::parse(url, true, password)?)));
    }
    let env = std::env::var("TACT_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let store = env
        .map(|url| PgTarget::parse(&url, false, password))
        .transpose()?;
    Ok((flag, store))
}

pub fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let (state_flag, store) = split_state(cli.state)?;
    let globals = Globals {
        state_flag,
        store,
        now: cli.now.unwrap_or_else(Utc::now),
    };
    let Some(command) = cli.command else {
        return crate::tui::run(&globals, cli.campaign);
    };
    match command {
        Command::Init(args) => init::run(&globals, &args),
        Command::Check(args) => check::run(&globals, &args),
        Command::Preview(args) => preview::run(&globals, &args),
        Command::Send(args) => send::run(&globals, &args),
        Command::Suppress(cmd) => suppress::run(&globals, &cmd),
        Command::UnsubscribeServer(args) => unsubscribe_server::run(&globals, &args),
        Command::Forget(args) => forget::run(&globals, &args),
        Command::Export(args) => export::run(&globals, &args),
        Command::Audit(args) => audit::run(&globals, &args),
        Command::Purge(args) => purge::run(&globals, &args),
        Command::RunDue(args) => run_due::run(&globals, &args),
        Command::New(args) => new::run(&args),
        Command::Completions(args) => completions::run(&args),
        Command::Man(args) => man::run(&args),
        Command::Bounces(cmd) => bounces::run(&globals, &cmd),
    }
}

/// Bad usage that clap cannot see (an argument that is not an address, an address that is
/// not in the file): exit 2, like bad input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// `Err(usage(…))` from a command: exit 2 with this message.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// An address given on the command line (`what` names the argument): exit 2 when it is
/// not one, without echoing it. Compared trimmed, as the ledger hashes it.
pub fn address_arg(value: &str, what: &str) -> anyhow::Result<()> {
    if value.trim().parse::<lettre::Address>().is_err() {
        return Err(usage(format!("{what} is not an email address")));
    }
    Ok(())
}

/// Exit code 2 for bad usage or input anywhere in the chain, 1 for anything else.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    let input = err.chain().any(|c| {
        c.downcast_ref::<tact::Error>()
            .is_some_and(tact::Error::is_input)
            || c.is::<Usage>()
    });
    if input { 2 } else { 1 }
}
