//! VERP bounce tokens: the `TOKEN` of a message's envelope sender `local+TOKEN@domain`,
//! which names the campaign and the recipient a returned message was for, without an
//! address in it.
//!
//! Why it is not the unsubscribe token: a local part may be at most 64 octets (RFC 5321
//! 4.5.3.1.1), and the unsubscribe token's seal of a campaign name and a 32-byte hash is
//! ~100 characters. So the bounce token seals a *reference* to a ledger row, not the row:
//!
//! - a 4-byte keyed identifier of the campaign name (any length of name fits), and the first
//!   10 bytes (80 bits) of the recipient's ledger hash, behind a kind byte (recipient or
//!   test);
//! - sealed with deterministic authenticated encryption (SIV: the IV is a keyed MAC of the
//!   plaintext and is the tag; the plaintext is XORed with a keyed PRF of that IV), under two
//!   keys derived for this alone, so that an unsubscribe token never opens here and a bounce
//!   token never opens as an unsubscribe token. Deterministic, so `preview` and `send` write
//!   the same Return-Path; the same person in two campaigns still gets unrelated tokens;
//! - the tag is 64 bits: a forgery must be mailed to the bounce mailbox and imported to be
//!   tried, so 2^64 tries is out of reach, and a wrong guess changes nothing;
//! - written in lowercase base32 (RFC 4648 alphabet, `a-z2-7`, no padding): 23 bytes make
//!   37 characters, and `bounces+` + 37 = 45 octets, leaving room for a local part of up to
//!   26 characters. Base32 survives MTAs that fold the case of local parts (base64url would
//!   not), and holds no `+`, `-`, `=` or `_` that a recipient delimiter could split on.
//!
//! Opening needs the ledger: `Keys::attribute_bounce` finds the row whose campaign has that
//! identifier and whose hash begins with those 80 bits (an index seek per campaign), and
//! returns the full hash. A row purged or erased since the send cannot be attributed; the
//! importer then falls back to the address in the report, hashed with the ledger key.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::store::Store;
use super::{Keys, RecipientHash};
use crate::error::Result;

/// The longest local part RFC 5321 allows, in octets.
pub const MAX_LOCAL_PART: usize = 64;
/// The length of every bounce token, in characters.
pub const TOKEN_LEN: usize = 37;
/// The bytes of the ledger hash that a token carries.
pub const HASH_PREFIX: usize = 10;

const KIND_RECIPIENT: u8 = 1;
const KIND_TEST: u8 = 2;
const PLAIN: usize = 1 + 4 + HASH_PREFIX;
const TAG: usize = 8;
const RAW: usize = TAG + PLAIN;

/// What a bounce token says once its seal is checked: which campaign (by keyed identifier)
/// and which ledger row (by the start of its hash), or that it came from a test message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceToken {
    Recipient {
        campaign_id: [u8; 4],
        hash_prefix: [u8; HASH_PREFIX],
    },
    /// A test message's token: it names nobody, and a bounce with it suppresses nobody.
    Test { campaign_id: [u8; 4] },
}

/// Who a bounce token names, once looked up in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributed {
    /// Exactly one ledger row fits: this campaign, this recipient.
    Recipient {
        campaign: String,
        hash: RecipientHash,
    },
    /// The token of a test message: nobody to suppress, nothing to count.
    Test,
    /// Sealed by this key, but no single ledger row fits (purged, erased, or another
    /// store): not attributable by token.
    NoRow,
    /// Not sealed by this key: forged, damaged, from another state, or not a token.
    NotOurs,
}

impl Keys {
    /// The VERP token of one recipient of one campaign (see the module notes).
    pub fn seal_bounce_token(&self, campaign: &str, hash: &RecipientHash) -> String {
        let mut prefix = [0u8; HASH_PREFIX];
        prefix.copy_from_slice(&hash[..HASH_PREFIX]);
        self.seal_bounce(KIND_RECIPIENT, campaign, &prefix)
    }

    /// The inert VERP token of a test message: sealed like a recipient's, naming nobody.
    pub fn seal_test_bounce_token(&self, campaign: &str) -> String {
        self.seal_bounce(KIND_TEST, campaign, &[0; HASH_PREFIX])
    }

    /// Checks a token's seal; `None` for anything forged, damaged, of another length or
    /// from another key (an unsubscribe token included). Case-insensitive, since some MTAs
    /// fold local parts. Never panics, whatever the input.
    pub fn open_bounce_token(&self, token: &str) -> Option<BounceToken> {
        // The token is always the last `+` part: a base whose local part has a `+` of its
        // own (`news+bounces@…`) gives `bounces+TOKEN` to whoever splits at the first.
        let token = token.trim();
        let token = token.rsplit_once('+').map_or(token, |(_, t)| t);
        let raw: [u8; RAW] = base32_decode(token)?.try_into().ok()?;
        let (tag, sealed) = raw.split_at(TAG);
        let stream = self.bounce_prf(b"stream", tag);
        let mut plain = [0u8; PLAIN];
        for (i, p) in plain.iter_mut().enumerate() {
            *p = sealed[i] ^ stream[i];
        }
        let mut mac = self.bounce_mac();
        mac.update(&plain);
        // `verify_truncated_left` compares in constant time.
        mac.verify_truncated_left(tag).ok()?;
        let campaign_id: [u8; 4] = plain[1..5].try_into().ok()?;
        let hash_prefix: [u8; HASH_PREFIX] = plain[5..].try_into().ok()?;
        match plain[0] {
            KIND_RECIPIENT => Some(BounceToken::Recipient {
                campaign_id,
                hash_prefix,
            }),
            KIND_TEST => Some(BounceToken::Test { campaign_id }),
            _ => None,
        }
    }

    /// Opens a token and finds the ledger row it names: the campaign and the recipient's
    /// full hash, for suppressing and counting.
    pub fn attribute_bounce(&self, store: &dyn Store, token: &str) -> Result<Attributed> {
        let (campaign_id, hash_prefix) = match self.open_bounce_token(token) {
            None => return Ok(Attributed::NotOurs),
            Some(BounceToken::Test { .. }) => return Ok(Attributed::Test),
            Some(BounceToken::Recipient {
                campaign_id,
                hash_prefix,
            }) => (campaign_id, hash_prefix),
        };
        let mut fits = store
            .rows_with_hash_prefix(&hash_prefix)?
            .into_iter()
            .filter(|(campaign, _)| self.bounce_campaign_id(campaign) == campaign_id);
        Ok(match (fits.next(), fits.next()) {
            (Some((campaign, hash)), None) => Attributed::Recipient { campaign, hash },
            _ => Attributed::NoRow,
        })
    }

    /// A campaign's identifier inside bounce tokens.
    pub fn bounce_campaign_id(&self, campaign: &str) -> [u8; 4] {
        let id = self.bounce_prf(b"campaign", campaign.as_bytes());
        [id[0], id[1], id[2], id[3]]
    }

    fn seal_bounce(&self, kind: u8, campaign: &str, prefix: &[u8; HASH_PREFIX]) -> String {
        let mut plain = [0u8; PLAIN];
        plain[0] = kind;
        plain[1..5].copy_from_slice(&self.bounce_campaign_id(campaign));
        plain[5..].copy_from_slice(prefix);
        let mut mac = self.bounce_mac();
        mac.update(&plain);
        let full = mac.finalize().into_bytes();
        let tag = &full[..TAG];
        let stream = self.bounce_prf(b"stream", tag);
        let mut raw = [0u8; RAW];
        raw[..TAG].copy_from_slice(tag);
        for i in 0..PLAIN {
            raw[TAG + i] = plain[i] ^ stream[i];
        }
        base32_encode(&raw)
    }

    fn bounce_mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.bounce_mac).unwrap_or_else(|_| unreachable!())
    }

    /// A PRF under the bounce encryption key, domain-separated by `label`.
    fn bounce_prf(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.bounce_enc)
            .unwrap_or_else(|_| unreachable!());
        mac.update(label);
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// `local+TOKEN@domain` from a base address `local@domain`: the envelope sender of one
/// message. An error names what does not fit (no `@`, or a local part over 64 octets).
pub fn verp_address(base: &str, token: &str) -> std::result::Result<String, String> {
    let (local, domain) = base
        .rsplit_once('@')
        .filter(|(l, d)| !l.is_empty() && !d.is_empty())
        .ok_or_else(|| format!("`{base}` is not an address of the form local@domain"))?;
    let verp_local = format!("{local}+{token}");
    if verp_local.len() > MAX_LOCAL_PART {
        return Err(format!(
            "the local part `{local}` leaves no room for the {TOKEN_LEN}-character bounce token \
             within {MAX_LOCAL_PART} octets (RFC 5321): use one of at most {} characters",
            MAX_LOCAL_PART - 1 - TOKEN_LEN
        ));
    }
    Ok(format!("{verp_local}@{domain}"))
}

/// The lowest and highest 32-byte hashes that begin with `prefix` (at most 32 bytes).
pub(super) fn prefix_range(prefix: &[u8]) -> (RecipientHash, RecipientHash) {
    let (mut lo, mut hi) = ([0u8; 32], [0xffu8; 32]);
    let n = prefix.len().min(32);
    lo[..n].copy_from_slice(&prefix[..n]);
    hi[..n].copy_from_slice(&prefix[..n]);
    (lo, hi)
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Either case; `None` for any other character, or trailing bits that are not zero (so
/// each token has one spelling, up to case).
fn base32_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() > 2 * TOKEN_LEN {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c.to_ascii_lowercase() {
            c @ b'a'..=b'z' => c - b'a',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
        acc &= (1 << bits) - 1;
    }
    (acc == 0 && bits < 5).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> Keys {
        Keys::from_master(&[7u8; 32])
    }

    #[test]
    fn base32_round_trips_and_has_one_spelling() {
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let s = base32_encode(&bytes);
            assert_eq!(base32_decode(&s).as_deref(), Some(&bytes[..]), "{n}");
            assert_eq!(
                base32_decode(&s.to_uppercase()).as_deref(),
                Some(&bytes[..])
            );
        }
        // `b` (=1) in the last place of one byte's two characters sets a padding bit.
        assert_eq!(base32_decode("ab"), None);
        assert_eq!(base32_decode("aa"), Some(vec![0]));
        assert_eq!(base32_decode("a1"), None);
        assert_eq!(base32_decode("a="), None);
    }

    #[test]
    fn a_bounce_token_is_short_and_lowercase_and_holds_no_address() {
        let k = keys();
        let h = k.recipient_hash("ann.lee@example.com");
        let long = "a".repeat(200);
        for campaign in ["winter-sale", long.as_str()] {
            let t = k.seal_bounce_token(campaign, &h);
            assert_eq!(t.len(), TOKEN_LEN);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
                "{t}"
            );
            for part in ["ann", "lee", "example", "winter", "aaaa"] {
                assert!(!t.contains(part), "{t} contains {part}");
            }
            let addr = verp_address("bounces@example.com", &t).expect("fits");
            let local = addr.rsplit_once('@').expect("@").0;
            assert!(local.len() <= MAX_LOCAL_PART, "{addr}");
            assert_eq!(k.seal_bounce_token(campaign, &h), t, "deterministic");
        }
        let local26 = format!("{}@example.com", "b".repeat(26));
        assert!(verp_address(&local26, &k.seal_test_bounce_token("x")).is_ok());
        let local27 = format!("{}@example.com", "b".repeat(27));
        let e = verp_address(&local27, &k.seal_test_bounce_token("x")).expect_err("too long");
        assert!(e.contains("at most 26"), "{e}");
        assert!(verp_address("no-at-sign", "t").is_err());
    }

    #[test]
    fn bounce_and_unsubscribe_tokens_never_open_as_each_other() {
        let k = keys();
        let h = k.recipient_hash("ann@example.com");
        let bounce = k.seal_bounce_token("winter-sale", &h);
        let unsub = k.seal_token("winter-sale", &h);
        assert_eq!(k.open_bounce_token(&unsub), None);
        assert_eq!(k.open_bounce_token(&unsub[..TOKEN_LEN]), None);
        assert_eq!(k.open_token(&bounce), None);
        assert_eq!(k.token_key().open_any(&bounce), None);
        assert_eq!(k.open_token(&bounce.to_uppercase()), None);
    }

    #[test]
    fn a_bounce_token_opens_to_its_campaign_and_hash_prefix_only_with_its_key() {
        let k = keys();
        let other = Keys::from_master(&[8u8; 32]);
        let h = k.recipient_hash("ann@example.com");
        let t = k.seal_bounce_token("winter-sale", &h);
        let want = BounceToken::Recipient {
            campaign_id: k.bounce_campaign_id("winter-sale"),
            hash_prefix: h[..HASH_PREFIX].try_into().expect("10"),
        };
        assert_eq!(k.open_bounce_token(&t), Some(want));
        assert_eq!(
            k.open_bounce_token(&t.to_uppercase()),
            Some(want),
            "case-folded"
        );
        assert_eq!(other.open_bounce_token(&t), None);
        assert_eq!(
            k.open_bounce_token(&format!("bounces+{t}")),
            Some(want),
            "a base local part with a + of its own"
        );
        assert_eq!(k.open_bounce_token(&format!("{t}+")), None);
        assert_eq!(k.open_bounce_token(&format!("{t}+x")), None);
        assert_ne!(
            k.bounce_campaign_id("winter-sale"),
            other.bounce_campaign_id("winter-sale"),
            "keyed"
        );
        let test = k.seal_test_bounce_token("winter-sale");
        assert_eq!(
            k.open_bounce_token(&test),
            Some(BounceToken::Test {
                campaign_id: k.bounce_campaign_id("winter-sale")
            })
        );
        assert_eq!(k.open_token(&test), None);
        // Unlinkable: the same person in another campaign shares nothing visible.
        let t2 = k.seal_bounce_token("spring-sale", &h);
        let common = t.bytes().zip(t2.bytes()).filter(|(a, b)| a == b).count();
        assert!(common < 10, "{t} vs {t2}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_strings_never_open(s in "\\PC{0,120}") {
            prop_assert_eq!(keys().open_bounce_token(&s), None);
        }

        /// Random tokens of the right length and alphabet: the 64-bit tag refuses them.
        #[test]
        fn random_well_formed_tokens_never_open(raw in any::<[u8; RAW]>()) {
            prop_assert_eq!(keys().open_bounce_token(&base32_encode(&raw)), None);
        }

        /// One character changed, a cut, or another key: nothing opens.
        #[test]
        fn tampered_tokens_never_open(
            campaign in "[a-z0-9-]{1,200}",
            hash in any::<[u8; 32]>(),
            at in any::<prop::sample::Index>(),
            to in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let k = keys();
            let t = k.seal_bounce_token(&campaign, &hash);
            prop_assert_eq!(t.len(), TOKEN_LEN);
            let want = BounceToken::Recipient {
                campaign_id: k.bounce_campaign_id(&campaign),
                hash_prefix: hash[..HASH_PREFIX].try_into().unwrap_or_default(),
            };
            prop_assert_eq!(k.open_bounce_token(&t), Some(want));
            let mut b = t.clone().into_bytes();
            let i = at.index(b.len());
            let c = ALPHABET[to.index(32)];
            if c != b[i] {
                b[i] = c;
                prop_assert_eq!(k.open_bounce_token(std::str::from_utf8(&b).unwrap_or("")), None);
            }
            prop_assert_eq!(k.open_bounce_token(&t[..cut.index(t.len())]), None);
            prop_assert_eq!(Keys::from_master(&[8u8; 32]).open_bounce_token(&t), None);
        }
    }
}
