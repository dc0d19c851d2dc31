//! The composer's screens and `tact preview --open` as a person meets them: the message
//! opened in a (scripted) desktop viewer from a private file.

use std::os::unix::fs::PermissionsExt as _;

use crate::util::{run_expect, sample_campaign, tact};

/// A `$BROWSER` that records the file it was given: its mode and its bytes.
fn recording_viewer(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = dir.join("seen");
    let script = dir.join("viewer.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nstat -c %a \"$1\" > '{o}.mode'\ncp \"$1\" '{o}'\n",
            o = out.display()
        ),
    )
    .expect("write the viewer");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, out)
}

fn first_address(campaign: &str) -> String {
    let state = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("eml");
    run_expect(
        tact(state.path())
            .arg("preview")
            .arg(sample_campaign(campaign))
            .args(["--limit", "1", "--out"])
            .arg(&dir),
        0,
    );
    let eml = std::fs::read_dir(&dir)
        .expect("written")
        .next()
        .expect("one message")
        .expect("entry")
        .path();
    let text = std::fs::read_to_string(eml).expect("read");
    text.lines()
        .find_map(|l| l.strip_prefix("To: "))
        .expect("a To header")
        .trim()
        .to_string()
}

#[test]
fn preview_open_hands_a_private_copy_of_the_whole_message_to_the_viewer() {
    let state = tempfile::tempdir().expect("tempdir");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (viewer, seen) = recording_viewer(tmp.path());
    let to = first_address("winter-sale");
    let r = run_expect(
        tact(state.path())
            .env("BROWSER", &viewer)
            .env("TMPDIR", tmp.path())
            .arg("preview")
            .arg(sample_campaign("winter-sale"))
            .args(["--recipient", &to, "--open"]),
        0,
    );
    assert!(r.stdout.is_empty(), "nothing printed: {}", r.stdout);
    assert!(
        !r.stderr.contains(&to),
        "no address in the output: {}",
        r.stderr
    );
    let mode = std::fs::read_to_string(seen.with_extension("mode")).expect("the viewer ran");
    assert_eq!(mode.trim(), "600");
    let eml = std::fs::read_to_string(&seen).expect("the viewer got the file");
    assert!(eml.contains("multipart/alternative"), "{eml}");
    assert!(eml.contains("text/html"), "{eml}");
    assert!(
        eml.contains(&format!("To: {to}")),
        "the chosen recipient's message"
    );
}

#[test]
fn preview_open_without_a_viewer_says_so_and_writes_nothing() {
    let state = tempfile::tempdir().expect("tempdir");
    let tmp = tempfile::tempdir().expect("tempdir");
    let to = first_address("winter-sale");
    let r = run_expect(
        tact(state.path())
            .env_remove("BROWSER")
            .env("PATH", "/nonexistent")
            .env("TMPDIR", tmp.path())
            .arg("preview")
            .arg(sample_campaign("winter-sale"))
            .args(["--recipient", &to, "--open"]),
        1,
    );
    assert!(r.stderr.contains("no desktop viewer"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(tmp.path()).expect("tmp").count(), 0);
}

#[test]
fn preview_open_of_a_blocked_campaign_opens_nothing() {
    let state = tempfile::tempdir().expect("tempdir");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (viewer, seen) = recording_viewer(tmp.path());
    let r = run_expect(
        tact(state.path())
            .env("BROWSER", &viewer)
            .arg("preview")
            .arg(sample_campaign("wellness-check"))
            .args(["--recipient", "anyone@example.com", "--open"]),
        4,
    );
    assert!(r.stderr.contains("special-category"), "{}", r.stderr);
    assert!(!seen.exists());
}
