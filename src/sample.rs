//! The synthetic sample person a test message is rendered for: "Alex Taylor", with a
//! plausible value for every field the templates use, made from the field's name, type and
//! class, never from one customer's row. A test goes to whatever address the marketer
//! typed (a colleague, a seed list, a vendor); a real customer's name, favourite category
//! and tier must not go with it.
//!
//! Values, by the field:
//! - names: `first_name` (and `given_name`, `forename`, `FirstName` …) is `Alex`, a surname
//!   is `Taylor`, a whole name `Alex Taylor`, an address `alex.taylor@example.com`
//!   (RFC 2606's reserved domain);
//! - `date`: a recent date, 14 days before "now" (a birth date: 35 years before);
//! - `number`: a round number: 35 for an age, 3 for a count, 0.5 for a score or rate,
//!   100 otherwise;
//! - `bool`: true, spelled as the column spells it (`yes`, `Y`, `true` …);
//! - `text`: `sample <field name>`; except that a `routing` or `declared` column of few
//!   distinct values (a country, a language, a tier) shows its most common value when at
//!   least [`MIN_SHARED`] rows share it. A value that many people share is no one's personal
//!   data (the same threshold as the `micro-segment` rule: cells under 11 are suppressed),
//!   and it makes the test read like the real thing. Stronger classes never do: their
//!   values are about what a person did or is.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, TimeDelta, Utc};

use crate::audience::Column;
use crate::names;
use crate::plan::Prepared;
use crate::schema::{FieldClass, FieldType};

/// The fewest rows that must share a text value before a test shows it.
pub const MIN_SHARED: usize = 11;
/// Above this many distinct values a text column is treated as free text (a placeholder).
pub const MAX_DISTINCT: usize = 50;

pub const FIRST_NAME: &str = "Alex";
pub const LAST_NAME: &str = "Taylor";

/// The sample person's value of each customer field the templates use, by variable name.
pub fn person(p: &Prepared) -> Vec<(String, String)> {
    p.render_columns()
        .map(|(name, col)| {
            let class = p.field(name).map(|f| f.class.class());
            (name.to_string(), value(name, class, col, p.now))
        })
        .collect()
}

/// The sample value of one field.
pub fn value(name: &str, class: Option<FieldClass>, col: &Column, now: DateTime<Utc>) -> String {
    let words = names::words(name);
    let squashed = words.concat();
    let has = |any: &[&str]| words.iter().any(|w| any.contains(&w.as_str()));
    if matches!(
        squashed.as_str(),
        "firstname" | "givenname" | "forename" | "fname" | "nickname" | "preferredname"
    ) {
        return FIRST_NAME.into();
    }
    if matches!(
        squashed.as_str(),
        "lastname" | "surname" | "familyname" | "lname"
    ) {
        return LAST_NAME.into();
    }
    if matches!(squashed.as_str(), "name" | "fullname" | "displayname") {
        return format!("{FIRST_NAME} {LAST_NAME}");
    }
    if has(&["email", "mail"]) || squashed == "emailaddress" {
        return "alex.taylor@example.com".into();
    }
    match col.ty {
        FieldType::Date => {
            let day = if has(&["birth", "dob", "birthday"]) {
                let d = now.date_naive();
                d.with_year(d.year() - 35).unwrap_or(d)
            } else {
                (now - TimeDelta::days(14)).date_naive()
            };
            day.format("%Y-%m-%d").to_string()
        }
        FieldType::Number => if has(&["age"]) {
            "35"
        } else if has(&[
            "count",
            "orders",
            "items",
            "visits",
            "opens",
            "clicks",
            "quantity",
            "qty",
            "number",
            "purchases",
        ]) {
            "3"
        } else if has(&[
            "score",
            "probability",
            "propensity",
            "likelihood",
            "rate",
            "ratio",
        ]) {
            "0.5"
        } else {
            "100"
        }
        .into(),
        FieldType::Bool => true_spelling(col),
        FieldType::Text => {
            let shared = matches!(class, Some(FieldClass::Routing | FieldClass::Declared))
                .then(|| most_shared(col))
                .flatten();
            shared.unwrap_or_else(|| format!("sample {}", words.join(" ")))
        }
    }
}

/// The column's most common spelling of "true", or `true`.
fn true_spelling(col: &Column) -> String {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for v in col.data.iter() {
        let v = v.trim();
        if crate::schema::parse_bool(v) == Some(true) {
            *seen.entry(v).or_default() += 1;
            if seen.len() > 8 {
                break;
            }
        }
    }
    top(seen).map_or_else(|| "true".into(), |(v, _)| v.to_string())
}

/// The value at least `MIN_SHARED` rows share, when the column has few distinct values.
fn most_shared(col: &Column) -> Option<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for v in col.data.iter() {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        *seen.entry(v).or_default() += 1;
        if seen.len() > MAX_DISTINCT {
            return None;
        }
    }
    top(seen)
        .filter(|(_, n)| *n >= MIN_SHARED)
        .map(|(v, _)| v.to_string())
}

/// The most frequent entry; ties go to the first in order, so a test renders the same twice.
fn top(seen: HashMap<&str, usize>) -> Option<(&str, usize)> {
    seen.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn prepared(csv: &str, schema: &str, text: &str) -> (tempfile::TempDir, Prepared) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("templates")).unwrap();
        std::fs::write(root.join("people.csv"), csv).unwrap();
        std::fs::write(root.join("people.schema.toml"), schema).unwrap();
        std::fs::write(root.join("templates/t.txt.tera"), text).unwrap();
        std::fs::write(
            root.join("c.toml"),
            "name = \"c\"\naudience = \"people.csv\"\ntemplate = \"t\"\nsubject = \"Hi\"\n\
             from = \"Shop <news@shop.example>\"\nunsubscribe_url = \"https://shop.example/u\"\n\
             postal_address = \"1 Road\"\n",
        )
        .unwrap();
        let now = crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap();
        let p = Prepared::load(&root.join("c.toml"), now).unwrap();
        (dir, p)
    }

    #[test]
    fn the_sample_person_is_made_of_types_and_names_not_of_rows() {
        let mut csv = String::from(
            "email,consent_marketing,consent_personalisation,first_name,Surname,favourite_category,\
             country,last_order_at,total_spent,order_count,vip,note\n",
        );
        for i in 0..30 {
            // Every customer value is a canary; only the country is shared by many.
            let country = if i < 12 { "GB" } else { &*format!("C{i}") };
            csv.push_str(&format!(
                "p{i}@x.example,yes,yes,CanaryFirst{i},CanaryLast{i},CanaryCat{i},{country},\
                 2020-01-{:02},{}7.13,{},yes,CanaryNote{i}\n",
                i % 28 + 1,
                i + 1000,
                i + 40
            ));
        }
        let (_d, p) = prepared(
            &csv,
            "[fields]\ncountry = { class = \"declared\" }\nnote = { class = \"behavioural\" }\n",
            "{{ first_name }} {{ Surname }} {{ favourite_category }} {{ country }} \
             {{ last_order_at }} {{ total_spent }} {{ order_count }} {{ vip }} {{ note }} \
             {{ unsubscribe_url }} {{ postal_address }}",
        );
        let person: HashMap<String, String> = person(&p).into_iter().collect();
        assert_eq!(person["first_name"], "Alex");
        assert_eq!(person["Surname"], "Taylor");
        assert_eq!(person["favourite_category"], "sample favourite category");
        assert_eq!(person["country"], "GB", "12 rows share it");
        assert_eq!(person["last_order_at"], "2026-11-09");
        assert_eq!(person["total_spent"], "100");
        assert_eq!(person["order_count"], "3");
        assert_eq!(person["vip"], "yes");
        assert_eq!(
            person["note"], "sample note",
            "behavioural text is never shown"
        );
        for v in person.values() {
            assert!(!v.contains("Canary"), "{v}");
        }
    }

    #[test]
    fn a_text_value_shared_by_ten_rows_is_still_someones() {
        let mut csv = String::from("email,consent_marketing,consent_personalisation,tier\n");
        for i in 0..20 {
            let tier = if i < MIN_SHARED - 1 {
                "Gold"
            } else {
                &*format!("T{i}")
            };
            csv.push_str(&format!("p{i}@x.example,yes,yes,{tier}\n"));
        }
        let (_d, p) = prepared(
            &csv,
            "[fields]\ntier = { class = \"declared\" }\n",
            "{{ tier }} {{ unsubscribe_url }} {{ postal_address }}",
        );
        assert_eq!(person(&p), vec![("tier".into(), "sample tier".into())]);
    }
}
