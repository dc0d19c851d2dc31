//! The bounce policy: what an imported report does to the suppression list. One function
//! for every caller (`tact bounces import`, the IMAP import, `run-due`, the TUI's `b`), so
//! they cannot disagree.
//!
//! - `hard` suppresses at once (reason `bounce`); `complaint` suppresses at once (reason
//!   `complaint`); an entry already on the list keeps its reason and date;
//! - `soft` suppresses (reason `bounce`) once the recipient has `soft_limit` soft bounces
//!   within `soft_window_days`, counted from the moments they were imported;
//! - `sender` is counted for the campaign and leaves the recipient alone: the sender was
//!   refused, not the address; `auto-reply`, `delivered` and `unknown` are only counted.
//!
//! Who a finding is about: a VERP token that opens under this state's key and names one
//! ledger row gives the campaign and the recipient exactly. Otherwise the address in the
//! report, hashed with the ledger key (the same normalisation as everywhere), and the
//! campaign from the returned message (Feedback-ID, List-Id) when the ledger sent that
//! campaign to that recipient, else the campaign that last reached them. A bounce of a
//! test message (its inert token) counts for nothing. A bounce without a token about an
//! address this state never sent to is unattributed and suppresses nobody (anyone can
//! mail the bounce address); a complaint is heeded whoever it names.
//!
//! The same report imported twice counts once: the store keeps a keyed hash of each
//! report's key and records a report, its events and its suppressions in one transaction.
//! Every decision is an audit event naming the recipient by a hash prefix at most.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::{Finding, Kind, Report};
use crate::error::Result;
use crate::state::bounces::{
    BounceEvent, NO_CAMPAIGN, REASON_BOUNCE, REASON_COMPLAINT, Recorded, SuppressWhen, Suppressed,
};
use crate::state::ledger::Ledger;
use crate::state::verp::Attributed;
use crate::state::{Keys, RecipientHash, hex, short_hash};

/// The audit event of one decision, and of one whole import.
pub const AUDIT_BOUNCE: &str = "bounce";
pub const AUDIT_IMPORTED: &str = "bounces-imported";

/// How soft bounces count: `[bounces] soft_limit` and `soft_window_days` of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BouncePolicy {
    pub soft_limit: u32,
    pub soft_window_days: u32,
}

impl Default for BouncePolicy {
    fn default() -> Self {
        BouncePolicy::from(&crate::campaign::Bounces::default())
    }
}

impl From<&crate::campaign::Bounces> for BouncePolicy {
    fn from(b: &crate::campaign::Bounces) -> Self {
        BouncePolicy {
            soft_limit: b.soft_limit,
            soft_window_days: b.soft_window_days,
        }
    }
}

/// What an import did, by finding (one report may name several recipients).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    /// Reports read, duplicates included.
    pub reports: u64,
    pub hard: u64,
    pub soft: u64,
    pub complaints: u64,
    pub sender: u64,
    pub auto_reply: u64,
    pub delivered: u64,
    pub unknown: u64,
    /// Reports imported before: skipped whole.
    pub duplicates: u64,
    /// Recipients put on the suppression list by this import.
    pub suppressed: u64,
    /// Hard, soft or complaint findings about nobody we could name (no token that opens,
    /// no address): counted, nobody suppressed.
    pub unattributed: u64,
    /// Findings about test messages (their inert token): nothing counted.
    pub tests: u64,
}

impl ImportCounts {
    pub fn add(&mut self, o: &ImportCounts) {
        let ImportCounts {
            reports,
            hard,
            soft,
            complaints,
            sender,
            auto_reply,
            delivered,
            unknown,
            duplicates,
            suppressed,
            unattributed,
            tests,
        } = *o;
        self.reports += reports;
        self.hard += hard;
        self.soft += soft;
        self.complaints += complaints;
        self.sender += sender;
        self.auto_reply += auto_reply;
        self.delivered += delivered;
        self.unknown += unknown;
        self.duplicates += duplicates;
        self.suppressed += suppressed;
        self.unattributed += unattributed;
        self.tests += tests;
    }

    fn count(&mut self, kind: Kind) {
        let slot = match kind {
            Kind::Hard => &mut self.hard,
            Kind::Soft => &mut self.soft,
            Kind::Complaint => &mut self.complaints,
            Kind::Sender => &mut self.sender,
            Kind::AutoReply => &mut self.auto_reply,
            Kind::Delivered => &mut self.delivered,
            Kind::Unknown => &mut self.unknown,
        };
        *slot += 1;
    }
}

/// Imports every report, each in its own transaction (an error stops the import; what was
/// recorded stays, and importing again picks up the rest), then appends one summary event
/// when there was anything to import.
pub fn import(
    ledger: &mut Ledger,
    keys: &Keys,
    policy: &BouncePolicy,
    reports: impl IntoIterator<Item = Report>,
    now: DateTime<Utc>,
) -> Result<ImportCounts> {
    let mut total = ImportCounts::default();
    for report in reports {
        total.add(&import_one(ledger, keys, policy, &report, now)?);
    }
    // A mailbox checked every few minutes (run-due) is mostly empty: no event for nothing.
    if total.reports == 0 {
        return Ok(total);
    }
    let body = serde_json::json!({
        "counts": total,
        "soft_limit": policy.soft_limit,
        "soft_window_days": policy.soft_window_days,
    });
    ledger.audit_append(keys, NO_CAMPAIGN, AUDIT_IMPORTED, &body, now)?;
    Ok(total)
}

/// Who a finding is about, and how we know.
struct Attribution {
    campaign: String,
    recipient: Option<RecipientHash>,
    by: &'static str,
}

/// Imports one report (for callers that act on each, like the IMAP import that flags
/// what it has processed). A duplicate returns `duplicates: 1` and changes nothing.
pub fn import_one(
    ledger: &mut Ledger,
    keys: &Keys,
    policy: &BouncePolicy,
    report: &Report,
    now: DateTime<Utc>,
) -> Result<ImportCounts> {
    let mut counts = ImportCounts {
        reports: 1,
        ..ImportCounts::default()
    };
    let mut seen = HashSet::new();
    let mut decided: Vec<(&Finding, Attribution)> = Vec::new();
    let mut events = Vec::new();
    for f in &report.findings {
        let Some(who) = attribute(ledger, keys, f)? else {
            counts.tests += 1;
            continue;
        };
        // One report naming the same person twice (a DSN's per-recipient part and its
        // text) is one bounce.
        let once = (f.kind, who.recipient, who.campaign.clone());
        if !seen.insert(once) {
            continue;
        }
        events.push(event(f.kind, &who, policy, now));
        decided.push((f, who));
    }
    let Some(recorded) = ledger.record_report(&keys.report_hash(&report.key), &events, now)? else {
        return Ok(ImportCounts {
            reports: 1,
            duplicates: 1,
            ..ImportCounts::default()
        });
    };
    let report_id = hex(&keys.report_hash(&report.key)[..6]);
    for ((f, who), r) in decided.iter().zip(&recorded) {
        counts.count(f.kind);
        let wants_recipient = matches!(f.kind, Kind::Hard | Kind::Soft | Kind::Complaint);
        if wants_recipient && who.recipient.is_none() {
            counts.unattributed += 1;
        }
        if r.suppressed == Suppressed::New {
            counts.suppressed += 1;
        }
        let body = audit_body(&report_id, f, who, *r, policy);
        ledger.audit_append(keys, &who.campaign, AUDIT_BOUNCE, &body, now)?;
    }
    Ok(counts)
}

/// `None` for a test message's token: nobody to count.
fn attribute(ledger: &Ledger, keys: &Keys, f: &Finding) -> Result<Option<Attribution>> {
    for token in &f.tokens {
        match keys.attribute_bounce(&**ledger, token)? {
            Attributed::Recipient { campaign, hash } => {
                return Ok(Some(Attribution {
                    campaign,
                    recipient: Some(hash),
                    by: "token",
                }));
            }
            Attributed::Test => return Ok(None),
            Attributed::NoRow | Attributed::NotOurs => {}
        }
    }
    let recipient = f
        .recipient
        .as_deref()
        .map(|a| a.trim().trim_start_matches('<').trim_end_matches('>'))
        .filter(|a| a.contains('@'))
        .map(|a| keys.recipient_hash(a));
    let Some(hash) = recipient else {
        return Ok(Some(Attribution {
            campaign: NO_CAMPAIGN.into(),
            recipient: None,
            by: "none",
        }));
    };
    // The campaign the returned message names, if it did reach them; else the last one
    // that did. A name in a report is only a claim: it never becomes a campaign of its own.
    let rows = ledger.deliveries_of(&hash)?;
    let mut reached = rows.iter().filter(|d| d.status != "pending").peekable();
    if reached.peek().is_none() && f.kind != Kind::Complaint {
        // Anyone can mail the bounce address a report naming anyone. Without a token, a
        // bounce for an address this state never sent to is a claim nothing checks, and
        // it must not take a person off the list: counted as unattributed (if the address
        // is dead, our first message to it bounces with a token and settles it). A
        // complaint is different: it says "do not mail me", and wrongly heeding a forged
        // one costs an email, while ignoring a real one mails someone who objected.
        return Ok(Some(Attribution {
            campaign: NO_CAMPAIGN.into(),
            recipient: None,
            by: "none",
        }));
    }
    let campaign = match f.campaign.as_deref() {
        Some(c) if reached.clone().any(|d| d.campaign == c) => c.to_string(),
        _ => reached
            .max_by_key(|d| d.at)
            .map_or_else(|| NO_CAMPAIGN.to_string(), |d| d.campaign.clone()),
    };
    Ok(Some(Attribution {
        campaign,
        recipient: Some(hash),
        by: "address",
    }))
}

fn event(kind: Kind, who: &Attribution, policy: &BouncePolicy, now: DateTime<Utc>) -> BounceEvent {
    let rule = |reason, at_least, days: u32| SuppressWhen {
        reason,
        at_least,
        since: now - TimeDelta::days(i64::from(days)),
    };
    let suppress = match kind {
        Kind::Hard => Some(rule(REASON_BOUNCE, 1, 0)),
        Kind::Complaint => Some(rule(REASON_COMPLAINT, 1, 0)),
        Kind::Soft => Some(rule(
            REASON_BOUNCE,
            policy.soft_limit.max(1),
            policy.soft_window_days,
        )),
        Kind::Sender | Kind::AutoReply | Kind::Delivered | Kind::Unknown => None,
    };
    BounceEvent {
        kind: kind.as_str(),
        campaign: who.campaign.clone(),
        // Kept only where the policy needs the person: nowhere else does a row name them.
        recipient: suppress.and(who.recipient),
        suppress,
    }
}

fn audit_body(
    report: &str,
    f: &Finding,
    who: &Attribution,
    r: Recorded,
    policy: &BouncePolicy,
) -> serde_json::Value {
    let decision = match (f.kind, who.recipient, r.suppressed) {
        (_, _, Suppressed::New) => "suppressed",
        (_, _, Suppressed::Already) => "already-suppressed",
        (Kind::Hard | Kind::Soft | Kind::Complaint, None, _) => "unattributed",
        (Kind::Soft, Some(_), _) => "soft-counted",
        (Kind::Sender, _, _) => "sender-counted",
        _ => "counted",
    };
    let mut body = serde_json::json!({
        "report": report,
        "kind": f.kind,
        "status": f.status.as_deref().and_then(status),
        "code": f.code,
        "reason": word(&f.reason),
        "by": who.by,
        "recipient": who.recipient.as_ref().map(short_hash),
        "decision": decision,
    });
    if f.kind == Kind::Soft && who.recipient.is_some() {
        body["soft"] = serde_json::json!({
            "count": r.count,
            "limit": policy.soft_limit,
            "window_days": policy.soft_window_days,
        });
    }
    body
}

/// A reason word as the audit log keeps it: a short run of `[a-z0-9-]` as the classifier
/// writes them, else `other`. Whatever a report holds, an address cannot reach the log.
fn word(s: &str) -> &str {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { s } else { "other" }
}

/// An enhanced status code (RFC 3463: `class.subject.detail`, digits), else nothing.
fn status(s: &str) -> Option<&str> {
    let parts: Vec<&str> = s.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_but_a_short_word_reaches_the_log() {
        assert_eq!(word("no-such-user"), "no-such-user");
        for bad in [
            "ann@example.com",
            "annexample.com",
            "Ann",
            "",
            &"x".repeat(41),
        ] {
            assert_eq!(word(bad), "other", "{bad:?}");
        }
        assert_eq!(status("5.1.1"), Some("5.1.1"));
        assert_eq!(status("4.2.22"), Some("4.2.22"));
        for bad in ["5.1", "5.1.1.1", "a.b.c", "5.1.1 ann@example.com", "5..1"] {
            assert_eq!(status(bad), None, "{bad:?}");
        }
    }

    use crate::state::ledger::{Reply, Status};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default()
    }

    fn finding(kind: Kind, recipient: Option<&str>, tokens: &[String]) -> Finding {
        Finding {
            kind,
            status: Some("5.1.1".into()),
            code: Some(550),
            reason: "no-such-user".into(),
            recipient: recipient.map(String::from),
            tokens: tokens.to_vec(),
            campaign: None,
        }
    }

    fn report(n: u8, findings: Vec<Finding>) -> Report {
        Report {
            file: format!("r{n}.eml"),
            key: [n; 32],
            findings,
        }
    }

    struct World {
        _dir: tempfile::TempDir,
        ledger: Ledger,
        keys: Keys,
    }

    /// A state whose ledger has sent `winter` and `spring` to ann and bob.
    fn world() -> Result<World> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::Other(e.to_string()))?;
        let mut ledger = Ledger::open(dir.path(), false)?;
        let keys = Keys::from_master(&[3; 32]);
        for (c, at) in [("winter", now() - TimeDelta::days(9)), ("spring", now())] {
            for who in ["ann@example.com", "bob@example.com"] {
                let h = keys.recipient_hash(who);
                ledger.enqueue(c, &[(h, true)], at)?;
                ledger.claim(c, &h, at)?;
                ledger.finish(c, &h, Status::Sent, &Reply::default(), None, at)?;
            }
        }
        Ok(World {
            _dir: dir,
            ledger,
            keys,
        })
    }

    fn reason(w: &World, who: &str) -> Result<Option<String>> {
        Ok(w.ledger
            .suppression(&w.keys.recipient_hash(who))?
            .map(|(r, _)| r))
    }

    /// Anyone can write to the bounce mailbox. A bounce with no token of ours, naming an
    /// address this state never sent to, must not suppress anyone: it is counted as
    /// unattributed and the person stays mailable.
    #[test]
    fn a_forged_report_about_someone_never_mailed_suppresses_nobody() -> Result<()> {
        let mut w = world()?;
        let p = BouncePolicy::default();
        for (n, kind) in [
            (10, Kind::Hard),
            (11, Kind::Soft),
            (12, Kind::Soft),
            (13, Kind::Soft),
        ] {
            let mut f = finding(kind, Some("victim@example.org"), &["b".repeat(37)]);
            f.campaign = Some("winter".into());
            let c = import(&mut w.ledger, &w.keys, &p, [report(n, vec![f])], now())?;
            assert_eq!((c.suppressed, c.unattributed), (0, 1), "{kind:?}");
        }
        assert_eq!(reason(&w, "victim@example.org")?, None);
        assert_eq!(w.ledger.bounce_figures("winter")?.hard, 0);
        // A complaint is heeded whoever sent it: wrongly not mailing is the safe error.
        let f = finding(Kind::Complaint, Some("objector@example.org"), &[]);
        let c = import(&mut w.ledger, &w.keys, &p, [report(14, vec![f])], now())?;
        assert_eq!(c.suppressed, 1);
        assert_eq!(
            reason(&w, "objector@example.org")?.as_deref(),
            Some("complaint")
        );
        Ok(())
    }

    #[test]
    fn a_token_names_campaign_and_recipient_and_the_address_is_the_fallback() -> Result<()> {
        let mut w = world()?;
        let p = BouncePolicy::default();
        let ann = w.keys.recipient_hash("ann@example.com");
        let token = w.keys.seal_bounce_token("winter", &ann);
        // The report's own address is someone else's: the token wins.
        let r = report(
            1,
            vec![finding(Kind::Hard, Some("other@example.net"), &[token])],
        );
        let c = import(&mut w.ledger, &w.keys, &p, [r], now())?;
        assert_eq!((c.hard, c.suppressed, c.unattributed), (1, 1, 0));
        assert_eq!(reason(&w, "ann@example.com")?.as_deref(), Some("bounce"));
        assert_eq!(reason(&w, "other@example.net")?, None);
        assert_eq!(w.ledger.bounce_figures("winter")?.hard, 1);
        assert_eq!(w.ledger.bounce_figures("spring")?.hard, 0);

        // A forged token, then the address: attributed by address, to the campaign that
        // reached bob last (spring), since the report's own claim names one that never did.
        let mut f = finding(Kind::Hard, Some(" <Bob@Example.COM> "), &["a".repeat(37)]);
        f.campaign = Some("made-up".into());
        let c = import(&mut w.ledger, &w.keys, &p, [report(2, vec![f])], now())?;
        assert_eq!((c.hard, c.suppressed), (1, 1));
        assert_eq!(reason(&w, "bob@example.com")?.as_deref(), Some("bounce"));
        assert_eq!(w.ledger.bounce_figures("spring")?.hard, 1);
        assert_eq!(w.ledger.bounce_figures("made-up")?.hard, 0);
        let events = w.ledger.audit_events(None)?;
        let text =
            serde_json::to_string(&events).map_err(|e| crate::Error::Other(e.to_string()))?;
        for leak in ["@", "ann", "bob", "other", "Example"] {
            assert!(!text.contains(leak), "{leak} in the audit log: {text}");
        }
        let bys: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == AUDIT_BOUNCE)
            .filter_map(|e| e.body["by"].as_str())
            .collect();
        assert_eq!(bys, ["token", "address"]);
        Ok(())
    }

    #[test]
    fn each_kind_does_what_the_policy_says_and_a_report_counts_once() -> Result<()> {
        let mut w = world()?;
        let p = BouncePolicy {
            soft_limit: 2,
            soft_window_days: 30,
        };
        let ann = "ann@example.com";
        let reports = vec![
            report(1, vec![finding(Kind::Sender, Some(ann), &[])]),
            report(2, vec![finding(Kind::AutoReply, Some(ann), &[])]),
            report(3, vec![finding(Kind::Delivered, Some(ann), &[])]),
            report(4, vec![finding(Kind::Unknown, None, &[])]),
            // The same person twice in one report is one soft bounce.
            report(
                5,
                vec![
                    finding(Kind::Soft, Some(ann), &[]),
                    finding(Kind::Soft, Some("ANN@example.com"), &[]),
                ],
            ),
            report(5, vec![finding(Kind::Soft, Some(ann), &[])]),
            report(6, vec![finding(Kind::Hard, None, &[])]),
        ];
        let c = import(&mut w.ledger, &w.keys, &p, reports, now())?;
        assert_eq!(
            c,
            ImportCounts {
                reports: 7,
                hard: 1,
                soft: 1,
                sender: 1,
                auto_reply: 1,
                delivered: 1,
                unknown: 1,
                duplicates: 1,
                unattributed: 1,
                ..ImportCounts::default()
            }
        );
        assert_eq!(
            reason(&w, ann)?,
            None,
            "one soft bounce and a sender refusal"
        );
        let f = w.ledger.bounce_figures("spring")?;
        assert_eq!((f.sender, f.soft, f.sent), (1, 1, 2));
        // The second soft bounce reaches the limit of 2.
        let r = report(7, vec![finding(Kind::Soft, Some(ann), &[])]);
        let c = import(&mut w.ledger, &w.keys, &p, [r], now())?;
        assert_eq!((c.soft, c.suppressed), (1, 1));
        assert_eq!(reason(&w, ann)?.as_deref(), Some("bounce"));
        // A complaint about someone already suppressed keeps the first reason; about
        // someone else it is the reason.
        let r = report(
            8,
            vec![
                finding(Kind::Complaint, Some(ann), &[]),
                finding(Kind::Complaint, Some("bob@example.com"), &[]),
            ],
        );
        let c = import(&mut w.ledger, &w.keys, &p, [r], now())?;
        assert_eq!((c.complaints, c.suppressed), (2, 1));
        assert_eq!(reason(&w, ann)?.as_deref(), Some("bounce"));
        assert_eq!(reason(&w, "bob@example.com")?.as_deref(), Some("complaint"));
        Ok(())
    }

    #[test]
    fn an_empty_import_leaves_no_event_and_a_duplicate_only_the_summary() -> Result<()> {
        let mut w = world()?;
        let p = BouncePolicy::default();
        let before = w.ledger.audit_events(None)?.len();
        assert_eq!(
            import(&mut w.ledger, &w.keys, &p, Vec::new(), now())?,
            ImportCounts::default()
        );
        assert_eq!(w.ledger.audit_events(None)?.len(), before);
        let r = || report(1, vec![finding(Kind::Hard, Some("ann@example.com"), &[])]);
        import(&mut w.ledger, &w.keys, &p, [r()], now())?;
        let after = w.ledger.audit_events(None)?;
        assert_eq!(after.len(), before + 2, "the decision and the summary");
        import(&mut w.ledger, &w.keys, &p, [r()], now())?;
        let again = w.ledger.audit_events(None)?;
        assert_eq!(again.len(), after.len() + 1, "only the summary");
        assert_eq!(again[again.len() - 1].body["counts"]["duplicates"], 1);
        Ok(())
    }

    #[test]
    fn a_test_messages_bounce_counts_for_nothing() -> Result<()> {
        let mut w = world()?;
        let token = w.keys.seal_test_bounce_token("winter");
        let r = report(
            1,
            vec![finding(Kind::Hard, Some("ann@example.com"), &[token])],
        );
        let c = import(&mut w.ledger, &w.keys, &BouncePolicy::default(), [r], now())?;
        assert_eq!((c.tests, c.hard, c.suppressed), (1, 0, 0));
        assert_eq!(reason(&w, "ann@example.com")?, None);
        Ok(())
    }
}
