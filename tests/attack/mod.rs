//! The attacker's suite (#11): what a careless export, a pasted address or a hostile
//! template does to the promises, checked on what tact prints and writes.

mod evasion;

use serde_json::Value;

use crate::util::*;

/// The first customer row of the sample: GB, marketing consent, fresh consent date.
fn first_row(t: &Tree) -> (String, Vec<String>) {
    let csv = t.read("sample-data/customers.csv");
    let mut lines = csv.lines();
    let header = lines.next().expect("header").to_string();
    let row = lines.next().expect("a first row");
    assert!(
        row.starts_with("NW00001,ngozi.okafor@example.com,"),
        "{row}"
    );
    (header, row.split(',').map(str::to_string).collect())
}

/// Appends copies of the first row with these addresses (and fresh customer ids).
fn append_copies(t: &Tree, emails: &[&str]) {
    let (_, row) = first_row(t);
    let mut csv = t.read("sample-data/customers.csv");
    if !csv.ends_with('\n') {
        csv.push('\n');
    }
    for (i, e) in emails.iter().enumerate() {
        let mut r = row.clone();
        r[0] = format!("AT{i:05}");
        r[1] = (*e).to_string();
        csv.push_str(&r.join(","));
        csv.push('\n');
    }
    t.write("sample-data/customers.csv", &csv);
}

fn excluded(v: &Value, reason: &str) -> u64 {
    v["audience"]["excluded"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no count for {reason}: {}", v["audience"]))
}

fn check(t: &Tree) -> Value {
    let (r, v) = check_json(
        t.tact()
            .arg("check")
            .arg(t.campaign("winter-sale"))
            .arg("--json"),
    );
    assert!(
        r.code == 0 || r.code == 3,
        "check: {}\n{}",
        r.code,
        r.stderr
    );
    v
}

/// One mailbox written three ways is one recipient: IDNA reads `exämple.com` and its
/// punycode alike, and ignores a zero-width space pasted after the domain. Each spelling
/// that hashed apart was a second message to the same person.
#[test]
fn one_mailbox_spelled_apart_is_still_a_duplicate() {
    let base = Tree::new();
    let before = excluded(&check(&base), "duplicate");
    let t = Tree::new();
    append_copies(
        &t,
        &[
            "ngozi.okafor@example.com\u{200B}",
            "ngozi@exämple.com",
            "ngozi@XN--EXMPLE-CUA.com",
        ],
    );
    let v = check(&t);
    assert_eq!(
        excluded(&v, "duplicate"),
        before + 2,
        "the zero-width copy of row 2 and the punycode copy of the IDN row are duplicates: {}",
        v["audience"]
    );
}

/// An opt-out holds for every spelling of the address that reaches the same mailbox.
#[test]
fn an_opt_out_covers_every_spelling_of_the_mailbox() {
    let t = Tree::new();
    append_copies(&t, &["ngozi@xn--exmple-cua.com"]);
    t.edit("sample-data/customers.csv", |s| {
        s.replacen(
            "NW00001,ngozi.okafor@example.com,",
            "NW00001,ngozi.okafor@example.com\u{200B},",
            1,
        )
    });
    run_expect(t.tact().arg("init"), 0);
    run_expect(
        t.tact().args([
            "suppress",
            "add",
            "ngozi.okafor@example.com",
            "Ngozi@Exämple.com",
        ]),
        0,
    );
    let v = check(&t);
    assert_eq!(
        excluded(&v, "suppressed"),
        2,
        "both suppressed people are held back: {}",
        v["audience"]
    );
}

/// A column renamed the way a real export names it: a government identifier in the segment
/// and a header with an accent in the body. Both are special categories and must block;
/// before, `SSN` was an unclassified notice (exit 0) and `Religión` became `religi_n`.
#[test]
fn sensitive_columns_block_whatever_the_export_calls_them() {
    let t = Tree::new();
    t.edit("sample-data/customers.csv", |s| {
        s.replacen("customer_id,", "SSN,", 1)
            .replacen(",loyalty_tier,", ",Religión,", 1)
    });
    t.edit("sample-data/campaigns/winter-sale.toml", |s| {
        s.replace(
            "segment = 'country == \"GB\"'",
            "segment = 'country == \"GB\" and SSN != \"\"'",
        )
    });
    for part in ["html", "txt"] {
        t.edit(&format!("templates/winter-sale.{part}.tera"), |s| {
            s.replace("loyalty_tier", "religion")
        });
    }
    let (r, v) = check_json(
        t.tact()
            .arg("check")
            .arg(t.campaign("winter-sale"))
            .arg("--json"),
    );
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    let special = rule_fields(&v, "special-category");
    for f in ["SSN", "religion"] {
        assert!(
            special.iter().any(|s| s == f),
            "{f} not special: {special:?}"
        );
    }
}

/// Autoescaping keeps a value text in text and in quoted attributes only. In a tag, outside
/// quotes, an escaped value still adds attributes (`x onmouseover=… style=…`) or names the
/// element: `check` blocks it as `unescaped-field`, and `preview` writes nothing. Before, both
/// passed (exit 0) and the .eml carried the customer's attributes; the canary renders also
/// skipped the HTML of any field the subject uses (here `first_name`), as the subject guard
/// stopped those renders first.
#[test]
fn a_field_inside_a_tag_blocks_check_and_preview() {
    for (what, markup, blocks) in [
        (
            "unquoted attribute",
            "<a href={{ first_name }}>Hi</a>,",
            true,
        ),
        (
            "attribute position",
            "<span {{ first_name }}>Hi</span>,",
            true,
        ),
        ("element name", "<{{ first_name }}>Hi,", true),
        (
            "quoted attribute",
            "<a title=\"{{ first_name }}\">Hi</a>,",
            false,
        ),
    ] {
        let t = Tree::new();
        t.edit("templates/winter-sale.html.tera", |s| {
            s.replace("Hi {{ first_name }},", markup)
        });
        let (r, v) = check_json(
            t.tact()
                .arg("check")
                .arg(t.campaign("winter-sale"))
                .arg("--json"),
        );
        let named = rule_fields(&v, "unescaped-field")
            .iter()
            .any(|f| f == "first_name");
        assert_eq!(
            (r.code == 4 && named),
            blocks,
            "{what}: exit {}, findings {}",
            r.code,
            v["findings"]
        );
        let out = t.path("out");
        let p = run(t
            .tact()
            .arg("preview")
            .arg(t.campaign("winter-sale"))
            .arg("--out")
            .arg(&out));
        let written = files_under(&out).len();
        if blocks {
            assert_eq!((p.code, written), (4, 0), "{what}: preview\n{}", p.stderr);
        } else {
            assert_eq!(p.code, 0, "{what}: preview\n{}", p.stderr);
            assert!(written > 0, "{what}: nothing written");
        }
    }
}
