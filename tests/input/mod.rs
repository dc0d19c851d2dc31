//! Hostile input through `tact check`: headers spelt every way an export spells them,
//! missing role columns, and segments and CSV fields built to exhaust the stack or memory.
//! Every assertion is on what `check` prints, never on tact's own analysis.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// A campaign folder: `people.csv`, `templates/t.txt.tera` and `t.toml`.
struct Fixture {
    dir: tempfile::TempDir,
}

const ROWS: usize = 30;

impl Fixture {
    /// `header` columns after `email,consent_marketing,consent_personalisation,consent_at`
    /// unless `header` starts its own roles (`roles_in_header`), every value `value`; the
    /// body renders `body_vars`.
    fn new(header: &str, value: &str, body_vars: &[&str], segment: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let width = header.split(',').count();
        let mut csv = format!("{header}\n");
        for i in 0..ROWS {
            let row: Vec<String> = header
                .split(',')
                .map(|h| match crate_role(h) {
                    Some("email") => format!("p{i}@shop.example"),
                    Some("consent_at") => "2026-11-01".to_string(),
                    Some(_) => "yes".to_string(),
                    None => value.to_string(),
                })
                .collect();
            assert_eq!(row.len(), width);
            writeln!(csv, "{}", row.join(",")).unwrap();
        }
        std::fs::write(d.join("people.csv"), csv).unwrap();
        std::fs::create_dir(d.join("templates")).unwrap();
        let mut body = String::from("{% if personalised %}");
        for v in body_vars {
            write!(body, "{{{{ {v} }}}} ").unwrap();
        }
        body.push_str("{% endif %}{{ unsubscribe_url }} {{ postal_address }}");
        std::fs::write(d.join("templates/t.txt.tera"), body).unwrap();
        let mut campaign = String::from(
            r#"name = "t"
audience = "people.csv"
template = "t"
subject = "Hello"
from = "Shop <news@shop.example>"
unsubscribe_url = "https://shop.example/u"
postal_address = "1 Road, Town"
"#,
        );
        if let Some(s) = segment {
            writeln!(campaign, "segment = {}", toml_string(s)).unwrap();
        }
        campaign.push_str("[policy]\nmin_segment_size = 1\n");
        std::fs::write(d.join("t.toml"), campaign).unwrap();
        Fixture { dir }
    }

    fn campaign(&self) -> PathBuf {
        self.dir.path().join("t.toml")
    }

    fn check_json(&self) -> (Run, Value) {
        let state = self.dir.path().join("state");
        let r = run(tact(&state).arg("check").arg(self.campaign()).arg("--json"));
        let v = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
        (r, v)
    }

    fn check(&self) -> Run {
        let state = self.dir.path().join("state");
        run(tact(&state).arg("check").arg(self.campaign()))
    }
}

/// The role a fixture header plays, as the test (not tact) decides it: the four default
/// names in any case and with any separators.
fn crate_role(h: &str) -> Option<&'static str> {
    let squashed: String = h
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    match squashed.as_str() {
        "email" => Some("email"),
        "consentmarketing" => Some("consent_marketing"),
        "consentpersonalisation" => Some("consent_personalisation"),
        "consentat" => Some("consent_at"),
        _ => None,
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["fields"].as_array()?.iter().find(|f| f["name"] == name)
}

fn rules(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["rule"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

const ROLES: &str = "email,consent_marketing,consent_personalisation,consent_at";

/// Every class of DESIGN §4, spelt the ways exports spell it: the header, the variable
/// it becomes, the class, and the verdict `check` must reach with that field alone in the
/// body. A quasi-identifier alone is only a notice, so each is paired with `gender` to
/// show the combination caution fires (an unclassified field would not raise it).
#[test]
fn field_classes_ignore_case_separators_and_camel_case() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("Diagnosis", "Diagnosis", "special", "block"),
        ("DIAGNOSIS", "DIAGNOSIS", "special", "block"),
        ("HEALTH_STATUS", "HEALTH_STATUS", "special", "block"),
        ("HealthStatus", "HealthStatus", "special", "block"),
        ("sexualOrientation", "sexualOrientation", "special", "block"),
        (
            "Sexual Orientation",
            "sexual_orientation",
            "special",
            "block",
        ),
        ("Religion", "Religion", "special", "block"),
        ("trade-union", "trade_union", "special", "block"),
        ("TradeUnionMember", "TradeUnionMember", "special", "block"),
        ("Ethnicity", "Ethnicity", "special", "block"),
        ("isPregnant", "isPregnant", "special", "block"),
        ("PoliticalParty", "PoliticalParty", "special", "block"),
        ("HIVStatus", "HIVStatus", "special", "block"),
        ("GeneticMarkers", "GeneticMarkers", "special", "block"),
        (
            "predictedPregnancy",
            "predictedPregnancy",
            "special",
            "block",
        ),
        ("Income", "Income", "high-risk", "caution"),
        ("HouseholdIncome", "HouseholdIncome", "high-risk", "caution"),
        ("CreditScore", "CreditScore", "high-risk", "caution"),
        ("Lat", "Lat", "high-risk", "caution"),
        ("Lng", "Lng", "high-risk", "caution"),
        ("GPS_Coordinates", "GPS_Coordinates", "high-risk", "caution"),
        ("IPAddress", "IPAddress", "high-risk", "caution"),
        ("HomeAddress", "HomeAddress", "high-risk", "caution"),
        ("NetWorth", "NetWorth", "high-risk", "caution"),
        ("Salary", "Salary", "high-risk", "caution"),
        ("BirthDate", "BirthDate", "quasi-identifier", "caution"),
        (
            "DATE_OF_BIRTH",
            "DATE_OF_BIRTH",
            "quasi-identifier",
            "caution",
        ),
        ("dateOfBirth", "dateOfBirth", "quasi-identifier", "caution"),
        ("DOB", "DOB", "quasi-identifier", "caution"),
        ("Post Code", "post_code", "quasi-identifier", "caution"),
        ("PostCode", "PostCode", "quasi-identifier", "caution"),
        ("Postcode", "Postcode", "quasi-identifier", "caution"),
        ("ZIP", "ZIP", "quasi-identifier", "caution"),
        ("ZipCode", "ZipCode", "quasi-identifier", "caution"),
        ("Age", "Age", "quasi-identifier", "caution"),
        ("Employer", "Employer", "quasi-identifier", "caution"),
        ("ChurnScore", "ChurnScore", "high-risk", "caution"),
        ("LikelyToBuy", "LikelyToBuy", "high-risk", "caution"),
        (
            "LastViewedProduct",
            "LastViewedProduct",
            "behavioural",
            "notice",
        ),
        ("CartItems", "CartItems", "behavioural", "notice"),
        ("EMAIL_OPENS", "EMAIL_OPENS", "behavioural", "notice"),
        ("OrderCount", "OrderCount", "transactional", "notice"),
        ("TotalSpent", "TotalSpent", "transactional", "notice"),
        (
            "Last Order Category",
            "last_order_category",
            "transactional",
            "notice",
        ),
        ("FirstName", "FirstName", "declared", "notice"),
        ("LoyaltyTier", "LoyaltyTier", "declared", "notice"),
        (
            "FavouriteCategory",
            "FavouriteCategory",
            "declared",
            "notice",
        ),
        ("CustomerID", "CustomerID", "routing", "notice"),
        ("Country", "Country", "routing", "notice"),
    ];
    let mut failures = Vec::new();
    for (header, var, class, verdict) in cases {
        let quasi = *class == "quasi-identifier";
        let (hdr, vars) = if quasi {
            (format!("{ROLES},gender,{header}"), vec!["gender", var])
        } else {
            (format!("{ROLES},{header}"), vec![*var])
        };
        let fx = Fixture::new(&hdr, "x", &vars, None);
        let (r, v) = fx.check_json();
        let got_class = field(&v, var).and_then(|f| f["class"].as_str());
        let got_verdict = v["verdict"].as_str();
        let want_code = match *verdict {
            "block" => 4,
            "caution" => 3,
            _ => 0,
        };
        if got_class != Some(class) || got_verdict != Some(verdict) || r.code != want_code {
            failures.push(format!(
                "{header}: class {got_class:?} (want {class}), verdict {got_verdict:?} (want {verdict}), exit {} (want {want_code}) {}",
                r.code,
                r.stderr.lines().last().unwrap_or("")
            ));
        }
        if quasi && !rules(&v).contains(&"quasi-identifier-combination".to_string()) {
            failures.push(format!(
                "{header}: no quasi-identifier-combination with gender"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Words inside other words are not the word: decided by token, not substring.
#[test]
fn a_word_inside_another_word_does_not_classify() {
    let cases: &[(&str, &str)] = &[
        ("reunion_date", "unclassified"),
        ("ReunionDate", "unclassified"),
        ("page_views", "behavioural"),
        ("PageViews", "behavioural"),
        ("language", "declared"),
        ("PreferredLanguage", "declared"),
        ("package_size", "unclassified"),
        ("usage_minutes", "unclassified"),
        ("plate_number", "unclassified"),
        ("latency_ms", "unclassified"),
        ("EmailAddress", "routing"),
        ("CustomerId", "routing"),
        ("FirstName", "declared"),
        ("raceway_visits", "behavioural"),
    ];
    let mut failures = Vec::new();
    for (header, class) in cases {
        let fx = Fixture::new(&format!("{ROLES},{header}"), "x", &[header], None);
        let (r, v) = fx.check_json();
        let got = field(&v, header).and_then(|f| f["class"].as_str());
        if got != Some(class) {
            failures.push(format!(
                "{header}: {got:?} (want {class}) exit {} {}",
                r.code,
                r.stderr.lines().last().unwrap_or("")
            ));
        }
        if *class != "special" && v["verdict"] == "block" {
            failures.push(format!("{header}: blocked"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Role columns are found in any spelling: everyone here consented to everything, so all
/// are personalised, and no role is reported missing.
#[test]
fn role_columns_ignore_case_separators_and_camel_case() {
    let headers = [
        "EMAIL,Consent_Marketing,Consent_Personalisation,Consent_At,first_name",
        "Email,ConsentMarketing,ConsentPersonalisation,ConsentAt,first_name",
        "E-mail,consent-marketing,CONSENT PERSONALISATION,Consent-At,first_name",
        "e_mail,CONSENT_MARKETING,consentPersonalisation,consent at,first_name",
    ];
    for header in headers {
        let fx = Fixture::new(header, "Ann", &["first_name"], None);
        let (r, v) = fx.check_json();
        assert_eq!(
            v["audience"]["personalised"].as_u64(),
            Some(ROWS as u64),
            "{header}: exit {}\n{}\n{}",
            r.code,
            r.stdout,
            r.stderr
        );
        assert!(
            !rules(&v).contains(&"undated-consent".to_string()),
            "{header}: consent time column not found: {}",
            r.stdout
        );
        assert_eq!(
            v["missing_roles"].as_array().map(Vec::len),
            Some(0),
            "{header}: {}",
            r.stdout
        );
    }
}

/// Two columns that could both be a role are an error naming both, not a silent pick.
#[test]
fn two_columns_fitting_one_role_are_an_error() {
    let fx = Fixture::new(
        "email,consent_marketing,Consent_Marketing,consent_at",
        "yes",
        &[],
        None,
    );
    let r = fx.check();
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(
        r.stderr
            .contains("`consent_marketing` and `Consent_Marketing`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("people.csv:1:3"), "{}", r.stderr);
}

/// `[fields]` entries in the schema apply whatever the header's spelling.
#[test]
fn schema_fields_apply_to_any_spelling_of_the_column() {
    let fx = Fixture::new(
        &format!("{ROLES},ShoeSize,LastViewed,LastViewedAt"),
        "2020-01-01",
        &["ShoeSize", "LastViewed"],
        None,
    );
    std::fs::write(
        fx.dir.path().join("people.schema.toml"),
        "[fields]\nshoe_size = { class = \"declared\" }\nlast_viewed = { class = \"behavioural\", observed_at = \"last_viewed_at\" }\n",
    )
    .unwrap();
    let (r, v) = fx.check_json();
    assert_eq!(
        field(&v, "ShoeSize").and_then(|f| f["class"].as_str()),
        Some("declared"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        field(&v, "LastViewed").and_then(|f| f["class"].as_str()),
        Some("behavioural")
    );
    assert!(
        rules(&v).contains(&"stale-behaviour".to_string()),
        "observed_at = last_viewed_at must find LastViewedAt: {}",
        r.stdout
    );
}

/// A missing marketing-consent column is named, with the closest header, in the human
/// report and in `--json`, not just counted as `no_marketing_consent`.
#[test]
fn a_missing_consent_column_is_named_with_the_closest_header() {
    let fx = Fixture::new(
        "email,opt_in_marketing,consent_personalisation,consent_at,first_name",
        "Ann",
        &["first_name"],
        None,
    );
    let (r, v) = fx.check_json();
    assert_eq!(r.code, 2, "nobody is sendable: {}", r.all_output());
    let missing = v["missing_roles"].as_array().cloned().unwrap_or_default();
    let marketing = missing
        .iter()
        .find(|m| m["role"] == "consent_marketing")
        .unwrap_or_else(|| panic!("consent_marketing not in missing_roles: {}", r.stdout));
    assert_eq!(
        marketing["did_you_mean"], "opt_in_marketing",
        "{}",
        r.stdout
    );
    let human = fx.check();
    assert_eq!(human.code, 2);
    assert!(
        human
            .stdout
            .contains("no `consent_marketing` column (did you mean `opt_in_marketing`?)"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("ERROR"), "{}", human.stdout);
    // Without any near header the line still names the column.
    let fx = Fixture::new("email,first_name", "Ann", &["first_name"], None);
    let human = fx.check();
    assert!(
        human.stdout.contains("no `consent_marketing` column"),
        "{}",
        human.stdout
    );
    assert!(!human.stdout.contains("did you mean"), "{}", human.stdout);
}

/// A missing personalisation column is said too (everyone gets the generic variant).
#[test]
fn a_missing_personalisation_column_is_named() {
    let fx = Fixture::new(
        "email,consent_marketing,tailoring_ok,consent_at,first_name",
        "Ann",
        &["first_name"],
        None,
    );
    let (r, v) = fx.check_json();
    let missing = v["missing_roles"].as_array().cloned().unwrap_or_default();
    assert!(
        missing
            .iter()
            .any(|m| m["role"] == "consent_personalisation"),
        "{}",
        r.stdout
    );
    assert_eq!(v["audience"]["generic"].as_u64(), Some(ROWS as u64));
    let human = fx.check();
    assert!(
        human.stdout.contains("no `consent_personalisation` column"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_missing_email_column_suggests_the_closest_header() {
    let fx = Fixture::new(
        "email_address,consent_marketing,consent_personalisation,consent_at",
        "x",
        &[],
        None,
    );
    let r = fx.check();
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(
        r.stderr
            .contains("no `email` column (did you mean `email_address`?)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("people.csv:1:1"), "{}", r.stderr);
}

fn assert_input_error(r: &Run, wants: &[&str]) {
    assert_eq!(r.code, 2, "exit {}\n{}", r.code, r.all_output());
    for w in wants {
        assert!(r.stderr.contains(w), "no {w:?} in\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.stderr.len() < 4_000,
        "the error repeats the input: {} bytes",
        r.stderr.len()
    );
}

/// 2,000 nested parentheses, a deep `not` chain and a 100k-character segment: each a
/// clear error naming the campaign file and the segment, never a crash.
#[test]
fn hostile_segments_are_refused_before_parsing() {
    let deep = format!("{}country{}", "(".repeat(2_000), ")".repeat(2_000));
    // 1,000 `not`s: within the length limit, so the depth limit must catch it.
    let nots = format!("{}first_name", "not ".repeat(1_000));
    let brackets = format!(
        "first_name in {}\"x\"{}",
        "[".repeat(2_000),
        "]".repeat(2_000)
    );
    let long = format!("first_name == \"{}\"", "a".repeat(100_000));
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            &deep,
            "deep parentheses",
            &["t.toml", "segment", "nested", "column 33"],
        ),
        (&nots, "not chain", &["t.toml", "segment", "nested"]),
        (&brackets, "deep brackets", &["t.toml", "segment", "nested"]),
        (&long, "100k characters", &["t.toml", "segment", "4096"]),
    ];
    for (segment, what, wants) in cases {
        let fx = Fixture::new(
            &format!("{ROLES},first_name,country"),
            "x",
            &[],
            Some(segment),
        );
        let r = fx.check();
        println!("{what}: {}", r.stderr);
        assert_input_error(&r, wants);
    }
}

#[test]
fn segments_within_the_limits_still_work() {
    let fx = Fixture::new(
        &format!("{ROLES},first_name,country"),
        "GB",
        &[],
        Some(&format!(
            "{}country == \"GB\"{}",
            "(".repeat(20),
            ")".repeat(20)
        )),
    );
    let (r, v) = fx.check_json();
    assert_eq!(
        v["audience"]["generic"].as_u64().unwrap_or(0)
            + v["audience"]["personalised"].as_u64().unwrap_or(0),
        ROWS as u64,
        "{}",
        r.all_output()
    );
}

fn write_csv(dir: &Path, body: &[u8]) {
    std::fs::write(dir.join("people.csv"), body).unwrap();
}

/// A 10 MB field (one huge value, or an unclosed quote that swallows the file) is an
/// error naming the file, the line and the column, read within bounded memory.
#[test]
fn a_huge_csv_field_names_file_line_and_column() {
    let fx = Fixture::new(&format!("{ROLES},note"), "x", &[], None);
    let mut csv = format!("{ROLES},note\n").into_bytes();
    csv.extend_from_slice(b"a@shop.example,yes,yes,2026-11-01,fine\n");
    csv.extend_from_slice(b"b@shop.example,yes,yes,2026-11-01,");
    csv.extend(std::iter::repeat_n(b'z', 10 * 1024 * 1024));
    csv.extend_from_slice(b"\nc@shop.example,yes,yes,2026-11-01,fine\n");
    write_csv(fx.dir.path(), &csv);
    let r = fx.check();
    assert_input_error(&r, &["people.csv:3:5", "note"]);

    // An unclosed quote in the third column runs to the end of a 10 MB file.
    let mut csv = format!("{ROLES},note\n").into_bytes();
    csv.extend_from_slice(b"a@shop.example,yes,\"yes,2026-11-01,fine\n");
    for i in 0..200_000 {
        csv.extend_from_slice(format!("p{i}@shop.example,yes,yes,2026-11-01,fine\n").as_bytes());
    }
    write_csv(fx.dir.path(), &csv);
    let r = fx.check();
    assert_input_error(&r, &["people.csv:2:3", "consent_personalisation", "quote"]);

    // A field just over 64 KiB, in a row well under the row limit.
    let mut csv = format!("{ROLES},note\n").into_bytes();
    csv.extend_from_slice(b"a@shop.example,yes,yes,2026-11-01,");
    csv.extend(std::iter::repeat_n(b'y', 64 * 1024 + 1));
    csv.extend_from_slice(b"\n");
    write_csv(fx.dir.path(), &csv);
    let r = fx.check();
    assert_input_error(&r, &["people.csv:2:5", "note", "64 KiB"]);

    // A header line that never ends.
    let mut csv = b"email,".to_vec();
    csv.extend(std::iter::repeat_n(b'h', 2 * 1024 * 1024));
    write_csv(fx.dir.path(), &csv);
    let r = fx.check();
    assert_input_error(&r, &["people.csv:1:2"]);
}

/// Header names are not values, but a hostile header must not become a megabyte of error.
#[test]
fn errors_about_huge_headers_stay_short() {
    let fx = Fixture::new(&format!("{ROLES},note"), "x", &[], None);
    let long: Vec<String> = (0..400)
        .map(|i| format!("{}{i}", "h".repeat(2_000)))
        .collect();
    write_csv(fx.dir.path(), format!("{}\n", long.join(",")).as_bytes());
    let r = fx.check();
    assert_input_error(&r, &["people.csv:1:1", "no `email` column", "more"]);
}
