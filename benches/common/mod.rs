//! What the bench targets share: the reference clock, the row count and the generated
//! audience. A subdirectory module, so Cargo does not take it for a bench target.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// The generator's reference date: its consent dates are recent relative to this.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("bad reference time: {e}"))
}

/// `TACT_BENCH_ROWS`, else the older `BENCH_ROWS`, else `default`.
pub fn rows(default: usize) -> usize {
    ["TACT_BENCH_ROWS", "BENCH_ROWS"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .map(|v| {
            v.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("TACT_BENCH_ROWS={v} is not a row count"))
        })
        .unwrap_or(default)
}

/// The winter-sale campaign over `rows` generated customers (`benches/gen_audience.py`),
/// in `target/bench-audience-ROWS`. Generating a million rows takes Python about half a
/// minute, so the folder is kept across runs (and shared by every bench target): the
/// generator is deterministic, and the folder is made again when the generator or the
/// sample data it copies is newer, or it points at another checkout's templates.
pub fn audience(rows: usize) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target.join(format!("bench-audience-{rows}"));
    let campaign = dir.join("campaigns").join("winter-sale.toml");
    if fresh(root, &campaign) {
        return campaign;
    }
    // Generated beside the final folder and renamed into place, so an interrupted run or a
    // second bench starting at the same time never sees half a CSV.
    let part = target.join(format!("bench-audience-{rows}.part{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&part);
    eprintln!("generating {rows} rows into {} ...", dir.display());
    let status = Command::new("python3")
        .arg(root.join("benches").join("gen_audience.py"))
        .arg(rows.to_string())
        .arg(&part)
        .status()
        .unwrap_or_else(|e| panic!("cannot run python3 benches/gen_audience.py: {e}"));
    assert!(status.success(), "gen_audience.py failed: {status}");
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::rename(&part, &dir).is_err() {
        // Another bench won the race: its copy is as good as ours.
        let _ = std::fs::remove_dir_all(&part);
    }
    assert!(
        campaign.exists(),
        "no {} after generating",
        campaign.display()
    );
    campaign
}

/// Whether the generated campaign exists, is newer than everything that shaped it, and
/// uses this checkout's templates.
fn fresh(root: &Path, campaign: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(made) = modified(campaign) else {
        return false;
    };
    let inputs = [
        "benches/gen_audience.py",
        "sample-data/generate_customers.py",
        "sample-data/customers.schema.toml",
        "sample-data/campaigns/winter-sale.toml",
    ];
    let newer = |p: &&str| modified(&root.join(p)).is_none_or(|t: SystemTime| t > made);
    let templates = root.join("templates").display().to_string();
    !inputs.iter().any(newer)
        && std::fs::read_to_string(campaign).is_ok_and(|t| t.contains(&templates))
}
