//! The composer's speed targets (issue 5), measured on the calls the TUI makes:
//!
//! * first screen with counts: after the CSV is read (`Prepared::from_campaign`), the
//!   loader plans once (`Prepared::base`, the part no segment changes, then `plan_on`),
//!   builds the preliminary report (`check::preliminary`: counts + the rules that need no
//!   rendering) and the list of excluded rows, and sends that to the screen — target
//!   under 2 s. The full check (rendering every recipient, the verdict) follows on the
//!   same thread and is timed separately;
//! * a segment edit recounted: the new segment is compiled against the audience already
//!   in memory (`Prepared::with_segment`), only the segment step runs on the kept base
//!   (`plan_on`), then the same preliminary report and excluded list — target under
//!   300 ms. Also timed while the previous plan's full check is still rendering, which
//!   the edit cancels (`check::finish_unless`), as it happens when someone types.
//!
//! ```text
//! cargo bench --bench tui                        # 1,000,000 rows
//! TACT_BENCH_ROWS=100000 cargo bench --bench tui
//! ```
//!
//! Not criterion: each step is one wall-clock figure (best and median of a few runs), the
//! same figure a person waits for. Needs `python3` on PATH to generate the audience
//! (`benches/gen_audience.py`; kept in `target/bench-audience-ROWS`, shared with the
//! `pipeline` bench).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tact::campaign::Campaign;
use tact::check::Report;
use tact::plan::{BasePlan, Facts, Outcome, Plan, Prepared};
use tact::state::Keys;

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
        "{label:<62} best {:>8.1} ms   median {:>8.1} ms",
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
    (best, median)
}

/// What the TUI's `Loaded::new` adds to a plan: the excluded rows in file order (the
/// Audience screen's list; row indices, addresses are looked up when drawn).
fn excluded_rows(p: &Prepared, plan: &Plan) -> Vec<(u64, u32)> {
    plan.decisions
        .iter()
        .filter(|d| matches!(d.outcome, Outcome::Excluded(_)))
        .map(|d| (p.audience.line(d.row as usize), d.row))
        .collect()
}

/// The counts the screens show first: the plan on a base, its preliminary report, and the
/// excluded list (`work::counted` in the TUI).
fn counted(p: &Prepared, base: &BasePlan) -> (Plan, Report, usize) {
    let plan = p.plan_on(base);
    let report = tact::check::preliminary(p, &plan);
    let excluded = excluded_rows(p, &plan).len();
    (plan, report, excluded)
}

/// A segment edit as `work::recount_on` runs it: compile on the loaded audience, then
/// the segment step on the kept base.
fn recount(p: &Prepared, base: &BasePlan, segment: &str, keys: &Keys, facts: &Facts) -> usize {
    let q = p
        .with_segment(Some(segment), common::now())
        .unwrap_or_else(|e| panic!("{e}"));
    let fresh;
    let base = if q.fits(base, common::now()) {
        base
    } else {
        fresh = q.base(keys, facts, common::now());
        &fresh
    };
    counted(&q, base).1.audience.recipients()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let rows = common::rows(1_000_000);
    let path = common::audience(rows);
    let now = common::now();
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

    // First screen: what the loader sends before anyone is rendered.
    let (_, first) = time(
        "first counts: base + plan_on + preliminary + excluded list",
        3,
        || {
            let base = p.base(&keys, &facts, now);
            counted(&p, &base).1.audience.recipients()
        },
    );
    time("  of which Prepared::base (once per load)", 3, || {
        p.base(&keys, &facts, now)
    });
    let base = p.base(&keys, &facts, now);
    let (plan, report, _) = counted(&p, &base);
    println!(
        "  counts: {} recipients ({} personalised, {} generic), before rendering",
        report.audience.recipients(),
        report.audience.personalised,
        report.audience.generic,
    );
    // The full check follows on the loader's thread and replaces the preliminary report.
    let (_, full) = time(
        "then the full check: check::finish (render all, verdict)",
        3,
        || {
            let mut plan = plan.clone();
            tact::check::finish(&p, &keys, &mut plan, now)
                .audience
                .recipients()
        },
    );
    let mut checked = plan.clone();
    let report = tact::check::finish(&p, &keys, &mut checked, now);
    println!(
        "  final: {} recipients ({} personalised, {} generic), verdict {}",
        report.audience.recipients(),
        report.audience.personalised,
        report.audience.generic,
        report.verdict.as_str()
    );
    // With a ledger that knows someone, the base hashes every address (an HMAC a row).
    let suppressed = Facts {
        suppressed: (0..1000)
            .map(|i| keys.recipient_hash(p.audience.email(i * rows / 1000)))
            .collect(),
        ..Facts::default()
    };
    time(
        "first counts with 1,000 suppressed (hashes every row)",
        3,
        || {
            let base = p.base(&keys, &suppressed, now);
            counted(&p, &base).1.audience.recipients()
        },
    );

    // A segment edit on the loaded audience and the kept base.
    let edited = r#"country == "GB" and loyalty_tier == "gold""#;
    let personal = r#"country == "GB" and total_spent > 100"#;
    let (_, edit) = time(
        "segment edit: with_segment + plan_on + preliminary",
        5,
        || recount(&p, &base, edited, &keys, &facts),
    );
    // The first segment naming a column the campaign never loaded reads the file again
    // (and keeps every column it had); later edits reuse that audience and its base.
    time(
        "first edit naming a column never loaded (re-reads the CSV)",
        1,
        || recount(&p, &base, personal, &keys, &facts),
    );
    let p2 = p
        .with_segment(Some(personal), now)
        .unwrap_or_else(|e| panic!("{e}"));
    let base2 = p2.base(&keys, &facts, now);
    let more = r#"total_spent > 200 and loyalty_tier != "bronze""#;
    time("then an edit needing personalisation consent", 5, || {
        recount(&p2, &base2, more, &keys, &facts)
    });
    time("  of which Prepared::with_segment", 5, || {
        p.with_segment(Some(edited), now)
            .map(|q| q.audience.len())
            .unwrap_or_else(|e| panic!("{e}"))
    });
    time("segment edit, old path: plan + check::run", 1, || {
        let q = p
            .with_segment(Some(edited), now)
            .unwrap_or_else(|e| panic!("{e}"));
        tact::check::run(&q, &keys, &facts, now)
            .1
            .audience
            .recipients()
    });

    // As someone types: the previous plan's full check is rendering on every core when
    // the edit arrives; the edit cancels it and counts. The edit lands a third of the way
    // into the render (at most 300 ms), so a small audience's render is still running.
    let into_render = (full / 3).min(Duration::from_millis(300));
    let mut busy: Vec<Duration> = (0..3)
        .map(|_| {
            let stop = AtomicBool::new(false);
            let started = AtomicBool::new(false);
            std::thread::scope(|s| {
                let h = s.spawn(|| {
                    let mut plan = plan.clone();
                    started.store(true, Ordering::SeqCst);
                    tact::check::finish_unless(&p, &keys, &mut plan, now, &|| {
                        stop.load(Ordering::Relaxed)
                    })
                    .is_some()
                });
                while !started.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                std::thread::sleep(into_render);
                let t = Instant::now();
                stop.store(true, Ordering::SeqCst);
                std::hint::black_box(recount(&p, &base, edited, &keys, &facts));
                let took = t.elapsed();
                let finished = h.join().unwrap_or_else(|_| panic!("the render panicked"));
                assert!(!finished, "the old check was not cancelled");
                took
            })
        })
        .collect();
    busy.sort();
    println!(
        "{:<62} best {:>8.1} ms   median {:>8.1} ms",
        "segment edit while the last full check renders (cancelled)",
        busy[0].as_secs_f64() * 1e3,
        busy[1].as_secs_f64() * 1e3
    );
    println!();
    println!(
        "first screen with counts after the read: {:.0} ms (target < 2000 ms); CSV read {:.0} ms; verdict {:.0} ms later",
        first.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3,
        full.as_secs_f64() * 1e3
    );
    println!(
        "segment edit recounted: {:.0} ms (target < 300 ms)",
        edit.as_secs_f64() * 1e3
    );
}
