//! Mailbox providers, from the recipient's domain: each gets its own pace during a send
//! (`[send.pacing.<provider>]`), and a deferral from one slows that one only.
//!
//! The lookup reads the domain name alone: no DNS. A company whose mail Google or Microsoft
//! hosts under its own domain is `other`; the big consumer domains are where throttling
//! bites, and they are recognisable by name.
//!
//! Exact domains only, never subdomains: `mail.yahoo.co.uk` or `x.gmail.com` hold no
//! mailboxes (they have no MX of the provider's), and a rule for "anything ending in
//! gmail.com" would also match `notgmail.com`. `outlook.*`, `yahoo.*` and the like are the
//! brand followed by a country or generic top-level domain: one label (`yahoo.fr`), or
//! `co.`/`com.` and one more (`yahoo.co.uk`, `hotmail.com.br`); `live.example.org` is not
//! Microsoft's. Case and the trailing dot of a fully qualified name do not matter, and
//! internationalised names are compared as IDNA reads them (full-width `ｇｍａｉｌ.com` is
//! gmail.com).

use std::borrow::Cow;

/// Where a recipient's mailbox is, as far as pacing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Gmail,
    Microsoft,
    Yahoo,
    Apple,
    Other,
}

/// Brands whose every country domain is theirs (`brand.TLD`, `brand.co.TLD`, `brand.com.TLD`).
const BRANDS: &[(&str, Provider)] = &[
    ("outlook", Provider::Microsoft),
    ("hotmail", Provider::Microsoft),
    ("live", Provider::Microsoft),
    ("yahoo", Provider::Yahoo),
    ("aol", Provider::Yahoo),
];

/// Single domains.
const DOMAINS: &[(&str, Provider)] = &[
    ("gmail.com", Provider::Gmail),
    ("googlemail.com", Provider::Gmail),
    ("msn.com", Provider::Microsoft),
    ("windowslive.com", Provider::Microsoft),
    ("passport.com", Provider::Microsoft),
    ("ymail.com", Provider::Yahoo),
    ("rocketmail.com", Provider::Yahoo),
    ("aim.com", Provider::Yahoo),
    // Verizon moved its mailboxes to AOL's (Yahoo's) servers in 2017.
    ("verizon.net", Provider::Yahoo),
    ("icloud.com", Provider::Apple),
    ("me.com", Provider::Apple),
    ("mac.com", Provider::Apple),
];

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Gmail,
        Provider::Microsoft,
        Provider::Yahoo,
        Provider::Apple,
        Provider::Other,
    ];

    /// The name in `[send.pacing.<name>]`, summaries and the gauge.
    pub fn key(self) -> &'static str {
        match self {
            Provider::Gmail => "gmail",
            Provider::Microsoft => "microsoft",
            Provider::Yahoo => "yahoo",
            Provider::Apple => "apple",
            Provider::Other => "other",
        }
    }

    pub fn from_key(key: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.key() == key)
    }

    /// Its place in `ALL` (and in per-provider arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The provider of an address (`local@domain`); `Other` without an `@`.
    pub fn of_address(addr: &str) -> Provider {
        match addr.rsplit_once('@') {
            Some((_, domain)) => Provider::of_domain(domain),
            None => Provider::Other,
        }
    }

    pub fn of_domain(domain: &str) -> Provider {
        let domain = normalise(domain.trim());
        let domain = domain.strip_suffix('.').unwrap_or(&domain);
        if let Some(&(_, p)) = DOMAINS.iter().find(|(d, _)| *d == domain) {
            return p;
        }
        let Some((brand, suffix)) = domain.split_once('.') else {
            return Provider::Other;
        };
        match BRANDS.iter().find(|(b, _)| *b == brand) {
            Some(&(_, p)) if country_or_generic(suffix) => p,
            _ => Provider::Other,
        }
    }
}

/// Lowercase ASCII as it is (nearly every address); anything else through IDNA (UTS 46
/// mapping: case, full-width forms, punycode decoded), as `state::address_key` does.
fn normalise(domain: &str) -> Cow<'_, str> {
    let plain = domain
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
        && !domain.contains("xn--");
    if plain {
        return Cow::Borrowed(domain);
    }
    match idna::domain_to_unicode(domain) {
        (d, Ok(())) => Cow::Owned(d),
        _ => Cow::Owned(domain.to_lowercase()),
    }
}

/// `fr`, `com`, `co.uk`, `com.br`: a top-level domain, or `co`/`com` under a country's.
fn country_or_generic(suffix: &str) -> bool {
    let tld = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    match suffix.split_once('.') {
        None => tld(suffix),
        Some((second, country)) => {
            matches!(second, "co" | "com") && country.len() == 2 && tld(country)
        }
    }
}

/// A provider's limits during a run, on top of the relays' own (both hold). `None`: no
/// limit of its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub rate_per_second: Option<f64>,
    pub concurrency: Option<usize>,
}

impl Pace {
    /// Gmail, Microsoft, Yahoo and Apple throttle by sending IP and reputation, and answer
    /// a burst from a sender they do not know with deferrals (Gmail `421 4.7.28`, Microsoft
    /// `451 4.7.650`, Yahoo `421 4.7.0 [TSS04]`) that then slow everything down. Their
    /// guidance is the same everywhere: a steady pace, few connections, volume raised
    /// slowly. So 10 messages/s over 2 connections for Gmail and 5 over 2 for the others
    /// (Microsoft is the quickest to defer), well under a relay's default of 20/s, so that
    /// a campaign to mostly one provider does not reach it as one burst. `other` is every
    /// other domain, many servers: no limit of its own, the relays' limits apply.
    pub fn default_for(p: Provider) -> Pace {
        let (rate, conns) = match p {
            Provider::Gmail => (10.0, 2),
            Provider::Microsoft | Provider::Yahoo | Provider::Apple => (5.0, 2),
            Provider::Other => {
                return Pace {
                    rate_per_second: None,
                    concurrency: None,
                };
            }
        };
        Pace {
            rate_per_second: Some(rate),
            concurrency: Some(conns),
        }
    }

    /// The default, with what `[send.pacing.<provider>]` sets instead.
    pub fn for_campaign(send: &crate::campaign::SendSettings, p: Provider) -> Pace {
        let d = Pace::default_for(p);
        match send.pacing.get(p.key()) {
            None => d,
            Some(set) => Pace {
                rate_per_second: set.rate_per_second.or(d.rate_per_second),
                concurrency: set.concurrency.or(d.concurrency),
            },
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::Provider::{self, *};

    #[test]
    fn the_big_consumer_domains() {
        for (domain, want) in [
            ("gmail.com", Gmail),
            ("googlemail.com", Gmail),
            ("outlook.com", Microsoft),
            ("outlook.fr", Microsoft),
            ("outlook.co.uk", Microsoft),
            ("hotmail.com", Microsoft),
            ("hotmail.co.jp", Microsoft),
            ("hotmail.com.br", Microsoft),
            ("live.com", Microsoft),
            ("live.ca", Microsoft),
            ("msn.com", Microsoft),
            ("yahoo.com", Yahoo),
            ("yahoo.co.uk", Yahoo),
            ("yahoo.com.au", Yahoo),
            ("ymail.com", Yahoo),
            ("rocketmail.com", Yahoo),
            ("aol.com", Yahoo),
            ("aol.de", Yahoo),
            ("icloud.com", Apple),
            ("me.com", Apple),
            ("mac.com", Apple),
            ("example.com", Other),
            ("northwind.example", Other),
        ] {
            assert_eq!(Provider::of_domain(domain), want, "{domain}");
        }
    }

    #[test]
    fn case_dots_and_idna_do_not_matter() {
        for (domain, want) in [
            ("GMail.COM", Gmail),
            ("gmail.com.", Gmail),
            (" gmail.com ", Gmail),
            ("Yahoo.Co.UK", Yahoo),
            // Full-width letters, which UTS 46 maps to ASCII.
            ("ｇｍａｉｌ.ｃｏｍ", Gmail),
            ("ICLOUD.com.", Apple),
            // A real internationalised domain, either way it is written.
            ("bücher.example", Other),
            ("xn--bcher-kva.example", Other),
        ] {
            assert_eq!(Provider::of_domain(domain), want, "{domain}");
        }
        assert_eq!(Provider::of_address("Someone@GMAIL.com"), Gmail);
        assert_eq!(Provider::of_address("a+tag@outlook.de"), Microsoft);
        assert_eq!(Provider::of_address("no-at-sign"), Other);
        // The domain is what follows the last @.
        assert_eq!(Provider::of_address("\"a@gmail.com\"@example.org"), Other);
    }

    /// Near misses: look-alikes, subdomains and brands under someone else's domain.
    #[test]
    fn near_misses_are_other() {
        for domain in [
            "notgmail.com",
            "gmail.co",
            "gmail.com.example",
            "x.gmail.com",
            "mail.yahoo.co.uk",
            "yahoo.example.org",
            "live.example.org",
            "outlook.co.example",
            "hotmail",
            "me.org",
            "icloud.co",
            "gmai1.com",
            "",
            ".",
            "live.123",
        ] {
            assert_eq!(Provider::of_domain(domain), Other, "{domain:?}");
        }
    }

    #[test]
    fn named_providers_are_paced_by_default_and_other_is_not() {
        for p in [Gmail, Microsoft, Yahoo, Apple] {
            let d = super::Pace::default_for(p);
            assert!(
                d.rate_per_second.is_some_and(|r| r > 0.0 && r <= 20.0),
                "{p}"
            );
            assert!(d.concurrency.is_some_and(|c| c > 0), "{p}");
        }
        let other = super::Pace::default_for(Other);
        assert_eq!((other.rate_per_second, other.concurrency), (None, None));
    }

    #[test]
    fn keys_round_trip() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_key(p.key()), Some(p));
            assert_eq!(Provider::ALL[p.index()], p);
        }
        assert_eq!(Provider::from_key("hotmail"), None);
    }
}
