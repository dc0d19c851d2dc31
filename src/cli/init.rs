//! `tact init`: create the state directory and its master key, or take another host's key
//! (`--import-key`) so that several hosts can share one PostgreSQL store.

use std::path::PathBuf;

use anyhow::Context as _;

use tact::state::{self, State};

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Use this master key (a copy of another host's master.key, mode 0600) instead of
    /// making a new one. Every host that shares a database must have the same key.
    #[arg(long, value_name = "FILE")]
    import_key: Option<PathBuf>,
    /// Also write the key for `unsubscribe-server --key` to this new file (0600): it opens
    /// unsubscribe tokens and adds suppressions, and cannot hash an address or seal the
    /// audit log. An existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    unsubscribe_key: Option<PathBuf>,
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let dir = state::resolve_dir(g.state_flag.as_deref())?;
    let s = match &args.import_key {
        Some(file) => State::import_key(&dir, file)
            .with_context(|| format!("cannot import the key into {}", dir.display()))?,
        None => State::open_or_init(&dir)
            .with_context(|| format!("cannot initialise {}", dir.display()))?,
    };
    if s.created {
        println!(
            "created state in {} (directory 0700, master key 0600)",
            dir.display()
        );
        println!(
            "back up {}: without it, tokens in sent mail cannot be opened",
            dir.join(state::MASTER_KEY).display()
        );
    } else {
        println!("state already exists in {}; nothing changed", dir.display());
    }
    // Opening the store records this key's identifier in a new one, and refuses a key that
    // differs from the one recorded (exit 2): better at init than at the first send.
    let s = s.with_store(g.store.clone());
    s.init_ledger()?;
    println!("store: {} (key id {})", s.store, s.keys.key_id_short());
    if let Some(file) = &args.unsubscribe_key {
        s.keys.unsubscribe_key().export(file)?;
        println!(
            "wrote the unsubscribe key to {} (0600): run `tact unsubscribe-server --key {}` with it; it opens unsubscribe tokens and nothing else",
            file.display(),
            file.display()
        );
    }
    Ok(0)
}
