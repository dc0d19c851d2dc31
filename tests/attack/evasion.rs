//! Ways a campaign could show a sensitive value without `sensitive-value` counting it:
//! the value written so that a reader sees the word and a plain matcher does not, or the
//! schema (or the column's other values) calling the column something that is never
//! scanned. Each is judged on the sample `you-viewed`, whose subject prints the product:
//! the disguised audience must block with as many recipients as the plain one.

use serde_json::Value;

use crate::util::*;

const PRODUCT: &str = "last_viewed_product";

/// `check --json` of you-viewed: exit code and the sensitive-value finding's recipients.
fn sensitive_recipients(t: &Tree) -> (i32, u64, Value) {
    let (r, v) = check_json(
        t.tact()
            .arg("check")
            .arg(t.campaign("you-viewed"))
            .arg("--json"),
    );
    let n = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "sensitive-value")
        .map(|f| f["measured"]["recipients"].as_u64().expect("recipients"))
        .sum();
    (r.code, n, v)
}

/// Rewrites every value of the product column with `f` (the csv crate keeps quoting).
fn rewrite_products(t: &Tree, f: impl Fn(&str) -> String) {
    let path = t.path("sample-data/customers.csv");
    let mut r = csv::Reader::from_path(&path).expect("read");
    let header = r.headers().expect("header").clone();
    let i = header.iter().position(|h| h == PRODUCT).expect("column");
    // The sample has one short (malformed) row on purpose: keep it as it is.
    let records: Vec<csv::StringRecord> = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&path)
        .expect("read")
        .records()
        .map(|r| r.expect("record"))
        .collect();
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_path(&path)
        .expect("write");
    w.write_record(&header).expect("header");
    for rec in records {
        let cells: Vec<String> = rec
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if j == i && rec.len() == header.len() && !c.is_empty() {
                    f(c)
                } else {
                    c.to_string()
                }
            })
            .collect();
        w.write_record(&cells).expect("row");
    }
    w.flush().expect("flush");
}

fn baseline() -> u64 {
    let (code, n, _) = sensitive_recipients(&Tree::new());
    assert_eq!(code, 4, "you-viewed blocks as shipped");
    assert!(n >= 4, "the sample has sensitive products: {n}");
    n
}

/// A zero-width space or a tag character in the middle of each word, Cyrillic letters
/// drawn like Latin ones, and words run together in camel case: the subject reads the
/// same to a person, and the check counts the same recipients. Before, each way took
/// some or all of them out of the finding.
#[test]
fn a_disguised_sensitive_value_is_counted_like_the_plain_one() {
    let plain = baseline();
    let disguises: [(&str, Disguise); 4] = [
        ("zero-width space", |v| mid_word(v, "\u{200B}")),
        ("tag character", |v| mid_word(v, "\u{E0067}")),
        ("look-alike letters", |v| {
            v.chars()
                .map(|c| match c {
                    'c' => 'с',
                    'p' => 'р',
                    'y' => 'у',
                    'x' => 'х',
                    'a' => 'а',
                    _ => c,
                })
                .collect()
        }),
        ("camel case", |v| {
            v.split_whitespace()
                .map(|w| {
                    let mut cs = w.chars();
                    cs.next()
                        .map(|f| f.to_uppercase().chain(cs).collect::<String>())
                        .unwrap_or_default()
                })
                .collect()
        }),
    ];
    for (name, disguise) in disguises {
        let t = Tree::new();
        rewrite_products(&t, disguise);
        let (code, n, v) = sensitive_recipients(&t);
        assert_eq!(
            (code, n),
            (4, plain),
            "{name}: {}",
            serde_json::to_string_pretty(&v["findings"]).unwrap_or_default()
        );
    }
}

/// A rewrite of one product value.
type Disguise = fn(&str) -> String;

fn mid_word(v: &str, ins: &str) -> String {
    v.split(' ')
        .map(|w| {
            let mid = w
                .char_indices()
                .nth(w.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            format!("{}{ins}{}", &w[..mid], &w[mid..])
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The schema calls the product column a date or a number (by mistake or to quieten the
/// check), or nearly every other value in it is a number so that its type is guessed as
/// one: the values that are not dates or numbers are still read. Before, a column of any
/// type but text was never scanned, and you-viewed went out with "Maternity rain parka"
/// in the subject at exit 3.
#[test]
fn a_column_typed_as_something_else_is_still_read() {
    let plain = baseline();
    for ty in ["date", "number", "bool"] {
        let t = Tree::new();
        t.edit("sample-data/customers.schema.toml", |s| {
            s.replace(
                "last_viewed_product = { class = \"behavioural\",",
                &format!("last_viewed_product = {{ class = \"behavioural\", type = \"{ty}\","),
            )
        });
        assert!(
            t.read("sample-data/customers.schema.toml")
                .contains(&format!("type = \"{ty}\", observed_at")),
            "the schema edit took"
        );
        let (code, n, _) = sensitive_recipients(&t);
        assert_eq!((code, n), (4, plain), "type = {ty}");
    }
    // Every value that is not sensitive made a number: the column's type is guessed as a
    // number (nine in ten values fit), the few words left are what matter.
    let t = Tree::new();
    let lex = tact::lexicon::Lexicon::builtin();
    rewrite_products(&t, |v| {
        if lex.classify(v) == 0 {
            format!("{}", v.len() * 7)
        } else {
            v.to_string()
        }
    });
    let (code, n, v) = sensitive_recipients(&t);
    let ty = v["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == PRODUCT)
        .map(|f| f["type"].clone());
    assert_eq!((code, n), (4, plain), "guessed type {ty:?}");
}
