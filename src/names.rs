//! Column and field names: the template variable a header becomes, and the insensitive
//! matching that classification, column roles and schema lookups share.
//!
//! A marketer's export says `Diagnosis`, `DATE_OF_BIRTH`, `sexualOrientation` or
//! `Consent_Marketing`; each must be judged like `diagnosis`, `date_of_birth`,
//! `sexual_orientation` and `consent_marketing`, or a special-category field passes as
//! unclassified and a consent column goes unseen. The variable name itself keeps its
//! case (Tera is case-sensitive), so only the comparisons here ignore it.

/// `First Name` → `first_name`; identifiers are kept as written.
pub fn normalise_name(raw: &str) -> String {
    let raw = raw.trim();
    if is_identifier(raw) {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut pending_sep = false;
    for ch in raw.chars() {
        // A letter outside ASCII keeps its Latin reading (`Religión` → `religion`, not
        // `religi_n`): classification judges the variable name, and a word cut in two at
        // an accent is a special-category column passing as unclassified.
        let ascii = [ch as u8];
        let letters: &[u8] = if ch.is_ascii_alphanumeric() {
            &ascii
        } else if ch.is_alphabetic() {
            deunicode::deunicode_char(ch).unwrap_or("").as_bytes()
        } else {
            &[]
        };
        for b in letters {
            if b.is_ascii_alphanumeric() {
                if pending_sep && !out.is_empty() {
                    out.push('_');
                }
                pending_sep = false;
                out.push(b.to_ascii_lowercase() as char);
            } else {
                pending_sep = true;
            }
        }
        if letters.is_empty() {
            pending_sep = true;
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The lowercase words of a name: split at separators, at camelCase humps (an acronym
/// ends before its last capital: `HIVStatus` → `hiv`, `status`) and between letters and
/// digits (`address2` → `address`, `2`).
pub fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if !cur.is_empty() && i > 0 {
            let prev = chars[i - 1];
            let next = chars.get(i + 1).copied();
            let hump = prev.is_lowercase() && c.is_uppercase();
            let acronym_end =
                prev.is_uppercase() && c.is_uppercase() && next.is_some_and(char::is_lowercase);
            let digits = prev.is_numeric() != c.is_numeric();
            if hump || acronym_end || digits {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The words joined by `_`: `DATE_OF_BIRTH`, `dateOfBirth` and `Date of birth` all give
/// `date_of_birth`.
pub fn key(name: &str) -> String {
    words(name).join("_")
}

/// The words run together, for equality: `Consent_Marketing`, `consentMarketing`,
/// `consent-marketing` and `CONSENTMARKETING` are one name, as are `E-mail` and `email`.
pub fn squash(name: &str) -> String {
    words(name).concat()
}

/// Whether two names are the same but for case, separators and camelCase.
pub fn same(a: &str, b: &str) -> bool {
    squash(a) == squash(b)
}

/// The candidate most like `wanted`, judged by shared words as well as by spelling, so
/// `opt_in_marketing` is offered for a missing `consent_marketing` and `e_mail_address`
/// for `email`.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let want = words(wanted);
    let want_key = want.join("_");
    candidates
        .into_iter()
        // Nobody means a name longer than a line; judging one would only echo it.
        .filter(|c| c.len() <= 120)
        .map(|c| {
            let theirs = words(c);
            let shared = want
                .iter()
                .filter(|w| {
                    theirs
                        .iter()
                        .any(|t| t == *w || (t.len() > 3 && w.contains(t.as_str())))
                })
                .count();
            let spelling = strsim::jaro_winkler(&want_key, &theirs.join("_"));
            (spelling + 0.5 * shared as f64 / want.len().max(1) as f64, c)
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A name or text as quoted in a message: cut after `max` characters, so a hostile 64 KiB
/// header or 4 KiB segment never becomes a 64 KiB error line.
pub fn excerpt(text: &str, max: usize) -> String {
    let shown = |c: char| -> String {
        // A name from a file reaches terminals and comment lines: a control character or a
        // bidi override in it would act (colour, clear, reorder) instead of showing.
        let acts = c.is_control()
            || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if acts {
            c.escape_unicode().to_string()
        } else {
            c.to_string()
        }
    };
    if text.chars().count() <= max {
        return text.chars().map(shown).collect();
    }
    let head: String = text
        .chars()
        .take(max.saturating_sub(1))
        .map(shown)
        .collect();
    format!("{head}…")
}

/// Column names for a message: the first few, each cut short.
pub fn listed<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 20;
    let all: Vec<&str> = names.into_iter().collect();
    let mut out: Vec<String> = all.iter().take(SHOWN).map(|n| excerpt(n, 40)).collect();
    if all.len() > SHOWN {
        out.push(format!("… {} more", all.len() - SHOWN));
    }
    out.join(", ")
}

/// The longest name a new campaign may have.
pub const MAX_CAMPAIGN_NAME: usize = 64;

/// Why `name` cannot name a new campaign, if it cannot. A name is a plain identifier
/// (lowercase letters, digits and '-'): it starts with a letter, and a '-' only ever joins
/// two words (`winter-sale-2`, never `-`, `x-` or `a--b`). It becomes a file name, a
/// template name and part of the List-Id header.
pub fn campaign_name_refusal(name: &str) -> Option<String> {
    const RULE: &str =
        "lowercase letters and digits, words joined by single '-' (like winter-sale-2)";
    if name.is_empty() {
        return Some(format!("type a name: {RULE}"));
    }
    if name.chars().count() > MAX_CAMPAIGN_NAME {
        return Some(format!("at most {MAX_CAMPAIGN_NAME} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!("`{bad}` is not allowed: {RULE}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some(format!("start with a letter: {RULE}"));
    }
    if name.ends_with('-') || name.contains("--") {
        return Some(format!("a '-' only joins two words: {RULE}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise() {
        assert_eq!(normalise_name("First Name"), "first_name");
        assert_eq!(normalise_name("first_name"), "first_name");
        assert_eq!(normalise_name("FirstName"), "FirstName");
        assert_eq!(normalise_name("  E-mail Address  "), "e_mail_address");
        assert_eq!(normalise_name("Total Spent (£)"), "total_spent");
        assert_eq!(normalise_name("2fa"), "_2fa");
        assert_eq!(normalise_name("Religión"), "religion");
        assert_eq!(normalise_name("Straße Nr"), "strasse_nr");
        assert_eq!(normalise_name("Prénom"), "prenom");
    }

    #[test]
    fn words_split_case_separators_and_digits() {
        let cases: [(&str, &[&str]); 12] = [
            ("Diagnosis", &["diagnosis"]),
            ("HEALTH_STATUS", &["health", "status"]),
            ("sexualOrientation", &["sexual", "orientation"]),
            ("trade-union", &["trade", "union"]),
            ("DATE_OF_BIRTH", &["date", "of", "birth"]),
            ("BirthDate", &["birth", "date"]),
            ("Post Code", &["post", "code"]),
            ("HIVStatus", &["hiv", "status"]),
            ("IPAddress", &["ip", "address"]),
            ("address_line2", &["address", "line", "2"]),
            ("__x__", &["x"]),
            ("", &[]),
        ];
        for (name, want) in cases {
            assert_eq!(words(name), want, "{name}");
        }
        assert_eq!(key("dateOfBirth"), "date_of_birth");
        assert!(same("Consent_Marketing", "consent_marketing"));
        assert!(same("ConsentMarketing", "consent_marketing"));
        assert!(same("E-mail", "email"));
        assert!(!same("consent_marketing", "consent_personalisation"));
    }

    #[test]
    fn closest_prefers_shared_words() {
        let headers = ["email", "first_name", "opt_in_marketing", "signup_date"];
        assert_eq!(
            closest("consent_marketing", headers),
            Some("opt_in_marketing")
        );
        assert_eq!(
            closest("email", ["e_mail_address", "name"]),
            Some("e_mail_address")
        );
        assert_eq!(
            closest("consent_at", ["consent_date", "country"]),
            Some("consent_date")
        );
        assert_eq!(
            closest("consent_marketing", ["first_name", "country"]),
            None
        );
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt(&"x".repeat(100), 10), format!("{}…", "x".repeat(9)));
        let many: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
        let l = listed(many.iter().map(String::as_str));
        assert!(
            l.starts_with("c0, c1,") && l.ends_with("c19, … 10 more"),
            "{l}"
        );
        assert_eq!(closest("email", [&*"email_".repeat(30)]), None);
    }
}
