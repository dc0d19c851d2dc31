//! The bounce loop on screen: Overview and Send show hard, soft, sender and complaint
//! counts against the messages sent, and the complaint rate in Gmail's three bands (under
//! 0.1%, from 0.1%, from 0.3%), in words as well as colour. `b` asks the worker to import
//! the campaign's mailbox, shows progress, then the counts line.

#![allow(clippy::unwrap_used)]

use tact::state::bounces::BounceFigures;

use super::app::{Action, App, BounceImport, Effect, Tab};
use super::dispatch;
use super::tests::{app, go, screen};

fn figures(complaint: u64) -> BounceFigures {
    BounceFigures {
        sent: 2000,
        hard: 12,
        soft: 5,
        sender: 3,
        complaint,
        ..BounceFigures::default()
    }
}

fn snap_both(name: &str, a: &mut App) {
    for tab in [Tab::Overview, Tab::Send] {
        go(a, tab);
        for (w, h) in [(120, 40), (80, 24)] {
            insta::assert_snapshot!(
                format!("{name}_{}_{w}x{h}", tab.title().to_lowercase()),
                screen(a, w, h)
            );
        }
    }
}

#[test]
fn the_three_complaint_bands_read_without_colour() {
    for (complaint, name, words, pct) in [
        (1, "bounces_fine", "fine: under Gmail's 0.1%", "0.05%"),
        (
            3,
            "bounces_warning",
            "WARNING: Gmail's 0.1% reached",
            "0.15%",
        ),
        (7, "bounces_danger", "DANGER: Gmail's 0.3% reached", "0.35%"),
    ] {
        let mut a = app("winter-sale");
        a.bounces = Some(figures(complaint));
        for tab in [Tab::Overview, Tab::Send] {
            go(&mut a, tab);
            let s = screen(&a, 120, 40);
            assert!(s.contains(words), "{name} {tab:?}:\n{s}");
            assert!(
                s.contains(&format!("Complaints  {complaint} ({pct})")),
                "{name} {tab:?}:\n{s}"
            );
            assert!(
                s.contains("hard 12 (0.60%) · soft 5 (0.25%) · sender 3 (0.15%) · of 2000 sent"),
                "{name} {tab:?}:\n{s}"
            );
        }
        snap_both(name, &mut a);
    }
}

#[test]
fn nothing_recorded_says_so_and_how_to_import() {
    let mut a = app("winter-sale");
    a.bounces = Some(BounceFigures::default());
    let s = screen(&a, 120, 40);
    assert!(s.contains("Bounces     none recorded"), "{s}");
    assert!(s.contains("set [bounces] imap for b to import"), "{s}");
    // Without a mailbox, b explains instead of starting anything.
    dispatch(&mut a, Action::ImportBounces);
    assert!(a.effects.is_empty(), "{:?}", a.effects);
    assert!(a.bounce_import.is_none());
    assert!(
        a.status
            .as_deref()
            .unwrap_or_default()
            .contains("[bounces] imap"),
        "{:?}",
        a.status
    );
}

#[test]
fn b_imports_off_the_ui_thread_then_shows_the_counts_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::current_dir().unwrap();
    let text = std::fs::read_to_string("sample-data/campaigns/winter-sale.toml")
        .unwrap()
        .replace(
            "\"../",
            &format!("\"{}/sample-data/campaigns/../", root.display()),
        );
    let path = dir.path().join("with-mailbox.toml");
    std::fs::write(
        &path,
        format!(
            "{text}\n[bounces]\nimap = \"imaps://bounces%40northwind.example@imap.northwind.example/Bounces\"\n"
        ),
    )
    .unwrap();
    let mut a = App::opening(path, super::tests::ctx());
    a.colour = false;
    super::tests::settle(&mut a);
    assert!(a.load_error.is_none(), "{:?}", a.load_error);
    let s = screen(&a, 120, 40);
    assert!(
        s.contains("b imports from imaps://imap.northwind.example:993/Bounces"),
        "{s}"
    );
    assert!(
        !s.contains("bounces%40") && !s.contains("bounces@northwind"),
        "{s}"
    );

    dispatch(&mut a, Action::ImportBounces);
    assert!(
        matches!(a.effects.as_slice(), [Effect::ImportBounces(_)]),
        "{:?}",
        a.effects
    );
    a.effects.clear();
    // A second b while it runs starts nothing.
    dispatch(&mut a, Action::ImportBounces);
    assert!(a.effects.is_empty());
    dispatch(&mut a, Action::BouncesProgress(50));
    let s = screen(&a, 120, 40);
    assert!(
        s.contains(
            "importing from imaps://imap.northwind.example:993/Bounces… 50 message(s) so far"
        ),
        "{s}"
    );
    let line = "hard 1, soft 0, complaints 0, sender 0, unknown 0; 1 suppressed; 1 report(s) from the mailbox";
    dispatch(&mut a, Action::BouncesImported(Ok(line.into())));
    assert_eq!(
        a.bounce_import,
        Some(BounceImport {
            mailbox: "imaps://imap.northwind.example:993/Bounces".into(),
            running: false,
            processed: 50,
            result: Some(Ok(line.into())),
        })
    );
    // Suppressions changed: the campaign is counted again.
    assert!(a.loading, "no reload after the import");
    super::tests::settle(&mut a);
    let s = screen(&a, 120, 40);
    assert!(s.contains(&format!("imported: {line}")), "{s}");

    // A failed import says why and reloads nothing.
    dispatch(&mut a, Action::ImportBounces);
    a.effects.clear();
    dispatch(
        &mut a,
        Action::BouncesImported(Err(
            "the bounce mailbox needs its password in TACT_IMAP_PASSWORD".into(),
        )),
    );
    assert!(!a.loading);
    let s = screen(&a, 120, 40);
    assert!(
        s.contains("not imported: the bounce mailbox needs its password"),
        "{s}"
    );
}
