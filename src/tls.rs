//! One rustls client configuration for every TLS client in the core (the PostgreSQL store,
//! the IMAP bounce mailbox): ring as the provider, certificates and host names always
//! verified, against the Mozilla roots or a private CA file that replaces them.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client configuration trusting the webpki (Mozilla) roots, or only the certificates in
/// the PEM file `roots` (a private CA, as libpq's `sslrootcert` does). The error names the
/// file and the cause.
pub fn client_config(roots: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
            for c in certs {
                store.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            // An empty or non-PEM file would otherwise trust nothing and fail later with a
            // vaguer "unknown issuer".
            if store.is_empty() {
                return Err(bad(&"no PEM certificate in the file"));
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The provider is named rather than taken from the process default, which panics
    // when more than one is compiled in.
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(store)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let f = dir.path().join("empty.pem");
        std::fs::write(&f, "not a certificate\n").expect("write");
        let e = client_config(Some(&f)).expect_err("an empty root file was accepted");
        assert!(e.contains("empty.pem"), "{e}");
        assert!(e.contains("no PEM certificate"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(&missing)).expect_err("a missing file was accepted");
        assert!(e.contains("missing.pem"), "{e}");
    }

    #[test]
    fn the_default_trusts_the_webpki_roots() {
        client_config(None).expect("the default configuration");
    }
}
