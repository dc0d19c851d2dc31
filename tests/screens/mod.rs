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

/// tmux: Preview's `h` shows the HTML part as text and back; `o` hands the message shown
/// to the desktop viewer ($BROWSER here) as a 0600 file.
#[test]
fn tmux_h_toggles_the_html_part_and_o_opens_the_message() {
    let t = crate::util::Tree::new();
    let (viewer, seen) = recording_viewer(t.root());
    let viewer = viewer.display().to_string();
    let tmp = t.path("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let tmp = tmp.display().to_string();
    let tui = crate::tui::open_winter_sale(
        "html",
        &t,
        &[("BROWSER", viewer.as_str()), ("TMPDIR", tmp.as_str())],
    );
    for _ in 0..5 {
        tui.keys(&["Tab"]);
    }
    tui.wait_for("text part");
    let s = tui.screen();
    assert!(s.contains("Preheader: Warm coats"), "{s}");
    tui.keys(&["h"]);
    let s = tui.wait_for("HTML part");
    assert!(s.contains("# Built for the weather we actually get"), "{s}");
    assert!(!s.contains("<p") && !s.contains("style="), "{s}");
    tui.keys(&["h"]);
    tui.wait_for("text part");
    tui.keys(&["o"]);
    let s = tui.wait_for("opened in");
    assert!(s.contains("0600"), "{s}");
    let mode = std::fs::read_to_string(seen.with_extension("mode")).expect("the viewer ran");
    assert_eq!(mode.trim(), "600");
    let eml = std::fs::read_to_string(&seen).expect("the viewer got the file");
    assert!(eml.contains("multipart/alternative"), "{eml}");
}

/// tmux: a real send to smtp-sink, then the screens: Send and Overview say what the
/// ledger says, `S` has nobody to confirm, and the campaign reopened says the same.
#[test]
fn tmux_the_screens_after_a_real_send() {
    use crate::send::sink::{DumpDir, Sink};
    let t = crate::util::Tree::new();
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    t.edit("sample-data/campaigns/winter-sale.toml", |s| {
        format!(
            "{s}\n[send]\nrate_per_second = 5000\n\n[[send.relay]]\nname = \"sink\"\nurl = \"{}\"\nrate_per_second = 5000\n",
            sink.url()
        )
    });
    run_expect(crate::util::tact(&t.state()).arg("init"), 0);
    let tui = crate::tui::open_winter_sale("sent", &t, &[]);
    let s = tui.screen();
    assert!(s.contains("Sent        not yet"), "{s}");
    for _ in 0..6 {
        tui.keys(&["Tab"]);
    }
    tui.wait_for("d / Enter");
    tui.keys(&["S"]);
    let s = tui.wait_for("Type 220 and Enter");
    assert!(s.contains("relays:   sink (smtp://127.0.0.1:"), "{s}");
    tui.text("220");
    tui.keys(&["Enter"]);
    let line = "sent on 2026-11-23 12:00 UTC to 220 · 0 uncertain · 0 failed · 0 left";
    let s = tui.wait_for(line);
    assert!(s.contains("recipients left 0"), "{s}");
    assert!(!s.contains("may be sent"), "{s}");
    assert_eq!(dump.count(), 220);
    // After a send the composer checks the campaign again (the ledger and the bounce
    // figures changed): an S while it does says "still checking", as to a person, who
    // presses it again once the verdict shows.
    let mut s = String::new();
    for _ in 0..60 {
        tui.keys(&["S"]);
        std::thread::sleep(std::time::Duration::from_millis(250));
        s = tui.screen();
        if s.contains("nothing to send") {
            break;
        }
    }
    assert!(s.contains("nothing to send"), "{s}");
    assert!(!s.contains("Type 220"), "{s}");
    tui.keys(&["Tab"]);
    let s = tui.wait_for("Recipients  0");
    assert!(
        s.contains(line) && s.contains("nothing left to send"),
        "{s}"
    );
    drop(tui);
    // Reopened: the same, at once.
    let again = crate::tui::Tmux::start_with(
        "sent-again",
        t.root(),
        &[],
        &format!(
            "--state '{}' --now {} sample-data/campaigns/winter-sale.toml",
            t.state().display(),
            crate::util::NOW
        ),
    );
    let s = again.wait_for(line);
    assert!(!s.contains("may be sent"), "{s}");
}
