//! Criterion benchmarks of tact's pipeline over a generated 100,000-row audience
//! (`benches/gen_audience.py`, the winter-sale campaign): load, plan, and the per-recipient
//! cost of rendering a letter and turning it into MIME. Not run by CI.
//!
//!     cargo bench --bench pipeline
//!     BENCH_ROWS=1000000 cargo bench --bench pipeline -- load
//!
//! Needs `python3` on PATH. For the end-to-end CLI figures (check over 1M rows, preview
//! against mailmerge) see `benches/compare.sh`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use tact::plan::{Facts, Prepared};
use tact::state::Keys;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("bad reference time: {e}"))
}

/// Generates the audience once per `cargo bench` (deterministic, so reused across runs).
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

fn pipeline(c: &mut Criterion) {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let campaign = audience(rows);
    let now = now();
    let keys = Keys::from_master(&[7u8; 32]);
    let facts = Facts::default();
    let p = Prepared::load(&campaign, now).unwrap_or_else(|e| panic!("load: {e}"));
    let plan = p.plan(&keys, &facts, now);
    let recipients: Vec<(usize, bool)> = plan.recipients().collect();
    assert!(
        !recipients.is_empty(),
        "the generated campaign has no recipients"
    );
    let date = SystemTime::from(now);

    let mut g = c.benchmark_group(format!("audience_{rows}"));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(rows as u64));
    // CSV → kept columns, templates parsed, segment compiled.
    g.bench_function("load", |b| {
        b.iter(|| Prepared::load(black_box(&campaign), now).map(|p| p.audience.len()))
    });
    // Every rule that needs no rendering, for every row.
    g.bench_function("plan", |b| {
        b.iter(|| p.plan(&keys, &facts, now).decisions.len())
    });
    g.throughput(Throughput::Elements(recipients.len() as u64));
    // What `tact check` does after planning: render everyone, on all cores, apply rules.
    g.bench_function("check_run", |b| {
        b.iter(|| {
            tact::check::run(&p, &keys, &facts, now)
                .1
                .audience
                .recipients()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("per_recipient");
    g.throughput(Throughput::Elements(1));
    let mut next = recipients.iter().cycle();
    // Tool variables (HMAC, sealed token, consent sentence) + subject, text and HTML renders.
    g.bench_function("letter", |b| {
        b.iter(|| {
            let &(row, personalised) = next.next().unwrap_or(&recipients[0]);
            p.letter(&keys, row, personalised)
                .map(|l| l.rendered.text.len())
        })
    });
    // The MIME message `preview` writes and `send` sends, from a rendered letter.
    let mut next = recipients.iter().cycle();
    g.bench_function("mime", |b| {
        b.iter_batched(
            || {
                let &(row, personalised) = next.next().unwrap_or(&recipients[0]);
                let letter = p
                    .letter(&keys, row, personalised)
                    .unwrap_or_else(|e| panic!("letter: {}", e.detail));
                (row, letter)
            },
            |(row, letter)| {
                tact::message::build(&p.campaign, &letter, p.audience.email(row), date, "")
                    .map(|m| m.formatted().len())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
