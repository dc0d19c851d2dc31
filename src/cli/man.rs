//! `tact man`: the manual page in roff, from the same definitions as `--help`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write tact.1 and one page per command (tact-check.1, …) into this directory instead
    /// of printing tact.1, e.g. `tact man --dir ~/.local/share/man/man1`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let cmd = super::Cli::command();
    let Some(dir) = &args.dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::io::stdout().lock().write_all(&out)?;
        return Ok(0);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pages = write_pages(&cmd, "tact", dir)?;
    println!("wrote {pages} manual pages to {}", dir.display());
    Ok(0)
}

/// The page of `cmd` (named `name`), then one for each subcommand, `tact-suppress-add.1`
/// style, as git's pages are named.
fn write_pages(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> anyhow::Result<usize> {
    let page = cmd.clone().name(name.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    let mut pages = 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        pages += write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(pages)
}
