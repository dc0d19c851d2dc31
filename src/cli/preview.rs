//! `tact preview CAMPAIGN [--out DIR] [--limit N] [--recipient EMAIL [--open]]`: what send would
//! send, as .eml files (0600), without sending anything. Previews are not DKIM-signed: a
//! signature is only worth its key's exposure on mail that leaves, and it would not verify
//! after the Date and Message-ID of a real send anyway.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use rayon::prelude::*;

use tact::check::RowProblem;
use tact::plan::{Outcome, Prepared};
use tact::state::{create_private_dir, normalise_address, write_private};

use super::Globals;
use super::report::write_row_warnings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The campaign file (TOML).
    campaign: PathBuf,
    /// Folder for the .eml files (created 0700). Default: preview-<campaign name>.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write at most this many messages.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print the message for this one address to stdout instead.
    #[arg(long, value_name = "EMAIL", conflicts_with_all = ["out", "limit"])]
    recipient: Option<String>,
    /// With --recipient: open the message in the desktop's viewer ($BROWSER, else
    /// xdg-open) from a 0600 temporary file instead of printing it.
    #[arg(long, requires = "recipient")]
    open: bool,
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let state = g.state_or_init()?;
    let p = Prepared::load(&args.campaign, g.now)
        .with_context(|| format!("cannot preview {}", args.campaign.display()))?;
    let keys = &state.keys;
    let facts =
        state
            .ledger(false)?
            .facts(&p.campaign.name, p.campaign.policy.min_hours_between, g.now)?;
    let plan = p.plan(keys, &facts, g.now);
    // Files on disk are data too: a campaign blocked for what it shows (special-category
    // data, unescaped fields, one-to-one targeting) is not written out for anyone. The
    // canary renders count: a route the walker cannot see is still a markup injection.
    let stats = tact::check::preview_stats(&p, keys, &plan, g.now);
    let blocks: Vec<_> = tact::check::rules(&p, &plan.counts(), &stats)
        .into_iter()
        .filter(|f| f.level == tact::check::Level::Block)
        .collect();
    if !blocks.is_empty() {
        for f in &blocks {
            eprintln!("tact: block: {}: {}", f.rule, f.message);
        }
        eprintln!("tact: nothing written: fix the campaign first (`tact check` explains)");
        return Ok(4);
    }
    let date = std::time::SystemTime::from(g.now);

    if let Some(wanted) = &args.recipient {
        let wanted = normalise_address(wanted);
        let Some(d) = plan
            .decisions
            .iter()
            .find(|d| normalise_address(p.audience.email(d.row as usize)) == wanted)
        else {
            // The operator's own input, yet still an address: it stays out of the output.
            return Err(super::usage(format!(
                "the address given to --recipient is not in {}",
                p.audience.header.path.display()
            )));
        };
        let row = d.row as usize;
        let line = p.audience.line(row);
        let personalised = match d.outcome {
            Outcome::Personalised => true,
            Outcome::Generic => false,
            Outcome::Excluded(r) => {
                return Err(super::usage(format!(
                    "line {line} gets no message: {}",
                    r.key()
                )));
            }
        };
        let letter = match p.letter(keys, row, personalised) {
            Ok(l) => l,
            Err(e) => {
                return Err(super::usage(format!(
                    "line {line} gets no message: {}: {}",
                    e.reason.key(),
                    e.detail
                )));
            }
        };
        let msg = tact::message::build(&p.campaign, &letter, p.audience.email(row), date, "")?;
        if args.open {
            return match crate::viewer::open_message(&msg.formatted()) {
                Ok(said) => {
                    eprintln!("tact: {said}");
                    Ok(0)
                }
                Err(why) => {
                    eprintln!("tact: not opened: {why}");
                    Ok(1)
                }
            };
        }
        std::io::stdout().lock().write_all(&msg.formatted())?;
        return Ok(0);
    }

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("preview-{}", p.campaign.name)));
    create_private_dir(&out).with_context(|| format!("cannot create {}", out.display()))?;
    // A message left from an earlier preview may be for someone who has since withdrawn
    // consent: the folder must hold exactly what send would send now.
    remove_old_messages(&out)?;
    let recipients: Vec<(usize, bool)> = plan
        .recipients()
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    // Each file is named by its CSV line, never by its address.
    let results: Vec<Result<(), RowProblem>> = recipients
        .par_iter()
        .map(|&(row, personalised)| {
            let line = p.audience.line(row);
            let problem = |reason: &'static str, detail: String| RowProblem {
                line,
                reason,
                detail,
            };
            let letter = p
                .letter(keys, row, personalised)
                .map_err(|e| problem(e.reason.key(), e.detail))?;
            let msg = tact::message::build(&p.campaign, &letter, p.audience.email(row), date, "")
                .map_err(|e| problem("render_error", e.to_string()))?;
            let path = out.join(format!("line-{line:07}.eml"));
            write_private(&path, &msg.formatted(), false)
                .map_err(|e| problem("write", format!("{e}: {}", path.display())))
        })
        .collect();
    let skipped: Vec<RowProblem> = results.into_iter().filter_map(Result::err).collect();
    if let Some(w) = skipped.iter().find(|s| s.reason == "write") {
        bail!("cannot write the preview: {}", w.detail);
    }
    write_row_warnings(&mut std::io::stderr().lock(), &p, &skipped, 20)?;
    let written = recipients.len() - skipped.len();
    println!(
        "wrote {written} message(s) to {} ({} skipped at render); state: {}",
        out.display(),
        skipped.len(),
        state.store
    );
    Ok(0)
}

fn remove_old_messages(dir: &std::path::Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("line-") && name.ends_with(".eml") {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove the old {}", path.display()))?;
        }
    }
    Ok(())
}
