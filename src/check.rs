//! The creepiness check: rules over the fields a campaign touches and what its renders
//! contain → findings → verdict (DESIGN §4).
//!
//! The rules are pure functions of the prepared campaign, the plan's counts and the render
//! stage's observations; `run` does the rendering (both cores) and then applies them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use rayon::prelude::*;
use serde::Serialize;

use crate::audience::TOOL_VARIABLES;
use crate::campaign::Acknowledgement;
use crate::plan::{Counts, Decision, Facts, Outcome, Plan, Prepared, Reason};
use crate::schema::{FieldClass, FieldType};
use crate::state::Keys;
use crate::template::{Place, ToolVars};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Notice,
    Caution,
    Block,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Notice => "notice",
            Level::Caution => "caution",
            Level::Block => "block",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub level: Level,
    pub fields: Vec<String>,
    pub message: String,
    pub alternative: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub acknowledged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What this campaign's own recipients showed (DESIGN §8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
}

/// A finding's figures, measured over the recipients rather than cited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Measured {
    /// A combination of fields: how many recipients are alone with their values.
    Groups(crate::measure::Measured),
    /// Sensitive values: how many recipients see (or are selected by) one, per category.
    Values {
        recipients: usize,
        categories: BTreeMap<String, usize>,
        place: Place,
    },
}

impl Finding {
    fn new(
        rule: &'static str,
        level: Level,
        fields: Vec<String>,
        message: String,
        alternative: &str,
    ) -> Finding {
        Finding {
            rule,
            level,
            fields,
            message,
            alternative: alternative.to_string(),
            acknowledged: false,
            reason: None,
            measured: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldReport {
    pub name: String,
    pub class: FieldClass,
    pub level: u8,
    pub inferred: bool,
    /// Where the values came from, and the same in the recipient's words.
    pub origin: crate::schema::Origin,
    pub origin_words: &'static str,
    pub places: Vec<Place>,
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// How long ago its values were observed, over the personalised recipients, for a
    /// field with an `observed_at` column (None: no such column, nobody rendered yet, or
    /// no readable date).
    pub observed_days: Option<ObservedDays>,
}

impl FieldReport {
    /// Where the field came from, in the words its recipients read, and how old its values
    /// are where the schema says where to look ("from what you browsed, 3–140 days ago,
    /// median 41"): the check report and the composer's Check screen say the same.
    pub fn source_words(&self) -> String {
        match &self.observed_days {
            Some(d) => format!("{}, {}", self.origin_words, d.words()),
            None => self.origin_words.to_string(),
        }
    }
}

/// The age of a field's values in whole days: youngest, median (the lower one of an even
/// count) and oldest. A date in the future counts as today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ObservedDays {
    pub min: u32,
    pub median: u32,
    pub max: u32,
}

/// Recipients per age in days: a histogram instead of a value per row, so a million
/// recipients cost one entry per distinct day.
pub type DayCounts = BTreeMap<u32, u64>;

impl ObservedDays {
    /// The summary of a histogram; None when it is empty.
    pub fn of(counts: &DayCounts) -> Option<ObservedDays> {
        let total: u64 = counts.values().sum();
        let (&min, &max) = (counts.keys().next()?, counts.keys().next_back()?);
        let middle = (total - 1) / 2;
        let mut seen = 0;
        let median = counts
            .iter()
            .find(|(_, n)| {
                seen += **n;
                seen > middle
            })
            .map_or(max, |(d, _)| *d);
        Some(ObservedDays { min, median, max })
    }

    /// "3–140 days ago, median 41", or one age in the recipient's words when all agree.
    pub fn words(&self) -> String {
        if self.min == self.max {
            return crate::why::age_words(self.min);
        }
        format!("{}–{} days ago, median {}", self.min, self.max, self.median)
    }
}

/// A row the render stage excluded, by line.
#[derive(Debug, Clone, Serialize)]
pub struct RowProblem {
    pub line: u64,
    pub reason: &'static str,
    pub detail: String,
}

/// What rendering every recipient showed.
#[derive(Debug, Clone, Default)]
pub struct RenderStats {
    pub problems: Vec<RowProblem>,
    pub unsubscribe_missing_text: usize,
    pub unsubscribe_missing_html: usize,
    pub postal_missing_text: usize,
    /// Per field, recipients who would be shown a value observed over 90 days ago.
    pub stale: Vec<(String, usize)>,
    /// Per field with an `observed_at` column, the age of its values over the
    /// personalised recipients.
    pub observed: BTreeMap<String, ObservedDays>,
    /// Fields whose canary the self-check saw printed unescaped in the HTML part.
    pub canary_unescaped: BTreeSet<String>,
    /// Fields whose canary began a link's address (href, src, action …) in the HTML part.
    pub canary_links: BTreeSet<String>,
    /// The rows personalised after rendering (None: nobody was rendered, nothing measured).
    pub personalised: Option<Vec<u32>>,
    /// Sensitive values each place showed (or the segment selected on).
    pub sensitive: Vec<(Place, crate::sensitive::Seen)>,
    /// Categories of the terms the segment's quoted texts hold.
    pub segment_terms: crate::lexicon::Mask,
}

/// A difference between the minimised and the full-row render: the walker missed a field.
#[derive(Debug, Clone, Serialize)]
pub struct SelfCheckMiss {
    pub line: u64,
    pub variant: &'static str,
    pub part: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub campaign: String,
    pub verdict: Level,
    pub findings: Vec<Finding>,
    pub fields: Vec<FieldReport>,
    pub audience: Counts,
    pub self_check: Vec<SelfCheckMiss>,
    #[serde(skip)]
    pub problems: Vec<RowProblem>,
    /// Every recipient was rendered: false for a `preliminary` report, whose verdict is
    /// not final and which nothing may be sent on.
    #[serde(skip)]
    pub rendered: bool,
}

impl Report {
    /// The contract's exit code for this verdict (DESIGN §5).
    pub fn exit_code(&self) -> i32 {
        if !self.self_check.is_empty() {
            return 1;
        }
        match self.verdict {
            Level::Block => 4,
            Level::Caution
                if self
                    .findings
                    .iter()
                    .any(|f| f.level == Level::Caution && !f.acknowledged) =>
            {
                3
            }
            _ => 0,
        }
    }

    /// Whether anything may be sent from this campaign: only on the full check.
    pub fn sendable(&self) -> bool {
        self.rendered && self.exit_code() == 0
    }

    /// What the verdict means for the campaign, in the reports' words.
    pub fn verdict_note(&self) -> &'static str {
        let unacked = self
            .findings
            .iter()
            .any(|f| f.level == Level::Caution && !f.acknowledged);
        match self.verdict {
            Level::Caution if !unacked => "acknowledged: may be sent",
            Level::Caution => "acknowledge or fix before sending",
            Level::Block => "nothing can be sent",
            Level::Ok | Level::Notice => "may be sent",
        }
    }
}

/// Renders every planned recipient, moves the ones whose render fails to their reason, and
/// returns what the rules need to know about the renders.
pub fn render_all(p: &Prepared, keys: &Keys, plan: &mut Plan, now: DateTime<Utc>) -> RenderStats {
    render_all_unless(p, keys, plan, now, &|| false).unwrap_or_default()
}

/// `render_all` that gives up as soon as `cancelled` says so (the composer's segment
/// changed again, so this render is of a plan nobody will look at): None, and the plan is
/// left as it was. Checked before each recipient, so it stops within one render per core.
pub fn render_all_unless(
    p: &Prepared,
    keys: &Keys,
    plan: &mut Plan,
    now: DateTime<Utc>,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Option<RenderStats> {
    // Every used field with an `observed_at` column is aged; the behavioural ones a message
    // shows are also judged stale. One parse of the date serves both.
    let observed_fields: Vec<(&str, usize, bool)> = p
        .fields
        .iter()
        .filter_map(|f| {
            let col = f
                .observed_at
                .as_deref()
                .and_then(|o| p.audience.column_index(o))?;
            let shown = f.class.base == FieldClass::Behavioural
                && f.places.iter().any(|pl| *pl != Place::Segment);
            Some((f.name.as_str(), col, shown))
        })
        .collect();
    let cutoff = now - TimeDelta::days(90);
    // Folded per thread, never collected per row: on a million recipients a result per
    // row would cost more memory than the audience itself.
    #[derive(Default)]
    struct Acc {
        problems: Vec<(usize, Reason, String)>,
        unsub_text: usize,
        unsub_html: usize,
        postal: usize,
        stale: Vec<usize>,
        ages: Vec<DayCounts>,
        subject: crate::sensitive::Seen,
        body: crate::sensitive::Seen,
    }
    let n_observed = observed_fields.len();
    let fresh = || Acc {
        stale: vec![0; n_observed],
        ages: vec![DayCounts::new(); n_observed],
        ..Default::default()
    };
    let lexicon = &*p.schema.lexicon;
    let scanned = crate::sensitive::scan(p);
    let stand_ins = crate::sensitive::StandIns::new(lexicon);
    // Every link starts with the campaign's unsubscribe URL, and the postal address is the
    // same for everyone: both searches are built once, not once per recipient.
    let base = unsubscribe_base(&p.campaign.unsubscribe_url);
    let link_text = Prefixed::new(&base);
    let link_html = Prefixed::new(&html_escape_url(&base));
    let postal = memchr::memmem::Finder::new(p.campaign.postal_address.as_bytes());
    let acc = plan
        .decisions
        .par_iter()
        .enumerate()
        .fold(fresh, |mut acc, (i, d): (usize, &Decision)| {
            let personalised = match d.outcome {
                Outcome::Personalised if !cancelled() => true,
                Outcome::Generic if !cancelled() => false,
                _ => return acc,
            };
            let row = d.row as usize;
            match p.letter(keys, row, personalised) {
                Err(e) => acc.problems.push((i, e.reason, e.detail)),
                Ok(l) => {
                    let url = &l.unsubscribe_url;
                    acc.unsub_text += usize::from(!link_text.contains(&l.rendered.text, url));
                    // The token part of a link has none of the characters an HTML part
                    // escapes, so the escaped link is the escaped base and the rest as is.
                    let escaped_in = |h: &str| match url.strip_prefix(base.as_str()) {
                        Some(rest) if !rest.bytes().any(crate::template::escaped) => {
                            link_html.followed_by(h, rest.as_bytes())
                        }
                        _ => link_html.contains(h, &html_escape_url(url)),
                    };
                    let html_ok = l
                        .rendered
                        .html
                        .as_ref()
                        .is_none_or(|h| escaped_in(h) || link_text.contains(h, url));
                    acc.unsub_html += usize::from(!html_ok);
                    let postal_ok = p.campaign.postal_address.is_empty()
                        || postal.find(l.rendered.text.as_bytes()).is_some();
                    acc.postal += usize::from(!postal_ok);
                    for (k, (_, col, shown)) in observed_fields.iter().enumerate() {
                        if !personalised {
                            continue;
                        }
                        let at = crate::consent::parse_time(p.audience.columns[*col].data.get(row));
                        acc.stale[k] += usize::from(*shown && at.is_none_or(|t| t < cutoff));
                        if let Some(t) = at {
                            *acc.ages[k]
                                .entry(crate::why::days_between(t, now))
                                .or_default() += 1;
                        }
                    }
                    if personalised && !scanned.is_empty() {
                        crate::sensitive::observe(
                            lexicon,
                            p,
                            keys,
                            &scanned,
                            &stand_ins,
                            row,
                            &l.rendered,
                            &mut acc.subject,
                            &mut acc.body,
                        );
                    }
                }
            }
            acc
        })
        .reduce(fresh, |mut a, b| {
            a.problems.extend(b.problems);
            a.unsub_text += b.unsub_text;
            a.unsub_html += b.unsub_html;
            a.postal += b.postal;
            for (x, y) in a.stale.iter_mut().zip(b.stale) {
                *x += y;
            }
            for (x, y) in a.ages.iter_mut().zip(b.ages) {
                for (d, n) in y {
                    *x.entry(d).or_default() += n;
                }
            }
            a.subject.merge(b.subject);
            a.body.merge(b.body);
            a
        });
    if cancelled() {
        return None;
    }
    let mut problems = acc.problems;
    problems.sort_by_key(|(i, _, _)| *i);
    let mut stats = RenderStats {
        stale: observed_fields
            .iter()
            .zip(acc.stale)
            .filter(|((_, _, shown), _)| *shown)
            .map(|((n, _, _), c)| (n.to_string(), c))
            .collect(),
        observed: observed_fields
            .iter()
            .zip(&acc.ages)
            .filter_map(|((n, _, _), ages)| Some((n.to_string(), ObservedDays::of(ages)?)))
            .collect(),
        unsubscribe_missing_text: acc.unsub_text,
        unsubscribe_missing_html: acc.unsub_html,
        postal_missing_text: acc.postal,
        ..Default::default()
    };
    for (i, reason, detail) in problems {
        let d = &mut plan.decisions[i];
        stats.problems.push(RowProblem {
            line: p.audience.line(d.row as usize),
            reason: reason.key(),
            detail,
        });
        d.outcome = Outcome::Excluded(reason);
    }
    stats.personalised = Some(
        plan.decisions
            .iter()
            .filter(|d| d.outcome == Outcome::Personalised)
            .map(|d| d.row)
            .collect(),
    );
    if let Some(seg) = &p.segment {
        stats.segment_terms = crate::sensitive::segment_terms(lexicon, &seg.source);
        let selected = plan
            .decisions
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Personalised | Outcome::Generic))
            .map(|d| d.row as usize);
        let seen = crate::sensitive::selected(lexicon, &scanned, selected);
        if seen.recipients > 0 || stats.segment_terms != 0 {
            stats.sensitive.push((Place::Segment, seen));
        }
    }
    for (place, seen) in [(Place::Subject, acc.subject), (Place::Body, acc.body)] {
        if seen.recipients > 0 {
            stats.sensitive.push((place, seen));
        }
    }
    Some(stats)
}

/// What `preview` needs to know before it writes a file: the canaries, and, when a used
/// field holds a sensitive value at all, where the renders would show it (a rendering of
/// everyone on a copy of the plan: the price of a campaign that could block for it).
pub fn preview_stats(p: &Prepared, keys: &Keys, plan: &Plan, now: DateTime<Utc>) -> RenderStats {
    let canaries = canary_check(p, keys);
    let (canary_unescaped, canary_links) = (canaries.unescaped, canaries.links);
    let mut stats = if crate::sensitive::scan(p).is_empty() {
        RenderStats::default()
    } else {
        render_all(p, keys, &mut plan.clone(), now)
    };
    // Measurements are for the check report; a preview only needs the blocks.
    stats.personalised = None;
    stats.canary_unescaped = canary_unescaped;
    stats.canary_links = canary_links;
    stats
}

/// The part of every recipient's unsubscribe link that comes before their token.
fn unsubscribe_base(campaign_url: &str) -> String {
    let url = crate::plan::unsubscribe_url(campaign_url, "");
    url.strip_suffix("t=").map_or(url.clone(), str::to_string)
}

/// `haystack.contains(needle)` for needles that mostly start with one prefix: the search
/// for the prefix is built once, and each place it occurs is compared with the needle.
/// A needle without the prefix is searched for as it is.
struct Prefixed {
    prefix: Vec<u8>,
    finder: memchr::memmem::Finder<'static>,
}

impl Prefixed {
    fn new(prefix: &str) -> Prefixed {
        Prefixed {
            prefix: prefix.as_bytes().to_vec(),
            finder: memchr::memmem::Finder::new(prefix.as_bytes()).into_owned(),
        }
    }

    fn contains(&self, haystack: &str, needle: &str) -> bool {
        match needle.as_bytes().strip_prefix(self.prefix.as_slice()) {
            Some(rest) => self.followed_by(haystack, rest),
            None => memchr::memmem::find(haystack.as_bytes(), needle.as_bytes()).is_some(),
        }
    }

    /// Whether the prefix followed by `rest` is in `haystack`.
    fn followed_by(&self, haystack: &str, rest: &[u8]) -> bool {
        let h = haystack.as_bytes();
        // Every occurrence, overlapping ones too (`find_iter` skips those).
        let mut from = 0;
        while let Some(at) = h.get(from..).and_then(|tail| self.finder.find(tail)) {
            if h[from + at + self.prefix.len()..].starts_with(rest) {
                return true;
            }
            from += at + 1;
        }
        false
    }
}

/// Tera escapes `/` and `&` in HTML; the URL in an autoescaped part reads that way. Written
/// with `| safe` it is there as is, which a browser follows just the same: either counts.
fn html_escape_url(url: &str) -> String {
    crate::template::escape_html(url)
}

/// DESIGN §4 self-check: render sample rows from only the extracted fields and from the
/// whole row; any difference means the walker missed a field.
pub fn self_check(p: &Prepared, keys: &Keys) -> Vec<SelfCheckMiss> {
    let header = &p.audience.header;
    let used: BTreeSet<&str> = p.usage.fields.keys().map(String::as_str).collect();
    let mut misses = Vec::new();
    for (i, full) in p.audience.full_sample.iter().enumerate() {
        let all: Vec<(&str, &str)> = header
            .names
            .iter()
            .zip(full)
            .filter(|(n, _)| !TOOL_VARIABLES.contains(&n.as_str()))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let minimal: Vec<(&str, &str)> = all
            .iter()
            .copied()
            .filter(|(n, _)| used.contains(n))
            .collect();
        for personalised in [true, false] {
            let (vars, _): (ToolVars, _) = p.tool_vars(keys, i, personalised);
            let a = p.templates.render(&vars, &minimal);
            let b = p.templates.render(&vars, &all);
            let part = match (&a, &b) {
                (Ok(a), Ok(b)) => {
                    if a.subject != b.subject || a.preheader != b.preheader {
                        Some("subject")
                    } else if a.text != b.text {
                        Some("text")
                    } else if a.html != b.html {
                        Some("html")
                    } else {
                        None
                    }
                }
                (Err(_), Err(_)) => None,
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => Some(e.part),
            };
            if let Some(part) = part {
                misses.push(SelfCheckMiss {
                    line: p.audience.line(i),
                    variant: if personalised {
                        "personalised"
                    } else {
                        "generic"
                    },
                    part,
                });
            }
        }
        if misses.len() >= 5 {
            break;
        }
    }
    misses
}

/// How many sample rows the canary renders use. The canaries replace every customer value,
/// so rows differ only in what decides branches (the per-field renders keep the rest of the
/// row real); three is enough to take the common branches and keeps it to a few dozen
/// renders per check, whatever the audience's size.
const CANARY_ROWS: usize = 3;

/// A value that shows where it went: markup that autoescaping must turn into text, and a
/// line break that must never reach a header. Distinct per field (`n`), and the break sits
/// inside the value so `| trim` cannot drop it.
pub fn canary(n: usize) -> String {
    format!("<i data-tact-canary=\"{n}\">\n</i>")
}

/// A canary for a typed field that typed filters still accept (`date`, `round`, `int`):
/// used when markup in that field makes the render fail. It carries no markup, so it marks
/// only the route; a number, date or boolean cannot carry markup either, so nothing is lost
/// on the HTML side, and the walker still judges the field statically.
fn typed_canary(ty: FieldType, n: usize) -> Option<String> {
    match ty {
        FieldType::Number => Some(format!("{}", 7000 + n)),
        FieldType::Date => Some(format!("2001-{:02}-{:02}", 1 + n % 12, 1 + n % 28)),
        FieldType::Bool => Some("true".into()),
        FieldType::Text => None,
    }
}

/// The attribute every canary carries, lowercased.
const CANARY_MARK: &str = "data-tact-canary=";

/// Each canary attribute in `lower` (lowercased HTML): where it starts, and its number,
/// read past a raw or escaped quote (a raw tag with an escaped quote still opens an
/// element).
fn canary_marks(lower: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    lower
        .match_indices(CANARY_MARK)
        .filter_map(move |(start, _)| {
            let after = &lower[start + CANARY_MARK.len()..];
            let unquoted = ["\"", "'", "&quot;", "&#x27;", "&#34;", "&#39;"]
                .iter()
                .find_map(|q| after.strip_prefix(q))
                .unwrap_or(after);
            let digits: String = unquoted.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok().map(|n| (start, n))
        })
}

/// The canary numbers printed unescaped in `html`: a raw `<i data-tact-canary` or a raw
/// quote after the attribute name. Autoescaped, it reads `&lt;i data-tact-canary=&quot;N`;
/// case is ignored, so `| upper | safe` is still found.
pub fn unescaped_canaries(html: &str) -> BTreeSet<usize> {
    let lower = html.to_ascii_lowercase();
    canary_marks(&lower)
        .filter(|(start, _)| {
            let raw_tag = lower[..*start].ends_with("<i ");
            let escaped_value = lower[start + CANARY_MARK.len()..].starts_with('&');
            raw_tag || !escaped_value || in_tag_markup(&lower, *start)
        })
        .map(|(_, n)| n)
        .collect()
}

/// Whether an escaped canary at `at` (in the lowercased HTML) is part of a tag's markup
/// rather than text or a quoted attribute value: after `<` (`<{{ v }}>`, the value names
/// the element), or inside a tag outside quotes (`<a href={{ v }}>`, `<td {{ v }}>`).
/// Escaping `<>&"'` keeps a value text only in text and quoted values; in a tag, a space
/// in the value starts a new attribute (`x onmouseover=… style=…`), escaped or not.
fn in_tag_markup(lower: &str, at: usize) -> bool {
    const ESCAPED_OPEN: &str = "&lt;i ";
    let value_start = at.saturating_sub(ESCAPED_OPEN.len());
    if lower[..at].ends_with(ESCAPED_OPEN)
        && (lower[..value_start].ends_with('<') || lower[..value_start].ends_with("</"))
    {
        return true;
    }
    #[derive(PartialEq)]
    enum St {
        Text,
        Tag,
        Quoted(u8),
    }
    let b = &lower.as_bytes()[..at.min(lower.len())];
    let (mut st, mut i, mut after_eq) = (St::Text, 0, false);
    let mut tag_start = 0;
    while i < b.len() {
        let c = b[i];
        match st {
            St::Text if c == b'<' => {
                let rest = &lower[i..at];
                if let Some(comment) = rest.strip_prefix("<!--") {
                    match comment.find("-->") {
                        Some(e) => i += 4 + e + 3,
                        None => return false,
                    }
                    continue;
                }
                let name = i + 1 + usize::from(b.get(i + 1) == Some(&b'/'));
                if b.get(name).is_some_and(u8::is_ascii_alphabetic) {
                    (st, after_eq, tag_start) = (St::Tag, false, name);
                    i = name;
                    continue;
                }
                if matches!(b.get(i + 1), Some(b'!' | b'?')) {
                    match rest.find('>') {
                        Some(e) => i += e + 1,
                        None => return false,
                    }
                    continue;
                }
            }
            St::Text => {}
            St::Tag => match c {
                b'>' => {
                    st = St::Text;
                    // Raw text: an escaped value in a script or style body is not markup.
                    let name: String = lower[tag_start..i]
                        .chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .collect();
                    let raw_text = ["script", "style", "textarea", "title", "xmp"];
                    if b[tag_start - 1] != b'/' && raw_text.contains(&name.as_str()) {
                        match lower[i..at].find(&format!("</{name}")) {
                            Some(e) => i += e,
                            None => return false,
                        }
                        continue;
                    }
                }
                b'"' | b'\'' if after_eq => st = St::Quoted(c),
                b'=' => after_eq = true,
                c if c.is_ascii_whitespace() => {}
                _ => after_eq = false,
            },
            St::Quoted(q) => {
                if c == q {
                    (st, after_eq) = (St::Tag, false);
                }
            }
        }
        i += 1;
    }
    // A tag a raw canary opened is that canary's finding, not this one's.
    st == St::Tag && !lower[tag_start..].starts_with("i data-tact-canary=")
}

/// What the canary renders showed.
#[derive(Debug, Clone, Default)]
pub struct CanaryResult {
    /// Fields whose canary reached the HTML part unescaped.
    pub unescaped: BTreeSet<String>,
    /// Fields whose canary began the address of a link or an embedded resource.
    pub links: BTreeSet<String>,
    /// A canary's line break that got past the header guard into a built message: a bug in
    /// tact itself, reported like a walker miss.
    pub misses: Vec<SelfCheckMiss>,
}

/// DESIGN §8 output-based taint check: sample rows rendered with customer values replaced by
/// canaries, in both variants (the generic one with the values present, as if they leaked
/// into it), once with every value a canary and once per field with only that field one.
/// Whatever route a template finds, a canary printed raw in the HTML part names its field,
/// and one that reaches the subject with its line break must end as `bad_header_value`.
pub fn canary_check(p: &Prepared, keys: &Keys) -> CanaryResult {
    let header = &p.audience.header;
    let names: Vec<(usize, &str)> = header
        .names
        .iter()
        .enumerate()
        .filter(|(_, n)| !TOOL_VARIABLES.contains(&n.as_str()))
        .map(|(i, n)| (i, n.as_str()))
        .collect();
    // By name through a map: a header of 100,000 columns looked up one by one in the
    // column list took minutes.
    let types: std::collections::HashMap<&str, FieldType> = p
        .audience
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.ty))
        .collect();
    let typed: Vec<Option<String>> = names
        .iter()
        .map(|(i, n)| types.get(n).and_then(|ty| typed_canary(*ty, *i)))
        .collect();
    let marks: Vec<String> = names.iter().map(|(i, _)| canary(*i)).collect();
    let mut out = CanaryResult::default();
    for (row, full) in p.audience.full_sample.iter().take(CANARY_ROWS).enumerate() {
        // None: every field a canary; Some(k): only field k, the rest of the row real. Only
        // fields the walker found get a render of their own: a field it missed can only
        // show in the first, and is then a miss of the other self-check as well.
        let used = names
            .iter()
            .enumerate()
            .filter(|(_, (_, n))| p.usage.fields.contains_key(*n))
            .map(|(k, _)| Some(k));
        let only = std::iter::once(None).chain(used);
        for only in only {
            for personalised in [true, false] {
                let values = |typed_ok: bool| -> Vec<(&str, &str)> {
                    names
                        .iter()
                        .enumerate()
                        .map(|(k, (i, n))| {
                            let v = if only.is_none_or(|o| o == k) {
                                match (&typed[k], typed_ok) {
                                    (Some(t), true) => t.as_str(),
                                    _ => marks[k].as_str(),
                                }
                            } else {
                                full.get(*i).map_or("", String::as_str)
                            };
                            (*n, v)
                        })
                        .collect()
                };
                let (vars, hash) = p.tool_vars(keys, row, personalised);
                let markup = values(false);
                let html_vars = vars.clone();
                let letter = match p.letter_with(row, personalised, vars.clone(), hash, &markup) {
                    Err(e) if e.reason == Reason::RenderError => {
                        // Markup in a typed field broke a typed filter: not a finding.
                        p.letter_with(row, personalised, vars, hash, &values(true))
                    }
                    other => other,
                };
                if matches!(&letter, Err(e) if e.reason == Reason::BadHeaderValue) {
                    // The guard stopped the subject, not the HTML: a field the subject also
                    // uses (a greeting) is still looked for in the HTML part.
                    let rendered = p
                        .templates
                        .render(&html_vars, &markup)
                        .or_else(|_| p.templates.render(&html_vars, &values(true)));
                    if let Ok(r) = rendered {
                        note_html(&names, r.html.as_deref(), &mut out);
                    }
                }
                observe(p, &names, &marks, row, personalised, letter, &mut out);
            }
        }
    }
    out
}

/// Names the fields whose canary `html` shows unescaped, or at the start of a link.
fn note_html(names: &[(usize, &str)], html: Option<&str>, out: &mut CanaryResult) {
    let name = |n: usize| {
        names
            .iter()
            .find(|(i, _)| *i == n)
            .map(|(_, name)| (*name).to_string())
    };
    let Some(html) = html else { return };
    out.unescaped
        .extend(unescaped_canaries(html).into_iter().filter_map(name));
    out.links
        .extend(canaries_starting_links(html).into_iter().filter_map(name));
}

/// Attributes whose value is an address the reader's mail program follows or fetches.
const URL_ATTRIBUTES: [&str; 11] = [
    "href",
    "src",
    "action",
    "formaction",
    "background",
    "poster",
    "cite",
    "srcset",
    "xlink:href",
    "longdesc",
    "lowsrc",
];

/// The canary numbers that begin the value of a URL attribute in `html`
/// (`href="{{ v }}"`, `src = ' {{ v }}/x.png'`): there the value decides the scheme and the
/// host, so where the link goes. A canary after our own `https://shop/…` does not count.
pub fn canaries_starting_links(html: &str) -> BTreeSet<usize> {
    let lower = html.to_ascii_lowercase();
    canary_marks(&lower)
        .filter(|(start, _)| starts_a_link(&lower[..*start]))
        .map(|(_, n)| n)
        .collect()
}

/// Whether the text before a canary ends with a URL attribute's `=` and opening quote, so
/// the canary is the first thing in the address.
fn starts_a_link(before: &str) -> bool {
    let Some(before) = before
        .strip_suffix("&lt;i ")
        .or_else(|| before.strip_suffix("<i "))
    else {
        return false;
    };
    // Browsers drop leading white space from an address, so it decides nothing.
    let before = before.trim_end();
    let before = before
        .strip_suffix('"')
        .or_else(|| before.strip_suffix('\''))
        .unwrap_or(before)
        .trim_end();
    let Some(before) = before.strip_suffix('=') else {
        return false;
    };
    let before = before.trim_end();
    let name_len = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'))
        .count();
    let (rest, attr) = before.split_at(before.len() - name_len);
    rest.ends_with(|c: char| c.is_ascii_whitespace()) && URL_ATTRIBUTES.contains(&attr)
}

/// `field-decides-link`: a customer field begins a link's address. A caution (a shop's own
/// per-customer links are legitimate, and acknowledged once); a block when some
/// recipient's value is not a web address at all, since `javascript:`, `data:` or a
/// scheme-less `//host` link is an attack on the reader, not a link.
fn field_decides_link(p: &Prepared, stats: &RenderStats) -> Option<Finding> {
    if stats.canary_links.is_empty() {
        return None;
    }
    let fields: Vec<String> = stats.canary_links.iter().cloned().collect();
    let is_web = |v: &str| {
        let v = v.trim_start().to_ascii_lowercase();
        v.is_empty()
            || ["https://", "http://", "mailto:"]
                .iter()
                .any(|s| v.starts_with(s))
    };
    let columns: Vec<_> = fields.iter().filter_map(|f| p.audience.column(f)).collect();
    let rows = stats.personalised.as_deref().unwrap_or_default();
    let bad: Vec<usize> = rows
        .iter()
        .map(|r| *r as usize)
        .filter(|r| columns.iter().any(|c| !is_web(c.data.get(*r))))
        .collect();
    let alternative = format!(
        "Start the link with your own address and put the field after it, encoded: href=\"https://shop.example/p/{{{{ {} | urlencode }}}}\"; or acknowledge it when every address in the file is yours.",
        fields.first().map_or("FIELD", String::as_str)
    );
    let decides = format!(
        "{} begins a link's address in the HTML part (href, src or action), so the audience file decides where readers go, and a changed or hostile file sends them anywhere",
        list(&fields)
    );
    Some(if bad.is_empty() {
        Finding::new(
            "field-decides-link",
            Level::Caution,
            fields,
            decides,
            &alternative,
        )
    } else {
        let eg: Vec<String> = bad
            .iter()
            .take(crate::sensitive::EXAMPLES)
            .map(|r| format!("line {}", p.audience.line(*r)))
            .collect();
        Finding::new(
            "field-decides-link",
            Level::Block,
            fields,
            format!(
                "{} recipient(s) would get a link that is not a web address (`javascript:`, `data:`, a scheme-less `//host` or another scheme), e.g. {}; {decides}",
                bad.len(),
                eg.join(", ")
            ),
            &alternative,
        )
    })
}

fn observe(
    p: &Prepared,
    names: &[(usize, &str)],
    marks: &[String],
    row: usize,
    personalised: bool,
    letter: std::result::Result<crate::plan::Letter, crate::plan::Excluded>,
    out: &mut CanaryResult,
) {
    let variant = if personalised {
        "personalised"
    } else {
        "generic"
    };
    let letter = match letter {
        // The guard's job: a canary's line break in the subject must stop here.
        Err(_) => return,
        Ok(l) => l,
    };
    note_html(names, letter.rendered.html.as_deref(), out);
    // Past the guard: the message as it would be sent must carry no canary line break in
    // its headers (a canary's break would start a header line with `</i>`).
    let subject = &letter.rendered.subject;
    if !subject.to_ascii_lowercase().contains("tact-canary") {
        return;
    }
    let leaked_subject = marks.iter().any(|m| subject.contains(m.as_str()));
    let leaked_header = crate::message::build(
        &p.campaign,
        &letter,
        "canary@example.invalid",
        std::time::SystemTime::UNIX_EPOCH,
        "",
    )
    .map(|m| {
        let raw = m.formatted();
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..end]);
        head.lines().any(|l| l.starts_with("</i>"))
    })
    .unwrap_or(false);
    if leaked_subject || leaked_header {
        out.misses.push(SelfCheckMiss {
            line: p.audience.line(row),
            variant,
            part: "header",
        });
    }
}

/// Plans, renders everyone, applies every rule.
pub fn run(p: &Prepared, keys: &Keys, facts: &Facts, now: DateTime<Utc>) -> (Plan, Report) {
    let mut plan = p.plan(keys, facts, now);
    let report = finish(p, keys, &mut plan, now);
    (plan, report)
}

/// The check of a plan: renders everyone (moving render failures to their reason), then
/// applies every rule to the final counts.
pub fn finish(p: &Prepared, keys: &Keys, plan: &mut Plan, now: DateTime<Utc>) -> Report {
    let stats = render_all(p, keys, plan, now);
    with_self_checks(p, keys, plan.counts(), stats)
}

/// The report, after both self-checks: the walker against the render, and the canaries.
fn with_self_checks(p: &Prepared, keys: &Keys, counts: Counts, mut stats: RenderStats) -> Report {
    let canaries = canary_check(p, keys);
    stats.canary_unescaped = canaries.unescaped;
    stats.canary_links = canaries.links;
    let mut misses = self_check(p, keys);
    misses.extend(canaries.misses);
    report(p, counts, stats, misses)
}

/// `finish` that gives up when `cancelled` says so (see `render_all_unless`).
pub fn finish_unless(
    p: &Prepared,
    keys: &Keys,
    plan: &mut Plan,
    now: DateTime<Utc>,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Option<Report> {
    let stats = render_all_unless(p, keys, plan, now, cancelled)?;
    Some(with_self_checks(p, keys, plan.counts(), stats))
}

/// What is known before anyone is rendered: the plan's counts and the findings of the rules
/// that look only at the fields and the counts. The rules about renders (unsubscribe link,
/// postal address, stale behaviour) have not run, and render failures are still counted
/// as recipients, so this report is never `rendered` and never `sendable`: the composer
/// shows it at once and "checking…" for the verdict until `finish` replaces it.
pub fn preliminary(p: &Prepared, plan: &Plan) -> Report {
    let mut r = report(p, plan.counts(), RenderStats::default(), Vec::new());
    r.rendered = false;
    r
}

fn report(
    p: &Prepared,
    counts: Counts,
    stats: RenderStats,
    self_check: Vec<SelfCheckMiss>,
) -> Report {
    let mut findings = rules(p, &counts, &stats);
    acknowledge(&mut findings, &p.campaign.policy.acknowledge);
    let verdict = findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok);
    let fields = p
        .fields
        .iter()
        .map(|f| FieldReport {
            name: f.name.clone(),
            class: f.class.class(),
            level: f.class.class().level(),
            inferred: f.class.inferred,
            origin: f.origin,
            origin_words: f.origin.words(),
            places: f.places.iter().copied().collect(),
            ty: f.ty.as_str(),
            observed_days: stats.observed.get(&f.name).copied(),
        })
        .collect();
    Report {
        campaign: p.campaign.name.clone(),
        verdict,
        findings,
        fields,
        audience: counts,
        self_check,
        problems: stats.problems,
        rendered: true,
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> Vec<String> {
    it.map(str::to_string).collect()
}

fn list(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every rule of DESIGN §4, in the order of its table.
pub fn rules(p: &Prepared, counts: &Counts, stats: &RenderStats) -> Vec<Finding> {
    let mut out = Vec::new();
    let class_of = |f: &crate::plan::FieldInfo| f.class.class();
    let places = |f: &crate::plan::FieldInfo| {
        f.places
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };

    let special: Vec<_> = p
        .fields
        .iter()
        .filter(|f| class_of(f) == FieldClass::Special)
        .collect();
    if !special.is_empty() {
        let desc = special
            .iter()
            .map(|f| format!("`{}` ({})", f.name, places(f)))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Finding::new(
            "special-category",
            Level::Block,
            names(special.iter().map(|f| f.name.as_str())),
            format!("special-category data (GDPR Art. 9) is used: {desc}"),
            "Remove it. Health, religion, ethnicity, sexuality, politics and the like need explicit Art. 9 consent, which a marketing opt-in is not; send the same offer to everyone instead.",
        ));
    }
    out.extend(sensitive_values(p, stats));
    let (mt, mh) = (
        stats.unsubscribe_missing_text,
        stats.unsubscribe_missing_html,
    );
    if mt + mh > 0 {
        let parts = match (mt > 0, mh > 0) {
            (true, true) => "the text and HTML parts do",
            (true, false) => "the text part does",
            _ => "the HTML part does",
        };
        out.push(Finding::new(
            "missing-unsubscribe",
            Level::Block,
            Vec::new(),
            format!("{parts} not render `{{{{ unsubscribe_url }}}}` for {} recipient(s)", mt.max(mh)),
            "Put {{ unsubscribe_url }} in the footer of both parts, outside any {% if %}, as the sample base layout does.",
        ));
    }
    if p.campaign.postal_address.is_empty() || stats.postal_missing_text > 0 {
        let message = if p.campaign.postal_address.is_empty() {
            "the campaign has no `postal_address` (CAN-SPAM requires a valid physical postal address)".to_string()
        } else {
            format!(
                "the text part does not render `{{{{ postal_address }}}}` for {} recipient(s)",
                stats.postal_missing_text
            )
        };
        out.push(Finding::new(
            "missing-postal-address",
            Level::Block,
            Vec::new(),
            message,
            "Set postal_address in the campaign and render {{ postal_address }} in the text footer.",
        ));
    }
    if let Err(e) = p.generic_sample() {
        out.push(Finding::new(
            "generic-variant-fails",
            Level::Block,
            Vec::new(),
            format!("the generic variant does not render: {}", p.describe_failure(&e)),
            "Guard every customer field with {% if personalised %} … {% else %}generic copy{% endif %}.",
        ));
    }
    let unescaped: BTreeSet<&String> = p
        .usage
        .unescaped
        .iter()
        .chain(&stats.canary_unescaped)
        .collect();
    if !unescaped.is_empty() || p.usage.whole_context {
        let fields: Vec<String> = unescaped.iter().map(|f| (*f).clone()).collect();
        let seen: Vec<String> = stats
            .canary_unescaped
            .iter()
            .filter(|f| !p.usage.unescaped.contains(*f))
            .cloned()
            .collect();
        let message = if p.usage.whole_context {
            "`__tera_context` prints every field of the recipient".to_string()
        } else if seen.is_empty() {
            format!(
                "{} reach the HTML part unescaped (`| safe`, or a print Tera does not escape)",
                list(&fields)
            )
        } else {
            format!(
                "{} reach the HTML part unescaped: a canary value with markup was printed raw in the rendered HTML, or inside a tag where a space in the value adds attributes",
                list(&fields)
            )
        };
        out.push(Finding::new(
            "unescaped-field",
            Level::Block,
            fields,
            message,
            "Drop `| safe` from customer fields (and never print __tera_context); autoescaping keeps a name like <script> harmless.",
        ));
    }
    out.extend(field_decides_link(p, stats));
    let targeted = counts.targeted();
    let strong: Vec<_> = p
        .fields
        .iter()
        .filter(|f| class_of(f).level() >= 2)
        .collect();
    let all_fields = names(p.fields.iter().map(|f| f.name.as_str()));
    if targeted < 11 && !strong.is_empty() {
        out.push(Finding::new(
            "micro-segment",
            Level::Block,
            all_fields.clone(),
            format!(
                "only {targeted} recipient(s) are targeted using {}: one-to-one targeting (cells under 11 are suppressed in US CMS data rules)",
                list(&names(strong.iter().map(|f| f.name.as_str())))
            ),
            "Widen the segment to at least 11 people, or target with declared fields (country, language, stated preferences) only.",
        ));
    } else if targeted < p.campaign.policy.min_segment_size {
        out.push(Finding::new(
            "micro-segment",
            Level::Caution,
            all_fields.clone(),
            format!("only {targeted} recipient(s) are targeted, below min_segment_size = {}", p.campaign.policy.min_segment_size),
            "Widen the segment, or acknowledge it in [policy].acknowledge if a small audience is intended.",
        ));
    }
    let quasi: Vec<_> = p
        .fields
        .iter()
        .filter(|f| f.class.base == FieldClass::QuasiIdentifier)
        .collect();
    if quasi.len() >= 2 {
        let fields = names(quasi.iter().map(|f| f.name.as_str()));
        const CITED: &str = "postcode + birth date + sex make ~87% of people unique, Sweeney 2000";
        const COARSE: &str = "Use one coarse attribute: an age band instead of a birth date, a region instead of a postcode.";
        let mut f = match measure_fields(p, stats, &fields) {
            Some(m) => {
                let mut f = Finding::new(
                    "quasi-identifier-combination",
                    Level::Caution,
                    fields.clone(),
                    format!(
                        "{} are used together: {} (for context: {CITED})",
                        list(&fields),
                        m.sentence()
                    ),
                    COARSE,
                );
                let better = m.alternatives(3);
                if !better.is_empty() {
                    f.alternative = format!("{COARSE} Measured on these recipients: {better}.");
                }
                f.measured = Some(Measured::Groups(m));
                f
            }
            None => Finding::new(
                "quasi-identifier-combination",
                Level::Caution,
                fields.clone(),
                format!("{} are used together: {CITED}", list(&fields))
                    .replace(", Sweeney 2000", " (Sweeney 2000)"),
                COARSE,
            ),
        };
        f.fields = fields;
        out.push(f);
    }
    let high: Vec<_> = p
        .fields
        .iter()
        .filter(|f| f.class.base == FieldClass::HighRisk)
        .collect();
    if !high.is_empty() {
        out.push(Finding::new(
            "high-risk-field",
            Level::Caution,
            names(high.iter().map(|f| f.name.as_str())),
            format!("high-risk data (financial or location trail) is used: {}", list(&names(high.iter().map(|f| f.name.as_str())))),
            "Use a coarse band or a region chosen by the customer, never a precise location or a financial figure.",
        ));
    }
    let in_subject: Vec<_> = p
        .fields
        .iter()
        .filter(|f| f.places.contains(&Place::Subject) && class_of(f).level() >= 2)
        .collect();
    if !in_subject.is_empty() {
        out.push(Finding::new(
            "sensitive-in-subject",
            Level::Caution,
            names(in_subject.iter().map(|f| f.name.as_str())),
            format!(
                "{} appear in the subject or preheader, shown on lock screens and inbox lists (counts double)",
                list(&names(in_subject.iter().map(|f| f.name.as_str())))
            ),
            "Keep the subject to a first name at most; move the detail into the body, e.g. 'picked for you' instead of naming the viewed product.",
        ));
    }
    let inferred: Vec<_> = p
        .fields
        .iter()
        .filter(|f| f.class.inferred && f.places.iter().any(|pl| *pl != Place::Segment))
        .collect();
    if !inferred.is_empty() {
        out.push(Finding::new(
            "inferred-data",
            Level::Caution,
            names(inferred.iter().map(|f| f.name.as_str())),
            format!(
                "inferred data is shown to the customer: {} (a score or prediction they never told you)",
                list(&names(inferred.iter().map(|f| f.name.as_str())))
            ),
            "Use the inference to choose content, never to print it; say 'you might like' rather than 'you are likely to'.",
        ));
    }
    for (field, n) in &stats.stale {
        if *n > 0 {
            out.push(Finding::new(
                "stale-behaviour",
                Level::Notice,
                vec![field.clone()],
                format!("`{field}` was observed more than 90 days ago (or at no known time) for {n} recipient(s)"),
                "Only show behaviour from the last 90 days; fall back to 'picked for you' for older data.",
            ));
        }
    }
    if !p.audience.header.has_role(crate::audience::Role::ConsentAt) {
        out.push(Finding::new(
            "undated-consent",
            Level::Notice,
            Vec::new(),
            format!("{} has no consent-time column, so no consent can be shown to be current (GDPR Art. 7(1))", p.audience.header.path.display()),
            "Add a consent_at column (RFC 3339 or YYYY-MM-DD) recording when each person opted in.",
        ));
    }
    for f in p
        .fields
        .iter()
        .filter(|f| f.class.base == FieldClass::Unclassified)
    {
        out.push(Finding::new(
            "unclassified-field",
            Level::Notice,
            vec![f.name.clone()],
            format!("`{}` could not be classified by name; it is treated as level 2", f.name),
            "Classify it in the schema: [fields] NAME = { class = \"declared\" } (or transactional, behavioural, …).",
        ));
    }
    let shadowed = p.audience.header.shadowed();
    if !shadowed.is_empty() {
        out.push(Finding::new(
            "shadowed-column",
            Level::Notice,
            names(shadowed.iter().copied()),
            format!(
                "column(s) {} are hidden by tact's own template variables",
                list(&names(shadowed.iter().copied()))
            ),
            "Rename the column in the CSV if the templates need it.",
        ));
    }
    measure_combinations(p, stats, &mut out);
    if p.campaign.dkim.is_none() {
        out.push(Finding::new(
            "dkim-by-relay",
            Level::Notice,
            Vec::new(),
            "no [dkim] table: your relay must DKIM-sign List-Unsubscribe and List-Unsubscribe-Post for one-click unsubscribe (RFC 8058 §4), and Feedback-ID for Gmail's feedback loop".into(),
            "Add [dkim] with domain, selector and private_key, or confirm the relay signs those headers.",
        ));
    }
    out
}

/// The fields of `names` as the measurement reads them, measured over the personalised
/// recipients; None before anyone is rendered (a preliminary report, a preview).
fn measure_fields(
    p: &Prepared,
    stats: &RenderStats,
    names: &[String],
) -> Option<crate::measure::Measured> {
    let rows = stats.personalised.as_ref()?;
    let fields: Vec<crate::measure::Field<'_>> = names
        .iter()
        .filter_map(|n| {
            let col = p.audience.column(n)?;
            Some(crate::measure::Field {
                name: n.clone(),
                ty: col.ty,
                data: &col.data,
            })
        })
        .collect();
    (fields.len() == names.len()).then(|| crate::measure::measure(rows, &fields, p.now))
}

/// Every other finding about two or more fields above `declared` that one email shows
/// together (subject or body) carries the measurement of that combination.
fn measure_combinations(p: &Prepared, stats: &RenderStats, out: &mut [Finding]) {
    let shown = |n: &str| {
        p.field(n).is_some_and(|f| {
            f.class.class().level() >= 2 && f.places.iter().any(|pl| *pl != Place::Segment)
        })
    };
    let mut done: BTreeMap<Vec<String>, Option<crate::measure::Measured>> = BTreeMap::new();
    for f in out.iter_mut().filter(|f| f.measured.is_none()) {
        let combo: Vec<String> = f.fields.iter().filter(|n| shown(n)).cloned().collect();
        if combo.len() < 2 {
            continue;
        }
        let m = done
            .entry(combo.clone())
            .or_insert_with(|| measure_fields(p, stats, &combo))
            .clone();
        if let Some(m) = m {
            f.message = format!("{}; shown together, {}", f.message, m.sentence());
            f.measured = Some(Measured::Groups(m));
        }
    }
}

/// `sensitive-value`: one finding per place where a matched value is selected on or shown.
fn sensitive_values(p: &Prepared, stats: &RenderStats) -> Vec<Finding> {
    let lex = &*p.schema.lexicon;
    let mut out = Vec::new();
    for (place, seen) in &stats.sensitive {
        let fields: Vec<String> = seen.fields.iter().cloned().collect();
        let cats = crate::sensitive::by_category(lex, seen);
        let examples = crate::sensitive::examples(lex, p, seen);
        let eg = if examples.is_empty() {
            String::new()
        } else {
            format!("; e.g. {examples}")
        };
        let (level, message, alternative) = match place {
            Place::Segment => {
                let named: Vec<&str> = lex
                    .of(stats.segment_terms)
                    .map(|c| c.label.as_str())
                    .collect();
                let literal = if named.is_empty() {
                    String::new()
                } else {
                    format!("the segment names a term revealing {}; ", named.join(", "))
                };
                let who = if seen.recipients > 0 {
                    format!(
                        "it selects {} recipient(s) by a value of {} that reveals {cats}",
                        seen.recipients,
                        list(&fields)
                    )
                } else {
                    "nobody is selected by it today".to_string()
                };
                (
                    Level::Block,
                    format!("{literal}{who}: the campaign targets people because of an inferred special category or high-risk trait (EDPB Guidelines 8/2020){eg}"),
                    "Do not select on these values: add `and not FIELD is sensitive` to the segment, target with declared fields (country, language, stated preferences), or drop the field from the segment.".to_string(),
                )
            }
            Place::Subject => (
                Level::Block,
                format!(
                    "{} recipient(s) would see a value of {} revealing {cats} in the subject or preheader (printed, or deciding what is shown), on lock screens and inbox lists{eg}",
                    seen.recipients,
                    list(&fields)
                ),
                format!(
                    "Keep these values out of the subject: {}, or drop the field from the subject.",
                    guard_example(&fields)
                ),
            ),
            Place::Body => (
                Level::Caution,
                format!(
                    "{} recipient(s) would read a value of {} revealing {cats} in the body (printed, or deciding what is shown; inferred special-category data is special-category data: EDPB Guidelines 8/2020){eg}",
                    seen.recipients,
                    list(&fields)
                ),
                format!(
                    "Leave such values out of the template: {}, or drop the field.",
                    guard_example(&fields)
                ),
            ),
        };
        let mut f = Finding::new("sensitive-value", level, fields, message, "");
        f.alternative = alternative;
        f.measured = Some(Measured::Values {
            recipients: seen.recipients,
            categories: seen.categories.clone(),
            place: *place,
        });
        out.push(f);
    }
    out
}

fn guard_example(fields: &[String]) -> String {
    let f = fields.first().map_or("FIELD", String::as_str);
    format!(
        "{{% if not {f} is sensitive %}}{{{{ {f} }}}}{{% else %}}something generic{{% endif %}}"
    )
}

/// An acknowledgement covers a caution only when the finding's fields are all among its own.
pub fn acknowledge(findings: &mut [Finding], acks: &[Acknowledgement]) {
    for f in findings.iter_mut().filter(|f| f.level == Level::Caution) {
        if let Some(a) = acks.iter().find(|a| a.covers(f.rule, &f.fields)) {
            f.acknowledged = true;
            f.reason = Some(a.reason.clone());
        }
    }
}

/// Whether a rule id is one `check` can raise.
pub const RULES: [&str; 17] = [
    "special-category",
    "sensitive-value",
    "field-decides-link",
    "missing-unsubscribe",
    "missing-postal-address",
    "generic-variant-fails",
    "unescaped-field",
    "micro-segment",
    "quasi-identifier-combination",
    "high-risk-field",
    "sensitive-in-subject",
    "inferred-data",
    "stale-behaviour",
    "undated-consent",
    "unclassified-field",
    "shadowed-column",
    "dkim-by-relay",
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn now() -> DateTime<Utc> {
        crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
    }

    /// Row i's `consent_personalisation` and `last_viewed_at`.
    type RowOf = fn(usize) -> (&'static str, String);

    /// A campaign over `rows` consenting people; `de` of them live in DE.
    struct Fx {
        rows: usize,
        de: usize,
        txt: String,
        html: Option<String>,
        subject: String,
        extra: String,
        header_extra: &'static str,
        viewed_at: &'static str,
        /// `last_viewed_product` of row i is `products[i % len]`.
        products: &'static [&'static str],
        /// Lines added to the schema's `[fields]`.
        schema_extra: &'static str,
        /// Row i's `consent_personalisation` and `last_viewed_at`, instead of "yes" and
        /// `viewed_at`.
        row_of: Option<RowOf>,
    }

    impl Default for Fx {
        fn default() -> Self {
            Fx {
                rows: 60,
                de: 0,
                txt: "{% if personalised %}Hi {{ first_name }}{% endif %} {{ unsubscribe_url }} {{ postal_address }}".into(),
                html: None,
                subject: "Hello".into(),
                extra: String::new(),
                header_extra: "",
                viewed_at: "2026-11-01",
                products: &["Kettle"],
                schema_extra: "",
                row_of: None,
            }
        }
    }

    impl Fx {
        fn report(&self) -> Report {
            let (_dir, p) = self.prepared();
            let keys = Keys::from_master(&[3; 32]);
            run(&p, &keys, &Facts::default(), now()).1
        }

        fn prepared(&self) -> (tempfile::TempDir, Prepared) {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let mut csv = format!(
                "email,consent_marketing,consent_personalisation,consent_at,first_name,postcode,birth_date,gender,total_spent,income,churn_score,diagnosis,last_viewed_product,last_viewed_at,shoe_size,country{}\n",
                self.header_extra
            );
            for i in 0..self.rows {
                let country = if i < self.de { "DE" } else { "GB" };
                let extra = if self.header_extra.is_empty() {
                    ""
                } else {
                    ",x"
                };
                let (personalisation, viewed_at) = match self.row_of {
                    Some(f) => f(i),
                    None => ("yes", self.viewed_at.to_string()),
                };
                writeln!(
                    csv,
                    "p{i}@x.example,yes,{personalisation},2026-01-01,Name{i},BS{i} 1AA,1990-01-0{},f,{i}.5,30000,0.{i},,{},{viewed_at},4{},{country}{extra}",
                    i % 9 + 1,
                    self.products[i % self.products.len()],
                    i % 10
                )
                .unwrap();
            }
            std::fs::write(d.join("people.csv"), csv).unwrap();
            std::fs::write(
                d.join("people.schema.toml"),
                format!(
                    "[fields]\nlast_viewed_product = {{ class = \"behavioural\", observed_at = \"last_viewed_at\" }}\nchurn_score = {{ class = \"behavioural\", inferred = true }}\n{}\n",
                    self.schema_extra
                ),
            )
            .unwrap();
            std::fs::create_dir(d.join("templates")).unwrap();
            std::fs::write(d.join("templates/t.txt.tera"), &self.txt).unwrap();
            if let Some(h) = &self.html {
                std::fs::write(d.join("templates/t.html.tera"), h).unwrap();
            }
            let campaign = format!(
                "name = \"t\"\naudience = \"people.csv\"\ntemplate = \"t\"\nsubject = '{}'\nfrom = \"Shop <news@shop.example>\"\nunsubscribe_url = \"https://shop.example/u\"\npostal_address = \"1 Road, Town\"\n{}\n",
                self.subject, self.extra
            );
            std::fs::write(d.join("t.toml"), campaign).unwrap();
            let p = Prepared::load(&d.join("t.toml"), now()).unwrap();
            (dir, p)
        }
    }

    proptest::proptest! {
        /// The prefixed search finds a needle exactly where `str::contains` does, with
        /// or without the prefix, overlapping prefixes included.
        #[test]
        fn the_prefixed_search_is_contains(
            hay in "[ab/&?=t]{0,40}",
            prefix in "[ab/&]{0,4}",
            rest in "[ab?=t]{0,4}",
            other in "[ab]{0,5}",
        ) {
            let f = Prefixed::new(&prefix);
            let needle = format!("{prefix}{rest}");
            proptest::prop_assert_eq!(f.contains(&hay, &needle), hay.contains(&needle));
            proptest::prop_assert_eq!(f.contains(&hay, &other), hay.contains(&other));
        }
    }

    #[test]
    fn the_unsubscribe_base_starts_every_link() {
        for base in [
            "https://northwind.example/unsubscribe",
            "https://x.example/u?list=1",
            "https://x.example/u?",
            "https://x.example/u?a=1&",
        ] {
            let url = crate::plan::unsubscribe_url(base, "TOKEN");
            let head = unsubscribe_base(base);
            assert!(url.starts_with(&head), "{url} / {head}");
            assert!(url.len() > head.len() + "TOKEN".len(), "{url} / {head}");
            assert!(html_escape_url(&url).starts_with(&html_escape_url(&head)));
        }
        assert!(
            Prefixed::new("aa").contains("xaaab", "aab"),
            "overlapping prefix"
        );
    }

    #[test]
    fn canaries_are_found_raw_in_any_case_and_not_when_escaped() {
        let c = canary(7);
        assert_eq!(unescaped_canaries(&format!("a{c}b")), BTreeSet::from([7]));
        assert_eq!(
            unescaped_canaries(&c.to_uppercase()),
            BTreeSet::from([7]),
            "| upper | safe"
        );
        assert_eq!(
            unescaped_canaries(&c.replace('<', "")),
            BTreeSet::from([7]),
            "a raw quote is enough to break out of an attribute"
        );
        assert!(unescaped_canaries(&tera::escape_html(&c)).is_empty());
        assert!(unescaped_canaries(&tera::escape_html(&c).to_uppercase()).is_empty());
        assert!(unescaped_canaries("no canary here").is_empty());
        // Escaped, but where escaping does not keep it text: inside a tag, unquoted.
        let e = tera::escape_html(&c);
        for (html, inside) in [
            (format!("<a href={e}>x</a>"), true),
            (format!("<td {e}>"), true),
            (format!("<{e}>"), true),
            (format!("<img\nalt=x src = {e}>"), true),
            (format!("<a href=\"{e}\" title='{e}'>{e}</a>"), false),
            (format!("<!-- <a href={e} -->{e}"), false),
            (format!("<style>p{{x:1}} a{{b:{e}}}</style>"), false),
            (format!("<p class=x>{e}<br/>{e}</p>"), false),
            (format!("< {e} <3 {e}"), false),
        ] {
            let want = if inside {
                BTreeSet::from([7])
            } else {
                BTreeSet::new()
            };
            assert_eq!(unescaped_canaries(&html), want, "{html}");
        }
        // Escaped, then `&lt;` turned back into `<` by a filter: the element is open.
        assert_eq!(
            unescaped_canaries(&tera::escape_html(&c).replace("&lt;", "<")),
            BTreeSet::from([7])
        );
    }

    /// The canary renders see what the walker does not: with the walker's verdict removed,
    /// the rendered output alone still names the field, also when markup in a typed field
    /// (a date given to `date`) makes the all-markup render fail.
    #[test]
    fn the_canary_check_stands_on_its_own() {
        let fx = Fx {
            html: Some(
                r#"{{ birth_date | date(format="%Y") }}{% set n = first_name %}{{ n | safe }}{{ postcode }} {{ unsubscribe_url }}"#.into(),
            ),
            ..Fx::default()
        };
        let (_dir, mut p) = fx.prepared();
        assert!(p.usage.unescaped.contains("first_name"));
        // As if the walker had missed the field entirely: only the all-canary render is left,
        // and it needs the typed fallback for `birth_date`.
        p.usage.unescaped.clear();
        p.usage.fields.remove("first_name");
        let keys = Keys::from_master(&[3; 32]);
        let c = canary_check(&p, &keys);
        assert_eq!(
            c.unescaped.iter().map(String::as_str).collect::<Vec<_>>(),
            ["first_name"]
        );
        assert!(c.misses.is_empty(), "{:?}", c.misses);
        let r = run(&p, &keys, &Facts::default(), now()).1;
        let f = r
            .findings
            .iter()
            .find(|f| f.rule == "unescaped-field")
            .expect("unescaped-field");
        assert_eq!(f.fields, ["first_name"]);
        assert!(f.message.contains("canary"), "{}", f.message);
        assert_eq!(r.verdict, Level::Block);
    }

    /// A field that starts a link decides where it goes: a changed or hostile file sends
    /// readers anywhere, and one whose value is not a web address (`javascript:`) blocks.
    #[test]
    fn a_field_that_starts_a_link_decides_where_it_goes() {
        let links = |html: &str, products: &'static [&'static str]| {
            Fx {
                html: Some(format!(
                    "{{% if personalised %}}{html}{{% endif %}} {{{{ unsubscribe_url }}}}"
                )),
                products,
                ..Fx::default()
            }
            .report()
        };
        const WEB: &[&str] = &[
            "https://northwind.example/p/1",
            "HTTP://northwind.example/p/2",
        ];
        const HOSTILE: &[&str] = &[
            "https://northwind.example/p/1",
            " JavaScript:alert(1)",
            "vbscript:msgbox",
            "//evil.example/login",
        ];
        for html in [
            r#"<a href="{{ last_viewed_product }}">see it</a>"#,
            r#"<a class="b" href = ' {{ last_viewed_product }}'>see it</a>"#,
            r#"{% set u = last_viewed_product %}<img alt="" src="{{ u }}/pic.png">"#,
            r#"{% for p in [last_viewed_product] %}<form action="{{ p | trim }}"></form>{% endfor %}"#,
        ] {
            let r = links(html, WEB);
            let f: Vec<&Finding> = r
                .findings
                .iter()
                .filter(|f| f.rule == "field-decides-link")
                .collect();
            assert_eq!(f.len(), 1, "{html}: {:?}", rules_of(&r));
            assert_eq!(f[0].level, Level::Caution, "{html}");
            assert_eq!(f[0].fields, ["last_viewed_product"], "{html}");
            let r = links(html, HOSTILE);
            let f = r
                .findings
                .iter()
                .find(|f| f.rule == "field-decides-link")
                .expect("a finding");
            assert_eq!(f.level, Level::Block, "{html}");
            // Rows 1, 2, 3 of every 4 (lines 3, 4, 5, …): 45 of the 60 recipients.
            assert!(f.message.contains("45 recipient(s)"), "{}", f.message);
            assert!(f.message.contains("line 4"), "{}", f.message);
            let json = serde_json::to_string(&r).unwrap().to_lowercase();
            for v in [
                "alert(1)",
                "msgbox",
                "evil.example",
                "northwind.example/p/1",
            ] {
                assert!(!json.contains(v), "{v} leaked: {json}");
            }
        }
        // Near misses: the link starts with our own address, the field only names it, or
        // it is a mailto to the recipient.
        for html in [
            r#"<a href="https://shop.example/p/{{ last_viewed_product | urlencode }}">see</a>"#,
            r#"<a title="{{ last_viewed_product }}" href="https://shop.example/">see</a>"#,
            r#"<a href="https://shop.example/">{{ last_viewed_product }}</a>"#,
            r#"<p data-href="{{ last_viewed_product }}">x</p>"#,
        ] {
            let r = links(html, HOSTILE);
            assert!(
                !r.findings.iter().any(|f| f.rule == "field-decides-link"),
                "{html}: {:?}",
                rules_of(&r)
            );
        }
    }

    /// A canary in the subject ends as `bad_header_value`; were the guard ever bypassed, the
    /// message built from it is looked at and the self-check fails.
    #[test]
    fn a_canary_in_the_subject_is_stopped_and_a_bypass_would_be_seen() {
        let fx = Fx {
            subject: "{% if personalised %}{{ first_name }}{% endif %} news".into(),
            ..Fx::default()
        };
        let (_dir, p) = fx.prepared();
        let keys = Keys::from_master(&[3; 32]);
        assert!(canary_check(&p, &keys).misses.is_empty());
        let n = p
            .audience
            .header
            .names
            .iter()
            .position(|n| n == "first_name")
            .unwrap();
        let mark = canary(n);
        let (vars, hash) = p.tool_vars(&keys, 0, true);
        let e = p
            .letter_with(0, true, vars.clone(), hash, &[("first_name", &mark)])
            .expect_err("the guard stops a canary in the subject");
        assert_eq!(e.reason, Reason::BadHeaderValue);
        // A guard that let it through: the letter as the guard would have passed it.
        let bypass = crate::plan::Letter {
            row: 0,
            personalised: true,
            rendered: crate::template::Rendered {
                subject: format!("{mark} news"),
                preheader: String::new(),
                text: "x".into(),
                html: None,
            },
            unsubscribe_url: vars.unsubscribe_url,
            hash,
            bounce_token: None,
        };
        let names: Vec<(usize, &str)> = vec![(n, "first_name")];
        let mut out = CanaryResult::default();
        observe(&p, &names, &[mark], 0, true, Ok(bypass), &mut out);
        assert_eq!(out.misses.len(), 1);
        assert_eq!(out.misses[0].part, "header");
    }

    fn rules_of(r: &Report) -> Vec<(&'static str, Level)> {
        r.findings
            .iter()
            .filter(|f| f.rule != "dkim-by-relay")
            .map(|f| (f.rule, f.level))
            .collect()
    }

    fn body(fields: &str) -> String {
        format!(
            "{{% if personalised %}}{fields}{{% endif %}} {{{{ unsubscribe_url }}}} {{{{ postal_address }}}}"
        )
    }

    #[test]
    fn a_clean_campaign_is_ok_apart_from_the_relay_notice() {
        let r = Fx::default().report();
        assert_eq!(rules_of(&r), []);
        assert_eq!(r.verdict, Level::Notice);
        assert_eq!(r.exit_code(), 0);
        assert!(r.self_check.is_empty());
    }

    #[test]
    fn special_category_blocks_only_when_used() {
        let r = Fx {
            txt: body("{{ diagnosis }}"),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("special-category", Level::Block)]);
        assert_eq!(r.exit_code(), 4);
        // The column is in the file but unused: nothing to say.
        assert!(
            !rules_of(&Fx::default().report())
                .iter()
                .any(|f| f.0 == "special-category")
        );
    }

    #[test]
    fn unsubscribe_and_postal_address_must_render() {
        let r = Fx {
            txt: "{{ postal_address }}".into(),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("missing-unsubscribe", Level::Block)]);
        let html = Some("<p>{{ postal_address }}</p>".to_string());
        let r = Fx {
            html,
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("missing-unsubscribe", Level::Block)]);
        assert!(
            r.findings[0].message.contains("HTML part"),
            "{}",
            r.findings[0].message
        );
        let html = Some(r#"<a href="{{ unsubscribe_url }}">unsubscribe</a>"#.to_string());
        assert_eq!(
            rules_of(
                &Fx {
                    html,
                    ..Default::default()
                }
                .report()
            ),
            []
        );
        let r = Fx {
            txt: "{{ unsubscribe_url }}".into(),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("missing-postal-address", Level::Block)]);
    }

    #[test]
    fn the_generic_variant_must_render() {
        let r = Fx {
            txt: "Hi {{ first_name }} {{ unsubscribe_url }} {{ postal_address }}".into(),
            ..Default::default()
        }
        .report();
        assert!(
            rules_of(&r).contains(&("generic-variant-fails", Level::Block)),
            "{:?}",
            rules_of(&r)
        );
        assert_eq!(r.audience.generic, 0);
    }

    #[test]
    fn safe_customer_fields_in_html_block() {
        let html = |x: &str| Some(format!("{x} <a href=\"{{{{ unsubscribe_url }}}}\">u</a>"));
        let r = Fx {
            html: html("{% if personalised %}{{ first_name | safe }}{% endif %}"),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("unescaped-field", Level::Block)]);
        // `safe` on a tact variable, or in the text part, is harmless.
        let r = Fx {
            html: html("{{ postal_address | safe }}"),
            txt: body("{{ first_name | safe }}"),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), []);
    }

    #[test]
    fn micro_segments() {
        // 10 people targeted with a transactional field: one-to-one targeting.
        let r = Fx {
            de: 10,
            extra: "segment = 'country == \"DE\"'".into(),
            txt: body("{{ total_spent }}"),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("micro-segment", Level::Block)]);
        // The same 10 with declared fields only: a caution below min_segment_size.
        let r = Fx {
            de: 10,
            extra: "segment = 'country == \"DE\"'".into(),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("micro-segment", Level::Caution)]);
        assert_eq!(r.exit_code(), 3);
        // 11 is not a micro-segment for the block rule.
        let r = Fx {
            de: 11,
            extra: "segment = 'country == \"DE\"'\n[policy]\nmin_segment_size = 11".into(),
            txt: body("{{ total_spent }}"),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), []);
    }

    #[test]
    fn quasi_identifiers_only_in_combination() {
        let r = Fx {
            txt: body("{{ postcode }}"),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), []);
        let r = Fx {
            txt: body("{{ postcode }} {{ birth_date }}"),
            ..Default::default()
        }
        .report();
        assert_eq!(
            rules_of(&r),
            [("quasi-identifier-combination", Level::Caution)]
        );
        assert_eq!(r.findings[0].fields, ["birth_date", "postcode"]);
    }

    #[test]
    fn high_risk_inferred_and_subject() {
        let r = Fx {
            txt: body("{{ income }}"),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("high-risk-field", Level::Caution)]);
        let r = Fx {
            txt: body("{{ churn_score }}"),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("inferred-data", Level::Caution)]);
        // Used only to choose people, an inference is not shown to them.
        let r = Fx {
            extra: "segment = 'churn_score > 0.1'".into(),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), []);
        let r = Fx {
            subject: "{% if personalised %}{{ total_spent }}{% endif %} off".into(),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("sensitive-in-subject", Level::Caution)]);
        let r = Fx {
            subject: "{% if personalised %}{{ first_name }}, {% endif %}hello".into(),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), []);
    }

    #[test]
    fn stale_behaviour_by_observed_at() {
        let r = Fx {
            txt: body("{{ last_viewed_product }}"),
            viewed_at: "2026-06-01",
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("stale-behaviour", Level::Notice)]);
        assert!(
            r.findings[0].message.contains("for 60 recipient"),
            "{}",
            r.findings[0].message
        );
        let r = Fx {
            txt: body("{{ last_viewed_product }}"),
            viewed_at: "2026-11-01",
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), []);
    }

    #[test]
    fn unclassified_and_shadowed_columns() {
        let r = Fx {
            txt: body("{{ shoe_size }}"),
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("unclassified-field", Level::Notice)]);
        let r = Fx {
            header_extra: ",campaign",
            ..Default::default()
        }
        .report();
        assert_eq!(rules_of(&r), [("shadowed-column", Level::Notice)]);
    }

    #[test]
    fn acknowledgements_cover_only_their_fields_and_never_a_block() {
        let ack = |fields: &str| {
            format!(
                "[policy]\nacknowledge = [{{ rule = \"quasi-identifier-combination\", fields = [{fields}], reason = \"store finder\" }}]"
            )
        };
        let two = body("{{ postcode }} {{ birth_date }}");
        let r = Fx {
            txt: two.clone(),
            extra: ack("\"postcode\", \"birth_date\""),
            ..Default::default()
        }
        .report();
        assert!(r.findings[0].acknowledged);
        assert_eq!(r.findings[0].reason.as_deref(), Some("store finder"));
        assert_eq!(r.verdict, Level::Caution);
        assert_eq!(r.exit_code(), 0);
        // An acknowledgement of postcode + birth_date does not cover a later gender.
        let three = body("{{ postcode }} {{ birth_date }} {{ gender }}");
        let r = Fx {
            txt: three,
            extra: ack("\"postcode\", \"birth_date\""),
            ..Default::default()
        }
        .report();
        assert!(!r.findings[0].acknowledged);
        assert_eq!(r.exit_code(), 3);
        let block = "[policy]\nacknowledge = [{ rule = \"special-category\", fields = [\"diagnosis\"], reason = \"x\" }]";
        let r = Fx {
            txt: body("{{ diagnosis }}"),
            extra: block.into(),
            ..Default::default()
        }
        .report();
        assert_eq!(r.exit_code(), 4);
        assert!(!r.findings[0].acknowledged);
    }

    #[test]
    fn a_dkim_table_silences_the_relay_notice() {
        let r = Fx::default().report();
        assert!(r.findings.iter().any(|f| f.rule == "dkim-by-relay"));
        let extra =
            "[dkim]\ndomain = \"shop.example\"\nselector = \"s1\"\nprivate_key = \"dkim.pem\""
                .to_string();
        let r = Fx {
            extra,
            ..Default::default()
        }
        .report();
        assert!(
            !r.findings.iter().any(|f| f.rule == "dkim-by-relay"),
            "{:?}",
            rules_of(&r)
        );
    }

    const PRODUCTS: &[&str] = &[
        "Kettle",
        "Ovulation kit",
        "Test kitchen",
        "Pride and Prejudice",
        "Rosary beads",
    ];

    fn sensitive(r: &Report) -> Vec<&Finding> {
        r.findings
            .iter()
            .filter(|f| f.rule == "sensitive-value")
            .collect()
    }

    fn values_measured(f: &Finding) -> (usize, BTreeMap<String, usize>, Place) {
        match &f.measured {
            Some(Measured::Values {
                recipients,
                categories,
                place,
            }) => (*recipients, categories.clone(), *place),
            other => panic!("not a values measurement: {other:?}"),
        }
    }

    /// No value of the audience in the report, JSON or words: only lines and categories.
    fn assert_no_values(r: &Report) {
        let json = serde_json::to_string(r).unwrap().to_lowercase();
        for v in [
            "ovulation",
            "rosary",
            "kettle",
            "prejudice",
            "kitchen",
            "bs1 1aa",
        ] {
            assert!(!json.contains(v), "{v} leaked: {json}");
        }
    }

    #[test]
    fn a_sensitive_value_in_the_body_is_a_caution_counted_per_category() {
        let r = with_products_in_body("{{ last_viewed_product }}");
        let f = sensitive(&r);
        assert_eq!(f.len(), 1, "{:?}", rules_of(&r));
        assert_eq!(f[0].level, Level::Caution);
        assert_eq!(f[0].fields, ["last_viewed_product"]);
        // 60 rows, five products in turn: 12 ovulation kits, 12 rosaries; the test
        // kitchen and the novel are near misses.
        let (n, cats, place) = values_measured(f[0]);
        assert_eq!(place, Place::Body);
        assert_eq!(n, 24);
        assert_eq!(
            cats,
            BTreeMap::from([("pregnancy".into(), 12), ("religion".into(), 12)])
        );
        // Examples by line and category: rows 1 and 4 are lines 3 and 6.
        assert!(
            f[0].message
                .contains("line 3 (pregnancy or fertility), line 6 (religion or belief)"),
            "{}",
            f[0].message
        );
        assert!(
            f[0].alternative.contains("is sensitive"),
            "{}",
            f[0].alternative
        );
        assert_eq!(r.exit_code(), 3);
        assert_no_values(&r);
    }

    #[test]
    fn a_sensitive_value_in_the_subject_blocks() {
        let r = with_products("{% if personalised %}{{ last_viewed_product }}{% endif %} news");
        let f = sensitive(&r);
        assert_eq!(f.len(), 1, "{:?}", rules_of(&r));
        assert_eq!(f[0].level, Level::Block);
        assert_eq!(values_measured(f[0]).2, Place::Subject);
        assert_eq!(values_measured(f[0]).0, 24);
        assert_eq!(r.exit_code(), 4);
        assert_no_values(&r);
    }

    /// A template need not print a value to reveal it: a branch on it, a cut-down copy
    /// or a count of its letters shows the recipient (and whoever reads over their
    /// shoulder) something the value decided. Each way counts where it shows; the guard
    /// the alternative recommends (`is sensitive`) still does not.
    /// The report of a campaign with `subject`, over an audience viewing `PRODUCTS`.
    fn with_products(subject: &str) -> Report {
        Fx {
            subject: subject.into(),
            products: PRODUCTS,
            ..Fx::default()
        }
        .report()
    }

    /// The report of a campaign whose body shows `fields`, over the same audience.
    fn with_products_in_body(fields: &str) -> Report {
        Fx {
            txt: body(fields),
            products: PRODUCTS,
            ..Fx::default()
        }
        .report()
    }

    #[test]
    fn a_sensitive_value_that_decides_what_is_shown_counts_where_it_shows() {
        for (subject, why) in [
            (
                "{% if personalised and last_viewed_product == \"Ovulation kit\" %}Congratulations!{% else %}News{% endif %}",
                "a branch on the exact value",
            ),
            (
                "{% if personalised and last_viewed_product is containing(\"Ovul\") %}Good news{% else %}News{% endif %}",
                "a branch on a fragment",
            ),
            (
                "{% if personalised %}{{ last_viewed_product | truncate(length=4) }}{% endif %} news",
                "a cut-down copy",
            ),
            (
                "{% if personalised %}{{ last_viewed_product | lower | replace(from=\"a\", to=\"4\") }}{% endif %} news",
                "a disguised copy",
            ),
            (
                "{% if personalised %}{{ last_viewed_product | length }}{% endif %} news",
                "a count of its letters",
            ),
        ] {
            let r = with_products(subject);
            let f = sensitive(&r);
            assert_eq!(f.len(), 1, "{why}: {:?}", rules_of(&r));
            assert_eq!(f[0].level, Level::Block, "{why}");
            let (n, cats, place) = values_measured(f[0]);
            assert_eq!(place, Place::Subject, "{why}");
            assert!(n >= 12, "{why}: {n}");
            assert!(cats.contains_key("pregnancy"), "{why}: {cats:?}");
            assert_no_values(&r);
        }
        // In the body the same branch is a caution.
        let r = with_products_in_body(
            "{% if last_viewed_product == \"Rosary beads\" %}Blessings{% endif %}",
        );
        let f = sensitive(&r);
        assert_eq!(f.len(), 1, "{:?}", rules_of(&r));
        assert_eq!(f[0].level, Level::Caution);
        assert_eq!(
            values_measured(f[0]).1,
            BTreeMap::from([("religion".into(), 12)])
        );
        // The recommended guard, and a branch on a harmless value, count for nothing.
        for subject in [
            "{% if personalised and not last_viewed_product is sensitive %}{{ last_viewed_product }}{% else %}Picked for you{% endif %}",
            "{% if personalised and last_viewed_product == \"Kettle\" %}Tea time{% else %}News{% endif %}",
            "{% if personalised and last_viewed_product %}Still looking?{% else %}News{% endif %}",
        ] {
            let r = with_products(subject);
            assert!(sensitive(&r).is_empty(), "{subject}: {:?}", rules_of(&r));
        }
    }

    #[test]
    fn a_segment_selecting_on_sensitive_values_blocks_unless_it_leaves_them_out() {
        let r = Fx {
            extra: "segment = 'last_viewed_product != \"Kettle\"'".into(),
            products: PRODUCTS,
            ..Fx::default()
        }
        .report();
        let f = sensitive(&r);
        assert_eq!(f.len(), 1, "{:?}", rules_of(&r));
        assert_eq!(f[0].level, Level::Block);
        let (n, cats, place) = values_measured(f[0]);
        assert_eq!((n, place), (24, Place::Segment));
        assert_eq!(cats.get("religion"), Some(&12));
        assert_no_values(&r);
        // The same segment with the values left out: no finding, and the near misses
        // are still selected.
        let r = Fx {
            extra: "segment = 'last_viewed_product != \"Kettle\" and not last_viewed_product is sensitive'".into(),
            products: PRODUCTS,
            ..Fx::default()
        }
        .report();
        assert!(sensitive(&r).is_empty(), "{:?}", rules_of(&r));
        assert_eq!(r.audience.personalised, 24);
        // A segment that names a sensitive term blocks even when the term selects nobody.
        let r = Fx {
            extra: "segment = 'last_viewed_product == \"Pregnancy test\" or country == \"GB\"'"
                .into(),
            ..Fx::default()
        }
        .report();
        let f = sensitive(&r);
        assert_eq!(f.len(), 1, "{:?}", rules_of(&r));
        assert_eq!(f[0].level, Level::Block);
        assert!(
            f[0].message.contains("names a term revealing pregnancy"),
            "{}",
            f[0].message
        );
        assert!(
            !f[0].message.to_lowercase().contains("pregnancy test"),
            "{}",
            f[0].message
        );
    }

    /// Judged on what is rendered: a value the template leaves out does not count,
    /// whichever way it is left out.
    #[test]
    fn a_value_the_template_leaves_out_does_not_count() {
        for txt in [
            body(
                "{% if not last_viewed_product is sensitive %}{{ last_viewed_product }}{% endif %}",
            ),
            body(
                "{% if last_viewed_product is sensitive %}picked for you{% else %}{{ last_viewed_product }}{% endif %}",
            ),
            body("{% if last_viewed_product == \"Kettle\" %}{{ last_viewed_product }}{% endif %}"),
        ] {
            let r = Fx {
                txt: txt.clone(),
                products: PRODUCTS,
                ..Fx::default()
            }
            .report();
            assert!(sensitive(&r).is_empty(), "{txt}: {:?}", rules_of(&r));
            assert!(r.self_check.is_empty(), "{txt}");
        }
        // Printed through a filter that changes its case, it still counts.
        let r = Fx {
            txt: body("{{ last_viewed_product | upper }}"),
            products: PRODUCTS,
            ..Fx::default()
        }
        .report();
        assert_eq!(sensitive(&r).len(), 1, "{:?}", rules_of(&r));
    }

    #[test]
    fn the_quasi_identifier_finding_carries_its_measurement() {
        let r = Fx {
            txt: body("{{ postcode }} {{ birth_date }}"),
            ..Fx::default()
        }
        .report();
        let f = &r.findings[0];
        assert_eq!(f.rule, "quasi-identifier-combination");
        let Some(Measured::Groups(m)) = &f.measured else {
            panic!("{:?}", f.measured)
        };
        // 60 distinct postcodes: everyone is alone with theirs.
        assert_eq!((m.recipients, m.unique, m.smallest_group), (60, 60, 1));
        assert!(
            f.message.contains(
                "60 of 60 recipients (100%) are the only one with their birth date and postcode"
            ),
            "{}",
            f.message
        );
        assert!(
            f.message.contains("Sweeney 2000"),
            "the citation stays as context"
        );
        assert!(f.alternative.contains("% unique"), "{}", f.alternative);
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(json["measured"]["unique"], 60);
        assert_eq!(
            json["measured"]["fields"],
            serde_json::json!(["birth_date", "postcode"])
        );
        assert_no_values(&r);
        // Before anyone is rendered there is nothing to measure: the citation alone.
        let (_dir, p) = Fx {
            txt: body("{{ postcode }} {{ birth_date }}"),
            ..Fx::default()
        }
        .prepared();
        let keys = Keys::from_master(&[3; 32]);
        let plan = p.plan(&keys, &Facts::default(), now());
        let pre = preliminary(&p, &plan);
        let f = &pre.findings[0];
        assert!(f.measured.is_none());
        assert!(f.message.contains("Sweeney 2000"), "{}", f.message);
    }

    fn field<'a>(r: &'a Report, name: &str) -> &'a FieldReport {
        r.fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no field {name}"))
    }

    /// Every class gets its origin; an inference is "we estimated" even where the schema
    /// says otherwise; a schema's `origin` wins over the class; the words are the ones the
    /// recipient reads, and the JSON carries both.
    #[test]
    fn each_field_says_where_it_came_from() {
        use crate::schema::Origin;
        let all = "{{ first_name }} {{ postcode }} {{ total_spent }} {{ last_viewed_product }} {{ churn_score }} {{ income }} {{ diagnosis }} {{ shoe_size }} {{ country }}";
        let r = Fx {
            txt: body(all),
            ..Fx::default()
        }
        .report();
        let want = [
            ("first_name", Origin::Declared, "you told us"),
            ("postcode", Origin::Declared, "you told us"),
            ("country", Origin::Declared, "you told us"),
            ("total_spent", Origin::Transactional, "from your orders"),
            (
                "last_viewed_product",
                Origin::Behavioural,
                "from what you browsed",
            ),
            ("churn_score", Origin::Inferred, "we estimated"),
            ("income", Origin::Unknown, "source not recorded"),
            ("diagnosis", Origin::Unknown, "source not recorded"),
            ("shoe_size", Origin::Unknown, "source not recorded"),
        ];
        for (name, origin, words) in want {
            let f = field(&r, name);
            assert_eq!((f.origin, f.origin_words), (origin, words), "{name}");
        }
        let json = serde_json::to_value(&r).unwrap();
        let churn = json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "churn_score")
            .unwrap();
        assert_eq!(churn["origin"], "inferred");
        assert_eq!(churn["origin_words"], "we estimated");
        assert!(churn["observed_days"].is_null(), "{churn}");

        // The schema says otherwise: a postcode from the delivery address, an income a
        // model guessed, and an inferred field that claims to be declared (it is not).
        let r = Fx {
            txt: body(all),
            schema_extra: "postcode = { class = \"quasi-identifier\", origin = \"transactional\" }\nshoe_size = { origin = \"declared\" }\nincome = { class = \"high-risk\", inferred = true, origin = \"declared\" }",
            ..Fx::default()
        }
        .report();
        assert_eq!(field(&r, "postcode").origin_words, "from your orders");
        assert_eq!(field(&r, "shoe_size").origin, Origin::Declared);
        assert_eq!(field(&r, "income").origin, Origin::Inferred);
        assert_eq!(field(&r, "first_name").origin, Origin::Declared);
    }

    /// Row i of the age audience: a quarter without personalisation consent (aged 4,000
    /// days, so counting them would show), some unreadable or empty dates, some in the
    /// future, the rest spread over two years.
    fn aged_row(i: usize) -> (&'static str, String) {
        let day = |ago: i64| {
            (chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap() - TimeDelta::days(ago))
                .to_string()
        };
        let spread = (i * 7919 + 13) % 731;
        match i % 12 {
            0 | 5 | 9 => ("no", day(4000)),
            3 => ("yes", String::new()),
            7 => ("yes", "not a date".into()),
            11 => ("yes", day(-(i as i64 % 5) - 1)),
            _ => ("yes", day(spread as i64)),
        }
    }

    #[test]
    fn the_age_summary_equals_a_brute_force_count() {
        for rows in [1, 2, 5, 12, 13, 60, 301] {
            let r = Fx {
                rows,
                de: rows / 10,
                extra: "segment = 'country == \"GB\"'\n[policy]\nmin_segment_size = 1".into(),
                txt: body("{{ last_viewed_product }}"),
                row_of: Some(aged_row),
                ..Fx::default()
            }
            .report();
            // By hand: the personalised rows in the segment with a readable date, in days
            // from the calendar (now is noon, so a date's age is the calendar difference).
            let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
            let mut days: Vec<i64> = (rows / 10..rows)
                .filter_map(|i| {
                    let (personalisation, at) = aged_row(i);
                    let d = chrono::NaiveDate::parse_from_str(&at, "%Y-%m-%d").ok()?;
                    (personalisation == "yes").then(|| (today - d).num_days().max(0))
                })
                .collect();
            days.sort_unstable();
            let want = (!days.is_empty()).then(|| ObservedDays {
                min: days[0] as u32,
                median: days[(days.len() - 1) / 2] as u32,
                max: days[days.len() - 1] as u32,
            });
            let f = field(&r, "last_viewed_product");
            assert_eq!(f.observed_days, want, "{rows} rows: {days:?}");
            assert_eq!(
                r.audience.personalised,
                (rows / 10..rows)
                    .filter(|i| aged_row(*i).0 == "yes")
                    .count()
            );
            if let Some(w) = want {
                assert!(w.max < 4000, "generic rows are not aged");
                let json = serde_json::to_value(f).unwrap();
                assert_eq!(json["observed_days"]["median"], w.median);
            }
        }
    }

    #[test]
    fn the_age_summary_in_words() {
        let d = |min, median, max| ObservedDays { min, median, max };
        assert_eq!(d(3, 41, 140).words(), "3–140 days ago, median 41");
        assert_eq!(d(0, 0, 0).words(), "today");
        assert_eq!(d(1, 1, 1).words(), "1 day ago");
        assert_eq!(d(60, 60, 60).words(), "60 days ago");
        assert_eq!(d(61, 61, 61).words(), "2 months ago");
        assert_eq!(ObservedDays::of(&DayCounts::new()), None);
        assert_eq!(
            ObservedDays::of(&DayCounts::from([(4, 1), (9, 1)])),
            Some(d(4, 4, 9)),
            "the lower median of an even count"
        );
        // Nobody rendered (a preliminary report) or no `observed_at`: no age.
        let (_dir, p) = Fx {
            txt: body("{{ last_viewed_product }}"),
            ..Fx::default()
        }
        .prepared();
        let plan = p.plan(&Keys::from_master(&[3; 32]), &Facts::default(), now());
        assert_eq!(
            field(&preliminary(&p, &plan), "last_viewed_product").observed_days,
            None
        );
        let r = Fx {
            txt: body("{{ first_name }} {{ last_viewed_product }}"),
            ..Fx::default()
        }
        .report();
        let f = field(&r, "last_viewed_product");
        assert_eq!(f.observed_days, Some(d(22, 22, 22)));
        assert_eq!(f.source_words(), "from what you browsed, 22 days ago");
        assert_eq!(field(&r, "first_name").source_words(), "you told us");
    }
}
