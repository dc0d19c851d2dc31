//! `tact bounces parse PATH... [--json] [--reveal]`: what came back, read and classified;
//! nothing changes. Reports are streamed: each is printed as it is read, so a mailbox of
//! any size takes the memory of one message.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Subcommand;

use tact::bounce::{self, Kind, Report};

use super::Globals;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read bounces, complaints and auto-replies (.eml files, Maildir folders, mbox files)
    /// and print, for every recipient of every report, who is at fault. Changes nothing.
    Parse(ParseArgs),
    /// Apply them: hard bounces and complaints suppress at once, soft bounces after
    /// `[bounces] soft_limit` within `soft_window_days`, sender refusals are counted and
    /// leave the recipient mailable. A report imported twice counts once. Prints counts.
    Import(super::bounces_import::Args),
}

#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// .eml files, Maildir folders (cur/ and new/), directories of messages, mbox files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// One JSON array of {file, kind, status, code, reason, recipient}.
    #[arg(long)]
    json: bool,
    /// Print recipients in full (masked by default: j***@e***.com).
    #[arg(long)]
    reveal: bool,
}

pub fn run(g: &Globals, cmd: &Command) -> anyhow::Result<u8> {
    match cmd {
        Command::Parse(args) => parse(g, args),
        Command::Import(args) => super::bounces_import::run(g, args),
    }
}

fn parse(_g: &Globals, args: &ParseArgs) -> anyhow::Result<u8> {
    if let Some(p) = bounce::missing(&args.paths).first() {
        return Err(super::usage(format!(
            "{}: no such file or directory",
            p.display()
        )));
    }
    let out = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let reports = bounce::read_paths(&args.paths);
    if args.json {
        write_json(&mut out, reports, args.reveal)?;
    } else {
        write_table(&mut out, reports, args.reveal)?;
    }
    out.flush()?;
    Ok(0)
}

fn shown(recipient: Option<&str>, reveal: bool) -> Option<String> {
    recipient.map(|r| {
        if reveal {
            r.to_string()
        } else {
            tact::person::mask_address(r)
        }
    })
}

/// One line of `--json`, in the contract's order.
#[derive(serde::Serialize)]
struct Row<'a> {
    file: &'a str,
    kind: Kind,
    status: Option<&'a str>,
    code: Option<u16>,
    reason: &'a str,
    recipient: Option<String>,
}

fn write_json(
    out: &mut impl std::io::Write,
    reports: impl Iterator<Item = Report>,
    reveal: bool,
) -> anyhow::Result<()> {
    out.write_all(b"[")?;
    let mut first = true;
    for r in reports {
        for f in &r.findings {
            out.write_all(if first { b"\n  " } else { b",\n  " })?;
            first = false;
            let row = Row {
                file: &r.file,
                kind: f.kind,
                status: f.status.as_deref(),
                code: f.code,
                reason: &f.reason,
                recipient: shown(f.recipient.as_deref(), reveal),
            };
            serde_json::to_writer(&mut *out, &row)?;
        }
    }
    out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
    Ok(())
}

fn write_table(
    out: &mut impl std::io::Write,
    reports: impl Iterator<Item = Report>,
    reveal: bool,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<10}  {:<7}  {:<4}  {:<20}  {:<28}  FILE",
        "KIND", "STATUS", "CODE", "REASON", "RECIPIENT"
    )?;
    let mut counts = [0usize; Kind::ALL.len()];
    let mut reports_seen = 0usize;
    for r in reports {
        reports_seen += 1;
        for f in &r.findings {
            if let Some(i) = Kind::ALL.iter().position(|k| *k == f.kind) {
                counts[i] += 1;
            }
            writeln!(
                out,
                "{:<10}  {:<7}  {:<4}  {:<20}  {:<28}  {}",
                f.kind.as_str(),
                f.status.as_deref().unwrap_or("-"),
                f.code.map_or_else(|| "-".to_string(), |c| c.to_string()),
                f.reason,
                shown(f.recipient.as_deref(), reveal).unwrap_or_else(|| "-".into()),
                r.file.escape_debug()
            )?;
        }
    }
    let summary: Vec<String> = Kind::ALL
        .iter()
        .zip(counts)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    writeln!(out, "{reports_seen} report(s): {}", summary.join(", "))?;
    Ok(())
}
