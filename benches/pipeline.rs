//! Criterion benchmarks of tact's pipeline (issue 7), over the winter-sale campaign and a
//! generated audience (`benches/gen_audience.py`, 1,000,000 rows unless
//! `TACT_BENCH_ROWS` says otherwise). Measurement, not a test: CI never runs it.
//!
//! ```text
//! cargo bench --bench pipeline                               # 1M rows, a few minutes on 2 cores
//! TACT_BENCH_ROWS=20000 cargo bench --bench pipeline         # a quick run
//! cargo bench --bench pipeline -- audience/segment_recount   # one benchmark (a name filter)
//! ```
//!
//! | name | what it times |
//! | --- | --- |
//! | `audience/load/ROWS` | `Prepared::load`: the CSV (kept columns only), schema, templates, segment |
//! | `audience/plan/ROWS` | `Prepared::plan`: every decision that needs no rendering, for every row |
//! | `audience/segment_recount/ROWS` | a segment edit as the composer recounts it (`tui::work::recount_on`): `with_segment` on the loaded audience, `plan_on` the kept base, the preliminary report and the excluded list |
//! | `audience/check_run/ROWS` | `check::run`: the plan, then every recipient rendered on all cores and the rules applied (`tact check` minus reading and printing) |
//! | `per_recipient/render_letter` | one recipient's letter: tool variables (HMAC, sealed token, consent sentence), subject, text and HTML |
//! | `per_recipient/build_mime` | the RFC 5322 message `preview` writes and `send` sends, from a rendered letter |
//! | `send_smtp_sink/connections/C` | `send::send_all` of `TACT_BENCH_SEND` (2,000) messages to Debian's `smtp-sink` on 127.0.0.1, with a fresh ledger each time |
//!
//! Throughput is rows/s for the `audience` group and messages/s for the others. The
//! `audience` group takes one call per sample at a million rows, so criterion warns that
//! it "cannot complete 10 samples" in the target time: expected, and the run stays short.
//!
//! The send benchmarks start their own `smtp-sink` (no dump: the sink must not be the
//! bottleneck) and send the text-only variant of the campaign with no rate limit, as
//! `benches/compare.sh` does; they are skipped with a note when smtp-sink is not
//! installed (`tests/setup.sh`). The timed part is `send_all` alone: the ledger's
//! `queue` (enqueueing the recipients) runs untimed before each call.
//!
//! Needs `python3` on PATH to generate the audience (kept in `target/bench-audience-ROWS`).
//! For whole-command figures against mailmerge and smtp-source see `benches/compare.sh`.

mod common;

use std::hint::black_box;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

use tact::campaign::Campaign;
use tact::plan::{Facts, Outcome, Prepared};
use tact::send::{Relay, Run, SendOptions, SmtpTarget, Tally, Transport};
use tact::state::Keys;
use tact::state::State;
use tact::state::ledger::Ledger;

/// A segment edit the composer keeps in memory: both fields are already loaded for the
/// templates, so no CSV is read again (asserted below).
const EDITED_SEGMENT: &str = r#"country == "GB" and loyalty_tier == "gold""#;

fn audience(c: &mut Criterion) {
    let rows = common::rows(1_000_000);
    let path = common::audience(rows);
    let now = common::now();
    let keys = Keys::from_master(&[7u8; 32]);
    // An empty ledger, as for a campaign never sent: the plan skips hashing every row.
    let facts = Facts::default();
    let p = Prepared::load(&path, now).unwrap_or_else(|e| panic!("load: {e}"));
    let base = p.base(&keys, &facts, now);
    let edited = p
        .with_segment(Some(EDITED_SEGMENT), now)
        .unwrap_or_else(|e| panic!("segment: {e}"));
    assert!(
        edited.fits(&base, now),
        "the edited segment re-read the CSV: the recount bench would time a load"
    );

    let mut g = c.benchmark_group("audience");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(rows as u64));
    // The drop of a million-row audience is not part of loading it.
    g.bench_function(BenchmarkId::new("load", rows), |b| {
        b.iter_with_large_drop(|| Prepared::load(black_box(&path), now))
    });
    g.bench_function(BenchmarkId::new("plan", rows), |b| {
        b.iter_with_large_drop(|| p.plan(&keys, &facts, now))
    });
    g.bench_function(BenchmarkId::new("segment_recount", rows), |b| {
        b.iter(|| {
            let q = p
                .with_segment(Some(black_box(EDITED_SEGMENT)), now)
                .unwrap_or_else(|e| panic!("segment: {e}"));
            let plan = q.plan_on(&base);
            let report = tact::check::preliminary(&q, &plan);
            // The Audience screen's list of excluded rows, built with every recount.
            let excluded: Vec<(u64, u32)> = plan
                .decisions
                .iter()
                .filter(|d| matches!(d.outcome, Outcome::Excluded(_)))
                .map(|d| (q.audience.line(d.row as usize), d.row))
                .collect();
            (report.audience.recipients(), excluded.len())
        })
    });
    g.bench_function(BenchmarkId::new("check_run", rows), |b| {
        b.iter(|| {
            tact::check::run(&p, &keys, &facts, now)
                .1
                .audience
                .recipients()
        })
    });
    g.finish();

    per_recipient(c, &p, &keys, &facts);
}

fn per_recipient(c: &mut Criterion, p: &Prepared, keys: &Keys, facts: &Facts) {
    let now = common::now();
    let recipients: Vec<(usize, bool)> = p.plan(keys, facts, now).recipients().collect();
    assert!(
        !recipients.is_empty(),
        "the generated campaign has no recipients"
    );
    let date = SystemTime::from(now);
    let mut g = c.benchmark_group("per_recipient");
    g.throughput(Throughput::Elements(1));
    // Cycling through real recipients mixes personalised and generic letters as sent.
    let mut next = recipients.iter().cycle();
    g.bench_function("render_letter", |b| {
        b.iter(|| {
            let &(row, personalised) = next.next().unwrap_or(&recipients[0]);
            p.letter(keys, row, personalised)
                .map(|l| l.rendered.text.len())
        })
    });
    let mut next = recipients.iter().cycle();
    g.bench_function("build_mime", |b| {
        b.iter_batched(
            || {
                let &(row, personalised) = next.next().unwrap_or(&recipients[0]);
                let letter = p
                    .letter(keys, row, personalised)
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

fn send(c: &mut Criterion) {
    let Some(binary) = smtp_sink_binary() else {
        eprintln!(
            "send_smtp_sink: skipped, smtp-sink is not installed (tests/setup.sh installs it)"
        );
        return;
    };
    let messages: usize = std::env::var("TACT_BENCH_SEND")
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("TACT_BENCH_SEND={v} is not a count"))
        })
        .unwrap_or(2000);
    let rows = common::rows(1_000_000);
    let now = common::now();
    let text_only = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let mut campaign =
        Campaign::load(&common::audience(rows)).unwrap_or_else(|e| panic!("campaign: {e}"));
    campaign.templates = text_templates(text_only.path(), &campaign.templates, &campaign.template);
    let p = Prepared::from_campaign(campaign, now).unwrap_or_else(|e| panic!("load: {e}"));
    let recipients: Vec<(usize, bool)> = p
        .plan(&Keys::from_master(&[7u8; 32]), &Facts::default(), now)
        .recipients()
        .take(messages)
        .collect();
    let sink = Sink::start(&binary);
    let target = SmtpTarget::parse(&sink.url(), None).unwrap_or_else(|e| panic!("url: {e}"));

    let mut g = c.benchmark_group("send_smtp_sink");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(recipients.len() as u64));
    for connections in [1, 4] {
        let mut opts = SendOptions::for_campaign(&p.campaign);
        opts.concurrency = connections;
        // The campaign's default of 20/s is a courtesy to real relays; here it would be
        // all that is measured.
        opts.rate_per_second = 1e9;
        g.bench_function(BenchmarkId::new("connections", connections), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    // A campaign sends once: every call needs a ledger that never saw it.
                    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
                    let state =
                        State::open_or_init(dir.path()).unwrap_or_else(|e| panic!("state: {e}"));
                    let mut ledger =
                        Ledger::open(&state.dir, false).unwrap_or_else(|e| panic!("ledger: {e}"));
                    let jobs = tact::send::queue(&p, &state.keys, &mut ledger, &recipients, now)
                        .unwrap_or_else(|e| panic!("queue: {e}"));
                    let tally = Tally::default();
                    let stop = AtomicBool::new(false);
                    let run = Run {
                        prepared: &p,
                        keys: &state.keys,
                        tally: &tally,
                        stop: &stop,
                        now,
                    };
                    let started = Instant::now();
                    let relays = [Relay::single(Transport::Smtp(target.clone()), &opts)];
                    let summary = tact::send::send_all(run, ledger, jobs, &relays, opts.clone())
                        .unwrap_or_else(|e| panic!("send: {e}"));
                    timed += started.elapsed();
                    assert_eq!(
                        summary.sent,
                        recipients.len(),
                        "not every message was accepted: {summary:?}"
                    );
                }
                timed
            })
        });
    }
    g.finish();
}

/// A copy of the templates folder without `NAME.html.tera`: the text-only campaign that
/// `compare.sh` races against mailmerge's fastest path.
fn text_templates(into: &Path, from: &Path, name: &str) -> PathBuf {
    let html = format!("{name}.html.tera");
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for entry in entries.flatten() {
        if entry.file_name() != html.as_str() && entry.path().is_file() {
            std::fs::copy(entry.path(), into.join(entry.file_name()))
                .unwrap_or_else(|e| panic!("copy template: {e}"));
        }
    }
    into.to_path_buf()
}

fn smtp_sink_binary() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/sbin/smtp-sink")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("smtp-sink")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Debian's smtp-sink on a free port of 127.0.0.1; killed when dropped.
struct Sink {
    child: Child,
    port: u16,
}

impl Sink {
    fn start(binary: &Path) -> Sink {
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("no free port: {e}"));
            let mut cmd = Command::new(binary);
            // smtp-sink refuses to run as root without a user to switch to.
            if running_as_root() {
                cmd.args(["-u", "nobody"]);
            }
            // No -d: nothing is written, so the sink is never the bottleneck. A backlog of
            // 1024, as compare.sh gives it.
            let child = cmd
                .arg(format!("127.0.0.1:{port}"))
                .arg("1024")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            let mut sink = Sink { child, port };
            if sink.greets() {
                return sink;
            }
            // Most likely the port was taken meanwhile; Drop kills this one.
        }
        panic!("smtp-sink did not start on any free port");
    }

    /// Waits for the 220 greeting: then it is our sink, and serving.
    fn greets(&mut self) -> bool {
        use std::io::Read;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut code = [0u8; 3];
                if s.read_exact(&mut code).is_ok() && &code == b"220" {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

criterion_group!(benches, audience, send);
criterion_main!(benches);
