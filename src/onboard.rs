//! `tact new`: a first campaign from the customer file a marketer already has.
//!
//! The file is inspected, never changed: its encoding and separator, the platform that
//! exported it (by the header names each platform documents), which columns hold the
//! address and consent, and a class for every column with the reason for it. What comes
//! out is text for three files (a schema beside the CSV, a campaign, its two templates)
//! and, above all, what is missing and what that means. Consent is never invented: a file
//! that does not say when people consented gets no date, and nobody in it can be mailed
//! until one is added.

use std::path::{Path, PathBuf};

use crate::audience::Format;
use crate::error::{Error, Location, Result};
use crate::names;
use crate::schema::{self, FieldClass};

/// The export a header row comes from, judged by the columns each platform documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Mailchimp,
    Shopify,
    Klaviyo,
    HubSpot,
    WooCommerce,
    /// Any other CSV: roles found by tact's own names.
    Generic,
}

impl Platform {
    pub fn label(self) -> &'static str {
        match self {
            Platform::Mailchimp => "a Mailchimp audience export (subscribed members)",
            Platform::Shopify => "a Shopify customers export",
            Platform::Klaviyo => "a Klaviyo profiles export",
            Platform::HubSpot => "a HubSpot contacts export",
            Platform::WooCommerce => "a WooCommerce customers export",
            Platform::Generic => "a CSV file",
        }
    }

    fn detect(headers: &[String]) -> Platform {
        let has = |name: &str| headers.iter().any(|h| names::same(h, name));
        if has("MEMBER_RATING") || (has("OPTIN_TIME") && has("CONFIRM_TIME")) || has("LEID") {
            Platform::Mailchimp
        } else if has("Accepts Email Marketing") {
            Platform::Shopify
        } else if has("Email Marketing Consent") || has("Klaviyo ID") {
            Platform::Klaviyo
        } else if has("Record ID") && (has("Lifecycle Stage") || has("Contact owner")) {
            Platform::HubSpot
        } else if (has("Total spend") && has("AOV")) || (has("Username") && has("Date registered"))
        {
            Platform::WooCommerce
        } else {
            Platform::Generic
        }
    }
}

/// Where one consent role comes from, as the schema will say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Column(String),
    /// The platform's own words for consent in this column.
    Mapped {
        column: String,
        granted: Vec<String>,
    },
    /// Being in the file is the answer.
    Constant {
        value: String,
        reason: String,
    },
    Missing,
}

/// A guessed class for one column, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess {
    pub header: String,
    pub class: FieldClass,
    pub inferred: bool,
    pub ty: Option<schema::FieldType>,
    pub reason: String,
    /// Free text or anything a person should read before a campaign uses it.
    pub review: bool,
}

/// Something `new` tells the marketer: recognised, missing (with what it means), or a
/// change it made (an encoding read).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub level: &'static str,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Inspection {
    pub audience: PathBuf,
    pub platform: Platform,
    pub format: Format,
    pub headers: Vec<String>,
    pub rows: usize,
    pub email: Option<String>,
    pub consent_marketing: Source,
    pub consent_personalisation: Source,
    pub consent_at: Source,
    pub first_name: Option<String>,
    pub guesses: Vec<Guess>,
    pub notes: Vec<Note>,
    /// Mailchimp's unsubscribed and cleaned files found beside the export: people who
    /// left or bounced, for `tact suppress import`.
    pub leavers: Vec<PathBuf>,
}

/// Reads at most this many rows to judge values (consent words, types): enough to see a
/// platform's vocabulary, and `new` stays instant on a million-row export.
const SAMPLE_ROWS: usize = 5_000;

fn note(level: &'static str, text: impl Into<String>) -> Note {
    Note {
        level,
        text: text.into(),
    }
}

/// Inspects an export. Errors only when it cannot be read as CSV at all.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let raw = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut notes = Vec::new();
    let declared = match encoding_rs::Encoding::for_bom(&raw) {
        Some((e, _)) if e != encoding_rs::UTF_8 => {
            notes.push(note(
                "found",
                format!(
                    "encoding: {} with a byte-order mark (Excel's \"Unicode text\"), read as such",
                    e.name()
                ),
            ));
            None
        }
        _ if std::str::from_utf8(&raw).is_ok() => None,
        _ => {
            notes.push(note(
                "changed",
                "encoding: the file is not UTF-8; read as Windows-1252 (Excel's \"CSV\" on Windows), and the schema says so ([csv] encoding). Check that names with accents read right in the composer; if not, save the file as \"CSV UTF-8\" and delete that line",
            ));
            Some("windows-1252".to_string())
        }
    };
    let csv_format = schema::CsvFormat {
        delimiter: None,
        encoding: declared,
    };
    let format = Format::of(path, &csv_format)?;
    let text = format.decode(&raw);
    let text = String::from_utf8_lossy(&text);
    let text = text.trim_start_matches('\u{feff}');
    if format.delimiter != b',' {
        let name = match format.delimiter {
            b';' => "semicolons",
            b'\t' => "tabs",
            _ => "`|`",
        };
        notes.push(note("found", format!("separator: {name}")));
    }
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .delimiter(format.delimiter)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::input(Location::at(path, 1, 1), format!("not a CSV file: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    // The header `check` will read: what it refuses is refused here, before a schema it
    // could not load is written.
    let names = crate::audience::column_names(path, &headers)?;
    let mut sample: Vec<Vec<String>> = Vec::new();
    let mut rows = 0usize;
    for rec in rdr.records() {
        let Ok(rec) = rec else { continue };
        if rec.as_slice().len() > crate::audience::MAX_FIELD_BYTES
            && let Some(i) = rec
                .iter()
                .position(|f| f.len() > crate::audience::MAX_FIELD_BYTES)
        {
            let line = rec.position().map_or(0, |p| p.line());
            return Err(crate::audience::field_too_long(
                path,
                line,
                i,
                rec[i].len(),
                &names,
            ));
        }
        if rec.as_slice().len() + rec.len() > crate::audience::MAX_ROW_BYTES as usize {
            // The column in which the row passes the limit, separators counted.
            let mut end = 0;
            let column = rec
                .iter()
                .position(|f| {
                    end += f.len() + 1;
                    end > crate::audience::MAX_ROW_BYTES as usize
                })
                .map_or(rec.len(), |i| i + 1);
            let line = rec.position().map_or(0, |p| p.line());
            return Err(crate::audience::row_past_limit(path, line, column, &names));
        }
        rows += 1;
        if sample.len() < SAMPLE_ROWS {
            sample.push(rec.iter().map(str::to_string).collect());
        }
    }
    let column_values = |h: &str| -> Vec<&str> {
        let Some(i) = headers.iter().position(|x| x == h) else {
            return Vec::new();
        };
        sample
            .iter()
            .filter_map(|r| r.get(i).map(String::as_str))
            .collect()
    };
    let find = |candidates: &[&str]| -> Option<String> {
        candidates
            .iter()
            .find_map(|c| headers.iter().find(|h| names::same(h, c)).cloned())
    };
    let platform = Platform::detect(&headers);
    notes.insert(
        0,
        note(
            "found",
            format!(
                "{}: {} rows, {} columns",
                platform.label(),
                rows,
                headers.len()
            ),
        ),
    );

    let email = find(&[
        "email",
        "Email Address",
        "E-mail",
        "E-mail Address",
        "Email address",
    ]);
    let (consent_marketing, consent_personalisation, consent_at) = match platform {
        Platform::Mailchimp => (
            Source::Constant {
                value: "yes".into(),
                reason: "Mailchimp's subscribed-members export: being in it is the marketing consent (double opt-in when CONFIRM_TIME is set)".into(),
            },
            Source::Missing,
            find(&["CONFIRM_TIME", "OPTIN_TIME"]).map_or(Source::Missing, Source::Column),
        ),
        Platform::Shopify => (
            find(&["Accepts Email Marketing"]).map_or(Source::Missing, Source::Column),
            Source::Missing,
            Source::Missing,
        ),
        Platform::Klaviyo => (
            find(&["Email Marketing Consent"]).map_or(Source::Missing, |c| Source::Mapped {
                column: c,
                granted: vec!["SUBSCRIBED".into()],
            }),
            Source::Missing,
            find(&["Email Marketing Consent Timestamp"]).map_or(Source::Missing, Source::Column),
        ),
        Platform::HubSpot => (
            find(&["Legal basis for processing contact's data"]).map_or(Source::Missing, |c| {
                Source::Mapped {
                    column: c,
                    granted: vec!["Freely given consent from contact".into()],
                }
            }),
            Source::Missing,
            Source::Missing,
        ),
        Platform::WooCommerce | Platform::Generic => (
            find(&["consent_marketing"]).map_or(Source::Missing, Source::Column),
            find(&["consent_personalisation", "consent_personalization"])
                .map_or(Source::Missing, Source::Column),
            find(&["consent_at"]).map_or(Source::Missing, Source::Column),
        ),
    };
    let consent_marketing = match consent_marketing {
        // A flag in words tact does not read would mean "nobody consented": say which
        // words the column holds instead of guessing what they mean.
        Source::Column(c) => {
            let odd: Vec<&str> = column_values(&c)
                .into_iter()
                .filter(|v| !v.trim().is_empty())
                .filter(|v| !crate::consent::is_granted(v))
                .filter(|v| !["no", "n", "false", "0"].contains(&v.trim().to_lowercase().as_str()))
                .take(1)
                .collect();
            if !odd.is_empty() {
                let shown = names::excerpt(&c, 80);
                notes.push(note(
                    "missing",
                    format!("`{shown}` holds words tact does not read as consent: only yes, y, true, 1, opt-in, opted-in and granted grant. Name the granting values in the schema: consent_marketing = {{ column = \"{shown}\", granted = [\"…\"] }}"),
                ));
            }
            Source::Column(c)
        }
        other => other,
    };

    let role_columns: Vec<&str> = [&consent_marketing, &consent_personalisation, &consent_at]
        .into_iter()
        .filter_map(|s| match s {
            Source::Column(c) | Source::Mapped { column: c, .. } => Some(c.as_str()),
            _ => None,
        })
        .chain(email.as_deref())
        .collect();
    let guesses: Vec<Guess> = headers
        .iter()
        .filter(|h| !h.is_empty() && !role_columns.contains(&h.as_str()))
        .map(|h| guess(platform, h, &column_values(h)))
        .collect();
    let first_name = find(&[
        "first_name",
        "First Name",
        "FNAME",
        "Firstname",
        "Given Name",
    ]);

    say_roles(
        &mut notes,
        platform,
        email.as_deref(),
        &consent_marketing,
        &consent_personalisation,
        &consent_at,
    );
    let leavers = if platform == Platform::Mailchimp {
        leavers_beside(path)
    } else {
        Vec::new()
    };
    if platform == Platform::Mailchimp {
        let files = if leavers.is_empty() {
            "tact suppress import unsubscribed_members_export_….csv && tact suppress import cleaned_members_export_….csv (both in the same zip as this file)".to_string()
        } else {
            leavers
                .iter()
                .map(|p| format!("tact suppress import {}", p.display()))
                .collect::<Vec<_>>()
                .join(" && ")
        };
        notes.push(note(
            "todo",
            format!("Mailchimp's export also holds the people who unsubscribed and the addresses that bounced (cleaned): they must not be mailed from tact either. Run: {files}"),
        ));
    }
    for g in guesses.iter().filter(|g| g.review) {
        notes.push(note(
            "review",
            format!("`{}`: {}", names::excerpt(&g.header, 80), g.reason),
        ));
    }
    Ok(Inspection {
        audience: path.to_path_buf(),
        platform,
        format,
        headers,
        rows,
        email,
        consent_marketing,
        consent_personalisation,
        consent_at,
        first_name,
        guesses,
        notes,
        leavers,
    })
}

/// Mailchimp names its three files `subscribed_`, `unsubscribed_` and `cleaned_members_export_…`.
fn leavers_beside(path: &Path) -> Vec<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            (name.starts_with("unsubscribed") || name.starts_with("cleaned"))
                && name.ends_with(".csv")
        })
        .collect();
    found.sort();
    found
}

fn say_roles(
    notes: &mut Vec<Note>,
    platform: Platform,
    email: Option<&str>,
    marketing: &Source,
    personalisation: &Source,
    at: &Source,
) {
    match email {
        Some(e) => notes.push(note(
            "found",
            format!("addresses: `{}`", names::excerpt(e, 80)),
        )),
        None => notes.push(note(
            "missing",
            "no email column: nothing can be sent. Name it `email`, or map it in the schema ([columns] email = \"…\")",
        )),
    }
    match marketing {
        Source::Column(c) => notes.push(note(
            "found",
            format!("marketing consent: `{}`", names::excerpt(c, 80)),
        )),
        Source::Mapped { column, granted } => notes.push(note(
            "found",
            format!(
                "marketing consent: `{}`, granted by {}",
                names::excerpt(column, 80),
                granted.join(", ")
            ),
        )),
        Source::Constant { reason, .. } => {
            notes.push(note("found", format!("marketing consent: everyone in the file ({reason})")))
        }
        Source::Missing => notes.push(note(
            "missing",
            match platform {
                Platform::WooCommerce => "no marketing consent: WooCommerce does not record it in its customers export, so nobody can be mailed. Export your newsletter opt-ins (the checkout checkbox or your mailing plugin's list) as a consent_marketing column of yes/no and add it to this file".to_string(),
                Platform::HubSpot => "no marketing consent: export the contact property \"Legal basis for processing contact's data\" (or your subscription types) with the contacts, then run tact new again".to_string(),
                _ => "no consent_marketing column: nobody can be mailed (no_marketing_consent). Add a column with yes for each person who agreed to marketing email, or map yours in the schema".to_string(),
            },
        )),
    }
    match at {
        Source::Column(c) => notes.push(note(
            "found",
            format!("when they consented: `{}`", names::excerpt(c, 80)),
        )),
        Source::Missing => notes.push(note(
            "missing",
            match platform {
                Platform::Shopify => "no consent date: Shopify's customers export says whether someone accepts email marketing, not when they agreed, and tact will not invent a date. `tact check` will say undated-consent on every campaign: you cannot show that anyone's consent is current (GDPR Art. 7(1)), and consent older than your policy's limit cannot be caught. Add a consent_at column (YYYY-MM-DD: when they ticked the box, from Shopify's customer timeline or your signup records)".to_string(),
                _ => "no consent date column: `tact check` will say undated-consent on every campaign, because consent you cannot date cannot be shown to be current (GDPR Art. 7(1)) or caught when it is too old. Add a consent_at column (YYYY-MM-DD) with when each person agreed".to_string(),
            },
        )),
        _ => {}
    }
    if *personalisation == Source::Missing {
        notes.push(note(
            "missing",
            "no personalisation consent: everyone gets the generic email, which is complete on its own. To tailor messages, add a consent_personalisation column (yes/no) from a preference centre where people chose it",
        ));
    }
}

/// A class for one column from its name, with the cases exports bring that names alone
/// would misjudge.
fn guess(platform: Platform, header: &str, values: &[&str]) -> Guess {
    let words = names::words(header);
    let has = |w: &str| words.iter().any(|x| x == w);
    let ty =
        Some(schema::infer_type(values.iter().copied())).filter(|t| *t != schema::FieldType::Text);
    let make = |class, inferred, reason: &str, review| Guess {
        header: header.to_string(),
        class,
        inferred,
        ty,
        reason: reason.to_string(),
        review,
    };
    let upper = header.trim().to_ascii_uppercase();
    if platform == Platform::Mailchimp
        && ["GMTOFF", "DSTOFF", "TIMEZONE", "CC", "REGION"].contains(&upper.as_str())
    {
        return make(
            FieldClass::Behavioural,
            true,
            "Mailchimp's guess of where they are, from their IP address: inferred",
            false,
        );
    }
    if [
        "LEID",
        "EUID",
        "CUSTOMER ID",
        "RECORD ID",
        "KLAVIYO ID",
        "USERNAME",
    ]
    .contains(&upper.as_str())
    {
        return make(
            FieldClass::Routing,
            false,
            "the platform's id for the record",
            false,
        );
    }
    if [
        "OPTIN_TIME",
        "CONFIRM_TIME",
        "LAST_CHANGED",
        "PROFILE CREATED ON",
        "CREATE DATE",
    ]
    .contains(&upper.as_str())
    {
        return make(
            FieldClass::Routing,
            false,
            "the list's own record-keeping (when they joined or changed), not about their life",
            false,
        );
    }
    if has("phone") {
        return make(
            FieldClass::Routing,
            false,
            "a contact detail, for reaching them, never for the message",
            false,
        );
    }
    if has("latitude") || has("longitude") || has("lat") || has("lng") {
        return make(
            FieldClass::HighRisk,
            false,
            "precise location (where someone lives or was): never declared; CPRA treats precise geolocation as sensitive",
            false,
        );
    }
    if has("ip") {
        return make(
            FieldClass::QuasiIdentifier,
            false,
            "an IP address: an online identifier (GDPR Recital 30), not something to show anyone",
            false,
        );
    }
    if has("birthday") || has("birthdate") || (has("birth") && has("date")) || has("dob") {
        return make(
            FieldClass::QuasiIdentifier,
            false,
            "a birthday: with a postcode it singles people out",
            false,
        );
    }
    if has("rating") && has("member") {
        return make(
            FieldClass::Behavioural,
            true,
            "Mailchimp's engagement stars, computed from opens and clicks",
            false,
        );
    }
    if has("predicted")
        || has("prediction")
        || has("churn")
        || (has("lifetime") && has("value"))
        || has("clv")
    {
        let class = if has("gender") {
            FieldClass::QuasiIdentifier
        } else {
            FieldClass::Behavioural
        };
        return make(
            class,
            true,
            "a platform's prediction about the person: inferred, never told to us",
            false,
        );
    }
    if has("note") || has("notes") || has("tags") || has("tag") || has("comment") || has("comments")
    {
        return make(
            FieldClass::HighRisk,
            false,
            "free text: it may hold anything a colleague typed (health, complaints, family); read it before any campaign uses it",
            true,
        );
    }
    if let Some(c) = schema::classify_by_name(header) {
        let reason = format!("by its name ({})", c.base.as_str());
        return make(c.base, c.inferred, &reason, false);
    }
    make(
        FieldClass::Unclassified,
        false,
        "not recognised by name: classify it before a campaign uses it",
        true,
    )
}

/// `s` as a TOML basic string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `s` as a TOML key: bare when it can be, else a one-line basic string (a key may not be
/// a multi-line string, which is what `quoted` writes for a header with a line break).
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn role_line(role: &str, source: &Source) -> Option<String> {
    match source {
        Source::Column(c) if c != role => Some(format!("{role} = {}", quoted(c))),
        Source::Column(_) | Source::Missing => None,
        Source::Mapped { column, granted } => Some(format!(
            "{role} = {{ column = {}, granted = [{}] }}",
            quoted(column),
            granted
                .iter()
                .map(|g| quoted(g))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Source::Constant { value, reason } => Some(format!(
            "{role} = {{ value = {}, reason = {} }}",
            quoted(value),
            quoted(reason)
        )),
    }
}

impl Inspection {
    /// The schema beside the CSV: roles, the encoding if it is not UTF-8, and every other
    /// column's class with the reason for the guess.
    pub fn schema_toml(&self) -> String {
        let mut out = format!(
            "# Schema for {} ({}), written by `tact new`.\n# Every class below is a guess with its reason: read them, correct what is wrong.\n# Levels: routing 0 < declared 1 < transactional 2 < behavioural 3 = quasi-identifier 3\n#         < high-risk 4 < special 5.  `inferred = true` raises a field one level.\n",
            self.audience
                .file_name()
                .map(|n| names::excerpt(&n.to_string_lossy(), 200))
                .unwrap_or_default(),
            self.platform.label(),
        );
        if let Some(e) = self
            .format
            .encoding
            .filter(|e| *e != encoding_rs::UTF_16LE && *e != encoding_rs::UTF_16BE)
        {
            out.push_str(&format!("\n[csv]\n# The file is not UTF-8: tact reads it as this encoding.\nencoding = {}\n", quoted(&e.name().to_lowercase())));
        }
        out.push_str("\n[columns]\n");
        let mut any = false;
        if let Some(e) = self.email.as_deref().filter(|e| *e != "email") {
            out.push_str(&format!("email = {}\n", quoted(e)));
            any = true;
        }
        for (role, source) in [
            ("consent_marketing", &self.consent_marketing),
            ("consent_personalisation", &self.consent_personalisation),
            ("consent_at", &self.consent_at),
        ] {
            match role_line(role, source) {
                Some(l) => {
                    out.push_str(&l);
                    out.push('\n');
                    any = true;
                }
                None if *source == Source::Missing => {
                    out.push_str(&format!(
                        "# {role}: none in this file (see what `tact new` said)\n"
                    ));
                }
                None => {}
            }
        }
        if !any {
            out.push_str("# the role columns have tact's default names\n");
        }
        out.push_str("\n[fields]\n");
        for g in &self.guesses {
            let mut spec = vec![format!("class = {}", quoted(g.class.as_str()))];
            if g.inferred {
                spec.push("inferred = true".into());
            }
            if let Some(t) = g.ty {
                spec.push(format!("type = {}", quoted(t.as_str())));
            }
            let mark = if g.review { "REVIEW: " } else { "" };
            out.push_str(&format!(
                "# {mark}{}\n{} = {{ {} }}\n",
                g.reason,
                key(&g.header),
                spec.join(", ")
            ));
        }
        out
    }

    /// The campaign file, in `dir`, pointing at the CSV and the schema.
    pub fn campaign_toml(&self, name: &str, dir: &Path, schema: &Path) -> String {
        let audience = relative(dir, &self.audience);
        let schema = relative(dir, schema);
        format!(
            "# {name}: written by `tact new` from {}.\n# Change the subject, the sender and the footer, then `tact check` this file.\n\nname = {}\naudience = {}\nschema = {}\ntemplates = \"templates\"\ntemplate = {}\nsubject = \"News from us\"\npreheader = \"What is new this month, in two minutes\"\nfrom = \"Your Company <news@example.com>\"\nunsubscribe_url = \"https://example.com/unsubscribe\"\npostal_address = \"Your Company, 1 Example Street, Example City\"\n# segment = 'country == \"GB\"'\n# send_at = \"2026-12-01T09:00:00+00:00\"\n\n[policy]\n# min_segment_size = 50\n",
            self.platform.label(),
            quoted(name),
            quoted(&audience),
            quoted(&schema),
            quoted(name),
        )
    }

    /// The text template: a personalised greeting only for people who consented to it,
    /// a complete generic email for everyone else, and the footer every message needs.
    pub fn text_template(&self) -> String {
        let greeting = match self.first_name_var() {
            Some(v) => format!(
                "{{% if personalised and {v} %}}Hi {{{{ {v} }}}},{{% else %}}Hello,{{% endif %}}"
            ),
            None => "Hello,".to_string(),
        };
        format!(
            "{greeting}\n\nHere is what is new this month. Write one clear message here, with one link\nto where you want people to go:\n\nhttps://example.com/?utm_source=email&utm_medium=email&utm_campaign={{{{ campaign }}}}\n\nThanks for reading.\n\n--\n{{{{ why_you_got_this }}}}\nUnsubscribe: {{{{ unsubscribe_url }}}}\n{{{{ postal_address }}}}\n"
        )
    }

    pub fn html_template(&self) -> String {
        let greeting = match self.first_name_var() {
            Some(v) => format!(
                "{{% if personalised and {v} %}}Hi {{{{ {v} }}}},{{% else %}}Hello,{{% endif %}}"
            ),
            None => "Hello,".to_string(),
        };
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{{{{ campaign }}}}</title></head>\n<body style=\"font-family: sans-serif; line-height: 1.5; max-width: 36em; margin: auto;\">\n<div style=\"display:none\">{{{{ preheader }}}}</div>\n<p>{greeting}</p>\n<p>Here is what is new this month. Write one clear message here, with one link to where you want people to go.</p>\n<p><a href=\"https://example.com/?utm_source=email&amp;utm_medium=email&amp;utm_campaign={{{{ campaign | urlencode }}}}\">See what is new</a></p>\n<p>Thanks for reading.</p>\n<hr>\n<p style=\"font-size: small; color: #555;\">{{{{ why_you_got_this }}}}<br>\n<a href=\"{{{{ unsubscribe_url }}}}\">Unsubscribe</a><br>\n{{{{ postal_address }}}}</p>\n</body>\n</html>\n"
        )
    }

    /// The template variable of the first-name column, when the file has one.
    fn first_name_var(&self) -> Option<String> {
        self.first_name.as_deref().map(names::normalise_name)
    }
}

/// Where `tact new` writes the campaign when no folder is given (the composer too).
pub const DEFAULT_DIR: &str = "campaigns";

/// The files `tact new NAME` writes for an audience: the schema beside the CSV, the
/// campaign in `dir`, its two templates in `dir/templates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    pub schema: PathBuf,
    pub campaign: PathBuf,
    pub text: PathBuf,
    pub html: PathBuf,
}

impl Targets {
    pub fn new(name: &str, audience: &Path, dir: &Path) -> Targets {
        let stem = audience
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let templates = dir.join("templates");
        Targets {
            schema: audience.with_file_name(format!("{stem}.schema.toml")),
            campaign: dir.join(format!("{name}.toml")),
            text: templates.join(format!("{name}.txt.tera")),
            html: templates.join(format!("{name}.html.tera")),
        }
    }

    /// The campaign files already there, a link to nowhere included (it would be written
    /// through). A schema already there is no obstacle: it is kept as the marketer left it.
    pub fn taken(&self) -> Vec<PathBuf> {
        [&self.campaign, &self.text, &self.html]
            .into_iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .cloned()
            .collect()
    }
}

/// Why `tact new NAME` cannot write into `dir`, known before the file is read: a name the
/// campaign rule refuses, or campaign files of that name already there.
pub fn refusal(name: &str, audience: &Path, dir: &Path) -> Option<Error> {
    if let Some(why) = names::campaign_name_refusal(name) {
        return Some(Error::CampaignName {
            name: name.to_string(),
            why,
        });
    }
    if dir.exists() && !dir.is_dir() {
        return Some(Error::input(
            Location::file(dir),
            "is a file: --dir names the folder the campaign goes in",
        ));
    }
    if audience.is_dir() {
        return Some(Error::input(
            Location::file(audience),
            "is a folder: --audience names the export (a CSV file)",
        ));
    }
    let taken = Targets::new(name, audience, dir).taken();
    (!taken.is_empty()).then_some(Error::Exists { paths: taken })
}

/// What `tact new` found in the file and what it wrote.
#[derive(Debug, Clone)]
pub struct Created {
    pub found: Inspection,
    pub targets: Targets,
    /// A schema was beside the CSV already: it was kept, not changed.
    pub kept_schema: bool,
}

/// `tact new NAME --audience FILE --dir DIR`, for the command and the composer alike:
/// inspects the export and writes the schema (unless one is there), the campaign and its
/// templates. Never writes over a file; when a write fails, what this call made is
/// removed again, so a second try starts clean.
pub fn create(name: &str, audience: &Path, dir: &Path) -> Result<Created> {
    if let Some(e) = refusal(name, audience, dir) {
        return Err(e);
    }
    let found = inspect(audience)?;
    let targets = Targets::new(name, audience, dir);
    let kept_schema = targets.schema.exists();
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).map_err(|source| Error::Write {
        path: templates.clone(),
        source,
    })?;
    let mut files = Vec::new();
    if !kept_schema {
        files.push((targets.schema.clone(), found.schema_toml()));
    }
    files.push((
        targets.campaign.clone(),
        found.campaign_toml(name, dir, &targets.schema),
    ));
    files.push((targets.text.clone(), found.text_template()));
    files.push((targets.html.clone(), found.html_template()));
    let mut made: Vec<PathBuf> = Vec::new();
    for (path, text) in files {
        if let Err(e) = write_new(&path, &text) {
            for m in &made {
                let _ = std::fs::remove_file(m);
            }
            return Err(e);
        }
        made.push(path);
    }
    Ok(Created {
        found,
        targets,
        kept_schema,
    })
}

/// Creates `path`, failing if something appeared there since `refusal` looked.
fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists {
                    paths: vec![path.to_path_buf()],
                }
            } else {
                Error::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    if let Err(source) = f.write_all(text.as_bytes()) {
        let _ = std::fs::remove_file(path);
        return Err(Error::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

impl Created {
    /// What `new` says, heading by heading: what it recognised, what it read differently,
    /// what is missing and what that means, what to do before the first send, the columns
    /// to read, and what it wrote. Empty headings are left out. Column names and counts
    /// only: never a value from the file.
    pub fn report(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut out = Vec::new();
        for (level, title) in [
            ("found", "Recognised:"),
            ("changed", "Read differently:"),
            ("missing", "Missing, and what it means:"),
            ("todo", "To do before the first send:"),
            ("review", "Read these columns before a campaign uses them:"),
        ] {
            let lines: Vec<String> = self
                .found
                .notes
                .iter()
                .filter(|n| n.level == level)
                .map(|n| n.text.clone())
                .collect();
            if !lines.is_empty() {
                out.push((title, lines));
            }
        }
        let t = &self.targets;
        let schema = if self.kept_schema {
            format!("kept your schema {} (not changed)", t.schema.display())
        } else {
            format!(
                "{} (every column's class, with the reason for the guess)",
                t.schema.display()
            )
        };
        let templates = t.text.parent().unwrap_or(Path::new("."));
        out.push((
            "Wrote:",
            vec![
                schema,
                t.campaign.display().to_string(),
                format!("its templates in {}", templates.display()),
            ],
        ));
        out
    }
}

/// `target` as a path from `dir` (both as given, made absolute against the current
/// folder), so the campaign still finds it when the folder is moved together.
fn relative(dir: &Path, target: &Path) -> String {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|c| c.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        }
    };
    let (d, t) = (normalise(&abs(dir)), normalise(&abs(target)));
    let common = d
        .components()
        .zip(t.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in d.components().skip(common) {
        out.push("..");
    }
    for c in t.components().skip(common) {
        out.push(c);
    }
    out.to_string_lossy().into_owned()
}

fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_go_up_and_across() {
        assert_eq!(
            relative(Path::new("/a/b/campaigns"), Path::new("/a/b/data/x.csv")),
            "../data/x.csv"
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b/x.csv")),
            "x.csv"
        );
    }

    #[test]
    fn guesses_for_the_columns_exports_bring() {
        let guess = |h: &str, v: &[&str]| guess(Platform::Mailchimp, h, v);
        let class = |h: &str| guess(h, &[]).class;
        assert_eq!(class("LATITUDE"), FieldClass::HighRisk);
        assert_eq!(class("Longitude"), FieldClass::HighRisk);
        assert_eq!(class("OPTIN_IP"), FieldClass::QuasiIdentifier);
        assert_eq!(class("CC"), FieldClass::Behavioural);
        assert_eq!(
            super::guess(Platform::Generic, "CC", &[]).class,
            FieldClass::Unclassified
        );
        assert_eq!(class("IP Address"), FieldClass::QuasiIdentifier);
        assert_eq!(class("Birthday"), FieldClass::QuasiIdentifier);
        assert!(guess("MEMBER_RATING", &[]).inferred);
        let g = guess("Predicted Gender", &[]);
        assert_eq!((g.class, g.inferred), (FieldClass::QuasiIdentifier, true));
        assert!(guess("Churn Risk Prediction", &[]).inferred);
        assert!(guess("Predicted Customer Lifetime Value", &[]).inferred);
        assert!(guess("Tags", &[]).review && guess("Note", &[]).review);
        // Near misses: a word inside another word does not count.
        assert_ne!(class("Shipping"), FieldClass::QuasiIdentifier);
        assert_ne!(class("Relationship"), FieldClass::QuasiIdentifier);
    }
}
