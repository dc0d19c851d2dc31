//! The privacy report (`check --report FILE.html|FILE.md`): what a privacy officer files
//! with the DPIA or the Art. 30 record. It is built once from the check's `Report` and the
//! `Prepared` campaign, then written as one self-contained HTML page or as Markdown, so the
//! two always say the same.
//!
//! It holds counts, field names, rules, the check's own messages and the marketer's
//! reasons: never a customer's value (the findings name rows by line number only). Every
//! piece of text is escaped on the way out, because the campaign file, the schema and the
//! acknowledgements are written by people and may hold `<`, `&` or `]]>`. The HTML is also
//! XML (XHTML syntax), has no scripts and loads nothing: its Content-Security-Policy says
//! so to the browser as well.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::check::{Finding, Level, Measured, Report};
use crate::error::{Error, Result};
use crate::measure::{percent, thousands};
use crate::plan::{Prepared, Reason};

/// The report's two forms, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
}

impl Format {
    /// `.html`/`.htm` or `.md`/`.markdown`, in any case; anything else is `None`.
    pub fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "html" | "htm" => Some(Format::Html),
            "md" | "markdown" => Some(Format::Markdown),
            _ => None,
        }
    }
}

/// One step of the consent funnel: who is still in, and who left just before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub label: &'static str,
    pub people: usize,
    /// The exclusion reasons between the previous stage and this one (only those that
    /// left someone out), as `check --json` names them, with their counts.
    pub left_out: Vec<(Reason, usize)>,
}

/// The stage a row excluded for `r` leaves the funnel before, in the plan's order of
/// decisions. A new reason must be placed here, or this stops compiling.
fn stage_of(r: Reason) -> usize {
    match r {
        Reason::MalformedRow | Reason::InvalidEmail | Reason::Duplicate => 1,
        Reason::NoMarketingConsent | Reason::StaleConsent | Reason::Suppressed => 2,
        Reason::NoPersonalisationConsent | Reason::SegmentError | Reason::NotInSegment => 3,
        Reason::AlreadySent
        | Reason::FrequencyCapped
        | Reason::RenderError
        | Reason::BadHeaderValue => 4,
    }
}

const STAGES: [&str; 5] = [
    "rows in the audience file",
    "valid address, each once",
    "current marketing consent",
    "in the segment",
    "would receive the email",
];

/// In words, for the reader who does not know the keys.
fn reason_words(r: Reason) -> &'static str {
    match r {
        Reason::MalformedRow => "row could not be read",
        Reason::InvalidEmail => "invalid address",
        Reason::Duplicate => "address already on an earlier row",
        Reason::NoMarketingConsent => "no marketing consent",
        Reason::StaleConsent => "consent too old or undated",
        Reason::Suppressed => "unsubscribed, bounced or complained",
        Reason::NoPersonalisationConsent => {
            "the segment reads personal fields, and they did not consent to that"
        }
        Reason::SegmentError => "the segment could not be evaluated",
        Reason::NotInSegment => "not in the segment",
        Reason::AlreadySent => "already sent this campaign",
        Reason::FrequencyCapped => "mailed too recently",
        Reason::RenderError => "the email could not be rendered",
        Reason::BadHeaderValue => "a value unsafe in a header",
    }
}

#[derive(Debug, Clone)]
pub struct FieldRow {
    pub name: String,
    pub class: &'static str,
    pub inferred: bool,
    pub origin_words: &'static str,
    /// How old the values shown are, in words, where the audience says when they were
    /// observed.
    pub age: Option<String>,
    pub places: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct FindingRow {
    pub level: Level,
    pub rule: &'static str,
    pub fields: Vec<String>,
    pub message: String,
    /// The measured figures, one sentence each.
    pub measured: Vec<String>,
    pub alternative: String,
    /// The acknowledgement's reason, when one covers it.
    pub acknowledged: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AckRow {
    pub rule: String,
    pub fields: Vec<String>,
    pub reason: String,
    /// How many findings of this check it covers (0: nothing it covers was raised).
    pub covers: usize,
}

/// Everything the report says, in plain strings and numbers: both forms print this.
#[derive(Debug, Clone)]
pub struct PrivacyReport {
    pub campaign: String,
    /// The audience file's name (not its folder, which says nothing to the reader).
    pub audience: String,
    pub checked: DateTime<Utc>,
    pub verdict: Level,
    pub verdict_note: &'static str,
    pub funnel: [Stage; 5],
    pub personalised: usize,
    pub generic: usize,
    pub fields: Vec<FieldRow>,
    pub findings: Vec<FindingRow>,
    pub acknowledgements: Vec<AckRow>,
    /// Consent roles the file answers for every row: role, value, the schema's reason.
    pub constants: Vec<(&'static str, String, String)>,
    /// Consent roles with no column, as the check says them.
    pub missing: Vec<String>,
    /// Lines the self-check saw rendered differently: the report may under-report.
    pub self_check: Vec<String>,
}

/// Builds the report of one check; `now` is the check's clock (`--now` in the CLI).
pub fn build(p: &Prepared, r: &Report, now: DateTime<Utc>) -> PrivacyReport {
    let c = &r.audience;
    let mut funnel: [Stage; 5] = STAGES.map(|label| Stage {
        label,
        people: 0,
        left_out: Vec::new(),
    });
    for reason in Reason::ALL {
        let n = c.excluded(reason);
        if n > 0 {
            funnel[stage_of(reason)].left_out.push((reason, n));
        }
    }
    let mut people = c.rows;
    for stage in &mut funnel {
        people = people.saturating_sub(stage.left_out.iter().map(|(_, n)| n).sum::<usize>());
        stage.people = people;
    }
    let fields = r
        .fields
        .iter()
        .map(|f| FieldRow {
            name: f.name.clone(),
            class: f.class.as_str(),
            inferred: f.inferred,
            origin_words: f.origin_words,
            age: f.observed_days.map(|d| d.words()),
            places: f.places.iter().map(|x| x.as_str()).collect(),
        })
        .collect();
    let findings = r.findings.iter().map(finding_row).collect();
    let acknowledgements = p
        .campaign
        .policy
        .acknowledge
        .iter()
        .map(|a| AckRow {
            rule: a.rule.clone(),
            fields: a.fields.clone(),
            reason: a.reason.clone(),
            covers: r
                .findings
                .iter()
                .filter(|f| f.acknowledged && a.covers(f.rule, &f.fields))
                .count(),
        })
        .collect();
    let header = &p.audience.header;
    PrivacyReport {
        campaign: r.campaign.clone(),
        audience: header
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| header.path.display().to_string()),
        checked: now,
        verdict: r.verdict,
        verdict_note: if r.self_check.is_empty() {
            r.verdict_note()
        } else {
            "the self-check failed: nothing can be sent"
        },
        funnel,
        personalised: c.personalised,
        generic: c.generic,
        fields,
        findings,
        acknowledgements,
        constants: header
            .constants
            .iter()
            .map(|k| (k.role.default_column(), k.value.clone(), k.reason.clone()))
            .collect(),
        missing: header.missing.iter().map(|m| m.to_string()).collect(),
        self_check: r
            .self_check
            .iter()
            .map(|m| {
                format!(
                    "line {}: the {} {} part renders differently from the whole row than from the fields found",
                    m.line, m.variant, m.part
                )
            })
            .collect(),
    }
}

fn finding_row(f: &Finding) -> FindingRow {
    let measured = match &f.measured {
        None => Vec::new(),
        Some(Measured::Groups(m)) => {
            let mut lines = vec![format!(
                "over the {} personalised recipient(s) who would see {}: {} alone in their group, smallest group {}",
                thousands(m.recipients),
                m.fields.join(" and "),
                share_of(m.unique, m.recipients),
                thousands(m.smallest_group)
            )];
            lines.extend(m.generalised.iter().map(|g| {
                format!(
                    "{}: {} alone, smallest group {}",
                    g.instead,
                    share_of(g.unique, m.recipients),
                    thousands(g.smallest_group)
                )
            }));
            lines
        }
        Some(Measured::Values {
            recipients,
            categories,
            place,
        }) => {
            let by: Vec<String> = categories
                .iter()
                .map(|(k, n)| format!("{k}: {}", thousands(*n)))
                .collect();
            vec![format!(
                "{} recipient(s) in the {}; by category: {}",
                thousands(*recipients),
                place.as_str(),
                by.join(", ")
            )]
        }
    };
    FindingRow {
        level: f.level,
        rule: f.rule,
        fields: f.fields.clone(),
        message: f.message.clone(),
        measured,
        alternative: f.alternative.clone(),
        acknowledged: f.reason.clone(),
    }
}

fn share_of(n: usize, of: usize) -> String {
    format!("{} ({})", thousands(n), percent(n, of))
}

impl PrivacyReport {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Html => self.html(),
            Format::Markdown => self.markdown(),
        }
    }

    fn date(&self) -> String {
        self.checked.format("%Y-%m-%d %H:%M UTC").to_string()
    }

    fn has_age(&self) -> bool {
        self.fields.iter().any(|f| f.age.is_some())
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let line = |o: &mut String, s: &str| {
            o.push_str(s);
            o.push('\n');
        };
        line(&mut o, &format!("# Privacy report: {}", md(&self.campaign)));
        line(&mut o, "");
        line(&mut o, "| | |");
        line(&mut o, "|---|---|");
        line(&mut o, &format!("| Campaign | {} |", md(&self.campaign)));
        line(&mut o, &format!("| Audience | {} |", md(&self.audience)));
        line(&mut o, &format!("| Checked | {} |", self.date()));
        line(
            &mut o,
            &format!(
                "| Verdict | **{}** ({}) |",
                self.verdict.as_str().to_uppercase(),
                self.verdict_note
            ),
        );
        line(&mut o, "");
        line(
            &mut o,
            "No customer's value appears in this report: rows are named by line number only.",
        );
        line(&mut o, "");

        line(&mut o, "## Who would receive it");
        line(&mut o, "");
        line(&mut o, "| Step | People | Left out before this step |");
        line(&mut o, "|---|---:|---|");
        for s in &self.funnel {
            let left: Vec<String> = s
                .left_out
                .iter()
                .map(|(r, n)| format!("{} `{}` ({})", thousands(*n), r.key(), reason_words(*r)))
                .collect();
            line(
                &mut o,
                &format!(
                    "| {} | {} | {} |",
                    s.label,
                    thousands(s.people),
                    left.join("; ")
                ),
            );
        }
        line(&mut o, "");
        line(
            &mut o,
            &format!(
                "Of those who would receive it, {} get the personalised email (they consented to personalisation) and {} the generic one.",
                thousands(self.personalised),
                thousands(self.generic)
            ),
        );
        line(&mut o, "");

        line(&mut o, "## Customer fields used");
        line(&mut o, "");
        if self.fields.is_empty() {
            line(&mut o, "None: every recipient gets the same message.");
        } else {
            let age = self.has_age();
            line(
                &mut o,
                if age {
                    "| Field | Class | Where it came from | Age | Used in |\n|---|---|---|---|---|"
                } else {
                    "| Field | Class | Where it came from | Used in |\n|---|---|---|---|"
                },
            );
            for f in &self.fields {
                let age_cell = if age {
                    format!(" {} |", md(f.age.as_deref().unwrap_or("")))
                } else {
                    String::new()
                };
                line(
                    &mut o,
                    &format!(
                        "| {} | {}{} | {} |{} {} |",
                        code_md(&f.name),
                        f.class,
                        if f.inferred { " (inferred)" } else { "" },
                        f.origin_words,
                        age_cell,
                        f.places.join(", ")
                    ),
                );
            }
        }
        line(&mut o, "");

        line(&mut o, "## Findings");
        line(&mut o, "");
        if self.findings.is_empty() {
            line(&mut o, "None.");
            line(&mut o, "");
        }
        for (i, f) in self.findings.iter().enumerate() {
            line(
                &mut o,
                &format!(
                    "### {}. {} {}",
                    i + 1,
                    f.level.as_str().to_uppercase(),
                    code_md(f.rule)
                ),
            );
            line(&mut o, "");
            line(&mut o, &md(&f.message));
            line(&mut o, "");
            if !f.fields.is_empty() {
                line(&mut o, &format!("- Fields: {}", md(&f.fields.join(", "))));
            }
            if let Some((first, rest)) = f.measured.split_first() {
                line(&mut o, &format!("- Measured: {}", md(first)));
                for m in rest {
                    line(&mut o, &format!("  - {}", md(m)));
                }
            }
            line(&mut o, &format!("- Instead: {}", md(&f.alternative)));
            if let Some(reason) = &f.acknowledged {
                line(&mut o, &format!("- Acknowledged: {}", md(reason)));
            }
            line(&mut o, "");
        }

        line(&mut o, "## Acknowledgements");
        line(&mut o, "");
        if self.acknowledgements.is_empty() {
            line(&mut o, "None.");
        }
        for a in &self.acknowledgements {
            line(
                &mut o,
                &format!(
                    "- {} on {}: {} ({})",
                    code_md(&a.rule),
                    md(&a.fields.join(", ")),
                    md(&a.reason),
                    covers(a.covers)
                ),
            );
        }
        line(&mut o, "");

        line(&mut o, "## Consent the audience file answers for");
        line(&mut o, "");
        if self.constants.is_empty() && self.missing.is_empty() {
            line(&mut o, "Every consent role is a column of the file.");
        }
        for (role, value, reason) in &self.constants {
            line(
                &mut o,
                &format!(
                    "- `{role}` is \"{}\" for every row: {}",
                    md(value),
                    md(reason)
                ),
            );
        }
        for m in &self.missing {
            line(&mut o, &format!("- {}", md(m)));
        }
        line(&mut o, "");

        if !self.self_check.is_empty() {
            line(&mut o, "## Self-check failed: this report may under-report");
            line(&mut o, "");
            for m in &self.self_check {
                line(&mut o, &format!("- {}", md(m)));
            }
            line(&mut o, "");
        }

        line(&mut o, "## Verdict");
        line(&mut o, "");
        line(
            &mut o,
            &format!(
                "**{}**: {}.",
                self.verdict.as_str().to_uppercase(),
                self.verdict_note
            ),
        );
        o
    }

    pub fn html(&self) -> String {
        let mut o = String::with_capacity(16 * 1024);
        let date = self.date();
        let verdict = self.verdict.as_str();
        o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n");
        // Nothing may run or load, even if an escape were ever missed.
        o.push_str(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\" />\n",
        );
        o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" />\n");
        o.push_str(&format!(
            "<title>Privacy report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
            esc(&self.campaign)
        ));
        o.push_str(&format!(
            "<header>\n<h1>Privacy report: {}</h1>\n<table class=\"facts\">\n\
             <tr><th>Campaign</th><td>{}</td></tr>\n\
             <tr><th>Audience</th><td>{}</td></tr>\n\
             <tr><th>Checked</th><td>{date}</td></tr>\n\
             <tr><th>Verdict</th><td><span class=\"level {verdict}\">{}</span> ({})</td></tr>\n\
             </table>\n<p class=\"note\">No customer's value appears in this report: rows are named by line number only.</p>\n</header>\n",
            esc(&self.campaign),
            esc(&self.campaign),
            esc(&self.audience),
            verdict.to_uppercase(),
            self.verdict_note
        ));

        o.push_str("<section id=\"funnel\">\n<h2>Who would receive it</h2>\n");
        o.push_str(&self.funnel_svg());
        o.push_str(
            "<table>\n<thead><tr><th>Step</th><th class=\"n\">People</th><th>Left out before this step</th></tr></thead>\n<tbody>\n",
        );
        for s in &self.funnel {
            let left: Vec<String> = s
                .left_out
                .iter()
                .map(|(r, n)| {
                    format!(
                        "{} <code>{}</code> ({})",
                        thousands(*n),
                        r.key(),
                        reason_words(*r)
                    )
                })
                .collect();
            o.push_str(&format!(
                "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>\n",
                s.label,
                thousands(s.people),
                left.join("<br />")
            ));
        }
        o.push_str(&format!(
            "</tbody>\n</table>\n<p>Of those who would receive it, {} get the personalised email (they consented to personalisation) and {} the generic one.</p>\n</section>\n",
            thousands(self.personalised),
            thousands(self.generic)
        ));

        o.push_str("<section id=\"fields\">\n<h2>Customer fields used</h2>\n");
        if self.fields.is_empty() {
            o.push_str("<p>None: every recipient gets the same message.</p>\n");
        } else {
            let age = self.has_age();
            o.push_str(&format!(
                "<table>\n<thead><tr><th>Field</th><th>Class</th><th>Where it came from</th>{}<th>Used in</th></tr></thead>\n<tbody>\n",
                if age { "<th>Age</th>" } else { "" }
            ));
            for f in &self.fields {
                let age_cell = if age {
                    format!("<td>{}</td>", esc(f.age.as_deref().unwrap_or("")))
                } else {
                    String::new()
                };
                o.push_str(&format!(
                    "<tr><td><code>{}</code></td><td>{}{}</td><td>{}</td>{age_cell}<td>{}</td></tr>\n",
                    esc(&f.name),
                    esc(f.class),
                    if f.inferred { " (inferred)" } else { "" },
                    esc(f.origin_words),
                    esc(&f.places.join(", "))
                ));
            }
            o.push_str("</tbody>\n</table>\n");
        }
        o.push_str("</section>\n");

        o.push_str("<section id=\"findings\">\n<h2>Findings</h2>\n");
        if self.findings.is_empty() {
            o.push_str("<p>None.</p>\n");
        }
        for (i, f) in self.findings.iter().enumerate() {
            let level = f.level.as_str();
            o.push_str(&format!(
                "<div class=\"finding {level}\">\n<h3>{}. <span class=\"level {level}\">{}</span> <code>{}</code></h3>\n<p>{}</p>\n<dl>\n",
                i + 1,
                level.to_uppercase(),
                esc(f.rule),
                esc(&f.message)
            ));
            if !f.fields.is_empty() {
                o.push_str(&format!(
                    "<dt>Fields</dt><dd>{}</dd>\n",
                    esc(&f.fields.join(", "))
                ));
            }
            if let Some((first, rest)) = f.measured.split_first() {
                o.push_str(&format!("<dt>Measured</dt><dd>{}", esc(first)));
                if !rest.is_empty() {
                    o.push_str("<ul>");
                    for m in rest {
                        o.push_str(&format!("<li>{}</li>", esc(m)));
                    }
                    o.push_str("</ul>");
                }
                o.push_str("</dd>\n");
            }
            o.push_str(&format!(
                "<dt>Instead</dt><dd>{}</dd>\n",
                esc(&f.alternative)
            ));
            if let Some(reason) = &f.acknowledged {
                o.push_str(&format!("<dt>Acknowledged</dt><dd>{}</dd>\n", esc(reason)));
            }
            o.push_str("</dl>\n</div>\n");
        }
        o.push_str("</section>\n");

        o.push_str("<section id=\"acknowledgements\">\n<h2>Acknowledgements</h2>\n");
        if self.acknowledgements.is_empty() {
            o.push_str("<p>None.</p>\n");
        } else {
            o.push_str("<ul>\n");
            for a in &self.acknowledgements {
                o.push_str(&format!(
                    "<li><code>{}</code> on {}: {} ({})</li>\n",
                    esc(&a.rule),
                    esc(&a.fields.join(", ")),
                    esc(&a.reason),
                    covers(a.covers)
                ));
            }
            o.push_str("</ul>\n");
        }
        o.push_str("</section>\n");

        o.push_str("<section id=\"consent\">\n<h2>Consent the audience file answers for</h2>\n");
        if self.constants.is_empty() && self.missing.is_empty() {
            o.push_str("<p>Every consent role is a column of the file.</p>\n");
        } else {
            o.push_str("<ul>\n");
            for (role, value, reason) in &self.constants {
                o.push_str(&format!(
                    "<li><code>{role}</code> is \u{201c}{}\u{201d} for every row: {}</li>\n",
                    esc(value),
                    esc(reason)
                ));
            }
            for m in &self.missing {
                o.push_str(&format!("<li>{}</li>\n", esc(m)));
            }
            o.push_str("</ul>\n");
        }
        o.push_str("</section>\n");

        if !self.self_check.is_empty() {
            o.push_str("<section id=\"self-check\">\n<h2>Self-check failed: this report may under-report</h2>\n<ul>\n");
            for m in &self.self_check {
                o.push_str(&format!("<li>{}</li>\n", esc(m)));
            }
            o.push_str("</ul>\n</section>\n");
        }

        o.push_str(&format!(
            "<section id=\"verdict\">\n<h2>Verdict</h2>\n<p class=\"verdict {verdict}\"><span class=\"level {verdict}\">{}</span>: {}.</p>\n</section>\n",
            verdict.to_uppercase(),
            self.verdict_note
        ));
        o.push_str(&format!(
            "<footer><p>Written by tact check on {date}.</p></footer>\n</body>\n</html>\n"
        ));
        o
    }

    /// The funnel as horizontal bars, each as long as its share of the file's rows; the
    /// last one split into personalised and generic.
    fn funnel_svg(&self) -> String {
        const LABEL: u32 = 200;
        const BAR: u32 = 360;
        const ROW: u32 = 30;
        let width = LABEL + BAR + 90;
        let height = ROW * self.funnel.len() as u32 + 30;
        let rows = self.funnel[0].people.max(1);
        let len = |n: usize| -> u32 {
            let w = (n as f64 * f64::from(BAR) / rows as f64).round() as u32;
            if n > 0 { w.max(1) } else { 0 }
        };
        let mut o = format!(
            "<svg class=\"funnel\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-labelledby=\"funnel-title\">\n<title id=\"funnel-title\">Consent funnel: {} rows, {} would receive the email</title>\n",
            thousands(self.funnel[0].people),
            thousands(self.funnel[4].people)
        );
        for (i, s) in self.funnel.iter().enumerate() {
            let y = ROW * i as u32;
            o.push_str(&format!(
                "<text x=\"0\" y=\"{}\" class=\"label\">{}</text>\n",
                y + 19,
                s.label
            ));
            let w = if i == self.funnel.len() - 1 {
                let p = len(self.personalised);
                let g = len(self.generic);
                o.push_str(&format!(
                    "<rect x=\"{LABEL}\" y=\"{}\" width=\"{p}\" height=\"20\" fill=\"#3b6ea5\" />\n<rect x=\"{}\" y=\"{}\" width=\"{g}\" height=\"20\" fill=\"#b9cfe6\" />\n",
                    y + 5,
                    LABEL + p,
                    y + 5
                ));
                p + g
            } else {
                let w = len(s.people);
                o.push_str(&format!(
                    "<rect x=\"{LABEL}\" y=\"{}\" width=\"{w}\" height=\"20\" fill=\"#8fb0d3\" />\n",
                    y + 5
                ));
                w
            };
            o.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" class=\"count\">{}</text>\n",
                LABEL + w + 6,
                y + 19,
                thousands(s.people)
            ));
        }
        let y = ROW * self.funnel.len() as u32 + 5;
        o.push_str(&format!(
            "<rect x=\"{LABEL}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"#3b6ea5\" />\n<text x=\"{}\" y=\"{}\" class=\"legend\">personalised {}</text>\n<rect x=\"{}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"#b9cfe6\" />\n<text x=\"{}\" y=\"{}\" class=\"legend\">generic {}</text>\n</svg>\n",
            LABEL + 16,
            y + 11,
            thousands(self.personalised),
            LABEL + 150,
            LABEL + 166,
            y + 11,
            thousands(self.generic)
        ));
        o
    }
}

fn covers(n: usize) -> String {
    match n {
        0 => "covers no finding of this check".to_string(),
        1 => "covers 1 finding".to_string(),
        n => format!("covers {n} findings"),
    }
}

/// Light, printable, and all in the page: no fonts, images or sheets to fetch.
const CSS: &str = "
body { font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1a1a1a; background: #fff; max-width: 54rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .6rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #bbb; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin: 0 0 .3rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid #ddd; }
table.facts { width: auto; }
table.facts th { padding-right: 1.5rem; }
.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-family: ui-monospace, 'SF Mono', Menlo, Consolas, monospace; font-size: .92em; }
.note { color: #555; font-size: .9em; }
.level { font-weight: 700; }
.level.block { color: #a40000; }
.level.caution { color: #8a5300; }
.level.notice { color: #00577d; }
.level.ok { color: #1c6b1c; }
.finding { border-left: 4px solid #bbb; padding: .3rem .9rem; margin: 1rem 0; break-inside: avoid; }
.finding.block { border-left-color: #a40000; }
.finding.caution { border-left-color: #c98a00; }
.finding.notice { border-left-color: #3d8fb8; }
dl { margin: .4rem 0 0; }
dt { font-weight: 600; margin-top: .3rem; }
dd { margin-left: 1.2rem; }
svg.funnel { max-width: 100%; height: auto; font: 13px system-ui, sans-serif; }
svg text { fill: #1a1a1a; }
.verdict { font-size: 1.1rem; }
footer { margin-top: 2rem; color: #555; font-size: .85em; }
@page { margin: 16mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10.5pt; }
  h2 { break-after: avoid; }
  tr, .finding { break-inside: avoid; }
  svg.funnel { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
";

/// A bidi mark, embedding, override or isolate: it would show the text around it in
/// another order than the record holds.
fn reorders(c: char) -> bool {
    matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text for HTML and XML alike: the five markup characters as references, and the
/// characters XML 1.0 forbids (controls, U+FFFE, U+FFFF) and bidi controls as U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' || reorders(c) => {
                out.push('\u{FFFD}')
            }
            c => out.push(c),
        }
    }
    out
}

/// Text for Markdown: one line (a line break could start a heading or end a table), no
/// raw HTML (`<` and `&` as references), and no link or image (`[`, `]`, `!` escaped), so
/// a renderer neither runs nor fetches anything. Backticks stay: the check's messages
/// quote field names as code, and code is shown as it is.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    // What would start a list, a heading's underline or a quote at the start of a line.
    if s.starts_with(['-', '+', '=']) {
        out.push('\\');
    }
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    for (i, (at, c)) in s.char_indices().enumerate() {
        let rest = &s[at + c.len_utf8()..];
        if digits > 0 && i == digits && (c == '.' || c == ')') {
            out.push('\\');
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '[' | ']' | '!' | '|' | '*' | '#' => {
                out.push('\\');
                out.push(c);
            }
            // `https://` would be linked by GitHub's renderer.
            ':' if rest.starts_with("//") => out.push_str("\\:"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() || reorders(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A name as code when it is a plain name; anything else as escaped text, since a code
/// span cannot hold a backtick and shows an escape as it is.
fn code_md(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        format!("`{s}`")
    } else {
        md(s)
    }
}

/// Writes the report to `path`, readable by its owner only: into a new file beside it,
/// then renamed over it, so a reader never sees half a report. A report is regenerated
/// often, so an existing file is replaced; a symbolic link is not followed (nor replaced):
/// the report goes where its path says, or nowhere.
pub fn save(path: &Path, text: &str) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::Input {
                location: crate::error::Location::file(path),
                message: "is a symbolic link: give the real path of the report".into(),
            });
        }
        Ok(m) if !m.is_file() => {
            return Err(Error::Input {
                location: crate::error::Location::file(path),
                message: "exists and is not a file".into(),
            });
        }
        _ => {}
    }
    // A mistyped folder is the user's to fix (exit 2), said of the path they gave rather
    // than of the temporary file beside it.
    let folder = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        return Err(Error::Input {
            location: crate::error::Location::file(path),
            message: format!("{} is not a folder", folder.display()),
        });
    }
    crate::state::replace_file(path, text.as_bytes(), |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "a<script>alert(1)</script>]]>--><!-- & \"q\" 's \u{1}";

    /// Every string of the report hostile, the campaign's and the fields' names too (the
    /// loaders refuse those, so only this test can give them).
    fn hostile() -> PrivacyReport {
        let h = HOSTILE.to_string();
        PrivacyReport {
            campaign: h.clone(),
            audience: h.clone(),
            checked: DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
                .expect("a time")
                .with_timezone(&Utc),
            verdict: Level::Caution,
            verdict_note: "acknowledged: may be sent",
            funnel: STAGES.map(|label| Stage {
                label,
                people: 3,
                left_out: vec![(Reason::NotInSegment, 1)],
            }),
            personalised: 2,
            generic: 1,
            fields: vec![FieldRow {
                name: h.clone(),
                class: "declared",
                inferred: true,
                origin_words: "we estimated",
                age: Some(h.clone()),
                places: vec!["body"],
            }],
            findings: vec![FindingRow {
                level: Level::Caution,
                rule: "quasi-identifier-combination",
                fields: vec![h.clone()],
                message: h.clone(),
                measured: vec![h.clone(), h.clone()],
                alternative: h.clone(),
                acknowledged: Some(h.clone()),
            }],
            acknowledgements: vec![AckRow {
                rule: h.clone(),
                fields: vec![h.clone()],
                reason: h.clone(),
                covers: 1,
            }],
            constants: vec![("consent_marketing", h.clone(), h.clone())],
            missing: vec![h.clone()],
            self_check: vec![h],
        }
    }

    #[test]
    fn hostile_text_stays_text_in_the_page() {
        let html = hostile().html();
        let opts = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(&html, opts).expect("well-formed");
        assert!(!html.to_lowercase().contains("<script"));
        assert!(!html.contains("]]>") && !html.contains("<!--") && !html.contains("-->"));
        // The text survives whole (the control character as U+FFFD): escaped, not dropped.
        let shown = HOSTILE.replace('\u{1}', "\u{FFFD}");
        let text: String = doc
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect();
        assert!(text.matches(&shown).count() >= 12, "{text}");
        let title = doc
            .descendants()
            .find(|n| n.has_tag_name("title"))
            .and_then(|n| n.text());
        assert_eq!(title, Some(format!("Privacy report: {shown}").as_str()));
        // An age shows as a column.
        assert!(html.contains("<th>Age</th>"));
    }

    #[test]
    fn hostile_text_stays_text_in_markdown() {
        let md = hostile().markdown();
        assert!(!md.contains('<'), "{md}");
        assert!(!md.contains('\u{1}'));
        // One line per item: nothing hostile starts a heading or a block of its own.
        assert!(
            md.lines()
                .filter(|l| l.starts_with('#'))
                .all(|l| l.starts_with("# ") || l.starts_with("## ") || l.starts_with("### "))
        );
        assert!(md.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\]\\]&gt;--&gt;&lt;\\!--"));
    }

    #[test]
    fn markdown_escapes_what_would_link_or_start_a_block() {
        assert_eq!(
            md("![x](https://e.example/p.png)"),
            "\\!\\[x\\](https\\://e.example/p.png)"
        );
        assert_eq!(md("- item"), "\\- item");
        assert_eq!(md("12. twelve"), "12\\. twelve");
        assert_eq!(md("a|b\nc"), "a\\|b c");
        assert_eq!(md("`code` stays"), "`code` stays");
        assert_eq!(code_md("birth_date"), "`birth_date`");
        assert_eq!(code_md("a`b"), "a`b");
        assert_eq!(code_md("<b>"), "&lt;b&gt;");
    }

    #[test]
    fn html_escapes_markup_and_what_xml_forbids() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(esc("a\u{0}b\u{FFFF}c\nd"), "a\u{FFFD}b\u{FFFD}c d");
    }

    /// A bidi override or isolate in an acknowledgement's reason would show the reader
    /// other words than the file holds ("approved \u{202E}ton" reads "approved not"):
    /// a report filed as the record shows what was written, so none is kept, in either form.
    #[test]
    fn bidi_controls_cannot_reorder_what_the_report_shows() {
        let reason = "approved by the DPO \u{202E}ton\u{202C} \u{2066}x\u{2069} \u{200F}\u{061C}";
        for out in [esc(reason), md(reason)] {
            assert!(
                !out.chars().any(|c| matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
                "{out:?}"
            );
            assert!(out.contains("approved by the DPO"), "{out:?}");
        }
    }

    #[test]
    fn the_format_is_the_extension() {
        for (name, f) in [
            ("r.html", Some(Format::Html)),
            ("R.HTM", Some(Format::Html)),
            ("r.md", Some(Format::Markdown)),
            ("r.Markdown", Some(Format::Markdown)),
            ("r.pdf", None),
            ("r", None),
            (".html", None),
        ] {
            assert_eq!(Format::of(Path::new(name)), f, "{name}");
        }
    }
}
