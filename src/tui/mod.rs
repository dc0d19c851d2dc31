//! The composer (`tact` or `tact CAMPAIGN`): a terminal front end over the same plan as
//! `check`, `preview` and `send`; it adds no rules of its own.
//!
//! Elm-shaped: a key becomes an `Action` through the one key table (`keys.rs`),
//! `update(&mut App, Action)` changes state (`app.rs`), and drawing only reads it
//! (`view.rs`). Long work is asked for as an `Effect`; the loop here runs it on a thread
//! (`work.rs`), which answers with an `Action` over a channel, so input never waits.

mod app;
mod bounces;
mod from_csv;
mod keys;
mod source;
mod view;
mod work;

#[cfg(test)]
mod bounces_tests;
#[cfg(test)]
mod canary_tests;
#[cfg(test)]
mod from_csv_tests;
#[cfg(test)]
mod screens_tests;
#[cfg(test)]
mod send_tests;
#[cfg(test)]
mod tests;

use std::io::{self, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event};

use crate::globals::Globals;

pub use app::{Action, App, Ctx, Effect, update};

/// Why the loop returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    Quit,
    /// Open this file (at this line) in $EDITOR with the terminal restored, then come back.
    Editor(PathBuf, Option<usize>),
}

pub fn run(g: &Globals, campaign: Option<PathBuf>) -> anyhow::Result<u8> {
    // Without a terminal (cron, a pipe, CI) ratatui would panic on the first draw.
    if !(io::stdin().is_terminal() && io::stdout().is_terminal()) {
        eprintln!(
            "tact: error: the composer needs a terminal; use check, preview or send (`tact --help`)"
        );
        return Ok(2);
    }
    if let Some(path) = &campaign
        && !path.is_file()
    {
        eprintln!("tact: error: no campaign file at {}", path.display());
        return Ok(2);
    }
    // Before the terminal changes mode, so a bad state directory prints as usual.
    let ctx = context(g)?;
    let mut app = match campaign {
        Some(path) => App::opening(path, ctx),
        None => {
            let cwd = std::env::current_dir()?;
            let mut app = App::picking(work::find_campaigns(&cwd), ctx);
            let home = std::env::var_os("HOME").map(PathBuf::from);
            app.from_csv.start = from_csv::start_dir(&cwd, home.as_deref());
            app.survey_picker();
            app
        }
    };
    let (tx, rx) = mpsc::channel();
    // ratatui's hook (installed by init) restores raw mode and the screen; mouse reporting
    // and bracketed paste are ours to switch off, or a panic would leave the shell
    // printing escape codes.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = modes(false);
        hook(info);
    }));
    loop {
        // ratatui::init installs a panic hook that restores the terminal first.
        let mut terminal = ratatui::init();
        let exit = modes(true)
            .map_err(anyhow::Error::from)
            .and_then(|()| run_loop(&mut terminal, &mut app, &tx, &rx, crossterm_event));
        let _ = modes(false);
        ratatui::restore();
        match exit? {
            Exit::Quit => return Ok(0),
            Exit::Editor(path, line) => {
                // An editor that fails is a message on screen, never the end of the app:
                // the unsaved segment is still in memory.
                let done = edit(&path, line);
                dispatch(&mut app, Action::Reload);
                dispatch(&mut app, Action::EditorDone(done));
            }
        }
    }
}

/// The composer's keys and state. A missing state is not created (a typo in `--state`
/// must not start over with an empty suppression list): the composer still counts, with
/// no ledger facts and throwaway keys, and its sends refuse with the usual `no state at`.
pub fn context(g: &Globals) -> anyhow::Result<Ctx> {
    let keys = match g.open_state()? {
        Some(state) => {
            // A key that does not match a shared store is refused here, before the screen
            // changes.
            state.ledger(false)?;
            state.keys
        }
        None => {
            let mut master = [0u8; 32];
            getrandom::fill(&mut master).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            tact::state::Keys::from_master(&master)
        }
    };
    Ok(Ctx {
        keys,
        state_dir: Some(g.state_dir()?),
        store: g.store.clone(),
        now: g.now,
    })
}

/// Mouse reporting (the wheel scrolls) and bracketed paste (a paste arrives as one text,
/// never as key presses) on, or off before the terminal is given back.
fn modes(on: bool) -> io::Result<()> {
    use ratatui::crossterm::event::{
        DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    };
    if on {
        ratatui::crossterm::execute!(io::stdout(), EnableMouseCapture, EnableBracketedPaste)
    } else {
        ratatui::crossterm::execute!(io::stdout(), DisableMouseCapture, DisableBracketedPaste)
    }
}

fn crossterm_event(_: &App, timeout: Duration) -> io::Result<Option<Event>> {
    if event::poll(timeout)? {
        event::read().map(Some)
    } else {
        Ok(None)
    }
}

/// $VISUAL, else $EDITOR, else `vi`; an empty value counts as unset.
fn editor() -> String {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string())
}

/// Editors known to take `+LINE` before the file to open it at that line. Others get the
/// file alone (a `+12` would be read as a file name by, say, `code`).
const PLUS_LINE: &[&str] = &[
    "vi",
    "vim",
    "nvim",
    "gvim",
    "view",
    "vis",
    "nano",
    "pico",
    "emacs",
    "emacsclient",
    "mg",
    "micro",
    "joe",
    "jed",
    "ne",
    "kak",
];

/// The command for `editor` on `path`, the way git runs its editor: through the shell, so
/// `code --wait` and `sh -c '…' --` work, with the file as an argument (never pasted into
/// the command line, so no name can inject shell syntax). `+LINE` goes first for the
/// editors in `PLUS_LINE`.
pub fn editor_command(editor: &str, path: &Path, line: Option<usize>) -> Command {
    let program = editor.split_whitespace().next().unwrap_or_default();
    let name = Path::new(program)
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let mut cmd = Command::new("sh");
    // `$0` is `--`; "$@" is the arguments after it.
    cmd.arg("-c").arg(format!("{editor} \"$@\"")).arg("--");
    if let Some(line) = line
        && PLUS_LINE.contains(&name.as_str())
    {
        cmd.arg(format!("+{line}"));
    }
    cmd.arg(path);
    cmd
}

/// Runs the editor and waits; Err says how it failed, for the status line.
pub fn run_editor(editor: &str, path: &Path, line: Option<usize>) -> Result<(), String> {
    let status = editor_command(editor, path, line)
        .status()
        .map_err(|e| format!("cannot start the editor `{editor}` (through sh): {e}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(127) => Err(format!("the editor `{editor}` was not found (exit 127)")),
        Some(126) => Err(format!("the editor `{editor}` cannot be run (exit 126)")),
        Some(n) => Err(format!("the editor `{editor}` exited with status {n}")),
        None => Err(format!("the editor `{editor}` was stopped by a signal")),
    }
}

fn edit(path: &Path, line: Option<usize>) -> Result<(), String> {
    run_editor(&editor(), path, line)
}

/// Runs one action and everything it leads to.
pub fn dispatch(app: &mut App, action: Action) {
    let mut next = Some(action);
    while let Some(a) = next {
        next = update(app, a);
    }
}

/// Draw, wait briefly for a key, take what the workers finished, run new effects. Generic
/// over the backend and the event source (which may look at the state) so tests can drive
/// it on a `TestBackend` with scripted keys.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    tx: &Sender<Action>,
    rx: &Receiver<Action>,
    mut next_event: impl FnMut(&App, Duration) -> io::Result<Option<Event>>,
) -> anyhow::Result<Exit>
where
    B::Error: Send + Sync + 'static,
{
    loop {
        terminal.draw(|f| f.render_widget(&*app, f.area()))?;
        // Every key already typed is handled before the next draw, so a slow frame (a
        // large preview) never makes typing lag behind; none is dropped either way.
        let mut wait = Duration::from_millis(50);
        for _ in 0..256 {
            let Some(ev) = next_event(app, wait)? else {
                break;
            };
            if let Some(a) = keys::action_for_event(app, &ev) {
                dispatch(app, a);
            }
            wait = Duration::ZERO;
            if app.quit || !app.effects.is_empty() {
                break;
            }
        }
        while let Ok(a) = rx.try_recv() {
            dispatch(app, a);
        }
        dispatch(app, Action::Tick(Instant::now()));
        for effect in std::mem::take(&mut app.effects) {
            if let Effect::Editor { path, line } = effect {
                return Ok(Exit::Editor(path, line));
            }
            perform(app, effect, tx);
        }
        if app.quit {
            return Ok(Exit::Quit);
        }
    }
}

/// Starts an effect's work on its own thread; the answer comes back through `tx`.
pub fn perform(app: &App, effect: Effect, tx: &Sender<Action>) {
    let tx = tx.clone();
    let ctx = app.ctx.clone();
    match effect {
        Effect::Load(path) => {
            std::thread::spawn(move || {
                // The counts first; `Loaded` asks for the full check as its own effect.
                let r = work::open(&path, &ctx);
                let _ = tx.send(Action::Loaded(Box::new(r)));
            });
        }
        Effect::Recount {
            generation,
            base,
            rows,
            campaign,
        } => {
            let facts = Arc::clone(&app.facts);
            std::thread::spawn(move || {
                let result = Box::new(work::recount_on(&base, &rows, *campaign, &ctx, &facts));
                let _ = tx.send(Action::Recounted { generation, result });
            });
        }
        Effect::Check {
            generation,
            prepared,
            plan,
        } => {
            let latest = Arc::clone(&app.latest);
            std::thread::spawn(move || {
                // A newer load or segment makes this render moot: stop, so its count is
                // not kept waiting behind a render of 1M recipients nobody will see.
                let moot = || latest.load(Ordering::Relaxed) != generation;
                if let Some(c) = work::check(&prepared, *plan, &ctx.keys, ctx.now, &moot) {
                    let _ = tx.send(Action::Checked {
                        generation,
                        result: Box::new(c),
                    });
                }
            });
        }
        Effect::DryRun => {
            let Some(l) = &app.loaded else { return };
            let p = Arc::clone(&l.prepared);
            let recipients = l.recipients();
            std::thread::spawn(move || {
                let s = work::dry_run(&p, &ctx.keys, &recipients, ctx.now);
                let _ = tx.send(Action::DryRunDone(Ok(s)));
            });
        }
        Effect::Send { url } => {
            let (Some(l), Some(s)) = (&app.loaded, &app.sending) else {
                return;
            };
            let campaign = l.prepared.campaign.clone();
            let tally = Arc::clone(&s.tally);
            let stop = Arc::clone(&s.stop);
            std::thread::spawn(move || {
                let r = work::send(campaign, &ctx, url.as_deref(), &tally, &stop);
                let _ = tx.send(Action::SendDone(r));
            });
        }
        Effect::ImportBounces(campaign) => {
            std::thread::spawn(move || {
                let progress_tx = tx.clone();
                let r =
                    work::import_bounces(&campaign, &ctx, &|k| std::env::var(k).ok(), &mut |n| {
                        let _ = progress_tx.send(Action::BouncesProgress(n));
                    });
                let _ = tx.send(Action::BouncesImported(r));
            });
        }
        Effect::TestSend { url, order } => {
            let Some(l) = &app.loaded else { return };
            let p = Arc::clone(&l.prepared);
            let plan = l.plan.clone();
            std::thread::spawn(move || {
                let r = work::send_test(&p, &plan, &ctx, &url, order);
                let _ = tx.send(Action::TestSent(r));
            });
        }
        Effect::Save { path, segment } => {
            let result = work::save_segment(&path, segment.as_deref());
            let _ = tx.send(Action::Saved {
                segment: true,
                result,
            });
        }
        Effect::Acknowledge { path, ack } => {
            let result = work::save_acknowledgement(&path, &ack);
            let _ = tx.send(Action::Saved {
                segment: false,
                result,
            });
        }
        Effect::Revoke { path, rule, fields } => {
            let result = work::revoke_acknowledgement(&path, &rule, &fields);
            let _ = tx.send(Action::Saved {
                segment: false,
                result,
            });
        }
        Effect::Survey(paths) => {
            std::thread::spawn(move || {
                for path in paths {
                    let said = work::survey(&path, &ctx);
                    if tx.send(Action::Surveyed(path, said)).is_err() {
                        return;
                    }
                }
            });
        }
        Effect::FromCsv {
            name,
            audience,
            dir,
        } => {
            std::thread::spawn(move || {
                let r = tact::onboard::create(&name, &audience, &dir);
                let _ = tx.send(Action::FromCsvDone(Box::new(r)));
            });
        }
        Effect::Open(eml) => {
            std::thread::spawn(move || {
                let _ = tx.send(Action::Opened(crate::viewer::open_message(&eml)));
            });
        }
        // The loop handles it: the terminal must be given back first.
        Effect::Editor { .. } => {}
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    /// A typo in `--state` must not make a new state with an empty suppression list: the
    /// composer counts without one, and a real send refuses as `tact send` does.
    #[test]
    fn a_missing_state_is_not_created_and_sends_refuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let typo = dir.path().join("typo");
        let g = Globals {
            state_flag: Some(typo.clone()),
            store: None,
            now: chrono::Utc::now(),
        };
        let ctx = context(&g).expect("the composer opens without state");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (loaded, _) = work::open(&root.join("sample-data/campaigns/winter-sale.toml"), &ctx)
            .expect("counts without state");
        assert!(loaded.recipients().len() > 200);
        let tally = tact::send::Tally::default();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let err = work::send(
            loaded.prepared.campaign.clone(),
            &ctx,
            Some("smtp://127.0.0.1:1"),
            &tally,
            &stop,
        )
        .expect_err("a send without state");
        assert!(
            err.contains(&format!(
                "no state at {}: run `tact init` or point TACT_HOME at your existing state",
                typo.display()
            )),
            "{err}"
        );
        assert!(!typo.exists(), "the composer made a state directory");
    }
}
