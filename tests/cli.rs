#![allow(clippy::unwrap_used)]
//! CLI integration tests: `tact init`, `tact check`, `tact preview` run as a user would,
//! against the sample data (or a writable copy of it), always with `--state <tempdir>` and
//! `--now 2026-11-23T12:00:00Z` so nothing depends on the machine or the clock.

mod attack;
mod bounces;
mod imap;
mod input;
mod onboard;
mod ops;
mod report;
mod schedule;
mod screens;
mod send;
mod store;
mod taint;
mod tui;
mod usage;
mod util;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use util::*;

const UNSUBSCRIBE: &str = "https://northwind.example/unsubscribe";
const POSTAL: &str = "Northwind Outfitters, 1 Quay St, Bristol BS1 1AA, UK";

fn now_ts() -> i64 {
    chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp()
}

fn master_keys(state: &std::path::Path) -> tact::state::Keys {
    let hex = fs::read_to_string(state.join("master.key")).unwrap();
    let hex = hex.trim();
    assert_eq!(hex.len(), 64, "master.key is not 64 hex digits");
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    tact::state::Keys::from_master(&key)
}

fn one_recipient(state: &std::path::Path, campaign: &std::path::Path, email: &str) -> Msg {
    let r = run_expect(
        tact(state)
            .arg("preview")
            .arg(campaign)
            .arg("--recipient")
            .arg(email),
        0,
    );
    parse_eml("stdout", r.stdout.as_bytes())
}

// ---------------------------------------------------------------------------------------
// 1. Exit codes
// ---------------------------------------------------------------------------------------

#[test]
fn sample_campaigns_exit_0_3_4() {
    let state = tempfile::tempdir().unwrap();
    for (name, code, verdict) in [
        ("winter-sale", 0, "verdict: NOTICE"),
        ("birthday-treat", 3, "verdict: CAUTION"),
        ("wellness-check", 4, "verdict: BLOCK"),
        ("you-viewed", 4, "verdict: BLOCK"),
    ] {
        let r = run_expect(
            tact(state.path()).arg("check").arg(sample_campaign(name)),
            code,
        );
        assert!(
            r.stdout.contains(verdict),
            "{name}: no `{verdict}` in\n{}",
            r.stdout
        );
        // --json must not change the exit code.
        run_expect(
            tact(state.path())
                .arg("check")
                .arg(sample_campaign(name))
                .arg("--json"),
            code,
        );
    }
}

#[test]
fn missing_campaign_file_exits_2_and_names_it() {
    let state = tempfile::tempdir().unwrap();
    let missing = state.path().join("no-such-campaign.toml");
    for cmd in ["check", "preview"] {
        let r = run_expect(tact(state.path()).arg(cmd).arg(&missing), 2);
        assert!(
            r.stderr.contains("no-such-campaign.toml"),
            "{cmd}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{cmd} printed to stdout: {}", r.stdout);
    }
}

#[test]
fn campaign_typo_key_exits_2_with_file_line_col_and_suggestion() {
    let t = Tree::new();
    t.edit("sample-data/campaigns/winter-sale.toml", |s| {
        s.replacen("\nsubject = ", "\nsubjct = ", 1)
    });
    let text = t.read("sample-data/campaigns/winter-sale.toml");
    let line = text
        .lines()
        .position(|l| l.starts_with("subjct ="))
        .unwrap()
        + 1;
    for cmd in ["check", "preview"] {
        let r = run_expect(t.tact().arg(cmd).arg(t.campaign("winter-sale")), 2);
        assert!(
            r.stderr.contains(&format!("winter-sale.toml:{line}:1")),
            "{cmd}: stderr does not name winter-sale.toml:{line}:1\n{}",
            r.stderr
        );
        assert!(r.stderr.contains("subjct"), "{}", r.stderr);
        assert!(
            r.stderr.contains("did you mean `subject`"),
            "{cmd}: no suggestion\n{}",
            r.stderr
        );
    }
}

/// Finds `FILE:LINE:COL` in stderr and returns COL.
fn column_after(stderr: &str, file_line: &str) -> Option<usize> {
    let at = stderr.find(file_line)? + file_line.len();
    let digits: String = stderr[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn template_syntax_error_exits_2_with_template_line_col() {
    let t = Tree::new();
    let rel = "templates/winter-sale.txt.tera";
    t.edit(rel, |s| {
        s.replacen(
            "Our winter edit has landed,",
            "Our {{ first_name | nosuchfilter( }} winter edit has landed,",
            1,
        )
    });
    let line = t
        .read(rel)
        .lines()
        .position(|l| l.contains("nosuchfilter"))
        .unwrap()
        + 1;
    for cmd in ["check", "preview"] {
        let r = run_expect(t.tact().arg(cmd).arg(t.campaign("winter-sale")), 2);
        let col = column_after(&r.stderr, &format!("winter-sale.txt.tera:{line}:"));
        let col = col.unwrap_or_else(|| {
            panic!(
                "{cmd}: stderr does not name winter-sale.txt.tera:{line}:COL\n{}",
                r.stderr
            )
        });
        // The error sits somewhere inside `{{ first_name | nosuchfilter( }}` (cols 5..=36).
        assert!((5..=37).contains(&col), "{cmd}: column {col}\n{}", r.stderr);
    }
}

#[test]
fn syntax_error_in_a_parent_template_names_the_parent() {
    let t = Tree::new();
    let rel = "templates/base.txt.tera";
    t.edit(rel, |s| {
        s.replacen("{{ why_you_got_this }}", "{{ why_you_got_this }", 1)
    });
    let line = t
        .read(rel)
        .lines()
        .position(|l| l.starts_with("{{ why_you_got_this }") && !l.ends_with("}}"))
        .unwrap()
        + 1;
    let r = run_expect(t.tact().arg("check").arg(t.campaign("winter-sale")), 2);
    assert!(
        column_after(&r.stderr, &format!("base.txt.tera:{line}:")).is_some(),
        "stderr does not name base.txt.tera:{line}:COL\n{}",
        r.stderr
    );
}

#[test]
fn csv_without_email_column_exits_2() {
    // a) The schema names `email`, the CSV no longer has it. (`e_mail` or `EMAIL` would
    // still be it: roles ignore case and separators.)
    let t = Tree::new();
    t.edit("sample-data/customers.csv", |s| {
        s.replacen("customer_id,email,", "customer_id,contact,", 1)
    });
    let r = run_expect(t.tact().arg("check").arg(t.campaign("winter-sale")), 2);
    assert!(r.stderr.contains("customers.csv"), "{}", r.stderr);
    assert!(r.stderr.contains("email"), "{}", r.stderr);

    // b) No schema at all: the default role column `email` is missing.
    let t = Tree::new();
    t.write(
        "sample-data/noemail.csv",
        "customer_id,mail,first_name,country,consent_marketing,consent_personalisation,consent_at\n\
         NW1,a@example.com,Ann,GB,yes,yes,2026-01-01\n",
    );
    t.edit("sample-data/campaigns/winter-sale.toml", |s| {
        s.replace(
            "audience = \"../customers.csv\"",
            "audience = \"../noemail.csv\"",
        )
        .replace("schema = \"../customers.schema.toml\"\n", "")
    });
    let r = run_expect(t.tact().arg("check").arg(t.campaign("winter-sale")), 2);
    assert!(r.stderr.contains("noemail.csv"), "{}", r.stderr);
    assert!(r.stderr.contains("email"), "{}", r.stderr);
    assert!(!r.stderr.contains("a@example.com"), "{}", r.stderr);
}

#[test]
fn acknowledged_caution_exits_0_and_partial_acknowledgement_exits_3() {
    let t = Tree::new();
    let rel = "sample-data/campaigns/birthday-treat.toml";
    let original = t.read(rel);
    // [policy] is the last table, so an appended key lands in it.
    t.write(
        rel,
        &format!(
            "{original}\nacknowledge = [{{ rule = \"quasi-identifier-combination\", \
             fields = [\"birth_date\", \"postcode\"], reason = \"DPO ticket PRIV-112\" }}]\n"
        ),
    );
    let (r, v) = check_json(
        t.tact()
            .arg("check")
            .arg(t.campaign("birthday-treat"))
            .arg("--json"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["verdict"], "caution");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "quasi-identifier-combination")
        .unwrap();
    assert_eq!(f["acknowledged"], true);
    assert_eq!(f["reason"], "DPO ticket PRIV-112");

    // Covering only one of the two fields does not acknowledge the finding.
    t.write(
        rel,
        &format!(
            "{original}\nacknowledge = [{{ rule = \"quasi-identifier-combination\", \
             fields = [\"birth_date\"], reason = \"only half\" }}]\n"
        ),
    );
    run_expect(t.tact().arg("check").arg(t.campaign("birthday-treat")), 3);
}

// ---------------------------------------------------------------------------------------
// 2. check --json
// ---------------------------------------------------------------------------------------

fn assert_contract_shape(name: &str, v: &Value) {
    let verdict = v["verdict"].as_str().unwrap();
    assert!(
        ["ok", "notice", "caution", "block"].contains(&verdict),
        "{name}: verdict {verdict}"
    );
    for f in v["findings"].as_array().unwrap() {
        assert!(!f["rule"].as_str().unwrap().is_empty(), "{name}: {f}");
        assert!(
            ["notice", "caution", "block"].contains(&f["level"].as_str().unwrap()),
            "{name}: {f}"
        );
        assert!(
            f["fields"].as_array().unwrap().iter().all(Value::is_string),
            "{name}: {f}"
        );
        assert!(!f["message"].as_str().unwrap().is_empty(), "{name}: {f}");
        assert!(
            !f["alternative"].as_str().unwrap().is_empty(),
            "{name}: {f}"
        );
    }
    let classes = [
        "routing",
        "declared",
        "transactional",
        "behavioural",
        "quasi-identifier",
        "high-risk",
        "special",
    ];
    for f in v["fields"].as_array().unwrap() {
        assert!(!f["name"].as_str().unwrap().is_empty(), "{name}: {f}");
        assert!(
            classes.contains(&f["class"].as_str().unwrap()),
            "{name}: {f}"
        );
        let places = f["places"].as_array().unwrap();
        assert!(!places.is_empty(), "{name}: {f}");
        for p in places {
            assert!(
                ["segment", "body", "subject"].contains(&p.as_str().unwrap()),
                "{name}: {f}"
            );
        }
    }
    let a = &v["audience"];
    let excluded = a["excluded"].as_object().unwrap();
    let keys: BTreeSet<&str> = excluded.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        REASONS.iter().copied().collect::<BTreeSet<_>>(),
        "{name}: excluded keys"
    );
    let sum: u64 = excluded.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(
        a["rows"].as_u64().unwrap(),
        a["personalised"].as_u64().unwrap() + a["generic"].as_u64().unwrap() + sum,
        "{name}: rows = personalised + generic + sum(excluded)"
    );
}

fn fields_by_name(v: &Value) -> BTreeMap<String, (String, BTreeSet<String>)> {
    v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                (
                    f["class"].as_str().unwrap().to_string(),
                    f["places"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_str().unwrap().to_string())
                        .collect(),
                ),
            )
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn check_json_winter_sale_contract_and_exact_counts() {
    let state = tempfile::tempdir().unwrap();
    let (r, v) = check_json(
        tact(state.path())
            .arg("check")
            .arg(sample_campaign("winter-sale"))
            .arg("--json"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_contract_shape("winter-sale", &v);
    assert!(
        ["ok", "notice"].contains(&v["verdict"].as_str().unwrap()),
        "{}",
        v["verdict"]
    );
    let a = &v["audience"];
    assert_eq!(a["rows"], 500);
    assert_eq!(a["personalised"], 122);
    assert_eq!(a["generic"], 98);
    let expected: BTreeMap<&str, u64> = [
        ("malformed_row", 1),
        ("invalid_email", 3),
        ("duplicate", 2),
        ("no_marketing_consent", 145),
        ("stale_consent", 12),
        ("not_in_segment", 116),
        ("bad_header_value", 1),
    ]
    .into_iter()
    .collect();
    for reason in REASONS {
        assert_eq!(
            a["excluded"][reason].as_u64().unwrap(),
            expected.get(reason).copied().unwrap_or(0),
            "excluded.{reason}"
        );
    }
    let fields = fields_by_name(&v);
    let want: BTreeMap<String, (String, BTreeSet<String>)> = [
        ("country", "routing", set(&["segment"])),
        ("first_name", "declared", set(&["subject", "body"])),
        ("favourite_category", "declared", set(&["body"])),
        ("loyalty_tier", "declared", set(&["body"])),
    ]
    .into_iter()
    .map(|(n, c, p)| (n.to_string(), (c.to_string(), p)))
    .collect();
    assert_eq!(fields, want);
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["level"] == "notice"),
        "{}",
        v["findings"]
    );
}

#[test]
fn check_json_caution_and_block_findings() {
    let state = tempfile::tempdir().unwrap();
    let (r, v) = check_json(
        tact(state.path())
            .arg("check")
            .arg(sample_campaign("birthday-treat"))
            .arg("--json"),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_contract_shape("birthday-treat", &v);
    assert_eq!(v["verdict"], "caution");
    let qi = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "quasi-identifier-combination")
        .unwrap_or_else(|| panic!("no quasi-identifier-combination in {}", v["findings"]));
    assert_eq!(qi["level"], "caution");
    let qf: BTreeSet<String> = qi["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(qf, set(&["birth_date", "postcode"]));
    assert_ne!(qi.get("acknowledged"), Some(&Value::Bool(true)));
    let fields = fields_by_name(&v);
    assert_eq!(fields["birth_date"].0, "quasi-identifier");
    assert_eq!(fields["postcode"].0, "quasi-identifier");

    let (r, v) = check_json(
        tact(state.path())
            .arg("check")
            .arg(sample_campaign("wellness-check"))
            .arg("--json"),
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_contract_shape("wellness-check", &v);
    assert_eq!(v["verdict"], "block");
    let sc = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "special-category")
        .unwrap_or_else(|| panic!("no special-category in {}", v["findings"]));
    assert_eq!(sc["level"], "block");
    assert_eq!(sc["fields"], serde_json::json!(["health_condition"]));
    let fields = fields_by_name(&v);
    assert_eq!(
        fields["health_condition"],
        ("special".into(), set(&["body"]))
    );
}

fn finding<'a>(v: &'a Value, rule: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == rule)
        .unwrap_or_else(|| panic!("no {rule} in {}", v["findings"]))
}

#[test]
fn check_blocks_missing_unsubscribe_missing_postal_address_and_safe_fields() {
    let (r, v) = check_after(|t| {
        t.edit("templates/base.html.tera", |s| {
            s.replace("{{ unsubscribe_url }}", "https://northwind.example/")
        })
    });
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(finding(&v, "missing-unsubscribe")["level"], "block");

    let (r, v) = check_after(|t| {
        t.edit("templates/base.txt.tera", |s| {
            s.replace("{{ postal_address }}", "")
        })
    });
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(finding(&v, "missing-postal-address")["level"], "block");

    let (r, v) = check_after(|t| {
        t.edit("templates/winter-sale.html.tera", |s| {
            s.replace("Hi {{ first_name }},", "Hi {{ first_name | safe }},")
        })
    });
    assert_eq!(r.code, 4, "{}", r.stderr);
    let f = finding(&v, "unescaped-field");
    assert_eq!(f["level"], "block");
    assert_eq!(f["fields"], serde_json::json!(["first_name"]));
}

fn with_segment(segment: &'static str) -> impl FnOnce(&Tree) {
    move |t: &Tree| {
        t.edit("sample-data/campaigns/winter-sale.toml", |s| {
            s.replace(
                "segment = 'country == \"GB\"'",
                &format!("segment = '{segment}'"),
            )
        })
    }
}

#[test]
fn segments_on_stronger_fields_and_tiny_or_empty_audiences() {
    // A transactional field in the segment selects only people who consented to
    // personalisation; three of them with a level-2 field is a micro-segment block.
    let (r, v) = check_after(with_segment("country == \"GB\" and total_spent > 1900"));
    assert_eq!(r.code, 4, "{}", r.stderr);
    let a = &v["audience"];
    assert_eq!(a["generic"], 0);
    assert!(
        a["excluded"]["no_personalisation_consent"]
            .as_u64()
            .unwrap()
            > 0
    );
    let total = a["personalised"].as_u64().unwrap();
    assert!((1..11).contains(&total), "{total} recipients");
    let f = finding(&v, "micro-segment");
    assert_eq!(f["level"], "block");
    assert!(
        f["fields"]
            .as_array()
            .unwrap()
            .contains(&Value::from("total_spent"))
    );
    assert_eq!(fields_by_name(&v)["total_spent"].1, set(&["segment"]));

    // Nobody at all: an error of its own.
    let (r, _) = check_after(with_segment("country == \"XX\""));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("0 recipients"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------
// 3. preview --out: files, modes, headers, MIME structure, tokens
// ---------------------------------------------------------------------------------------

#[test]
fn preview_writes_one_private_file_per_recipient_with_the_contract_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = tmp.path().join("out");
    let (r, msgs) = preview_all(&state, &sample_campaign("winter-sale"), &out);
    assert_eq!(msgs.len(), 220, "personalised + generic\n{}", r.stderr);
    assert_eq!(mode(&out), 0o700, "preview folder mode");

    let addresses: Vec<String> = customers(&sample_csv())
        .iter()
        .map(Customer::email)
        .collect();
    let keys = master_keys(&state);
    let mut tos = HashSet::new();
    let mut ids = HashSet::new();
    for m in &msgs {
        let path = out.join(&m.name);
        assert_eq!(mode(&path), 0o600, "{}", m.name);
        // Named by line, never by address.
        assert!(
            m.name.starts_with("line-") && m.name.ends_with(".eml"),
            "{}",
            m.name
        );
        assert!(!m.name.contains('@'), "{}", m.name);
        for a in &addresses {
            let local = a.split('@').next().unwrap_or("");
            assert!(
                local.len() < 4 || !m.name.to_lowercase().contains(local),
                "{} names {a}",
                m.name
            );
        }

        assert_eq!(m.from_addr, "news@northwind.example", "{}", m.name);
        assert_eq!(m.from_name.as_deref(), Some("Northwind"), "{}", m.name);
        let to = m.to_addr();
        assert!(tos.insert(to.clone()), "{}: {to} got two messages", m.name);
        assert!(
            m.subject.ends_with("our winter picks are in"),
            "{}: {}",
            m.name,
            m.subject
        );
        assert_eq!(m.date, Some(now_ts()), "{}: Date", m.name);
        let (_, domain) = m.message_id.rsplit_once('@').unwrap();
        assert_eq!(domain, "northwind.example", "{}: {}", m.name, m.message_id);
        assert!(
            ids.insert(m.message_id.clone()),
            "{}: Message-ID reused",
            m.name
        );
        assert_eq!(m.reply_to_addr, "help@northwind.example", "{}", m.name);
        assert_eq!(
            m.reply_to_name.as_deref(),
            Some("Northwind Help"),
            "{}",
            m.name
        );
        assert!(
            m.list_id.contains("<winter-sale.") && m.list_id.ends_with(".northwind.example>"),
            "{}: List-Id {}",
            m.name,
            m.list_id
        );
        assert!(
            m.list_unsubscribe
                .starts_with(&format!("<{UNSUBSCRIBE}?t=")),
            "{}: {}",
            m.name,
            m.list_unsubscribe
        );
        assert!(m.list_unsubscribe.ends_with('>'), "{}", m.list_unsubscribe);
        assert_eq!(
            m.list_unsubscribe_post, "List-Unsubscribe=One-Click",
            "{}",
            m.name
        );
        assert_eq!(m.content_type, "multipart/alternative", "{}", m.name);
        assert_eq!(m.leaf_types, ["text/plain", "text/html"], "{}", m.name);

        // The token: base64url, no address in it (plain or inside the decoded bytes), and
        // it opens to (this campaign, this recipient).
        let token = m.token();
        assert!(
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{}: token {token}",
            m.name
        );
        let local = to.split('@').next().unwrap();
        assert!(!token.to_lowercase().contains(&to), "{}", m.name);
        assert!(
            local.len() < 4 || !token.to_lowercase().contains(local),
            "{}",
            m.name
        );
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert!(
            !bytes
                .windows(to.len())
                .any(|w| w.eq_ignore_ascii_case(to.as_bytes())),
            "{}: the address is inside the token bytes",
            m.name
        );
        let (campaign, hash) = keys
            .open_token(&token)
            .unwrap_or_else(|| panic!("{}: token does not open", m.name));
        assert_eq!(campaign, "winter-sale");
        assert_eq!(hash, keys.recipient_hash(&to), "{}", m.name);

        // Both parts carry this recipient's unsubscribe link; the text part the address.
        let url = format!("{UNSUBSCRIBE}?t={token}");
        assert!(m.text.contains(&url), "{}: text lacks {url}", m.name);
        assert!(
            html_unescape(&m.html).contains(&format!("href=\"{url}\"")),
            "{}: html lacks a link to {url}",
            m.name
        );
        assert!(
            m.text.contains(POSTAL),
            "{}: text lacks the postal address",
            m.name
        );
    }
}

#[test]
fn preview_limit_writes_that_many() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    run_expect(
        tact(&tmp.path().join("state"))
            .arg("preview")
            .arg(sample_campaign("winter-sale"))
            .arg("--out")
            .arg(&out)
            .arg("--limit")
            .arg("7"),
        0,
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 7);
}

#[test]
fn preview_without_out_writes_preview_name_in_the_current_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run_expect(
        tact(&tmp.path().join("state"))
            .current_dir(tmp.path())
            .arg("preview")
            .arg(sample_campaign("winter-sale"))
            .arg("--limit")
            .arg("3"),
        0,
    );
    let dir = tmp.path().join("preview-winter-sale");
    assert_eq!(mode(&dir), 0o700, "{}", r.stdout);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 3);
}

#[test]
fn a_byte_order_mark_changes_nothing() {
    let t = Tree::new();
    let mut csv = b"\xef\xbb\xbf".to_vec();
    csv.extend(fs::read(t.path("sample-data/customers.csv")).unwrap());
    fs::write(t.path("sample-data/customers.csv"), csv).unwrap();
    let (r, v) = check_json(
        t.tact()
            .arg("check")
            .arg(t.campaign("winter-sale"))
            .arg("--json"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["audience"]["rows"], 500);
    assert_eq!(v["audience"]["personalised"], 122);
    assert_eq!(v["audience"]["generic"], 98);
}

#[test]
fn unsubscribe_url_with_a_query_gets_ampersand_and_return_path_is_set() {
    let t = Tree::new();
    t.edit("sample-data/campaigns/winter-sale.toml", |s| {
        s.replace(
            &format!("unsubscribe_url = \"{UNSUBSCRIBE}\""),
            &format!(
                "unsubscribe_url = \"{UNSUBSCRIBE}?list=winter\"\nreturn_path = \"bounces@northwind.example\""
            ),
        )
    });
    let r = run_expect(
        t.tact()
            .arg("preview")
            .arg(t.campaign("winter-sale"))
            .arg("--recipient")
            .arg("ngozi.okafor@example.com"),
        0,
    );
    let m = parse_eml("stdout", r.stdout.as_bytes());
    assert!(
        m.list_unsubscribe
            .starts_with(&format!("<{UNSUBSCRIBE}?list=winter&t=")),
        "{}",
        m.list_unsubscribe
    );
    // The VERP form of the return path: this recipient's bounce token, the same each time.
    let rp = m
        .return_path
        .strip_prefix("<bounces+")
        .and_then(|r| r.strip_suffix("@northwind.example>"))
        .unwrap_or_else(|| panic!("not a VERP return path: {}", m.return_path));
    assert_eq!(rp.len(), tact::state::verp::TOKEN_LEN, "{rp}");
    let again = run_expect(
        t.tact()
            .arg("preview")
            .arg(t.campaign("winter-sale"))
            .arg("--recipient")
            .arg("ngozi.okafor@example.com"),
        0,
    );
    assert_eq!(
        parse_eml("stdout", again.stdout.as_bytes()).return_path,
        m.return_path
    );
}

// ---------------------------------------------------------------------------------------
// 4. personalised vs generic
// ---------------------------------------------------------------------------------------

/// Fields that may be in a customer's row but must never reach a generic message.
const DATA_FIELDS: [&str; 17] = [
    "customer_id",
    "first_name",
    "last_name",
    "language",
    "postcode",
    "birth_date",
    "gender",
    "loyalty_tier",
    "favourite_category",
    "last_order_at",
    "last_order_category",
    "order_count",
    "total_spent",
    "last_viewed_product",
    "last_viewed_at",
    "churn_score",
    "health_condition",
];

#[test]
fn personalised_recipients_get_their_name_and_generic_ones_get_no_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, msgs) = preview_all(
        &tmp.path().join("state"),
        &sample_campaign("winter-sale"),
        &tmp.path().join("out"),
    );
    let by_to: BTreeMap<String, &Msg> = msgs.iter().map(|m| (m.to_addr(), m)).collect();
    let all = customers(&sample_csv());

    // Personalised: every clearly eligible row with personalisation consent.
    let pers = expected_recipients(&all, true);
    assert!(
        pers.len() >= 100,
        "oracle found only {} personalised rows",
        pers.len()
    );
    for c in &pers {
        let m = by_to
            .get(&c.email())
            .unwrap_or_else(|| panic!("line {}: no message", c.line));
        assert_eq!(m.name, format!("line-{:07}.eml", c.line));
        let first = c.get("first_name");
        if first.is_empty() {
            continue;
        }
        assert_eq!(
            m.subject,
            format!("{first}, our winter picks are in"),
            "line {}",
            c.line
        );
        assert!(
            m.text.starts_with(&format!("Hi {first},")),
            "line {}: text starts {:?}",
            c.line,
            m.text.get(..40)
        );
        let cat = c.get("favourite_category");
        if !cat.is_empty() {
            assert!(
                m.text.contains(&format!("You told us you're into {cat}")),
                "line {}: no favourite category",
                c.line
            );
        }
    }

    // Generic: no customer data at all, whatever the row holds.
    let generic_msgs: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.text.starts_with("Hello,"))
        .collect();
    assert_eq!(
        generic_msgs.len(),
        98,
        "messages that start with the generic greeting"
    );
    let generic_rows = expected_recipients(&all, false);
    assert!(
        generic_rows.len() >= 80,
        "oracle found only {} generic rows",
        generic_rows.len()
    );
    for c in &generic_rows {
        let m = by_to
            .get(&c.email())
            .unwrap_or_else(|| panic!("line {}: no message", c.line));
        assert!(m.text.starts_with("Hello,"), "line {}: not generic", c.line);
        assert_eq!(m.subject, "our winter picks are in", "line {}", c.line);
        assert!(
            !m.text.contains("tailored to you"),
            "line {}: generic mail claims tailoring consent",
            c.line
        );
        let seen = m.visible();
        for f in DATA_FIELDS {
            let v = c.get(f).trim();
            if v.chars().count() <= 3 || !seen.contains(v) {
                continue;
            }
            // Campaign copy ("coats" in the preheader) is in every generic message; a
            // leaked field value is not.
            let in_all = generic_msgs.iter().all(|g| g.visible().contains(v));
            assert!(in_all, "line {}: generic message contains its {f}", c.line);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5. HTML escaping
// ---------------------------------------------------------------------------------------

#[test]
fn ampersand_in_a_name_is_escaped_in_html_only() {
    let state = tempfile::tempdir().unwrap();
    let row = customers(&sample_csv())
        .into_iter()
        .find(|c| c.get("customer_id") == "NW00121")
        .unwrap();
    assert_eq!(row.get("first_name"), "Chloé & Max");
    assert!(granted(row.get("consent_personalisation")));
    let m = one_recipient(state.path(), &sample_campaign("winter-sale"), &row.email());
    assert_eq!(m.to_addr(), "girard.household@example.net");
    assert_eq!(m.subject, "Chloé & Max, our winter picks are in");
    assert!(m.text.contains("Hi Chloé & Max,"), "text part");
    assert!(
        m.html.contains("Hi Chloé &amp; Max,"),
        "html part is not escaped"
    );
    assert!(!m.html.contains("& Max"), "raw `& Max` in the html part");
}

// ---------------------------------------------------------------------------------------
// 6. preview --recipient, exclusions, the header-injection row
// ---------------------------------------------------------------------------------------

#[test]
fn preview_recipient_prints_exactly_one_message() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // Found whatever the case and surrounding space.
    let r = run_expect(
        tact(&state)
            .current_dir(tmp.path())
            .arg("preview")
            .arg(sample_campaign("winter-sale"))
            .arg("--recipient")
            .arg("  NGOZI.Okafor@example.com "),
        0,
    );
    let header_lines = |name: &str| {
        r.stdout
            .lines()
            .filter(|l| {
                l.to_lowercase()
                    .starts_with(&format!("{}:", name.to_lowercase()))
            })
            .count()
    };
    assert!(
        r.stdout.starts_with("From: "),
        "{}",
        &r.stdout[..80.min(r.stdout.len())]
    );
    for h in [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Unsubscribe",
    ] {
        assert_eq!(header_lines(h), 1, "{h} lines on stdout");
    }
    let m = parse_eml("stdout", r.stdout.as_bytes());
    assert_eq!(m.to_addr(), "ngozi.okafor@example.com");
    assert_eq!(m.subject, "Ngozi, our winter picks are in");
    assert_eq!(m.leaf_types, ["text/plain", "text/html"]);
    assert!(
        !r.stdout.contains("wrote "),
        "status text mixed into the message"
    );
    // Nothing written to disk but the state.
    let entries: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["state"], "preview --recipient wrote files");
}

#[test]
fn preview_recipient_of_an_excluded_row_fails_with_the_reason_key() {
    let state = tempfile::tempdir().unwrap();
    let all = customers(&sample_csv());
    let no_consent = all
        .iter()
        .find(|c| {
            !c.ragged
                && c.get("country") == "GB"
                && !granted(c.get("consent_marketing"))
                && all.iter().filter(|d| d.email() == c.email()).count() == 1
        })
        .unwrap();
    for (email, reason, line) in [
        (no_consent.email(), "no_marketing_consent", no_consent.line),
        ("s.ostergaard@example.com".to_string(), "not_in_segment", 3),
        ("not-an-email".to_string(), "invalid_email", 47),
        (
            "eve.mallory@example.net".to_string(),
            "bad_header_value",
            243,
        ),
    ] {
        let r = run(tact(state.path())
            .arg("preview")
            .arg(sample_campaign("winter-sale"))
            .arg("--recipient")
            .arg(&email));
        assert_ne!(r.code, 0, "{email}: exit 0");
        assert!(r.stdout.is_empty(), "{email}: printed {}", r.stdout);
        assert!(
            r.stderr.contains(reason),
            "{email}: no {reason} in {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!("line {line}")),
            "{email}: no line {line} in {}",
            r.stderr
        );
    }
    let r = run(tact(state.path())
        .arg("preview")
        .arg(sample_campaign("winter-sale"))
        .arg("--recipient")
        .arg("nobody-here@example.com"));
    assert_ne!(r.code, 0);
    assert!(r.stdout.is_empty());
}

#[test]
fn header_injection_row_never_produces_a_message_or_a_header() {
    let tmp = tempfile::tempdir().unwrap();
    let (r, msgs) = preview_all(
        &tmp.path().join("state"),
        &sample_campaign("winter-sale"),
        &tmp.path().join("out"),
    );
    assert!(
        r.stderr.contains(":243: skipped: bad_header_value"),
        "{}",
        r.stderr
    );
    assert!(!tmp.path().join("out/line-0000243.eml").exists());
    for m in &msgs {
        assert_ne!(m.to_addr(), "eve.mallory@example.net", "{}", m.name);
        assert!(
            !m.header_names.iter().any(|h| h.eq_ignore_ascii_case("bcc")),
            "{}: has a Bcc header",
            m.name
        );
        assert!(
            !m.header_block
                .lines()
                .any(|l| l.trim_start().to_lowercase().starts_with("bcc:")),
            "{}: a Bcc: line in the header block",
            m.name
        );
        assert!(!m.raw.contains("x@example.net"), "{}", m.name);
        assert!(!m.raw.contains("Mallory"), "{}", m.name);
    }
}

// ---------------------------------------------------------------------------------------
// 7. Privacy of output
// ---------------------------------------------------------------------------------------

/// Values of a row that identify its person (split at control characters).
fn identifying_values(c: &Customer) -> Vec<String> {
    let mut out = Vec::new();
    for f in [
        "customer_id",
        "email",
        "first_name",
        "last_name",
        "postcode",
        "birth_date",
        "total_spent",
        "last_viewed_product",
    ] {
        for piece in c.get(f).split(char::is_control) {
            let piece = piece.trim();
            if piece.chars().count() >= 3 {
                out.push(piece.to_string());
            }
        }
    }
    out
}

#[test]
fn broken_and_bad_header_rows_are_named_by_line_only() {
    let t = Tree::new();
    // Three more bad rows on top of the sample's ragged row (279) and Eve (243):
    // a control character in first_name, invalid UTF-8, and too many fields.
    let mut csv = fs::read(t.path("sample-data/customers.csv")).unwrap();
    let first_new_line = csv.iter().filter(|&&b| b == b'\n').count() + 1;
    csv.extend_from_slice(
        b"NW09001,zed.secret@example.com,Zed\x07Zebedee,Quuxley,en,GB,ZZ9 9ZZ,1970-01-01,male,gold,boots,2026-01-01,boots,1,10.00,,,0.1,,yes,yes,2026-01-01\r\n\
          NW09002,ute.hidden@example.com,Ute,Gr\xfcnwaldt,en,GB,ZZ1 1ZZ,1971-01-01,female,gold,boots,2026-01-01,boots,1,10.00,,,0.1,,yes,yes,2026-01-01\r\n\
          NW09003,too.many@example.com,Toomany,Fieldsworth,en,GB,ZZ2 2ZZ,1972-01-01,female,gold,boots,2026-01-01,boots,1,10.00,,,0.1,,yes,yes,2026-01-01,EXTRA-SECRET\r\n",
    );
    fs::write(t.path("sample-data/customers.csv"), &csv).unwrap();

    let sample = customers(&sample_csv());
    let mut secrets: Vec<String> = sample
        .iter()
        .filter(|c| c.line == 243 || c.line == 279)
        .flat_map(identifying_values)
        .collect();
    assert!(secrets.iter().any(|s| s == "eve.mallory@example.net"));
    assert!(secrets.iter().any(|s| s == "jamie.doe@example.com"));
    secrets.extend(
        [
            "x@example.net",
            "zed.secret",
            "Zebedee",
            "Quuxley",
            "ZZ9 9ZZ",
            "NW09001",
            "ute.hidden",
            "Gr\u{fffd}nwaldt",
            "nwaldt",
            "ZZ1 1ZZ",
            "NW09002",
            "too.many",
            "Toomany",
            "Fieldsworth",
            "EXTRA-SECRET",
            "NW09003",
        ]
        .map(String::from),
    );
    let lines = [
        (243, "bad_header_value"),
        (279, "malformed_row"),
        (first_new_line, "bad_header_value"),
        (first_new_line + 1, "malformed_row"),
        (first_new_line + 2, "malformed_row"),
    ];

    let out = t.path("out");
    let runs = [
        (
            "check",
            run(t.tact().arg("check").arg(t.campaign("winter-sale"))),
        ),
        (
            "check --json",
            run(t
                .tact()
                .arg("check")
                .arg(t.campaign("winter-sale"))
                .arg("--json")),
        ),
        (
            "preview --out",
            run(t
                .tact()
                .arg("preview")
                .arg(t.campaign("winter-sale"))
                .arg("--out")
                .arg(&out)),
        ),
        (
            "preview --recipient",
            run(t
                .tact()
                .arg("preview")
                .arg(t.campaign("winter-sale"))
                .arg("--recipient")
                .arg("zed.secret@example.com")),
        ),
    ];
    for (what, r) in &runs {
        if *what != "preview --recipient" {
            assert_eq!(r.code, 0, "{what}: {}", r.stderr);
            for (line, reason) in lines {
                assert!(
                    r.stderr
                        .contains(&format!("customers.csv:{line}: skipped: {reason}")),
                    "{what}: stderr lacks line {line} ({reason})\n{}",
                    r.stderr
                );
            }
        } else {
            assert_ne!(r.code, 0);
            assert!(
                r.stderr.contains(&format!("line {first_new_line}")),
                "{}",
                r.stderr
            );
        }
        // The temporary directory's random name is not customer data.
        let all = r
            .all_output()
            .replace(&t.root().display().to_string(), "TREE");
        for s in &secrets {
            assert!(
                !all.contains(s.as_str()),
                "{what}: output contains `{s}`\n{all}"
            );
        }
    }
    // And nothing of them in any file tact wrote (state and previews). Short values are
    // left out here: random tokens and MIME boundaries can spell `Doe` by chance.
    assert!(!files_under(&out).is_empty());
    for f in files_under(&t.state()).into_iter().chain(files_under(&out)) {
        let text = String::from_utf8_lossy(&fs::read(&f).unwrap()).into_owned();
        for s in secrets.iter().filter(|s| s.chars().count() >= 6) {
            assert!(!text.contains(s.as_str()), "{} contains `{s}`", f.display());
        }
    }
}

#[test]
fn get_env_cannot_leak_a_secret() {
    const SECRET: &str = "hunter2-Sup3rSecret-Pa55";
    let t = Tree::new();
    t.edit("templates/winter-sale.txt.tera", |s| {
        s.replacen(
            "Our winter edit has landed,",
            "{{ get_env(name=\"TACT_SMTP_PASSWORD\") }} Our winter edit has landed,",
            1,
        )
    });
    let out = t.path("out");
    let check = run(t
        .tact()
        .env("TACT_SMTP_PASSWORD", SECRET)
        .arg("check")
        .arg(t.campaign("winter-sale")));
    let json_run = run(t
        .tact()
        .env("TACT_SMTP_PASSWORD", SECRET)
        .arg("check")
        .arg(t.campaign("winter-sale"))
        .arg("--json"));
    let v: Option<Value> = serde_json::from_str(&json_run.stdout).ok();
    let preview = run(t
        .tact()
        .env("TACT_SMTP_PASSWORD", SECRET)
        .arg("preview")
        .arg(t.campaign("winter-sale"))
        .arg("--out")
        .arg(&out));
    let one = run(t
        .tact()
        .env("TACT_SMTP_PASSWORD", SECRET)
        .arg("preview")
        .arg(t.campaign("winter-sale"))
        .arg("--recipient")
        .arg("ngozi.okafor@example.com"));

    for (what, r) in [
        ("check", &check),
        ("check --json", &json_run),
        ("preview", &preview),
        ("preview --recipient", &one),
    ] {
        assert!(
            !r.all_output().contains(SECRET),
            "{what} printed the secret"
        );
        assert_ne!(r.code, 0, "{what} succeeded\n{}", r.stderr);
        assert!(
            r.stderr.contains("get_env"),
            "{what}: stderr does not say why\n{}",
            r.stderr
        );
    }
    for f in files_under(t.root()) {
        let bytes = fs::read(&f).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} contains the secret",
            f.display()
        );
    }
    assert_eq!(files_under(&out).len(), 0, "preview wrote messages");
    // Either the template is refused when loaded (exit 2, naming the file), or it loads
    // and every recipient becomes a render_error with a generic-variant-fails block.
    match &v {
        Some(v) => {
            assert_eq!(v["audience"]["personalised"], 0);
            assert_eq!(v["audience"]["generic"], 0);
            assert_eq!(v["audience"]["excluded"]["render_error"], 221);
            assert!(
                v["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["rule"] == "generic-variant-fails" && f["level"] == "block"),
                "{}",
                v["findings"]
            );
        }
        None => {
            assert_eq!(check.code, 2, "{}", check.stderr);
            assert!(
                check.stderr.contains("winter-sale.txt.tera"),
                "{}",
                check.stderr
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 8. init and the state directory
// ---------------------------------------------------------------------------------------

#[test]
fn init_creates_private_state_once() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("deeper/state");
    let r = run_expect(tact(&state).arg("init"), 0);
    assert!(r.stdout.contains("created"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&state.display().to_string()),
        "{}",
        r.stdout
    );
    assert_eq!(mode(&state), 0o700);
    let key = state.join("master.key");
    assert_eq!(mode(&key), 0o600);
    let before = fs::read(&key).unwrap();
    assert_eq!(String::from_utf8_lossy(&before).trim().len(), 64);

    let r = run_expect(tact(&state).arg("init"), 0);
    assert!(r.stdout.contains("already exists"), "{}", r.stdout);
    assert!(!r.stdout.contains("created"), "{}", r.stdout);
    assert_eq!(
        fs::read(&key).unwrap(),
        before,
        "init replaced the master key"
    );

    // A second state directory gets its own key.
    let other = tmp.path().join("other");
    run_expect(tact(&other).arg("init"), 0);
    assert_ne!(fs::read(other.join("master.key")).unwrap(), before);
}

#[test]
fn check_and_preview_create_a_missing_state_dir() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in ["check", "preview"] {
        let state = tmp.path().join(format!("fresh-{cmd}"));
        assert!(!state.exists());
        let mut c = tact(&state);
        c.arg(cmd).arg(sample_campaign("winter-sale"));
        if cmd == "preview" {
            c.arg("--out").arg(tmp.path().join("out"));
        }
        let r = run_expect(&mut c, 0);
        assert!(
            r.stdout.contains(&state.display().to_string()),
            "{cmd}: the output does not name the state dir\n{}",
            r.stdout
        );
        assert_eq!(mode(&state), 0o700, "{cmd}");
        assert_eq!(mode(&state.join("master.key")), 0o600, "{cmd}");
    }
}

#[test]
fn a_master_key_readable_by_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    run_expect(tact(&state).arg("init"), 0);
    let key = state.join("master.key");
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let r = run(tact(&state)
        .arg("check")
        .arg(sample_campaign("winter-sale")));
    assert_ne!(r.code, 0, "check ran with a world-readable master key");
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

// ---------------------------------------------------------------------------------------
// 9. Determinism
// ---------------------------------------------------------------------------------------

#[test]
fn two_previews_give_the_same_tokens_and_bodies() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (_, a) = preview_all(
        &state,
        &sample_campaign("winter-sale"),
        &tmp.path().join("a"),
    );
    let (_, b) = preview_all(
        &state,
        &sample_campaign("winter-sale"),
        &tmp.path().join("b"),
    );
    assert_eq!(a.len(), 220);
    assert_eq!(
        a.iter().map(|m| &m.name).collect::<Vec<_>>(),
        b.iter().map(|m| &m.name).collect::<Vec<_>>()
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.to, y.to, "{}", x.name);
        assert_eq!(x.list_unsubscribe, y.list_unsubscribe, "{}", x.name);
        assert_eq!(x.subject, y.subject, "{}", x.name);
        assert_eq!(x.text, y.text, "{}", x.name);
        assert_eq!(x.html, y.html, "{}", x.name);
        assert_ne!(x.message_id, y.message_id, "{}: Message-ID reused", x.name);
    }

    // Another state (another master key) gives other tokens; another campaign too.
    let other = tmp.path().join("other-state");
    let ngozi = "ngozi.okafor@example.com";
    let mine = a.iter().find(|m| m.to_addr() == ngozi).unwrap();
    let theirs = one_recipient(&other, &sample_campaign("winter-sale"), ngozi);
    assert_ne!(mine.token(), theirs.token());
    let birthday = one_recipient(&state, &sample_campaign("birthday-treat"), ngozi);
    assert_ne!(mine.token(), birthday.token());
    assert_ne!(mine.token()[..40], birthday.token()[..40]);
}

// ---------------------------------------------------------------------------------------
// Found while writing the above
// ---------------------------------------------------------------------------------------

#[test]
fn preview_into_an_old_folder_leaves_no_stale_messages() {
    let t = Tree::new();
    let out = t.path("out");
    let (_, first) = preview_all(&t.state(), &t.campaign("winter-sale"), &out);
    assert!(first.iter().any(|m| m.name == "line-0000002.eml"));
    // Ngozi (line 2) withdraws marketing consent.
    t.edit("sample-data/customers.csv", |s| {
        s.replacen(
            ",,yes,yes,2025-03-12T10:15:00Z",
            ",,no,yes,2025-03-12T10:15:00Z",
            1,
        )
    });
    let (_, second) = preview_all(&t.state(), &t.campaign("winter-sale"), &out);
    assert!(
        !second
            .iter()
            .any(|m| m.to_addr() == "ngozi.okafor@example.com"),
        "the folder still holds a message for a recipient who withdrew consent"
    );
    assert_eq!(second.len(), 219);
}

#[test]
fn preview_writes_nothing_for_a_blocked_campaign() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("eml");
    let r = run_expect(
        tact(state.path())
            .arg("preview")
            .arg(sample_campaign("wellness-check"))
            .arg("--out")
            .arg(&dir),
        4,
    );
    assert!(r.stderr.contains("special-category"), "{}", r.stderr);
    assert!(!dir.exists() || fs::read_dir(&dir).unwrap().next().is_none());
}
