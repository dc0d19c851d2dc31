//! `tact new NAME --audience FILE [--dir DIR]`: a first campaign from an export, written
//! beside what is there, never over it; and what the file lacks, said plainly.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use tact::onboard::{self, Inspection};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The campaign's name: lowercase letters and digits, words joined by '-'.
    #[arg(value_name = "NAME")]
    name: String,
    /// The customer file: a CSV export (Mailchimp, Shopify, Klaviyo, HubSpot, WooCommerce
    /// or your own), in UTF-8, UTF-16 or Windows-1252, separated by , ; tab or |.
    #[arg(long, value_name = "FILE")]
    audience: PathBuf,
    /// Where the campaign and its templates go.
    #[arg(long, value_name = "DIR", default_value = "campaigns")]
    dir: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    if let Some(why) = tact::names::campaign_name_refusal(&args.name) {
        return Err(super::usage(format!(
            "`{}` cannot name a campaign: {why}",
            args.name
        )));
    }
    let found = onboard::inspect(&args.audience)?;
    let stem = args
        .audience
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let schema = args.audience.with_file_name(format!("{stem}.schema.toml"));
    let campaign = args.dir.join(format!("{}.toml", args.name));
    let templates = args.dir.join("templates");
    let txt = templates.join(format!("{}.txt.tera", args.name));
    let html = templates.join(format!("{}.html.tera", args.name));
    let taken: Vec<String> = [&campaign, &txt, &html]
        .into_iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !taken.is_empty() {
        return Err(super::usage(format!(
            "{} already exist(s); nothing was written: pick another name or --dir",
            taken.join(", ")
        )));
    }
    let kept_schema = schema.exists();
    std::fs::create_dir_all(&templates)
        .with_context(|| format!("cannot create {}", templates.display()))?;
    if !kept_schema {
        write_new(&schema, &found.schema_toml())?;
    }
    write_new(
        &campaign,
        &found.campaign_toml(&args.name, &args.dir, &schema),
    )?;
    write_new(&txt, &found.text_template())?;
    write_new(&html, &found.html_template())?;
    say(&found, &schema, kept_schema, &campaign);
    Ok(0)
}

/// Creates `path`, failing if something appeared there since the check above.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn say(found: &Inspection, schema: &Path, kept_schema: bool, campaign: &Path) {
    let group = |level: &str, title: &str| {
        let lines: Vec<&str> = found
            .notes
            .iter()
            .filter(|n| n.level == level)
            .map(|n| n.text.as_str())
            .collect();
        if !lines.is_empty() {
            println!("{title}");
            for l in lines {
                println!("  - {l}");
            }
        }
    };
    group("found", "Recognised:");
    group("changed", "Read differently:");
    group("missing", "Missing, and what it means:");
    group("todo", "To do before the first send:");
    group("review", "Read these columns before a campaign uses them:");
    println!("Wrote:");
    if kept_schema {
        println!("  - kept your schema {} (not changed)", schema.display());
    } else {
        println!(
            "  - {} (every column's class, with the reason for the guess)",
            schema.display()
        );
    }
    println!("  - {}", campaign.display());
    println!(
        "  - its templates in {}",
        campaign
            .parent()
            .unwrap_or(Path::new("."))
            .join("templates")
            .display()
    );
    println!(
        "Next: tact check {}   then: tact {}",
        campaign.display(),
        campaign.display()
    );
}
