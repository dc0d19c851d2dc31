//! The one-click endpoint under a slowloris (issue 11, item 6): `tact unsubscribe-server`
//! (the release binary, on its exported key) with 150 connections that each declare
//! `Content-Length: 60000` and send 4 bytes, held open, while 124 people unsubscribe from
//! 8 client threads at once. Target: every POST answered 200, p99 under 1 s. Each round
//! uses new people; the figures are over every round.
//!
//! ```text
//! cargo bench --bench unsubscribe              # 5 rounds
//! TACT_BENCH_ROUNDS=20 cargo bench --bench unsubscribe
//! ```
//!
//! Latency is from connect to the whole answer, over loopback; the integration test
//! (`tests/ops`, `unsubscribe_server_answers_everyone_while_150_slow_clients_hold_connections`)
//! checks the same scenario for correctness in the debug build.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tact::state::Keys;
use tact::state::ledger::Ledger;

const SLOW: usize = 150;
const PEOPLE: usize = 124;
const CLIENTS: usize = 8;

fn master_keys(state: &Path) -> Keys {
    let hex = std::fs::read_to_string(state.join("master.key")).expect("master.key");
    let hex = hex.trim();
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex master key");
    }
    Keys::from_master(&key)
}

/// One POST on a new connection: the status and the time to the whole answer.
fn post(addr: &str, token: &str) -> (u16, Duration) {
    let t = Instant::now();
    let body = "List-Unsubscribe=One-Click";
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let rq = format!(
        "POST /unsubscribe?t={token} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(rq.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, t.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let rounds: usize = std::env::var("TACT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (state, key) = (tmp.path().join("state"), tmp.path().join("unsubscribe.key"));
    let tact = env!("CARGO_BIN_EXE_tact");
    let ok = Command::new(tact)
        .arg("--state")
        .arg(&state)
        .arg("init")
        .arg("--unsubscribe-key")
        .arg(&key)
        .stdout(Stdio::null())
        .status()
        .expect("tact init");
    assert!(ok.success(), "tact init failed");
    let keys = master_keys(&state);
    let mut server = Command::new(tact)
        .arg("--state")
        .arg(&state)
        .args(["unsubscribe-server", "--listen", "127.0.0.1:0", "--key"])
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .expect("an address")
        .to_string();

    let mut latencies = Vec::new();
    let mut not_ok = 0;
    for round in 0..rounds {
        // The slowloris of the issue, held open for the whole round.
        let slow: Vec<TcpStream> = (0..SLOW)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).expect("connect");
                let _ = s.write_all(
                    b"POST /unsubscribe?t=x HTTP/1.1\r\nHost: a\r\nContent-Length: 60000\r\n\r\nList",
                );
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let people: Vec<_> = (0..PEOPLE)
            .map(|i| {
                let h = keys.recipient_hash(&format!("reader{round}-{i}@example.com"));
                (keys.seal_token("winter-sale", &h), h)
            })
            .collect();
        let answers: Vec<(u16, Duration)> = std::thread::scope(|s| {
            let workers: Vec<_> = people
                .chunks(PEOPLE.div_ceil(CLIENTS))
                .map(|chunk| {
                    let addr = &addr;
                    s.spawn(move || chunk.iter().map(|(t, _)| post(addr, t)).collect::<Vec<_>>())
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("client thread"))
                .collect()
        });
        not_ok += answers.iter().filter(|a| a.0 != 200).count();
        latencies.extend(answers.iter().map(|a| a.1));
        let ledger = Ledger::open(&state, false).expect("ledger");
        let missing = people
            .iter()
            .filter(|(_, h)| !ledger.is_suppressed(h).unwrap_or(false))
            .count();
        assert_eq!(missing, 0, "round {round}: {missing} not suppressed");
        drop(slow);
    }
    let _ = server.kill();
    let _ = server.wait();
    latencies.sort();
    println!(
        "unsubscribe-server, {SLOW} slowloris connections held open, {PEOPLE} one-click POSTs x {rounds} rounds from {CLIENTS} clients:"
    );
    println!(
        "  answered 200: {}/{}   p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms   (target: all 200, p99 < 1000 ms)",
        latencies.len() - not_ok,
        latencies.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    assert_eq!(not_ok, 0, "some POSTs were not answered 200");
}
