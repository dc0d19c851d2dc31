//! Who is at fault: the enhanced status code (RFC 3463), the SMTP reply code and the
//! diagnostic text, read together into a [`Kind`] and a one-word reason.
//!
//! The order of decision, and why:
//!
//! 1. **The text wins**, through [`RULES`], first match wins. Servers put a generic status
//!    on specific refusals (`550 5.7.1` for a block list and for "no such user" alike, or
//!    `5.0.0` for everything), and the words are what their operators actually wrote.
//! 2. Within the rules, **the sender's fault is tried before the recipient's**, except for
//!    a few recipient phrases that contain sender-ish words (Microsoft's "Recipient address
//!    rejected: Access denied" is its "no such user"; "account disabled"; "has moved"). So
//!    `550 5.1.1 … blocked due to spam` is `sender`: a refusal that names spam or a block
//!    list tells us the server judged the *message or its sender*, and its status is not
//!    to be trusted for the address. Suppressing a good address is permanent and silent,
//!    while leaving a dead one costs one more bounce that the sender counts show.
//! 3. **A temporary status never makes hard**: a 4.x.x status (or 4xx reply) whose text
//!    says "user unknown" is `soft`, with that reason; the server asked us to try again.
//! 4. With no rule matching, the status decides ([`by_status`]); a few statuses are
//!    specific enough (5.1.1, 5.1.2, 5.2.2, 5.7.x, …). 5.0.0, 5.5.x and friends are not.
//! 5. With no status either, the reply code decides: 4xx is `soft`, 551 is `moved`, 552
//!    `mailbox-full`; a bare 550 or 554 is `unknown` (`unclassified`): a 5xx alone never
//!    makes hard.

use super::Kind;

/// One row of the table: any of `phrases` (lower case; the text is lower-cased and its
/// whitespace collapsed) in the diagnostic makes it `kind` for `reason`.
#[derive(Debug)]
pub struct Rule {
    pub kind: Kind,
    pub reason: &'static str,
    pub phrases: &'static [&'static str],
}

const fn rule(kind: Kind, reason: &'static str, phrases: &'static [&'static str]) -> Rule {
    Rule {
        kind,
        reason,
        phrases,
    }
}

use Kind::{Hard, Sender, Soft};

/// The text rules, in order; the first whose phrase occurs wins. Each has a firing
/// example and a near miss in the tests below (`every_rule_fires_and_has_a_near_miss`).
pub const RULES: &[Rule] = &[
    // --- Recipient phrases that contain sender-ish words: before the sender rules. ---
    // Microsoft's directory-based edge blocking: the address is not in the tenant.
    rule(
        Hard,
        "no-such-user",
        &[
            "recipient address rejected: access denied",
            "resolver.adr.recipientnotfound",
        ],
    ),
    rule(
        Hard,
        "disabled",
        &[
            "account is disabled",
            "tried to reach is disabled",
            "user is disabled",
            "account has been disabled",
            "account disabled",
            "mailbox is disabled",
            "mailbox disabled",
            "mailbox has been disabled",
            "account is inactive",
            "account has been deactivated",
            "mailbox is inactive",
            "inactive user",
            "account is blocked",
            "account has been blocked",
            "account has been suspended",
            "account is suspended",
            "account expired",
            "account has expired",
            "user account is expired",
            "account closed",
            "account has been closed",
        ],
    ),
    rule(
        Hard,
        "moved",
        &[
            "has moved",
            "address has changed",
            "no longer with",
            "no longer employed",
            "no longer active",
            "no longer in use",
            "user not local",
        ],
    ),
    // --- The sender's fault: the recipient stays mailable. ---
    rule(Sender, "dmarc", &["dmarc"]),
    rule(Sender, "dkim", &["dkim", "domainkeys"]),
    rule(
        Sender,
        "spf",
        &[
            "spf ",
            "spf:",
            "spf)",
            "spf-",
            "spf=",
            "spf.",
            "spf,",
            "sender policy framework",
        ],
    ),
    rule(
        Sender,
        "no-ptr",
        &[
            "reverse dns",
            "reverse-dns",
            "rdns",
            "ptr record",
            "no ptr",
            "reverse lookup",
            "reverse hostname",
            "cannot find your hostname",
            "cannot find your reverse",
        ],
    ),
    // Named block lists, before "spam": "spamhaus" contains it.
    rule(
        Sender,
        "blocked",
        &[
            "spamhaus",
            "blacklist",
            "black list",
            "blocklist",
            "block list",
            "blocked using",
            "dnsbl",
            "rbl",
            "barracuda",
            "spamcop",
            "sorbs",
            "banned sending ip",
            "traffic not accepted",
            "permanently deferred",
            "connections will not be accepted",
        ],
    ),
    rule(Sender, "virus", &["virus", "malware", "infected"]),
    rule(
        Sender,
        "spam",
        &[
            "spam",
            "unsolicited",
            "junk mail",
            "content rejected",
            "message content",
            "bulk mail",
        ],
    ),
    rule(
        Sender,
        "reputation",
        &[
            "reputation",
            "user complaints",
            "unexpected volume",
            "poor sending",
        ],
    ),
    rule(
        Sender,
        "rate-limited",
        &[
            "rate limit",
            "rate-limit",
            "ratelimit",
            "sending rate",
            "exceeded the rate",
            "sending quota",
            "sending limit",
            "throttl",
            "too many messages from",
        ],
    ),
    rule(
        Sender,
        "too-large",
        &[
            "message size exceeds",
            "message too large",
            "message is too large",
            "message too big",
            "message is too big",
            "message exceeds",
            "exceeds the maximum message size",
            "size of the message",
        ],
    ),
    rule(
        Sender,
        "relay-denied",
        &[
            "relay access denied",
            "relaying denied",
            "relay not permitted",
            "relaying not allowed",
            "not permitted to relay",
            "unable to relay",
        ],
    ),
    rule(Sender, "blocked", &["blocked", "banned", "denylisted"]),
    rule(
        Sender,
        "policy",
        &[
            "policy",
            "not authorized",
            "not authorised",
            "administrative prohibition",
            "access denied",
            "sender address rejected",
            "sender verify failed",
            "sender verification",
            "sender domain",
            "sender is not allowed",
            "helo command rejected",
            "client host rejected",
            "authentication required",
            "not permitted",
            "prohibited",
        ],
    ),
    // --- Temporary: before the recipient rules ("host not found, try again"). ---
    rule(
        Soft,
        "mailbox-full",
        &[
            "mailbox full",
            "mailbox is full",
            "mail box full",
            "mailbox is over",
            "inbox is full",
            "over quota",
            "over its quota",
            "quota exceeded",
            "exceeded storage",
            "exceeds quota",
            "storage limit",
            "mailbox size limit",
            "out of storage",
            "not enough space",
            "insufficient disk space",
            "user is over",
        ],
    ),
    rule(
        Soft,
        "greylisted",
        &["greylist", "graylist", "grey-list", "gray-list"],
    ),
    rule(
        Soft,
        "too-many-connections",
        &[
            "too many connections",
            "too many concurrent",
            "too many simultaneous",
            "too many sessions",
        ],
    ),
    rule(
        Soft,
        "timeout",
        &[
            "retry timeout exceeded",
            "timed out",
            "timeout",
            "delivery time expired",
            "message expired",
            "could not be delivered within",
            "delivery expired",
            "has been delayed",
            "host not found, try again",
            "connection refused",
            "no route to host",
            "network is unreachable",
            "connection reset",
            "lost connection",
        ],
    ),
    rule(
        Soft,
        "busy",
        &[
            "try again later",
            "please try again",
            "temporarily",
            "temporary failure",
            "system busy",
            "server busy",
            "server is busy",
            "receiving mail at a rate",
            "receiving mail too quickly",
            "insufficient system storage",
            "resources unavailable",
        ],
    ),
    // --- The address will never accept. ---
    rule(
        Hard,
        "no-such-domain",
        &[
            "domain not found",
            "no such domain",
            "domain does not exist",
            "domain doesn't exist",
            "host not found",
            "host or domain name not found",
            "unknown domain",
            "unrouteable mail domain",
            "unroutable mail domain",
            "name service error",
            "nxdomain",
            "no mx record",
            "null mx",
            "bad destination system address",
            "domain is not hosted",
        ],
    ),
    rule(
        Hard,
        "no-such-user",
        &[
            "user unknown",
            "unknown user",
            "no such user",
            "no such mailbox",
            "no such recipient",
            "no mailbox",
            "mailbox not found",
            "mailbox does not exist",
            "mailbox doesn't exist",
            "user not found",
            "recipient not found",
            "address not found",
            "recipient unknown",
            "unknown recipient",
            "invalid recipient",
            "invalid mailbox",
            "invalid address",
            "not a valid mailbox",
            "unrouteable address",
            "unroutable address",
            "bad destination mailbox",
            "address does not exist",
            "account does not exist",
            "does not exist",
            "doesn't exist",
            "doesn't have a",
            "couldn't be found",
            "wasn't found",
            "could not be found",
            "no longer exists",
            "not our customer",
            "unknown local part",
            "unknown or illegal alias",
            "not listed in",
            // RFC 5321's own words for 550; Outlook.com sends nothing more for an
            // unknown address. Any sender-side reason given beside it matched above.
            "mailbox unavailable",
        ],
    ),
];

/// One finding's evidence, read together.
pub fn classify(status: Option<&str>, code: Option<u16>, text: &str) -> (Kind, &'static str) {
    let class = status
        .and_then(|s| s.chars().next())
        .and_then(|c| c.to_digit(10))
        .or_else(|| code.map(|c| u32::from(c / 100)));
    if class == Some(2) {
        return (Kind::Delivered, "delivered");
    }
    let temporary = class == Some(4);
    if let Some((kind, reason)) = by_text(text) {
        // The server asked to be tried again: whatever the words, not hard.
        if temporary && kind == Kind::Hard {
            return (Kind::Soft, reason);
        }
        return (kind, reason);
    }
    if let Some(found) = status.and_then(by_status) {
        return found;
    }
    match code {
        Some(551) => (Kind::Hard, "moved"),
        Some(552) => (Kind::Soft, "mailbox-full"),
        Some(421) => (Kind::Soft, "busy"),
        Some(530 | 535) => (Kind::Sender, "policy"),
        Some(400..=499) => (Kind::Soft, "temporary"),
        _ if temporary => (Kind::Soft, "temporary"),
        _ => (Kind::Unknown, "unclassified"),
    }
}

/// The first rule whose phrase occurs in the text.
pub fn by_text(text: &str) -> Option<(Kind, &'static str)> {
    if text.is_empty() {
        return None;
    }
    let norm = normalise(text);
    RULES
        .iter()
        .find(|r| r.phrases.iter().any(|p| norm.contains(p)))
        .map(|r| (r.kind, r.reason))
}

/// Lower case, whitespace runs as one space: phrases match across folded lines.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase());
    }
    // So that phrases ending in a space ("spf ") match at the very end too.
    out.push(' ');
    out
}

/// The statuses specific enough to decide alone (RFC 3463 and the IANA registry).
pub fn by_status(status: &str) -> Option<(Kind, &'static str)> {
    let mut it = status.split('.');
    let class = it.next()?;
    let subject: u16 = it.next()?.parse().ok()?;
    let detail: u16 = it.next()?.parse().ok()?;
    let found = match (subject, detail) {
        (1, 0 | 1 | 3) => (Kind::Hard, "no-such-user"),
        (1, 2 | 10) => (Kind::Hard, "no-such-domain"),
        (1, 6) => (Kind::Hard, "moved"),
        (1, 7 | 8) => (Kind::Sender, "policy"),
        (2, 1) => (Kind::Hard, "disabled"),
        (2, 2) => (Kind::Soft, "mailbox-full"),
        (2, 3) | (3, 4) => (Kind::Sender, "too-large"),
        (3, 1 | 2) => (Kind::Soft, "busy"),
        (4, 4) => (Kind::Hard, "no-such-domain"),
        (4, 1 | 2 | 7) => (Kind::Soft, "timeout"),
        (6, _) => (Kind::Sender, "content"),
        (7, 13) => (Kind::Hard, "disabled"),
        (7, 17 | 18) => (Kind::Hard, "moved"),
        (7, 20..=22) => (Kind::Sender, "dkim"),
        (7, 23 | 24) => (Kind::Sender, "spf"),
        (7, 25) => (Kind::Sender, "no-ptr"),
        (7, 26) => (Kind::Sender, "dmarc"),
        (7, _) => (Kind::Sender, "policy"),
        _ => return None,
    };
    Some(match (class, found.0) {
        ("2", _) => (Kind::Delivered, "delivered"),
        // Temporary: the server will take it later, whatever the subject.
        ("4", Kind::Hard) => (Kind::Soft, found.1),
        ("4" | "5", _) => found,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For every rule: (kind, reason, a diagnostic it must fire on, a near miss that
    /// reads alike and must not give this kind and reason).
    const CASES: &[(Kind, &str, &str, &str)] = &[
        (
            Hard,
            "no-such-user",
            "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
            "550 5.7.1 Client host rejected: Access denied",
        ),
        (
            Hard,
            "disabled",
            "550-5.2.1 The email account that you tried to reach is disabled.",
            "550 5.7.1 Open relays are disabled for this server",
        ),
        (
            Hard,
            "moved",
            "551 User not local; please try <j@example.org>",
            "550 5.1.1 <j@example.com> removed from this server",
        ),
        (
            Sender,
            "policy",
            "550 5.1.0 Sender address rejected: Domain not found",
            "550 5.1.2 Recipient address rejected: Domain not found",
        ),
        (
            Sender,
            "dmarc",
            "550 5.7.1 Email rejected per DMARC policy for example.org",
            "550 5.7.1 Email rejected per the domain's policy",
        ),
        (
            Sender,
            "dkim",
            "550 5.7.20 No passing DKIM signature found",
            "550 5.7.20 No passing signature found",
        ),
        (
            Sender,
            "spf",
            "550 5.7.23 SPF validation failed for example.org",
            "550 5.1.1 user unknown (spfeld@example.com)",
        ),
        (
            Sender,
            "no-ptr",
            "450 4.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
            "450 4.7.1 Please try again, host [192.0.2.1] is busy",
        ),
        (
            Sender,
            "blocked",
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "554 5.7.1 Service unavailable",
        ),
        (
            Sender,
            "virus",
            "554 5.7.0 Message rejected: Virus found (Eicar-Test-Signature)",
            "554 5.7.0 Message rejected: routing loop",
        ),
        (
            Sender,
            "spam",
            "550-5.7.1 Our system has detected that this message is likely unsolicited mail.",
            "550 5.1.1 Our system has detected that this mailbox does not exist",
        ),
        (
            Sender,
            "reputation",
            "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints",
            "550 5.1.1 user unknown",
        ),
        (
            Sender,
            "rate-limited",
            "421 4.7.0 Our system has detected an increase in your sending rate, throttled",
            "421 4.7.0 Too many connections, try later",
        ),
        (
            Sender,
            "too-large",
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "552 5.2.2 Mailbox size limit exceeded",
        ),
        (
            Sender,
            "relay-denied",
            "554 5.7.1 <j@example.com>: Relay access denied",
            "554 5.7.1 <j@example.com>: relay host refused the message",
        ),
        (
            Sender,
            "blocked",
            "550 5.7.1 Message blocked by the receiving organisation",
            "550 5.1.1 The mailbox is not in our directory",
        ),
        (
            Sender,
            "policy",
            "550 5.7.1 Delivery not authorized, message refused",
            "550 5.1.1 Recipient not found",
        ),
        (
            Soft,
            "mailbox-full",
            "552 5.2.2 <j@example.com>: user is over quota",
            "552 5.3.4 message exceeds the size of this mailbox server's limit",
        ),
        (
            Soft,
            "greylisted",
            "450 4.2.0 <j@example.com>: Recipient address rejected: Greylisted, see https://example.org",
            "450 4.2.0 <j@example.com>: Recipient address rejected",
        ),
        (
            Soft,
            "too-many-connections",
            "421 4.7.0 Too many concurrent SMTP connections from this IP",
            "421 4.7.0 Too many errors on this connection, closing",
        ),
        (Soft, "timeout", "retry timeout exceeded", "retry later"),
        (
            Soft,
            "busy",
            "451 4.3.0 Temporary failure, please try again later",
            "451 4.3.0 local error in processing",
        ),
        (
            Hard,
            "no-such-domain",
            "Host or domain name not found. Name service error for name=example.invalid type=MX",
            "Host or domain name not found. Name service error for name=example.com type=MX: Host not found, try again",
        ),
        (
            Hard,
            "no-such-user",
            "550-5.1.1 The email account that you tried to reach does not exist.",
            "550 5.7.1 The email account that you tried to reach is not accepting mail from you",
        ),
    ];

    #[test]
    fn every_rule_fires_and_has_a_near_miss() {
        for (kind, reason, fires, near) in CASES {
            assert_eq!(
                by_text(fires),
                Some((*kind, *reason)),
                "should fire: {fires}"
            );
            assert_ne!(
                by_text(near),
                Some((*kind, *reason)),
                "near miss fired: {near}"
            );
        }
        // Every row of the table is covered by a case that lands on it, not an earlier one.
        for (i, r) in RULES.iter().enumerate() {
            let covered = CASES.iter().any(|(kind, reason, fires, _)| {
                *kind == r.kind
                    && *reason == r.reason
                    && RULES
                        .iter()
                        .position(|x| x.phrases.iter().any(|p| normalise(fires).contains(p)))
                        == Some(i)
            });
            assert!(
                covered,
                "rule {i} ({} {}) has no firing case",
                r.kind, r.reason
            );
        }
    }

    #[test]
    fn phrases_are_lower_case_and_trimmed_so_they_can_match() {
        for r in RULES {
            for p in r.phrases {
                assert_eq!(*p, p.to_lowercase(), "{p}");
                assert!(!p.is_empty() && !p.starts_with(' '), "{p:?}");
            }
        }
    }

    #[test]
    fn a_blocked_5_7_1_is_the_sender_and_a_bare_5xx_is_not_hard() {
        assert_eq!(
            classify(
                Some("5.7.1"),
                Some(550),
                "550 5.7.1 Message rejected: blocked"
            ),
            (Sender, "blocked")
        );
        assert_eq!(classify(Some("5.7.1"), Some(550), ""), (Sender, "policy"));
        assert_eq!(
            classify(Some("5.0.0"), Some(550), "550 Requested action not taken"),
            (Kind::Unknown, "unclassified")
        );
        assert_eq!(
            classify(None, Some(554), ""),
            (Kind::Unknown, "unclassified")
        );
        assert_eq!(
            classify(None, Some(550), "whatever"),
            (Kind::Unknown, "unclassified")
        );
    }

    #[test]
    fn user_unknown_is_not_unknown_sender_reputation() {
        assert_eq!(
            by_text("550 5.1.1 <j@example.com>: user unknown"),
            Some((Hard, "no-such-user"))
        );
        assert_eq!(
            by_text("550 5.7.1 rejected: unknown sender reputation"),
            Some((Sender, "reputation"))
        );
        assert_eq!(
            by_text("550 unknown sender domain"),
            Some((Sender, "policy"))
        );
    }

    #[test]
    fn the_text_wins_over_a_generic_status() {
        // 5.1.1 with spam in the words: the server judged the message, not the address.
        assert_eq!(
            classify(
                Some("5.1.1"),
                Some(550),
                "550 5.1.1 Message blocked due to spam content"
            ),
            (Sender, "spam")
        );
        // 5.7.1 with "user unknown": it is the address.
        assert_eq!(
            classify(
                Some("5.7.1"),
                Some(550),
                "550 5.7.1 <j@example.com>: user unknown"
            ),
            (Hard, "no-such-user")
        );
        // Mailbox full under a 5.2.2 (permanent class) is still temporary.
        assert_eq!(
            classify(Some("5.2.2"), Some(552), "552 5.2.2 mailbox full"),
            (Soft, "mailbox-full")
        );
        assert_eq!(classify(Some("5.2.2"), None, ""), (Soft, "mailbox-full"));
    }

    #[test]
    fn a_temporary_status_never_makes_hard() {
        assert_eq!(
            classify(
                Some("4.1.1"),
                Some(450),
                "450 4.1.1 <j@example.com>: user unknown"
            ),
            (Soft, "no-such-user")
        );
        assert_eq!(classify(Some("4.1.1"), None, ""), (Soft, "no-such-user"));
        assert_eq!(classify(None, Some(451), "whatever"), (Soft, "temporary"));
        assert_eq!(classify(Some("4.4.1"), None, ""), (Soft, "timeout"));
    }

    #[test]
    fn statuses_that_decide_alone() {
        for (status, want) in [
            ("5.1.1", (Hard, "no-such-user")),
            ("5.1.2", (Hard, "no-such-domain")),
            ("5.1.10", (Hard, "no-such-domain")),
            ("5.1.6", (Hard, "moved")),
            ("5.2.1", (Hard, "disabled")),
            ("5.2.2", (Soft, "mailbox-full")),
            ("5.7.1", (Sender, "policy")),
            ("5.7.26", (Sender, "dmarc")),
            ("5.7.25", (Sender, "no-ptr")),
            ("4.7.0", (Sender, "policy")),
            ("2.0.0", (Kind::Delivered, "delivered")),
        ] {
            assert_eq!(classify(Some(status), None, ""), want, "{status}");
        }
        for vague in [
            "5.0.0", "5.5.0", "5.1.4", "5.4.6", "9.1.1", "5.x.1", "5.1", "",
        ] {
            assert_eq!(by_status(vague), None, "{vague}");
        }
    }

    #[test]
    fn normalising_folds_lines_and_case() {
        assert_eq!(normalise("User\r\n\tUnknown"), "user unknown ");
        assert_eq!(
            by_text("550 5.1.1 USER\n    UNKNOWN"),
            Some((Hard, "no-such-user"))
        );
    }
}
