//! DKIM signing with the campaign's own key (RFC 6376; Ed25519 per RFC 8463).

use lettre::message::header::HeaderName;

use crate::campaign::Campaign;
use crate::error::{Error, Location, Result};

/// The headers RFC 8058 §4 needs under the signature for one-click unsubscribe.
pub const DKIM_HEADERS: [&str; 6] = [
    "From",
    "Subject",
    "Date",
    "To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
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

/// RSA keys as PKCS#1 PEM; Ed25519 keys as the base64 of the 32-byte seed (RFC 8463),
/// optionally in a PEM-style wrapper. The file must be 0600.
pub fn load_dkim_key(path: &std::path::Path) -> Result<lettre::message::dkim::DkimSigningKey> {
    use lettre::message::dkim::{DkimSigningAlgorithm, DkimSigningKey};
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
    let bad = |e: String| Error::input(Location::file(path), format!("not a usable DKIM key: {e}"));
    if text.contains("BEGIN RSA PRIVATE KEY") {
        DkimSigningKey::new(&text, DkimSigningAlgorithm::Rsa).map_err(|e| bad(e.to_string()))
    } else {
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        DkimSigningKey::new(body.trim(), DkimSigningAlgorithm::Ed25519)
            .map_err(|e| bad(e.to_string()))
    }
}
