#!/usr/bin/env python3
"""Check that mailmerge rendered the same messages as tact, so the race is fair.

    python3 benches/mailmerge/same_messages.py PREVIEW_DIR MAILMERGE_RAW_OUTPUT

Compares, message by message (tact's .eml files in line order against mailmerge's
`--output-format raw` dry run), the To and Subject headers and every decoded text part.
Line endings are normalised (tact's quoted-printable parts decode to CRLF, mailmerge's
base64 parts to LF), and HTML parts are compared after html.unescape: Tera and Jinja2
spell escapes differently (`&#x2F;` vs `/`, `&#x27;` vs `&#39;`). Exits 1 on the first
difference.
"""

import email
import email.policy
import html
import re
import sys
from pathlib import Path


def parts(msg):
    out = {}
    for p in msg.walk():
        if p.is_multipart():
            continue
        text = p.get_content()
        if p.get_content_subtype() == "html":
            text = html.unescape(text)
        out[p.get_content_subtype()] = text.replace("\r\n", "\n").rstrip("\n")
    return out


def summary(msg):
    return {"to": str(msg["To"]).strip(), "subject": str(msg["Subject"]).strip(),
            **parts(msg)}


def main():
    preview, raw = Path(sys.argv[1]), Path(sys.argv[2])
    emls = sorted(preview.glob("line-*.eml"))
    chunks = re.split(r"^>>> message \d+(?: sent)?\n", raw.read_text(encoding="utf-8"),
                      flags=re.M)
    # raw output: ">>> message N", the message, ">>> message N sent", ...
    messages = [c for i, c in enumerate(chunks) if i % 2 == 1]
    if len(messages) != len(emls):
        sys.exit(f"tact wrote {len(emls)} messages, mailmerge {len(messages)}")
    for n, (eml, text) in enumerate(zip(emls, messages), 1):
        a = summary(email.message_from_bytes(eml.read_bytes(), policy=email.policy.default))
        b = summary(email.message_from_string(text, policy=email.policy.default))
        for key in a.keys() | b.keys():
            if a.get(key) != b.get(key):
                print(f"message {n} ({eml.name}) differs in {key}:", file=sys.stderr)
                print(f"  tact:      {a.get(key)!r:.300}", file=sys.stderr)
                print(f"  mailmerge: {b.get(key)!r:.300}", file=sys.stderr)
                sys.exit(1)
    print(f"same {len(emls)} messages: To, Subject, text and HTML parts match")


if __name__ == "__main__":
    main()
