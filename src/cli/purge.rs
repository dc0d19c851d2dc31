//! `tact purge --older-than DAYS`: storage limitation. Suppression hashes, campaign
//! completion marks and a sealed audit checkpoint stay; per-recipient detail goes.

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Delete delivery rows and audit events older than this many days.
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    older_than: u32,
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    let mut ledger = state.ledger(false)?;
    let p = ledger.purge(&state.keys, args.older_than, g.now)?;
    println!(
        "purged {} delivery row(s) and {} audit event(s) older than {} days, and {} bounce event(s); kept {} row(s) of campaigns not yet complete (state: {})",
        p.deliveries, p.audit_events, args.older_than, p.bounces, p.kept_incomplete, state.store
    );
    Ok(0)
}
