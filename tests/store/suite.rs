//! The store test suite: every case runs against SQLite and against PostgreSQL, through
//! the same `Ledger` handle the commands use. A case gets a fresh, empty store.

use std::collections::HashSet;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};

use tact::state::Keys;
use tact::state::audit::Broken;
use tact::state::erase::{REASON_ERASURE, REASON_IMPORT, REASON_UNSUBSCRIBE};
use tact::state::ledger::{Delivered, Ledger, Reply, Status, StatusCounts};
use tact::state::postgres::PgTarget;
use tact::state::retention::Purged;

use super::server::{PASSWORD, PgServer};

/// A fresh store of one kind: new connections to it, and raw SQL to tamper with it.
pub trait Backend: Sync {
    fn open(&self) -> Ledger;
    fn sql(&self, sql: &str);
}

pub struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    pub fn new() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join(tact::state::ledger::LEDGER_FILE)
    }
}

impl Backend for Sqlite {
    fn open(&self) -> Ledger {
        Ledger::open(self.dir.path(), false).unwrap()
    }
    fn sql(&self, sql: &str) {
        rusqlite::Connection::open(self.file())
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }
}

pub struct Pg<'a> {
    server: &'a PgServer,
    url: String,
}

impl<'a> Pg<'a> {
    pub fn new(server: &'a PgServer) -> Pg<'a> {
        Pg {
            url: server.new_database(),
            server,
        }
    }
}

impl Backend for Pg<'_> {
    fn open(&self) -> Ledger {
        let target = PgTarget::parse(&self.url, false, Some(PASSWORD.into())).unwrap();
        Ledger::connect(&target).unwrap()
    }
    fn sql(&self, sql: &str) {
        self.server.sql(&self.url, sql);
    }
}

fn now() -> DateTime<Utc> {
    tact::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
}

fn counts(pending: usize, sending: usize, sent: usize, failed: usize) -> StatusCounts {
    StatusCounts {
        pending,
        sending,
        sent,
        failed,
    }
}

fn delivered(hash: [u8; 32]) -> Delivered {
    Delivered {
        hash,
        reply: Reply {
            code: Some(250),
            enhanced: Some("2.0.0".into()),
        },
        message_id: Some("<m@x>".into()),
        at: now(),
        relay: None,
    }
}

pub type Case = fn(&dyn Backend);

pub const CASES: &[(&str, Case)] = &[
    (
        "a relay's usage counts its deliveries of the last day, every campaign",
        relay_usage_counts_the_last_day,
    ),
    (
        "a recipient can be claimed once",
        a_recipient_can_be_claimed_once,
    ),
    (
        "pending rows of people who left are dropped",
        pending_rows_of_people_who_left_are_dropped,
    ),
    (
        "frequency cap and suppression facts",
        frequency_cap_and_suppression_facts,
    ),
    (
        "a delivery is recorded with the next claim",
        a_delivery_is_recorded_with_the_next_claim,
    ),
    (
        "settle and claim takes only pending, unsuppressed rows",
        settle_and_claim_takes_only_pending_unsuppressed,
    ),
    (
        "parallel claims never overlap",
        parallel_claims_never_overlap,
    ),
    (
        "the audit chain catches edits and deletions",
        the_audit_chain_catches_edits_and_deletions,
    ),
    (
        "the sealed head catches a cut, emptied or rolled-back log",
        the_sealed_head_catches_a_cut_emptied_or_rolled_back_log,
    ),
    (
        "concurrent audit appends keep one chain",
        concurrent_audit_appends_keep_one_chain,
    ),
    (
        "a purge keeps what it must and still verifies",
        a_purge_keeps_what_it_must,
    ),
    (
        "events after a purge of everything continue the chain",
        events_after_a_purge_of_everything_continue,
    ),
    (
        "forget suppresses and deletes one person's rows",
        forget_suppresses_and_deletes_one_persons_rows,
    ),
    (
        "tokens suppress once and forged ones write nothing",
        tokens_suppress_once,
    ),
    ("a different key is refused", a_different_key_is_refused),
    (
        "a bounce token names exactly its campaign and recipient",
        a_bounce_token_names_its_campaign_and_recipient,
    ),
];

fn a_recipient_can_be_claimed_once(b: &dyn Backend) {
    let mut l = b.open();
    let (a, x) = ([1u8; 32], [2u8; 32]);
    l.enqueue("c", &[(a, true), (x, false)], now()).unwrap();
    assert!(l.claim("c", &a, now()).unwrap());
    assert!(
        !l.claim("c", &a, now()).unwrap(),
        "a second claim must fail"
    );
    let other = b.open();
    assert!(
        !other.claim("c", &a, now()).unwrap(),
        "another connection cannot claim it either"
    );
    l.finish(
        "c",
        &a,
        Status::Sent,
        &Reply {
            code: Some(250),
            enhanced: Some("2.0.0".into()),
        },
        Some("<x@y>"),
        now(),
    )
    .unwrap();
    // Re-enqueueing keeps the status.
    l.enqueue("c", &[(a, true)], now()).unwrap();
    assert_eq!(l.counts("c").unwrap(), counts(1, 0, 1, 0));
    assert_eq!(l.attempts("c", &a).unwrap(), 1);
    assert_eq!(l.attempts("c", &[9; 32]).unwrap(), 0);
    assert!(l.claim("c", &x, now()).unwrap());
    let f = l.facts("c", 0, now()).unwrap();
    assert_eq!(
        f.already,
        HashSet::from([a, x]),
        "sent and uncertain both count"
    );
    assert_eq!(l.uncertain("c").unwrap(), HashSet::from([x]));
    assert_eq!(l.release_uncertain("c").unwrap(), 1);
    assert_eq!(l.facts("c", 0, now()).unwrap().already, HashSet::from([a]));
    assert!(l.uncertain("c").unwrap().is_empty());
    // A 5xx is final; a 4xx goes back to pending and counts its attempts.
    assert!(l.claim("c", &x, now()).unwrap());
    l.finish("c", &x, Status::Pending, &Reply::default(), None, now())
        .unwrap();
    assert!(l.claim("c", &x, now()).unwrap());
    assert_eq!(l.attempts("c", &x).unwrap(), 3);
    let refused = Reply {
        code: Some(550),
        enhanced: Some("5.1.1".into()),
    };
    l.finish("c", &x, Status::Failed, &refused, None, now())
        .unwrap();
    assert_eq!(l.counts("c").unwrap(), counts(0, 0, 1, 1));
    assert!(l.completed_at("c").unwrap().is_none());
    l.mark_complete("c", now()).unwrap();
    assert_eq!(l.completed_at("c").unwrap(), Some(now()));
    assert!(l.completed_at("never-started").unwrap().is_none());
}

fn pending_rows_of_people_who_left_are_dropped(b: &dyn Backend) {
    let mut l = b.open();
    let (a, x, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    l.enqueue("x", &[(a, true), (x, true), (c, false)], now())
        .unwrap();
    l.enqueue("other", &[(x, true)], now()).unwrap();
    assert!(l.claim("x", &a, now()).unwrap());
    // a is sending (never dropped), x left the plan, c stays.
    assert_eq!(l.drop_pending_except("x", &|h| *h == c).unwrap(), 1);
    assert_eq!(l.counts("x").unwrap(), counts(1, 1, 0, 0));
    assert_eq!(l.counts("other").unwrap().pending, 1, "another campaign");
    assert!(l.drop_pending("x", &c).unwrap());
    assert!(!l.drop_pending("x", &a).unwrap(), "only pending rows go");
    assert_eq!(l.counts("x").unwrap().pending, 0);
    // Many at once (PostgreSQL sends them in chunks).
    let many: Vec<([u8; 32], bool)> = (0..25_000u32)
        .map(|i| {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            h[31] = 7;
            (h, i.is_multiple_of(2))
        })
        .collect();
    l.enqueue("big", &many, now()).unwrap();
    assert_eq!(l.counts("big").unwrap().pending, 25_000);
    let keep = |h: &[u8; 32]| u32::from_be_bytes([h[0], h[1], h[2], h[3]]).is_multiple_of(3);
    assert_eq!(l.drop_pending_except("big", &keep).unwrap(), 25_000 - 8_334);
    assert_eq!(l.counts("big").unwrap().pending, 8_334);
}

fn frequency_cap_and_suppression_facts(b: &dyn Backend) {
    let mut l = b.open();
    let a = [1u8; 32];
    l.enqueue("first", &[(a, true)], now()).unwrap();
    l.claim("first", &a, now()).unwrap();
    l.finish("first", &a, Status::Sent, &Reply::default(), None, now())
        .unwrap();
    assert_eq!(
        l.facts("second", 24, now() + TimeDelta::hours(23))
            .unwrap()
            .recent,
        HashSet::from([a])
    );
    assert!(
        l.facts("second", 24, now() + TimeDelta::hours(25))
            .unwrap()
            .recent
            .is_empty()
    );
    assert!(l.facts("second", 0, now()).unwrap().recent.is_empty());
    assert!(
        l.facts("first", 24, now()).unwrap().recent.is_empty(),
        "the campaign itself does not cap its own recipients"
    );
    assert!(l.suppress(&a, "unsubscribe", now()).unwrap());
    assert!(!l.suppress(&a, "manual", now()).unwrap());
    assert!(l.is_suppressed(&a).unwrap());
    assert!(!l.is_suppressed(&[9; 32]).unwrap());
    assert_eq!(
        l.suppression(&a).unwrap(),
        Some(("unsubscribe".to_string(), now())),
        "an existing entry keeps its reason"
    );
    assert_eq!(l.suppression(&[9; 32]).unwrap(), None);
    assert_eq!(
        l.facts("second", 0, now()).unwrap().suppressed,
        HashSet::from([a])
    );
    // One list for every connection: a suppression taken elsewhere is seen at once.
    let elsewhere = b.open();
    elsewhere.suppress(&[5; 32], "unsubscribe", now()).unwrap();
    assert!(l.is_suppressed(&[5; 32]).unwrap());
}

fn a_delivery_is_recorded_with_the_next_claim(b: &dyn Backend) {
    let mut l = b.open();
    let (a, x, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    l.enqueue("k", &[(a, true), (x, true), (c, true)], now())
        .unwrap();
    assert!(l.sent_then_claim("k", None, &a, now()).unwrap());
    let done = delivered(a);
    assert!(l.sent_then_claim("k", Some(&done), &x, now()).unwrap());
    assert_eq!(l.counts("k").unwrap(), counts(1, 1, 1, 0));
    // A suppressed next recipient is not claimed, but the delivery is still recorded.
    l.suppress(&c, "unsubscribe", now()).unwrap();
    let done = Delivered { hash: x, ..done };
    assert!(!l.sent_then_claim("k", Some(&done), &c, now()).unwrap());
    assert_eq!(l.counts("k").unwrap(), counts(1, 0, 2, 0));
}

fn relay_usage_counts_the_last_day(b: &dyn Backend) {
    let mut l = b.open();
    let h = |i: u8| [i; 32];
    let day_before = now() - TimeDelta::hours(30);
    l.enqueue("old", &[(h(1), true)], day_before).unwrap();
    l.enqueue("new", &[(h(1), true), (h(2), true), (h(3), true)], now())
        .unwrap();
    let via = |hash, relay: &str, at| Delivered {
        at,
        relay: Some(relay.to_string()),
        ..delivered(hash)
    };
    assert_eq!(
        l.settle_and_claim("old", &[], &[h(1)], day_before).unwrap(),
        [h(1)]
    );
    l.settle_and_claim("old", &[via(h(1), "a", day_before)], &[], day_before)
        .unwrap();
    assert_eq!(
        l.settle_and_claim("new", &[], &[h(1), h(2), h(3)], now())
            .unwrap()
            .len(),
        3
    );
    l.settle_and_claim(
        "new",
        &[via(h(1), "a", now()), via(h(2), "b", now())],
        &[],
        now(),
    )
    .unwrap();
    let since = now() - TimeDelta::hours(24);
    assert_eq!(
        l.relay_usage("a", since).unwrap(),
        1,
        "yesterday's is not counted"
    );
    assert_eq!(l.relay_usage("b", since).unwrap(), 1);
    assert_eq!(l.relay_usage("c", since).unwrap(), 0);
    assert_eq!(l.relay_usage("a", day_before).unwrap(), 2);
}

fn settle_and_claim_takes_only_pending_unsuppressed(b: &dyn Backend) {
    let mut l = b.open();
    let h = |i: u8| [i; 32];
    l.enqueue(
        "s",
        &[(h(1), true), (h(2), true), (h(3), false), (h(5), true)],
        now(),
    )
    .unwrap();
    assert!(l.claim("s", &h(2), now()).unwrap());
    l.suppress(&h(3), "unsubscribe", now()).unwrap();
    // 2 is taken, 3 suppressed, 4 never queued: 1 and 5, in the order asked.
    let got = l
        .settle_and_claim("s", &[], &[h(5), h(2), h(3), h(4), h(1)], now())
        .unwrap();
    assert_eq!(got, vec![h(5), h(1)]);
    assert!(
        !l.claim("s", &h(3), now()).unwrap(),
        "a suppressed one is never claimed"
    );
    assert_eq!(l.counts("s").unwrap(), counts(1, 3, 0, 0));
    // Recording a batch, claiming nothing.
    let later = now() + TimeDelta::seconds(5);
    let done = vec![
        Delivered {
            at: later,
            ..delivered(h(5))
        },
        Delivered {
            message_id: None,
            reply: Reply {
                code: Some(250),
                enhanced: None,
            },
            ..delivered(h(1))
        },
    ];
    assert!(
        l.settle_and_claim("s", &done, &[], later)
            .unwrap()
            .is_empty()
    );
    assert_eq!(l.counts("s").unwrap(), counts(1, 1, 2, 0));
    let rows = l.deliveries_of(&h(5)).unwrap();
    assert_eq!((rows[0].status.as_str(), rows[0].at), ("sent", later));
    assert_eq!(rows[0].attempts, 1);
    assert_eq!(l.attempts("s", &h(1)).unwrap(), 1);
    // Both at once, in one transaction.
    l.release_uncertain("s").unwrap();
    let got = l.settle_and_claim("s", &[], &[h(2)], now()).unwrap();
    assert_eq!(got, vec![h(2)]);
    let got = l
        .settle_and_claim("s", &[delivered(h(2))], &[h(2), h(1)], now())
        .unwrap();
    assert!(got.is_empty(), "sent rows are not claimed again");
    assert_eq!(l.counts("s").unwrap(), counts(1, 0, 3, 0));
}

fn parallel_claims_never_overlap(b: &dyn Backend) {
    const N: usize = 600;
    let all: Vec<[u8; 32]> = (0..N)
        .map(|i| {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(i as u64).to_be_bytes());
            h
        })
        .collect();
    let queued: Vec<([u8; 32], bool)> = all.iter().map(|h| (*h, true)).collect();
    b.open().enqueue("p", &queued, now()).unwrap();
    // Three senders over the same list: two in the same order, one backwards, in batches,
    // each recording its previous batch with its next claim.
    let orders: Vec<Vec<[u8; 32]>> = vec![
        all.clone(),
        all.clone(),
        all.iter().rev().copied().collect(),
    ];
    let claimed: Vec<Vec<[u8; 32]>> = std::thread::scope(|s| {
        let handles: Vec<_> = orders
            .iter()
            .map(|order| {
                s.spawn(move || {
                    let mut l = b.open();
                    let mut mine = Vec::new();
                    let mut done: Vec<Delivered> = Vec::new();
                    for batch in order.chunks(16) {
                        let got = l.settle_and_claim("p", &done, batch, now()).unwrap();
                        done = got.iter().map(|h| delivered(*h)).collect();
                        mine.extend(got);
                    }
                    l.settle_and_claim("p", &done, &[], now()).unwrap();
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = HashSet::new();
    for mine in &claimed {
        for h in mine {
            assert!(seen.insert(*h), "a recipient was claimed twice");
        }
    }
    assert_eq!(seen.len(), N, "every recipient claimed once");
    assert_eq!(b.open().counts("p").unwrap(), counts(0, 0, N, 0));
}

fn the_audit_chain_catches_edits_and_deletions(b: &dyn Backend) {
    let keys = Keys::from_master(&[5; 32]);
    let mut l = b.open();
    for i in 0..4 {
        let seq = l
            .audit_append(&keys, "c", "send", &serde_json::json!({ "sent": i }), now())
            .unwrap();
        assert_eq!(seq, i + 1);
    }
    assert_eq!(l.audit_verify(&keys).unwrap().map(|v| v.events), Ok(4));
    let events = l.audit_events(Some("c")).unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events[2].body, serde_json::json!({ "sent": 2 }));
    assert_eq!(events[2].at, now());
    assert!(l.audit_events(Some("other")).unwrap().is_empty());
    assert_eq!(l.audit_events(None).unwrap().len(), 4);
    // Another key cannot vouch for this log.
    assert!(
        l.audit_verify(&Keys::from_master(&[6; 32]))
            .unwrap()
            .is_err()
    );
    b.sql("UPDATE audit SET body = '{\"sent\":99}' WHERE seq = 2");
    assert_eq!(
        l.audit_verify(&keys).unwrap(),
        Err(Broken {
            seq: 2,
            why: "was edited after it was written".into()
        })
    );
    b.sql("DELETE FROM audit WHERE seq = 2");
    assert_eq!(
        l.audit_verify(&keys).unwrap(),
        Err(Broken {
            seq: 2,
            why: "event is missing (deleted)".into()
        })
    );
}

/// Deleting events from the end leaves a chain that is intact as far as it goes: only the
/// head sealed with each append can tell that it went further.
fn the_sealed_head_catches_a_cut_emptied_or_rolled_back_log(b: &dyn Backend) {
    let keys = Keys::from_master(&[5; 32]);
    let mut l = b.open();
    let mut append = |i: i64| {
        l.audit_append(&keys, "c", "send", &serde_json::json!({ "sent": i }), now())
            .unwrap()
    };
    append(0);
    append(1);
    // The head as it was at event 2, to roll back to.
    b.sql("CREATE TABLE saved_head AS SELECT * FROM audit_head");
    for i in 2..5 {
        append(i);
    }
    let l = b.open();
    let verify = || l.audit_verify(&keys).unwrap().map(|v| v.events);
    let broken = || verify().expect_err("a damaged log verified");
    assert_eq!(verify(), Ok(5));

    // The middle: the chain itself breaks (caught before the head existed too).
    b.sql("CREATE TABLE saved_audit AS SELECT * FROM audit");
    b.sql("DELETE FROM audit WHERE seq = 3");
    assert_eq!(broken().seq, 3);
    b.sql("INSERT INTO audit SELECT * FROM saved_audit WHERE seq = 3");
    assert_eq!(verify(), Ok(5));

    // A genuinely sealed but older head, with the events after it still there.
    b.sql("DELETE FROM audit_head; INSERT INTO audit_head SELECT * FROM saved_head");
    let e = broken();
    assert_eq!(e.seq, 3, "{e:?}");
    assert!(e.why.contains("rolled back"), "{e:?}");
    // ... and with them deleted too: the same state as just after event 2, which nothing
    // in the store can tell from the real one (`audit --verify` prints the head to keep).
    b.sql("DELETE FROM audit WHERE seq > 2");
    assert_eq!(verify(), Ok(2));
    b.sql("DELETE FROM audit; INSERT INTO audit SELECT * FROM saved_audit");
    b.sql("DELETE FROM audit_head");
    b.open()
        .audit_append(&keys, "c", "send", &serde_json::json!({ "sent": 5 }), now())
        .unwrap();
    assert_eq!(verify(), Ok(6));

    // The report: the tail deleted, then every event.
    b.sql("DELETE FROM audit WHERE seq >= 3");
    let e = broken();
    assert_eq!(e.seq, 3, "{e:?}");
    assert!(
        e.why.contains("cut short") && e.why.contains("event 6"),
        "{e:?}"
    );
    b.sql("DELETE FROM audit");
    let e = broken();
    assert_eq!(e.seq, 1, "{e:?}");
    assert!(e.why.contains("cut short"), "{e:?}");

    // A head moved back by hand to match the cut breaks its seal.
    b.sql("INSERT INTO audit SELECT * FROM saved_audit WHERE seq <= 2");
    b.sql("UPDATE audit_head SET seq = 2");
    let e = broken();
    assert!(e.why.contains("head") && e.why.contains("edited"), "{e:?}");

    // The head deleted while events remain.
    b.sql("DELETE FROM audit_head");
    let e = broken();
    assert!(e.why.contains("head") && e.why.contains("missing"), "{e:?}");
}

fn concurrent_audit_appends_keep_one_chain(b: &dyn Backend) {
    let keys = Keys::from_master(&[5; 32]);
    std::thread::scope(|s| {
        for t in 0..3 {
            let keys = &keys;
            s.spawn(move || {
                let mut l = b.open();
                for i in 0..12 {
                    l.audit_append(
                        keys,
                        "c",
                        "send",
                        &serde_json::json!({ "t": t, "i": i }),
                        now(),
                    )
                    .unwrap();
                }
            });
        }
    });
    let l = b.open();
    assert_eq!(l.audit_verify(&keys).unwrap().map(|v| v.events), Ok(36));
    let seqs: Vec<i64> = l
        .audit_events(None)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=36).collect::<Vec<i64>>());
}

fn a_purge_keeps_what_it_must(b: &dyn Backend) {
    let keys = Keys::from_master(&[5; 32]);
    let mut l = b.open();
    let old = tact::consent::parse_time("2025-01-01T00:00:00Z").unwrap();
    for _ in 0..3 {
        l.audit_append(&keys, "old", "send-started", &serde_json::json!({}), old)
            .unwrap();
    }
    l.audit_append(&keys, "new", "send-started", &serde_json::json!({}), now())
        .unwrap();
    // An incomplete old campaign keeps its rows: they are what stops a resend.
    let (a, x) = ([1u8; 32], [2u8; 32]);
    l.enqueue("old", &[(a, true)], old).unwrap();
    l.enqueue("open", &[(x, true)], old).unwrap();
    l.mark_complete("old", old).unwrap();
    l.suppress(&a, REASON_UNSUBSCRIBE, old).unwrap();
    let p = l.purge(&keys, 365, now()).unwrap();
    assert_eq!(
        p,
        Purged {
            deliveries: 1,
            bounces: 0,
            audit_events: 3,
            kept_incomplete: 1
        }
    );
    assert_eq!(
        l.audit_verify(&keys).unwrap().map(|v| v.events),
        Ok(2),
        "the kept event and the purge event"
    );
    assert!(
        l.completed_at("old").unwrap().is_some(),
        "a purged campaign never sends again"
    );
    assert!(l.is_suppressed(&a).unwrap(), "an unsubscribe is forever");
    assert_eq!(l.counts("open").unwrap().pending, 1);
    assert!(l.deliveries_of(&a).unwrap().is_empty());
    let cp = l.audit_checkpoint(&keys).unwrap().unwrap().unwrap();
    assert_eq!(cp.next_seq, 4);
    b.sql("UPDATE audit_checkpoint SET next_seq = 3");
    assert_eq!(
        l.audit_verify(&keys).unwrap(),
        Err(Broken {
            seq: 0,
            why: "checkpoint was edited after a purge".into()
        })
    );
}

fn events_after_a_purge_of_everything_continue(b: &dyn Backend) {
    let keys = Keys::from_master(&[5; 32]);
    let mut l = b.open();
    let old = tact::consent::parse_time("2025-01-01T00:00:00Z").unwrap();
    l.audit_append(&keys, "old", "send-started", &serde_json::json!({}), old)
        .unwrap();
    l.purge(&keys, 1, old + TimeDelta::days(30)).unwrap();
    l.purge(&keys, 1, now()).unwrap();
    l.audit_append(&keys, "new", "send-started", &serde_json::json!({}), now())
        .unwrap();
    assert_eq!(l.audit_verify(&keys).unwrap().map(|v| v.events), Ok(2));
}

fn forget_suppresses_and_deletes_one_persons_rows(b: &dyn Backend) {
    let keys = Keys::from_master(&[3; 32]);
    let mut l = b.open();
    let ann = keys.recipient_hash("ann@example.com");
    let bob = keys.recipient_hash("bob@example.com");
    for c in ["a", "b"] {
        l.enqueue(c, &[(ann, true), (bob, false)], now()).unwrap();
        l.claim(c, &ann, now()).unwrap();
        l.finish(c, &ann, Status::Sent, &Reply::default(), None, now())
            .unwrap();
    }
    l.suppress(&ann, "manual", now()).unwrap();
    let rows = l.deliveries_of(&ann).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].status.as_str(), rows[0].variant.as_str()),
        ("sent", "personalised")
    );
    assert_eq!(l.deliveries_of(&bob).unwrap()[0].variant, "generic");
    assert_eq!(l.forget(&ann, now()).unwrap(), 2);
    assert!(l.deliveries_of(&ann).unwrap().is_empty());
    assert_eq!(l.deliveries_of(&bob).unwrap().len(), 2, "others untouched");
    assert_eq!(
        l.suppression(&ann).unwrap().map(|(r, _)| r).as_deref(),
        Some(REASON_ERASURE),
        "the reason says why"
    );
    // Forgetting twice is harmless.
    assert_eq!(l.forget(&ann, now()).unwrap(), 0);
}

fn tokens_suppress_once(b: &dyn Backend) {
    let keys = Keys::from_master(&[4; 32]);
    let mut l = b.open();
    let h = keys.recipient_hash("ann@example.com");
    let t = keys.seal_token("winter-sale", &h);
    let first = l
        .unsubscribe_token(keys.token_key(), &t, now())
        .unwrap()
        .unwrap();
    assert_eq!(first.campaign, "winter-sale");
    assert!(first.new);
    assert!(
        !l.unsubscribe_token(keys.token_key(), &t, now())
            .unwrap()
            .unwrap()
            .new
    );
    let other = Keys::from_master(&[5; 32]);
    let foreign = other.seal_token("winter-sale", &other.recipient_hash("x@example.com"));
    assert_eq!(
        l.unsubscribe_token(keys.token_key(), &foreign, now())
            .unwrap(),
        None
    );
    assert_eq!(
        l.suppression(&h).unwrap().map(|(r, _)| r).as_deref(),
        Some(REASON_UNSUBSCRIBE)
    );
    let many = [[1u8; 32], [2u8; 32], h, [1u8; 32]];
    assert_eq!(l.suppress_many(&many, REASON_IMPORT, now()).unwrap(), 2);
    assert_eq!(l.suppress_many(&many, REASON_IMPORT, now()).unwrap(), 0);
}

fn a_different_key_is_refused(b: &dyn Backend) {
    let (ours, theirs) = (Keys::from_master(&[1; 32]), Keys::from_master(&[2; 32]));
    assert_ne!(ours.key_id(), theirs.key_id());
    let mut first = b.open();
    first.check_key(&ours.key_id()).unwrap();
    first.check_key(&ours.key_id()).unwrap();
    let mut second = b.open();
    second.check_key(&ours.key_id()).unwrap();
    let e = b.open().check_key(&theirs.key_id()).unwrap_err();
    assert!(e.is_input(), "exit 2: {e}");
    let m = e.to_string();
    assert!(m.contains("same key") && m.contains("--import-key"), "{m}");
    // The store holds an identifier, never the key or a plain hash of it.
    let id = ours.key_id();
    assert_ne!(&id[..], &[1u8; 32][..]);
}

fn a_bounce_token_names_its_campaign_and_recipient(b: &dyn Backend) {
    use tact::state::verp::Attributed;
    let keys = Keys::from_master(&[4; 32]);
    let mut l = b.open();
    let ann = keys.recipient_hash("ann@example.com");
    let bob = keys.recipient_hash("bob@example.com");
    // A campaign name far longer than a local part, and a neighbour whose hash shares the
    // token's 80-bit prefix but not the rest (only the ledger can tell them apart).
    let long = format!("spring-{}", "x".repeat(200));
    let mut twin = ann;
    twin[31] ^= 1;
    l.enqueue("winter-sale", &[(ann, true), (bob, false)], now())
        .unwrap();
    l.enqueue(&long, &[(ann, true)], now()).unwrap();
    l.enqueue("autumn", &[(twin, true)], now()).unwrap();

    let attribute = |l: &Ledger, t: &str| keys.attribute_bounce(&**l, t).unwrap();
    assert_eq!(
        attribute(&l, &keys.seal_bounce_token("winter-sale", &ann)),
        Attributed::Recipient {
            campaign: "winter-sale".into(),
            hash: ann
        }
    );
    assert_eq!(
        attribute(&l, &keys.seal_bounce_token(&long, &ann).to_uppercase()),
        Attributed::Recipient {
            campaign: long.clone(),
            hash: ann
        },
        "a case-folding MTA changes nothing"
    );
    assert_eq!(
        attribute(&l, &keys.seal_bounce_token("autumn", &twin)),
        Attributed::Recipient {
            campaign: "autumn".into(),
            hash: twin
        }
    );
    assert_eq!(
        attribute(&l, &keys.seal_bounce_token("winter-sale", &bob)),
        Attributed::Recipient {
            campaign: "winter-sale".into(),
            hash: bob
        }
    );
    // Sealed, but nobody fits: a campaign bob was never in, or a row erased since.
    assert_eq!(
        attribute(&l, &keys.seal_bounce_token(&long, &bob)),
        Attributed::NoRow
    );
    l.forget(&bob, now()).unwrap();
    assert_eq!(
        attribute(&l, &keys.seal_bounce_token("winter-sale", &bob)),
        Attributed::NoRow
    );
    assert_eq!(
        attribute(&l, &keys.seal_test_bounce_token("winter-sale")),
        Attributed::Test
    );
    // Two rows of one campaign that share the token's 80 bits (never in practice: 2^-80):
    // the token cannot tell them apart, so it names neither rather than guess.
    let mut sibling = bob;
    sibling[20] ^= 0x80;
    l.enqueue("winter-sale", &[(sibling, true)], now()).unwrap();
    assert_eq!(
        attribute(&l, &keys.seal_bounce_token("winter-sale", &sibling)),
        Attributed::Recipient {
            campaign: "winter-sale".into(),
            hash: sibling
        }
    );
    let mut clash = sibling;
    clash[31] ^= 1;
    l.enqueue("winter-sale", &[(clash, true)], now()).unwrap();
    assert_eq!(
        attribute(&l, &keys.seal_bounce_token("winter-sale", &sibling)),
        Attributed::NoRow
    );
    let other = Keys::from_master(&[5; 32]);
    for forged in [
        other.seal_bounce_token("winter-sale", &ann),
        keys.seal_token("winter-sale", &ann),
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_string(),
        String::new(),
    ] {
        assert_eq!(attribute(&l, &forged), Attributed::NotOurs, "{forged}");
    }
}
