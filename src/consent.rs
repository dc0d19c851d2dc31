//! Consent values and the rules that decide whether a consent is current.
//!
//! Silence is never consent: only the listed words grant, everything else (empty, `no`,
//! `maybe`, garbage) does not.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

const GRANTED: [&str; 7] = ["yes", "y", "true", "1", "opt-in", "opted-in", "granted"];

pub fn is_granted(value: &str) -> bool {
    let v = value.trim();
    GRANTED.iter().any(|g| v.eq_ignore_ascii_case(g))
}

/// RFC 3339, a date-time without an offset (read as UTC), or a bare `YYYY-MM-DD` read as
/// midnight UTC.
pub fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let v = value.trim();
    // Every value of every untyped column goes through here when its type is inferred, and
    // every recipient's consent time when the plan is made: chrono's format parsing costs
    // microseconds a try, so the two shapes exports write most are read by hand, and what
    // cannot be a date at all is turned away before chrono sees it. Both give exactly
    // chrono's answer (`the_fast_paths_agree_with_chrono`).
    if let Some(t) = common_time(v) {
        return Some(t);
    }
    if !could_be_time(v) {
        return None;
    }
    parse_time_chrono(v)
}

/// `YYYY-MM-DD` and `YYYY-MM-DDTHH:MM:SSZ`, read without chrono's parser; None for any
/// other shape, and for values these shapes only nearly fit (a leap second, an impossible
/// date), which chrono then judges.
fn common_time(v: &str) -> Option<DateTime<Utc>> {
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() != 10 && b.len() != 20 {
        return None;
    }
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)?;
    if b.len() == 10 {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc());
    }
    if b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(date.and_hms_opt(h, m, s)?.and_utc())
}

/// Whether chrono could read `v` (trimmed) in any form `parse_time` accepts: each starts
/// with a year, which chrono reads from a digit or a sign, followed by a `-`.
fn could_be_time(v: &str) -> bool {
    let b = v.as_bytes();
    matches!(b.first(), Some(b'0'..=b'9' | b'+' | b'-')) && b[1..].contains(&b'-')
}

/// `parse_time` by chrono alone: the reference the fast paths are measured against.
fn parse_time_chrono(v: &str) -> Option<DateTime<Utc>> {
    if v.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    // Exports write local-less date-times (Mailchimp's CONFIRM_TIME `2024-03-05 14:22:09`,
    // HubSpot's `2024-03-05 14:22`): read as UTC, which is what those platforms export.
    for form in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, form) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Why a granted consent cannot be shown to be current (GDPR Art. 7(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    Missing,
    Unparseable,
    InFuture,
    TooOld,
}

impl Staleness {
    pub fn describe(self, max_age_days: u32) -> String {
        match self {
            Staleness::Missing => "consent time is empty".into(),
            Staleness::Unparseable => "consent time is not RFC 3339 or YYYY-MM-DD".into(),
            Staleness::InFuture => "consent time is more than 24 hours in the future".into(),
            Staleness::TooOld => format!("consent is older than {max_age_days} days"),
        }
    }
}

/// A clock skew of up to a day is tolerated; anything later is a data error.
pub fn check_current(
    value: &str,
    now: DateTime<Utc>,
    max_age_days: u32,
) -> Result<DateTime<Utc>, Staleness> {
    if value.trim().is_empty() {
        return Err(Staleness::Missing);
    }
    let t = parse_time(value).ok_or(Staleness::Unparseable)?;
    if t > now + TimeDelta::hours(24) {
        return Err(Staleness::InFuture);
    }
    if now - t > TimeDelta::days(i64::from(max_age_days)) {
        return Err(Staleness::TooOld);
    }
    Ok(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_words_grant() {
        let cases = [
            ("yes", true),
            (" YES ", true),
            ("Y", true),
            ("true", true),
            ("1", true),
            ("opt-in", true),
            ("Opted-In", true),
            ("granted", true),
            ("", false),
            ("no", false),
            ("maybe", false),
            ("unknown", false),
            ("0", false),
            ("false", false),
            ("yes please", false),
            ("ja", false),
            ("optin", false),
        ];
        for (value, want) in cases {
            assert_eq!(is_granted(value), want, "consent value {value:?}");
        }
    }

    #[test]
    fn consent_time_rules() {
        let now = parse_time("2026-11-23T12:00:00Z").unwrap();
        let max = 730;
        let cases: [(&str, Result<(), Staleness>); 13] = [
            ("2026-11-01", Ok(())),
            // Mailchimp's and HubSpot's exports: no offset, UTC.
            ("2025-03-12 10:15:00", Ok(())),
            ("2025-03-12 10:15", Ok(())),
            ("2026-11-24 13:00:00", Err(Staleness::InFuture)),
            ("2025-03-12 25:15:00", Err(Staleness::Unparseable)),
            ("2025-03-12T10:15:00+01:00", Ok(())),
            ("", Err(Staleness::Missing)),
            ("   ", Err(Staleness::Missing)),
            ("last spring", Err(Staleness::Unparseable)),
            // 23 hours ahead is clock skew; 25 hours ahead is not.
            ("2026-11-24T11:00:00Z", Ok(())),
            ("2026-11-24T13:00:00Z", Err(Staleness::InFuture)),
            // exactly 730 days old is still current; strictly greater is stale.
            ("2024-11-23T12:00:00Z", Ok(())),
            ("2024-11-23T11:59:59Z", Err(Staleness::TooOld)),
        ];
        for (value, want) in cases {
            assert_eq!(
                check_current(value, now, max).map(|_| ()),
                want,
                "consent time {value:?}"
            );
        }
    }

    /// The hand-read shapes and the early refusal give chrono's answer, on the shapes
    /// exports write, their near misses, and anything else.
    #[test]
    fn the_fast_paths_agree_with_chrono() {
        let fixed = [
            "2026-11-23",
            "2026-02-29",
            "2024-02-29",
            "2026-13-01",
            "2026-00-10",
            "0000-01-01",
            "2026-11-23T12:00:00Z",
            "2026-11-23T23:59:60Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23t12:00:00z",
            "2026-11-23t12:00:00Z",
            "2026-11-23 12:00:00Z",
            "2026-11-23X12:00:00Z",
            "2026-11-23T12-00-00Z",
            "2026-11-23T12:00:00+01:00",
            "2026-11-23 12:00:00",
            "2026-11-23 12:00",
            "2026-1-2",
            "26-11-23",
            "+2026-11-23",
            "-0001-11-23",
            "20261123",
            "2026/11/23",
            " 2026-11-23 ",
            "１２３４-11-23",
            "2026-11-23T12:00:00.5Z",
            "NW-001",
            "1361.45",
            "-5",
            "",
        ];
        for v in fixed {
            assert_eq!(parse_time(v), parse_time_chrono(v.trim()), "{v:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_fast_paths_agree_with_chrono_on_any_value(
            v in "[0-9+ -]{0,3}[0-9]{0,5}[-/]?[0-9]{0,3}[-]?[0-9]{0,3}([Tt X][0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2})?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?",
            w in "\\PC{0,24}",
        ) {
            proptest::prop_assert_eq!(parse_time(&v), parse_time_chrono(v.trim()), "{:?}", v);
            proptest::prop_assert_eq!(parse_time(&w), parse_time_chrono(w.trim()), "{:?}", w);
        }
    }

    #[test]
    fn bare_dates_are_midnight_utc() {
        let t = parse_time("2025-03-12").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-03-12T00:00:00+00:00");
    }
}
