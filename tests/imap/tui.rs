//! The composer's `b` as a person uses it, in tmux against the private Dovecot: after a
//! real send, a hard bounce and a complaint wait in the campaign's `[bounces] imap`
//! mailbox; `b` imports them and the Overview shows the loop, the complaint rate over
//! Gmail's 0.3% line.

use crate::send::sink::{DumpDir, Sink};
use crate::tui::Tmux;
use crate::util::*;

use super::cli::{dsn, flagged};
use super::dovecot::{Dovecot, PASSWORD};

/// An RFC 5965 abuse report (the parser's fixture) about `rcpt`.
fn complaint(rcpt: &str) -> Vec<u8> {
    let arf = std::fs::read_to_string(repo().join("tests/bounces/fixtures/arf-abuse.eml"))
        .expect("the ARF fixture");
    assert!(arf.contains("carla.complains@example.com"));
    arf.replace("carla.complains@example.com", rcpt)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

#[test]
fn b_imports_the_mailbox_and_overview_shows_the_complaint_rate_band() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    run_expect(
        t.tact()
            .arg("send")
            .arg(t.campaign("winter-sale"))
            .arg("--smtp")
            .arg(sink.url()),
        0,
    );
    let sent = expected_recipients(&customers(&sample_csv()), true);
    let (bounced, complained) = (sent[0].email(), sent[1].email());
    d.deliver("INBOX", &dsn(1, &bounced));
    d.deliver("INBOX", &complaint(&complained));
    t.edit("sample-data/campaigns/winter-sale.toml", |s| {
        format!("{s}\n[bounces]\nimap = \"{}\"\n", d.url("INBOX"))
    });

    let args = format!(
        "--state '{}' --now {NOW} sample-data/campaigns/winter-sale.toml",
        t.state().display()
    );
    let tui = Tmux::start_with(
        "bounces-b",
        t.root(),
        &[("TACT_IMAP_PASSWORD", PASSWORD)],
        &args,
    );
    let s = tui.wait_for("of 220 sent");
    assert!(
        s.contains("hard 0 (0.00%) · soft 0 (0.00%) · sender 0 (0.00%) · of 220 sent"),
        "{s}"
    );
    assert!(s.contains("fine: under Gmail's 0.1%"), "{s}");
    assert!(
        s.contains(&format!("b imports from imap://127.0.0.1:{}/INBOX", d.port)),
        "{s}"
    );
    tui.keys(&["b"]);
    let s = tui.wait_for("imported: hard 1,");
    assert!(
        s.contains("imported: hard 1, soft 0, complaints 1, sender 0, unknown 0; 2 suppressed"),
        "{s}"
    );
    let s = tui.wait_for("hard 1 (0.45%)");
    assert!(s.contains("Complaints  1 (0.45%)"), "{s}");
    assert!(s.contains("DANGER: Gmail's 0.3% reached"), "{s}");
    for secret in [&bounced, &complained, &"bounces%40".to_string()] {
        assert!(!s.contains(secret.as_str()), "{secret} on screen:\n{s}");
    }
    tui.keys(&["q"]);

    // What the screen said is what the state holds, and the mailbox kept both messages.
    for who in [&bounced, &complained] {
        run_expect(t.tact().args(["suppress", "check", who]), 0);
    }
    assert_eq!(d.flags("INBOX").len(), 2);
    assert_eq!(flagged(&d), 2);
}
