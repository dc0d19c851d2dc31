#!/usr/bin/env python3
"""Generate a large, realistic audience for tact's speed benchmarks.

    python3 benches/gen_audience.py ROWS OUTDIR

writes
    OUTDIR/customers.csv              ROWS data rows, the columns of sample-data/customers.csv
    OUTDIR/customers.schema.toml      a copy of sample-data/customers.schema.toml
    OUTDIR/campaigns/winter-sale.toml sample-data's winter-sale, pointed at the above
                                      (templates = this repository's templates/ folder)

Deterministic and standard library only: the same ROWS gives a byte-identical CSV. The
name, postcode and product tables are borrowed from sample-data/generate_customers.py so
the data looks like the sample (many cultures, lots of non-ASCII). Unlike the sample it
has no deliberate edge rows: it measures the common path. Proportions, around the
reference date 2026-11-23 (run tact with --now 2026-11-23T12:00:00Z):

* ~60% country GB (the winter-sale segment), the rest IE/DE/FR/US/NG/IN/ES/DK;
* ~70% marketing consent, in the sample's dozen spellings; ~55% of those also
  consented to personalisation (~15% of the others did, which changes nothing);
* consent_at within the last year before 2026-11-23, mixed RFC 3339 / YYYY-MM-DD, so
  no granted consent is stale; every address is unique and valid.
"""

import csv
import importlib.util
import random
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample-data"
SEED = 20261123
TODAY = date(2026, 11, 23)

_spec = importlib.util.spec_from_file_location("sample_gen", SAMPLE / "generate_customers.py")
sample = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sample)  # defines tables only; main() is guarded

COLUMNS = sample.COLUMNS
COUNTRY_WEIGHTS = [("GB", 60), ("IE", 9), ("DE", 7), ("FR", 7), ("US", 7), ("NG", 4),
                   ("IN", 3), ("ES", 2), ("DK", 1)]
MARKETING = 0.70
PERSONALISATION = 0.55  # of those with marketing consent
DOMAINS = [("example.com", 5), ("example.org", 3), ("example.net", 2)]


class Weighted:
    """rng.choices with precomputed cumulative weights (much faster in a hot loop)."""

    def __init__(self, pairs):
        self.values = [v for v, _ in pairs]
        self.cum = []
        total = 0
        for _, w in pairs:
            total += w
            self.cum.append(total)

    def __call__(self, rng):
        return rng.choices(self.values, cum_weights=self.cum)[0]


def name_pool(culture):
    """(display, romanised) pairs per sex, for first and last names."""
    pool = sample.NAMES[culture]

    def both(names):
        return [(sample.display(n), sample.romanised(n) or "x") for n in names]

    out = {}
    for sex in ("female", "male"):
        out[sex] = both(pool[sex])
        out["last_" + sex] = both(pool.get("last_" + sex) or pool["last"])
    return out


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit():
        sys.exit("usage: gen_audience.py ROWS OUTDIR")
    rows, outdir = int(sys.argv[1]), Path(sys.argv[2])
    (outdir / "campaigns").mkdir(parents=True, exist_ok=True)

    rng = random.Random(SEED)
    country_of = Weighted(COUNTRY_WEIGHTS)
    culture_of = {c: Weighted(w) for c, w in sample.CULTURES_BY_COUNTRY.items()}
    pools = {c: name_pool(c) for c in sample.NAMES}
    domain_of = Weighted(DOMAINS)
    tier_of = Weighted([("bronze", 53), ("silver", 30), ("gold", 15), ("", 2)])
    fav_of = Weighted([(c, 19) for c in sample.CATEGORIES] + [("", 5)])
    granted = Weighted(sample.GRANTED)
    not_granted = Weighted(sample.NOT_GRANTED)
    categories, products = sample.CATEGORIES, sample.PRODUCTS
    conditions = sample.HEALTH_CONDITIONS
    day = [(TODAY - timedelta(days=n)) for n in range(0, 366 * 2)]
    iso = [d.isoformat() for d in day]
    birth0 = date(1950, 1, 1).toordinal()
    birth_span = date(2006, 12, 31).toordinal() - birth0

    def when(d_iso):
        r = rng.random()
        if r < 0.30:
            return d_iso
        t = f"T{rng.randint(7, 22):02d}:{rng.choice((0, 5, 15, 30, 42, 55)):02d}:00"
        if r < 0.88:
            return d_iso + t + "Z"
        return d_iso + t + rng.choice(("+01:00", "+00:00", "-05:00"))

    path = outdir / "customers.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(COLUMNS)
        for i in range(rows):
            country = country_of(rng)
            culture = culture_of[country](rng)
            pool = pools[culture]
            sex = "female" if rng.random() < 0.5 else "male"
            first, first_r = rng.choice(pool[sex])
            last, last_r = rng.choice(pool["last_" + sex])
            g = rng.random()
            gender = "non-binary" if g < 0.04 else "" if g < 0.14 else sex
            # The row number keeps every address unique without a million-entry set.
            local = rng.choice((f"{first_r}.{last_r}", f"{first_r}{last_r}",
                                f"{first_r[0]}.{last_r}", f"{first_r}_{last_r}",
                                f"{last_r}.{first_r}"))
            if rng.random() < 0.08:
                local = local.capitalize()
            email = f"{local}.{i + 1}@{domain_of(rng)}"
            fav = fav_of(rng)
            if rng.random() < 0.9:
                orders = min(60, int(rng.expovariate(0.2)) + 1)
                spent = f"{orders * rng.uniform(60, 140):.2f}"
                last_order = rng.randint(4, 690)
                order_at, order_cat = iso[last_order], rng.choice(categories)
                recency = last_order / 690
            else:
                orders, spent, order_at, order_cat, recency = 0, "0.00", "", "", 0.9
            viewed, viewed_at = "", ""
            if rng.random() < 0.85:
                cat = fav if fav and rng.random() >= 0.4 else rng.choice(categories)
                viewed = rng.choice(products[cat])
                viewed_at = iso[rng.randint(1, 89) if rng.random() < 0.7 else rng.randint(91, 450)]
            churn = min(1.0, max(0.0, 0.15 + 0.7 * recency + rng.gauss(0, 0.12)))
            marketing = rng.random() < MARKETING
            personal = rng.random() < (PERSONALISATION if marketing else 0.15)
            consent_at = ""
            if marketing:
                consent_at = when(iso[rng.randint(1, 364)])
            elif rng.random() < 0.5:
                consent_at = when(iso[rng.randint(1, 700)])
            w.writerow((
                f"NW{i + 1:07d}", email, first, last,
                sample.language(rng, country, culture), country,
                sample.postcode(rng, country),
                date.fromordinal(birth0 + rng.randint(0, birth_span)).isoformat(),
                gender, tier_of(rng), fav, order_at, order_cat, orders, spent,
                viewed, viewed_at, f"{churn:.2f}",
                rng.choice(conditions) if rng.random() < 0.04 else "",
                granted(rng) if marketing else not_granted(rng),
                granted(rng) if personal else not_granted(rng),
                consent_at,
            ))

    shutil.copyfile(SAMPLE / "customers.schema.toml", outdir / "customers.schema.toml")
    campaign = (SAMPLE / "campaigns" / "winter-sale.toml").read_text(encoding="utf-8")
    replaced = []
    lines = []
    for line in campaign.splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "audience":
            line = 'audience = "../customers.csv"'
        elif key == "schema":
            line = 'schema = "../customers.schema.toml"'
        elif key == "templates":
            line = f"templates = {toml_string(str(REPO / 'templates'))}"
        elif key == "min_segment_size":
            line = "min_segment_size = 50"
        else:
            lines.append(line)
            continue
        replaced.append(key)
        lines.append(line)
    missing = {"audience", "schema", "templates", "min_segment_size"} - set(replaced)
    if missing:
        sys.exit(f"sample winter-sale.toml lacks {sorted(missing)}: update gen_audience.py")
    # The sample's leading comment describes the sample's rows; say what this is instead.
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    header = ["# sample-data/campaigns/winter-sale.toml over a generated audience,",
              f"# written by benches/gen_audience.py {rows}.", ""]
    (outdir / "campaigns" / "winter-sale.toml").write_text("\n".join(header + lines) + "\n",
                                                          encoding="utf-8")
    print(f"wrote {path} ({rows} rows, {path.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)


def toml_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


if __name__ == "__main__":
    main()
