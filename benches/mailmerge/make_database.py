#!/usr/bin/env python3
"""Build mailmerge's database from tact's preview, so both render the SAME messages.

    python3 benches/mailmerge/make_database.py PREVIEW_DIR CUSTOMERS_CSV OUT_CSV

mailmerge cannot segment, check consent or seal unsubscribe tokens, so it gets the work
already decided: one row per .eml that `tact preview` wrote (line-NNNNNNN.eml names the
CSV line), in line order, with the customer fields the templates use taken from the
CSV, and tact's per-recipient tool variables (`personalised`, `unsubscribe_url`,
`why_you_got_this`) read back from the .eml. Standard library only.
"""

import csv
import email
import email.policy
import sys
from pathlib import Path

FIELDS = ["first_name", "favourite_category", "loyalty_tier"]
RULE = "-" * 72


def tool_vars(eml):
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    url = str(msg["List-Unsubscribe"]).strip().removeprefix("<").removesuffix(">")
    text = msg.get_body(("plain",)).get_content()
    lines = text.splitlines()
    why = lines[lines.index(RULE) + 1]
    personalised = why.endswith("tailored to you.")
    return personalised, url, why


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    preview, customers, out = (Path(a) for a in sys.argv[1:])
    emls = sorted(preview.glob("line-*.eml"))
    wanted = {int(p.stem.removeprefix("line-")): p for p in emls}
    rows = {}
    with customers.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            # The generated audience has no embedded newlines: the record ends on this line.
            if reader.line_num in wanted:
                rows[reader.line_num] = row
    missing = set(wanted) - set(rows)
    if missing:
        sys.exit(f"{len(missing)} preview files name no CSV line, e.g. {min(missing)}")
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "personalised", *FIELDS, "unsubscribe_url", "why_you_got_this"])
        for line, eml in sorted(wanted.items()):
            personalised, url, why = tool_vars(eml)
            r = rows[line]
            values = [r[k] for k in FIELDS] if personalised else [""] * len(FIELDS)
            # Jinja2: the empty string is false, any other string true.
            w.writerow([r["email"].strip(), "yes" if personalised else "", *values, url, why])
    print(f"wrote {out}: {len(wanted)} recipients", file=sys.stderr)


if __name__ == "__main__":
    main()
