//! The composer's speed targets (issue 5), measured on the calls the TUI makes:
//!
//! * first screen: the loader reads the campaign and the CSV, then plans, renders and
//!   counts every recipient (`tact::check::run`), which is what the Overview shows — the
//!   target is under 2 s after the file is read;
//! * a segment edit: the recount compiles the new segment against the audience already in
//!   memory (`Prepared::with_segment`) and runs the same check — target under 300 ms.
//!
//! ```text
//! cargo bench --bench tui                  # 1,000,000 rows
//! BENCH_ROWS=100000 cargo bench --bench tui
//! ```
//!
//! Not criterion: each step is one wall-clock figure (best and median of a few runs), the
//! same figure a person waits for. Needs `python3` on PATH to generate the audience
//! (`benches/gen_audience.py`; reused from `target/bench-audience-ROWS` when present).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use tact::campaign::Campaign;
use tact::plan::{Facts, Prepared};
use tact::state::Keys;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("bad reference time: {e}"))
}

fn audience(rows: usize) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target").join(format!("bench-audience-{rows}"));
    let campaign = dir.join("campaigns").join("winter-sale.toml");
    if !campaign.exists() {
        let status = Command::new("python3")
            .arg(root.join("benches").join("gen_audience.py"))
            .arg(rows.to_string())
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run python3 benches/gen_audience.py: {e}"));
        assert!(status.success(), "gen_audience.py failed: {status}");
    }
    campaign
}

/// Runs `f` `n` times; prints and returns the best and the median.
fn time<T>(label: &str, n: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    let (best, median) = (times[0], times[n / 2]);
    println!(
        "{label:<58} best {:>8.1} ms   median {:>8.1} ms",
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
    (best, median)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let path = audience(rows);
    let now = now();
    let keys = Keys::from_master(&[7u8; 32]);
    let facts = Facts::default();
    let campaign = Campaign::load(&path).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "tui bench: {rows} rows, {} threads",
        rayon::current_num_threads()
    );

    // The loader: read the CSV (kept columns only), templates, segment.
    let (_, read) = time("read: Prepared::from_campaign (CSV read)", 3, || {
        Prepared::from_campaign(campaign.clone(), now).map(|p| p.audience.len())
    });
    let p = Prepared::from_campaign(campaign.clone(), now).unwrap_or_else(|e| panic!("{e}"));
    // What the first screen needs after the read: plan, render everyone, count, rules.
    let (_, first) = time(
        "first screen: check::run (plan + render all + counts)",
        3,
        || {
            tact::check::run(&p, &keys, &facts, now)
                .1
                .audience
                .recipients()
        },
    );
    let (_, report) = tact::check::run(&p, &keys, &facts, now);
    println!(
        "  {} recipients ({} personalised, {} generic), verdict {}",
        report.audience.recipients(),
        report.audience.personalised,
        report.audience.generic,
        report.verdict.as_str()
    );

    // A segment edit: the old path re-read the CSV; the TUI now reuses the audience.
    let edited = r#"country == "GB" and loyalty_tier == "gold""#;
    let mut c = campaign.clone();
    c.segment = Some(edited.to_string());
    time("segment edit, re-reading the CSV (old path)", 3, || {
        let p = Prepared::from_campaign(c.clone(), now).unwrap_or_else(|e| panic!("{e}"));
        tact::check::run(&p, &keys, &facts, now)
            .1
            .audience
            .recipients()
    });
    let (_, compile) = time(
        "segment edit: Prepared::with_segment (no CSV read)",
        5,
        || {
            p.with_segment(Some(edited), now)
                .map(|q| q.audience.len())
                .unwrap_or_else(|e| panic!("{e}"))
        },
    );
    let q = p
        .with_segment(Some(edited), now)
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, recount) = time("segment edit: check::run on the new segment", 5, || {
        tact::check::run(&q, &keys, &facts, now)
            .1
            .audience
            .recipients()
    });
    time("  of which plan + counts only", 5, || {
        q.plan(&keys, &facts, now).counts().recipients()
    });
    println!();
    println!(
        "first screen after the read: {:.0} ms (target < 2000 ms); CSV read itself {:.0} ms",
        first.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3
    );
    println!(
        "segment edit recounted: {:.0} ms (target < 300 ms)",
        (compile + recount).as_secs_f64() * 1e3
    );
}
