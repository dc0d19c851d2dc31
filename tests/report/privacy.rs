//! `check --report FILE.html|FILE.md`: the privacy report. Snapshots of both forms for the
//! sample campaigns; the HTML parsed as strict XML and searched for anything that could run
//! or load; an audience made of canaries, none of which may reach either file; the funnel
//! against `check --json`; hostile text from the campaign, the schema and the file name.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::util::*;

const CAMPAIGNS: [&str; 4] = [
    "winter-sale",
    "birthday-treat",
    "wellness-check",
    "you-viewed",
];

/// What may not appear in a page that must run nothing and load nothing, tag by tag.
const FORBIDDEN_ELEMENTS: [&str; 16] = [
    "script",
    "link",
    "img",
    "image",
    "iframe",
    "frame",
    "object",
    "embed",
    "base",
    "use",
    "audio",
    "video",
    "source",
    "form",
    "foreignObject",
    "feImage",
];

/// The page as strict XML (XHTML syntax with the HTML5 doctype).
fn parse(html: &str) -> Result<roxmltree::Document<'_>, roxmltree::Error> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, opts)
}

/// Why `html` is not one well-formed, self-contained, inert page, if it is not.
fn self_contained(html: &str) -> Result<(), String> {
    let doc = parse(html).map_err(|e| format!("not well-formed: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "html" {
        return Err(format!("root element is <{}>", root.tag_name().name()));
    }
    if html.to_ascii_lowercase().contains("<script") {
        return Err("contains `<script`".into());
    }
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        if FORBIDDEN_ELEMENTS
            .iter()
            .any(|f| f.eq_ignore_ascii_case(name))
        {
            return Err(format!("has a <{name}> element"));
        }
        for a in node.attributes() {
            let an = a.name().to_ascii_lowercase();
            if an.starts_with("on") {
                return Err(format!("<{name}> has an event handler {an}"));
            }
            if matches!(
                an.as_str(),
                "src" | "href" | "srcset" | "action" | "data" | "poster"
            ) && !a.value().starts_with('#')
            {
                return Err(format!("<{name} {an}=\"{}\"> refers outside", a.value()));
            }
            if an == "http-equiv" && a.value().eq_ignore_ascii_case("refresh") {
                return Err("a meta refresh".into());
            }
            if an == "style" {
                fetches(a.value())?;
            }
        }
        if name.eq_ignore_ascii_case("style") {
            fetches(node.text().unwrap_or_default())?;
        }
    }
    Ok(())
}

/// CSS that could fetch something.
fn fetches(css: &str) -> Result<(), String> {
    let low = css.to_ascii_lowercase();
    for bad in ["@import", "url(", "image-set(", "expression("] {
        if low.contains(bad) {
            return Err(format!("style with `{bad}`"));
        }
    }
    Ok(())
}

fn assert_self_contained(html: &str) {
    if let Err(e) = self_contained(html) {
        panic!("{e}\n--- report\n{html}");
    }
}

/// Markdown that no renderer turns into HTML, a link or an image: no `<` at all, and every
/// bracket, `!` and `://` escaped.
fn assert_inert_markdown(md: &str) {
    assert!(!md.contains('<'), "raw HTML in the Markdown:\n{md}");
    let b = md.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if matches!(c, b'[' | b']' | b'!') {
            assert!(
                i > 0 && b[i - 1] == b'\\',
                "unescaped `{}` at {i}:\n{md}",
                *c as char
            );
        }
    }
    for (i, _) in md.match_indices("://") {
        assert!(i > 0 && b[i - 1] == b'\\', "a bare URL at {i}:\n{md}");
    }
}

struct Checked {
    run: Run,
    json: Value,
    html: String,
    md: String,
}

/// `check --json` of a campaign with `--report` both ways, in a fresh state; the stdout of
/// both runs must be the same.
fn checked(tact_cmd: impl Fn() -> assert_cmd::Command, campaign: &Path) -> Checked {
    let out = tempfile::tempdir().unwrap();
    let html_path = out.path().join("report.html");
    let md_path = out.path().join("report.md");
    let (first, json) = check_json(
        tact_cmd()
            .arg("check")
            .arg(campaign)
            .arg("--json")
            .arg("--report")
            .arg(&html_path),
    );
    let again = run(tact_cmd()
        .arg("check")
        .arg(campaign)
        .arg("--json")
        .arg("--report")
        .arg(&md_path));
    assert_eq!(first.code, again.code);
    for p in [&html_path, &md_path] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    Checked {
        run: first,
        json,
        html: fs::read_to_string(&html_path).unwrap(),
        md: fs::read_to_string(&md_path).unwrap(),
    }
}

fn sample(name: &str) -> Checked {
    let state = tempfile::tempdir().unwrap();
    let c = checked(|| tact(state.path()), &sample_campaign(name));
    drop(state);
    c
}

/// The page without its style sheet: the snapshot is about what it says.
fn without_css(html: &str) -> String {
    let start = html.find("<style>").expect("a style element") + "<style>".len();
    let end = html.find("</style>").expect("its end");
    format!("{}[CSS]{}", &html[..start], &html[end..])
}

/// The people at each step of the funnel, from `check --json`'s counts: the file's rows,
/// then less each group of reasons in the order the plan decides them.
fn expected_funnel(v: &Value) -> Vec<u64> {
    // REASONS is in the plan's order: three steps of three, then the rest.
    let groups = [
        &REASONS[0..3],
        &REASONS[3..6],
        &REASONS[6..9],
        &REASONS[9..],
    ];
    let a = &v["audience"];
    let mut people = a["rows"].as_u64().unwrap();
    let mut out = vec![people];
    for g in groups {
        people -= g
            .iter()
            .map(|k| a["excluded"][k].as_u64().unwrap())
            .sum::<u64>();
        out.push(people);
    }
    assert_eq!(
        people,
        a["personalised"].as_u64().unwrap() + a["generic"].as_u64().unwrap()
    );
    out
}

fn number(s: &str) -> u64 {
    s.trim()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("`{s}` is not a count"))
}

/// The funnel as the HTML's table says it: (people, the third cell's text) per step.
fn html_funnel(html: &str) -> Vec<(u64, String)> {
    let doc = parse(html).unwrap();
    let section = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("funnel"))
        .expect("a funnel section");
    let svg = section
        .descendants()
        .find(|n| n.has_tag_name("svg"))
        .expect("an inline SVG chart");
    assert!(svg.descendants().filter(|n| n.has_tag_name("rect")).count() >= 6);
    section
        .descendants()
        .filter(|n| n.has_tag_name("tr"))
        .filter_map(|tr| {
            let cells: Vec<String> = tr
                .children()
                .filter(|c| c.has_tag_name("td"))
                .map(|c| {
                    c.descendants()
                        .filter(|t| t.is_text())
                        .filter_map(|t| t.text())
                        .collect::<Vec<_>>()
                        .join("")
                })
                .collect();
            (cells.len() == 3).then(|| (number(&cells[1]), cells[2].clone()))
        })
        .collect()
}

/// The same from the Markdown table under "Who would receive it".
fn md_funnel(md: &str) -> Vec<(u64, String)> {
    let start = md
        .find("## Who would receive it")
        .expect("the funnel heading");
    md[start..]
        .lines()
        .skip_while(|l| !l.starts_with("|---"))
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            (
                number(cells[1]),
                cells[2].trim_end_matches(" |").to_string(),
            )
        })
        .collect()
}

fn assert_funnel(v: &Value, steps: &[(u64, String)], form: &str) {
    let people: Vec<u64> = steps.iter().map(|(n, _)| *n).collect();
    assert_eq!(people, expected_funnel(v), "{form} funnel");
    // Every reason that left someone out is named once, with its count, and no other.
    let all: String = steps
        .iter()
        .map(|(_, t)| t.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for key in REASONS {
        let n = v["audience"]["excluded"][key].as_u64().unwrap();
        let named = format!("{n} `{key}`");
        let named_html = format!("{n} {key}");
        let shown = all.contains(&named) || all.contains(&named_html);
        assert_eq!(shown, n > 0, "{form}: {key} = {n} in {all}");
    }
}

fn check_sample(name: &str) -> Checked {
    let c = sample(name);
    assert_self_contained(&c.html);
    assert_inert_markdown(&c.md);
    for r in [&c.html, &c.md] {
        assert!(!r.contains("http://") && !r.contains("https://"), "{r}");
    }
    assert_funnel(&c.json, &html_funnel(&c.html), "HTML");
    assert_funnel(&c.json, &md_funnel(&c.md), "Markdown");
    // The verdict and every finding's rule, in both.
    let verdict = c.json["verdict"].as_str().unwrap().to_uppercase();
    for r in [&c.html, &c.md] {
        assert!(r.contains(&verdict), "{verdict}");
        for f in c.json["findings"].as_array().unwrap() {
            assert!(r.contains(f["rule"].as_str().unwrap()), "{f}");
        }
    }
    c
}

#[test]
fn privacy_report_winter_sale() {
    let c = check_sample("winter-sale");
    assert_eq!(c.run.code, 0, "{}", c.run.stderr);
    insta::assert_snapshot!("privacy_md_winter_sale", c.md);
    insta::assert_snapshot!("privacy_html_winter_sale", without_css(&c.html));
}

#[test]
fn privacy_report_birthday_treat() {
    let c = check_sample("birthday-treat");
    assert_eq!(c.run.code, 3, "{}", c.run.stderr);
    // The measured figures of check --json, as figures.
    let m = &c.json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "quasi-identifier-combination")
        .expect("the combination")["measured"];
    let figures = format!(
        "over the {} personalised recipient(s) who would see birth_date and postcode: {} (",
        m["recipients"], m["unique"]
    );
    for r in [&c.html, &c.md] {
        assert!(r.contains(&figures), "{figures}");
    }
    insta::assert_snapshot!("privacy_md_birthday_treat", c.md);
    insta::assert_snapshot!("privacy_html_birthday_treat", without_css(&c.html));
}

#[test]
fn privacy_report_wellness_check() {
    let c = check_sample("wellness-check");
    assert_eq!(c.run.code, 4, "the report is written on a block too");
    insta::assert_snapshot!("privacy_md_wellness_check", c.md);
    insta::assert_snapshot!("privacy_html_wellness_check", without_css(&c.html));
}

#[test]
fn privacy_report_you_viewed() {
    let c = check_sample("you-viewed");
    assert_eq!(c.run.code, 4, "{}", c.run.stderr);
    // The age of the values, as check --json measured it.
    let field = c.json["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "last_viewed_product")
        .expect("the field");
    let d = &field["observed_days"];
    let age = format!("{}–{} days ago, median {}", d["min"], d["max"], d["median"]);
    for r in [&c.html, &c.md] {
        assert!(
            r.contains("<th>Age</th>") || r.contains("| Age |"),
            "no age column"
        );
        assert!(r.contains(&age), "{age}");
    }
    insta::assert_snapshot!("privacy_md_you_viewed", c.md);
    insta::assert_snapshot!("privacy_html_you_viewed", without_css(&c.html));
}

/// The checks above can fail: each way a report could go wrong makes them fail.
#[test]
fn the_report_checks_reject_broken_pages() {
    let c = sample("you-viewed");
    assert_self_contained(&c.html);
    let broken = [
        ("an escape missed", c.html.replacen("None.", "a < b", 1)),
        ("a bare ampersand", c.html.replacen("None.", "R&D", 1)),
        ("a tag left open", c.html.replacen("</table>", "", 1)),
        ("]]> in text", c.html.replacen("</h1>", "]]></h1>", 1)),
        (
            "a script",
            c.html
                .replacen("</body>", "<script>alert(1)</script></body>", 1),
        ),
        (
            "an image",
            c.html
                .replacen("</h1>", "</h1><img src=\"https://x.example/p.png\" />", 1),
        ),
        (
            "an external style sheet",
            c.html.replacen(
                "</head>",
                "<link rel=\"stylesheet\" href=\"https://x.example/s.css\" /></head>",
                1,
            ),
        ),
        (
            "a style import",
            c.html
                .replacen("<style>", "<style>@import 'https://x.example/s.css';", 1),
        ),
        (
            "a CSS url()",
            c.html
                .replacen("<style>", "<style>body { background: url(x.png) }", 1),
        ),
        (
            "an event handler",
            c.html.replacen("<body>", "<body onload=\"go()\">", 1),
        ),
        (
            "an SVG link",
            c.html
                .replacen("</svg>", "<a href=\"https://x.example/\">x</a></svg>", 1),
        ),
    ];
    for (what, html) in broken {
        assert!(html != c.html, "{what}: the mutation changed nothing");
        assert!(self_contained(&html).is_err(), "{what} was not caught");
    }
    for (what, md) in [
        ("raw HTML", c.md.replacen("None.", "<b>x</b>", 1)),
        (
            "an image",
            c.md.replacen("## Verdict", "![p](x.png)\n## Verdict", 1),
        ),
        (
            "a URL",
            c.md.replacen("## Verdict", "https://x.example/\n## Verdict", 1),
        ),
    ] {
        assert!(md != c.md, "{what}: the mutation changed nothing");
        let caught = std::panic::catch_unwind(|| assert_inert_markdown(&md)).is_err();
        assert!(caught, "{what} was not caught");
    }
}

/// An audience in which every used value is a canary, unique to its row and column, some
/// of them sensitive (so that findings quote rows): none reaches either report, while the
/// findings about those very values are there.
#[test]
fn no_audience_value_reaches_the_report() {
    let t = Tree::new();
    let csv = t.read("sample-data/customers.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    // Consent words and the segment's country are the same for everyone, not values.
    const KEEP: [&str; 3] = ["consent_marketing", "consent_personalisation", "country"];
    let mut out = vec![header.join(",")];
    let mut canaries: Vec<String> = Vec::new();
    for row in 0..120usize {
        let mut cells: Vec<String> = Vec::new();
        for (i, h) in header.iter().enumerate() {
            let token = format!("qz{i:02}k{row:04}x");
            let v = match *h {
                "consent_marketing" | "consent_personalisation" => "yes".to_string(),
                "consent_at" => format!(
                    "2026-{:02}-{:02}T{:02}:{:02}:00Z",
                    1 + row % 9,
                    1 + row % 28,
                    row % 24,
                    row % 60
                ),
                "email" => format!("{token}@example.com"),
                "country" => "GB".to_string(),
                "birth_date" => format!(
                    "19{:02}-{:02}-{:02}",
                    40 + row % 50,
                    1 + row % 12,
                    1 + (row * 7) % 28
                ),
                "last_order_at" | "last_viewed_at" => {
                    format!("2025-{:02}-{:02}", 1 + row % 11, 1 + (row * 3) % 28)
                }
                "order_count" => format!("{}", 1000 + row * 7),
                "total_spent" => format!("{}.{:02}", 7000 + row * 13, row % 100),
                "churn_score" => format!("0.{:04}", 1000 + row * 37),
                // A sensitive word with a unique token: the finding must cite the row,
                // never the product.
                "last_viewed_product" if row % 10 == 0 => format!("Maternity {token}"),
                _ => token.clone(),
            };
            if !KEEP.contains(h) {
                canaries.push(v.clone());
            }
            cells.push(v);
        }
        out.push(cells.join(","));
    }
    t.write("sample-data/customers.csv", &(out.join("\n") + "\n"));
    // A campaign that shows almost every column, in the subject and the body.
    t.write(
        "templates/canaries.txt.tera",
        "Hello {% if personalised %}{{ first_name }} {{ last_name }}, {{ postcode }}, \
         {{ birth_date }}, {{ gender }}, {{ loyalty_tier }}, {{ favourite_category }}, \
         {{ last_order_category }}, {{ total_spent }}, {{ order_count }}, {{ customer_id }}, \
         {{ language }}, {{ last_viewed_product }}{% endif %}.\n\n\
         Unsubscribe: {{ unsubscribe_url }}\n{{ postal_address }}\n",
    );
    let campaign = t
        .read("sample-data/campaigns/winter-sale.toml")
        .replace("name = \"winter-sale\"", "name = \"canaries\"")
        .replace("template = \"winter-sale\"", "template = \"canaries\"")
        .replace(
            "our winter picks are in",
            "{% if personalised %}{{ last_viewed_product }}{% endif %}",
        )
        .replace(
            "segment = 'country == \"GB\"'",
            "segment = 'country == \"GB\" and loyalty_tier != \"none\"'",
        );
    t.write("sample-data/campaigns/canaries.toml", &campaign);
    let c = checked(|| t.tact(), &t.campaign("canaries"));
    assert_eq!(c.json["audience"]["personalised"], 120, "{}", c.run.stderr);
    // The values were seen: quoted rows and measured groups, by line only.
    for rule in ["sensitive-value", "quasi-identifier-combination"] {
        assert!(
            c.md.contains(rule) && c.html.contains(rule),
            "no {rule} finding"
        );
    }
    assert!(c.md.contains("line 2 ("), "the rows are cited by line");
    assert_self_contained(&c.html);
    assert_inert_markdown(&c.md);
    let html = c.html.to_lowercase();
    let md = c.md.to_lowercase();
    assert!(canaries.len() > 120 * 15, "{} canaries", canaries.len());
    for v in &canaries {
        let v = v.to_lowercase();
        assert!(!html.contains(&v), "`{v}` is in the HTML report");
        assert!(!md.contains(&v), "`{v}` is in the Markdown report");
    }
    // The tokens alone too, whatever surrounds them.
    for token in canaries
        .iter()
        .filter_map(|v| v.split_whitespace().find(|w| w.starts_with("qz")))
    {
        assert!(!html.contains(token) && !md.contains(token), "{token}");
    }
}

/// Text from the campaign, the schema and the file name may hold markup: it is shown as
/// text, in both forms, and the page stays well-formed and inert.
#[test]
fn hostile_text_is_shown_as_text() {
    const HOSTILE: &str = "x<script>alert(1)</script>]]>--><!-- & \"q\" 's ![i](https://evil.example/i.png) [l](javascript:alert(1))";
    let t = Tree::new();
    let toml_str = HOSTILE.replace('\\', "\\\\").replace('"', "\\\"");
    fs::copy(
        t.path("sample-data/customers.csv"),
        t.path("sample-data/a<b>&c]]>.csv"),
    )
    .unwrap();
    t.edit("sample-data/campaigns/birthday-treat.toml", |s| {
        s.replace("audience = \"../customers.csv\"", "audience = \"../a<b>&c]]>.csv\"")
            .replace("# acknowledge = [", "acknowledge = [")
            .replace(
                "#   { rule = \"quasi-identifier-combination\", fields = [\"birth_date\", \"postcode\"], reason = \"Store-invite pilot approved by the DPO (ticket PRIV-112); postcode shown only to its owner.\" },\n# ]",
                &format!(
                    "  {{ rule = \"quasi-identifier-combination\", fields = [\"birth_date\", \"postcode\"], reason = \"{toml_str}\" }},\n  {{ rule = \"high-risk-field\", fields = [\"{toml_str}\"], reason = \"{toml_str}\" }},\n]"
                ),
            )
    });
    t.edit("sample-data/customers.schema.toml", |s| {
        s.replace(
            "consent_at = \"consent_at\"",
            &format!(
                "consent_at = {{ value = \"2026-11-01T00:00:00Z\", reason = \"{toml_str}\" }}"
            ),
        )
    });
    let c = checked(|| t.tact(), &t.campaign("birthday-treat"));
    assert_eq!(c.run.code, 0, "acknowledged: {}", c.run.stderr);
    assert_self_contained(&c.html);
    assert_inert_markdown(&c.md);
    // Shown, as text: the parsed page's text holds the hostile string whole, three times
    // (two acknowledgements' reasons and the constant's reason), plus the finding's.
    let doc = parse(&c.html).unwrap();
    let text: String = doc
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    assert!(text.matches(HOSTILE).count() >= 4, "{text}");
    assert!(text.contains("a<b>&c]]>.csv"), "{text}");
    let raw = c.html.to_lowercase();
    for bad in ["<script", "<!--", "]]>", "-->", "src=\"https", "href="] {
        assert!(!raw.contains(bad), "`{bad}` in the page");
    }
    assert!(!c.md.contains("<script") && !c.md.contains("<!--"));
}

#[test]
fn the_report_format_is_its_extension() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    for name in ["report.pdf", "report", "report.html.txt"] {
        let path = out.path().join(name);
        let r = run_expect(
            tact(state.path())
                .arg("check")
                .arg(sample_campaign("winter-sale"))
                .arg("--report")
                .arg(&path),
            2,
        );
        assert!(r.stderr.contains(name), "{name}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "nothing checked: {}", r.stdout);
        assert!(!path.exists());
    }
    for name in ["R.HTML", "r.htm", "r.Md", "r.markdown"] {
        run_expect(
            tact(state.path())
                .arg("check")
                .arg(sample_campaign("winter-sale"))
                .arg("--report")
                .arg(out.path().join(name)),
            0,
        );
        let text = fs::read_to_string(out.path().join(name)).unwrap();
        let html = name.to_lowercase().contains("htm");
        assert_eq!(text.starts_with("<!DOCTYPE html>"), html, "{name}");
    }
}

/// The report changes nothing about what check prints or how it exits.
#[test]
fn check_says_the_same_with_a_report() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    for name in CAMPAIGNS {
        for json in [false, true] {
            let base = || {
                let mut cmd = tact(state.path());
                cmd.arg("check").arg(sample_campaign(name));
                if json {
                    cmd.arg("--json");
                }
                cmd
            };
            let plain = run(&mut base());
            let with = run(base()
                .arg("--report")
                .arg(out.path().join(format!("{name}.md"))));
            assert_eq!(plain.code, with.code, "{name}");
            assert_eq!(plain.stdout, with.stdout, "{name}");
        }
    }
}

/// An existing report is replaced (owner-only, even if it was not), through a new file;
/// a symbolic link is neither followed nor replaced.
#[test]
fn the_report_replaces_a_file_and_refuses_a_link() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("r.md");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    run_expect(
        tact(state.path())
            .arg("check")
            .arg(sample_campaign("winter-sale"))
            .arg("--report")
            .arg(&path),
        0,
    );
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .starts_with("# Privacy report: winter-sale")
    );
    assert_eq!(mode(&path), 0o600);
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("kept.html");
    fs::write(&target, "kept").unwrap();
    let link = out.path().join("link.html");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let r = run_expect(
        tact(state.path())
            .arg("check")
            .arg(sample_campaign("winter-sale"))
            .arg("--report")
            .arg(&link),
        2,
    );
    assert!(
        r.stderr.contains("link.html") && r.stderr.contains("symbolic link"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "kept");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // No temporary file left beside it.
    let left: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}
