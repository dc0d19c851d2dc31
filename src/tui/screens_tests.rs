//! The screens tell the truth about the campaign: a blocked campaign shows nobody's
//! personal render, the real message (HTML part, preheader, rendered subject), the
//! campaign's sent state from the ledger, the summary before a send, and the funnel's
//! every step. Snapshots at 120×40 and 80×24, plus assertions on what the screen shows.

#![allow(clippy::unwrap_used)]

use super::app::{Action, App, DRY_RUN_BLOCKED, Tab};
use super::dispatch;
use super::tests::{app, go, screen, settle, typed};

fn snap_all(name: &str, a: &App) {
    for (w, h) in [(120, 40), (80, 24)] {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(a, w, h));
    }
}

/// Every distinct non-empty value of a column of the loaded audience.
fn values(a: &App, field: &str) -> Vec<String> {
    let l = a.loaded.as_ref().unwrap();
    let col = l.prepared.audience.column(field).unwrap();
    let mut out: Vec<String> = (0..l.prepared.audience.len())
        .map(|row| col.data.get(row).to_string())
        .filter(|v| !v.trim().is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What must never be on screen for a blocked campaign: its special-category sentence and
/// any value of the special-category field (as a word: "asthma", "migraine").
fn assert_nothing_special(a: &App, special: &[String], where_: &str) {
    for (w, h) in [(120, 40), (80, 24)] {
        let s = screen(a, w, h);
        assert!(
            !s.contains("told us you live with"),
            "{where_}: personal render on screen:\n{s}"
        );
        for v in special {
            assert!(
                !s.to_lowercase().contains(&v.to_lowercase()),
                "{where_}: a special-category value is on screen:\n{s}"
            );
        }
    }
}

#[test]
fn a_blocked_campaign_previews_no_one_personally() {
    let mut a = app("wellness-check");
    assert!(a.blocked(), "the sample is the block example");
    let special = values(&a, "health_condition");
    assert!(!special.is_empty());
    go(&mut a, Tab::Preview);
    let n = a.recipients_count();
    assert!(n > 0);
    // Everyone, both ways round the `g` toggle: the generic variant each time.
    for i in 0..n {
        let doc = a.preview.as_ref().unwrap();
        assert!(!doc.personalised, "recipient {i} rendered personally");
        assert!(doc.error.is_none(), "{:?}", doc.error);
        assert_nothing_special(&a, &special, &format!("recipient {i}"));
        dispatch(&mut a, Action::ToggleVariant);
        assert!(!a.preview.as_ref().unwrap().personalised);
        assert_nothing_special(&a, &special, &format!("recipient {i} toggled"));
        dispatch(&mut a, Action::ToggleVariant);
        dispatch(&mut a, Action::Right);
    }
    // Find lands on a person who would get the paragraph: still generic.
    let l = a.loaded.as_ref().unwrap();
    let col = l.prepared.audience.column("health_condition").unwrap();
    let (row, _) = l
        .plan
        .recipients()
        .find(|(row, planned)| *planned && !col.data.get(*row).trim().is_empty())
        .unwrap();
    let email = l.prepared.audience.email(row).to_string();
    dispatch(&mut a, Action::Find);
    typed(&mut a, &email);
    dispatch(&mut a, Action::Submit);
    assert!(a.prompt.is_none(), "{:?}", a.prompt);
    assert!(a.preview.as_ref().unwrap().planned_personalised);
    assert_nothing_special(&a, &special, "found");
    a.preview_index = 0;
    a.refresh_preview();
    let s = screen(&a, 120, 40);
    assert!(s.contains("special-category"), "the block is named:\n{s}");
    snap_all("wellness_preview_blocked", &a);
}

#[test]
fn a_blocked_campaign_dry_runs_to_nothing() {
    let mut a = app("wellness-check");
    dispatch(&mut a, Action::DryRun);
    settle(&mut a);
    assert!(!a.dry_running);
    assert_eq!(a.dry_run, Some(Err(DRY_RUN_BLOCKED.to_string())));
    let s = screen(&a, 120, 40);
    assert!(s.contains("blocked: nothing would be sent"), "{s}");
    assert!(!s.contains("message(s) built"), "{s}");
    snap_all("wellness_send_dry_run_blocked", &a);
}

#[test]
fn h_shows_the_html_part_as_text_and_back() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Preview);
    let doc = a.preview.clone().unwrap();
    let html = doc.html.as_deref().expect("winter-sale has an HTML part");
    assert!(html.contains("<h1"));
    let text_screen = screen(&a, 120, 40);
    assert!(text_screen.contains("text part"), "{text_screen}");
    assert!(
        text_screen.contains("Preheader: Warm coats"),
        "{text_screen}"
    );
    dispatch(&mut a, Action::ToggleHtml);
    assert!(a.preview_html);
    let s = screen(&a, 120, 40);
    assert!(s.contains("HTML part"), "{s}");
    // The HTML's heading as html2text sets it, and no markup.
    assert!(s.contains("# Built for the weather we actually get"), "{s}");
    assert!(!s.contains("<p") && !s.contains("style="), "{s}");
    snap_all("winter_sale_preview_html", &a);
    // The toggle stays while stepping through recipients.
    dispatch(&mut a, Action::Right);
    assert!(a.preview_html);
    dispatch(&mut a, Action::ToggleHtml);
    assert!(!a.preview_html);
    assert!(screen(&a, 120, 40).contains("text part"));
}

#[test]
fn o_opens_the_whole_message_on_screen() {
    let mut a = app("winter-sale");
    go(&mut a, Tab::Preview);
    dispatch(&mut a, Action::Right);
    dispatch(&mut a, Action::OpenMessage);
    let eml = match &a.effects[..] {
        [super::app::Effect::Open(eml)] => String::from_utf8(eml.clone()).unwrap(),
        other => panic!("{other:?}"),
    };
    let doc = a.preview.as_ref().unwrap();
    assert!(
        eml.contains(&format!("To: {}", doc.email)),
        "the recipient shown"
    );
    assert!(eml.contains("multipart/alternative"));
    a.effects.clear();
    dispatch(
        &mut a,
        Action::Opened(Err("no desktop viewer: set $BROWSER".into())),
    );
    assert_eq!(
        a.status.as_deref(),
        Some("not opened: no desktop viewer: set $BROWSER")
    );
}

#[test]
fn overview_shows_the_subject_as_rendered_not_the_template() {
    let a = app("wellness-check");
    // Blocked: the generic render, like Preview.
    let (subject, whose) = a.sample_subject.clone().unwrap();
    assert_eq!(subject, "stay warm and well this winter");
    assert!(whose.contains("generic"), "{whose}");
    let a = app("birthday-treat");
    let s = screen(&a, 120, 40);
    assert!(
        !s.contains("{{") && !s.contains("{%"),
        "raw Tera on Overview:\n{s}"
    );
    // The sample person, never the first customer.
    let (subject, _) = a.sample_subject.clone().unwrap();
    assert_eq!(subject, "Alex, a birthday treat, on us");
    let l = a.loaded.as_ref().unwrap();
    let first = l.plan.recipients().find(|(_, p)| *p).unwrap().0;
    let name = l
        .prepared
        .audience
        .column("first_name")
        .unwrap()
        .data
        .get(first);
    assert!(!s.contains(name), "a customer's name on Overview:\n{s}");
    snap_all("birthday_treat_overview", &a);
}

/// The Send and Overview screens after a real send (to smtp-sink): they say what the
/// ledger says, and `S` has nothing left to confirm.
#[test]
fn after_a_send_the_screens_show_the_ledger_not_the_old_plan() {
    use super::send_tests::{Setup, Sink, run_until};
    let s = Setup::new();
    let sink = Sink::start();
    let path = s.campaign("after-send", "segment = 'country == \"GB\"'", &sink);
    let mut a = App::opening(path, s.ctx());
    a.colour = false;
    a.smtp_url = None;
    run_until(&mut a, "checked the campaign", |a| {
        a.loaded.as_ref().is_some_and(|l| l.checked())
    });
    assert!(a.ledger.is_none());
    let n = a.recipients_count();
    assert_eq!(n, 220);
    let before = screen(&a, 120, 40);
    assert!(before.contains("Sent        not yet"), "{before}");
    dispatch(&mut a, Action::RealSend);
    typed(&mut a, &n.to_string());
    dispatch(&mut a, Action::Submit);
    run_until(&mut a, "sent and read the ledger again", |a| {
        a.sending.as_ref().is_some_and(|s| s.result.is_some())
            && a.ledger.is_some()
            && a.loaded.as_ref().is_some_and(|l| l.checked())
    });
    assert_eq!(a.tab, Tab::Send);
    assert_eq!(a.recipients_count(), 0);
    let send = screen(&a, 120, 40);
    assert!(!send.contains("recipients 220"), "{send}");
    assert!(!send.contains("may be sent"), "{send}");
    assert!(send.contains("recipients left 0"), "{send}");
    let line = "sent on 2026-11-23 12:00 UTC to 220 · 0 uncertain · 0 failed · 0 left";
    assert!(send.contains(line), "{send}");
    // S asks to confirm nothing: there is nobody left.
    dispatch(&mut a, Action::RealSend);
    assert!(a.prompt.is_none(), "{:?}", a.prompt);
    go(&mut a, Tab::Overview);
    let overview = screen(&a, 120, 40);
    assert!(overview.contains(line), "{overview}");
    assert!(overview.contains("nothing left to send"), "{overview}");
    assert!(!overview.contains("may be sent"), "{overview}");

    // The picker says it too.
    let said = super::work::survey(a.path.as_ref().unwrap(), &s.ctx());
    assert_eq!(said, "NOTICE · sent on 2026-11-23 to 220");

    // Reopened, the sent campaign says so at once.
    let again = App::opening(a.path.clone().unwrap(), s.ctx());
    let mut again = again;
    run_until(&mut again, "read the campaign again", |a| {
        a.loaded.as_ref().is_some_and(|l| l.checked())
    });
    let reopened = screen(&again, 120, 40);
    assert!(reopened.contains(line), "{reopened}");
    assert!(!reopened.contains("may be sent"), "{reopened}");
    go(&mut again, Tab::Send);
    again.status = None;
    // The sink's port changes from run to run (ephemeral ports have five digits).
    let url = sink.url();
    let port = url.rsplit(':').next().unwrap();
    for (w, h) in [(120, 40), (80, 24)] {
        insta::assert_snapshot!(
            format!("send_after_a_real_send_{w}x{h}"),
            screen(&again, w, h).replace(port, "PORT ")
        );
    }
}

/// The confirmation of a real send summarises it first: relays by name and host (never a
/// user or password), From, the rendered subject, counts by variant, already sent, the
/// verdict; then the count is typed.
#[test]
fn s_shows_one_summary_before_the_count_and_no_secret() {
    let root = std::env::current_dir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("sample-data/campaigns/winter-sale.toml")
        .unwrap()
        .replace(
            "\"../customers.csv\"",
            &format!("\"{}/sample-data/customers.csv\"", root.display()),
        )
        .replace(
            "\"../customers.schema.toml\"",
            &format!("\"{}/sample-data/customers.schema.toml\"", root.display()),
        )
        .replace(
            "\"../../templates\"",
            &format!("\"{}/templates\"", root.display()),
        );
    let relay = "\n[[send.relay]]\nname = \"office\"\nurl = \"smtps://mailer@127.0.0.1:465\"\npassword_env = \"HOME\"\n";
    let path = dir.path().join("summary.toml");
    std::fs::write(&path, format!("{text}{relay}")).unwrap();
    let mut a = App::opening(path, super::tests::ctx());
    a.colour = false;
    a.smtp_url = None;
    settle(&mut a);
    assert!(a.load_error.is_none(), "{:?}", a.load_error);
    dispatch(&mut a, Action::RealSend);
    assert_eq!(
        a.prompt.as_ref().map(|p| p.kind),
        Some(super::app::PromptKind::ConfirmCount(220)),
        "{:?}",
        a.status
    );
    let s = screen(&a, 120, 40);
    for want in [
        "relays:   office (smtps://127.0.0.1:465)",
        "from:     Northwind <news@northwind.example>",
        "subject:  Alex, our winter picks are in",
        "to:       122 personalised, 98 generic",
        "already:  0 sent before",
        "verdict:  NOTICE",
        "Type 220 and Enter",
    ] {
        assert!(s.contains(want), "{want}:\n{s}");
    }
    assert!(!s.contains("hunter2") && !s.contains("mailer"), "{s}");
    snap_all("send_confirm_summary", &a);
}

/// The funnel's steps add up: each step is the one before less its own exclusions, and
/// the last one is exactly personalised + generic (a render failure is a step too), also
/// for a segment on a field that needs personalisation consent.
#[test]
fn the_funnel_adds_up_to_the_recipients() {
    use super::view::funnel;
    for (name, segment) in [
        ("winter-sale", None),
        (
            "winter-sale",
            Some("country == \"GB\" and total_spent > 100"),
        ),
        ("birthday-treat", None),
    ] {
        let mut a = app(name);
        if let Some(s) = segment {
            super::tests::type_segment(&mut a, s);
        }
        let l = a.loaded.as_ref().unwrap();
        assert!(l.checked());
        let c = &l.report.audience;
        let f = funnel(c);
        let (_, last) = f[f.len() - 3];
        assert_eq!(
            last,
            c.personalised + c.generic,
            "{name} {segment:?}: {f:?}"
        );
        let total_dropped: usize = tact::plan::Reason::ALL.iter().map(|r| c.excluded(*r)).sum();
        assert_eq!(f[0].1 - last, total_dropped, "{name}: every drop is a step");
        if segment.is_some() {
            let personal = f.iter().find(|(l, _)| *l == "personal consent").unwrap().1;
            let before = f.iter().find(|(l, _)| *l == "not suppressed").unwrap().1;
            assert!(
                personal < before,
                "the personalisation-consent step shows: {f:?}"
            );
            go(&mut a, Tab::Segment);
            a.editing = false;
            snap_all("segment_personal_fields", &a);
        }
    }
}

/// The picker shows each campaign's verdict (after the full check) and sent state.
#[test]
fn the_picker_shows_each_verdict_and_sent_state() {
    let files: Vec<std::path::PathBuf> = ["birthday-treat", "wellness-check", "winter-sale"]
        .iter()
        .map(|n| super::tests::campaign(n))
        .collect();
    let mut p = App::picking(files, super::tests::ctx());
    p.colour = false;
    p.survey_picker();
    for e in std::mem::take(&mut p.effects) {
        let super::app::Effect::Survey(paths) = e else {
            panic!("{e:?}")
        };
        for path in paths {
            let said = super::work::survey(&path, &p.ctx);
            dispatch(&mut p, Action::Surveyed(path, said));
        }
    }
    let s = screen(&p, 120, 40);
    for want in [
        "birthday-treat.toml  CAUTION · not sent",
        "wellness-check.toml  BLOCK · not sent",
        "winter-sale.toml  NOTICE · not sent",
    ] {
        assert!(s.contains(want), "{want}:\n{s}");
    }
    snap_all("picker_surveyed", &p);
}

/// The Send screen's gauge per provider: sent of total for each provider the run has
/// recipients at, which one is backing off, and what waits for a later run. Live first
/// (a provider backing off), then finished (the run's own rate, not the clock's).
#[test]
fn the_send_gauge_shows_each_provider() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tact::send::orchestrate::Sent;
    use tact::send::{Provider, ProviderSummary, Summary, Tally};

    let mut a = app("winter-sale");
    go(&mut a, Tab::Send);
    let tally = Arc::new(Tally::default());
    let set = |p: Provider, total: usize, sent: usize, failed: usize, deferred: usize| {
        let n = tally.provider(p);
        n.total.store(total, Ordering::Relaxed);
        n.sent.store(sent, Ordering::Relaxed);
        n.failed.store(failed, Ordering::Relaxed);
        n.deferred.store(deferred, Ordering::Relaxed);
    };
    set(Provider::Gmail, 40, 12, 0, 0);
    set(Provider::Microsoft, 10, 10, 0, 0);
    set(Provider::Other, 170, 150, 2, 0);
    tally
        .provider(Provider::Gmail)
        .backing_off
        .store(true, Ordering::Relaxed);
    tally.total.store(220, Ordering::Relaxed);
    tally.sent.store(172, Ordering::Relaxed);
    tally.failed.store(2, Ordering::Relaxed);
    a.sending = Some(super::app::Sending {
        tally: Arc::clone(&tally),
        stop: Arc::new(AtomicBool::new(false)),
        started: std::time::Instant::now(),
        result: None,
    });
    let live = screen(&a, 120, 40);
    for want in [
        "gmail     12/40 sent · backing off",
        "microsoft 10/10 sent",
        "other     150/170 sent · 2 failed",
    ] {
        assert!(live.contains(want), "{want}:\n{live}");
    }
    // Yahoo and Apple had nobody in this run: no gauge.
    assert!(!live.contains("yahoo") && !live.contains("apple"), "{live}");

    set(Provider::Gmail, 40, 30, 0, 10);
    set(Provider::Other, 170, 168, 2, 0);
    tally.sent.store(208, Ordering::Relaxed);
    tally.deferred.store(10, Ordering::Relaxed);
    let by = |total, sent, failed, deferred, deferrals| ProviderSummary {
        total,
        sent,
        failed,
        deferred,
        deferrals,
        gave_out: None,
    };
    let summary = Summary {
        sent: 208,
        failed: 2,
        deferred: 10,
        elapsed_seconds: 4.0,
        rate_per_second: 52.0,
        by_provider: [
            (Provider::Gmail, by(40, 30, 0, 10, 5)),
            (Provider::Microsoft, by(10, 10, 0, 0, 0)),
            (Provider::Other, by(170, 168, 2, 0, 0)),
        ]
        .into(),
        ..Summary::default()
    };
    if let Some(s) = a.sending.as_mut() {
        s.result = Some(Ok(Box::new(Sent {
            campaign: "winter-sale".into(),
            summary,
            audience: Default::default(),
            ledger: Default::default(),
            released: 0,
            uncertain_earlier: 0,
        })));
    }
    let done = screen(&a, 120, 40);
    assert!(
        done.contains("gmail     30/40 sent · 10 wait for a later run"),
        "{done}"
    );
    assert!(done.contains("· 52/s"), "{done}");
    snap_all("send_gauge_by_provider", &a);
}
