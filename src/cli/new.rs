//! `tact new NAME --audience FILE [--dir DIR]`: a first campaign from an export, written
//! beside what is there, never over it; and what the file lacks, said plainly. The work
//! is `onboard::create`, which the composer's "+ new from a CSV…" runs too.

use std::path::PathBuf;

use tact::onboard;

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
    #[arg(long, value_name = "DIR", default_value = onboard::DEFAULT_DIR)]
    dir: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let made = onboard::create(&args.name, &args.audience, &args.dir)?;
    for (title, lines) in made.report() {
        println!("{title}");
        for l in lines {
            println!("  - {l}");
        }
    }
    let c = made.targets.campaign.display();
    println!("Next: tact check {c}   then: tact {c}");
    Ok(0)
}
