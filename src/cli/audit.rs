//! `tact audit [CAMPAIGN] [--json] [--verify]`: every recorded run, and whether the chain of
//! audit events is intact.

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this campaign's events (its `name`).
    campaign: Option<String>,
    /// Print the events as JSON.
    #[arg(long)]
    json: bool,
    /// Print the events as CSV (safe to open in a spreadsheet).
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// Check that no event was edited or deleted; exit 1 naming the first broken one.
    #[arg(long)]
    verify: bool,
    /// With --verify: the head an earlier --verify printed (SEQ:MAC), kept outside the
    /// store; exit 1 unless the log still holds that event (a restored older copy does not).
    #[arg(long, value_name = "SEQ:MAC", requires = "verify")]
    expect_head: Option<String>,
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    let ledger = state.ledger(false)?;
    if args.verify {
        return verify(&ledger, &state, args.expect_head.as_deref());
    }
    let events = ledger.audit_events(args.campaign.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(0);
    }
    if args.csv {
        write_csv(std::io::stdout().lock(), &events)?;
        return Ok(0);
    }
    if events.is_empty() {
        println!("no audit events (state: {})", state.store);
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
            "bounce" => format!(
                "{} {} {}: recipient {}, {} (by {})",
                b["kind"].as_str().unwrap_or("?"),
                b["status"].as_str().unwrap_or("-"),
                b["reason"].as_str().unwrap_or("?"),
                b["recipient"].as_str().unwrap_or("unknown"),
                b["decision"].as_str().unwrap_or("?"),
                b["by"].as_str().unwrap_or("?"),
            ),
            "bounces-imported" => {
                let c = &b["counts"];
                format!(
                    "{} report(s), {} duplicate(s): hard {}, soft {}, complaints {}, sender {}, unknown {}; {} suppressed",
                    c["reports"],
                    c["duplicates"],
                    c["hard"],
                    c["soft"],
                    c["complaints"],
                    c["sender"],
                    c["unknown"],
                    c["suppressed"]
                )
            }
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

fn verify(
    ledger: &tact::state::ledger::Ledger,
    state: &tact::state::State,
    expect_head: Option<&str>,
) -> anyhow::Result<u8> {
    let v = match ledger.audit_verify(&state.keys)? {
        Ok(v) => v,
        Err(b) => {
            eprintln!("tact: audit log broken at event {}: it {}", b.seq, b.why);
            return Ok(1);
        }
    };
    if let Some(recorded) = expect_head {
        let reached = match v.reaches(recorded) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("tact: error: {e}");
                return Ok(2);
            }
        };
        if let Err(why) = reached {
            eprintln!("tact: audit log does not reach the recorded head {recorded}: it {why}");
            return Ok(1);
        }
    }
    // The head, to keep elsewhere and pass back as --expect-head: a restore of the whole
    // store to an earlier moment is the one change the store itself cannot show.
    let head = v.head_mark().map_or_else(
        || "no events yet".to_string(),
        |mark| format!("head {mark}"),
    );
    println!(
        "audit log intact: {} event(s) verified, {head} (state: {})",
        v.events, state.store
    );
    Ok(0)
}

/// A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, tab or CR as a formula
/// (CSV injection); such a cell is written with a leading `'` so it stays text.
fn defuse(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

fn write_csv(out: impl std::io::Write, events: &[tact::state::audit::Event]) -> anyhow::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(out);
    w.write_record(["seq", "at", "campaign", "kind", "operator", "detail"])?;
    for e in events {
        let row = [
            e.seq.to_string(),
            e.at.to_rfc3339(),
            e.campaign.clone(),
            e.kind.clone(),
            e.operator.clone(),
            e.body.to_string(),
        ];
        w.write_record(row.iter().map(|c| defuse(c)))?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused() {
        for bad in ["=HYPERLINK(\"x\")", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(defuse(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(defuse("winter-sale"), "winter-sale");
        let ev = tact::state::audit::Event {
            seq: 1,
            at: chrono::Utc::now(),
            campaign: "c".into(),
            kind: "send-started".into(),
            operator: "=cmd|' /C calc'!A0".into(),
            body: serde_json::json!({}),
        };
        let mut buf = Vec::new();
        write_csv(&mut buf, &[ev]).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("\"'=cmd|' /C calc'!A0\""), "{text}");
    }
}
