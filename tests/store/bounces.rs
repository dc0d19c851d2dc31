//! The bounce loop's part of the store suite: reports counted once, the soft window,
//! suppression reasons, per-campaign figures, erasure and purge, and the upgrade of a
//! store made before bounces were kept. Run against SQLite and PostgreSQL by `mod.rs`.

use chrono::{DateTime, TimeDelta, Utc};

use tact::state::Keys;
use tact::state::bounces::{
    BounceEvent, BounceFigures, REASON_BOUNCE, REASON_COMPLAINT, Recorded, SuppressWhen, Suppressed,
};
use tact::state::ledger::{Ledger, Reply, Status};

use super::suite::{Backend, Case};

pub const CASES: &[(&str, Case)] = &[
    (
        "a bounce report counts once and each kind does what it asks",
        a_report_counts_once_and_each_kind_does_what_it_asks,
    ),
    (
        "soft bounces suppress only within the window",
        soft_bounces_suppress_only_within_the_window,
    ),
    (
        "hosts importing one report at once count it once",
        hosts_importing_one_report_at_once_count_it_once,
    ),
    (
        "forget and purge take the bounce events",
        forget_and_purge_take_the_bounce_events,
    ),
    (
        "a store from before bounces gains their tables and keeps its data",
        a_store_from_before_bounces_is_upgraded,
    ),
];

fn now() -> DateTime<Utc> {
    tact::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
}

fn keys() -> Keys {
    Keys::from_master(&[9; 32])
}

fn report(n: u8) -> [u8; 32] {
    keys().report_hash(&[n; 32])
}

fn at_once(reason: &'static str) -> Option<SuppressWhen> {
    Some(SuppressWhen {
        reason,
        at_least: 1,
        since: now(),
    })
}

fn ev(
    kind: &'static str,
    campaign: &str,
    who: Option<[u8; 32]>,
    s: Option<SuppressWhen>,
) -> BounceEvent {
    BounceEvent {
        kind,
        campaign: campaign.into(),
        recipient: who,
        suppress: s,
    }
}

fn reason(l: &Ledger, h: &[u8; 32]) -> Option<String> {
    l.suppression(h).unwrap().map(|(r, _)| r)
}

fn sent(l: &mut Ledger, campaign: &str, who: &[[u8; 32]]) {
    let list: Vec<([u8; 32], bool)> = who.iter().map(|h| (*h, true)).collect();
    l.enqueue(campaign, &list, now()).unwrap();
    for h in who {
        assert!(l.claim(campaign, h, now()).unwrap());
        l.finish(campaign, h, Status::Sent, &Reply::default(), None, now())
            .unwrap();
    }
}

fn a_report_counts_once_and_each_kind_does_what_it_asks(b: &dyn Backend) {
    let k = keys();
    let mut l = b.open();
    let [ann, bob, cat, dan, eve] =
        ["ann", "bob", "cat", "dan", "eve"].map(|n| k.recipient_hash(&format!("{n}@example.com")));
    sent(&mut l, "winter", &[ann, bob, cat, dan, eve]);
    sent(&mut l, "spring", &[ann]);

    let hard = [ev("hard", "winter", Some(ann), at_once(REASON_BOUNCE))];
    let first = l.record_report(&report(1), &hard, now()).unwrap();
    assert_eq!(
        first,
        Some(vec![Recorded {
            count: 1,
            suppressed: Suppressed::New
        }])
    );
    assert_eq!(reason(&l, &ann).as_deref(), Some(REASON_BOUNCE));
    // The same report again, even with other content: nothing is written.
    assert_eq!(l.record_report(&report(1), &hard, now()).unwrap(), None);
    let other = [ev("hard", "winter", Some(bob), at_once(REASON_BOUNCE))];
    assert_eq!(l.record_report(&report(1), &other, now()).unwrap(), None);
    assert!(!l.is_suppressed(&bob).unwrap(), "a duplicate changed state");

    // A complaint suppresses with its own reason; an entry already there keeps its own.
    l.suppress(&dan, "manual", now()).unwrap();
    let complaints = [
        ev("complaint", "winter", Some(cat), at_once(REASON_COMPLAINT)),
        ev("complaint", "winter", Some(ann), at_once(REASON_COMPLAINT)),
        ev("hard", "winter", Some(dan), at_once(REASON_BOUNCE)),
    ];
    let got = l.record_report(&report(2), &complaints, now()).unwrap();
    let states: Vec<Suppressed> = got.unwrap().iter().map(|r| r.suppressed).collect();
    assert_eq!(
        states,
        [Suppressed::New, Suppressed::Already, Suppressed::Already]
    );
    assert_eq!(reason(&l, &cat).as_deref(), Some(REASON_COMPLAINT));
    assert_eq!(reason(&l, &ann).as_deref(), Some(REASON_BOUNCE));
    assert_eq!(reason(&l, &dan).as_deref(), Some("manual"));

    // A sender refusal, an auto-reply and the unattributable: counted, nobody touched.
    let counted = [
        ev("sender", "winter", None, None),
        ev("sender", "spring", None, None),
        ev("auto-reply", "winter", None, None),
        ev("delivered", "winter", None, None),
        ev("unknown", "-", None, None),
    ];
    let got = l
        .record_report(&report(3), &counted, now())
        .unwrap()
        .unwrap();
    assert!(got.iter().all(|r| r.suppressed == Suppressed::No));
    assert!(!l.is_suppressed(&eve).unwrap() && !l.is_suppressed(&bob).unwrap());

    assert_eq!(
        l.bounce_figures("winter").unwrap(),
        BounceFigures {
            sent: 5,
            hard: 2,
            soft: 0,
            sender: 1,
            complaint: 2,
            auto_reply: 1,
            delivered: 1,
            unknown: 0,
        }
    );
    let spring = l.bounce_figures("spring").unwrap();
    assert_eq!((spring.sent, spring.sender, spring.hard), (1, 1, 0));
    assert_eq!(spring.rate(spring.sender), Some(1.0));
    assert_eq!(l.bounce_figures("-").unwrap().unknown, 1);
    let none = l.bounce_figures("never").unwrap();
    assert_eq!(none, BounceFigures::default());
    assert_eq!(none.rate(none.complaint), None);
    // A kind the store does not know is refused, and the report is not marked seen.
    let bad = [ev("bogus", "winter", None, None)];
    assert!(l.record_report(&report(4), &bad, now()).is_err());
    assert!(
        l.record_report(&report(4), &counted[..1], now())
            .unwrap()
            .is_some(),
        "a failed report must be importable again"
    );
}

fn soft(who: [u8; 32], at: DateTime<Utc>) -> [BounceEvent; 1] {
    [ev(
        "soft",
        "winter",
        Some(who),
        Some(SuppressWhen {
            reason: REASON_BOUNCE,
            at_least: 3,
            since: at - TimeDelta::days(30),
        }),
    )]
}

fn soft_bounces_suppress_only_within_the_window(b: &dyn Backend) {
    let k = keys();
    let mut l = b.open();
    let (ann, bob) = (
        k.recipient_hash("ann@example.com"),
        k.recipient_hash("bob@example.com"),
    );
    let count = |r: Option<Vec<Recorded>>| {
        let r = r.unwrap()[0];
        (r.count, r.suppressed)
    };
    // 70, 45 and 20 days ago, then now: never three within any 30 days.
    let mut n = 10;
    for days in [70, 45, 20] {
        let at = now() - TimeDelta::days(days);
        n += 1;
        l.record_report(&report(n), &soft(ann, at), at).unwrap();
    }
    let r = l
        .record_report(&report(20), &soft(ann, now()), now())
        .unwrap();
    assert_eq!(count(r), (2, Suppressed::No), "only two in the window");
    assert!(!l.is_suppressed(&ann).unwrap());
    // The third in the window suppresses, with reason bounce.
    let later = now() + TimeDelta::days(1);
    let r = l
        .record_report(&report(21), &soft(ann, later), later)
        .unwrap();
    assert_eq!(count(r), (3, Suppressed::New));
    assert_eq!(reason(&l, &ann).as_deref(), Some(REASON_BOUNCE));
    // Someone else's soft bounces are theirs: bob has one.
    let r = l
        .record_report(&report(22), &soft(bob, later), later)
        .unwrap();
    assert_eq!(count(r), (1, Suppressed::No));
    // Hard bounces do not count towards the soft limit.
    let hard = [ev("hard", "winter", Some(bob), None)];
    l.record_report(&report(23), &hard, later).unwrap();
    let r = l
        .record_report(&report(24), &soft(bob, later), later)
        .unwrap();
    assert_eq!(count(r), (2, Suppressed::No));
    assert_eq!(l.bounce_figures("winter").unwrap().soft, 7);
}

fn hosts_importing_one_report_at_once_count_it_once(b: &dyn Backend) {
    let k = keys();
    let ann = k.recipient_hash("ann@example.com");
    let recorded = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut l = b.open();
                for n in 0..10u8 {
                    if l.record_report(&report(100 + n), &soft(ann, now()), now())
                        .unwrap()
                        .is_some()
                    {
                        recorded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(recorded.into_inner(), 10);
    let l = b.open();
    assert_eq!(l.bounce_figures("winter").unwrap().soft, 10);
    assert_eq!(reason(&l, &ann).as_deref(), Some(REASON_BOUNCE));
}

fn forget_and_purge_take_the_bounce_events(b: &dyn Backend) {
    let k = keys();
    let mut l = b.open();
    let ann = k.recipient_hash("ann@example.com");
    let bob = k.recipient_hash("bob@example.com");
    for n in 0..2 {
        l.record_report(&report(30 + n), &soft(ann, now()), now())
            .unwrap();
        l.record_report(&report(40 + n), &soft(bob, now()), now())
            .unwrap();
    }
    let kept = l.bounces_of(&ann).unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(
        (kept[0].campaign.as_str(), kept[0].kind.as_str(), kept[0].at),
        ("winter", "soft", now())
    );
    l.forget(&ann, now()).unwrap();
    assert!(l.bounces_of(&ann).unwrap().is_empty());
    assert_eq!(l.bounces_of(&bob).unwrap().len(), 2);
    assert_eq!(l.bounce_figures("winter").unwrap().soft, 2, "bob's stay");
    // Erasure put ann on the list for good; her old events no longer exist.
    let r = l
        .record_report(&report(50), &soft(ann, now()), now())
        .unwrap()
        .unwrap();
    assert_eq!((r[0].count, r[0].suppressed), (1, Suppressed::No));
    let p = l.purge(&k, 10, now() + TimeDelta::days(11)).unwrap();
    assert_eq!(p.bounces, 3);
    assert_eq!(l.bounce_figures("winter").unwrap().soft, 0);
    // The reports stay known: a mailbox imported again after a purge counts nothing.
    assert_eq!(
        l.record_report(&report(50), &soft(ann, now()), now())
            .unwrap(),
        None
    );
}

fn a_store_from_before_bounces_is_upgraded(b: &dyn Backend) {
    let k = keys();
    let ann = k.recipient_hash("ann@example.com");
    {
        let mut l = b.open();
        l.check_key(&k.key_id()).unwrap();
        sent(&mut l, "winter", &[ann]);
        l.suppress(&ann, "manual", now()).unwrap();
    }
    b.sql("DROP TABLE bounces; DROP TABLE bounce_reports;");
    let mut l = b.open();
    l.check_key(&k.key_id()).unwrap();
    assert_eq!(reason(&l, &ann).as_deref(), Some("manual"));
    assert_eq!(l.bounce_figures("winter").unwrap().sent, 1);
    let r = l
        .record_report(&report(60), &soft(ann, now()), now())
        .unwrap();
    assert!(r.is_some());
    assert_eq!(l.bounce_figures("winter").unwrap().soft, 1);
}
