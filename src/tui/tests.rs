//! The composer without a terminal: `update` for every action, the key table, saving, and
//! insta snapshots of every screen on a `TestBackend` at 120×40 and 80×24.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

use tact::check::Level;
use tact::state::Keys;

use super::app::{Action, App, Ctx, DryRunSummary, Effect, PromptKind, Tab, mask, update};
use super::keys::{KEYS, action_for_key};
use super::view::{error_column, funnel};
use super::{Exit, dispatch, work};

fn now() -> chrono::DateTime<chrono::Utc> {
    tact::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
}

fn ctx() -> Ctx {
    Ctx {
        keys: Keys::from_master(&[7; 32]),
        state_dir: None,
        now: now(),
    }
}

fn campaign(name: &str) -> PathBuf {
    PathBuf::from(format!("sample-data/campaigns/{name}.toml"))
}

/// Runs the effects the way the loop would, but on this thread, until none are left.
fn settle(app: &mut App) {
    while !app.effects.is_empty() {
        for e in std::mem::take(&mut app.effects) {
            let answer = match e {
                Effect::Load(path) => Action::Loaded(Box::new(work::load(&path, &app.ctx))),
                Effect::Recount {
                    generation,
                    campaign,
                } => Action::Recounted {
                    generation,
                    result: Box::new(work::recount(*campaign, &app.ctx, &app.facts)),
                },
                Effect::DryRun => {
                    let l = app.loaded.as_ref().unwrap();
                    let mut s = work::dry_run(&l.prepared, &app.ctx.keys, &l.recipients(), now());
                    s.seconds = 0.0;
                    Action::DryRunDone(Ok(s))
                }
                _ => continue,
            };
            dispatch(app, answer);
        }
    }
}

fn app(name: &str) -> App {
    let mut app = App::opening(campaign(name), ctx());
    app.colour = false;
    app.smtp_url = None;
    settle(&mut app);
    assert!(app.load_error.is_none(), "{:?}", app.load_error);
    app
}

fn go(app: &mut App, tab: Tab) {
    while app.tab != tab {
        dispatch(app, Action::NextTab);
    }
}

fn type_segment(app: &mut App, text: &str) {
    dispatch(app, Action::StartEdit);
    dispatch(app, Action::ClearInput);
    for c in text.chars() {
        dispatch(app, Action::Input(c));
    }
    dispatch(app, Action::Tick(Instant::now() + Duration::from_secs(1)));
    settle(app);
}

fn recipients(app: &App) -> usize {
    app.loaded.as_ref().unwrap().report.audience.recipients()
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| f.render_widget(app, f.area())).unwrap();
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

// ---------------------------------------------------------------------------------------
// update, one action at a time
// ---------------------------------------------------------------------------------------

#[test]
fn loading_fills_the_overview_counts() {
    let a = app("winter-sale");
    assert!(!a.loading);
    let c = &a.loaded.as_ref().unwrap().report.audience;
    assert_eq!((c.recipients(), c.personalised, c.generic), (220, 122, 98));
    assert_eq!(a.segment.text, "country == \"GB\"");
    assert!(!a.dirty);
}

#[test]
fn a_load_error_is_shown_not_fatal() {
    let mut a = App::opening(campaign("no-such"), ctx());
    settle(&mut a);
    assert!(a.loaded.is_none());
    assert!(a.load_error.as_deref().unwrap().contains("no-such.toml"));
    assert!(screen(&a, 80, 24).contains("cannot open this campaign"));
}

#[test]
fn tabs_cycle_both_ways_and_the_segment_tab_starts_typing() {
    let mut a = app("winter-sale");
    assert_eq!(a.tab, Tab::Overview);
    update(&mut a, Action::PrevTab);
    assert_eq!(a.tab, Tab::Send);
    update(&mut a, Action::NextTab);
    assert_eq!(a.tab, Tab::Overview);
    update(&mut a, Action::NextTab);
    update(&mut a, Action::NextTab);
    assert_eq!(a.tab, Tab::Segment);
    assert!(a.editing);
    update(&mut a, Action::NextTab);
    assert_eq!(a.tab, Tab::Check);
    assert!(!a.editing);
}

#[test]
fn back_closes_help_then_prompt_then_typing_then_quits() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Segment);
    update(&mut a, Action::ToggleHelp);
    dispatch(&mut a, Action::Back);
    assert!(!a.help && a.editing && !a.quit);
    dispatch(&mut a, Action::Back);
    assert!(!a.editing && !a.quit);
    dispatch(&mut a, Action::Back);
    assert!(a.quit);
}

#[test]
fn quitting_with_an_unsaved_segment_asks_once() {
    let mut a = app("winter-sale");
    type_segment(&mut a, "country == \"DE\"");
    assert!(a.dirty);
    dispatch(&mut a, Action::Cancel);
    dispatch(&mut a, Action::Back);
    assert!(!a.quit);
    assert!(a.status.as_deref().unwrap().contains("not saved"));
    dispatch(&mut a, Action::Back);
    assert!(a.quit);
}

#[test]
fn quit_while_sending_only_stops() {
    let mut a = app("winter-sale");
    a.smtp_url = Some("smtp://127.0.0.1:2525".into());
    update(&mut a, Action::RealSend);
    a.prompt.as_mut().unwrap().input = super::app::TextInput::new("220");
    update(&mut a, Action::Submit);
    assert!(a.is_sending());
    update(&mut a, Action::Quit);
    assert!(!a.quit);
    assert!(a.sending.as_ref().unwrap().stop.load(Ordering::SeqCst));
}

#[test]
fn up_down_move_and_clamp_per_tab() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Audience);
    update(&mut a, Action::Up);
    assert_eq!(a.excluded_index, 0);
    update(&mut a, Action::Down);
    update(&mut a, Action::PageDown);
    assert_eq!(a.excluded_index, 11);
    for _ in 0..100 {
        update(&mut a, Action::PageDown);
    }
    assert_eq!(
        a.excluded_index, 279,
        "280 excluded rows, malformed included"
    );
    update(&mut a, Action::PageUp);
    assert_eq!(a.excluded_index, 269);
    go(&mut a, Tab::Check);
    update(&mut a, Action::Down);
    assert_eq!(a.finding_index, 0, "winter-sale has one finding");
    go(&mut a, Tab::Preview);
    update(&mut a, Action::Down);
    update(&mut a, Action::Down);
    assert_eq!(a.preview_scroll, 2);
    update(&mut a, Action::Right);
    assert_eq!(a.preview_scroll, 0, "a new recipient starts at the top");
}

#[test]
fn left_right_step_through_recipients_and_wrap() {
    let mut a = app("winter-sale");
    update(&mut a, Action::Right);
    assert_eq!(a.preview_index, 0, "arrows only move on Preview");
    go(&mut a, Tab::Preview);
    let first = a.preview.clone().unwrap();
    assert_eq!(first.email, "ngozi.okafor@example.com");
    assert!(first.personalised);
    assert!(
        first
            .headers
            .iter()
            .any(|(k, v)| k == "Subject" && v.starts_with("Ngozi,"))
    );
    update(&mut a, Action::Right);
    assert_eq!(a.preview_index, 1);
    assert_ne!(a.preview.as_ref().unwrap().email, first.email);
    update(&mut a, Action::Left);
    update(&mut a, Action::Left);
    assert_eq!(a.preview_index, 219);
}

#[test]
fn the_generic_toggle_renders_without_customer_fields() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Preview);
    update(&mut a, Action::ToggleVariant);
    let doc = a.preview.as_ref().unwrap();
    assert!(!doc.personalised && doc.planned_personalised);
    assert!(!doc.text.contains("Ngozi"));
    let subject = &doc.headers.iter().find(|(k, _)| k == "Subject").unwrap().1;
    assert_eq!(subject, "our winter picks are in");
}

#[test]
fn why_names_consent_and_segment_values() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Preview);
    let why = a.preview.as_ref().unwrap().why.join("\n");
    assert!(why.contains("12 March 2025"), "{why}");
    assert!(why.contains("country = GB"), "{why}");
}

#[test]
fn help_and_reveal_toggle() {
    let mut a = app("winter-sale");
    update(&mut a, Action::ToggleHelp);
    assert!(a.help);
    update(&mut a, Action::ToggleHelp);
    assert!(!a.help);
    go(&mut a, Tab::Audience);
    let masked = screen(&a, 120, 40);
    assert!(
        masked.contains("line       3  not_in_segment              s****@"),
        "{masked}"
    );
    update(&mut a, Action::ToggleReveal);
    assert!(a.reveal);
    let revealed = screen(&a, 120, 40);
    assert!(!revealed.contains("s****@"), "{revealed}");
}

#[test]
fn picker_select_opens_the_campaign() {
    let list = vec![campaign("birthday-treat"), campaign("winter-sale")];
    let mut a = App::picking(list, ctx());
    a.colour = false;
    assert!(a.in_picker());
    update(&mut a, Action::Down);
    update(&mut a, Action::Down);
    assert_eq!(a.picker_index, 1);
    update(&mut a, Action::Select);
    assert!(matches!(&a.effects[..], [Effect::Load(p)] if p == &campaign("winter-sale")));
    settle(&mut a);
    assert_eq!(recipients(&a), 220);
    // q goes back to the picker, then quits.
    dispatch(&mut a, Action::Back);
    assert!(a.in_picker() && !a.quit);
    dispatch(&mut a, Action::Back);
    assert!(a.quit);
}

#[test]
fn typing_debounces_the_recount() {
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::StartEdit);
    assert_eq!(a.tab, Tab::Segment);
    dispatch(&mut a, Action::Input(' '));
    assert!(a.dirty && a.recount_due.is_some());
    dispatch(&mut a, Action::Tick(Instant::now()));
    assert!(a.effects.is_empty(), "recounted before the debounce");
    dispatch(
        &mut a,
        Action::Tick(Instant::now() + super::app::DEBOUNCE * 2),
    );
    assert!(matches!(
        &a.effects[..],
        [Effect::Recount { generation: 1, campaign }] if campaign.segment.as_deref() == Some("country == \"GB\"")
    ));
}

#[test]
fn a_segment_edit_changes_the_count() {
    let mut a = app("winter-sale");
    type_segment(&mut a, "country == \"GB\" and loyalty_tier == \"gold\"");
    assert_eq!(recipients(&a), 29);
    assert!(a.segment_error.is_none());
    // Fewer than min_segment_size: the verdict follows the count.
    assert_eq!(a.loaded.as_ref().unwrap().report.verdict, Level::Caution);
}

#[test]
fn a_syntax_error_shows_its_column_and_keeps_the_counts() {
    let mut a = app("winter-sale");
    type_segment(&mut a, "country == ");
    let e = a.segment_error.clone().unwrap();
    assert!(e.contains("column"), "{e}");
    assert_eq!(error_column(&e), Some(12), "{e}");
    assert_eq!(recipients(&a), 220);
    let s = screen(&a, 80, 24);
    assert!(s.contains("^"), "{s}");
    // An unknown column is an error too, never a crash.
    type_segment(&mut a, "countryy == \"GB\"");
    assert!(a.segment_error.as_deref().unwrap().contains("did you mean"));
}

#[test]
fn a_stale_recount_is_ignored() {
    let mut a = app("winter-sale");
    a.generation = 5;
    let mut c = a.loaded.as_ref().unwrap().prepared.campaign.clone();
    c.segment = Some("country == \"DE\"".into());
    let result = Box::new(work::recount(c, &a.ctx, &a.facts));
    dispatch(
        &mut a,
        Action::Recounted {
            generation: 4,
            result,
        },
    );
    assert_eq!(recipients(&a), 220);
}

#[test]
fn text_editing_keys_move_the_cursor_and_edit() {
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::StartEdit);
    dispatch(&mut a, Action::ClearInput);
    for c in "ab".chars() {
        dispatch(&mut a, Action::Input(c));
    }
    dispatch(&mut a, Action::Home);
    dispatch(&mut a, Action::Input('x'));
    assert_eq!(a.segment.text, "xab");
    dispatch(&mut a, Action::CursorRight);
    dispatch(&mut a, Action::Backspace);
    assert_eq!(a.segment.text, "xb");
    dispatch(&mut a, Action::End);
    dispatch(&mut a, Action::CursorLeft);
    dispatch(&mut a, Action::Input('é'));
    assert_eq!(a.segment.text, "xéb");
    assert_eq!(a.segment.cursor, 2);
}

#[test]
fn submit_recounts_at_once_and_cancel_stops_typing() {
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::StartEdit);
    dispatch(&mut a, Action::Input(' '));
    dispatch(&mut a, Action::Submit);
    assert!(!a.editing);
    assert!(matches!(&a.effects[..], [Effect::Recount { .. }]));
    dispatch(&mut a, Action::StartEdit);
    dispatch(&mut a, Action::Cancel);
    assert!(!a.editing);
}

#[test]
fn dry_run_builds_every_message() {
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::DryRun);
    assert_eq!(a.tab, Tab::Send);
    assert!(a.dry_running);
    settle(&mut a);
    assert!(!a.dry_running);
    let d = a.dry_run.clone().unwrap().unwrap();
    assert_eq!(
        (d.built, d.personalised, d.generic, d.failed),
        (220, 122, 98, 0)
    );
}

#[test]
fn real_send_is_gated_by_the_verdict() {
    let mut a = app("birthday-treat");
    dispatch(&mut a, Action::RealSend);
    assert!(a.prompt.is_none());
    assert!(a.status.as_deref().unwrap().contains("caution"));
}

#[test]
fn real_send_refuses_an_unsaved_segment() {
    let mut a = app("winter-sale");
    type_segment(&mut a, "country == \"GB\" ");
    dispatch(&mut a, Action::Cancel);
    dispatch(&mut a, Action::RealSend);
    assert!(a.prompt.is_none());
    assert!(a.status.as_deref().unwrap().contains("save"));
}

#[test]
fn real_send_asks_for_the_url_then_the_count() {
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::RealSend);
    assert_eq!(a.prompt.as_ref().unwrap().kind, PromptKind::SmtpUrl);
    for c in "ftp://x".chars() {
        dispatch(&mut a, Action::Input(c));
    }
    dispatch(&mut a, Action::Submit);
    assert!(a.prompt.as_ref().unwrap().error.is_some());
    dispatch(&mut a, Action::ClearInput);
    for c in "smtp://127.0.0.1:2525".chars() {
        dispatch(&mut a, Action::Input(c));
    }
    dispatch(&mut a, Action::Submit);
    assert_eq!(
        a.prompt.as_ref().unwrap().kind,
        PromptKind::ConfirmCount(220)
    );
    for c in "219".chars() {
        dispatch(&mut a, Action::Input(c));
    }
    dispatch(&mut a, Action::Submit);
    assert!(a.prompt.as_ref().unwrap().error.is_some());
    assert!(a.effects.is_empty());
    dispatch(&mut a, Action::ClearInput);
    for c in "220".chars() {
        dispatch(&mut a, Action::Input(c));
    }
    dispatch(&mut a, Action::Submit);
    assert!(a.prompt.is_none());
    assert!(matches!(&a.effects[..], [Effect::Send { url }] if url == "smtp://127.0.0.1:2525"));
    assert!(a.is_sending());
    dispatch(&mut a, Action::Stop);
    assert!(a.sending.as_ref().unwrap().stop.load(Ordering::SeqCst));
    dispatch(&mut a, Action::SendDone(Err("refused".into())));
    assert!(!a.is_sending());
}

#[test]
fn save_asks_to_write_the_segment_and_saved_clears_dirty() {
    let mut a = app("winter-sale");
    type_segment(&mut a, "country == \"DE\"");
    dispatch(&mut a, Action::Cancel);
    dispatch(&mut a, Action::Save);
    assert!(matches!(
        &a.effects[..],
        [Effect::Save { segment: Some(s), .. }] if s == "country == \"DE\""
    ));
    dispatch(
        &mut a,
        Action::Saved {
            segment: true,
            result: Ok("saved".into()),
        },
    );
    assert!(!a.dirty);
}

#[test]
fn acknowledge_asks_for_a_reason_then_saves_and_recounts() {
    let mut a = app("birthday-treat");
    let i = a
        .loaded
        .as_ref()
        .unwrap()
        .report
        .findings
        .iter()
        .position(|f| f.level == Level::Caution)
        .unwrap();
    a.finding_index = i;
    dispatch(&mut a, Action::Acknowledge);
    assert_eq!(a.prompt.as_ref().unwrap().kind, PromptKind::AckReason(i));
    dispatch(&mut a, Action::Submit);
    assert!(
        a.prompt.as_ref().unwrap().error.is_some(),
        "a reason is required"
    );
    for c in "DPO ticket PRIV-112".chars() {
        dispatch(&mut a, Action::Input(c));
    }
    dispatch(&mut a, Action::Submit);
    assert!(matches!(
        &a.effects[..],
        [Effect::Acknowledge { ack, .. }, Effect::Recount { .. }] if ack.reason == "DPO ticket PRIV-112"
    ));
    a.effects.retain(|e| matches!(e, Effect::Recount { .. }));
    settle(&mut a);
    let f = &a.loaded.as_ref().unwrap().report.findings[i];
    assert!(f.acknowledged);
}

#[test]
fn a_block_cannot_be_acknowledged() {
    let mut a = app("wellness-check");
    a.finding_index = 0;
    dispatch(&mut a, Action::Acknowledge);
    assert!(a.prompt.is_none());
}

#[test]
fn editor_and_reload_ask_for_their_effects() {
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::Editor);
    assert!(matches!(&a.effects[..], [Effect::Editor(p)] if p == &campaign("winter-sale")));
    a.effects.clear();
    dispatch(&mut a, Action::Reload);
    assert!(a.loading);
    assert!(matches!(&a.effects[..], [Effect::Load(_)]));
    settle(&mut a);
    dispatch(&mut a, Action::Resize);
    assert_eq!(recipients(&a), 220);
}

// ---------------------------------------------------------------------------------------
// The key table
// ---------------------------------------------------------------------------------------

#[test]
fn every_binding_is_unique_in_its_scope() {
    for (i, a) in KEYS.iter().enumerate() {
        for b in &KEYS[i + 1..] {
            assert!(
                !(a.scope == b.scope && a.code == b.code && a.ctrl == b.ctrl),
                "{:?} {:?} bound twice",
                a.scope,
                a.code
            );
        }
    }
}

#[test]
fn letters_type_while_editing_and_act_otherwise() {
    let mut a = app("winter-sale");
    assert!(matches!(
        action_for_key(&a, key(KeyCode::Char('q'))),
        Some(Action::Back)
    ));
    dispatch(&mut a, Action::StartEdit);
    assert!(matches!(
        action_for_key(&a, key(KeyCode::Char('q'))),
        Some(Action::Input('q'))
    ));
    assert!(matches!(
        action_for_key(&a, key(KeyCode::Esc)),
        Some(Action::Cancel)
    ));
    assert!(matches!(
        action_for_key(&a, key(KeyCode::Tab)),
        Some(Action::NextTab)
    ));
    assert!(matches!(
        action_for_key(&a, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Action::Quit)
    ));
    a.help = true;
    assert!(matches!(
        action_for_key(&a, key(KeyCode::Char('x'))),
        Some(Action::ToggleHelp)
    ));
}

#[test]
fn tab_keys_apply_only_on_their_tab() {
    let mut a = app("winter-sale");
    assert!(action_for_key(&a, key(KeyCode::Char('d'))).is_none());
    go(&mut a, Tab::Send);
    assert!(matches!(
        action_for_key(&a, key(KeyCode::Char('d'))),
        Some(Action::DryRun)
    ));
    go(&mut a, Tab::Preview);
    assert!(matches!(
        action_for_key(&a, key(KeyCode::Char('l'))),
        Some(Action::Right)
    ));
}

// ---------------------------------------------------------------------------------------
// Pure helpers and saving
// ---------------------------------------------------------------------------------------

#[test]
fn masking_keeps_one_letter_and_the_domain() {
    assert_eq!(mask("ngozi.okafor@example.com"), "n****@example.com");
    assert_eq!(mask(" not-an-address "), "n****");
    assert_eq!(mask(""), "****");
}

#[test]
fn the_funnel_narrows_to_the_recipients() {
    let a = app("winter-sale");
    let c = &a.loaded.as_ref().unwrap().report.audience;
    let f = funnel(c);
    let counts: Vec<usize> = f.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, [500, 494, 349, 337, 337, 221, 122, 98]);
}

fn copy_tree() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.path().join("sample-data/campaigns")).unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    for f in ["customers.csv", "customers.schema.toml"] {
        std::fs::copy(
            root.join("sample-data").join(f),
            dir.path().join("sample-data").join(f),
        )
        .unwrap();
    }
    for e in std::fs::read_dir(root.join("templates")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join("templates").join(e.file_name())).unwrap();
        }
    }
    for n in ["winter-sale", "birthday-treat"] {
        std::fs::copy(root.join(campaign(n)), dir.path().join(campaign(n))).unwrap();
    }
    (dir, PathBuf::new())
}

#[test]
fn saving_the_segment_keeps_comments_and_layout() {
    let (dir, _) = copy_tree();
    let path = dir.path().join(campaign("winter-sale"));
    let before = std::fs::read_to_string(&path).unwrap();
    work::save_segment(
        &path,
        Some("country == \"GB\" and loyalty_tier == \"gold\""),
    )
    .unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].1.starts_with("segment = "), "{changed:?}");
    assert_eq!(before.lines().count(), after.lines().count());
    let c = tact::campaign::Campaign::load(&path).unwrap();
    assert_eq!(
        c.segment.as_deref(),
        Some("country == \"GB\" and loyalty_tier == \"gold\"")
    );
    work::save_segment(&path, None).unwrap();
    assert_eq!(tact::campaign::Campaign::load(&path).unwrap().segment, None);
}

#[test]
fn saving_an_acknowledgement_makes_the_caution_acknowledged() {
    let (dir, _) = copy_tree();
    let path = dir.path().join(campaign("birthday-treat"));
    let ack = tact::campaign::Acknowledgement {
        rule: "quasi-identifier-combination".into(),
        fields: vec!["birth_date".into(), "postcode".into()],
        reason: "DPO ticket PRIV-112".into(),
    };
    work::save_acknowledgement(&path, &ack).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("# "), "comments survive");
    let c = tact::campaign::Campaign::load(&path).unwrap();
    assert_eq!(c.policy.acknowledge, vec![ack]);
    let (l, _) = work::load(&path, &ctx()).unwrap();
    let f = l
        .report
        .findings
        .iter()
        .find(|f| f.rule == "quasi-identifier-combination")
        .unwrap();
    assert!(f.acknowledged);
}

// ---------------------------------------------------------------------------------------
// The loop itself, on a TestBackend with scripted keys
// ---------------------------------------------------------------------------------------

#[test]
fn the_loop_runs_effects_on_threads_and_quits() {
    let mut a = App::opening(campaign("winter-sale"), ctx());
    a.colour = false;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let started = Instant::now();
    let mut script = vec![Event::Key(key(KeyCode::Char('q')))];
    let exit = super::run_loop(&mut terminal, &mut a, &tx, &rx, |app, _| {
        std::thread::sleep(Duration::from_millis(5));
        // Wait for the load (on its thread) before pressing q.
        if app.loaded.is_some() && !script.is_empty() {
            return Ok(Some(script.remove(0)));
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never loaded");
        Ok(None)
    });
    assert_eq!(exit.unwrap(), Exit::Quit);
    assert_eq!(recipients(&a), 220);
}

// ---------------------------------------------------------------------------------------
// Snapshots of every screen
// ---------------------------------------------------------------------------------------

fn snap_all(name: &str, a: &App) {
    for (w, h) in [(120, 40), (80, 24)] {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(a, w, h));
    }
}

#[test]
fn snapshots_of_every_tab() {
    let mut a = app("winter-sale");
    for tab in Tab::ALL {
        go(&mut a, tab);
        a.editing = false;
        snap_all(&format!("winter_sale_{}", tab.title().to_lowercase()), &a);
    }
}

#[test]
fn snapshots_of_overlays_and_states() {
    let mut a = app("winter-sale");
    a.help = true;
    snap_all("help_overview", &a);
    a.help = false;

    type_segment(&mut a, "country == \"GB\" and (");
    snap_all("segment_error", &a);
    type_segment(&mut a, "country == \"GB\" and loyalty_tier == \"gold\"");
    a.editing = false;
    snap_all("segment_gold", &a);

    let mut a = app("winter-sale");
    go(&mut a, Tab::Send);
    a.dry_run = Some(Ok(DryRunSummary {
        built: 220,
        personalised: 122,
        generic: 98,
        failed: 0,
        seconds: 0.0,
    }));
    snap_all("send_after_dry_run", &a);
    dispatch(&mut a, Action::RealSend);
    snap_all("send_smtp_prompt", &a);

    let b = app("birthday-treat");
    let mut b = b;
    go(&mut b, Tab::Check);
    snap_all("birthday_treat_check", &b);

    let mut p = App::picking(
        vec![campaign("birthday-treat"), campaign("winter-sale")],
        ctx(),
    );
    p.colour = false;
    snap_all("picker", &p);
}
