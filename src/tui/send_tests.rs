//! The composer's real send against a real SMTP server (Postfix's `smtp-sink` on
//! 127.0.0.1), through the app's own actions and effects: it is the CLI's send, with the
//! same gate, relays and audit events. Without smtp-sink these tests fail and say to run
//! tests/setup.sh; they never skip.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser as _;

use tact::state::State;

use super::app::{Action, App, Ctx, PromptKind};
use super::{dispatch, perform, work};

const NOW: &str = "2026-11-23T12:00:00Z";

fn now() -> chrono::DateTime<chrono::Utc> {
    tact::consent::parse_time(NOW).unwrap()
}

/// smtp-sink on a free port, discarding what it accepts; killed on drop.
pub(super) struct Sink {
    child: Child,
    port: u16,
}

impl Sink {
    pub(super) fn start() -> Sink {
        let bin = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("smtp-sink is not installed: run tests/setup.sh (Debian's postfix package)");
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = Command::new(&bin);
            if root {
                cmd.args(["-u", "nobody"]);
            }
            let mut child = cmd
                .arg(format!("127.0.0.1:{port}"))
                .arg("100")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5) {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut greeting = [0u8; 3];
                    if s.read_exact(&mut greeting).is_ok() && &greeting == b"220" {
                        return Sink { child, port };
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("smtp-sink did not start");
    }

    pub(super) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A writable copy of the samples, an initialised state, and `name`: winter-sale sending
/// through one `[[send.relay]]` named `sink-a` (and only through it).
pub(super) struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    state: State,
}

impl Setup {
    pub(super) fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        copy_dir(Path::new("sample-data"), &root.join("sample-data"));
        copy_dir(Path::new("templates"), &root.join("templates"));
        let state = State::open_or_init(&root.join("state")).unwrap();
        Setup {
            _tmp: tmp,
            root,
            state,
        }
    }

    pub(super) fn campaign(&self, name: &str, segment: &str, sink: &Sink) -> PathBuf {
        let dir = self.root.join("sample-data/campaigns");
        let text = std::fs::read_to_string(dir.join("winter-sale.toml"))
            .unwrap()
            .replacen("name = \"winter-sale\"", &format!("name = \"{name}\""), 1)
            .replacen("segment = 'country == \"GB\"'", segment, 1);
        let path = dir.join(format!("{name}.toml"));
        let relay = format!(
            "\n[send]\nrate_per_second = 5000\nconcurrency = 4\n\n[[send.relay]]\nname = \"sink-a\"\nurl = \"{}\"\nrate_per_second = 5000\nconcurrency = 4\n",
            sink.url()
        );
        std::fs::write(&path, format!("{text}{relay}")).unwrap();
        path
    }

    pub(super) fn ctx(&self) -> Ctx {
        Ctx {
            keys: self.state.keys.clone(),
            state_dir: Some(self.state.dir.clone()),
            store: None,
            now: now(),
        }
    }

    /// The audit events of `campaign`: each kind with the keys of its body.
    fn audit(&self, campaign: &str) -> Vec<(String, Vec<String>)> {
        let l = self.state.ledger(false).unwrap();
        l.audit_events(Some(campaign))
            .unwrap()
            .into_iter()
            .map(|e| {
                let mut keys: Vec<String> = e
                    .body
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                keys.sort();
                (e.kind, keys)
            })
            .collect()
    }
}

/// Runs the app's effects on the loop's own `perform`, feeding the answers back, until
/// `done` holds.
pub(super) fn run_until(app: &mut App, what: &str, done: impl Fn(&App) -> bool) {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    while !done(app) {
        for e in std::mem::take(&mut app.effects) {
            perform(app, e, &tx);
        }
        if let Ok(a) = rx.recv_timeout(Duration::from_millis(50)) {
            dispatch(app, a);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the composer never {what}: status {:?}",
            app.status
        );
    }
}

#[test]
fn a_composer_send_uses_the_campaigns_relays_and_writes_the_clis_audit_events() {
    let s = Setup::new();
    let sink = Sink::start();
    let segment = "segment = 'country == \"GB\"'";
    let tui = s.campaign("from-tui", segment, &sink);
    let tui_again = tui.clone();
    let cli = s.campaign("from-cli", segment, &sink);

    let mut app = App::opening(tui, s.ctx());
    app.smtp_url = None;
    run_until(&mut app, "checked the campaign", |a| {
        a.loaded.as_ref().is_some_and(|l| l.checked())
    });
    let n = app.recipients_count();
    assert_eq!(n, 220);
    dispatch(&mut app, Action::RealSend);
    // The campaign names its relays: no URL to ask for, only the count to confirm.
    assert_eq!(
        app.prompt.as_ref().map(|p| p.kind),
        Some(PromptKind::ConfirmCount(n)),
        "status: {:?}",
        app.status
    );
    for c in n.to_string().chars() {
        dispatch(&mut app, Action::Input(c));
    }
    dispatch(&mut app, Action::Submit);
    run_until(&mut app, "finished sending", |a| {
        a.sending.as_ref().is_some_and(|s| s.result.is_some())
    });
    let sent = match app.sending.as_ref().and_then(|s| s.result.as_ref()) {
        Some(Ok(sent)) => sent,
        other => panic!("the composer's send failed: {other:?}"),
    };
    assert_eq!(sent.summary.sent, 220);
    assert_eq!(sent.summary.sent_by_relay.get("sink-a"), Some(&220));
    let ledger = s.state.ledger(false).unwrap();
    assert_eq!(ledger.relay_usage("sink-a", now()).unwrap(), 220);
    assert!(ledger.completed_at("from-tui").unwrap().is_some());
    drop(ledger);

    // Opened again, the complete campaign plans nobody and says why, as `tact send` does.
    let mut again = App::opening(tui_again, s.ctx());
    run_until(&mut again, "checked the campaign again", |a| {
        a.loaded.as_ref().is_some_and(|l| l.checked())
    });
    assert_eq!(again.recipients_count(), 0);
    dispatch(&mut again, Action::RealSend);
    assert!(again.prompt.is_none());
    let status = again.status.clone().unwrap_or_default();
    assert!(
        status.contains("completed on") && status.contains("nothing to send"),
        "{status}"
    );

    // The CLI's send of the same campaign under another name: the same events, alike.
    let argv = [
        "tact",
        "--state",
        s.state.dir.to_str().unwrap(),
        "--now",
        NOW,
        "send",
        cli.to_str().unwrap(),
    ];
    let code = crate::cli::dispatch(crate::cli::Cli::try_parse_from(argv).unwrap()).unwrap();
    assert_eq!(code, 0);
    let from_cli = s.audit("from-cli");
    assert_eq!(
        from_cli.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["send-started", "send-finished"]
    );
    assert_eq!(s.audit("from-tui"), from_cli);
}

#[test]
fn a_composer_send_of_a_campaign_with_no_recipients_is_refused_and_records_nothing() {
    let s = Setup::new();
    let sink = Sink::start();
    let nobody = s.campaign("nobody", "segment = 'country == \"XX\"'", &sink);
    let campaign = tact::campaign::Campaign::load(&nobody).unwrap();
    let tally = tact::send::Tally::default();
    let stop = AtomicBool::new(false);
    let r = work::send(campaign, &s.ctx(), None, &tally, &stop);
    let err = r.expect_err("a campaign with 0 recipients was sent");
    assert!(err.contains("0 recipients"), "{err}");
    let ledger = s.state.ledger(false).unwrap();
    assert!(s.audit("nobody").is_empty());
    assert_eq!(ledger.completed_at("nobody").unwrap(), None);
    assert_eq!(ledger.counts("nobody").unwrap(), Default::default());
}
