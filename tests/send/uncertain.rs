//! Uncertain recipients and completion as every command sees them. A `sending` row is a
//! message that may or may not have been handed over when a run broke off: nothing may
//! touch the ledger before the check gate passes (`--retry-uncertain` included), every run
//! and `check` says how many there are and exits 5 while any remain, and a campaign that
//! completed (its rows purged since, or not) is complete for check, preview, the dry run and
//! send alike.

use super::*;

/// Leaves `people` `sending` in the ledger through the store's own API, as a run killed
/// after handing their messages over would, and the campaign not complete.
fn leave_uncertain(t: &Tree, name: &str, people: &[Customer]) {
    let keys = crate::master_keys(&t.state());
    let mut l = tact::state::ledger::Ledger::open(&t.state(), false).unwrap();
    let now = tact::consent::parse_time(NOW).unwrap();
    let rows: Vec<_> = people
        .iter()
        .map(|c| {
            (
                keys.recipient_hash(&c.email()),
                granted(c.get("consent_personalisation")),
            )
        })
        .collect();
    l.enqueue(name, &rows, now).unwrap();
    for (h, _) in &rows {
        assert!(l.claim(name, h, now).unwrap(), "claim");
    }
    assert_eq!(l.completed_at(name).unwrap(), None);
}

fn min_segment_size(t: &Tree, from: u32, to: u32) {
    t.edit(&campaign_rel(WINTER), |s| {
        let (a, b) = (
            format!("min_segment_size = {from}"),
            format!("min_segment_size = {to}"),
        );
        assert!(s.contains(&a), "{s}");
        s.replacen(&a, &b, 1)
    });
}

/// DESIGN §8: "nothing touches the ledger before the check gate passes (including
/// `--retry-uncertain`)". A retry the gate stops must leave the uncertain rows uncertain,
/// or the next plain run resends people who may already have the message.
#[test]
fn retry_uncertain_stopped_by_the_gate_changes_nothing_and_a_plain_send_resends_nobody() {
    let t = tree();
    let people = pick(&t, 2, 2);
    set_send(&t, WINTER, &[]);
    narrow(&t, WINTER, &people);
    leave_uncertain(&t, WINTER, &people[..2]);
    let before = status_counts(&campaign_rows(&t.state(), WINTER));
    assert_eq!(before, BTreeMap::from([("sending".to_string(), 2)]));

    // An unacknowledged caution: four recipients are far below min_segment_size.
    min_segment_size(&t, 1, 50);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let r = run_expect(
        send_cmd(&t, WINTER, &sink.url()).arg("--retry-uncertain"),
        3,
    );
    assert!(
        r.stderr
            .contains("nothing sent: the check verdict is caution"),
        "{}",
        r.stderr
    );
    assert!(!r.all_output().contains("released"), "{}", r.all_output());
    assert_eq!(
        status_counts(&campaign_rows(&t.state(), WINTER)),
        before,
        "the gate stopped the run, yet the ledger changed"
    );
    assert_eq!(dump.count(), 0);

    // Fixed, then sent without the flag: the two never queued go, the uncertain do not.
    min_segment_size(&t, 50, 1);
    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 5);
    let got = delivered_once(&dump.deliveries());
    assert_eq!(got, emails(&people[2..]), "{}", r.all_output());
    assert_eq!(
        status_counts(&campaign_rows(&t.state(), WINTER)),
        BTreeMap::from([("sending".to_string(), 2), ("sent".to_string(), 2)])
    );
}

/// Every run and `check` names the uncertain rows and exits 5 until the operator resolves
/// them with `--retry-uncertain` (after asking the relay).
#[test]
fn uncertain_rows_are_reported_by_every_run_and_check_and_exit_5_until_resolved() {
    let t = tree();
    let people = pick(&t, 2, 2);
    set_send(&t, WINTER, &[]);
    narrow(&t, WINTER, &people);
    leave_uncertain(&t, WINTER, &people[..2]);
    let said = |r: &Run| {
        let all = r.all_output();
        all.contains("2 uncertain from an earlier run") && all.contains("--retry-uncertain")
    };
    let campaign = t.campaign(WINTER);

    let r = run_expect(t.tact().arg("check").arg(&campaign), 5);
    assert!(said(&r), "check: {}", r.all_output());
    let (r, v) = check_json(t.tact().arg("check").arg(&campaign).arg("--json"));
    assert_eq!(r.code, 5, "{}", r.all_output());
    assert_eq!(n(&v, "ledger.uncertain"), 2, "{v:#}");
    assert_eq!(n(&v, "audience.excluded.already_sent"), 2, "{v:#}");

    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let r = run_expect(send_cmd(&t, WINTER, &sink.url()).arg("--dry-run"), 5);
    assert!(said(&r), "dry run: {}", r.all_output());
    assert!(r.stdout.contains("dry run: 2 message(s)"), "{}", r.stdout);

    // The run sends the two others and still says it: exit 5, not 0.
    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 5);
    assert!(said(&r), "send: {}", r.all_output());
    assert_eq!(delivered_once(&dump.deliveries()), emails(&people[2..]));
    let (r, v) = send_json(&t, WINTER, &sink, 5);
    assert!(r.stdout.contains("completed") || v["completed_at"].is_string());
    assert_eq!(n(&v, "ledger.sending"), 2, "{v:#}");
    assert_eq!(n(&v, "uncertain"), 2, "{v:#}");
    // Later runs: complete, nothing to send, and still not forgotten.
    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 5);
    assert!(
        r.stdout.contains("nothing to send") && said(&r),
        "{}",
        r.all_output()
    );
    assert_eq!(dump.count(), 2);
    // A scheduled tick of the complete campaign says it too, in the cron log, with exit 5.
    t.edit(&campaign_rel(WINTER), |s| {
        format!("send_at = \"2026-11-23T09:00:00+00:00\"\n{s}")
    });
    let folder = t.campaign(WINTER).parent().expect("a folder").to_path_buf();
    let r = run_expect(
        t.tact()
            .arg("run-due")
            .arg(&folder)
            .arg("--smtp")
            .arg(sink.url()),
        5,
    );
    assert!(
        r.stdout.contains("winter-sale: complete; 2 uncertain") && said(&r),
        "{}",
        r.all_output()
    );
    assert_eq!(dump.count(), 2);

    // Resolved: the operator asked the relay, and resends them.
    let r = run_expect(
        send_cmd(&t, WINTER, &sink.url()).arg("--retry-uncertain"),
        0,
    );
    assert!(
        !r.all_output().contains("uncertain from an earlier run"),
        "{}",
        r.all_output()
    );
    assert_eq!(delivered_once(&dump.deliveries()), emails(&people));
    let r = run_expect(t.tact().arg("check").arg(&campaign), 0);
    assert!(
        !r.all_output().contains("uncertain from"),
        "{}",
        r.all_output()
    );
    let r = run_expect(&mut send_cmd(&t, WINTER, &sink.url()), 0);
    assert!(r.stdout.contains("nothing to send"), "{}", r.stdout);
}

/// One plan, after a purge too: the ledger rows are gone, the completion mark is not, and
/// check, preview, the dry run and send all agree that nobody gets the campaign.
#[test]
fn after_a_purge_check_preview_dry_run_and_send_agree_nobody_gets_it() {
    let t = tree();
    set_send(&t, WINTER, &[]);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    send_json(&t, WINTER, &sink, 0);
    assert_eq!(dump.count(), WINTER_RECIPIENTS);
    let later = "2026-12-10T00:00:00Z";
    let r = run_expect(t.tact_at(later).args(["purge", "--older-than", "1"]), 0);
    assert!(
        r.stdout
            .contains(&format!("purged {WINTER_RECIPIENTS} delivery row(s)")),
        "{}",
        r.stdout
    );
    assert!(campaign_rows(&t.state(), WINTER).is_empty());
    let campaign = t.campaign(WINTER);

    let (r, v) = check_json(t.tact_at(later).arg("check").arg(&campaign).arg("--json"));
    assert_eq!(r.code, 0, "{}", r.all_output());
    assert_eq!(
        n(&v, "audience.personalised") + n(&v, "audience.generic"),
        0,
        "check after the purge: {v:#}"
    );
    assert!(n(&v, "audience.excluded.already_sent") > 200, "{v:#}");
    assert!(v["ledger"]["completed_at"].is_string(), "{v:#}");
    let r = run_expect(t.tact_at(later).arg("check").arg(&campaign), 0);
    assert!(r.stdout.contains("completed on"), "{}", r.stdout);

    let out = t.path("preview-after-purge");
    let r = run_expect(
        t.tact_at(later)
            .arg("preview")
            .arg(&campaign)
            .arg("--out")
            .arg(&out),
        0,
    );
    assert!(r.stdout.contains("wrote 0 message(s)"), "{}", r.stdout);
    assert!(read_previews(&out).is_empty());

    let r = run_expect(
        t.tact_at(later)
            .arg("send")
            .arg(&campaign)
            .arg("--smtp")
            .arg(sink.url())
            .arg("--dry-run"),
        0,
    );
    assert!(
        r.stdout.contains("completed") && r.stdout.contains("nothing to send"),
        "{}",
        r.stdout
    );
    let r = run_expect(
        t.tact_at(later)
            .arg("send")
            .arg(&campaign)
            .arg("--smtp")
            .arg(sink.url()),
        0,
    );
    assert!(r.stdout.contains("nothing to send"), "{}", r.stdout);
    assert_eq!(dump.count(), WINTER_RECIPIENTS);
}
