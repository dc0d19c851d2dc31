//! `why_you_got_this`, the sentence at the foot of every message: why it came and, in a
//! personalised one, which of the recipient's fields it uses and where each came from, in
//! the words the check report shows the marketer (`schema::Origin::words`).
//!
//! It names fields and origins and gives ages; never a value. The per-campaign part is
//! made once (`Why::new`); per recipient only the consent date, which fields they have a
//! value for, and the ages are added, since this runs for every recipient in check and
//! again in send.

use chrono::{DateTime, Datelike, Utc};

use crate::audience::{Audience, Role};
use crate::campaign::Campaign;
use crate::plan::FieldInfo;
use crate::schema::{FieldClass, Origin, Schema};

/// An age as the recipient reads it: "today", "1 day ago", "12 days ago", and above 60
/// days "3 months ago" (whole months of 30 days).
pub fn age_words(days: u32) -> String {
    match days {
        0 => "today".to_string(),
        1 => "1 day ago".to_string(),
        2..=60 => format!("{days} days ago"),
        _ => format!("{} months ago", days / 30),
    }
}

/// Whole days from `then` to `now`; a time in the future is today.
pub fn days_between(then: DateTime<Utc>, now: DateTime<Utc>) -> u32 {
    u32::try_from((now - then).num_days().max(0)).unwrap_or(u32::MAX)
}

/// A field as a recipient reads its name: the schema's `label`, else "your" and the
/// words of the column name (`first_name` → "your first name", `LastOrderAt` → "your
/// last order date").
pub fn label(name: &str, schema: &Schema) -> String {
    if let Some(l) = schema.field(name).and_then(|f| f.label.as_deref()) {
        return l.trim().to_string();
    }
    let mut words = crate::names::words(name);
    if words.len() > 1 && matches!(words.last().map(String::as_str), Some("at" | "on")) {
        words.pop();
        words.push("date".into());
    }
    if matches!(words.first().map(String::as_str), Some("your" | "my")) {
        words.remove(0);
    }
    format!("your {}", words.join(" "))
}

/// The campaign's part of the sentence, made once.
#[derive(Debug, Clone)]
pub struct Why {
    /// "You get this because you opted in to Northwind news".
    opening: String,
    /// The fields a personalised message uses, by origin then label.
    fields: Vec<Named>,
}

#[derive(Debug, Clone)]
struct Named {
    label: String,
    origin: Origin,
    /// The audience column of its values (a field a row leaves empty is not named).
    column: Option<usize>,
    /// The audience column saying when they were observed.
    observed: Option<usize>,
}

impl Why {
    /// The fields are those the templates or the segment use, less routing fields and
    /// the role columns (address and consent), which every message relies on alike.
    pub fn new(
        campaign: &Campaign,
        schema: &Schema,
        audience: &Audience,
        fields: &[FieldInfo],
    ) -> Why {
        let brand = campaign
            .from
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| campaign.from_domain().to_string());
        let header = &audience.header;
        let roles: Vec<&str> = [
            Role::Email,
            Role::ConsentMarketing,
            Role::ConsentPersonalisation,
            Role::ConsentAt,
        ]
        .into_iter()
        .filter_map(|r| header.role_index(r).and_then(|i| header.names.get(i)))
        .map(String::as_str)
        .collect();
        let mut named: Vec<Named> = fields
            .iter()
            .filter(|f| f.class.base != FieldClass::Routing)
            .filter(|f| !roles.iter().any(|r| crate::names::same(r, &f.name)))
            .map(|f| Named {
                label: label(&f.name, schema),
                origin: f.origin,
                column: audience.column_index(&f.name),
                observed: f
                    .observed_at
                    .as_deref()
                    .and_then(|o| audience.column_index(o)),
            })
            .collect();
        named.sort_by(|a, b| (a.origin, &a.label).cmp(&(b.origin, &b.label)));
        Why {
            opening: format!("You get this because you opted in to {brand} news"),
            fields: named,
        }
    }

    /// The generic message's sentence: it uses no customer field, so it names none.
    pub fn generic(&self, consent_at: Option<DateTime<Utc>>) -> String {
        format!("{}{}.", self.opening, when(consent_at))
    }

    /// One recipient's personalised sentence: the fields their row has a value for, each
    /// dated value with its age on `now`.
    pub fn personalised(
        &self,
        audience: &Audience,
        row: usize,
        consent_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> String {
        let value = |c: Option<usize>| c.map_or("", |c| audience.columns[c].data.get(row));
        let named = self
            .fields
            .iter()
            .filter(|n| n.column.is_none() || !value(n.column).trim().is_empty())
            .map(|n| {
                let age = n
                    .observed
                    .and_then(|_| crate::consent::parse_time(value(n.observed)))
                    .map(|t| days_between(t, now));
                (n, age)
            });
        self.sentence(consent_at, named)
    }

    /// A test message's sentence for the sample person, who has a value in every field
    /// and no dates.
    pub fn sample(&self, consent_at: Option<DateTime<Utc>>, personalised: bool) -> String {
        if personalised {
            self.sentence(consent_at, self.fields.iter().map(|n| (n, None)))
        } else {
            self.generic(consent_at)
        }
    }

    /// "…, and to content tailored to you. It uses your first name and your postcode (you
    /// told us) and the product you last viewed (from what you browsed, 3 days ago)."
    /// Undated fields of one origin share their words; a dated one has its own.
    fn sentence<'a>(
        &self,
        consent_at: Option<DateTime<Utc>>,
        named: impl Iterator<Item = (&'a Named, Option<u32>)>,
    ) -> String {
        let mut out = format!(
            "{}{}, and to content tailored to you.",
            self.opening,
            when(consent_at)
        );
        let mut items: Vec<String> = Vec::new();
        let mut group: Vec<&str> = Vec::new();
        let mut dated: Vec<String> = Vec::new();
        let mut origin = None;
        let flush = |origin: Option<Origin>,
                     group: &mut Vec<&str>,
                     dated: &mut Vec<String>,
                     items: &mut Vec<String>| {
            if let (Some(o), false) = (origin, group.is_empty()) {
                items.push(format!("{} ({})", joined(group), o.words()));
            }
            items.append(dated);
            group.clear();
        };
        for (n, age) in named {
            if origin != Some(n.origin) {
                flush(origin, &mut group, &mut dated, &mut items);
                origin = Some(n.origin);
            }
            match age {
                Some(days) => dated.push(format!(
                    "{} ({}, {})",
                    n.label,
                    n.origin.words(),
                    age_words(days)
                )),
                None => group.push(&n.label),
            }
        }
        flush(origin, &mut group, &mut dated, &mut items);
        if !items.is_empty() {
            let items: Vec<&str> = items.iter().map(String::as_str).collect();
            out.push_str(" It uses ");
            out.push_str(&joined(&items));
            out.push('.');
        }
        out
    }
}

/// "a", "a and b", "a, b and c".
fn joined(parts: &[&str]) -> String {
    match parts {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// " on 12 March 2025", by hand rather than with `format("%-d %B %Y")`, which parses its
/// pattern each time.
fn when(consent_at: Option<DateTime<Utc>>) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    consent_at
        .map(|t| {
            format!(
                " on {} {} {}",
                t.day(),
                MONTHS[t.month0() as usize],
                t.year()
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plan::Prepared;
    use crate::state::Keys;

    fn now() -> DateTime<Utc> {
        crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
    }

    const SCHEMA: &str = "[fields]\nlast_viewed_product = { class = \"behavioural\", observed_at = \"last_viewed_at\", label = \"the product you last viewed\" }\nlast_viewed_at = { class = \"behavioural\", type = \"date\" }\nchurn_score = { class = \"behavioural\", inferred = true }\ncountry = { class = \"routing\" }\n";
    const HEADER: &str = "email,consent_marketing,consent_personalisation,consent_at,first_name,total_spent,last_viewed_product,last_viewed_at,churn_score,country,postcode\n";

    /// A campaign over `rows` (CSV lines after the header) printing `body` when
    /// personalised, with `segment` if given.
    fn prepared(rows: &[String], body: &str, segment: &str) -> (tempfile::TempDir, Prepared) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("people.csv"), format!("{HEADER}{}", rows.join(""))).unwrap();
        std::fs::write(d.join("people.schema.toml"), SCHEMA).unwrap();
        std::fs::create_dir(d.join("templates")).unwrap();
        std::fs::write(
            d.join("templates/t.txt.tera"),
            format!("{{% if personalised %}}{body}{{% endif %}}\n{{{{ why_you_got_this }}}}\n{{{{ unsubscribe_url }}}} {{{{ postal_address }}}}"),
        )
        .unwrap();
        let segment = if segment.is_empty() {
            String::new()
        } else {
            format!("segment = '{segment}'\n")
        };
        std::fs::write(
            d.join("t.toml"),
            format!("name = \"t\"\naudience = \"people.csv\"\ntemplate = \"t\"\nsubject = \"Hello\"\nfrom = \"Shop <news@shop.example>\"\nunsubscribe_url = \"https://shop.example/u\"\npostal_address = \"1 Road, Town\"\n{segment}"),
        )
        .unwrap();
        let p = Prepared::load(&d.join("t.toml"), now()).unwrap();
        (dir, p)
    }

    fn row(i: usize, first: &str, product: &str, viewed: &str) -> String {
        format!(
            "p{i}@x.example,yes,yes,2026-01-01,{first},{i}.5,{product},{viewed},0.3,GB,BS1 1AA\n"
        )
    }

    fn why(p: &Prepared, row: usize, personalised: bool) -> String {
        p.tool_vars(&Keys::from_master(&[3; 32]), row, personalised)
            .0
            .why_you_got_this
    }

    const ALL: &str = "{{ first_name }} {{ total_spent }} {{ last_viewed_product }} {{ churn_score }} {{ country }}";

    #[test]
    fn a_personalised_footer_names_each_field_with_its_origin_and_age() {
        let rows = [
            row(0, "Ann", "Kettle", "2026-11-20"),
            row(1, "", "", "2026-11-20"),
            row(2, "Bo", "Kettle", "not a date"),
            row(3, "Cy", "Kettle", "2026-08-20"),
            row(4, "Di", "Kettle", "2026-11-23"),
            row(5, "Ed", "Kettle", "2026-11-22"),
        ];
        let (_dir, p) = prepared(&rows, ALL, "");
        let lead = "You get this because you opted in to Shop news on 1 January 2026, and to content tailored to you.";
        assert_eq!(
            why(&p, 0, true),
            format!(
                "{lead} It uses your first name (you told us), your total spent (from your orders), the product you last viewed (from what you browsed, 3 days ago) and your churn score (we estimated)."
            )
        );
        // A field the row leaves empty is not named; the routing country never is.
        assert_eq!(
            why(&p, 1, true),
            format!(
                "{lead} It uses your total spent (from your orders) and your churn score (we estimated)."
            )
        );
        // No readable date: the origin without an age.
        assert!(
            why(&p, 2, true).contains("the product you last viewed (from what you browsed) and"),
            "{}",
            why(&p, 2, true)
        );
        assert!(why(&p, 3, true).contains("(from what you browsed, 3 months ago)"));
        assert!(why(&p, 4, true).contains("(from what you browsed, today)"));
        assert!(why(&p, 5, true).contains("(from what you browsed, 1 day ago)"));
        // The generic variant: today's sentence, exactly.
        for r in 0..rows.len() {
            assert_eq!(
                why(&p, r, false),
                "You get this because you opted in to Shop news on 1 January 2026."
            );
        }
    }

    #[test]
    fn undated_fields_of_one_origin_share_their_words() {
        let (_dir, p) = prepared(
            &[row(0, "Ann", "Kettle", "2026-11-20")],
            "{{ first_name }} {{ postcode }} {{ last_viewed_product }}",
            "total_spent > 0",
        );
        // total_spent only selects (the segment): it is named too.
        assert_eq!(
            why(&p, 0, true),
            "You get this because you opted in to Shop news on 1 January 2026, and to content tailored to you. It uses your first name and your postcode (you told us), your total spent (from your orders) and the product you last viewed (from what you browsed, 3 days ago)."
        );
        // Nothing above routing: the sentence of before.
        let (_dir, p) = prepared(&[row(0, "Ann", "Kettle", "x")], "{{ country }}", "");
        assert_eq!(
            why(&p, 0, true),
            "You get this because you opted in to Shop news on 1 January 2026, and to content tailored to you."
        );
    }

    /// Every value a canary, markup and a line break included: the footer holds none of
    /// them, in either variant, and the self-checks (whole row against the fields found,
    /// and the canary renders) still agree.
    #[test]
    fn no_value_ever_reaches_the_footer() {
        let canary = |i: usize, f: &str| format!("\"CANARY{i}{f} <b>x</b>\nend\"");
        let rows: Vec<String> = (0..12)
            .map(|i| {
                format!(
                    "p{i}@x.example,yes,yes,2026-01-01,{},{},{},{},{},GB,{}\n",
                    canary(i, "first"),
                    canary(i, "total"),
                    canary(i, "product"),
                    if i % 2 == 0 {
                        "2026-11-01".to_string()
                    } else {
                        canary(i, "seen")
                    },
                    canary(i, "churn"),
                    canary(i, "post"),
                )
            })
            .collect();
        let (_dir, p) = prepared(&rows, ALL, "");
        for r in 0..rows.len() {
            for personalised in [true, false] {
                let w = why(&p, r, personalised);
                assert!(!w.to_lowercase().contains("canary"), "{w}");
                assert!(!w.contains('<') && !w.contains('\n'), "{w}");
            }
            assert!(why(&p, r, true).contains("your first name (you told us)"));
        }
        let keys = Keys::from_master(&[3; 32]);
        assert!(crate::check::self_check(&p, &keys).is_empty());
        assert!(crate::check::canary_check(&p, &keys).misses.is_empty());
    }

    #[test]
    fn names_ages_and_lists_in_words() {
        let schema = Schema::default();
        assert_eq!(label("first_name", &schema), "your first name");
        assert_eq!(label("LastOrderAt", &schema), "your last order date");
        assert_eq!(label("your_size", &schema), "your size");
        assert_eq!(label("at", &schema), "your at");
        assert_eq!(age_words(0), "today");
        assert_eq!(age_words(1), "1 day ago");
        assert_eq!(age_words(60), "60 days ago");
        assert_eq!(age_words(61), "2 months ago");
        assert_eq!(age_words(400), "13 months ago");
        assert_eq!(joined(&["a"]), "a");
        assert_eq!(joined(&["a", "b"]), "a and b");
        assert_eq!(joined(&["a", "b", "c"]), "a, b and c");
    }

    #[test]
    fn a_label_is_a_few_words_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.schema.toml");
        for (label, says) in [
            ("\"\"", "is empty"),
            ("\"a\\nb\"", "line break"),
            (&format!("\"{}\"", "x".repeat(61)), "longer than 60"),
        ] {
            std::fs::write(
                &path,
                format!("[fields]\nfirst_name = {{ class = \"declared\" }}\nnick = {{ class = \"declared\", label = {label} }}\n"),
            )
            .unwrap();
            let e = Schema::load(&path).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("s.schema.toml:3"), "{e}");
        }
    }
}
