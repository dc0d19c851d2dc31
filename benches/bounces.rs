//! `tact bounces parse` over a bounce mailbox (issue 13, "Speed"): 10,000 reports, a mix
//! of DSNs (Postfix, Office 365, Gmail), ARF complaints, Exim/qmail/Gmail bounce texts,
//! SES JSON notifications and auto-replies, as one mbox and as a Maildir, parsed by the
//! release binary with `--json` to a file. Target: at least 5,000 reports/s, and memory
//! flat in the number of reports: the peak RSS at 10,000 reports close to the one at
//! 1,000 (reports are streamed, never collected).
//!
//! ```text
//! cargo bench --bench bounces                        # 1,000 and 10,000 reports, 3 rounds
//! TACT_BENCH_REPORTS=50000 cargo bench --bench bounces
//! ```
//!
//! Each figure is the median of the rounds: reports over the wall time of the whole
//! command (process start to exit), and its peak RSS from GNU time (`/usr/bin/time -v`).
//! The mailboxes are written to /dev/shm when it is writable, so the disk is not measured.
//! Every run's output is checked: one JSON row per expected finding, kinds as expected.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tact::bounce::parse_message;

const ROUNDS: usize = 3;

/// The report shapes, as the tests' fixtures have them.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "postfix dsn",
        include_str!("../tests/bounces/fixtures/postfix-dsn-user-unknown.eml"),
    ),
    (
        "postfix dsn full",
        include_str!("../tests/bounces/fixtures/postfix-dsn-mailbox-full.eml"),
    ),
    (
        "dsn, 3 recipients",
        include_str!("../tests/bounces/fixtures/dsn-three-recipients.eml"),
    ),
    (
        "office365 dsn",
        include_str!("../tests/bounces/fixtures/office365-dsn-blocklist.eml"),
    ),
    (
        "gmail dsn",
        include_str!("../tests/bounces/fixtures/gmail-dsn-unsolicited.eml"),
    ),
    (
        "arf",
        include_str!("../tests/bounces/fixtures/arf-abuse.eml"),
    ),
    (
        "exim text",
        include_str!("../tests/bounces/fixtures/exim-text-user-unknown.eml"),
    ),
    (
        "qmail text",
        include_str!("../tests/bounces/fixtures/qmail-text-two-recipients.eml"),
    ),
    (
        "gmail text",
        include_str!("../tests/bounces/fixtures/gmail-text-no-such-user.eml"),
    ),
    (
        "exchange text",
        include_str!("../tests/bounces/fixtures/exchange-text-recipient-not-found.eml"),
    ),
    (
        "ses json",
        include_str!("../tests/bounces/fixtures/ses-json-bounce.eml"),
    ),
    (
        "auto-reply",
        include_str!("../tests/bounces/fixtures/auto-reply-out-of-office.eml"),
    ),
];

/// Report `i`: its template with its own recipients' domain and Message-ID.
fn report(i: usize) -> String {
    let (_, t) = TEMPLATES[i % TEMPLATES.len()];
    let t = t.replace("@example.com", &format!("@r{i}.example.com"));
    format!("Message-ID: <bench-{i}@example.org>\n{t}")
}

/// Writes `n` reports as an mbox and as a Maildir; returns both, and the kinds the
/// findings must have.
fn mailboxes(dir: &Path, n: usize) -> (PathBuf, PathBuf, BTreeMap<String, usize>) {
    let mbox_path = dir.join(format!("bounces-{n}.mbox"));
    let maildir = dir.join(format!("Maildir-{n}"));
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let mut mbox = std::io::BufWriter::new(fs::File::create(&mbox_path).expect("mbox"));
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..n {
        let raw = report(i);
        for f in parse_message("bench", raw.as_bytes()).findings {
            *kinds.entry(f.kind.to_string()).or_default() += 1;
        }
        use std::io::Write as _;
        writeln!(mbox, "From MAILER-DAEMON Mon Nov 30 04:10:00 2026").expect("write");
        for line in raw.lines() {
            if line.trim_start_matches('>').starts_with("From ") {
                mbox.write_all(b">").expect("write");
            }
            writeln!(mbox, "{line}").expect("write");
        }
        writeln!(mbox).expect("write");
        let sub = if i % 2 == 0 { "cur" } else { "new" };
        fs::write(
            maildir
                .join(sub)
                .join(format!("1796{i:07}.M{i}P1.bench:2,S")),
            raw,
        )
        .expect("maildir entry");
    }
    drop(mbox);
    (mbox_path, maildir, kinds)
}

struct Measured {
    seconds: f64,
    peak_kb: u64,
}

/// One `tact bounces parse --json PATH` under GNU time; its output checked.
fn measure(tact: &str, path: &Path, out: &Path, kinds: &BTreeMap<String, usize>) -> Measured {
    let t = Instant::now();
    let run = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(tact)
        .args(["bounces", "parse", "--json"])
        .arg(path)
        .stdout(fs::File::create(out).expect("output file"))
        .output()
        .expect("run /usr/bin/time (GNU time) and tact");
    let seconds = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "tact failed:\n{stderr}");
    let peak_kb = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time's maximum resident set size");
    let rows: serde_json::Value =
        serde_json::from_slice(&fs::read(out).expect("output")).expect("--json output");
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows.as_array().expect("an array") {
        *got.entry(r["kind"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        &got,
        kinds,
        "{}: findings differ from the library's",
        path.display()
    );
    Measured { seconds, peak_kb }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let tact = env!("CARGO_BIN_EXE_tact");
    let big: usize = std::env::var("TACT_BENCH_REPORTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let base = if fs::metadata("/dev/shm").is_ok_and(|m| !m.permissions().readonly()) {
        tempfile::Builder::new()
            .prefix("tact-bounces-bench")
            .tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("scratch directory");
    let small = (big / 10).max(1);

    println!("| input | reports | findings | wall (median of {ROUNDS}) | reports/s | peak RSS |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut results = Vec::new();
    for n in [small, big] {
        let (mbox, maildir, kinds) = mailboxes(base.path(), n);
        let findings: usize = kinds.values().sum();
        for (label, path) in [("mbox", &mbox), ("Maildir", &maildir)] {
            let out = base.path().join("out.json");
            let runs: Vec<Measured> = (0..ROUNDS)
                .map(|_| measure(tact, path, &out, &kinds))
                .collect();
            let secs = median(runs.iter().map(|m| m.seconds).collect());
            let peak = runs.iter().map(|m| m.peak_kb).max().unwrap_or(0);
            let rate = n as f64 / secs;
            println!(
                "| {label} | {n} | {findings} | {:.3} s | {:.0} | {:.1} MB |",
                secs,
                rate,
                peak as f64 / 1024.0
            );
            results.push((label, n, rate, peak));
        }
    }
    let mut ok = true;
    for label in ["mbox", "Maildir"] {
        let get = |n| {
            results
                .iter()
                .find(|(l, m, _, _)| *l == label && *m == n)
                .map(|(_, _, rate, peak)| (*rate, *peak))
                .unwrap_or((0.0, 0))
        };
        let ((_, peak_small), (rate_big, peak_big)) = (get(small), get(big));
        // Flat: ten times the reports within 20% (and 4 MB) of the small run's peak.
        let flat = peak_big as f64 <= peak_small as f64 * 1.2 + 4096.0;
        let fast = rate_big >= 5_000.0;
        ok &= flat && fast;
        println!(
            "{label}: {rate_big:.0} reports/s (target >= 5,000: {}); peak RSS {:.1} MB at {small} vs {:.1} MB at {big} (flat: {})",
            if fast { "PASS" } else { "FAIL" },
            peak_small as f64 / 1024.0,
            peak_big as f64 / 1024.0,
            if flat { "PASS" } else { "FAIL" },
        );
    }
    if !ok {
        std::process::exit(1);
    }
}
