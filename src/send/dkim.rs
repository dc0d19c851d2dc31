//! DKIM signing with the campaign's own key (RFC 6376; Ed25519 per RFC 8463).

use base64::Engine as _;
use lettre::message::header::HeaderName;

use crate::campaign::Campaign;
use crate::error::{Error, Location, Result};

/// The headers RFC 8058 §4 needs under the signature for one-click unsubscribe, and
/// Feedback-ID, which Gmail's feedback loop only trusts when signed.
pub const DKIM_HEADERS: [&str; 7] = [
    "From",
    "Subject",
    "Date",
    "To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
];

/// Signs with the campaign's `[dkim]` key, if it has one.
pub fn sign(
    c: &Campaign,
    mut msg: lettre::Message,
) -> std::result::Result<lettre::Message, String> {
    let Some(d) = &c.dkim else { return Ok(msg) };
    let key = load_dkim_key(&d.private_key).map_err(|e| e.to_string())?;
    let headers = DKIM_HEADERS
        .iter()
        .map(|h| HeaderName::new_from_ascii_str(h))
        .collect();
    let config = lettre::message::dkim::DkimConfig::new(
        d.selector.clone(),
        d.domain.clone(),
        key,
        headers,
        // relaxed/relaxed: with lettre 0.11's `simple` header canonicalization the
        // DKIM-Signature header is hashed folded differently from how it is sent, and no
        // verifier accepts the signature; relaxed also survives relays that refold headers.
        lettre::message::dkim::DkimCanonicalization {
            header: lettre::message::dkim::DkimCanonicalizationType::Relaxed,
            body: lettre::message::dkim::DkimCanonicalizationType::Relaxed,
        },
    );
    msg.sign(&config);
    Ok(msg)
}

/// The formats `load_dkim_key` reads, for the message that refuses a key.
const FORMATS: &str = "tact reads RSA keys as PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey -algorithm RSA` writes) or PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`, `openssl genrsa -traditional`), and Ed25519 keys as PKCS#8 (`openssl genpkey -algorithm ed25519`) or the base64 of the 32-byte seed (RFC 8463)";

/// RSA keys as PKCS#8 or PKCS#1 PEM; Ed25519 keys as PKCS#8 PEM or the base64 of the
/// 32-byte seed (RFC 8463), optionally in a PEM-style wrapper. The file must be 0600.
pub fn load_dkim_key(path: &std::path::Path) -> Result<lettre::message::dkim::DkimSigningKey> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::input(
            Location::file(path),
            "the DKIM key is readable by others: chmod 600 it",
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_key(&text).map_err(|why| {
        Error::input(
            Location::file(path),
            format!("not a usable DKIM key: {why}; {FORMATS}"),
        )
    })
}

/// The key in `text`, converted to what lettre reads (PKCS#1 PEM for RSA, the base64 seed
/// for Ed25519). Errors never quote the key.
fn parse_key(text: &str) -> std::result::Result<lettre::message::dkim::DkimSigningKey, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    use lettre::message::dkim::{DkimSigningAlgorithm, DkimSigningKey};
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    let lettre_err = |e: lettre::message::dkim::DkimSigningKeyError| e.to_string();
    let rsa = |key: rsa::RsaPrivateKey| {
        use rsa::traits::PublicKeyParts as _;
        // RFC 8301 §3.2: verifiers must not accept signatures from keys under 1024 bits.
        if key.size() * 8 < 1024 {
            return Err(format!(
                "an RSA key of {} bits is too short for DKIM (RFC 8301 wants at least 1024, 2048 is usual)",
                key.size() * 8
            ));
        }
        let pem = key
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| format!("RSA key: {e}"))?;
        DkimSigningKey::new(&pem, DkimSigningAlgorithm::Rsa).map_err(lettre_err)
    };
    let ed25519 = |seed: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(seed);
        DkimSigningKey::new(&b64, DkimSigningAlgorithm::Ed25519).map_err(lettre_err)
    };
    let label = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("-----BEGIN "))
        .map(|l| l.trim_end_matches('-').trim());
    match label {
        Some("RSA PRIVATE KEY") => {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            rsa(rsa::RsaPrivateKey::from_pkcs1_pem(text.trim())
                .map_err(|e| format!("not a PKCS#1 RSA key ({e})"))?)
        }
        Some("PRIVATE KEY") => {
            if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(text.trim()) {
                return rsa(key);
            }
            match ed25519_dalek::SigningKey::from_pkcs8_pem(text.trim()) {
                Ok(key) => ed25519(key.as_bytes()),
                Err(_) => Err("a PKCS#8 key, but neither RSA nor Ed25519".into()),
            }
        }
        Some("ENCRYPTED PRIVATE KEY") => Err(
            "the key is encrypted (tact has no passphrase to open it): write it out unencrypted with `openssl pkey -in KEY -out KEY.pem` and chmod 600 it"
                .into(),
        ),
        Some(other) if other != "ED25519 PRIVATE KEY" && other.ends_with("PRIVATE KEY") => {
            Err(format!("a `{other}`"))
        }
        _ => {
            // The bare seed, with or without a PEM-style wrapper.
            let body: String = text
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .flat_map(|l| l.split_whitespace())
                .collect();
            match base64::engine::general_purpose::STANDARD.decode(&body) {
                Ok(seed) if seed.len() == 32 => ed25519(&seed),
                _ => Err("no PEM key and not the base64 of a 32-byte Ed25519 seed".into()),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_no_key_material_and_say_what_is_wrong() {
        let e = |t: &str| parse_key(t).err().unwrap();
        assert!(e("hello").contains("32-byte"));
        assert!(
            e("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n")
                .contains("EC PRIVATE KEY")
        );
        let enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIGbMFcGCSqGSIb3\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(e(enc).contains("encrypted"));
        let bad = "-----BEGIN PRIVATE KEY-----\nQUJDRA==\n-----END PRIVATE KEY-----\n";
        let why = e(bad);
        assert!(why.contains("neither") && !why.contains("QUJD"), "{why}");
        // The 32-byte seed, bare and wrapped, as before.
        let seed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(parse_key(&seed).is_ok());
        assert!(
            parse_key(&format!(
                "-----BEGIN ED25519 PRIVATE KEY-----\n{seed}\n-----END ED25519 PRIVATE KEY-----\n"
            ))
            .is_ok()
        );
    }
}
