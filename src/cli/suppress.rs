//! `tact suppress add EMAIL... | import FILE | check EMAIL | token TOKEN...`: the
//! suppression list, which always beats the CSV. Stored as keyed hashes only; no command
//! here prints an address or a token it was given.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;

use clap::Subcommand;

use tact::state::erase::{REASON_IMPORT, REASON_UNSUBSCRIBE};
use tact::state::ledger::Ledger;
use tact::state::{self, Opened, RecipientHash, State};

use super::Globals;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Never email these addresses again.
    Add {
        #[arg(required = true, value_name = "EMAIL")]
        emails: Vec<String>,
    },
    /// Suppress every address in a file: a CSV with an `email` column, or one address per
    /// line. Invalid entries are reported by line number, never by value.
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Exit 0 and say why if the address is suppressed, exit 6 if it is not.
    Check {
        #[arg(value_name = "EMAIL")]
        email: String,
    },
    /// Unsubscribe the recipients of these tokens (the `t=` of an unsubscribe URL, or the
    /// whole URL), for sites that take the one-click POST elsewhere. One forged token and
    /// nothing changes (exit 2).
    Token {
        /// (A token may start with `-`: it is still read as a token.)
        #[arg(required = true, value_name = "TOKEN", allow_hyphen_values = true)]
        tokens: Vec<String>,
    },
}

pub fn run(g: &Globals, cmd: &Command) -> anyhow::Result<u8> {
    // Bad arguments are named before the state is looked at, and never echoed.
    let given = match cmd {
        Command::Add { emails } => emails.as_slice(),
        Command::Check { email } => std::slice::from_ref(email),
        Command::Import { .. } | Command::Token { .. } => &[],
    };
    let verb = if matches!(cmd, Command::Add { .. }) {
        "add"
    } else {
        "check"
    };
    for (i, e) in given.iter().enumerate() {
        super::address_arg(e, &format!("argument {} of `suppress {verb}`", i + 1))?;
    }
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    if let Command::Token { tokens } = cmd {
        return token(g, &state, tokens);
    }
    let mut ledger = state.ledger(false)?;
    match cmd {
        Command::Add { emails } => {
            let mut new = 0;
            for e in emails {
                new +=
                    usize::from(ledger.suppress(&state.keys.recipient_hash(e), "manual", g.now)?);
            }
            println!(
                "suppressed {new} new address(es), {} already on the list (state: {})",
                emails.len() - new,
                state.store
            );
            Ok(0)
        }
        Command::Import { file } => import(g, &state, &mut ledger, file),
        Command::Check { email } => match ledger.suppression(&state.keys.recipient_hash(email))? {
            Some((reason, at)) => {
                println!(
                    "suppressed: {reason} since {}",
                    at.format("%Y-%m-%d %H:%M UTC")
                );
                Ok(0)
            }
            None => {
                println!("not suppressed");
                Ok(6)
            }
        },
        Command::Token { .. } => Ok(2),
    }
}

fn token(g: &Globals, state: &State, tokens: &[String]) -> anyhow::Result<u8> {
    // Every token is opened before anything is written: one bad one changes nothing.
    let mut opened = Vec::with_capacity(tokens.len());
    let mut tests = 0;
    for (i, t) in tokens.iter().enumerate() {
        match state.keys.token_key().open_any(token_of(t)) {
            Some(Opened::Recipient { campaign, hash }) => opened.push((campaign, hash)),
            Some(Opened::Test { campaign }) => {
                println!(
                    "argument {} is the token of a test message of campaign {campaign}: this was a test message; nobody was unsubscribed",
                    i + 1
                );
                tests += 1;
            }
            None => {
                eprintln!(
                    "tact: error: argument {} of `suppress token` is not a valid unsubscribe token (forged, truncated, or sealed with another state's key): nothing was suppressed",
                    i + 1
                );
                return Ok(2);
            }
        }
    }
    if opened.is_empty() && tests > 0 {
        return Ok(0);
    }
    let mut ledger = state.ledger(false)?;
    let hashes: Vec<RecipientHash> = opened.iter().map(|(_, h)| *h).collect();
    let new = ledger.suppress_many(&hashes, REASON_UNSUBSCRIBE, g.now)?;
    let mut campaigns: Vec<&str> = opened.iter().map(|(c, _)| c.as_str()).collect();
    campaigns.sort_unstable();
    campaigns.dedup();
    println!(
        "unsubscribed {new} recipient(s), {} already on the list (campaigns: {}; state: {})",
        opened.len() - new,
        campaigns.join(", "),
        state.store
    );
    Ok(0)
}

/// The token itself, from a bare token, `t=TOKEN`, or a whole unsubscribe URL.
pub(super) fn token_of(arg: &str) -> &str {
    let arg = arg.trim().trim_start_matches('<').trim_end_matches('>');
    let query = arg.split_once('?').map_or(arg, |(_, q)| q);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("t="))
        .unwrap_or(arg)
}

/// What an import file held.
#[derive(Debug, Default, PartialEq, Eq)]
struct ImportFile {
    /// The email column's header as written, when the file is a CSV.
    column: Option<String>,
    /// Distinct addresses, normalised.
    addresses: Vec<String>,
    /// Lines repeating an address seen earlier in the file.
    duplicates: usize,
    /// Lines with something that is not an address.
    invalid: Vec<u64>,
}

/// A header cell that names the email column: `email`, `E-Mail`, `Email Address`, ….
fn is_email_header(cell: &str) -> bool {
    let squashed: String = cell
        .trim()
        .trim_start_matches('\u{feff}')
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    matches!(squashed.as_str(), "email" | "emailaddress" | "mail")
}

/// `ann@example.com`, `"ann@example.com"`, or `Ann <ann@example.com>`.
fn address_in(value: &str) -> Option<String> {
    let v = value.trim().trim_start_matches('\u{feff}').trim();
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v)
        .trim();
    if v.is_empty() {
        return None;
    }
    if let Ok(a) = v.parse::<lettre::Address>() {
        return Some(state::normalise_address(a.as_ref()));
    }
    v.parse::<lettre::message::Mailbox>()
        .ok()
        .map(|m| state::normalise_address(m.email.as_ref()))
}

fn parse_import(bytes: &[u8]) -> Result<ImportFile, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = ImportFile::default();
    let mut seen = HashSet::new();
    let mut take =
        |out: &mut ImportFile, line: u64, value: Option<&str>| match value.and_then(address_in) {
            Some(a) => {
                if seen.insert(a.clone()) {
                    out.addresses.push(a);
                } else {
                    out.duplicates += 1;
                }
            }
            None => out.invalid.push(line),
        };
    // The first non-blank line decides: a header naming an email column makes it a CSV.
    let first = bytes
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let header_cells: Vec<String> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(first.as_bytes())
        .records()
        .next()
        .and_then(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect())
        .unwrap_or_default();
    let column = header_cells.iter().position(|c| is_email_header(c));
    let Some(column) = column else {
        if header_cells.len() > 1 && address_in(&first).is_none() {
            return Err(format!(
                "the first line names no email column (columns: {}); name it `email`, or give one address per line",
                header_cells.join(", ")
            ));
        }
        let mut line = 0;
        for raw in bytes.split(|&b| b == b'\n') {
            line += 1;
            let text = String::from_utf8_lossy(raw);
            if text.trim().is_empty() {
                continue;
            }
            take(&mut out, line, Some(&text));
        }
        return Ok(out);
    };
    out.column = Some(header_cells[column].trim().to_string());
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    let (mut counted_to, mut newlines) = (0usize, 0u64);
    loop {
        let more = match rdr.read_byte_record(&mut rec) {
            Ok(m) => m,
            Err(e) => return Err(format!("not a readable CSV file: {e}")),
        };
        if !more {
            break;
        }
        let mut start = rec
            .position()
            .map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX))
            .min(bytes.len());
        while matches!(bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        if start > counted_to {
            newlines += bytes[counted_to..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = start;
        }
        let line = newlines + 1;
        if rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        let value = rec.get(column).map(String::from_utf8_lossy);
        take(&mut out, line, value.as_deref());
    }
    Ok(out)
}

fn import(
    g: &Globals,
    state: &State,
    ledger: &mut Ledger,
    file: &std::path::Path,
) -> anyhow::Result<u8> {
    let bytes = std::fs::read(file).map_err(|source| tact::Error::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let parsed = match parse_import(&bytes) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("tact: error: {}: {why}", file.display());
            return Ok(2);
        }
    };
    {
        let mut err = std::io::stderr().lock();
        const SHOWN: usize = 20;
        for line in parsed.invalid.iter().take(SHOWN) {
            writeln!(
                err,
                "tact: warning: {}:{line}: not an email address; skipped",
                file.display()
            )?;
        }
        if parsed.invalid.len() > SHOWN {
            writeln!(
                err,
                "tact: warning: … and {} more invalid line(s)",
                parsed.invalid.len() - SHOWN
            )?;
        }
    }
    if parsed.addresses.is_empty() && !parsed.invalid.is_empty() {
        eprintln!(
            "tact: error: {}: no email address could be read from it; nothing was suppressed",
            file.display()
        );
        return Ok(2);
    }
    let hashes: Vec<RecipientHash> = parsed
        .addresses
        .iter()
        .map(|a| state.keys.recipient_hash(a))
        .collect();
    let new = ledger.suppress_many(&hashes, REASON_IMPORT, g.now)?;
    let source = parsed
        .column
        .as_deref()
        .map_or_else(|| "one per line".to_string(), |c| format!("column `{c}`"));
    println!(
        "imported {} ({source}): {new} new, {} already on the list, {} duplicate line(s), {} invalid (state: {})",
        file.display(),
        hashes.len() - new,
        parsed.duplicates,
        parsed.invalid.len(),
        state.store
    );
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn csv_files_find_their_email_column_and_name_bad_lines() {
        let f = parse_import(
            b"\xEF\xBB\xBFName,E-Mail ,note\r\nAnn,ann@x.example,\"a,\r\nb\"\r\n\r\nBob,  BOB@x.example ,\r\nAnn again,Ann@X.example,\r\nEve,not-an-address,\r\n,,\r\nShort\r\n",
        )
        .unwrap();
        assert_eq!(f.column.as_deref(), Some("E-Mail"));
        assert_eq!(f.addresses, ["ann@x.example", "bob@x.example"]);
        assert_eq!(f.duplicates, 1);
        assert_eq!(f.invalid, [7, 9]);
    }

    #[test]
    fn plain_lists_take_one_address_a_line() {
        let f = parse_import(
            b"ann@x.example\n\n  Bob <bob@x.example>  \n\"carol@x.example\"\nANN@x.example\nnope\n",
        )
        .unwrap();
        assert_eq!(f.column, None);
        assert_eq!(
            f.addresses,
            ["ann@x.example", "bob@x.example", "carol@x.example"]
        );
        assert_eq!((f.duplicates, f.invalid.clone()), (1, vec![6]));
        let e = parse_import(b"name,phone\nAnn,1\n").unwrap_err();
        assert!(e.contains("no email column"), "{e}");
        assert_eq!(parse_import(b"").unwrap(), ImportFile::default());
    }

    #[test]
    fn tokens_come_out_of_urls() {
        assert_eq!(token_of("abc"), "abc");
        assert_eq!(token_of("<https://x.example/u?t=abc>"), "abc");
        assert_eq!(token_of("https://x.example/u?list=1&t=abc"), "abc");
        assert_eq!(token_of(" t=abc "), "abc");
    }
}
