//! A marketer's first campaign from their own export, in tmux as a person would make it:
//! `tact new` typed in a shell and then the composer on what it wrote; and the same
//! through the picker's "+ new from a CSV…". The composer's figures are those of
//! `tact check --json` on the same campaign, and both ways write the same files.

use std::path::{Path, PathBuf};

use super::Tmux;
use crate::util::{NOW, check_json, files_under, repo, run_expect, tact};

const MAILCHIMP: &str = "subscribed_members_export_5f2a.csv";

/// A fresh folder holding Mailchimp's three files, as unzipped from an audience export.
fn desk() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        MAILCHIMP,
        "unsubscribed_members_export_5f2a.csv",
        "cleaned_members_export_5f2a.csv",
    ] {
        std::fs::copy(
            repo().join("tests/onboard/exports").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    dir
}

/// What the Overview must say once the full check is done, from `tact check --json`.
fn checked_overview(dir: &Path, state: &Path) -> (String, String) {
    let (_, v) = check_json(tact(state).current_dir(dir).args([
        "check",
        "--json",
        "campaigns/spring-news.toml",
    ]));
    let a = &v["audience"];
    let (p, g) = (
        a["personalised"].as_u64().unwrap(),
        a["generic"].as_u64().unwrap(),
    );
    assert!(p + g > 0, "{v:#}");
    (
        format!("Recipients  {}  ({p} personalised, {g} generic)", p + g),
        v["verdict"].as_str().unwrap().to_uppercase(),
    )
}

/// Waits for the composer's Overview of spring-news with the figures of the full check.
fn wait_checked(tui: &Tmux, recipients: &str, verdict: &str) -> String {
    let s = tui.wait_until("the verdict of the full check", |s| {
        s.contains(recipients)
            && s.contains(&format!("Verdict     {verdict}:"))
            && !s.contains("checking")
    });
    assert!(s.contains("spring-news · Overview"), "{s}");
    assert!(s.contains("Verdict"), "{s}");
    s
}

/// Every file under `dir`, relative, with its bytes.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn tact_new_in_a_shell_then_the_composer_on_what_it_wrote() {
    let d = desk();
    let state = d.path().join("state");
    let sh = Tmux::shell("new-then-compose", d.path());
    sh.wait_for("$");
    sh.text(&format!("tact new spring-news --audience {MAILCHIMP}"));
    sh.keys(&["Enter"]);
    let out = sh.wait_for("Next: tact check campaigns/spring-news.toml");
    for want in [
        "Recognised:",
        "a Mailchimp audience export (subscribed members): 120 rows",
        "Missing, and what it means:",
        "no personalisation consent",
        "tact suppress import",
    ] {
        assert!(out.contains(want), "{want}:\n{out}");
    }
    let (recipients, verdict) = checked_overview(d.path(), &state);
    // The composer on the campaign, as `new` said to run it.
    sh.text(&format!(
        "tact --state '{}' --now {NOW} campaigns/spring-news.toml",
        state.display()
    ));
    sh.keys(&["Enter"]);
    wait_checked(&sh, &recipients, &verdict);
    sh.keys(&["q"]);
    sh.wait_until("the shell's prompt again", |s| {
        !s.contains("· Overview") && s.trim_end().ends_with('$')
    });
    sh.text("exit");
    sh.keys(&["Enter"]);
    sh.wait_exit();
}

#[test]
fn the_pickers_new_from_a_csv_writes_what_tact_new_writes_and_opens_it() {
    let d = desk();
    let state = d.path().join("state");
    let args = format!("--state '{}' --now {NOW}", state.display());
    let tui = Tmux::start("from-csv", d.path(), &args);
    // No campaign here: the picker starts on the way in from a customer file.
    tui.wait_for("> + new from a CSV…");
    tui.keys(&["Enter"]);
    tui.wait_for("the file (1 of 2)");
    // The folder holds the export: nothing prefilled; Tab completes the name.
    tui.text("subscr");
    tui.keys(&["Tab"]);
    tui.wait_for(&format!("> {MAILCHIMP}"));
    tui.keys(&["Enter"]);
    tui.wait_for("its name (2 of 2)");
    tui.wait_for("> subscribed-members-export-5f2a");
    // A refused name stays typed, with why.
    tui.keys(&["C-u"]);
    tui.text("Spring News");
    tui.keys(&["Enter"]);
    let s = tui.wait_for("`S` is not allowed");
    assert!(s.contains("> Spring News"), "{s}");
    assert!(!d.path().join("campaigns").exists());
    tui.keys(&["C-u"]);
    tui.text("spring-news");
    tui.keys(&["Enter"]);
    let s = tui.wait_for("tact new wrote campaigns/spring-news.toml");
    for want in [
        "Recognised:",
        "Missing, and what it means:",
        "no personalisation consent",
    ] {
        assert!(s.contains(want), "{want}:\n{s}");
    }
    let (recipients, verdict) = checked_overview(d.path(), &state);
    tui.keys(&["Enter"]);
    wait_checked(&tui, &recipients, &verdict);
    // Back in the picker, the new campaign is listed; q quits.
    tui.keys(&["q"]);
    tui.wait_for("> campaigns/spring-news.toml");
    tui.keys(&["q"]);
    tui.wait_exit();

    // Byte for byte what `tact new` writes for the same export and name.
    let twin = desk();
    run_expect(
        tact(&twin.path().join("state"))
            .current_dir(twin.path())
            .args(["new", "spring-news", "--audience", MAILCHIMP]),
        0,
    );
    let ours: Vec<_> = contents(d.path())
        .into_iter()
        .filter(|(p, _)| !p.starts_with("state"))
        .collect();
    let theirs: Vec<_> = contents(twin.path())
        .into_iter()
        .filter(|(p, _)| !p.starts_with("state"))
        .collect();
    assert_eq!(
        ours.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        theirs.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert_eq!(ours, theirs);
}
