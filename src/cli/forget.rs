//! `tact forget EMAIL --audience CSV` (GDPR Art. 17): the address is suppressed with
//! reason `erasure` (the keyed hash stays, so a later import of the same person is never
//! mailed), every ledger row of theirs is deleted, and the CSV is rewritten atomically
//! without their rows. What was removed is printed as counts, never the address.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use tact::schema::Schema;

use super::Globals;

/// One person in one audience: what `forget` and `export` both take.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The person's address (compared trimmed and case-insensitively).
    #[arg(value_name = "EMAIL")]
    pub(super) email: String,
    /// The audience CSV holding their rows.
    #[arg(long, value_name = "CSV")]
    pub(super) audience: PathBuf,
    /// The audience's schema (for renamed columns). Default: `<audience
    /// stem>.schema.toml` beside the CSV, if there is one.
    #[arg(long, value_name = "TOML")]
    pub(super) schema: Option<PathBuf>,
}

/// The schema named, else the one beside the audience, else none.
pub(super) fn audience_schema(audience: &Path, flag: Option<&Path>) -> anyhow::Result<Schema> {
    let path = match flag {
        Some(p) => Some(p.to_path_buf()),
        None => tact::schema::beside(audience),
    };
    match path {
        Some(p) => Ok(Schema::load(&p)?),
        None => Ok(Schema::default()),
    }
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    super::address_arg(&args.email, "the address given to `forget`")?;
    let schema = audience_schema(&args.audience, args.schema.as_deref())?;
    // Read and plan the cut before anything changes: an unreadable file changes nothing.
    let found = tact::person::find(&args.audience, &schema, &args.email)?;
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    let mut ledger = state.ledger(false)?;
    let hash = state.keys.recipient_hash(&args.email);
    // Suppression first: whatever fails later, they are never mailed again.
    let ledger_rows = ledger.forget(&hash, g.now)?;
    let rows = found.cut(&args.email).with_context(|| {
        format!(
            "the address is suppressed and its {ledger_rows} ledger row(s) are deleted, but {} could not be rewritten; run `tact forget` again",
            args.audience.display()
        )
    })?;
    ledger.audit_append(
        &state.keys,
        "-",
        "forget",
        &serde_json::json!({ "rows_removed": rows, "ledger_rows": ledger_rows }),
        g.now,
    )?;
    println!("forgot one person (state: {}):", state.store);
    println!("  {}: {rows} row(s) removed", args.audience.display());
    println!("  ledger: {ledger_rows} delivery row(s) deleted");
    println!(
        "  suppression list: kept as a keyed hash with reason `erasure`, so a later import is never mailed"
    );
    for (line, column) in &found.elsewhere {
        eprintln!(
            "tact: warning: {}:{}: the address also appears in column `{column}` of another row; edit it by hand",
            args.audience.display(),
            found.line_after_cut(*line)
        );
    }
    eprintln!(
        "note: copies elsewhere (backups, the system the CSV came from, preview folders) are not changed by this"
    );
    Ok(0)
}
