//! Campaign × audience × ledger → one decision per row. `check`, `preview`, `send` and the
//! TUI all show this one plan, so a count in one is the count in all.
//!
//! Deciding happens in two stages: `plan` applies every rule that needs no rendering
//! (validity, consent, suppression, segment, ledger), then `Prepared::letter` renders one
//! recipient and may still exclude them (`render_error`, `bad_header_value`). `plan` is
//! itself `base` (what no segment changes, kept by the composer across segment edits)
//! followed by `plan_on` (the segment step).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;

use crate::audience::{self, Audience, Role};
use crate::campaign::Campaign;
use crate::consent;
use crate::error::{Error, Location, Result};
use crate::schema::{self, Classification, FieldType, Schema};
use crate::segment::{self, Segment};
use crate::state::{Keys, RecipientHash};
use crate::template::{Place, RenderFailure, Rendered, Templates, ToolVars, Usage};

/// Why a row gets no message (DESIGN §3). The `key`s are contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    MalformedRow,
    InvalidEmail,
    Duplicate,
    NoMarketingConsent,
    StaleConsent,
    Suppressed,
    NoPersonalisationConsent,
    SegmentError,
    NotInSegment,
    AlreadySent,
    FrequencyCapped,
    RenderError,
    BadHeaderValue,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::MalformedRow,
        Reason::InvalidEmail,
        Reason::Duplicate,
        Reason::NoMarketingConsent,
        Reason::StaleConsent,
        Reason::Suppressed,
        Reason::NoPersonalisationConsent,
        Reason::SegmentError,
        Reason::NotInSegment,
        Reason::AlreadySent,
        Reason::FrequencyCapped,
        Reason::RenderError,
        Reason::BadHeaderValue,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Reason::MalformedRow => "malformed_row",
            Reason::InvalidEmail => "invalid_email",
            Reason::Duplicate => "duplicate",
            Reason::NoMarketingConsent => "no_marketing_consent",
            Reason::StaleConsent => "stale_consent",
            Reason::Suppressed => "suppressed",
            Reason::NoPersonalisationConsent => "no_personalisation_consent",
            Reason::SegmentError => "segment_error",
            Reason::NotInSegment => "not_in_segment",
            Reason::AlreadySent => "already_sent",
            Reason::FrequencyCapped => "frequency_capped",
            Reason::RenderError => "render_error",
            Reason::BadHeaderValue => "bad_header_value",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Outcome {
    Personalised,
    Generic,
    Excluded(Reason),
}

/// One well-formed row's decision. `row` indexes the audience's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub row: u32,
    pub outcome: Outcome,
}

/// What the ledger knows: kept beside the ledger (so `state` needs nothing of the plan),
/// named here too because the plan is made of it.
pub use crate::state::ledger::Facts;

#[derive(Debug, Clone)]
pub struct FieldInfo {
    pub name: String,
    pub class: Classification,
    pub origin: schema::Origin,
    pub places: BTreeSet<Place>,
    pub ty: FieldType,
    /// The column saying when a behavioural field was observed.
    pub observed_at: Option<String>,
}

/// Everything loaded and checked for one campaign, before any row is decided.
#[derive(Debug)]
pub struct Prepared {
    pub campaign: Campaign,
    pub schema: Schema,
    pub templates: Templates,
    pub segment: Option<Segment>,
    pub usage: Usage,
    pub fields: Vec<FieldInfo>,
    /// Shared: a campaign re-planned with another segment keeps the same rows in memory.
    pub audience: Arc<Audience>,
    pub compiled: Option<segment::Compiled>,
    /// Kept-column index of each customer field the templates use, for the render context.
    render_columns: Vec<(String, usize)>,
    /// What `now()` returns in the templates (the plan's "now").
    pub now: DateTime<Utc>,
    /// The campaign's part of `why_you_got_this`.
    pub why: crate::why::Why,
}

impl Prepared {
    pub fn load(campaign_path: &Path, now: DateTime<Utc>) -> Result<Prepared> {
        let campaign = Campaign::load(campaign_path)?;
        Self::from_campaign(campaign, now)
    }

    pub fn from_campaign(campaign: Campaign, now: DateTime<Utc>) -> Result<Prepared> {
        Self::from_campaign_keeping(campaign, now, std::iter::empty())
    }

    /// `from_campaign` that also keeps `columns` (those a previous load had), so a segment
    /// edit that made the file be read again does not drop a column the next edit needs.
    fn from_campaign_keeping<'a>(
        campaign: Campaign,
        now: DateTime<Utc>,
        columns: impl Iterator<Item = &'a str>,
    ) -> Result<Prepared> {
        let schema = match &campaign.schema {
            Some(p) => Schema::load(p)?,
            None => Schema::default(),
        };
        let header = audience::read_header(&campaign.audience, &schema)?;
        let mut templates = Templates::load(
            &campaign.templates,
            &campaign.template,
            &campaign.path,
            &campaign.subject,
            &campaign.preheader,
        )?;
        templates.register_sensitive(Arc::clone(&schema.lexicon));
        let mut usage = templates.usage(header.template_fields());
        if let Some((name, hint)) = usage.unknown.iter().next() {
            return Err(Error::input(
                Location::file(&templates.dir),
                format!(
                    "the templates use `{name}`, which is neither a column of {} nor a tact variable{hint}",
                    campaign.audience.display()
                ),
            ));
        }
        if let Some(file) = usage.get_env.iter().next() {
            let at = match file.strip_prefix("__tact/") {
                Some(part) => {
                    Location::file(campaign.path.with_extension(format!("toml ({part})")))
                }
                None => Location::file(templates.dir.join(file)),
            };
            return Err(Error::input(
                at,
                "calls get_env, which tact disables: environment variables hold secrets such as TACT_SMTP_PASSWORD",
            ));
        }
        if let Some(what) = usage.recursion.iter().next() {
            return Err(Error::input(
                Location::file(&templates.dir),
                format!(
                    "{what} reaches itself again (recursion): tact refuses recursive templates, whose depth the data could drive until the stack overflows"
                ),
            ));
        }
        if let Some(what) = usage.too_deep.iter().next() {
            return Err(Error::input(
                Location::file(&templates.dir),
                format!(
                    "{what} nests too deeply: at most {} includes, macro calls or extends, and {} levels of if/for/block/macro bodies in all",
                    crate::template::MAX_CALL_DEPTH,
                    crate::template::MAX_RENDER_DEPTH
                ),
            ));
        }
        if let Some(name) = usage.missing_includes.iter().next() {
            return Err(Error::input(
                Location::file(&templates.dir),
                format!(
                    "a template includes `{name}`, which is not a template in this folder (only files inside it can be included)"
                ),
            ));
        }
        let segment = campaign
            .segment
            .as_deref()
            .map(|s| Segment::parse(s, &campaign.path))
            .transpose()?;
        if let Some(seg) = &segment {
            seg.check_fields(&header, &campaign.path)?;
            for f in &seg.fields {
                usage.add(f, Place::Segment);
            }
        }
        let mut keep: BTreeSet<String> = usage.names();
        let observed = observed_columns(&usage, &schema, &header);
        for (field, col) in &observed {
            if header.index(col).is_none() {
                return Err(Error::input(
                    schema
                        .path
                        .as_deref()
                        .map_or_else(|| Location::file(&campaign.audience), Location::file),
                    format!("`{field}` has observed_at = \"{col}\", which is not a column"),
                ));
            }
            keep.insert(col.clone());
        }
        keep.extend(columns.map(str::to_string));
        let audience = Arc::new(Audience::load(header, &keep, &schema)?);
        let fields = field_infos(&usage, &schema, &audience, &observed);
        let compiled = segment
            .as_ref()
            .map(|s| s.compile(&audience, now, &campaign.path))
            .transpose()?
            .map(|c| c.with_lexicon(Arc::clone(&schema.lexicon)));
        let render_columns = usage
            .fields
            .iter()
            .filter(|(_, places)| places.iter().any(|p| *p != Place::Segment))
            .filter_map(|(name, _)| audience.column_index(name).map(|i| (name.clone(), i)))
            .collect();
        let why = crate::why::Why::new(&campaign, &schema, &audience, &fields);
        Ok(Prepared {
            why,
            campaign,
            schema,
            templates,
            segment,
            usage,
            fields,
            audience,
            compiled,
            render_columns,
            now,
        })
    }

    /// The same campaign with another segment, for the composer's live recount: the new
    /// segment is compiled against the audience already in memory, so a 1M-row file is
    /// not read again on every keystroke. Only a segment that needs a column this
    /// campaign never loaded (or its `observed_at` column) reads the file again.
    pub fn with_segment(&self, segment: Option<&str>, now: DateTime<Utc>) -> Result<Prepared> {
        let mut campaign = self.campaign.clone();
        campaign.segment = segment.map(str::to_string);
        let parsed = segment
            .map(|s| Segment::parse(s, &campaign.path))
            .transpose()?;
        let mut usage = self.usage.clone();
        for places in usage.fields.values_mut() {
            places.remove(&Place::Segment);
        }
        usage.fields.retain(|_, places| !places.is_empty());
        if let Some(seg) = &parsed {
            seg.check_fields(&self.audience.header, &campaign.path)?;
            for f in &seg.fields {
                usage.add(f, Place::Segment);
            }
        }
        let observed = observed_columns(&usage, &self.schema, &self.audience.header);
        let missing = usage
            .fields
            .keys()
            .chain(observed.values())
            .any(|c| self.audience.column(c).is_none());
        if missing {
            let loaded = self.audience.columns.iter().map(|c| c.name.as_str());
            return Prepared::from_campaign_keeping(campaign, now, loaded);
        }
        let compiled = parsed
            .as_ref()
            .map(|s| s.compile(&self.audience, now, &campaign.path))
            .transpose()?
            .map(|c| c.with_lexicon(Arc::clone(&self.schema.lexicon)));
        let fields = field_infos(&usage, &self.schema, &self.audience, &observed);
        Ok(Prepared {
            why: crate::why::Why::new(&campaign, &self.schema, &self.audience, &fields),
            fields,
            campaign,
            schema: self.schema.clone(),
            templates: self.templates.clone(),
            segment: parsed,
            usage,
            audience: Arc::clone(&self.audience),
            compiled,
            render_columns: self.render_columns.clone(),
            now,
        })
    }

    pub fn field(&self, name: &str) -> Option<&FieldInfo> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Targeting with anything above `declared` is personalisation (DESIGN §3).
    pub fn segment_needs_personalisation(&self) -> bool {
        self.fields
            .iter()
            .any(|f| f.places.contains(&Place::Segment) && f.class.class().level() > 1)
    }

    /// Every decision that needs no rendering (DESIGN §3, up to `frequency_capped`).
    pub fn plan(&self, keys: &Keys, facts: &Facts, now: DateTime<Utc>) -> Plan {
        self.plan_on(&self.base(keys, facts, now))
    }

    /// The part of the plan no segment can change, for every row: validity, duplicates,
    /// marketing consent and its age, suppression, and what the ledger says. Computed once
    /// per loaded audience (and ledger), so a new segment only runs the segment step
    /// (`plan_on`). Per-row work runs on all cores; only the duplicate scan is in order.
    pub fn base(&self, keys: &Keys, facts: &Facts, now: DateTime<Utc>) -> BasePlan {
        let a = &self.audience;
        let marketing = a.role(Role::ConsentMarketing);
        let personalisation = a.role(Role::ConsentPersonalisation);
        let consent_at = a.role(Role::ConsentAt);
        let max_age = self.campaign.policy.consent_max_age_days;
        // Hashing costs an HMAC per row; skip it while the ledger knows nothing.
        let hashing = !facts.is_empty();
        let mut rows: Vec<Base> = (0..a.len())
            .into_par_iter()
            .map(|row| {
                let email = a.email(row);
                if email.parse::<lettre::Address>().is_err() {
                    return Base::Out(Reason::InvalidEmail);
                }
                if !marketing.is_some_and(|c| consent::is_granted(c.data.get(row))) {
                    return Base::Out(Reason::NoMarketingConsent);
                }
                if let Some(at) = consent_at
                    && consent::check_current(at.data.get(row), now, max_age).is_err()
                {
                    return Base::Out(Reason::StaleConsent);
                }
                let mut ledger = None;
                if hashing {
                    let h = keys.recipient_hash(email);
                    if facts.suppressed.contains(&h) {
                        return Base::Out(Reason::Suppressed);
                    }
                    if facts.already.contains(&h) || facts.closed_to(&h) {
                        ledger = Some(Reason::AlreadySent);
                    } else if facts.recent.contains(&h) {
                        ledger = Some(Reason::FrequencyCapped);
                    }
                }
                Base::In {
                    personalised: personalisation
                        .is_some_and(|c| consent::is_granted(c.data.get(row))),
                    ledger,
                }
            })
            .collect();
        // A second row of an address is a duplicate whatever the first row's fate; only
        // an invalid address never counts as seen. Everything above that is overruled.
        for row in duplicate_rows(a, &rows) {
            rows[row] = Base::Out(Reason::Duplicate);
        }
        let stale_details = match consent_at {
            Some(at) => rows
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == Base::Out(Reason::StaleConsent))
                .filter_map(|(row, _)| {
                    consent::check_current(at.data.get(row), now, max_age)
                        .err()
                        .map(|s| (a.line(row), s))
                })
                .collect(),
            None => Vec::new(),
        };
        BasePlan {
            audience: Arc::clone(&self.audience),
            now,
            max_age,
            rows,
            stale_details,
        }
    }

    /// Whether `base` was made for this audience with these consent rules, so `plan_on`
    /// may use it. (It must also come from the same keys and ledger facts: the caller's
    /// to keep.)
    pub fn fits(&self, base: &BasePlan, now: DateTime<Utc>) -> bool {
        Arc::ptr_eq(&self.audience, &base.audience)
            && base.now == now
            && base.max_age == self.campaign.policy.consent_max_age_days
    }

    /// The plan from a base (`Prepared::base` on this audience): only the steps a segment
    /// changes run, `no_personalisation_consent` and the segment itself, in parallel.
    pub fn plan_on(&self, base: &BasePlan) -> Plan {
        let a = &self.audience;
        debug_assert_eq!(base.rows.len(), a.len(), "a base plan of another audience");
        let needs_personalisation = self.segment_needs_personalisation();
        let compiled = self.compiled.as_ref();
        let decisions: Vec<Decision> = base
            .rows
            .par_iter()
            .enumerate()
            .map(|(row, b)| {
                let outcome = match *b {
                    Base::Out(r) => Outcome::Excluded(r),
                    Base::In {
                        personalised,
                        ledger,
                    } => {
                        if needs_personalisation && !personalised {
                            Outcome::Excluded(Reason::NoPersonalisationConsent)
                        } else {
                            match compiled.map_or(Ok(true), |seg| seg.matches(a, row)) {
                                Ok(false) => Outcome::Excluded(Reason::NotInSegment),
                                Err(_) => Outcome::Excluded(Reason::SegmentError),
                                Ok(true) => match ledger {
                                    Some(r) => Outcome::Excluded(r),
                                    None if personalised => Outcome::Personalised,
                                    None => Outcome::Generic,
                                },
                            }
                        }
                    }
                };
                Decision {
                    row: row as u32,
                    outcome,
                }
            })
            .collect();
        // Rare, and only the error's text is wanted: evaluate those rows once more.
        let segment_errors = match compiled {
            Some(seg) => decisions
                .iter()
                .filter(|d| d.outcome == Outcome::Excluded(Reason::SegmentError))
                .filter_map(|d| {
                    let row = d.row as usize;
                    seg.matches(a, row)
                        .err()
                        .map(|e| (a.line(row), e.to_string()))
                })
                .collect(),
            None => Vec::new(),
        };
        Plan {
            decisions,
            malformed: a.malformed.len(),
            segment_errors,
            stale_details: base.stale_details.clone(),
        }
    }

    /// The columns a personalised render reads, by variable name (the sample person of a
    /// test message is made from their names and types).
    pub fn render_columns(&self) -> impl Iterator<Item = (&str, &crate::audience::Column)> {
        self.render_columns
            .iter()
            .map(|(name, col)| (name.as_str(), &self.audience.columns[*col]))
    }

    /// The customer fields a personalised render gets: only those the templates use.
    pub fn render_fields(&self, row: usize) -> Vec<(&str, &str)> {
        self.render_columns
            .iter()
            .map(|(name, col)| (name.as_str(), self.audience.columns[*col].data.get(row)))
            .collect()
    }

    pub fn tool_vars(
        &self,
        keys: &Keys,
        row: usize,
        personalised: bool,
    ) -> (ToolVars, RecipientHash) {
        let hash = keys.recipient_hash(self.audience.email(row));
        let token = keys.seal_token(&self.campaign.name, &hash);
        let consent_at = self
            .audience
            .role(Role::ConsentAt)
            .and_then(|c| consent::parse_time(c.data.get(row)));
        let vars = ToolVars {
            now: self.now,
            seed: u64::from_le_bytes(hash[..8].try_into().unwrap_or_default()),
            personalised,
            unsubscribe_url: unsubscribe_url(&self.campaign.unsubscribe_url, &token),
            postal_address: self.campaign.postal_address.clone(),
            campaign: self.campaign.name.clone(),
            why_you_got_this: if personalised {
                self.why
                    .personalised(&self.audience, row, consent_at, self.now)
            } else {
                self.why.generic(consent_at)
            },
        };
        (vars, hash)
    }

    /// Renders one recipient exactly as it would be sent.
    pub fn letter(
        &self,
        keys: &Keys,
        row: usize,
        personalised: bool,
    ) -> std::result::Result<Letter, Excluded> {
        let (vars, hash) = self.tool_vars(keys, row, personalised);
        let fields = if personalised {
            self.render_fields(row)
        } else {
            Vec::new()
        };
        let mut letter = self.letter_with(row, personalised, vars, hash, &fields)?;
        if self.campaign.bounce_base().is_some() {
            letter.bounce_token = Some(keys.seal_bounce_token(&self.campaign.name, &hash));
        }
        Ok(letter)
    }

    /// `letter` from given tool variables and fields: one render and the header guard. The
    /// self-check's canary renders go through here too, so what they prove holds for sends.
    pub fn letter_with(
        &self,
        row: usize,
        personalised: bool,
        vars: ToolVars,
        hash: RecipientHash,
        fields: &[(&str, &str)],
    ) -> std::result::Result<Letter, Excluded> {
        let rendered = self.templates.render(&vars, fields).map_err(|f| Excluded {
            reason: Reason::RenderError,
            detail: self.describe_failure(&f),
        })?;
        if rendered.subject.chars().any(unsafe_in_header) {
            return Err(Excluded {
                reason: Reason::BadHeaderValue,
                detail: "the subject would contain a line break or control character".into(),
            });
        }
        Ok(Letter {
            row,
            personalised,
            rendered,
            unsubscribe_url: vars.unsubscribe_url,
            hash,
            bounce_token: None,
        })
    }

    /// A render failure in words: its kind and names, and the fields whose values can reach
    /// the failing filter or function (by the walker), so the marketer knows which column
    /// to look at. The row is named by its line where this is reported; never a value.
    pub fn describe_failure(&self, f: &RenderFailure) -> String {
        let fields = f
            .call
            .as_ref()
            .and_then(|c| self.usage.flows_into.get(c))
            .filter(|fs| !fs.is_empty())
            .map(|fs| {
                let names: Vec<String> = fs.iter().map(|n| format!("`{n}`")).collect();
                format!("; the value of {} reaches it", names.join(", "))
            })
            .unwrap_or_default();
        format!("{}{fields}", f.message)
    }

    /// A render with no recipient at all: the generic variant must stand on its own.
    pub fn generic_sample(&self) -> std::result::Result<Rendered, RenderFailure> {
        let vars = ToolVars {
            now: self.now,
            seed: 0,
            personalised: false,
            unsubscribe_url: unsubscribe_url(&self.campaign.unsubscribe_url, "TOKEN"),
            postal_address: self.campaign.postal_address.clone(),
            campaign: self.campaign.name.clone(),
            why_you_got_this: self.why.generic(None),
        };
        self.templates.render(&vars, &[])
    }
}

/// The `observed_at` column of each used field that has one (as the header names it).
fn observed_columns(
    usage: &Usage,
    schema: &Schema,
    header: &audience::Header,
) -> BTreeMap<String, String> {
    usage
        .fields
        .keys()
        .filter_map(|f| {
            let o = schema.field(f)?.observed_at.as_deref()?;
            let col = header
                .resolve(o)
                .map_or_else(|| crate::names::normalise_name(o), str::to_string);
            Some((f.clone(), col))
        })
        .collect()
}

fn field_infos(
    usage: &Usage,
    schema: &Schema,
    audience: &Audience,
    observed: &BTreeMap<String, String>,
) -> Vec<FieldInfo> {
    usage
        .fields
        .iter()
        .map(|(name, places)| {
            let class = schema::classify(name, schema);
            FieldInfo {
                name: name.clone(),
                origin: schema::Origin::of(name, schema, &class),
                class,
                places: places.clone(),
                ty: audience.column(name).map_or(FieldType::Text, |c| c.ty),
                observed_at: observed.get(name).cloned(),
            }
        })
        .collect()
}

/// A row the render stage excluded, with a reason that names parts and variables only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub reason: Reason,
    pub detail: String,
}

/// One recipient's rendered message, before it becomes MIME.
#[derive(Debug, Clone)]
pub struct Letter {
    pub row: usize,
    pub personalised: bool,
    pub rendered: Rendered,
    pub unsubscribe_url: String,
    pub hash: RecipientHash,
    /// The VERP token of the envelope sender, when the campaign has a bounce address:
    /// this recipient's, or a test message's inert one.
    pub bounce_token: Option<String>,
}

/// Control characters break headers; Unicode line separators and bidi overrides do not,
/// but they let data reorder or split what a subject line shows (a classic spoofing trick),
/// so they too make a recipient `bad_header_value` rather than being silently removed.
pub fn unsafe_in_header(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Appends the token with `?` or `&` as the URL needs.
pub fn unsubscribe_url(base: &str, token: &str) -> String {
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    format!("{base}{sep}t={token}")
}

/// One row's decision as far as no segment can change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// Excluded before the segment step: invalid, duplicate, no or stale consent, suppressed.
    Out(Reason),
    /// Reaches the segment step; `ledger` is `already_sent` or `frequency_capped` if the
    /// ledger rules them out once they are in the segment.
    In {
        personalised: bool,
        ledger: Option<Reason>,
    },
}

/// The segment-independent part of a plan (`Prepared::base`), kept by the composer so a
/// segment edit re-plans a 1M-row audience without re-checking addresses, consent or the
/// ledger. `Prepared::plan` is `plan_on(base)`: one implementation for both.
#[derive(Debug, Clone)]
pub struct BasePlan {
    audience: Arc<Audience>,
    now: DateTime<Utc>,
    max_age: u32,
    rows: Vec<Base>,
    stale_details: Vec<(u64, consent::Staleness)>,
}

/// Rows whose (trimmed, case-folded) address an earlier valid row already has. A set of a
/// million owned strings costs over 100 MB; sorting 16-byte (hash, row) pairs costs a third
/// of that, and equal hashes are compared as strings, so a collision never merges two
/// people.
fn duplicate_rows(a: &Audience, rows: &[Base]) -> Vec<usize> {
    use std::hash::{BuildHasher, Hasher};
    let hasher = std::collections::hash_map::RandomState::new();
    // The ledger's own form of an address: a pair it would hash alike is a duplicate here.
    let key = |row: usize| -> Cow<'_, str> { crate::state::address_key(a.email(row)) };
    let mut pairs: Vec<(u64, u32)> = rows
        .par_iter()
        .enumerate()
        .filter(|(_, b)| **b != Base::Out(Reason::InvalidEmail))
        .map(|(row, _)| {
            let mut h = hasher.build_hasher();
            h.write(key(row).as_bytes());
            (h.finish(), row as u32)
        })
        .collect();
    pairs.par_sort_unstable();
    let mut dups = Vec::new();
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i + 1;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        if j - i > 1 {
            // Rows in file order within one hash; the first of each distinct address wins.
            let mut firsts: Vec<Cow<'_, str>> = Vec::new();
            for &(_, row) in &pairs[i..j] {
                let k = key(row as usize);
                if firsts.contains(&k) {
                    dups.push(row as usize);
                } else {
                    firsts.push(k);
                }
            }
        }
        i = j;
    }
    dups
}

/// The decisions for every row, plus what the report needs to explain them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    pub malformed: usize,
    /// (line, reason) of rows whose segment fields could not be read as their type.
    pub segment_errors: Vec<(u64, String)>,
    pub stale_details: Vec<(u64, consent::Staleness)>,
}

/// The contract's counts: `rows = personalised + generic + Σ excluded`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub rows: usize,
    pub personalised: usize,
    pub generic: usize,
    pub excluded: BTreeMap<&'static str, usize>,
}

impl Counts {
    pub fn excluded(&self, r: Reason) -> usize {
        self.excluded.get(r.key()).copied().unwrap_or(0)
    }

    /// Who the campaign targets, for `micro-segment`: a resumed campaign is judged as it
    /// was the first time.
    pub fn targeted(&self) -> usize {
        self.personalised + self.generic + self.excluded(Reason::AlreadySent)
    }

    pub fn recipients(&self) -> usize {
        self.personalised + self.generic
    }

    pub fn excluded_total(&self) -> usize {
        self.excluded.values().sum()
    }
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            rows: self.decisions.len() + self.malformed,
            ..Default::default()
        };
        for r in Reason::ALL {
            c.excluded.insert(r.key(), 0);
        }
        *c.excluded.entry(Reason::MalformedRow.key()).or_default() += self.malformed;
        for d in &self.decisions {
            match d.outcome {
                Outcome::Personalised => c.personalised += 1,
                Outcome::Generic => c.generic += 1,
                Outcome::Excluded(r) => *c.excluded.entry(r.key()).or_default() += 1,
            }
        }
        c
    }

    pub fn recipients(&self) -> impl Iterator<Item = (usize, bool)> + '_ {
        self.decisions.iter().filter_map(|d| match d.outcome {
            Outcome::Personalised => Some((d.row as usize, true)),
            Outcome::Generic => Some((d.row as usize, false)),
            Outcome::Excluded(_) => None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use std::collections::HashSet;

    use crate::state::Keys;

    const CSV: &str =
        "email,consent_marketing,consent_personalisation,consent_at,first_name,total_spent,country
not-an-address,no,no,,Ann,50,GB
a@x.example,yes,yes,2026-11-01,Ann,50,GB
 A@X.example ,yes,yes,2026-11-01,Ann,50,GB
b@x.example,no,yes,2020-01-01,Bo,50,GB
c@x.example,yes,yes,2020-01-01,Cy,50,GB
d@x.example,yes,yes,2026-11-01,Di,5,GB
e@x.example,yes,maybe,2026-11-01,Ed,5,GB
f@x.example,yes,yes,2026-11-01,Fi,lots,GB
g@x.example,yes,yes,2026-11-01,Gu,5,GB
h@x.example,yes,yes,2026-11-01,Hu,50,GB
i@x.example,yes,yes,2026-11-01,Io,50,GB
j@x.example,yes,yes,2026-11-01,\"J\r\nBcc: z@x.example\",50,GB
k@x.example,yes
l@x.example,y,,2026-11-01,Lu,50,DE
";

    fn prepared(segment: &str) -> (tempfile::TempDir, Prepared) {
        prepared_csv(CSV, segment)
    }

    fn prepared_csv(csv: impl AsRef<[u8]>, segment: &str) -> (tempfile::TempDir, Prepared) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("people.csv"), csv).unwrap();
        std::fs::create_dir(d.join("templates")).unwrap();
        std::fs::write(
            d.join("templates/t.txt.tera"),
            "{% if personalised %}Hi {{ first_name }}{% endif %} {{ unsubscribe_url }} {{ postal_address }}",
        )
        .unwrap();
        let campaign = format!(
            r#"name = "t"
audience = "people.csv"
template = "t"
subject = "{{% if personalised %}}{{{{ first_name }}}}, {{% endif %}}hello"
from = "Shop <news@shop.example>"
unsubscribe_url = "https://shop.example/u"
postal_address = "1 Road, Town"
segment = '{segment}'
"#
        );
        std::fs::write(d.join("t.toml"), campaign).unwrap();
        let p = Prepared::load(&d.join("t.toml"), now()).unwrap();
        (dir, p)
    }

    fn now() -> DateTime<Utc> {
        consent::parse_time("2026-11-23T12:00:00Z").unwrap()
    }

    #[test]
    fn reasons_apply_in_the_contract_order() {
        let (_d, p) = prepared("total_spent > 10");
        let keys = Keys::from_master(&[1; 32]);
        let h = |e: &str| keys.recipient_hash(e);
        let facts = Facts {
            suppressed: HashSet::from([h("c@x.example"), h("d@x.example")]),
            already: HashSet::from([h("g@x.example"), h("h@x.example")]),
            recent: HashSet::from([h("h@x.example"), h("i@x.example")]),
            ..Facts::default()
        };
        let mut plan = p.plan(&keys, &facts, now());
        let stats = crate::check::render_all(&p, &keys, &mut plan, now());
        let got: Vec<(u64, Outcome)> = plan
            .decisions
            .iter()
            .map(|d| (p.audience.line(d.row as usize), d.outcome))
            .collect();
        use Outcome::*;
        use Reason::*;
        let want = vec![
            (2, Excluded(InvalidEmail)),
            (3, Personalised),
            (4, Excluded(Duplicate)),
            (5, Excluded(NoMarketingConsent)),
            (6, Excluded(StaleConsent)),
            (7, Excluded(Suppressed)),
            (8, Excluded(NoPersonalisationConsent)),
            (9, Excluded(SegmentError)),
            (10, Excluded(NotInSegment)),
            (11, Excluded(AlreadySent)),
            (12, Excluded(FrequencyCapped)),
            (13, Excluded(BadHeaderValue)),
            // Line 13's quoted CR/LF makes the ragged row line 15 and this one line 16.
            (16, Excluded(NoPersonalisationConsent)),
        ];
        assert_eq!(got, want);
        assert_eq!(stats.problems.len(), 1);
        let c = plan.counts();
        assert_eq!(c.rows, 14);
        assert_eq!(c.excluded(MalformedRow), 1);
        assert_eq!(p.audience.malformed[0].line, 15);
        assert_eq!(c.rows, c.personalised + c.generic + c.excluded_total());
        assert_eq!(c.targeted(), 2, "already_sent counts as targeted");
    }

    /// A complete campaign sends nobody new: the plan says so (not only `send`), after a
    /// purge took its rows too; `--retry-uncertain` reopens it for the uncertain alone.
    #[test]
    fn a_complete_campaign_plans_nobody_but_the_uncertain_being_retried() {
        let (_d, p) = prepared("total_spent > 10");
        let keys = Keys::from_master(&[1; 32]);
        let open = p.plan(&keys, &Facts::default(), now()).counts();
        assert!(open.recipients() > 1);
        assert_eq!(open.targeted(), open.recipients());
        let purged = Facts {
            completed_at: Some(now()),
            ..Facts::default()
        };
        let c = p.plan(&keys, &purged, now()).counts();
        assert_eq!(c.recipients(), 0, "{c:?}");
        assert_eq!(
            c.targeted(),
            open.targeted(),
            "judged as it was the first time"
        );
        assert_eq!(c.excluded(Reason::AlreadySent), open.recipients());
        let uncertain = p.plan(&keys, &Facts::default(), now());
        let first = uncertain.recipients().next().unwrap().0;
        let u = keys.recipient_hash(p.audience.email(first));
        let facts = Facts {
            completed_at: Some(now()),
            already: HashSet::from([u]),
            uncertain: HashSet::from([u]),
            ..Facts::default()
        };
        assert_eq!(p.plan(&keys, &facts, now()).counts().recipients(), 0);
        let retrying = facts.retrying_uncertain();
        let plan = p.plan(&keys, &retrying, now());
        let rows: Vec<usize> = plan.recipients().map(|r| r.0).collect();
        assert_eq!(rows, [first], "the uncertain one alone");
    }

    #[test]
    fn routing_segments_reach_everyone_with_marketing_consent() {
        let (_d, p) = prepared(r#"country == "DE""#);
        let keys = Keys::from_master(&[1; 32]);
        let plan = p.plan(&keys, &Facts::default(), now());
        let recipients: Vec<_> = plan
            .recipients()
            .map(|(row, pers)| (p.audience.email(row).to_string(), pers))
            .collect();
        assert_eq!(recipients, [("l@x.example".to_string(), false)]);
        let letter = p
            .letter(&keys, plan.recipients().next().unwrap().0, false)
            .unwrap();
        assert_eq!(letter.rendered.subject, "hello");
        assert!(
            !letter.rendered.text.contains("Lu"),
            "generic variant has no fields"
        );
        assert!(letter.rendered.text.contains("https://shop.example/u?t="));
    }

    fn outcomes(p: &Prepared) -> Vec<(u64, Outcome)> {
        let keys = Keys::from_master(&[1; 32]);
        p.plan(&keys, &Facts::default(), now())
            .decisions
            .iter()
            .map(|d| (p.audience.line(d.row as usize), d.outcome))
            .collect()
    }

    #[test]
    fn with_segment_replans_on_the_loaded_audience() {
        let (dir, base) = prepared(r#"country == "DE" and total_spent > 0"#);
        let (_d, want) = prepared("total_spent > 10");
        // Without the file: a segment over loaded columns must not need it.
        std::fs::remove_file(dir.path().join("people.csv")).unwrap();
        let p = base.with_segment(Some("total_spent > 10"), now()).unwrap();
        assert_eq!(outcomes(&p), outcomes(&want));
        assert_eq!(p.campaign.segment.as_deref(), Some("total_spent > 10"));
        let places = |p: &Prepared, f: &str| p.field(f).map(|f| f.places.clone());
        assert_eq!(
            places(&p, "country"),
            None,
            "the old segment's field is gone"
        );
        assert_eq!(
            places(&p, "total_spent"),
            Some(BTreeSet::from([Place::Segment]))
        );
        assert!(p.segment_needs_personalisation());
        // No segment: everyone with consent, and `declared` targeting needs no extra consent.
        let all = base.with_segment(None, now()).unwrap();
        assert!(all.segment.is_none() && all.compiled.is_none());
        assert!(!all.segment_needs_personalisation());
        assert_eq!(
            places(&all, "first_name"),
            Some(BTreeSet::from([Place::Subject, Place::Body]))
        );
        // Errors name the segment, as a fresh load would.
        let e = base
            .with_segment(Some("totl_spent > 1"), now())
            .unwrap_err();
        assert!(e.to_string().contains("did you mean `total_spent`"), "{e}");
        let e = base.with_segment(Some("total_spent >"), now()).unwrap_err();
        assert!(e.to_string().contains("not a valid expression"), "{e}");
    }

    #[test]
    fn with_segment_reads_the_file_for_a_column_it_never_loaded() {
        let (_d, base) = prepared(r#"country == "DE""#);
        assert!(base.audience.column("total_spent").is_none());
        let p = base.with_segment(Some("total_spent > 10"), now()).unwrap();
        assert!(p.audience.column("total_spent").is_some());
        let (_d2, want) = prepared("total_spent > 10");
        assert_eq!(outcomes(&p), outcomes(&want));
        // The columns loaded before are kept: going back to them needs no other read.
        assert!(p.audience.column("country").is_some());
        let q = p
            .with_segment(Some(r#"country == "DE" or total_spent > 10"#), now())
            .unwrap();
        assert!(Arc::ptr_eq(&p.audience, &q.audience));
    }

    /// The plan as it was decided before the split into `base` and `plan_on`: one
    /// sequential pass in DESIGN §3's order. The split must agree with it row for row.
    fn sequential_plan(p: &Prepared, keys: &Keys, facts: &Facts, now: DateTime<Utc>) -> Plan {
        let a = &p.audience;
        let marketing = a.role(Role::ConsentMarketing);
        let personalisation = a.role(Role::ConsentPersonalisation);
        let consent_at = a.role(Role::ConsentAt);
        let needs_personalisation = p.segment_needs_personalisation();
        let max_age = p.campaign.policy.consent_max_age_days;
        let mut seen: HashSet<String> = HashSet::new();
        let mut decisions = Vec::new();
        let mut segment_errors = Vec::new();
        let mut stale_details = Vec::new();
        for row in 0..a.len() {
            let email = a.email(row);
            let mut out = |o| {
                decisions.push(Decision {
                    row: row as u32,
                    outcome: o,
                })
            };
            let ex = Outcome::Excluded;
            if email.parse::<lettre::Address>().is_err() {
                out(ex(Reason::InvalidEmail));
                continue;
            }
            if !seen.insert(email.to_lowercase()) {
                out(ex(Reason::Duplicate));
                continue;
            }
            if !marketing.is_some_and(|c| consent::is_granted(c.data.get(row))) {
                out(ex(Reason::NoMarketingConsent));
                continue;
            }
            if let Some(at) = consent_at
                && let Err(s) = consent::check_current(at.data.get(row), now, max_age)
            {
                stale_details.push((a.line(row), s));
                out(ex(Reason::StaleConsent));
                continue;
            }
            let h = keys.recipient_hash(email);
            if facts.suppressed.contains(&h) {
                out(ex(Reason::Suppressed));
                continue;
            }
            let personalised =
                personalisation.is_some_and(|c| consent::is_granted(c.data.get(row)));
            if needs_personalisation && !personalised {
                out(ex(Reason::NoPersonalisationConsent));
                continue;
            }
            if let Some(seg) = &p.compiled {
                match seg.matches(a, row) {
                    Ok(true) => {}
                    Ok(false) => {
                        out(ex(Reason::NotInSegment));
                        continue;
                    }
                    Err(e) => {
                        segment_errors.push((a.line(row), e.to_string()));
                        out(ex(Reason::SegmentError));
                        continue;
                    }
                }
            }
            if facts.already.contains(&h) {
                out(ex(Reason::AlreadySent));
            } else if facts.recent.contains(&h) {
                out(ex(Reason::FrequencyCapped));
            } else {
                out(if personalised {
                    Outcome::Personalised
                } else {
                    Outcome::Generic
                });
            }
        }
        Plan {
            decisions,
            malformed: a.malformed.len(),
            segment_errors,
            stale_details,
        }
    }

    fn assert_same(got: &Plan, want: &Plan, what: &str) {
        assert_eq!(got.decisions.len(), want.decisions.len(), "{what}");
        for (g, w) in got.decisions.iter().zip(&want.decisions) {
            assert_eq!(g, w, "{what}: row {}", w.row);
        }
        assert_eq!(got.malformed, want.malformed, "{what}");
        assert_eq!(got.segment_errors, want.segment_errors, "{what}");
        assert_eq!(got.stale_details, want.stale_details, "{what}");
    }

    /// For each segment: the plan of a fresh load must match the sequential reference, and
    /// so must the composer's path (one base from the first segment's load, then
    /// `with_segment` + `plan_on`), with and without ledger facts.
    fn check_split(
        campaign: &Path,
        segments: &[Option<&str>],
        facts_of: impl Fn(&Prepared) -> Facts,
    ) {
        let keys = Keys::from_master(&[5; 32]);
        let now = now();
        let c = Campaign::load(campaign).unwrap();
        let loaded = Prepared::from_campaign(c.clone(), now).unwrap();
        for facts in [Facts::default(), facts_of(&loaded)] {
            let base = loaded.base(&keys, &facts, now);
            let (mut needing, mut reused) = (0, 0);
            for seg in segments {
                let mut c = c.clone();
                c.segment = seg.map(str::to_string);
                let fresh = Prepared::from_campaign(c, now).unwrap();
                let want = sequential_plan(&fresh, &keys, &facts, now);
                let what = format!("{} / {seg:?}", campaign.display());
                assert_same(&fresh.plan(&keys, &facts, now), &want, &what);
                let edited = loaded.with_segment(*seg, now).unwrap();
                // A segment over a column never loaded reads the file again: a new base.
                let own;
                let b = if edited.fits(&base, now) {
                    reused += 1;
                    &base
                } else {
                    own = edited.base(&keys, &facts, now);
                    &own
                };
                assert_same(&edited.plan_on(b), &want, &format!("{what}, edited"));
                needing += usize::from(fresh.segment_needs_personalisation());
                let counts = want.counts();
                assert_eq!(
                    counts.rows,
                    counts.personalised + counts.generic + counts.excluded_total()
                );
            }
            assert!(needing > 0, "one segment needs personalisation consent");
            assert!(reused > 0, "a segment on loaded columns reuses the base");
        }
    }

    /// Every third recipient-to-be suppressed, sent, or recently reached.
    fn some_facts(p: &Prepared) -> Facts {
        let keys = Keys::from_master(&[5; 32]);
        let mut f = Facts::default();
        for row in 0..p.audience.len() {
            let h = keys.recipient_hash(p.audience.email(row));
            match row % 7 {
                1 => f.suppressed.insert(h),
                2 => f.already.insert(h),
                3 | 4 => f.recent.insert(h),
                _ => false,
            };
        }
        f
    }

    #[test]
    fn the_split_plan_matches_the_sequential_one_on_the_sample_data() {
        for (campaign, segments) in [
            (
                "sample-data/campaigns/winter-sale.toml",
                &[
                    Some(r#"country == "GB""#),
                    Some(r#"country == "GB" and loyalty_tier == "gold""#),
                    Some("total_spent > 100"),
                    Some(r#"order_count >= 3 or last_order_at < "2026-01-01""#),
                    None,
                ][..],
            ),
            (
                "sample-data/campaigns/birthday-treat.toml",
                &[None, Some("total_spent > 250"), Some(r#"language == "en""#)][..],
            ),
        ] {
            check_split(Path::new(campaign), segments, some_facts);
        }
    }

    #[test]
    fn the_split_plan_matches_the_sequential_one_on_a_generated_audience() {
        // A deterministic, messy audience: invalid and repeated addresses (in other
        // cases), consent in many spellings, stale / future / empty consent times,
        // numbers that are not numbers, empty values, ragged rows.
        let mut csv = String::from(
            "email,consent_marketing,consent_personalisation,consent_at,first_name,total_spent,country\n",
        );
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let words = ["yes", "Yes", "y", "true", "1", "no", "", "maybe", "granted"];
        let times = [
            "2026-11-01",
            "2026-03-12T10:15:00Z",
            "2020-01-01",
            "2027-06-01",
            "",
            "soon",
            "2025-02-01",
        ];
        let spent = [
            "50", "5", "250.5", "", "0", "-3", "12", "99", "7.25", "300", "11", "lots",
        ];
        let countries = ["GB", "DE", "FR", "", "gb"];
        for i in 0..6000 {
            let id = next(4500);
            let email = match next(40) {
                0 => "not-an-address".to_string(),
                1 => format!("P{id}@X.example"),
                2 => format!(" p{id}@x.example "),
                _ => format!("p{id}@x.example"),
            };
            if next(300) == 0 {
                csv.push_str(&format!("{email},yes\n"));
                continue;
            }
            // Rarely not a number, so the column is still typed as one.
            let n_spent = if next(10) == 0 { 12 } else { 11 };
            let n_spent = next(n_spent);
            csv.push_str(&format!(
                "{email},{},{},{},Name{i},{},{}\n",
                words[next(words.len() as u64) as usize],
                words[next(words.len() as u64) as usize],
                times[next(times.len() as u64) as usize],
                spent[n_spent as usize],
                countries[next(countries.len() as u64) as usize],
            ));
        }
        let (dir, p) = prepared_csv(&csv, r#"country == "GB""#);
        assert!(p.audience.len() > 5000 && !p.audience.malformed.is_empty());
        check_split(
            &dir.path().join("t.toml"),
            &[
                Some(r#"country == "GB""#),
                Some("total_spent > 10"),
                Some(r#"total_spent > 10 and country != "DE""#),
                Some(r#"country != "FR" or first_name == "Name7""#),
                None,
            ],
            some_facts,
        );
        // The audience is messy enough to reach every reason the plan decides.
        let keys = Keys::from_master(&[5; 32]);
        let q = p.with_segment(Some("total_spent > 10"), now()).unwrap();
        let c = q.plan(&keys, &some_facts(&q), now()).counts();
        for r in &Reason::ALL[..11] {
            assert!(c.excluded(*r) > 0, "no row is {}: {c:?}", r.key());
        }
        assert!(c.personalised > 0 && c.generic == 0);
    }

    #[test]
    fn header_safety() {
        for c in [
            '\r', '\n', '\u{0}', '\u{85}', '\u{2028}', '\u{202E}', '\u{2067}',
        ] {
            assert!(unsafe_in_header(c), "{c:?}");
        }
        // Emoji sequences use the zero-width joiner; accents and CJK are fine.
        for c in ['\u{200D}', 'é', '李', '❄'] {
            assert!(!unsafe_in_header(c), "{c:?}");
        }
    }

    #[test]
    fn token_joins_the_url_correctly() {
        assert_eq!(
            unsubscribe_url("https://x.example/u", "T"),
            "https://x.example/u?t=T"
        );
        assert_eq!(
            unsubscribe_url("https://x.example/u?list=a", "T"),
            "https://x.example/u?list=a&t=T"
        );
        assert_eq!(
            unsubscribe_url("https://x.example/u?", "T"),
            "https://x.example/u?t=T"
        );
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(b"a@x.example".to_vec()),
                Just(b" A@X.example ".to_vec()),
                Just(b"b@x.example".to_vec()),
                Just(b"c@x.example".to_vec()),
                Just(b"not-an-address".to_vec()),
                Just(b"yes".to_vec()),
                Just(b"no".to_vec()),
                Just(b"".to_vec()),
                Just(b"2026-11-01".to_vec()),
                Just(b"2019-01-01".to_vec()),
                Just(b"50".to_vec()),
                Just(b"GB".to_vec()),
                Just(b"lots".to_vec()),
                Just(b"\"q,\"\"x\"\"\r\ny\"".to_vec()),
                Just(b"\"open".to_vec()),
                Just(vec![0xff, 0xfe]),
                Just(b"A\r\nBcc: z@x.example".to_vec()),
                Just(b"\"A\r\nBcc: z@x.example\"".to_vec()),
                Just(b"{{ first_name }}".to_vec()),
                proptest::collection::vec(any::<u8>(), 1..5),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

            /// Whatever the rows hold (quotes, CR, CRLF, invalid UTF-8, header injections,
            /// duplicates, suppressed and already-sent people), every row of the file is
            /// counted exactly once: rows = personalised + generic + Σ excluded, after the
            /// render stage too.
            #[test]
            fn every_row_is_counted_once_through_the_plan(
                bom in any::<bool>(),
                crlf in any::<bool>(),
                rows in proptest::collection::vec(proptest::collection::vec(field(), 0..9), 0..25),
            ) {
                let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
                let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
                bytes.extend(b"email,consent_marketing,consent_personalisation,consent_at,first_name,total_spent,country");
                bytes.extend(eol);
                for r in &rows {
                    bytes.extend(r.join(&b","[..]));
                    bytes.extend(eol);
                }
                let (_d, p) = prepared_csv(&bytes, r#"country == "GB" or total_spent == "50""#);
                let keys = Keys::from_master(&[3; 32]);
                let facts = Facts {
                    suppressed: HashSet::from([keys.recipient_hash("a@x.example")]),
                    already: HashSet::from([keys.recipient_hash("b@x.example")]),
                    recent: HashSet::new(),
                    ..Facts::default()
                };
                let (plan, report) = crate::check::run(&p, &keys, &facts, now());
                let c = &report.audience;
                prop_assert_eq!(c.rows, p.audience.rows());
                prop_assert_eq!(c.rows, c.personalised + c.generic + c.excluded_total());
                prop_assert_eq!(plan.recipients().count(), c.personalised + c.generic);
            }
        }
    }
}
