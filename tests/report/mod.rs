//! Snapshots of the human `check` report for the sample campaigns, so a change in wording,
//! order or counts shows up in review; and the measured figures (DESIGN §8) checked
//! against what the messages themselves show.

mod hostile;
mod privacy;

use std::collections::HashMap;

use crate::util::*;

fn report(name: &str) -> String {
    let state = tempfile::tempdir().unwrap();
    let out = run(tact(state.path())
        .env("NO_COLOR", "1")
        .arg("check")
        .arg(sample_campaign(name)));
    // The state folder is a fresh temp dir each run.
    out.stdout
        .replace(&state.path().display().to_string(), "[STATE]")
        .replace(&repo().display().to_string(), "[REPO]")
}

#[test]
fn human_report_winter_sale() {
    insta::assert_snapshot!(report("winter-sale"));
}

#[test]
fn human_report_birthday_treat() {
    insta::assert_snapshot!(report("birthday-treat"));
}

#[test]
fn human_report_wellness_check() {
    insta::assert_snapshot!(report("wellness-check"));
}

#[test]
fn human_report_you_viewed() {
    insta::assert_snapshot!(report("you-viewed"));
}

/// Products of the sample data whose names reveal a pregnancy, a child or a health
/// condition (sample-data/generate_customers.py), as the test knows them.
const SENSITIVE_PRODUCTS: [&str; 5] = [
    "Maternity rain parka",
    "Baby carrier rain cover",
    "Maternity fleece",
    "Wheelchair rain poncho",
    "Kids' waterproof dungarees",
];

fn findings<'a>(v: &'a serde_json::Value, rule: &str) -> Vec<&'a serde_json::Value> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == rule)
        .collect()
}

/// No value of the audience's used columns anywhere in what `check` printed: every
/// product, postcode and birth date of the file is a canary.
fn assert_no_values(out: &str, columns: &[&str]) {
    let low = out.to_lowercase();
    for c in customers(&sample_csv()) {
        for col in columns {
            let v = c.get(col).trim();
            if v.len() >= 4 {
                assert!(
                    !low.contains(&v.to_lowercase()),
                    "line {}: the value of {col} is in the output",
                    c.line
                );
            }
        }
    }
}

/// The measured figures of birthday-treat equal a count made from the messages: preview
/// every recipient, take the personalised ones, look their postcode and birth date up in
/// the CSV, and count who is alone with theirs.
#[test]
fn birthday_treat_measures_what_its_messages_show() {
    let state = tempfile::tempdir().unwrap();
    let (r, v) = check_json(
        tact(state.path())
            .arg("check")
            .arg(sample_campaign("birthday-treat"))
            .arg("--json"),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let qi = findings(&v, "quasi-identifier-combination");
    assert_eq!(qi.len(), 1);
    let m = &qi[0]["measured"];
    assert_eq!(m["fields"], serde_json::json!(["birth_date", "postcode"]));
    let out = tempfile::tempdir().unwrap();
    let (_, msgs) = preview_all(state.path(), &sample_campaign("birthday-treat"), out.path());
    let by_email: HashMap<String, Customer> = customers(&sample_csv())
        .into_iter()
        .filter(|c| !c.ragged)
        .map(|c| (c.email(), c))
        .collect();
    let shown: Vec<(String, String)> = msgs
        .iter()
        .filter(|m| m.text.contains("birthday down as"))
        .map(|m| {
            let c = &by_email[&m.to_addr()];
            (
                c.get("postcode").trim().to_lowercase(),
                c.get("birth_date").trim().to_string(),
            )
        })
        .collect();
    assert!(shown.len() > 50, "{} personalised messages", shown.len());
    let unique = shown
        .iter()
        .filter(|k| shown.iter().filter(|o| o == k).count() == 1)
        .count();
    assert_eq!(m["recipients"], shown.len(), "{m}");
    assert_eq!(m["unique"], unique, "{m}");
    assert_eq!(m["recipients"], v["audience"]["personalised"]);
    let generalised = m["generalised"].as_array().expect("generalised");
    assert!(
        generalised
            .iter()
            .any(|g| g["fields"]["birth_date"] == "age-band"),
        "{m}"
    );
    let human = run(tact(state.path())
        .env("NO_COLOR", "1")
        .arg("check")
        .arg(sample_campaign("birthday-treat")));
    let words = format!(
        "{unique} of {} recipients (100%) are the only one with their birth date and postcode",
        shown.len()
    );
    assert!(human.stdout.contains(&words), "{}", human.stdout);
    assert_no_values(
        &format!("{}{}{}", r.stdout, human.stdout, human.stderr),
        &["postcode", "birth_date"],
    );
}

/// you-viewed prints the last viewed product in the subject and the body: a block for the
/// subject, a caution for the body, each counting the recipients the test finds itself.
#[test]
fn you_viewed_finds_sensitive_values_by_place_and_never_prints_them() {
    let state = tempfile::tempdir().unwrap();
    let (r, v) = check_json(
        tact(state.path())
            .arg("check")
            .arg(sample_campaign("you-viewed"))
            .arg("--json"),
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(v["verdict"], "block");
    // The people who would see one: personalised GB recipients with such a product.
    let lines: Vec<u64> = expected_recipients(&customers(&sample_csv()), true)
        .iter()
        .filter(|c| SENSITIVE_PRODUCTS.contains(&c.get("last_viewed_product")))
        .map(|c| c.line)
        .collect();
    assert_eq!(lines.len(), 5, "the sample data has five");
    let found = findings(&v, "sensitive-value");
    let by_place = |place: &str| {
        found
            .iter()
            .find(|f| f["measured"]["place"] == place)
            .unwrap_or_else(|| panic!("no {place} finding in {found:?}"))
    };
    for (place, level) in [("subject", "block"), ("body", "caution")] {
        let f = by_place(place);
        assert_eq!(f["level"], level, "{f}");
        assert_eq!(f["fields"], serde_json::json!(["last_viewed_product"]));
        assert_eq!(f["measured"]["recipients"], 5, "{f}");
        assert_eq!(
            f["measured"]["categories"],
            serde_json::json!({"children": 2, "health": 1, "pregnancy": 2}),
            "{f}"
        );
        let message = f["message"].as_str().unwrap();
        for l in &lines {
            assert!(message.contains(&format!("line {l} (")), "{l}: {message}");
        }
    }
    assert!(found.iter().all(|f| f["measured"]["place"] != "segment"));
    let human = run(tact(state.path())
        .env("NO_COLOR", "1")
        .arg("check")
        .arg(sample_campaign("you-viewed")));
    assert_no_values(
        &format!("{}{}{}{}", r.stdout, r.stderr, human.stdout, human.stderr),
        &["last_viewed_product"],
    );
}

/// The alternative the finding offers works: with `not last_viewed_product is sensitive`
/// the finding goes, and the messages show every other product but none of these.
#[test]
fn the_is_sensitive_guard_leaves_the_values_out_of_the_messages() {
    let t = Tree::new();
    let guard = "personalised and last_viewed_product and not last_viewed_product is sensitive";
    t.edit("sample-data/campaigns/you-viewed.toml", |s| {
        s.replace(
            "subject = \"{% if personalised and last_viewed_product %}",
            &format!("subject = \"{{% if {guard} %}}"),
        )
    });
    for part in ["txt", "html"] {
        t.edit(&format!("templates/you-viewed.{part}.tera"), |s| {
            s.replace(
                "{%- if personalised and last_viewed_product %}",
                &format!("{{%- if {guard} %}}"),
            )
            .replace(
                "{% if personalised and last_viewed_product -%}",
                &format!("{{% if {guard} -%}}"),
            )
        });
    }
    let (r, v) = check_json(
        t.tact()
            .arg("check")
            .arg(t.campaign("you-viewed"))
            .arg("--json"),
    );
    assert_eq!(
        r.code, 3,
        "only the behavioural field in the subject is left: {}",
        r.stdout
    );
    assert!(
        findings(&v, "sensitive-value").is_empty(),
        "{}",
        v["findings"]
    );
    let out = t.path("out");
    run_expect(
        t.tact()
            .arg("preview")
            .arg(t.campaign("you-viewed"))
            .arg("--out")
            .arg(&out),
        0,
    );
    let msgs = read_previews(&out);
    let all: String = msgs.iter().map(Msg::visible).collect();
    let all = html_unescape(&all);
    for p in SENSITIVE_PRODUCTS {
        assert!(!all.contains(p), "{p} reached a message");
    }
    assert!(
        all.contains("Still thinking about the Fair Isle cardigan?"),
        "other products still shown"
    );
}

/// A schema's [lexicon] adds terms (and the finding counts them); an unknown category is
/// an error naming the schema file.
#[test]
fn a_schema_lexicon_extends_the_terms() {
    let t = Tree::new();
    t.edit("sample-data/customers.schema.toml", |s| {
        format!("{s}\n[lexicon]\nhealth = [\"Fair Isle cardigan\"]\n")
    });
    let (r, v) = check_json(
        t.tact()
            .arg("check")
            .arg(t.campaign("you-viewed"))
            .arg("--json"),
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    let cardigans = expected_recipients(&customers(&sample_csv()), true)
        .iter()
        .filter(|c| c.get("last_viewed_product") == "Fair Isle cardigan")
        .count();
    assert!(cardigans > 0);
    let subject = findings(&v, "sensitive-value")
        .into_iter()
        .find(|f| f["measured"]["place"] == "subject")
        .expect("subject finding");
    assert_eq!(
        subject["measured"]["recipients"],
        5 + cardigans,
        "{subject}"
    );
    assert_eq!(
        subject["measured"]["categories"]["health"],
        1 + cardigans,
        "{subject}"
    );
    t.edit("sample-data/customers.schema.toml", |s| {
        s.replace("health = [", "helth = [")
    });
    let r = run_expect(t.tact().arg("check").arg(t.campaign("you-viewed")), 2);
    assert!(r.stderr.contains("customers.schema.toml"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `health`"), "{}", r.stderr);
}

/// Files on disk are data too: `preview` writes nothing for a campaign that would put a
/// sensitive value in a subject.
#[test]
fn preview_writes_nothing_for_a_sensitive_value_in_the_subject() {
    let state = tempfile::tempdir().unwrap();
    let out = state.path().join("out");
    let r = run_expect(
        tact(state.path())
            .arg("preview")
            .arg(sample_campaign("you-viewed"))
            .arg("--out")
            .arg(&out),
        4,
    );
    assert!(r.stderr.contains("sensitive-value"), "{}", r.stderr);
    assert!(!out.exists() || files_under(&out).is_empty());
    assert_no_values(&r.all_output(), &["last_viewed_product"]);
}

/// Each field of `check --json` says where it came from, and the age of the browsing data
/// is the one the test finds itself: the `last_viewed_at` of everyone whose preview is
/// personalised, read from the CSV, in days before the run's clock. The human report says
/// the same. (The subject is made plain so the campaign is a caution and previews.)
#[test]
fn you_viewed_says_where_each_field_came_from_and_how_old_it_is() {
    let t = Tree::new();
    t.edit("sample-data/campaigns/you-viewed.toml", |s| {
        let start = s.find("subject = ").expect("subject");
        let end = start + s[start..].find('\n').expect("line");
        format!("{}subject = \"Picked for you\"{}", &s[..start], &s[end..])
    });
    let (r, v) = check_json(
        t.tact()
            .arg("check")
            .arg(t.campaign("you-viewed"))
            .arg("--json"),
    );
    assert_eq!(r.code, 3, "{}", r.stdout);
    let fields = v["fields"].as_array().expect("fields");
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
    };
    assert_eq!(field("first_name")["origin"], "declared");
    assert_eq!(field("first_name")["origin_words"], "you told us");
    assert!(field("first_name")["observed_days"].is_null());
    let viewed = field("last_viewed_product");
    assert_eq!(viewed["origin"], "behavioural");
    assert_eq!(viewed["origin_words"], "from what you browsed");

    let out = t.path("out");
    run_expect(
        t.tact()
            .arg("preview")
            .arg(t.campaign("you-viewed"))
            .arg("--out")
            .arg(&out),
        0,
    );
    let by_email: HashMap<String, Customer> = customers(&sample_csv())
        .into_iter()
        .filter(|c| !c.ragged)
        .map(|c| (c.email(), c))
        .collect();
    let msgs = read_previews(&out);
    let personalised: Vec<&Customer> = msgs
        .iter()
        .filter(|m| m.text.contains("content tailored to you"))
        .map(|m| &by_email[&m.to_addr()])
        .collect();
    assert_eq!(v["audience"]["personalised"], personalised.len());
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    // Each recipient's footer names the product field in the same words, with the age of
    // their own value, counted here from the CSV; never the product itself.
    let mut dated = 0;
    for m in msgs.iter().filter(|m| m.text.contains("content tailored")) {
        let c = &by_email[&m.to_addr()];
        let text = m.text.replace('\n', " ");
        let footer = &text[text.find("You get this because").expect("footer")..];
        let product = c.get("last_viewed_product").trim();
        if product.is_empty() {
            assert!(!footer.contains("you last viewed"), "line {}", c.line);
            continue;
        }
        assert!(
            !footer.contains(product),
            "line {}: the value is in the footer",
            c.line
        );
        let at = chrono::NaiveDate::parse_from_str(c.get("last_viewed_at").trim(), "%Y-%m-%d");
        let words = match at.map(|d| (today - d).num_days().max(0)) {
            Ok(0) => ", today".to_string(),
            Ok(1) => ", 1 day ago".to_string(),
            Ok(n @ 2..=60) => format!(", {n} days ago"),
            Ok(n) => format!(", {} months ago", n / 30),
            Err(_) => String::new(),
        };
        dated += usize::from(!words.is_empty());
        let want = format!("the product you last viewed (from what you browsed{words})");
        assert!(
            footer.contains(&want),
            "line {}: {want} in {footer}",
            c.line
        );
    }
    assert!(dated > 50, "{dated} dated footers");
    let mut days: Vec<i64> = personalised
        .iter()
        .filter_map(|c| {
            let d = chrono::NaiveDate::parse_from_str(c.get("last_viewed_at").trim(), "%Y-%m-%d");
            d.ok().map(|d| (today - d).num_days().max(0))
        })
        .collect();
    days.sort_unstable();
    assert!(days.len() > 50, "{} dated", days.len());
    let (min, median, max) = (days[0], days[(days.len() - 1) / 2], days[days.len() - 1]);
    assert_eq!(
        viewed["observed_days"],
        serde_json::json!({"min": min, "median": median, "max": max}),
        "{viewed}"
    );
    let human = run(t.tact().arg("check").arg(t.campaign("you-viewed")));
    let words = format!("from what you browsed, {min}–{max} days ago, median {median}");
    assert!(human.stdout.contains(&words), "{}", human.stdout);
}
