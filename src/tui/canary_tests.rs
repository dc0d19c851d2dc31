//! The composer's screens other than Preview (which shows one recipient's message by
//! design) on an audience in which every value is a canary: none may be drawn. The
//! campaign prints nearly every column in the subject and the body, some values are
//! sensitive and a filter fails on one row in ten, so that findings, ages and render
//! errors all have something to say.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::app::{App, Tab};
use super::tests::{ctx, go, screen, settle};

/// Writes the sample schema and a canary audience, campaign and templates into `dir`;
/// returns the canaries.
fn canary_campaign(dir: &Path) -> Vec<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = std::fs::read_to_string(repo.join("sample-data/customers.csv")).unwrap();
    let header: Vec<&str> = sample.lines().next().unwrap().split(',').collect();
    let mut lines = vec![header.join(",")];
    let mut canaries = Vec::new();
    for row in 0..60usize {
        let mut cells = Vec::new();
        for (i, h) in header.iter().enumerate() {
            let token = format!("qz{i:02}k{row:04}x");
            let v = match *h {
                "consent_marketing" | "consent_personalisation" => "yes".to_string(),
                "consent_at" => format!("2026-0{}-1{}T10:00:00Z", 1 + row % 9, row % 10),
                "email" => format!("{token}@example.com"),
                "country" => "GB".to_string(),
                "birth_date" => format!("19{:02}-0{}-1{}", 40 + row % 50, 1 + row % 9, row % 10),
                "last_order_at" | "last_viewed_at" => {
                    format!("2025-0{}-1{}", 1 + row % 9, row % 10)
                }
                "order_count" | "total_spent" => format!("{}", 1000 + row * 7),
                "churn_score" => format!("0.{:04}", 1000 + row * 37),
                "last_viewed_product" if row % 5 == 0 => format!("Maternity {token}"),
                _ => token.clone(),
            };
            if !["consent_marketing", "consent_personalisation", "country"].contains(h) {
                canaries.push(v.clone());
            }
            cells.push(v);
        }
        lines.push(cells.join(","));
    }
    std::fs::write(dir.join("customers.csv"), lines.join("\n") + "\n").unwrap();
    std::fs::copy(
        repo.join("sample-data/customers.schema.toml"),
        dir.join("customers.schema.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    let body = "{% if personalised %}{{ first_name }} {{ last_name }}, {{ postcode }}, \
                {{ birth_date }}, {{ gender }}, {{ loyalty_tier }}, {{ favourite_category }}, \
                {{ last_order_category }}, {{ total_spent }} {% if customer_id is ending_with(\"3x\") %}{{ customer_id | round }}{% endif %}, {{ order_count }}, \
                {{ customer_id }}, {{ language }}, {{ churn_score }}, \
                {{ last_viewed_product }}{% endif %}\n{{ unsubscribe_url }}\n{{ postal_address }}\n";
    for part in ["txt", "html"] {
        std::fs::write(dir.join(format!("templates/canaries.{part}.tera")), body).unwrap();
    }
    std::fs::write(
        dir.join("canaries.toml"),
        "name = \"canaries\"\naudience = \"customers.csv\"\nschema = \"customers.schema.toml\"\n\
         templates = \"templates\"\ntemplate = \"canaries\"\n\
         subject = \"{% if personalised %}{{ last_viewed_product }} {{ postcode }}{% endif %} news\"\n\
         from = \"Northwind <news@northwind.example>\"\n\
         segment = 'country == \"GB\" and loyalty_tier != \"none\"'\n\
         unsubscribe_url = \"https://northwind.example/unsubscribe\"\n\
         postal_address = \"Northwind Outfitters, 1 Quay St, Bristol BS1 1AA, UK\"\n\
         [policy]\nmin_segment_size = 5\n",
    )
    .unwrap();
    canaries
}

#[test]
fn no_screen_but_preview_draws_a_customer_value() {
    let dir = tempfile::tempdir().unwrap();
    let canaries = canary_campaign(dir.path());
    let mut app = App::opening(dir.path().join("canaries.toml"), ctx());
    app.colour = false;
    app.smtp_url = None;
    settle(&mut app);
    assert!(app.load_error.is_none(), "{:?}", app.load_error);
    let l = app.loaded.as_ref().unwrap();
    assert!(
        l.report.audience.recipients() > 40 && !l.report.problems.is_empty(),
        "most rows are recipients, one in ten a render error: {:?} {:?}",
        l.report.audience,
        l.report.problems.first()
    );
    let rules: Vec<&str> = l.report.findings.iter().map(|f| f.rule).collect();
    for want in ["sensitive-value", "quasi-identifier-combination"] {
        assert!(rules.contains(&want), "{want} not in {rules:?}");
    }
    for tab in [
        Tab::Overview,
        Tab::Audience,
        Tab::Segment,
        Tab::Template,
        Tab::Check,
        Tab::Send,
    ] {
        go(&mut app, tab);
        for (w, h) in [(120, 40), (80, 24), (200, 60)] {
            let s = screen(&app, w, h).to_lowercase();
            for c in &canaries {
                assert!(
                    !s.contains(&c.to_lowercase()),
                    "{tab:?} at {w}x{h} draws `{c}`:\n{s}"
                );
            }
            // The tokens alone, whatever a screen cuts them to: the first 8 characters.
            for token in canaries
                .iter()
                .filter_map(|c| c.split_whitespace().find(|w| w.starts_with("qz")))
            {
                assert!(
                    !s.contains(&token[..8]),
                    "{tab:?} at {w}x{h} draws part of `{token}`:\n{s}"
                );
            }
        }
    }
}
