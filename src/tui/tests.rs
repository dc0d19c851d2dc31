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
use tact::send::test_send::Who;
use tact::state::Keys;

use super::app::{
    Action, App, Ctx, DryRunSummary, Effect, Found, PromptKind, Tab, TextInput, find, update,
};
use super::keys::{KEYS, action_for_event, action_for_key};
use super::view::{CLASSES, class_style, error_column, funnel};
use super::{Exit, dispatch, work};

pub(super) fn now() -> chrono::DateTime<chrono::Utc> {
    tact::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
}

pub(super) fn ctx() -> Ctx {
    Ctx {
        keys: Keys::from_master(&[7; 32]),
        state_dir: None,
        store: None,
        now: now(),
    }
}

pub(super) fn campaign(name: &str) -> PathBuf {
    PathBuf::from(format!("sample-data/campaigns/{name}.toml"))
}

/// Runs the effects the way the loop would, but on this thread, until none are left.
/// Returns the effects it does not run (saves, sends, the editor), in order.
pub(super) fn settle(app: &mut App) -> Vec<Effect> {
    let mut skipped = Vec::new();
    while !app.effects.is_empty() {
        for e in std::mem::take(&mut app.effects) {
            let answer = match e {
                Effect::Load(path) => Action::Loaded(Box::new(work::open(&path, &app.ctx))),
                Effect::Recount {
                    generation,
                    base,
                    rows,
                    campaign,
                } => Action::Recounted {
                    generation,
                    result: Box::new(work::recount_on(
                        &base, &rows, *campaign, &app.ctx, &app.facts,
                    )),
                },
                Effect::Check {
                    generation,
                    prepared,
                    plan,
                } => {
                    let c = work::check(&prepared, *plan, &app.ctx.keys, now(), &|| false);
                    Action::Checked {
                        generation,
                        result: Box::new(c.unwrap()),
                    }
                }
                Effect::FromCsv {
                    name,
                    audience,
                    dir,
                } => Action::FromCsvDone(Box::new(tact::onboard::create(&name, &audience, &dir))),
                Effect::DryRun => {
                    let l = app.loaded.as_ref().unwrap();
                    let mut s = work::dry_run(&l.prepared, &app.ctx.keys, &l.recipients(), now());
                    s.seconds = 0.0;
                    Action::DryRunDone(Ok(s))
                }
                e => {
                    skipped.push(e);
                    continue;
                }
            };
            dispatch(app, answer);
        }
    }
    skipped
}

pub(super) fn app(name: &str) -> App {
    let mut app = App::opening(campaign(name), ctx());
    app.colour = false;
    app.smtp_url = None;
    settle(&mut app);
    assert!(app.load_error.is_none(), "{:?}", app.load_error);
    app
}

pub(super) fn go(app: &mut App, tab: Tab) {
    while app.tab != tab {
        dispatch(app, Action::NextTab);
    }
}

pub(super) fn type_segment(app: &mut App, text: &str) {
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

pub(super) fn screen(app: &App, w: u16, h: u16) -> String {
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
    assert!(!a.dirty());
}

#[test]
fn a_load_error_is_shown_not_fatal() {
    let mut a = App::opening(campaign("no-such"), ctx());
    settle(&mut a);
    assert!(a.loaded.is_none());
    assert!(
        a.load_error
            .as_ref()
            .unwrap()
            .message
            .contains("no-such.toml")
    );
    assert!(screen(&a, 80, 24).contains("cannot open this campaign"));
}

#[test]
fn tabs_cycle_both_ways_and_the_segment_tab_waits_for_slash() {
    let mut a = app("winter-sale");
    assert_eq!(a.tab, Tab::Overview);
    update(&mut a, Action::PrevTab);
    assert_eq!(a.tab, Tab::Send);
    update(&mut a, Action::NextTab);
    assert_eq!(a.tab, Tab::Overview);
    update(&mut a, Action::NextTab);
    update(&mut a, Action::NextTab);
    assert_eq!(a.tab, Tab::Segment);
    assert!(
        !a.editing,
        "arriving on Segment is not typing: keys stay commands"
    );
    update(&mut a, Action::StartEdit);
    assert!(a.editing);
    update(&mut a, Action::NextTab);
    assert_eq!(a.tab, Tab::Template);
    assert!(!a.editing);
    update(&mut a, Action::NextTab);
    assert_eq!(a.tab, Tab::Check);
}

#[test]
fn back_closes_help_then_prompt_then_typing_then_quits() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Segment);
    dispatch(&mut a, Action::StartEdit);
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
    assert!(a.dirty());
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
    a.prompt.as_mut().unwrap().input = TextInput::new("220");
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
        masked.contains("line       3  not_in_segment              s***@e***.com"),
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
    for _ in 0..4 {
        update(&mut a, Action::Down);
    }
    // The campaigns, then "+ new campaign" and "+ new from a CSV…"; it clamps there.
    assert_eq!(a.picker_index, 3);
    update(&mut a, Action::Up);
    update(&mut a, Action::Up);
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
    // Only a blank added: recounted, but nothing differs from the file.
    assert!(!a.dirty() && a.recount_due.is_some());
    dispatch(&mut a, Action::Tick(Instant::now()));
    assert!(a.effects.is_empty(), "recounted before the debounce");
    dispatch(
        &mut a,
        Action::Tick(Instant::now() + super::app::DEBOUNCE * 2),
    );
    assert!(matches!(
        &a.effects[..],
        [Effect::Recount { generation, campaign, .. }]
            if *generation == a.generation && campaign.segment.as_deref() == Some("country == \"GB\"")
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
    // Just past the end of the trimmed `country ==`: an error column is never beyond it.
    assert_eq!(error_column(&e), Some(11), "{e}");
    assert_eq!(recipients(&a), 220);
    let s = screen(&a, 80, 24);
    assert!(s.contains("^"), "{s}");
    // An unknown column is an error too, never a crash.
    type_segment(&mut a, "countryy == \"GB\"");
    assert!(a.segment_error.as_deref().unwrap().contains("did you mean"));
}

/// The live editor recounts through the same parser as `check`: a segment built to
/// overflow the stack is an error with its column, the counts stay, nothing crashes.
#[test]
fn a_hostile_segment_in_the_editor_is_an_error_not_a_crash() {
    let mut a = app("winter-sale");
    let deep = format!(
        "{}country == \"GB\"{}",
        "(".repeat(2_000),
        ")".repeat(2_000)
    );
    type_segment(&mut a, &deep);
    let e = a
        .segment_error
        .clone()
        .expect("no error for 2,000 parentheses");
    assert!(e.contains("nested"), "{e}");
    assert_eq!(error_column(&e), Some(33), "{e}");
    assert!(e.len() < 300, "the error repeats the segment: {e}");
    assert_eq!(recipients(&a), 220);
    type_segment(&mut a, &format!("{}vip", "not ".repeat(1_000)));
    assert!(a.segment_error.as_deref().unwrap().contains("nested"));
    type_segment(&mut a, "not (country == \"GB\")");
    assert!(a.segment_error.is_none(), "{:?}", a.segment_error);
}

/// Runs only the load's first step: the counts, without the full check.
fn counted(name: &str) -> App {
    let mut a = App::opening(campaign(name), ctx());
    a.colour = false;
    let Some(Effect::Load(path)) = a.effects.pop() else {
        panic!("no load asked for")
    };
    let loaded = Box::new(work::open(&path, &a.ctx));
    dispatch(&mut a, Action::Loaded(loaded));
    a
}

/// The check the app asked for, run here.
fn run_check(a: &mut App) -> Action {
    let i = a
        .effects
        .iter()
        .position(|e| matches!(e, Effect::Check { .. }))
        .expect("a check asked for");
    let Effect::Check {
        generation,
        prepared,
        plan,
    } = a.effects.remove(i)
    else {
        unreachable!()
    };
    let c = work::check(&prepared, *plan, &a.ctx.keys, now(), &|| false).unwrap();
    Action::Checked {
        generation,
        result: Box::new(c),
    }
}

#[test]
fn counts_show_first_and_the_verdict_after_the_check() {
    let mut a = counted("winter-sale");
    let l = a.loaded.as_ref().unwrap();
    assert!(!l.checked() && a.checking());
    // The plan's counts: one recipient's render fails, which only the check finds.
    assert_eq!(recipients(&a), 221);
    assert!(
        !l.report.sendable(),
        "never sendable on the preliminary report"
    );
    let s = screen(&a, 120, 40);
    assert!(s.contains("Verdict     checking…"), "{s}");
    assert!(s.contains("before rendering: checking…"), "{s}");
    // The findings that need no rendering are there already.
    assert!(s.contains("NOTICE  dkim-by-relay"), "{s}");
    // Sending, testing and acknowledging wait for the verdict; a dry run is queued.
    dispatch(&mut a, Action::RealSend);
    assert!(a.prompt.is_none());
    assert!(a.status.as_deref().unwrap().contains("still checking"));
    dispatch(&mut a, Action::TestSend);
    assert!(a.prompt.is_none());
    dispatch(&mut a, Action::Acknowledge);
    assert!(a.prompt.is_none());
    dispatch(&mut a, Action::DryRun);
    assert!(a.dry_running && a.dry_run_pending);
    assert!(!a.effects.iter().any(|e| matches!(e, Effect::DryRun)));
    let checked = run_check(&mut a);
    dispatch(&mut a, checked);
    assert!(a.loaded.as_ref().unwrap().checked() && !a.checking());
    assert_eq!(recipients(&a), 220);
    assert!(
        matches!(&a.effects[..], [Effect::DryRun]),
        "the queued dry run starts"
    );
    go(&mut a, Tab::Overview);
    let s = screen(&a, 120, 40);
    assert!(
        s.contains("Verdict     NOTICE") && !s.contains("checking"),
        "{s}"
    );
}

#[test]
fn a_segment_edit_makes_the_running_check_moot() {
    let mut a = counted("winter-sale");
    let old = run_check(&mut a);
    let latest = std::sync::Arc::clone(&a.latest);
    let before = latest.load(Ordering::SeqCst);
    type_segment(&mut a, "country == \"GB\" and loyalty_tier == \"gold\"");
    assert!(
        latest.load(Ordering::SeqCst) > before,
        "workers see the new generation"
    );
    assert_eq!(recipients(&a), 29);
    // The old check's answer arrives late: ignored.
    dispatch(&mut a, old);
    assert_eq!(recipients(&a), 29);
    assert!(a.loaded.as_ref().unwrap().checked());
    // A broken segment stops the check of the plan on screen, so it is asked again.
    let mut a = counted("winter-sale");
    a.effects.clear();
    dispatch(&mut a, Action::StartEdit);
    dispatch(&mut a, Action::Input('('));
    dispatch(
        &mut a,
        Action::Tick(Instant::now() + Duration::from_secs(1)),
    );
    let Some(Effect::Recount {
        generation,
        base,
        rows,
        campaign,
    }) = a.effects.pop()
    else {
        panic!("no recount")
    };
    let result = Box::new(work::recount_on(&base, &rows, *campaign, &a.ctx, &a.facts));
    assert!(result.is_err());
    dispatch(&mut a, Action::Recounted { generation, result });
    assert!(a.segment_error.is_some());
    let checked = run_check(&mut a);
    dispatch(&mut a, checked);
    assert!(a.loaded.as_ref().unwrap().checked());
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
    type_segment(&mut a, "country == \"GB\" or country == \"IE\"");
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
    assert!(
        matches!(&a.effects[..], [Effect::Send { url }] if url.as_deref() == Some("smtp://127.0.0.1:2525"))
    );
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
    assert!(!a.dirty());
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
    // A word or two is not a reason: under 20 characters is refused.
    for c in "DPO ticket PRIV-112".chars() {
        dispatch(&mut a, Action::Input(c));
    }
    dispatch(&mut a, Action::Submit);
    let e = a.prompt.as_ref().unwrap().error.clone().unwrap();
    assert!(e.contains("at least 20 characters"), "{e}");
    assert!(a.effects.is_empty());
    for c in ": store finder".chars() {
        dispatch(&mut a, Action::Input(c));
    }
    dispatch(&mut a, Action::Submit);
    assert!(matches!(
        &a.effects[..],
        [Effect::Acknowledge { ack, .. }, Effect::Recount { .. }] if ack.reason == "DPO ticket PRIV-112: store finder"
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
    assert!(
        matches!(&a.effects[..], [Effect::Editor { path: p, .. }] if p == &campaign("winter-sale"))
    );
    a.effects.clear();
    dispatch(&mut a, Action::Reload);
    assert!(a.loading);
    assert!(matches!(&a.effects[..], [Effect::Load(_)]));
    settle(&mut a);
    dispatch(&mut a, Action::Resize);
    assert_eq!(recipients(&a), 220);
}

pub(super) fn typed(app: &mut App, text: &str) {
    dispatch(app, Action::ClearInput);
    for c in text.chars() {
        dispatch(app, Action::Input(c));
    }
}

#[test]
fn the_template_tab_lists_the_sources_and_what_they_pull_in() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Template);
    let l = a.loaded.as_ref().unwrap();
    let labels: Vec<&str> = l.sources.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "subject and preheader",
            "winter-sale.txt.tera",
            "winter-sale.html.tera",
            "base.txt.tera",
            "base.html.tera",
            "macros.html.tera",
        ]
    );
    assert_eq!(l.sources[1].uses, ["extends base.txt.tera"]);
    assert_eq!(
        l.sources[2].uses,
        ["extends base.html.tera", "imports macros.html.tera"]
    );
    assert!(l.sources[0].text.contains("{{ first_name }}"));
    let s = screen(&a, 120, 40);
    assert!(
        s.contains("customer fields here: first_name (declared)"),
        "{s}"
    );
    // ←/→ change file (and wrap), ↑/↓ scroll and stop at the end.
    update(&mut a, Action::Right);
    assert_eq!(a.template_index, 1);
    let s = screen(&a, 120, 40);
    assert!(s.contains("file 2 of 6: winter-sale.txt.tera"), "{s}");
    assert!(s.contains("e edits templates/winter-sale.txt.tera"), "{s}");
    assert!(
        s.contains("first_name (declared), favourite_category (declared), loyalty_tier (declared)"),
        "{s}"
    );
    update(&mut a, Action::Down);
    assert_eq!(a.template_scroll, 1);
    for _ in 0..100 {
        update(&mut a, Action::PageDown);
    }
    let lines = a.loaded.as_ref().unwrap().sources[1].text.lines().count();
    assert_eq!(a.template_scroll as usize, lines);
    update(&mut a, Action::Left);
    update(&mut a, Action::Left);
    assert_eq!((a.template_index, a.template_scroll), (5, 0));
}

#[test]
fn e_on_the_template_tab_edits_the_file_shown_then_reloads_in_place() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Template);
    dispatch(&mut a, Action::Editor);
    assert!(
        matches!(&a.effects[..], [Effect::Editor { path: p, .. }] if p == &campaign("winter-sale"))
    );
    a.effects.clear();
    dispatch(&mut a, Action::Right);
    dispatch(&mut a, Action::Editor);
    let want = a.loaded.as_ref().unwrap().sources[1].path.clone();
    assert!(want.ends_with("templates/winter-sale.txt.tera"), "{want:?}");
    assert!(matches!(&a.effects[..], [Effect::Editor { path: p, .. }] if p == &want));
    a.effects.clear();
    // Back from the editor: reloaded, still on this screen, an unsaved segment kept.
    type_segment(&mut a, "country == \"DE\"");
    dispatch(&mut a, Action::Cancel);
    go(&mut a, Tab::Template);
    let de = recipients(&a);
    dispatch(&mut a, Action::Reload);
    assert_eq!(a.tab, Tab::Template);
    dispatch(
        &mut a,
        Action::Tick(Instant::now() + Duration::from_secs(1)),
    );
    settle(&mut a);
    dispatch(
        &mut a,
        Action::Tick(Instant::now() + Duration::from_secs(1)),
    );
    settle(&mut a);
    assert_eq!(a.segment.text, "country == \"DE\"");
    assert!(a.dirty());
    assert_eq!(recipients(&a), de);
}

#[test]
fn field_classes_are_told_apart_with_and_without_colour() {
    use ratatui::style::{Color, Modifier};
    for colour in [true, false] {
        let styles: Vec<_> = CLASSES.iter().map(|c| class_style(colour, *c)).collect();
        for (i, a) in styles.iter().enumerate() {
            for b in &styles[i + 1..] {
                assert_ne!(a, b, "colour={colour}");
            }
            if !colour {
                assert_eq!(a.fg, None, "NO_COLOR: no colour at all");
                assert_ne!(a.add_modifier, Modifier::empty());
            }
        }
    }
    // On screen: the field in the subject carries its class's style, the rest does not.
    let mut a = app("winter-sale");
    go(&mut a, Tab::Template);
    for colour in [true, false] {
        a.colour = colour;
        let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
        t.draw(|f| f.render_widget(&a, f.area())).unwrap();
        let buf = t.backend().buffer();
        let (x, y) = (0..40)
            .flat_map(|y| (0..110).map(move |x| (x, y)))
            .find(|&(x, y)| {
                (0..10)
                    .map(|k| buf[(x + k, y)].symbol())
                    .collect::<String>()
                    == "first_name"
                    && buf[(x - 3, y)].symbol() == "{"
            })
            .unwrap();
        let want = class_style(colour, tact::schema::FieldClass::Declared);
        assert_eq!(buf[(x, y)].modifier, want.add_modifier, "colour={colour}");
        assert_eq!(
            buf[(x, y)].fg,
            want.fg.unwrap_or(Color::Reset),
            "colour={colour}"
        );
        assert_eq!(buf[(x - 3, y)].modifier, Modifier::empty());
    }
}

#[test]
fn a_test_send_asks_for_addresses_and_a_typed_yes_for_any_other() {
    let mut a = app("winter-sale");
    a.test_to = "me@shop.example".into();
    dispatch(&mut a, Action::TestSend);
    assert_eq!(a.tab, Tab::Send);
    let p = a.prompt.as_ref().unwrap();
    assert_eq!(p.kind, PromptKind::TestTo);
    assert_eq!(
        p.input.text, "me@shop.example",
        "prefilled from TACT_TEST_TO"
    );
    typed(&mut a, "me@shop.example, not an address");
    dispatch(&mut a, Action::Submit);
    assert!(a.prompt.as_ref().unwrap().error.is_some());
    // An address that is not configured needs a typed yes.
    typed(&mut a, "me@shop.example, boss@shop.example");
    dispatch(&mut a, Action::Submit);
    assert_eq!(
        a.prompt.as_ref().unwrap().kind,
        PromptKind::ConfirmOtherTestAddress
    );
    typed(&mut a, "y");
    dispatch(&mut a, Action::Submit);
    assert!(
        a.prompt.as_ref().unwrap().error.is_some(),
        "only `yes` confirms"
    );
    assert!(a.effects.is_empty());
    typed(&mut a, "yes");
    dispatch(&mut a, Action::Submit);
    assert_eq!(a.prompt.as_ref().unwrap().kind, PromptKind::SmtpUrl);
    typed(&mut a, "smtp://127.0.0.1:2525");
    dispatch(&mut a, Action::Submit);
    assert!(a.prompt.is_none());
    assert!(a.testing);
    assert!(matches!(
        &a.effects[..],
        [Effect::TestSend { url, order }] if url == "smtp://127.0.0.1:2525"
            && order.to == ["me@shop.example".to_string(), "boss@shop.example".to_string()]
            && order.allow_other
            && order.who == Who::Sample
    ));
    assert!(a.sending.is_none(), "a test is not a send");
    dispatch(&mut a, Action::TestSent(Ok("test: sent".into())));
    assert!(!a.testing);
    assert!(screen(&a, 120, 40).contains("test: sent"));
    // The URL is remembered, and a configured address needs no confirmation.
    a.effects.clear();
    dispatch(&mut a, Action::TestSend);
    dispatch(&mut a, Action::Submit);
    assert!(matches!(
        &a.effects[..],
        [Effect::TestSend { order, .. }] if !order.allow_other && order.to == ["me@shop.example".to_string()]
    ));
    // Esc on the confirmation sends nothing.
    a.effects.clear();
    a.testing = false;
    dispatch(&mut a, Action::TestSend);
    typed(&mut a, "boss@shop.example");
    dispatch(&mut a, Action::Submit);
    dispatch(&mut a, Action::Cancel);
    assert!(a.prompt.is_none() && a.pending_test.is_none() && a.effects.is_empty());
}

#[test]
fn no_test_send_for_a_campaign_that_cannot_be_sent() {
    let mut a = app("birthday-treat");
    dispatch(&mut a, Action::TestSend);
    assert!(a.prompt.is_none());
    assert!(a.status.as_deref().unwrap().contains("verdict is caution"));
}

/// A minimal SMTP server on loopback that accepts every message and hands back the DATA.
fn smtp_sink() -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream);
        let mut messages = Vec::new();
        out.write_all(b"220 sink ESMTP\r\n").unwrap();
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap() > 0 {
            let cmd = line.trim_end().to_ascii_uppercase();
            let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                b"250-sink\r\n250 8BITMIME\r\n"
            } else if cmd == "DATA" {
                out.write_all(b"354 go on\r\n").unwrap();
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    lines.read_line(&mut l).unwrap();
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(&l);
                }
                messages.push(data);
                b"250 queued\r\n"
            } else if cmd == "QUIT" {
                out.write_all(b"221 bye\r\n").unwrap();
                break;
            } else {
                b"250 ok\r\n"
            };
            out.write_all(reply).unwrap();
            line.clear();
        }
        messages
    });
    (url, handle)
}

/// The effect a test prompt ends in, run as the loop runs it.
fn run_test_effect(a: &App, url: &str) -> Result<String, String> {
    let [Effect::TestSend { order, .. }] = &a.effects[..] else {
        panic!("no test effect: {:?}", a.effects)
    };
    let l = a.loaded.as_ref().unwrap();
    work::send_test(&l.prepared, &l.plan, &a.ctx, url, order.clone())
}

#[test]
fn t_sends_the_sample_person_with_an_inert_token_never_a_customer() {
    let mut a = app("winter-sale");
    let (url, sink) = smtp_sink();
    a.smtp_url = Some(url.clone());
    a.test_to = "me@shop.example".into();
    go(&mut a, Tab::Send);
    let key = action_for_key(&a, KeyEvent::from(KeyCode::Char('t'))).unwrap();
    dispatch(&mut a, key);
    dispatch(&mut a, Action::Submit);
    let said = run_test_effect(&a, &url).unwrap();
    assert!(said.contains("2 message(s)"), "{said}");
    assert!(said.contains("sent, sent"), "{said}");
    assert!(said.contains("sample person"), "{said}");
    assert!(said.contains("not recorded in the ledger"), "{said}");
    let got = sink.join().unwrap();
    assert_eq!(got.len(), 2);
    let subjects: Vec<&str> = got
        .iter()
        .map(|m| m.lines().find(|l| l.starts_with("Subject: ")).unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            "Subject: [TEST] Alex, our winter picks are in",
            "Subject: [TEST] our winter picks are in"
        ]
    );
    assert!(got.iter().all(|m| m.contains("To: me@shop.example")));
    // No recipient's first name, last name or address reached the test.
    let l = a.loaded.as_ref().unwrap();
    let audience = &l.prepared.audience;
    for (row, _) in l.plan.recipients() {
        let email = audience.email(row);
        for m in &got {
            assert!(
                !m.contains(email),
                "line {}: address in a test",
                audience.line(row)
            );
        }
    }
    for m in &got {
        for name in ["Ngozi", "Okafor", "Søren"] {
            assert!(!m.contains(name), "a customer's name in a test:\n{m}");
        }
        let token = m
            .lines()
            .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
            .and_then(|u| u.split_once("t="))
            .map(|(_, t)| t.trim_end_matches('>'))
            .unwrap();
        assert_eq!(
            a.ctx.keys.token_key().open_any(token),
            Some(tact::state::Opened::Test {
                campaign: "winter-sale".into()
            }),
            "the test's token must be the inert one"
        );
    }
}

#[test]
fn shift_t_on_preview_tests_the_recipient_shown_only_after_a_typed_yes() {
    let mut a = app("winter-sale");
    a.test_to = "me@shop.example".into();
    go(&mut a, Tab::Preview);
    dispatch(&mut a, Action::Right);
    let shown = a
        .loaded
        .as_ref()
        .unwrap()
        .plan
        .recipients()
        .nth(1)
        .unwrap()
        .0;
    let key = action_for_key(&a, KeyEvent::from(KeyCode::Char('T'))).unwrap();
    dispatch(&mut a, key);
    assert_eq!(
        a.prompt.as_ref().unwrap().kind,
        PromptKind::ConfirmTestAs(shown)
    );
    typed(&mut a, "ok");
    dispatch(&mut a, Action::Submit);
    assert!(
        a.prompt.as_ref().unwrap().error.is_some(),
        "only `yes` confirms"
    );
    typed(&mut a, "yes");
    dispatch(&mut a, Action::Submit);
    assert_eq!(a.prompt.as_ref().unwrap().kind, PromptKind::TestTo);
    assert!(screen(&a, 120, 40).contains("audit log"));
    dispatch(&mut a, Action::Submit);
    typed(&mut a, "smtp://127.0.0.1:9");
    dispatch(&mut a, Action::Submit);
    assert!(matches!(
        &a.effects[..],
        [Effect::TestSend { order, .. }] if order.who == Who::Row(shown)
    ));
    // A pick is audited: without a state directory there is nowhere to, so no test.
    let err = run_test_effect(&a, "smtp://127.0.0.1:9").unwrap_err();
    assert!(err.contains("audit log"), "{err}");
}

#[test]
fn find_jumps_to_a_recipient_or_says_why_not_without_the_address() {
    let mut a = app("winter-sale");
    let l = a.loaded.as_ref().unwrap();
    let third = l.plan.recipients().nth(2).unwrap().0;
    let addr = l.prepared.audience.email(third).to_uppercase();
    assert_eq!(
        find(l, &format!("  {addr} "), None),
        Found::Recipient {
            index: 2,
            nth: 1,
            matches: 1
        }
    );
    assert_eq!(find(l, "nobody@nowhere.example", None), Found::Nowhere);
    // The first excluded row whose address no recipient's address or name contains (a
    // duplicate row shares its address with a recipient, who is found instead).
    let excluded = l
        .excluded
        .iter()
        .find(|r| {
            l.excluded_email(r)
                .is_some_and(|e| matches!(find(l, e, None), Found::Excluded { .. }))
        })
        .unwrap()
        .clone();
    let excluded_addr = l.excluded_email(&excluded).unwrap().to_string();
    // Part of an address or a name finds recipients too.
    let first = l.plan.recipients().next().unwrap().0;
    let name_part = &l
        .prepared
        .audience
        .column("first_name")
        .unwrap()
        .data
        .get(first)[1..4];
    let domain_part = l.prepared.audience.email(first).split('@').next().unwrap();
    for part in [name_part.to_uppercase(), domain_part[2..].to_string()] {
        match find(l, &part, None) {
            Found::Recipient { matches, .. } => assert!(matches >= 1, "{part}"),
            other => panic!("{part}: {other:?}"),
        }
    }
    dispatch(&mut a, Action::Find);
    assert_eq!(a.tab, Tab::Preview);
    assert_eq!(a.prompt.as_ref().unwrap().kind, PromptKind::Find);
    typed(&mut a, &addr);
    dispatch(&mut a, Action::Submit);
    assert!(a.prompt.is_none());
    assert_eq!(a.preview_index, 2);
    assert_eq!(a.preview.as_ref().unwrap().email, l_email(&a, third));
    dispatch(&mut a, Action::Find);
    typed(&mut a, &excluded_addr);
    dispatch(&mut a, Action::Submit);
    let e = a.prompt.as_ref().unwrap().error.clone().unwrap();
    assert_eq!(
        e,
        format!(
            "no recipient matches; line {} does but gets no message ({})",
            excluded.line, excluded.reason
        )
    );
    assert!(!e.contains(&excluded_addr));
    assert!(a.status.is_none(), "nothing about it in the status line");
    typed(&mut a, "nobody@nowhere.example");
    dispatch(&mut a, Action::Submit);
    assert!(
        a.prompt
            .as_ref()
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("no address or name")
    );
    dispatch(&mut a, Action::Back);
    assert!(a.prompt.is_none());
    assert_eq!(a.preview_index, 2, "a failed search stays put");
}

fn l_email(a: &App, row: usize) -> String {
    a.loaded
        .as_ref()
        .unwrap()
        .prepared
        .audience
        .email(row)
        .to_string()
}

#[test]
fn a_recount_keeps_the_recipient_on_screen_when_they_still_qualify() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Preview);
    for _ in 0..3 {
        dispatch(&mut a, Action::Right);
    }
    let shown = a.preview.as_ref().unwrap().email.clone();
    // Everyone with consent: the same person is still a recipient, at another position.
    type_segment(&mut a, "");
    assert_eq!(a.preview.as_ref().unwrap().email, shown);
    assert_ne!(a.preview_index, 3);
}

#[test]
fn save_pressed_before_the_recount_waits_for_it() {
    // The old race behind the "lost `s`" in tmux: the error of a segment already repaired
    // was still set when `s` arrived, so the save was refused.
    let mut a = app("winter-sale");
    type_segment(&mut a, "country == \"GB\" and (");
    assert!(a.segment_error.is_some());
    for _ in 0..6 {
        dispatch(&mut a, Action::Backspace);
    }
    dispatch(&mut a, Action::Cancel);
    dispatch(&mut a, Action::Save);
    assert_eq!(a.save_pending.as_deref(), Some("country == \"GB\""));
    assert!(matches!(&a.effects[..], [Effect::Recount { .. }]));
    settle(&mut a);
    assert!(
        matches!(
            &a.effects[..],
            [Effect::Save { segment: Some(s), .. }] if s == "country == \"GB\""
        ) || a.effects.is_empty()
    );
    assert!(a.save_pending.is_none());
    assert!(a.segment_error.is_none());
    // settle() skips Save effects; ask again to see it issued at once now.
    dispatch(&mut a, Action::Save);
    assert!(matches!(&a.effects[..], [Effect::Save { .. }]));
    a.effects.clear();
    // A segment that really is broken is not saved, and says so.
    type_segment(&mut a, "country ==");
    dispatch(&mut a, Action::Save);
    assert!(a.status.as_deref().unwrap().contains("has an error"));
    assert!(a.effects.is_empty());
}

#[test]
fn the_mouse_wheel_scrolls_unless_a_prompt_is_open() {
    use ratatui::crossterm::event::{MouseEvent, MouseEventKind};
    let mut a = app("winter-sale");
    let wheel = |kind| {
        Event::Mouse(MouseEvent {
            kind,
            column: 10,
            row: 10,
            modifiers: KeyModifiers::NONE,
        })
    };
    assert!(matches!(
        action_for_event(&a, &wheel(MouseEventKind::ScrollDown)),
        Some(Action::Down)
    ));
    assert!(matches!(
        action_for_event(&a, &wheel(MouseEventKind::ScrollUp)),
        Some(Action::Up)
    ));
    go(&mut a, Tab::Template);
    dispatch(&mut a, Action::Right);
    let down = action_for_event(&a, &wheel(MouseEventKind::ScrollDown)).unwrap();
    dispatch(&mut a, down);
    assert_eq!(a.template_scroll, 1);
    dispatch(&mut a, Action::Find);
    assert!(action_for_event(&a, &wheel(MouseEventKind::ScrollDown)).is_none());
}

#[test]
fn the_loop_handles_every_key_typed_between_frames() {
    let mut a = App::opening(campaign("winter-sale"), ctx());
    a.colour = false;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut script: Vec<Event> = std::iter::repeat_n(KeyCode::Tab, 5)
        .chain([KeyCode::Right, KeyCode::Right, KeyCode::Char('q')])
        .map(|c| Event::Key(key(c)))
        .collect();
    let mut polls_with_keys = 0;
    let started = Instant::now();
    let exit = super::run_loop(&mut terminal, &mut a, &tx, &rx, |app, _| {
        assert!(started.elapsed() < Duration::from_secs(30), "never loaded");
        // The counts come first; wait for the full check too, so no recipient moves.
        if !app.loaded.as_ref().is_some_and(|l| l.checked()) {
            std::thread::sleep(Duration::from_millis(5));
            return Ok(None);
        }
        if script.is_empty() {
            return Ok(None);
        }
        polls_with_keys += 1;
        Ok(Some(script.remove(0)))
    });
    assert_eq!(exit.unwrap(), Exit::Quit);
    assert_eq!(polls_with_keys, 8, "no key dropped");
    assert_eq!(a.tab, Tab::Preview);
    assert_eq!(a.preview_index, 2);
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
        action_for_key(&a, key(KeyCode::Char('h'))),
        Some(Action::ToggleHtml)
    ));
}

// ---------------------------------------------------------------------------------------
// Pure helpers and saving
// ---------------------------------------------------------------------------------------

#[test]
fn the_funnel_narrows_to_the_recipients() {
    let a = app("winter-sale");
    let c = &a.loaded.as_ref().unwrap().report.audience;
    let f = funnel(c);
    let counts: Vec<usize> = f.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        counts,
        [500, 494, 349, 337, 337, 337, 221, 221, 220, 122, 98]
    );
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

/// The Check screen blocks on what `tact send` would refuse about the set-up, as
/// `tact check` does: here a relay user whose password variable is not set.
#[test]
fn the_check_screen_names_what_send_would_refuse_about_its_set_up() {
    let (dir, _) = copy_tree();
    let path = dir.path().join(campaign("winter-sale"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!(
            "{text}\n[[send.relay]]\nname = \"ses\"\nurl = \"smtp://mailer@127.0.0.1:2525\"\npassword_env = \"TACT_TEST_NEVER_SET_PASSWORD\"\n"
        ),
    )
    .unwrap();
    let (l, _) = work::load(&path, &ctx()).unwrap();
    let setup: Vec<_> = l
        .report
        .findings
        .iter()
        .filter(|f| f.rule == "send-setup")
        .collect();
    assert_eq!(setup.len(), 1, "{:?}", l.report.findings);
    assert!(
        setup[0].message.contains("TACT_TEST_NEVER_SET_PASSWORD"),
        "{}",
        setup[0].message
    );
    assert_eq!(l.report.verdict, tact::check::Level::Block);
}

fn new_campaign_picker() -> (tempfile::TempDir, App) {
    let (dir, _) = copy_tree();
    let list = vec![
        dir.path().join(campaign("birthday-treat")),
        dir.path().join(campaign("winter-sale")),
    ];
    let mut a = App::picking(list, ctx());
    a.colour = false;
    (dir, a)
}

fn campaign_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("sample-data/campaigns"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn new_campaign_copies_the_highlighted_one_and_opens_it() {
    let (dir, mut a) = new_campaign_picker();
    // Highlight winter-sale, then go on to "+ new campaign".
    for _ in 0..2 {
        update(&mut a, Action::Down);
    }
    assert_eq!(a.picker_index, 2);
    assert!(screen(&a, 80, 24).contains("+ new campaign"));
    update(&mut a, Action::Select);
    assert!(matches!(
        a.prompt.as_ref().map(|p| p.kind),
        Some(PromptKind::NewCampaign(1))
    ));
    assert!(a.effects.is_empty());
    typed(&mut a, "spring-sale-2");
    dispatch(&mut a, Action::Submit);
    assert!(a.prompt.is_none(), "{:?}", a.prompt);
    let source = std::fs::read_to_string(dir.path().join(campaign("winter-sale"))).unwrap();
    let path = dir.path().join(campaign("spring-sale-2"));
    let made = std::fs::read_to_string(&path).unwrap();
    assert_eq!(source.lines().count(), made.lines().count());
    let changed: Vec<(&str, &str)> = source
        .lines()
        .zip(made.lines())
        .filter(|(x, y)| x != y)
        .collect();
    assert_eq!(
        changed,
        [
            (
                "# winter-sale: the clean example.",
                "# spring-sale-2: the clean example."
            ),
            (
                "# Expected: `tact check sample-data/campaigns/winter-sale.toml` -> verdict ok (perhaps",
                "# Expected: `tact check sample-data/campaigns/spring-sale-2.toml` -> verdict ok (perhaps"
            ),
            ("name = \"winter-sale\"", "name = \"spring-sale-2\""),
            ("template = \"winter-sale\"", "template = \"spring-sale-2\""),
        ]
    );
    // Its own templates: the same text, in files of its own.
    for kind in ["txt", "html"] {
        let t = |n: &str| {
            std::fs::read_to_string(dir.path().join(format!("templates/{n}.{kind}.tera"))).unwrap()
        };
        assert_eq!(t("spring-sale-2"), t("winter-sale"));
    }
    // Opened exactly as if it had been picked.
    assert_eq!(a.path.as_deref(), Some(path.as_path()));
    assert!(!a.in_picker());
    assert!(matches!(&a.effects[..], [Effect::Load(p)] if p == &path));
    settle(&mut a);
    assert!(a.load_error.is_none(), "{:?}", a.load_error);
    let l = a.loaded.as_ref().unwrap();
    assert_eq!(l.prepared.campaign.name, "spring-sale-2");
    assert_eq!(recipients(&a), 220);
    // Editing the copy's template leaves the original alone.
    let copy_txt = l
        .sources
        .iter()
        .find(|s| s.label == "spring-sale-2.txt.tera")
        .unwrap();
    std::fs::write(&copy_txt.path, "changed {{ first_name }}").unwrap();
    let original = App::opening(dir.path().join(campaign("winter-sale")), ctx());
    let mut original = original;
    settle(&mut original);
    let o = original.loaded.as_ref().unwrap();
    let txt = o
        .sources
        .iter()
        .find(|s| s.label == "winter-sale.txt.tera")
        .unwrap();
    assert!(!txt.text.contains("changed"), "{}", txt.text);
    assert_eq!(recipients(&original), 220);
    // Back shows the picker with the new campaign in it, highlighted.
    dispatch(&mut a, Action::Back);
    assert!(a.in_picker());
    let list = a.picker.as_ref().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[a.picker_index], path);
}

#[test]
fn new_campaign_from_the_first_when_none_was_highlighted() {
    let (dir, mut a) = new_campaign_picker();
    update(&mut a, Action::PageDown);
    update(&mut a, Action::Up);
    assert_eq!(a.picker_index, 2);
    update(&mut a, Action::Select);
    typed(&mut a, "b");
    dispatch(&mut a, Action::Submit);
    let made = std::fs::read_to_string(dir.path().join(campaign("b"))).unwrap();
    assert!(made.contains("name = \"b\""), "{made}");
    assert!(made.contains("template = \"b\""), "{made}");
    assert!(dir.path().join("templates/b.txt.tera").is_file());
    // `n` copies the campaign highlighted, whichever it is.
    let (dir, mut a) = new_campaign_picker();
    update(&mut a, Action::Down);
    update(&mut a, Action::Up);
    press(&mut a, &[key(KeyCode::Char('n'))]);
    assert_eq!(
        a.prompt.as_ref().map(|p| p.kind),
        Some(PromptKind::NewCampaign(0))
    );
    typed(&mut a, "c");
    dispatch(&mut a, Action::Submit);
    let made = std::fs::read_to_string(dir.path().join(campaign("c"))).unwrap();
    assert!(made.starts_with("# c: the CAUTION example."), "{made}");
    let birthday =
        std::fs::read_to_string(dir.path().join("templates/birthday-treat.txt.tera")).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("templates/c.txt.tera")).unwrap(),
        birthday
    );
}

#[test]
fn new_campaign_refuses_bad_or_taken_names_and_esc_cancels() {
    let (dir, mut a) = new_campaign_picker();
    std::fs::write(dir.path().join(campaign("taken")), "name = \"taken\"\n").unwrap();
    let before = campaign_files(dir.path());
    update(&mut a, Action::PageDown);
    update(&mut a, Action::Up);
    update(&mut a, Action::Select);
    for (name, says) in [
        ("", "type a name"),
        ("Spring", "`S` is not allowed"),
        ("spring sale", "` ` is not allowed"),
        ("spring_sale", "`_` is not allowed"),
        ("-", "start with a letter"),
        ("2026-sale", "start with a letter"),
        ("sale-", "only joins two words"),
        ("spring--sale", "only joins two words"),
        ("../x", "`.` is not allowed"),
        ("base", "base.txt.tera already exists"),
        ("taken", "taken.toml already exists"),
    ] {
        dispatch(&mut a, Action::ClearInput);
        typed(&mut a, name);
        dispatch(&mut a, Action::Submit);
        let p = a.prompt.as_ref().expect(name);
        let e = p.error.as_deref().unwrap_or_default();
        assert!(e.contains(says), "{name}: {e}");
        assert!(a.in_picker() && a.effects.is_empty());
        assert_eq!(campaign_files(dir.path()), before);
    }
    let refused = screen(&a, 80, 24);
    assert!(refused.contains("already exists"), "{refused}");
    // Esc (the key, while typing) cancels and creates nothing.
    dispatch(&mut a, Action::ClearInput);
    typed(&mut a, "fine-name");
    let esc = action_for_key(&a, key(KeyCode::Esc)).unwrap();
    dispatch(&mut a, esc);
    assert!(a.prompt.is_none() && a.in_picker() && !a.quit);
    assert_eq!(campaign_files(dir.path()), before);
}

#[test]
fn an_empty_picker_has_nothing_to_copy() {
    let mut a = App::picking(Vec::new(), ctx());
    // It starts on "+ new from a CSV…", the one way in without a campaign.
    assert_eq!(a.picker_index, 1);
    update(&mut a, Action::Down);
    assert_eq!(a.picker_index, 1);
    update(&mut a, Action::Up);
    assert_eq!(a.picker_index, 0);
    update(&mut a, Action::Select);
    assert!(a.prompt.is_none() && a.effects.is_empty());
    assert!(
        a.status
            .as_deref()
            .unwrap()
            .contains("no campaign file to copy")
    );
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
        // Wait for the load and its check (each on a thread) before pressing q.
        if app.loaded.as_ref().is_some_and(|l| l.checked()) && !script.is_empty() {
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
    a.dry_run_for = Some("country == \"GB\"".into());
    snap_all("send_after_dry_run", &a);
    dispatch(&mut a, Action::RealSend);
    snap_all("send_smtp_prompt", &a);
    dispatch(&mut a, Action::Cancel);
    a.test_to = "me@shop.example".into();
    dispatch(&mut a, Action::TestSend);
    snap_all("send_test_prompt", &a);
    dispatch(&mut a, Action::Cancel);

    let mut a = app("winter-sale");
    go(&mut a, Tab::Template);
    dispatch(&mut a, Action::Right);
    dispatch(&mut a, Action::Right);
    snap_all("template_html", &a);
    dispatch(&mut a, Action::Find);
    typed(&mut a, "nobody@nowhere.example");
    dispatch(&mut a, Action::Submit);
    snap_all("preview_find_not_found", &a);

    let b = app("birthday-treat");
    let mut b = b;
    go(&mut b, Tab::Check);
    snap_all("birthday_treat_check", &b);
    // Where each field came from and how old the browsing data is: on two lines where
    // the screen is narrow.
    let mut v = app("you-viewed");
    go(&mut v, Tab::Check);
    snap_all("you_viewed_check", &v);

    let mut p = App::picking(
        vec![campaign("birthday-treat"), campaign("winter-sale")],
        ctx(),
    );
    p.colour = false;
    snap_all("picker", &p);
}

// ---------------------------------------------------------------------------------------
// Issue 12: pasting, the save race, unsaved changes, the editor, template errors
// ---------------------------------------------------------------------------------------

/// Presses keys through the key table, as the loop does.
fn press(a: &mut App, keys: &[KeyEvent]) {
    for k in keys {
        if let Some(action) = action_for_key(a, *k) {
            dispatch(a, action);
        }
    }
}

fn chars(text: &str) -> Vec<KeyEvent> {
    text.chars().map(|c| key(KeyCode::Char(c))).collect()
}

fn ctrl_key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

/// The campaign in a temporary copy of the sample tree, loaded and checked.
fn app_in(dir: &Path, name: &str) -> App {
    let mut a = App::opening(dir.join(campaign(name)), ctx());
    a.colour = false;
    a.smtp_url = None;
    settle(&mut a);
    assert!(a.load_error.is_none(), "{:?}", a.load_error);
    a
}

fn take_recount(a: &mut App) -> (u64, Action) {
    let i = a
        .effects
        .iter()
        .position(|e| matches!(e, Effect::Recount { .. }))
        .expect("a recount asked for");
    let Effect::Recount {
        generation,
        base,
        rows,
        campaign,
    } = a.effects.remove(i)
    else {
        unreachable!()
    };
    let result = Box::new(work::recount_on(&base, &rows, *campaign, &a.ctx, &a.facts));
    (generation, Action::Recounted { generation, result })
}

fn count_of(a: &App, segment: &str) -> usize {
    let mut c = a.loaded.as_ref().unwrap().prepared.campaign.clone();
    c.segment = Some(segment.to_string());
    work::recount(c, &a.ctx, &a.facts)
        .unwrap()
        .report
        .audience
        .recipients()
}

#[test]
fn a_paste_is_text_never_keys() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Segment);
    let paste = Event::Paste("country == \"GB\"\r\nand total_spent > 100\n".into());
    // Not typing yet: a paste changes nothing and says how to start.
    let act = action_for_event(&a, &paste).unwrap();
    dispatch(&mut a, act);
    assert_eq!(a.segment.text, "country == \"GB\"");
    assert!(a.status.as_deref().unwrap().contains("press /"));
    assert!(a.effects.is_empty());
    // Typing: the whole paste lands in the field, line breaks as spaces; no Enter, no
    // `s` save, no `e` editor.
    press(&mut a, &[key(KeyCode::Char('/')), ctrl_key('u')]);
    let act = action_for_event(&a, &paste).unwrap();
    dispatch(&mut a, act);
    assert_eq!(a.segment.text, "country == \"GB\" and total_spent > 100 ");
    assert!(a.editing, "a newline in a paste is not Enter");
    assert!(a.prompt.is_none());
    assert!(
        !a.effects
            .iter()
            .any(|e| matches!(e, Effect::Save { .. } | Effect::Editor { .. })),
        "{:?}",
        a.effects
    );
    dispatch(
        &mut a,
        Action::Tick(Instant::now() + Duration::from_secs(1)),
    );
    let skipped = settle(&mut a);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        a.counted_segment(),
        Some("country == \"GB\" and total_spent > 100")
    );
    // Into a prompt as well; control characters other than line breaks are dropped.
    go(&mut a, Tab::Preview);
    dispatch(&mut a, Action::Find);
    dispatch(&mut a, Action::Paste("ngozi\u{1b}[2~\n.okafor".into()));
    assert_eq!(a.prompt.as_ref().unwrap().input.text, "ngozi[2~ .okafor");
}

#[test]
fn while_typing_every_printable_key_is_text() {
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::StartEdit);
    let printable = (' '..='~').chain("éß€ñ→".chars());
    for c in printable {
        let mut k = key(KeyCode::Char(c));
        if c.is_ascii_uppercase() {
            k.modifiers = KeyModifiers::SHIFT;
        }
        match action_for_key(&a, k) {
            Some(Action::Input(got)) => assert_eq!(got, c),
            other => panic!("{c:?} while typing became {other:?}"),
        }
    }
    // The same in a prompt.
    dispatch(&mut a, Action::Cancel);
    go(&mut a, Tab::Send);
    a.test_to = String::new();
    dispatch(&mut a, Action::TestSend);
    assert!(a.prompt.is_some());
    for c in ' '..='~' {
        assert!(
            matches!(action_for_key(&a, key(KeyCode::Char(c))), Some(Action::Input(g)) if g == c),
            "{c:?} in a prompt"
        );
    }
}

#[test]
fn the_segment_screen_is_not_typing_until_slash() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Segment);
    assert!(!a.editing);
    // `s` and `e` are commands here, not letters of the segment.
    assert!(matches!(
        action_for_key(&a, key(KeyCode::Char('s'))),
        Some(Action::Save)
    ));
    assert!(matches!(
        action_for_key(&a, key(KeyCode::Char('e'))),
        Some(Action::Editor)
    ));
    for start in [KeyCode::Char('/'), KeyCode::Enter, KeyCode::Char('i')] {
        press(&mut a, &[key(start)]);
        assert!(a.editing, "{start:?} starts typing");
        press(&mut a, &[key(KeyCode::Esc)]);
        assert!(!a.editing && !a.quit);
    }
}

/// The race of issue 12, item 3, as keys: `/`, Ctrl-U, `country == "FR"`, Enter, `s`,
/// `e` typed before the count comes back; the editor returns and the file is read again
/// while that count is still in flight, and the answers arrive out of order.
#[test]
fn a_save_pressed_while_counting_belongs_to_its_segment_whatever_the_order() {
    let (dir, _) = copy_tree();
    let path = dir.path().join(campaign("winter-sale"));
    let file_before = std::fs::read_to_string(&path).unwrap();
    let mut a = app_in(dir.path(), "winter-sale");
    let fr = "country == \"FR\"";
    let fr_count = count_of(&a, fr);
    assert_ne!(fr_count, 220);
    go(&mut a, Tab::Segment);
    press(&mut a, &[key(KeyCode::Char('/')), ctrl_key('u')]);
    press(&mut a, &chars(fr));
    press(&mut a, &[key(KeyCode::Enter)]);
    assert!(!a.editing && a.recounting());
    press(&mut a, &[key(KeyCode::Char('s'))]);
    assert_eq!(a.save_pending.as_deref(), Some(fr));
    assert!(!a.effects.iter().any(|e| matches!(e, Effect::Save { .. })));
    // The counts on screen are GB's, and say so.
    let s = screen(&a, 120, 40);
    assert!(s.contains("these counts are for country == \"GB\""), "{s}");
    assert!(s.contains("counting the segment typed"), "{s}");
    press(&mut a, &[key(KeyCode::Char('e'))]);
    assert!(a.effects.iter().any(|e| matches!(e, Effect::Editor { .. })));
    let (_, stale) = take_recount(&mut a);
    a.effects.clear();
    // Back from the editor: the file is read again. The save asked for belonged to the
    // plan being replaced, so it is cancelled, and says so.
    dispatch(&mut a, Action::Reload);
    dispatch(&mut a, Action::EditorDone(Ok(())));
    assert!(a.save_pending.is_none());
    assert!(!a.recounting(), "nothing waits on the count in flight");
    // The FR count arrives now, for a generation that is gone: ignored.
    dispatch(&mut a, stale);
    assert!(a.loaded.is_none() && a.loading);
    let skipped = settle(&mut a);
    assert!(skipped.is_empty(), "{skipped:?}");
    // The typed FR is kept and counted after the reload: no freeze.
    assert_eq!(a.segment.text, fr);
    dispatch(
        &mut a,
        Action::Tick(Instant::now() + Duration::from_secs(1)),
    );
    let skipped = settle(&mut a);
    assert!(skipped.is_empty(), "no save without s: {skipped:?}");
    assert_eq!(a.counted_segment(), Some(fr));
    assert_eq!(recipients(&a), fr_count);
    assert!(!a.counts_pending());
    assert!(a.dirty());
    let s = screen(&a, 120, 40);
    assert!(!s.contains("recounting"), "{s}");
    assert!(!s.contains("saving"), "{s}");
    // The dry run is of the segment on screen.
    dispatch(&mut a, Action::DryRun);
    settle(&mut a);
    assert_eq!(a.dry_run.clone().unwrap().unwrap().built, fr_count);
    // A new segment and Enter never write the file.
    go(&mut a, Tab::Segment);
    press(&mut a, &[key(KeyCode::Char('/')), ctrl_key('u')]);
    press(&mut a, &chars("country == \"DE\""));
    press(&mut a, &[key(KeyCode::Enter)]);
    let skipped = settle(&mut a);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), file_before);
}

#[test]
fn a_pending_save_is_cancelled_by_an_edit_and_counts_arrive_out_of_order() {
    let mut a = app("winter-sale");
    let de = "country == \"DE\"";
    dispatch(&mut a, Action::StartEdit);
    typed(&mut a, "country == \"FR\"");
    dispatch(&mut a, Action::Submit);
    dispatch(&mut a, Action::Save);
    let (_, fr_answer) = take_recount(&mut a);
    // Typing again before the count: the save was for FR, so it goes.
    dispatch(&mut a, Action::StartEdit);
    typed(&mut a, de);
    assert!(a.save_pending.is_none());
    assert!(a.status.as_deref().unwrap().contains("cancelled"));
    dispatch(&mut a, Action::Submit);
    let (_, de_answer) = take_recount(&mut a);
    // The newer answer first, then the older one: the older is ignored.
    dispatch(&mut a, de_answer);
    dispatch(&mut a, fr_answer);
    assert_eq!(a.counted_segment(), Some(de));
    assert!(!a.effects.iter().any(|e| matches!(e, Effect::Save { .. })));
    // `s` now, once counted, saves DE at once; a save for a broken segment is refused.
    dispatch(&mut a, Action::Save);
    assert!(matches!(
        &a.effects[..],
        [.., Effect::Save { segment: Some(s), .. }] if s == de
    ));
    a.effects.clear();
    dispatch(&mut a, Action::StartEdit);
    typed(&mut a, "country == ");
    dispatch(&mut a, Action::Submit);
    dispatch(&mut a, Action::Save);
    let skipped = settle(&mut a);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert!(a.status.as_deref().unwrap().contains("has an error"));
}

#[test]
fn unsaved_is_what_differs_from_the_file() {
    let mut a = app("winter-sale");
    type_segment(&mut a, "country == \"DE\"");
    assert!(a.dirty());
    assert!(screen(&a, 80, 24).contains("(unsaved)"));
    type_segment(&mut a, "  country == \"GB\" ");
    assert!(!a.dirty());
    assert!(!screen(&a, 80, 24).contains("(unsaved)"));
    // Saved: the file's segment is the one just written.
    type_segment(&mut a, "country == \"DE\"");
    dispatch(&mut a, Action::Save);
    dispatch(
        &mut a,
        Action::Saved {
            segment: true,
            result: Ok("saved".into()),
        },
    );
    assert!(!a.dirty());
    type_segment(&mut a, "country == \"GB\"");
    assert!(a.dirty(), "GB is no longer what the file holds");
}

#[test]
fn nothing_unsaved_is_dropped_without_a_question_and_esc_never_quits() {
    let list = vec![campaign("birthday-treat"), campaign("winter-sale")];
    let mut a = App::picking(list, ctx());
    a.colour = false;
    // Esc in the picker does not quit.
    press(&mut a, &[key(KeyCode::Esc)]);
    assert!(!a.quit && a.in_picker());
    press(&mut a, &[key(KeyCode::Down), key(KeyCode::Enter)]);
    settle(&mut a);
    assert_eq!(recipients(&a), 220);
    // Esc on a campaign neither leaves nor quits.
    press(&mut a, &[key(KeyCode::Esc), key(KeyCode::Esc)]);
    assert!(!a.quit && !a.in_picker());
    type_segment(&mut a, "country == \"DE\"");
    press(&mut a, &[key(KeyCode::Esc)]);
    assert!(!a.editing);
    // q asks before going back to the picker.
    press(&mut a, &[key(KeyCode::Char('q'))]);
    assert!(!a.in_picker());
    assert!(a.status.as_deref().unwrap().contains("not saved"));
    // Another key in between: the question is asked again.
    press(&mut a, &[key(KeyCode::Char('r')), key(KeyCode::Char('q'))]);
    assert!(!a.in_picker());
    // Ctrl-C asks too; then q (or Ctrl-C) again leaves without saving.
    press(&mut a, &[key(KeyCode::Char('r')), ctrl_key('c')]);
    assert!(!a.quit);
    assert!(a.status.as_deref().unwrap().contains("Ctrl-C again"));
    press(&mut a, &[key(KeyCode::Char('q'))]);
    assert!(a.in_picker() && !a.quit);
    // Nothing open, nothing unsaved: q quits.
    press(&mut a, &[key(KeyCode::Char('q'))]);
    assert!(a.quit);
}

#[test]
fn a_failed_editor_is_a_message_and_the_segment_survives() {
    let mut a = app("winter-sale");
    type_segment(&mut a, "country == \"DE\"");
    dispatch(&mut a, Action::Cancel);
    dispatch(&mut a, Action::Editor);
    a.effects.clear();
    let failed = super::run_editor("/nonexistent", Path::new("x.toml"), None);
    let e = failed.clone().unwrap_err();
    assert!(e.contains("/nonexistent") && e.contains("127"), "{e}");
    dispatch(&mut a, Action::Reload);
    dispatch(&mut a, Action::EditorDone(failed));
    dispatch(
        &mut a,
        Action::Tick(Instant::now() + Duration::from_secs(1)),
    );
    settle(&mut a);
    dispatch(
        &mut a,
        Action::Tick(Instant::now() + Duration::from_secs(1)),
    );
    settle(&mut a);
    assert!(!a.quit);
    assert_eq!(a.segment.text, "country == \"DE\"");
    assert!(a.dirty());
    let s = screen(&a, 120, 40);
    assert!(s.contains("the editor `/nonexistent` was not found"), "{s}");
}

#[test]
fn the_editor_runs_through_the_shell_like_git() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("args");
    // An editor named vi that takes options: it records what it was given.
    let vi = dir.path().join("vi");
    std::fs::write(
        &vi,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", out.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&vi, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A file name the shell must not read as syntax.
    let file = dir.path().join("it's $(touch pwned) a b.tera");
    std::fs::write(&file, "x").unwrap();
    let args = |editor: &str, line| {
        super::run_editor(editor, &file, line).unwrap();
        std::fs::read_to_string(&out).unwrap()
    };
    let vi_cmd = format!("{} --wait", vi.display());
    assert_eq!(
        args(&vi_cmd, Some(12)),
        format!("--wait\n+12\n{}\n", file.display())
    );
    // An editor not known to take +LINE gets the file alone.
    let other = dir.path().join("code");
    std::fs::copy(&vi, &other).unwrap();
    let code_cmd = format!("{} --wait", other.display());
    assert_eq!(
        args(&code_cmd, Some(12)),
        format!("--wait\n{}\n", file.display())
    );
    // `sh -c '…' --`, as git users write it.
    let sh_cmd = format!("sh -c 'printf \"%s\\n\" \"$@\" > {}' --", out.display());
    assert_eq!(args(&sh_cmd, None), format!("{}\n", file.display()));
    assert!(!dir.path().join("pwned").exists());
    assert!(!Path::new("pwned").exists());
    // A non-zero exit is reported.
    let e = super::run_editor("sh -c 'exit 3' --", &file, None).unwrap_err();
    assert!(e.contains("exited with status 3"), "{e}");
}

#[test]
fn a_template_error_names_file_line_and_column_and_e_opens_it_there() {
    let (dir, _) = copy_tree();
    let broken = dir.path().join("templates/winter-sale.txt.tera");
    let text = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(&broken, text.replacen("\n", "\n{% if %}\n", 1)).unwrap();
    let mut a = App::opening(dir.path().join(campaign("winter-sale")), ctx());
    a.colour = false;
    settle(&mut a);
    let e = a.load_error.clone().expect("a load error");
    assert!(
        e.message.contains("winter-sale.txt.tera:2:"),
        "{}",
        e.message
    );
    assert!(e.message.contains("template syntax error"), "{}", e.message);
    let at = e.at.clone().unwrap();
    assert_eq!(at.line, Some(2));
    let s = screen(&a, 120, 40);
    assert!(s.contains("winter-sale.txt.tera:2:"), "{s}");
    assert!(s.contains("at line 2 in $EDITOR"), "{s}");
    dispatch(&mut a, Action::Editor);
    assert!(
        matches!(&a.effects[..], [Effect::Editor { path, line: Some(2) }] if path == &at.path),
        "{:?}",
        a.effects
    );
}

#[test]
fn an_acknowledgement_can_be_taken_back() {
    let (dir, _) = copy_tree();
    let path = dir.path().join(campaign("birthday-treat"));
    let ack = tact::campaign::Acknowledgement {
        rule: "quasi-identifier-combination".into(),
        fields: vec!["birth_date".into(), "postcode".into()],
        reason: "DPO ticket PRIV-112: store finder".into(),
    };
    work::save_acknowledgement(&path, &ack).unwrap();
    let mut a = app_in(dir.path(), "birthday-treat");
    let i = a
        .loaded
        .as_ref()
        .unwrap()
        .report
        .findings
        .iter()
        .position(|f| f.rule == "quasi-identifier-combination")
        .unwrap();
    assert!(a.loaded.as_ref().unwrap().report.findings[i].acknowledged);
    go(&mut a, Tab::Check);
    a.finding_index = i;
    press(&mut a, &[key(KeyCode::Char('A'))]);
    let Some(Effect::Revoke {
        path: p,
        rule,
        fields,
    }) = a.effects.first()
    else {
        panic!("{:?}", a.effects)
    };
    assert_eq!(p, &path);
    let said = work::revoke_acknowledgement(p, rule, fields).unwrap();
    assert!(said.contains("took back"), "{said}");
    a.effects.remove(0);
    settle(&mut a);
    assert!(!a.loaded.as_ref().unwrap().report.findings[i].acknowledged);
    let c = tact::campaign::Campaign::load(&path).unwrap();
    assert!(c.policy.acknowledge.is_empty());
    assert!(std::fs::read_to_string(&path).unwrap().contains("# "));
    // Nothing left to take back.
    press(&mut a, &[key(KeyCode::Char('A'))]);
    assert!(a.status.as_deref().unwrap().contains("not acknowledged"));
}

#[test]
fn snapshots_of_issue_12_screens() {
    // Help on the Segment screen, where it is longest, wraps instead of cutting words.
    let mut a = app("winter-sale");
    go(&mut a, Tab::Segment);
    a.help = true;
    snap_all("help_segment", &a);
    a.help = false;

    // A long segment scrolls with its cursor; the caret of an error lines up below.
    let long =
        "country == \"GB\" and loyalty_tier == \"gold\" and favourite_category == \"coats\" and (";
    type_segment(&mut a, long);
    assert!(a.segment_error.is_some());
    snap_all("segment_long_error", &a);
    let s = screen(&a, 80, 24);
    let lines: Vec<&str> = s.lines().collect();
    let input = lines.iter().position(|l| l.starts_with("│… ")).expect(&s);
    let caret = lines[input + 1].chars().position(|c| c == '^').expect(&s);
    assert_eq!(
        lines[input].chars().nth(caret - 1),
        Some('('),
        "the caret points just past the `(`:\n{s}"
    );
    // Not typing, the start shows again unless the error is further on.
    dispatch(&mut a, Action::Cancel);
    a.segment_error = None;
    snap_all("segment_long_not_typing", &a);

    // While a recount is due, the counts say which segment they are for.
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::StartEdit);
    typed(&mut a, "country == \"FR\"");
    dispatch(&mut a, Action::Submit);
    dispatch(&mut a, Action::Save);
    snap_all("segment_counting", &a);
    go(&mut a, Tab::Overview);
    a.status = Some("saving `country == \"FR\"` once it is counted…".into());
    snap_all("overview_counting", &a);

    // q with an unsaved segment asks.
    let mut a = app("winter-sale");
    type_segment(&mut a, "country == \"DE\"");
    dispatch(&mut a, Action::Cancel);
    dispatch(&mut a, Action::Back);
    snap_all("unsaved_question", &a);

    // Audience, one reason, at the end.
    let mut a = app("winter-sale");
    go(&mut a, Tab::Audience);
    dispatch(&mut a, Action::Right);
    dispatch(&mut a, Action::End);
    let l = a.loaded.as_ref().unwrap();
    let want = l.exclusion_reasons()[0];
    assert_eq!(a.excluded_filter, Some(want));
    let n = l.shown_excluded(a.excluded_filter).len();
    assert!(n > 0 && n < l.excluded.len());
    assert_eq!(a.excluded_index, n - 1);
    snap_all("audience_one_reason", &a);
    dispatch(&mut a, Action::Home);
    assert_eq!(a.excluded_index, 0);

    // The acknowledgement prompt refusing a short reason.
    let mut b = app("birthday-treat");
    b.finding_index = b
        .loaded
        .as_ref()
        .unwrap()
        .report
        .findings
        .iter()
        .position(|f| f.level == Level::Caution)
        .unwrap();
    dispatch(&mut b, Action::Acknowledge);
    typed(&mut b, "ok");
    dispatch(&mut b, Action::Submit);
    snap_all("ack_short_reason", &b);

    // The picker with its new-campaign prompt.
    let mut p = App::picking(
        vec![campaign("birthday-treat"), campaign("winter-sale")],
        ctx(),
    );
    p.colour = false;
    press(&mut p, &[key(KeyCode::Char('n'))]);
    typed(&mut p, "spring_sale");
    dispatch(&mut p, Action::Submit);
    snap_all("picker_new_refused", &p);

    // A template syntax error: file:line:col, and where `e` goes.
    let (dir, _) = copy_tree();
    let broken = dir.path().join("templates/winter-sale.txt.tera");
    let text = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(&broken, text.replacen("\n", "\n{% if %}\n", 1)).unwrap();
    let mut e = App::opening(dir.path().join(campaign("winter-sale")), ctx());
    e.colour = false;
    settle(&mut e);
    // The temporary folder's name changes every run; the screen is otherwise the same.
    let root = format!("{}/", dir.path().display());
    let err = e.load_error.as_mut().unwrap();
    err.message = err.message.replace(&root, "");
    if let Some(at) = err.at.as_mut() {
        at.path = at.path.strip_prefix(dir.path()).unwrap().to_path_buf();
    }
    e.path = Some(campaign("winter-sale"));
    snap_all("template_error", &e);

    // Below the minimum size: one message.
    let a = app("winter-sale");
    for (w, h) in [(79, 24), (80, 23), (40, 10)] {
        let s = screen(&a, w, h);
        assert!(s.contains("make the window larger"), "{w}x{h}\n{s}");
        assert!(!s.contains("Overview"), "{w}x{h}\n{s}");
    }
    insta::assert_snapshot!("too_small_60x20", screen(&a, 60, 20));
}

#[test]
fn preview_keeps_twelve_lines_of_the_message_at_80x24() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Preview);
    let text: Vec<String> = a
        .preview
        .as_ref()
        .unwrap()
        .text
        .lines()
        .map(str::to_string)
        .collect();
    let s = screen(&a, 80, 24);
    // The twelfth line of the message (wrapped lines count as shown) is on screen, above
    // the "why" block.
    let shown: Vec<&str> = s
        .lines()
        .skip_while(|l| !l.starts_with("│Subject:"))
        .skip(2)
        .take_while(|l| !l.contains("why this person gets it"))
        .collect();
    assert!(shown.len() >= 12, "{s}");
    assert!(shown[0].contains(&text[0]), "{s}");
    assert!(s.contains("to n***@e***.com"), "{s}");
}

#[test]
fn help_shows_every_word_of_every_key_at_both_sizes() {
    use super::keys::active_scopes;
    let mut a = app("winter-sale");
    for tab in Tab::ALL {
        go(&mut a, tab);
        a.help = true;
        for (w, h) in [(80, 24), (120, 40)] {
            let s = screen(&a, w, h);
            let words: std::collections::HashSet<&str> = s
                .split(|c: char| c.is_whitespace() || c == '│')
                .filter(|w| !w.is_empty())
                .collect();
            let mut scopes = active_scopes(&a);
            if tab == Tab::Segment {
                scopes.insert(0, super::keys::Scope::Text);
            }
            for k in KEYS
                .iter()
                .filter(|k| scopes.contains(&k.scope) && !k.label.is_empty())
            {
                for word in k.help.split_whitespace() {
                    assert!(
                        words.contains(word),
                        "{tab:?} {w}x{h}: `{word}` of `{}` is cut:\n{s}",
                        k.help
                    );
                }
            }
        }
        a.help = false;
    }
}

#[test]
fn a_huge_paste_is_refused_whole() {
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::StartEdit);
    let before = a.segment.text.clone();
    dispatch(&mut a, Action::Paste("x".repeat(100_000)));
    assert_eq!(a.segment.text, before);
    assert!(a.status.as_deref().unwrap().contains("not pasted"));
}

#[test]
fn a_dry_run_says_its_segment_and_a_stale_one_is_dropped() {
    let mut a = app("winter-sale");
    dispatch(&mut a, Action::DryRun);
    settle(&mut a);
    let s = screen(&a, 120, 40);
    assert!(s.contains("for country == \"GB\""), "{s}");
    assert!(!s.contains("an earlier segment"), "{s}");
    type_segment(&mut a, "country == \"DE\"");
    go(&mut a, Tab::Send);
    let s = screen(&a, 120, 40);
    assert!(
        s.contains("for country == \"GB\"  (an earlier segment"),
        "{s}"
    );
    // A dry run still building when the campaign is read again: its answer is dropped.
    dispatch(&mut a, Action::DryRun);
    assert!(a.effects.iter().any(|e| matches!(e, Effect::DryRun)));
    a.effects.clear();
    dispatch(&mut a, Action::Reload);
    dispatch(
        &mut a,
        Action::DryRunDone(Ok(DryRunSummary {
            built: 999,
            personalised: 0,
            generic: 999,
            failed: 0,
            seconds: 0.0,
        })),
    );
    assert!(a.dry_run.is_none(), "{:?}", a.dry_run);
}

/// With `[bounces] address`, the Preview screen shows the envelope sender `send` will use:
/// this recipient's VERP address, whose token the state's key made for them.
#[test]
fn the_preview_shows_the_verp_return_path_send_will_use() {
    let (dir, _) = copy_tree();
    let path = dir.path().join(campaign("winter-sale"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}\n[bounces]\naddress = \"bounces@northwind.example\"\n"),
    )
    .unwrap();
    let c = ctx();
    let (l, _) = work::load(&path, &c).unwrap();
    let (row, personalised) = l.recipients()[0];
    let doc = super::app::render_preview(
        &l.prepared,
        &c.keys,
        now(),
        row,
        personalised,
        personalised,
        false,
    );
    let hash = c.keys.recipient_hash(l.prepared.audience.email(row));
    let want = format!(
        "<bounces+{}@northwind.example>",
        c.keys.seal_bounce_token("winter-sale", &hash)
    );
    assert!(
        doc.headers
            .iter()
            .any(|(n, v)| n == "Return-Path" && *v == want),
        "{:?}",
        doc.headers
    );
    // Without a bounce address there is no Return-Path to show (the sample's snapshots).
    let (plain, _) = work::load(&campaign("winter-sale"), &c).unwrap();
    let (row, p) = plain.recipients()[0];
    let doc = super::app::render_preview(&plain.prepared, &c.keys, now(), row, p, p, false);
    assert!(!doc.headers.iter().any(|(n, _)| n == "Return-Path"));
}
