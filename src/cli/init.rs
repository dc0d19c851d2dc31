//! `tact init`: create the state directory and its master key.

use anyhow::Context as _;

use tact::state::{self, State};

use super::Globals;

pub fn run(g: &Globals) -> anyhow::Result<u8> {
    let dir = state::resolve_dir(g.state_flag.as_deref())?;
    let s = State::open_or_init(&dir)
        .with_context(|| format!("cannot initialise {}", dir.display()))?;
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
    Ok(0)
}
