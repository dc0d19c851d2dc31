//! `tact new` on the exports marketers have (`tests/onboard/exports`, written with each
//! platform's documented header rows): what it recognises, what it says is missing, that
//! the campaign it writes passes `check` with the counts the file itself gives (read here
//! independently), that it never overwrites, and that the encodings Excel writes come
//! through with their letters intact.

mod hostile;

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::*;

fn exports() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onboard/exports")
}

/// A folder with a copy of every export, and `tact` run from it.
struct Desk {
    dir: tempfile::TempDir,
}

impl Desk {
    fn new() -> Desk {
        let dir = tempfile::tempdir().unwrap();
        for e in fs::read_dir(exports()).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
        Desk { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn tact(&self) -> assert_cmd::Command {
        let mut c = tact(&self.path("state"));
        c.current_dir(self.dir.path());
        c
    }

    /// `tact new NAME --audience FILE`, exit 0, its output.
    fn new_campaign(&self, name: &str, file: &str) -> String {
        run_expect(self.tact().args(["new", name, "--audience", file]), 0).stdout
    }

    fn check(&self, name: &str) -> serde_json::Value {
        let (r, v) = check_json(
            self.tact()
                .args(["check", "--json"])
                .arg(format!("campaigns/{name}.toml")),
        );
        assert!(r.stderr.is_empty() || r.code != 2, "{}", r.all_output());
        v
    }
}

/// Rows of an export as the test reads them: header → value, with the csv crate alone.
fn rows(file: &Path, sep: u8) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(sep)
        .from_path(file)
        .unwrap();
    let h: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|rec| {
            h.iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect()
}

fn audience(v: &serde_json::Value) -> (u64, u64, u64) {
    let a = &v["audience"];
    (
        a["rows"].as_u64().unwrap(),
        a["personalised"].as_u64().unwrap(),
        a["generic"].as_u64().unwrap(),
    )
}

#[test]
fn mailchimp_export_to_a_checked_campaign_in_two_commands_and_its_leavers_suppressed() {
    let d = Desk::new();
    let file = "subscribed_members_export_5f2a.csv";
    let out = d.new_campaign("spring", file);
    assert!(out.contains("a Mailchimp audience export"), "{out}");
    assert!(
        out.contains("marketing consent: everyone in the file"),
        "{out}"
    );
    assert!(out.contains("when they consented: `CONFIRM_TIME`"), "{out}");
    assert!(out.contains("no personalisation consent"), "{out}");
    assert!(out.contains("tact suppress import"), "{out}");
    let schema = fs::read_to_string(d.path("subscribed_members_export_5f2a.schema.toml")).unwrap();
    assert!(schema.contains("email = \"Email Address\""), "{schema}");
    assert!(
        schema.contains("consent_marketing = { value = \"yes\", reason ="),
        "{schema}"
    );
    assert!(
        schema.contains("LATITUDE = { class = \"high-risk\""),
        "{schema}"
    );
    assert!(
        schema.contains("OPTIN_IP = { class = \"quasi-identifier\""),
        "{schema}"
    );
    assert!(
        schema.contains("Birthday = { class = \"quasi-identifier\""),
        "{schema}"
    );
    assert!(
        schema.contains("MEMBER_RATING = { class = \"behavioural\", inferred = true"),
        "{schema}"
    );
    assert!(schema.contains("# REVIEW: free text"), "{schema}");

    let v = d.check("spring");
    let n = rows(&d.path(file), b',').len() as u64;
    assert_eq!(audience(&v), (n, 0, n), "{v:#}");
    assert_eq!(v["constant_roles"][0]["role"], "consent_marketing");
    assert_eq!(v["verdict"], "notice", "{v:#}");

    // The command `new` printed, run as printed: the people who left are suppressed.
    let line = out
        .lines()
        .find(|l| l.contains("tact suppress import"))
        .unwrap();
    let files: Vec<&str> = line
        .split("tact suppress import ")
        .skip(1)
        .map(|f| f.trim_end_matches(" && "))
        .collect();
    assert_eq!(files.len(), 2, "{line}");
    run_expect(d.tact().arg("init"), 0);
    for f in files {
        run_expect(d.tact().args(["suppress", "import", f]), 0);
    }
    for who in ["left0@example.com", "bounced1@example.com"] {
        run_expect(d.tact().args(["suppress", "check", who]), 0);
    }
    run_expect(
        d.tact().args(["suppress", "check", "member3@example.com"]),
        6,
    );
}

#[test]
fn shopify_export_maps_its_consent_flag_and_says_it_has_no_dates_without_inventing_one() {
    let d = Desk::new();
    let file = "shopify_customers_export.csv";
    let out = d.new_campaign("welcome", file);
    assert!(out.contains("a Shopify customers export"), "{out}");
    assert!(
        out.contains("marketing consent: `Accepts Email Marketing`"),
        "{out}"
    );
    assert!(
        out.contains("no consent date: Shopify's customers export says whether"),
        "{out}"
    );
    let schema = fs::read_to_string(d.path("shopify_customers_export.schema.toml")).unwrap();
    assert!(
        !schema.contains("consent_at ="),
        "a consent date was invented: {schema}"
    );
    let v = d.check("welcome");
    let all = rows(&d.path(file), b',');
    let yes = all
        .iter()
        .filter(|r| r["Accepts Email Marketing"] == "yes")
        .count() as u64;
    assert_eq!(audience(&v), (all.len() as u64, 0, yes), "{v:#}");
    assert_eq!(
        v["audience"]["excluded"]["no_marketing_consent"].as_u64(),
        Some(all.len() as u64 - yes)
    );
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "undated-consent"),
        "{v:#}"
    );
}

#[test]
fn klaviyo_hubspot_and_woocommerce_exports_in_their_own_words() {
    let d = Desk::new();
    let out = d.new_campaign("k", "klaviyo_profiles.csv");
    assert!(
        out.contains("`Email Marketing Consent`, granted by SUBSCRIBED"),
        "{out}"
    );
    let schema = fs::read_to_string(d.path("klaviyo_profiles.schema.toml")).unwrap();
    assert!(
        schema.contains("\"Predicted Gender\" = { class = \"quasi-identifier\", inferred = true"),
        "{schema}"
    );
    assert!(
        schema.contains("\"Churn Risk Prediction\" = { class = \"behavioural\", inferred = true"),
        "{schema}"
    );
    assert!(
        schema.contains("\"IP Address\" = { class = \"quasi-identifier\""),
        "{schema}"
    );
    let all = rows(&d.path("klaviyo_profiles.csv"), b',');
    let subscribed = all
        .iter()
        .filter(|r| r["Email Marketing Consent"] == "SUBSCRIBED")
        .count() as u64;
    assert_eq!(audience(&d.check("k")), (all.len() as u64, 0, subscribed));

    let out = d.new_campaign("h", "hubspot-crm-exports-all-contacts.csv");
    assert!(out.contains("a HubSpot contacts export"), "{out}");
    let all = rows(&d.path("hubspot-crm-exports-all-contacts.csv"), b',');
    let consented = all
        .iter()
        .filter(|r| {
            r["Legal basis for processing contact's data"] == "Freely given consent from contact"
        })
        .count() as u64;
    assert_eq!(audience(&d.check("h")), (all.len() as u64, 0, consented));

    let out = d.new_campaign("w", "woocommerce-customers.csv");
    assert!(out.contains("WooCommerce does not record it"), "{out}");
    // Nobody can be sent anything: check says so and stops (exit 2), as for any file.
    let r = run_expect(d.tact().args(["check", "campaigns/w.toml"]), 2);
    assert!(r.stderr.contains("0 recipients"), "{}", r.stderr);
}

#[test]
fn excel_encodings_and_separators_come_through_with_their_letters() {
    let d = Desk::new();
    run_expect(d.tact().arg("init"), 0);
    let out = d.new_campaign("dk", "excel-danish.csv");
    assert!(out.contains("separator: semicolons"), "{out}");
    assert!(out.contains("read as Windows-1252"), "{out}");
    let schema = fs::read_to_string(d.path("excel-danish.schema.toml")).unwrap();
    assert!(schema.contains("encoding = \"windows-1252\""), "{schema}");
    let (rows_, _, generic) = audience(&d.check("dk"));
    assert_eq!((rows_, generic), (30, 15));
    let r = run_expect(
        d.tact().args([
            "export",
            "dk0@example.com",
            "--audience",
            "excel-danish.csv",
        ]),
        0,
    );
    assert!(
        r.stdout.contains("S\u{f8}ren") && r.stdout.contains("\u{c5}rhus"),
        "{}",
        r.stdout
    );

    let out = d.new_campaign("wide", "excel-unicode.txt.csv");
    assert!(out.contains("UTF-16LE with a byte-order mark"), "{out}");
    assert!(out.contains("separator: tabs"), "{out}");
    assert_eq!(audience(&d.check("wide")), (25, 0, 25));
    let r = run_expect(
        d.tact().args([
            "export",
            "u2@example.com",
            "--audience",
            "excel-unicode.txt.csv",
        ]),
        0,
    );
    assert!(r.stdout.contains("\u{141}ukasz"), "{}", r.stdout);
}

#[test]
fn new_never_overwrites_and_keeps_an_existing_schema() {
    let d = Desk::new();
    let mine = "# mine\n[columns]\nconsent_marketing = \"Accepts Email Marketing\"\n";
    fs::write(d.path("shopify_customers_export.schema.toml"), mine).unwrap();
    let out = d.new_campaign("one", "shopify_customers_export.csv");
    assert!(out.contains("kept your schema"), "{out}");
    assert_eq!(
        fs::read_to_string(d.path("shopify_customers_export.schema.toml")).unwrap(),
        mine
    );
    let campaign = fs::read(d.path("campaigns/one.toml")).unwrap();
    fs::write(d.path("campaigns/templates/one.txt.tera"), "edited").unwrap();
    let r = run_expect(
        d.tact()
            .args(["new", "one", "--audience", "shopify_customers_export.csv"]),
        2,
    );
    assert!(r.stderr.contains("already exist"), "{}", r.stderr);
    assert_eq!(fs::read(d.path("campaigns/one.toml")).unwrap(), campaign);
    assert_eq!(
        fs::read_to_string(d.path("campaigns/templates/one.txt.tera")).unwrap(),
        "edited"
    );
    // Bad names and unreadable files: exit 2, nothing written.
    run_expect(
        d.tact().args([
            "new",
            "Bad_Name",
            "--audience",
            "shopify_customers_export.csv",
        ]),
        2,
    );
    run_expect(
        d.tact().args(["new", "two", "--audience", "missing.csv"]),
        2,
    );
    assert!(!d.path("campaigns/two.toml").exists());
}

/// A link planted where `new` writes (to a file that does not exist yet) is refused like a
/// file: nothing is written through it, and nothing else is left behind.
#[test]
fn a_link_where_new_writes_is_refused_and_nothing_is_half_made() {
    let d = Desk::new();
    fs::create_dir_all(d.path("campaigns/templates")).unwrap();
    let elsewhere = d.path("elsewhere.html");
    std::os::unix::fs::symlink(&elsewhere, d.path("campaigns/templates/x.html.tera")).unwrap();
    let r = run_expect(
        d.tact()
            .args(["new", "x", "--audience", "shopify_customers_export.csv"]),
        2,
    );
    assert!(
        r.stderr.contains("x.html.tera already exist"),
        "{}",
        r.stderr
    );
    assert!(!elsewhere.exists());
    for f in [
        "campaigns/x.toml",
        "campaigns/templates/x.txt.tera",
        "shopify_customers_export.schema.toml",
    ] {
        assert!(!d.path(f).exists(), "{f} was written");
    }
}
