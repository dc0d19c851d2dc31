//! `tact export EMAIL --audience CSV` (GDPR Art. 15): everything tact holds about one
//! person, as JSON on stdout: their CSV rows (column → value, with line numbers), their
//! consents, every campaign the ledger has for them with the fields it used and their
//! classes (from the audit log), the bounces and complaints kept about them, and whether
//! and why they are suppressed. It is the person's own data, printed because they asked
//! for it; nothing is written.

use std::io::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use serde_json::{Map, Value, json};

use tact::person::{Found, Row};
use tact::state::audit::Event;
use tact::state::erase::Delivery;

use super::Globals;

pub use super::forget::Args;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn consent(found: &Found, row: &Row) -> Value {
    let h = &found.header;
    let column = |i: Option<usize>| i.and_then(|i| h.raw.get(i)).cloned();
    let flag = |i: Option<usize>| match (column(i), row.get(i)) {
        (Some(col), Some(v)) => json!({
            "column": col,
            "value": v,
            "granted": tact::consent::is_granted(v),
        }),
        _ => Value::Null,
    };
    let given_at = match (column(h.consent_at), row.get(h.consent_at)) {
        (Some(col), Some(v)) => json!({
            "column": col,
            "value": v,
            "time": tact::consent::parse_time(v).map(rfc3339),
        }),
        _ => Value::Null,
    };
    json!({
        "marketing": flag(h.consent_marketing),
        "personalisation": flag(h.consent_personalisation),
        "given_at": given_at,
    })
}

/// The fields of the run that reached them: the last `send-started` at or before the
/// delivery, else the campaign's first one. `null` when the audit log has none (purged).
fn fields_used(events: &[Event], d: &Delivery) -> Value {
    let started: Vec<&Event> = events
        .iter()
        .filter(|e| e.campaign == d.campaign && e.kind == "send-started")
        .collect();
    started
        .iter()
        .rev()
        .find(|e| e.at <= d.at)
        .or_else(|| started.first())
        .map_or(Value::Null, |e| e.body["fields"].clone())
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    super::address_arg(&args.email, "the address given to `export`")?;
    let schema = super::forget::audience_schema(&args.audience, args.schema.as_deref())?;
    let found = tact::person::find(&args.audience, &schema, &args.email)?;
    let Some(state) = g.existing_state()? else {
        return Ok(2);
    };
    let ledger = state.ledger(false)?;
    let hash = state.keys.recipient_hash(&args.email);
    let rows: Vec<Value> = found
        .rows
        .iter()
        .map(|r| {
            let fields: Map<String, Value> = r
                .named(&found.header)
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect();
            json!({
                "line": r.line,
                "fields": fields,
                "consent": consent(&found, r),
                "malformed": r.malformed,
            })
        })
        .collect();
    let events = ledger.audit_events(None)?;
    let campaigns: Vec<Value> = ledger
        .deliveries_of(&hash)?
        .iter()
        .map(|d| {
            json!({
                "campaign": d.campaign,
                "status": d.status,
                "variant": d.variant,
                "date": rfc3339(d.at),
                "attempts": d.attempts,
                "fields": fields_used(&events, d),
            })
        })
        .collect();
    let bounces: Vec<Value> = ledger
        .bounces_of(&hash)?
        .iter()
        .map(|b| json!({ "campaign": b.campaign, "kind": b.kind, "date": rfc3339(b.at) }))
        .collect();
    let suppression = match ledger.suppression(&hash)? {
        Some((reason, at)) => json!({
            "suppressed": true,
            "reason": reason,
            "since": rfc3339(at),
        }),
        None => json!({ "suppressed": false, "reason": null, "since": null }),
    };
    let out = json!({
        "email": tact::state::normalise_address(&args.email),
        "generated_at": rfc3339(g.now),
        "audience": {
            "file": args.audience.display().to_string(),
            "columns": found.header.raw,
            "rows": rows,
        },
        "campaigns": campaigns,
        "bounces": bounces,
        "suppression": suppression,
        "stored_by_tact": "the ledger and suppression list hold a keyed hash of the address, never the address itself",
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(0)
}
