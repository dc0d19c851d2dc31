//! `tact unsubscribe-server --listen ADDR --key FILE`: the one-click unsubscribe endpoint
//! (RFC 8058; `tact::unsubscribe` answers and serves). It runs on the key `tact init
//! --unsubscribe-key FILE` exports, which opens tokens and nothing else: the process never
//! reads the master key, so it holds neither the ledger nor the audit key.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;

use tact::state::{self, UnsubscribeKey};
use tact::unsubscribe::{self, Endpoint};

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address and port to listen on, e.g. 127.0.0.1:8058 behind a TLS-terminating proxy
    /// (port 0 picks a free one; the address is printed).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The unsubscribe key (from `tact init --unsubscribe-key FILE`, mode 0600). `--state`
    /// names where the suppression list is: the state directory (its master key is not
    /// needed there) or the shared database.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

/// Waits for Ctrl-C or SIGTERM, then wakes the accept loop. `ready` is sent once the
/// handlers are installed, so a signal that arrives after the "listening" line is never
/// the default one that kills the process mid-write.
fn watch_signals(
    addr: std::net::SocketAddr,
    stop: &AtomicBool,
    interrupted: &AtomicBool,
    ready: &std::sync::mpsc::Sender<()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        let _ = ready.send(());
        return;
    };
    rt.block_on(async {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            let _ = ready.send(());
            return;
        };
        let _ = ready.send(());
        tokio::select! {
            _ = int.recv() => interrupted.store(true, Ordering::SeqCst),
            _ = term.recv() => {}
        }
        stop.store(true, Ordering::SeqCst);
    });
    unsubscribe::wake(addr);
}

pub fn run(g: &Globals, args: &Args) -> anyhow::Result<u8> {
    let key = UnsubscribeKey::read(&args.key)?;
    // With a database there is no state directory to find: nothing local is needed.
    let dir = match &g.store {
        Some(_) => std::path::PathBuf::new(),
        None => state::resolve_dir(g.state_flag.as_deref())?,
    };
    // A missing state is an input error (exit 2): nothing is created.
    let ledger = key.open_store(&dir, g.store.clone())?;
    let where_ = ledger.describe();
    let listener = match TcpListener::bind(args.listen.as_str()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tact: error: cannot listen on {}: {e}", args.listen);
            return Ok(2);
        }
    };
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    {
        let (stop, interrupted) = (stop.clone(), interrupted.clone());
        std::thread::spawn(move || watch_signals(addr, &stop, &interrupted, &ready_tx));
    }
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    // `--now` shifts the clock; time still passes while the server runs.
    let (started, base) = (Instant::now(), g.now);
    let endpoint = Arc::new(Endpoint {
        key: key.token,
        ledger: Mutex::new(ledger),
        now: Box::new(move || {
            base + chrono::Duration::from_std(started.elapsed()).unwrap_or_default()
        }),
        log: Box::new(|line| {
            eprintln!(
                "{} tact unsubscribe-server: {line}",
                Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
            );
        }),
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "listening on http://{addr} (suppression list: {where_}); Ctrl-C stops"
        )
        .context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
    }
    unsubscribe::serve(&listener, &endpoint, &stop);
    eprintln!("tact unsubscribe-server: stopped");
    Ok(if interrupted.load(Ordering::SeqCst) {
        130
    } else {
        0
    })
}
