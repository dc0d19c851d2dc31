//! Work that runs off the UI thread: loading, recounting, dry runs, sending, saving. Each
//! function is plain and blocking; `mod.rs` runs it on a thread and sends its answer back
//! as an `Action`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tact::campaign::{Acknowledgement, Campaign};
use tact::plan::{BasePlan, Facts, Plan, Prepared};
use tact::send::orchestrate::{self, Outcome, Purpose, Request, Sent, uncertain_note};
use tact::send::{Tally, Transport, test_send};
use tact::state::bounces::BounceFigures;
use tact::state::{Keys, State};

use super::app::{Checked, Ctx, DryRunSummary, LoadError, Loaded, TestOrder, excluded_rows};

pub use tact::error::chain;

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
pub fn open(path: &Path, ctx: &Ctx) -> Result<(Loaded, Facts), LoadError> {
    let campaign = Campaign::load(path).map_err(load_error)?;
    let facts = facts(ctx, &campaign)?;
    let p = Prepared::from_campaign(campaign, ctx.now).map_err(load_error)?;
    let base = p.base(&ctx.keys, &facts, ctx.now);
    let mut loaded = counted(p, Arc::new(base));
    loaded.ledger = ledger_counts(ctx, &loaded.prepared.campaign.name);
    loaded.bounces = bounce_figures(ctx, &loaded.prepared.campaign.name);
    Ok((loaded, facts))
}

/// A campaign in a few words for the picker: its verdict after the full check, and what
/// the ledger says ("not sent", "sent on <date> to N", "sent to N so far").
pub fn survey(path: &Path, ctx: &Ctx) -> String {
    let (l, facts) = match open(path, ctx) {
        Ok(x) => x,
        Err(_) => return "does not open (Enter shows why)".into(),
    };
    let verdict = check(&l.prepared, l.plan.clone(), &ctx.keys, ctx.now, &|| false)
        .map_or(l.report.verdict, |c| c.report.verdict);
    let sent = match (&l.ledger, facts.completed_at) {
        (Some(c), Some(at)) => format!("sent on {} to {}", at.format("%Y-%m-%d"), c.sent),
        (Some(c), None) => format!("sent to {} so far", c.sent),
        (None, _) => "not sent".into(),
    };
    format!("{} · {sent}", verdict.as_str().to_uppercase())
}

/// This campaign's ledger rows by status; None without state, or when it was never sent.
/// A ledger that cannot be read was already reported by `facts`.
pub fn ledger_counts(ctx: &Ctx, campaign: &str) -> Option<tact::state::ledger::StatusCounts> {
    let state = State::open_existing(ctx.state_dir.as_deref()?).ok()?;
    let ledger = state.with_store(ctx.store.clone()).ledger(false).ok()?;
    let c = ledger.counts(campaign).ok()?;
    (c.pending + c.sending + c.sent + c.failed > 0).then_some(c)
}

/// What came back from this campaign's sends; None without state.
pub fn bounce_figures(ctx: &Ctx, campaign: &str) -> Option<BounceFigures> {
    let state = State::open_existing(ctx.state_dir.as_deref()?).ok()?;
    let ledger = state.with_store(ctx.store.clone()).ledger(false).ok()?;
    ledger.bounce_figures(campaign).ok()
}

/// `b`: imports the campaign's bounce mailbox through the one policy, as `tact bounces
/// import` does; the password and CA file come from the environment only.
pub fn import_bounces(
    campaign: &Campaign,
    ctx: &Ctx,
    env: &dyn Fn(&str) -> Option<String>,
    progress: &mut dyn FnMut(usize),
) -> Result<String, String> {
    let url = campaign
        .bounces
        .imap
        .as_deref()
        .ok_or("no [bounces] imap in the campaign file")?;
    let dir = ctx
        .state_dir
        .as_deref()
        .ok_or("no state directory: run `tact init` first")?;
    let state = State::open_existing(dir)
        .map_err(|e| chain(&e))?
        .with_store(ctx.store.clone());
    let mut ledger = state.ledger(false).map_err(|e| chain(&e))?;
    let policy = tact::bounce::import::BouncePolicy::from(&campaign.bounces);
    tact::imap::import_url(
        &mut ledger,
        &state.keys,
        &policy,
        url,
        env,
        ctx.now,
        progress,
    )
    .map(|done| done.line())
    .map_err(|e| chain(&e))
}

/// Loads a campaign file and runs the whole check on it, as `tact check` does.
#[cfg(test)]
pub fn load(path: &Path, ctx: &Ctx) -> Result<(Loaded, Facts), LoadError> {
    let (loaded, facts) = open(path, ctx)?;
    Ok((checked(loaded, ctx), facts))
}

/// A load failure with its place, so the screen shows file:line:col and `e` opens it.
fn load_error(e: tact::Error) -> LoadError {
    let at = match &e {
        tact::Error::Input { location, .. } => Some(location.clone()),
        _ => None,
    };
    LoadError {
        message: chain(&e),
        at,
    }
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
    let mut report = tact::check::finish_unless(p, keys, &mut plan, now, cancelled)?;
    // What `tact send` would refuse about the set-up blocks here as in `tact check`.
    tact::send::setup::check(&mut report, &p.campaign, &|k| std::env::var(k).ok());
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
    orchestrate::dry_run(p, keys, recipients, std::time::SystemTime::from(now))
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

/// A test message (`tact send --test`): the core's one test path, with the composer's
/// answers. Says what the server did with each message, never whose data was used.
pub fn send_test(
    p: &Prepared,
    plan: &Plan,
    ctx: &Ctx,
    url: &str,
    order: TestOrder,
) -> Result<String, String> {
    let transport =
        Transport::parse(url, std::env::var("TACT_SMTP_PASSWORD").ok()).map_err(|e| chain(&e))?;
    let state = match &ctx.state_dir {
        Some(dir) => Some(
            State::open_existing(dir)
                .map_err(|e| chain(&e))?
                .with_store(ctx.store.clone()),
        ),
        None => None,
    };
    let request = test_send::Request {
        prepared: p,
        plan,
        keys: &ctx.keys,
        state: state.as_ref(),
        transport: &transport,
        to: &order.to,
        configured: &order.configured,
        allow_other: order.allow_other,
        who: order.who,
    };
    match test_send::send(request).map_err(|e| chain(&e))? {
        Ok(sent) => Ok(sent.summary()),
        Err(refusal) => Err(refusal.message()),
    }
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

/// Removes from `[policy].acknowledge` every entry that covers a finding of `rule` on
/// `fields` (inline tables or `[[policy.acknowledge]]`), keeping the file's layout.
pub fn revoke_acknowledgement(
    path: &Path,
    rule: &str,
    fields: &[String],
) -> Result<String, String> {
    let mut doc = read(path)?;
    let covers = |t: &dyn toml_edit::TableLike| {
        let rule_of = t.get("rule").and_then(toml_edit::Item::as_str);
        let fields_of: Vec<String> = t
            .get("fields")
            .and_then(toml_edit::Item::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        rule_of.is_some_and(|r| {
            Acknowledgement {
                rule: r.to_string(),
                fields: fields_of,
                reason: String::new(),
            }
            .covers(rule, fields)
        })
    };
    let item = doc
        .get_mut("policy")
        .and_then(|p| p.as_table_like_mut())
        .and_then(|p| p.get_mut("acknowledge"));
    let removed = match item {
        Some(toml_edit::Item::Value(toml_edit::Value::Array(list))) => {
            let before = list.len();
            list.retain(|v| v.as_inline_table().is_none_or(|t| !covers(t)));
            before - list.len()
        }
        Some(toml_edit::Item::ArrayOfTables(list)) => {
            let before = list.len();
            list.retain(|t| !covers(t));
            before - list.len()
        }
        _ => 0,
    };
    if removed == 0 {
        return Err(format!(
            "no acknowledgement of {rule} in {}",
            path.display()
        ));
    }
    write(path, &doc)?;
    Ok(format!(
        "took back the acknowledgement of {rule} in {}",
        path.display()
    ))
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

/// Why `name` cannot be a new campaign beside `source`, if it cannot: the name rule
/// (`names::campaign_name_refusal`), and no campaign of that name there yet.
pub fn new_campaign_refusal(source: &Path, name: &str) -> Option<String> {
    if let Some(why) = tact::names::campaign_name_refusal(name) {
        return Some(why);
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

/// Replaces `old` by `new` where it stands as a name of its own (not inside a longer
/// word) in the comment block at the top of a campaign file.
fn rename_in_header(text: &str, old: &str, new: &str) -> String {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut header = true;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        header = header && (t.starts_with('#') || t.trim().is_empty());
        if !header || old.is_empty() {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find(old) {
            let before = rest[..i].chars().next_back();
            let after = rest[i + old.len()..].chars().next();
            out.push_str(&rest[..i]);
            if before.is_some_and(word) || after.is_some_and(word) {
                out.push_str(old);
            } else {
                out.push_str(new);
            }
            rest = &rest[i + old.len()..];
        }
        out.push_str(rest);
    }
    out
}

/// Creates `path` with `text`, never over an existing file; removes it again if the
/// write fails half way.
fn create_new(path: &Path, text: &str) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Err(e) = std::io::Write::write_all(&mut f, text.as_bytes()) {
        let _ = std::fs::remove_file(path);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(())
}

/// Copies `source` beside it as `<name>.toml`, with its own copy of the campaign's
/// template files (`<name>.txt.tera`, and `<name>.html.tera` when there is one) so that
/// editing the copy never changes the original; files they extend, include or import
/// stay shared. `name`, `template` and the header comment's mentions of the old name are
/// changed; every other comment and the layout are kept. Never overwrites a file.
/// Returns the new campaign file's path.
pub fn create_campaign(source: &Path, name: &str) -> Result<PathBuf, String> {
    if let Some(why) = new_campaign_refusal(source, name) {
        return Err(why);
    }
    let original = Campaign::load(source).map_err(|e| format!("cannot copy it: {}", chain(&e)))?;
    let mut doc = read(source)?;
    for key in ["name", "template"] {
        let mut v = toml_edit::Value::from(name);
        if let Some(old) = doc.get(key).and_then(toml_edit::Item::as_value) {
            *v.decor_mut() = old.decor().clone();
        }
        doc[key] = toml_edit::Item::Value(v);
    }
    let copies: Vec<(PathBuf, PathBuf)> = ["txt", "html"]
        .iter()
        .map(|kind| {
            let file = |stem: &str| original.templates.join(format!("{stem}.{kind}.tera"));
            (file(&original.template), file(name))
        })
        .filter(|(from, _)| from.is_file())
        .collect();
    if let Some((_, taken)) = copies.iter().find(|(_, to)| to.exists()) {
        return Err(format!(
            "{} already exists: pick another name",
            taken.display()
        ));
    }
    let path = new_campaign_path(source, name);
    let text = rename_in_header(&doc.to_string(), &original.name, name);
    let mut made: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (from, to) in &copies {
            let t =
                std::fs::read_to_string(from).map_err(|e| format!("{}: {e}", from.display()))?;
            create_new(to, &t)?;
            made.push(to.clone());
        }
        create_new(&path, &text)
    })();
    if let Err(e) = result {
        // Ours, just created: nothing half made is left behind.
        for f in &made {
            let _ = std::fs::remove_file(f);
        }
        return Err(e);
    }
    Ok(path)
}
