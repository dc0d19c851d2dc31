#!/usr/bin/env python3
"""An independent DKIM check for tact's send tests, with dkimpy (and PyNaCl for Ed25519).

  dkim_verify.py keygen DIR
      writes DIR/rsa.pem (PKCS#1 "BEGIN RSA PRIVATE KEY") and DIR/ed25519.key (base64 of the
      32-byte seed), both 0600, and prints {"rsa": TXT, "ed25519": TXT} with the DNS records.
  dkim_verify.py verify RECORDS_JSON FILE...
      RECORDS_JSON maps "selector._domainkey.domain." to its TXT record; nothing is looked up
      in real DNS. Each FILE is one message (LF or CRLF line ends). Prints one JSON object per
      file: {"file", "ok", "tags": {...the DKIM-Signature tags...}}.
"""

import base64
import json
import os
import sys

try:
    import dkim
    import nacl  # noqa: F401  (dkimpy verifies Ed25519 with PyNaCl)
except ImportError as e:
    sys.stderr.write(f"missing Python module: {e}. Run tests/setup.sh (python3 -m pip install dkimpy pynacl)\n")
    sys.exit(3)


def rsa_keypair():
    """A 2048-bit RSA key as PKCS#1 PEM, and its public key as DER (SubjectPublicKeyInfo)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            key = os.path.join(d, "k.pem")
            # OpenSSL 3 writes PKCS#8 unless told -traditional; 1.1 has no such flag.
            r = subprocess.run(["openssl", "genrsa", "-traditional", "-out", key, "2048"], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
            pub = subprocess.run(
                ["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"], check=True, capture_output=True
            ).stdout
            with open(key, "rb") as f:
                return f.read(), pub
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    pub = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, pub


def keygen(out):
    import nacl.signing

    pem, rsa_pub = rsa_keypair()
    ed_key = nacl.signing.SigningKey.generate()
    seed = bytes(ed_key)  # the 32-byte seed (RFC 8463's private key)
    ed_pub = bytes(ed_key.verify_key)
    for name, data in (("rsa.pem", pem), ("ed25519.key", base64.b64encode(seed) + b"\n")):
        path = os.path.join(out, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
    print(
        json.dumps(
            {
                "rsa": "v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_pub).decode(),
                "ed25519": "v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_pub).decode(),
            }
        )
    )


def tags_of(message):
    """The tags of the first DKIM-Signature header, unfolded."""
    lines = message.split(b"\r\n")
    value = None
    for line in lines:
        if value is not None:
            if line[:1] in (b" ", b"\t"):
                value += line
                continue
            break
        if line.lower().startswith(b"dkim-signature:"):
            value = line.split(b":", 1)[1]
        if line == b"":
            break
    if value is None:
        return {}
    tags = {}
    for part in value.decode("ascii", "replace").split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            tags[k.strip()] = "".join(v.split())
    return tags


def verify(records_json, files):
    records = json.loads(records_json)

    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        if not n.endswith("."):
            n += "."
        txt = records.get(n)
        return txt.encode() if txt is not None else None

    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        message = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        try:
            ok = bool(dkim.verify(message, dnsfunc=dnsfunc))
            error = None
        except Exception as e:  # a malformed signature is a failed one
            ok = False
            error = str(e)
        print(json.dumps({"file": path, "ok": ok, "error": error, "tags": tags_of(message)}))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "keygen":
        keygen(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "verify":
        verify(sys.argv[2], sys.argv[3:])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
