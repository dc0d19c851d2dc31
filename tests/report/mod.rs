//! Snapshots of the human `check` report for the three sample campaigns, so a change in
//! wording, order or counts shows up in review.

use crate::util::*;

fn report(name: &str) -> String {
    let state = tempfile::tempdir().unwrap();
    let out = run(tact(state.path())
        .env("NO_COLOR", "1")
        .arg("check")
        .arg(sample_campaign(name)));
    // The state folder is a fresh temp dir each run.
    out.stdout
        .replace(&state.path().display().to_string(), "[STATE]")
        .replace(&repo().display().to_string(), "[REPO]")
}

#[test]
fn human_report_winter_sale() {
    insta::assert_snapshot!(report("winter-sale"));
}

#[test]
fn human_report_birthday_treat() {
    insta::assert_snapshot!(report("birthday-treat"));
}

#[test]
fn human_report_wellness_check() {
    insta::assert_snapshot!(report("wellness-check"));
}

#[test]
fn human_report_you_viewed() {
    insta::assert_snapshot!(report("you-viewed"));
}
