//! `tact completions SHELL`: the shell's completion script, from the same definitions as
//! `--help`, so it never lags behind a new command or flag.

use std::io::Write as _;

use clap::CommandFactory as _;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, powershell or elvish. Install it where your shell looks, e.g.
    /// `tact completions bash > ~/.local/share/bash-completion/completions/tact`.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let mut cmd = super::Cli::command();
    // Into memory first: clap_complete panics on a failed write (`… | head`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "tact", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(0)
}
