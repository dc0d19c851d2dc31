//! Work that runs off the UI thread: loading, recounting, dry runs, sending, saving. Each
//! function is plain and blocking; `mod.rs` runs it on a thread and sends its answer back
//! as an `Action`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rayon::prelude::*;

use tact::campaign::{Acknowledgement, Campaign};
use tact::plan::{BasePlan, Facts, Plan, Prepared};
use tact::send::orchestrate::{self, Outcome, Purpose, Request, Sent, uncertain_note};
use tact::send::{Tally, Transport};
use tact::state::{Keys, State};

use super::app::{Checked, Ctx, DryRunSummary, Loaded, excluded_rows};

/// The whole error chain on one line, as the status line shows it.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What the ledger knows about this campaign; nothing without a state directory.
pub fn facts(ctx: &Ctx, campaign: &Campaign) -> Result<Facts, String> {
    let Some(dir) = &ctx.state_dir else {
        return Ok(Facts::default());
    };
    let state = match State::open_existing(dir) {
        // The composer may look before `tact init`; its sends refuse without state.
        Err(tact::Error::NoState { .. }) => return Ok(Facts::default()),
        other => other.map_err(|e| chain(&e))?,
    };
    let ledger = state
        .with_store(ctx.store.clone())
        .ledger(false)
        .map_err(|e| chain(&e))?;
    ledger
        .facts(&campaign.name, campaign.policy.min_hours_between, ctx.now)
        .map_err(|e| chain(&e))
}

/// Loads a campaign file and plans it: the counts and the findings that need no rendering,
/// for the first screen. The full check (`check`) follows as its own step.
pub fn open(path: &Path, ctx: &Ctx) -> Result<(Loaded, Facts), String> {
    let campaign = Campaign::load(path).map_err(|e| chain(&e))?;
    let facts = facts(ctx, &campaign)?;
    let p = Prepared::from_campaign(campaign, ctx.now).map_err(segment_error)?;
    let base = p.base(&ctx.keys, &facts, ctx.now);
    Ok((counted(p, Arc::new(base)), facts))
}

/// Loads a campaign file and runs the whole check on it, as `tact check` does.
#[cfg(test)]
pub fn load(path: &Path, ctx: &Ctx) -> Result<(Loaded, Facts), String> {
    let (loaded, facts) = open(path, ctx)?;
    Ok((checked(loaded, ctx), facts))
}

fn segment_error(e: tact::Error) -> String {
    match e {
        // The segment's message already says what and where; the file name is noise here.
        tact::Error::Input { message, .. } => message,
        e => chain(&e),
    }
}

/// The plan on a base, with its preliminary report: what the screens show at once.
fn counted(p: Prepared, base: Arc<BasePlan>) -> Loaded {
    let plan = p.plan_on(&base);
    let report = tact::check::preliminary(&p, &plan);
    Loaded::new(p, base, plan, report)
}

/// A loaded plan with its check run at once (for callers that cannot wait for a message).
#[cfg(test)]
fn checked(mut loaded: Loaded, ctx: &Ctx) -> Loaded {
    let c = check(
        &loaded.prepared,
        loaded.plan.clone(),
        &ctx.keys,
        ctx.now,
        &|| false,
    );
    if let Some(c) = c {
        loaded.finish(c);
    }
    loaded
}

/// The same plan for a campaign changed in memory, read from the files again and checked.
#[cfg(test)]
pub fn recount(campaign: Campaign, ctx: &Ctx, facts: &Facts) -> Result<Loaded, String> {
    let p = Prepared::from_campaign(campaign, ctx.now).map_err(segment_error)?;
    let base = p.base(&ctx.keys, facts, ctx.now);
    Ok(checked(counted(p, Arc::new(base)), ctx))
}

/// The plan for a campaign changed in memory (a new segment, an acknowledgement), on the
/// audience already loaded: a segment edit does not read a 1M-row file again unless it
/// needs a column that was never loaded, and re-runs only the segment step of the plan
/// on `rows` (the part no segment changes, kept from the load). The counts only: `check`
/// renders everyone afterwards.
pub fn recount_on(
    base: &Prepared,
    rows: &Arc<BasePlan>,
    campaign: Campaign,
    ctx: &Ctx,
    facts: &Facts,
) -> Result<Loaded, String> {
    let mut p = base
        .with_segment(campaign.segment.as_deref(), ctx.now)
        .map_err(segment_error)?;
    p.campaign = campaign;
    let rows = if p.fits(rows, ctx.now) {
        Arc::clone(rows)
    } else {
        // The file was read again for a column it never loaded: a new audience.
        Arc::new(p.base(&ctx.keys, facts, ctx.now))
    };
    Ok(counted(p, rows))
}

/// The full check of a counted plan: renders every recipient (render-stage exclusions),
/// the final counts and verdict. None when `cancelled` said a newer plan replaced it.
pub fn check(
    p: &Arc<Prepared>,
    mut plan: Plan,
    keys: &Keys,
    now: chrono::DateTime<chrono::Utc>,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Option<Checked> {
    let report = tact::check::finish_unless(p, keys, &mut plan, now, cancelled)?;
    let excluded = excluded_rows(p, &plan);
    Some(Checked {
        prepared: Arc::clone(p),
        plan,
        report,
        excluded,
    })
}

/// Builds every message `send` would send and counts them; sends and records nothing.
pub fn dry_run(
    p: &Prepared,
    keys: &Keys,
    recipients: &[(usize, bool)],
    now: chrono::DateTime<chrono::Utc>,
) -> DryRunSummary {
    let started = Instant::now();
    let date = std::time::SystemTime::from(now);
    let built: Vec<bool> = recipients
        .par_iter()
        .map(|&(row, personalised)| {
            p.letter(keys, row, personalised)
                .ok()
                .and_then(|l| {
                    tact::message::build(&p.campaign, &l, p.audience.email(row), date, "").ok()
                })
                .and_then(|m| tact::send::sign(&p.campaign, m).ok())
                .is_some()
        })
        .collect();
    let ok = |want: bool| {
        recipients
            .iter()
            .zip(&built)
            .filter(|((_, pers), b)| **b && *pers == want)
            .count()
    };
    DryRunSummary {
        built: built.iter().filter(|b| **b).count(),
        personalised: ok(true),
        generic: ok(false),
        failed: built.iter().filter(|b| !**b).count(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// A real send: `tact send`'s own orchestration (existing state, completion, the check
/// gate, the campaign's `[[send.relay]]` unless a URL was given, the audit events), so
/// the composer can neither skip a step nor drift from the command line.
pub fn send(
    campaign: Campaign,
    ctx: &Ctx,
    url: Option<&str>,
    tally: &Tally,
    stop: &AtomicBool,
) -> Result<Box<Sent>, String> {
    let dir = ctx
        .state_dir
        .as_deref()
        .ok_or("no state directory: sending needs the ledger")?;
    let state = State::open_existing(dir)
        .map_err(|e| chain(&e))?
        .with_store(ctx.store.clone());
    let env = |k: &str| std::env::var(k).ok();
    let request = Request {
        state: &state,
        campaign,
        smtp: url,
        env: &env,
        retry_uncertain: false,
        durable: false,
        purpose: Purpose::Send,
        now: ctx.now,
    };
    let with_note = |msg: String, uncertain: usize| match uncertain_note(uncertain) {
        Some(note) => format!("{msg}; {note}"),
        None => msg,
    };
    match orchestrate::run(request, tally, stop).map_err(|e| chain(&e))? {
        Outcome::Sent(sent) => Ok(sent),
        Outcome::Completed(c) => Err(with_note(
            orchestrate::completed_note(&c.campaign, c.at),
            c.uncertain,
        )),
        Outcome::Refused(r) => Err(with_note(
            r.refusal.message(&r.campaign),
            r.checked.as_ref().map_or(0, |c| c.uncertain),
        )),
    }
}

/// `tact send --test`: the first personalised and the first generic recipient's messages,
/// subject prefixed `[TEST] `, to each of `to`; nothing is recorded in the ledger. Says
/// what the server did with each, never whose data was used.
pub fn send_test(
    p: &Prepared,
    keys: &Keys,
    recipients: &[(usize, bool)],
    url: &str,
    to: &[String],
) -> Result<String, String> {
    let target =
        Transport::parse(url, std::env::var("TACT_SMTP_PASSWORD").ok()).map_err(|e| chain(&e))?;
    let mut messages = Vec::new();
    let mut variants = Vec::new();
    for pick in [true, false] {
        let Some(&(row, personalised)) = recipients.iter().find(|r| r.1 == pick) else {
            continue;
        };
        let letter = p
            .letter(keys, row, personalised)
            .map_err(|e| format!("{}: {}", e.reason.key(), e.detail))?;
        variants.push(if personalised {
            "personalised"
        } else {
            "generic"
        });
        for addr in to {
            let address: lettre::Address = addr
                .parse()
                .map_err(|_| format!("`{addr}` is not an address"))?;
            let msg = tact::message::build(
                &p.campaign,
                &letter,
                addr,
                std::time::SystemTime::now(),
                "[TEST] ",
            )
            .map_err(|e| chain(&e))?;
            messages.push((address, msg));
        }
    }
    if messages.is_empty() {
        return Err("no recipients: nothing to render for a test".into());
    }
    let n = messages.len();
    let results = tact::send::send_tests(&target, &p.campaign, messages).map_err(|e| chain(&e))?;
    Ok(format!(
        "test: {n} message(s) ({} to {} address(es)): {}; not recorded in the ledger",
        variants.join(" + "),
        to.len(),
        results.join(", ")
    ))
}

fn read(path: &Path) -> Result<toml_edit::DocumentMut, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.parse::<toml_edit::DocumentMut>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, doc: &toml_edit::DocumentMut) -> Result<(), String> {
    // Write beside and rename, so a crash never leaves half a campaign file.
    let tmp: PathBuf = path.with_extension("toml.tact-tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Sets (or removes) `segment`, keeping every comment and the layout of the file.
pub fn save_segment(path: &Path, segment: Option<&str>) -> Result<String, String> {
    let mut doc = read(path)?;
    match segment {
        Some(s) => {
            let mut v = toml_edit::Value::from(s);
            if let Some(old) = doc.get("segment").and_then(toml_edit::Item::as_value) {
                *v.decor_mut() = old.decor().clone();
            }
            doc["segment"] = toml_edit::Item::Value(v);
        }
        None => {
            doc.remove("segment");
        }
    }
    write(path, &doc)?;
    Ok(format!("saved the segment to {}", path.display()))
}

/// Appends `{ rule, fields, reason }` to `[policy].acknowledge`, keeping the file's layout.
pub fn save_acknowledgement(path: &Path, ack: &Acknowledgement) -> Result<String, String> {
    let mut doc = read(path)?;
    let policy = doc
        .entry("policy")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
    let policy = policy
        .as_table_like_mut()
        .ok_or("`policy` in the campaign file is not a table")?;
    let list = policy
        .entry("acknowledge")
        .or_insert(toml_edit::value(toml_edit::Array::new()));
    let list = list
        .as_array_mut()
        .ok_or("`policy.acknowledge` is not an inline array")?;
    let mut t = toml_edit::InlineTable::new();
    t.insert("rule", ack.rule.as_str().into());
    let fields: toml_edit::Array = ack.fields.iter().map(String::as_str).collect();
    t.insert("fields", fields.into());
    t.insert("reason", ack.reason.as_str().into());
    list.push(t);
    write(path, &doc)?;
    Ok(format!("acknowledged {} in {}", ack.rule, path.display()))
}

/// Campaign files to pick from: `./campaigns`, else `sample-data/campaigns`.
pub fn find_campaigns(root: &Path) -> Vec<PathBuf> {
    for dir in ["campaigns", "sample-data/campaigns"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| PathBuf::from(dir).join(e.file_name()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        if !found.is_empty() {
            found.sort();
            return found;
        }
    }
    Vec::new()
}

/// Why `name` cannot be a new campaign beside `source`, if it cannot.
pub fn new_campaign_refusal(source: &Path, name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("type a name: lowercase letters, digits and '-'".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "`{bad}` is not allowed: use lowercase letters, digits and '-'"
        ));
    }
    let path = new_campaign_path(source, name);
    path.exists()
        .then(|| format!("{} already exists: pick another name", path.display()))
}

/// `<name>.toml` in the folder of `source`.
pub fn new_campaign_path(source: &Path, name: &str) -> PathBuf {
    source
        .parent()
        .unwrap_or(Path::new(""))
        .join(format!("{name}.toml"))
}

/// Copies `source` beside it as `<name>.toml` with only `name` changed (comments and
/// layout kept), never overwriting a file. Returns the new file's path.
pub fn create_campaign(source: &Path, name: &str) -> Result<PathBuf, String> {
    if let Some(why) = new_campaign_refusal(source, name) {
        return Err(why);
    }
    let mut doc = read(source)?;
    let mut v = toml_edit::Value::from(name);
    if let Some(old) = doc.get("name").and_then(toml_edit::Item::as_value) {
        *v.decor_mut() = old.decor().clone();
    }
    doc["name"] = toml_edit::Item::Value(v);
    let path = new_campaign_path(source, name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Err(e) = std::io::Write::write_all(&mut f, doc.to_string().as_bytes()) {
        // Ours, just created: no half a campaign file left behind.
        let _ = std::fs::remove_file(&path);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(path)
}
