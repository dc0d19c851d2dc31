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

    #[test]
    fn bare_dates_are_midnight_utc() {
        let t = parse_time("2025-03-12").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-03-12T00:00:00+00:00");
    }
}
