//! DKIM keys as OpenSSL writes them: `openssl genpkey` (OpenSSL 3's default, PKCS#8 for RSA
//! and Ed25519) and `openssl genrsa -traditional` (PKCS#1), each signing real messages that
//! the independent verifier (dkimpy) accepts; keys tact cannot use are refused before
//! anything is sent, naming the formats it reads.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;

use super::*;

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = StdCommand::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for the DKIM key tests ({e})"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Writes a 0600 key with `openssl genpkey`/`genrsa` and returns its DNS record.
fn keygen(dir: &Path, file: &str, args: &[&str], ed25519: bool) -> String {
    let path = dir.join(file);
    let p = path.to_str().unwrap();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-out", p]);
    openssl(&full);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let spki = openssl(&["pkey", "-in", p, "-pubout", "-outform", "DER"]);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    if ed25519 {
        // RFC 8463: the bare 32-byte public key, the last 32 bytes of its SPKI.
        assert_eq!(spki.len(), 44, "an Ed25519 SubjectPublicKeyInfo");
        format!("v=DKIM1; k=ed25519; p={}", b64(&spki[12..]))
    } else {
        format!("v=DKIM1; k=rsa; p={}", b64(&spki))
    }
}

fn use_key(t: &Tree, name: &str, selector: &str, key: &str) {
    clone_campaign(t, WINTER, name);
    t.edit(&campaign_rel(name), |s| {
        format!(
            "{s}\n[dkim]\ndomain = \"northwind.example\"\nselector = \"{selector}\"\nprivate_key = \"../../dkim/{key}\"\n"
        )
    });
}

#[test]
fn dkim_keys_from_openssl_3s_default_commands_sign_and_verify() {
    let script = python();
    let t = tree();
    let dir = t.path("dkim");
    fs::create_dir_all(&dir).unwrap();
    let people = pick(&t, 1, 1);
    narrow(&t, WINTER, &people);
    set_send(&t, WINTER, &[]);
    let cases = [
        (
            "pkcs8-rsa",
            "rsa8",
            "rsa8.pem",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            false,
            "-----BEGIN PRIVATE KEY-----",
            "rsa-sha256",
        ),
        (
            "pkcs1-rsa",
            "rsa1",
            "rsa1.pem",
            vec!["genrsa", "-traditional"],
            false,
            "-----BEGIN RSA PRIVATE KEY-----",
            "rsa-sha256",
        ),
        (
            "pkcs8-ed",
            "ed8",
            "ed8.pem",
            vec!["genpkey", "-algorithm", "ed25519"],
            true,
            "-----BEGIN PRIVATE KEY-----",
            "ed25519-sha256",
        ),
    ];
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let mut dns = serde_json::Map::new();
    for (name, selector, key, args, ed, pem_label, _) in &cases {
        let record = keygen(&dir, key, args, *ed);
        assert!(
            t.read(&format!("dkim/{key}")).starts_with(pem_label),
            "{name}: openssl wrote another format"
        );
        dns.insert(
            format!("{selector}._domainkey.northwind.example."),
            Value::String(record),
        );
        use_key(&t, name, selector, key);
        let before = dump.count();
        let (r, _) = send_json(&t, name, &sink, 0);
        assert_eq!(dump.count(), before + 2, "{name}: {}", r.stderr);
    }
    let got = dump.deliveries();
    assert_eq!(got.len(), 2 * cases.len());
    let files = write_deliveries(&t.path("delivered"), &got);
    let results = dkim_verify(&script, dns, &files);
    assert_eq!(results.len(), files.len());
    let mut per_selector: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        assert_eq!(r["ok"], true, "signature does not verify: {r}");
        let s = r["tags"]["s"].as_str().unwrap();
        let case = cases.iter().find(|c| c.1 == s).unwrap();
        assert_eq!(r["tags"]["a"], case.6, "{r}");
        *per_selector.entry(s.to_string()).or_default() += 1;
    }
    assert_eq!(
        per_selector,
        cases.iter().map(|c| (c.1.to_string(), 2)).collect(),
        "every key signed its two messages"
    );
}

#[test]
fn dkim_keys_tact_cannot_use_are_refused_naming_the_formats_it_reads() {
    let t = tree();
    let dir = t.path("dkim");
    fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p("ec.pem"),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-aes-128-cbc",
        "-pass",
        "pass:secret",
        "-out",
        &p("encrypted.pem"),
    ]);
    fs::write(dir.join("garbage.pem"), "not a key at all\n").unwrap();
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    for (i, (key, says)) in [
        ("ec.pem", "PKCS#8"),
        ("encrypted.pem", "encrypted"),
        ("garbage.pem", "PKCS#8"),
    ]
    .into_iter()
    .enumerate()
    {
        fs::set_permissions(dir.join(key), fs::Permissions::from_mode(0o600)).unwrap();
        let name = format!("bad-key-{i}");
        use_key(&t, &name, "s1", key);
        let r = run_expect(&mut send_cmd(&t, &name, &sink.url()), 2);
        for want in [key, says, "PKCS#1", "openssl genpkey"] {
            assert!(
                r.stderr.contains(want),
                "{key}: no `{want}` in {}",
                r.stderr
            );
        }
        assert!(!r.stderr.contains("decode error"), "{key}: {}", r.stderr);
        assert!(
            campaign_rows(&t.state(), &name).is_empty(),
            "{key}: recipients were queued"
        );
    }
    assert_eq!(dump.count(), 0);
}
