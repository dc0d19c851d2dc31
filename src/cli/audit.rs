//! `tact audit [CAMPAIGN] [--json] [--verify]`: every recorded run, and whether the chain of
//! audit events is intact.

use tact::state::ledger::Ledger;

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this campaign's events (its `name`).
    campaign: Option<String>,
    /// Print the events as JSON.
    #[arg(long)]
    json: bool,
    /// Check that no event was edited or deleted; exit 1 naming the first broken one.
    #[arg(long)]
    verify: bool,
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let state = g.state_or_init()?;
    let ledger = Ledger::open(&state.dir, false)?;
    if args.verify {
        return Ok(match ledger.audit_verify(&state.keys)? {
            Ok(n) => {
                println!(
                    "audit log intact: {n} event(s) verified (state: {})",
                    state.dir.display()
                );
                0
            }
            Err(b) => {
                eprintln!("tact: audit log broken at event {}: it {}", b.seq, b.why);
                1
            }
        });
    }
    let events = ledger.audit_events(args.campaign.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(0);
    }
    if events.is_empty() {
        println!("no audit events (state: {})", state.dir.display());
    }
    for e in &events {
        let b = &e.body;
        let detail = match e.kind.as_str() {
            "send-started" => format!(
                "verdict {}, {} recipient(s), fields: {}{}",
                b["verdict"].as_str().unwrap_or("?"),
                b["recipients"],
                b["fields"]
                    .as_array()
                    .map(|fs| fs
                        .iter()
                        .map(|f| format!(
                            "{} ({})",
                            f["name"].as_str().unwrap_or("?"),
                            f["class"].as_str().unwrap_or("?")
                        ))
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
                b["acknowledged"]
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .map(|a| format!(
                        "; acknowledged: {}",
                        a.iter()
                            .map(|x| format!(
                                "{} ({})",
                                x["rule"].as_str().unwrap_or("?"),
                                x["reason"].as_str().unwrap_or("")
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .unwrap_or_default()
            ),
            "send-finished" => format!(
                "sent {}, failed {}, uncertain {}, deferred {}",
                b["summary"]["sent"],
                b["summary"]["failed"],
                b["summary"]["uncertain"],
                b["summary"]["deferred"]
            ),
            _ => b.to_string(),
        };
        println!(
            "#{} {} {} {} by {}: {detail}",
            e.seq,
            e.at.format("%Y-%m-%d %H:%M:%S UTC"),
            e.campaign,
            e.kind,
            e.operator
        );
    }
    Ok(0)
}
