#!/usr/bin/env python3
"""Generate the bundled sample audience, ``customers.csv``, beside this script.

Deterministic (fixed seed, standard library only): running it twice gives a
byte-identical file, so the CSV can be regenerated and reviewed as a diff.

    python3 sample-data/generate_customers.py

The audience belongs to "Northwind Outfitters", a fictional Bristol outdoor-clothing
shop. It is built around the reference date 2026-11-23 (run tact with
``--now 2026-11-23T12:00:00Z`` to reproduce the counts below exactly):

* about 500 rows, mostly GB, names from many cultures, lots of non-ASCII;
* consent columns as messy as real exports: ~70% marketing consent in a dozen
  spellings, ~55% of those also consented to personalisation, consent dates in two
  formats, a few stale (older than 730 days), empty, unparseable or in the future;
* deliberate edge rows, scattered through the file (see EDGE ROWS below):
  duplicate addresses differing only in case/whitespace, invalid addresses, a quoted
  comma, a quoted embedded newline, a CR/LF header-injection attempt in first_name,
  and ONE ragged row with too few fields (the only thing that is not RFC 4180).

Everything is fictional; addresses use the reserved example.com/.org/.net domains.
"""

import csv
import io
import random
import unicodedata
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

SEED = 20261123
TODAY = date(2026, 11, 23)  # the "now" the data is built around
N_ROWS = 500  # data rows in the file, the ragged one included
OUT = Path(__file__).resolve().with_name("customers.csv")

COLUMNS = [
    "customer_id", "email", "first_name", "last_name", "language", "country",
    "postcode", "birth_date", "gender", "loyalty_tier", "favourite_category",
    "last_order_at", "last_order_category", "order_count", "total_spent",
    "last_viewed_product", "last_viewed_at", "churn_score", "health_condition",
    "consent_marketing", "consent_personalisation", "consent_at",
]

CATEGORIES = ["coats", "boots", "knitwear", "scarves", "accessories"]

PRODUCTS = {
    "coats": ["Harbour wool coat", "Quayside waxed jacket", "Storm parka",
              "Brunel quilted gilet", "Clifton duffle coat"],
    "boots": ["Fell walking boots", "Chelsea leather boots", "Suede desert boots",
              "Mendip waterproof boots"],
    "knitwear": ["Aran cable jumper", "Shetland crew-neck", "Fair Isle cardigan",
                 "Merino roll-neck"],
    "scarves": ["Merino ribbed scarf", "Tartan blanket scarf", "Cashmere blend wrap"],
    "accessories": ["Lambswool beanie", "Leather card holder", "Waxed canvas tote",
                    "Sheepskin mittens"],
}

# --- names -----------------------------------------------------------------------
# A name is either a plain string or (display, romanised) for non-Latin scripts;
# the romanised form is only used to build the e-mail address.
NAMES = {
    "english": {
        "female": ["Amelia", "Isla", "Charlotte", "Sophie", "Emily", "Grace", "Ella",
                   "Hannah", "Lucy", "Evie", "Poppy", "Freya", "Jessica", "Ruby"],
        "male": ["Oliver", "Harry", "George", "Jack", "Thomas", "James", "Alfie",
                 "William", "Noah", "Samuel", "Daniel", "Joseph", "Archie", "Max"],
        "last": ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Walker",
                 "Wright", "Robinson", "Thompson", "Hughes", "Green", "Hall", "Clarke",
                 "Cooper", "Ward", "Turner", "Harrison", "Bennett", "Fletcher"],
    },
    "welsh": {
        "female": ["Cerys", "Gwenllian", "Nia", "Ffion", "Seren", "Angharad"],
        "male": ["Rhys", "Dafydd", "Iwan", "Gethin", "Aled", "Owain"],
        "last": ["Llewellyn", "Pryce", "Evans", "ap Gruffydd", "Rhys-Jones", "Morgan"],
    },
    "scottish": {
        "female": ["Eilidh", "Mòrag", "Kirsty", "Ailsa", "Catrìona"],
        "male": ["Callum", "Ruaridh", "Euan", "Hamish", "Fraser"],
        "last": ["MacDonald", "MacLeòid", "Campbell", "Stewart", "Fraser", "Robertson"],
    },
    "irish": {
        "female": ["Aoife", "Siobhán", "Niamh", "Caoimhe", "Róisín", "Saoirse", "Clodagh"],
        "male": ["Ciarán", "Oisín", "Seán", "Pádraig", "Cathal", "Eoin", "Darragh"],
        # Irish surnames change with gender: Ní / Ó, Nic / Mac.
        "last_female": ["Ní Bhriain", "Ní Dhomhnaill", "Nic Giolla", "Murphy", "Kelly",
                        "O'Sullivan", "Byrne", "Walsh"],
        "last_male": ["Ó Briain", "Ó Dónaill", "Mac Giolla", "Murphy", "Kelly",
                      "O'Sullivan", "Byrne", "Walsh"],
    },
    "nigerian": {
        "female": ["Ngozi", "Chiamaka", "Funmilayo", "Yetunde", "Adaeze", "Folake",
                   "Tolulope", "Nneka"],
        "male": ["Oluwaseun", "Adebayo", "Chinedu", "Emeka", "Babatunde", "Ikechukwu",
                 "Olumide"],
        "last": ["Okafor", "Adeyemi", "Okonkwo", "Balogun", "Eze", "Nwosu", "Adewale",
                 "Obi", "Olatunji", "Chukwu"],
    },
    "ghanaian": {
        "female": ["Akosua", "Ama", "Abena", "Efua", "Adjoa"],
        "male": ["Kwame", "Kofi", "Yaw", "Kwabena", "Kojo"],
        "last": ["Mensah", "Asante", "Owusu", "Boateng", "Osei", "Appiah"],
    },
    "indian": {
        "female": ["Priya", "Ananya", "Kavya", "Deepika", "Lakshmi", "Meera", "Aditi",
                   "Shreya"],
        "male": ["Arjun", "Rahul", "Vikram", "Sanjay", "Rohan", "Karthik", "Aarav"],
        "last": ["Raghunathan", "Sharma", "Patel", "Iyer", "Krishnan", "Chatterjee",
                 "Reddy", "Gupta", "Banerjee", "Nair", "Singh"],
    },
    "turkish": {
        "female": ["Ayşe", "Elif", "Zeynep", "Çağla", "Gülşen", "Merve"],
        "male": ["Mehmet", "Emre", "Burak", "Gökhan", "Oğuz", "Mustafa"],
        "last": ["Yılmaz", "Öztürk", "Şahin", "Kaya", "Demir", "Çelik", "Aydın"],
    },
    "german": {
        "female": ["Lena", "Sophie", "Mia", "Anneliese", "Jana", "Katharina", "Lea",
                   "Hannelore"],
        "male": ["Jürgen", "Maximilian", "Lukas", "Jörg", "Felix", "Tobias", "Matthias",
                 "Björn"],
        "last": ["Müller", "Schröder", "Weiß", "Groß", "Becker", "Hoffmann", "Köhler",
                 "Schäfer", "Wagner", "Krüger"],
    },
    "french": {
        "female": ["Zoë", "Anaïs", "Hélène", "Chloé", "Léa", "Maëlle", "Amélie",
                   "Élodie", "Camille"],
        "male": ["François", "Théo", "Jérôme", "Benoît", "Loïc", "Mathis", "Clément",
                 "Étienne"],
        "last": ["Dubois", "Lefèvre", "Moreau", "Girard", "Fontaine", "Rousseau",
                 "Bernard", "Lemaître", "Faure", "Mercier"],
    },
    "spanish": {
        "female": ["María", "Lucía", "Begoña", "Sofía", "Inés", "Nuria", "Ainhoa"],
        "male": ["José", "Álvaro", "Iñaki", "Javier", "Sergio", "Andrés", "Jesús"],
        "last": ["Núñez", "García", "Fernández", "López", "Martínez", "Peña", "Ibáñez",
                 "Muñoz", "Sánchez"],
    },
    "nordic": {
        "female": ["Mette", "Björk", "Ingrid", "Åsa", "Sigríður", "Freja", "Astrid"],
        "male": ["Søren", "Magnús", "Lars", "Anders", "Rasmus", "Mikkel"],
        "last": ["Østergaard", "Jørgensen", "Guðmundsdóttir", "Sigurðsson", "Lindqvist",
                 "Nyström", "Ågren", "Sørensen", "Kjær"],
    },
    "chinese": {
        "female": ["Mei", "Fang", "Xiaoling", ("静", "jing"), ("芳", "fang"), "Yan"],
        "male": ["Wei", "Hao", "Jun", ("伟", "wei"), ("浩然", "haoran"), "Zhiwei"],
        "last": ["Li", "Wang", "Zhang", "Chen", "Liu", ("李", "li"), ("王", "wang"),
                 ("陈", "chen")],
    },
    "vietnamese": {
        "female": ["Lan", "Minh Anh", "Thu Hà", "Ngọc", "Hương"],
        "male": ["Đức", "Minh", "Quang", "Tuấn", "Huy"],
        "last": ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Nguyễn Thị"],
    },
    "polish": {
        "female": ["Małgorzata", "Agnieszka", "Zofia", "Katarzyna", "Joanna"],
        "male": ["Łukasz", "Wojciech", "Paweł", "Michał", "Krzysztof"],
        # Polish surnames ending in -ski/-cki take -ska/-cka for women.
        "last_female": ["Wiśniewska", "Kowalczyk", "Zielińska", "Dąbrowska", "Nowak"],
        "last_male": ["Wiśniewski", "Kowalczyk", "Zieliński", "Dąbrowski", "Nowak"],
    },
    "arabic": {
        "female": ["Layla", "Yasmin", "Nour", "Amira", "Fatima", ("ليلى", "layla")],
        "male": ["Omar", "Karim", "Youssef", "Hassan", "Tariq"],
        "last": ["Haddad", "Al-Sayed", "Farouk", "Mansour", "Khalil", "El Amrani",
                 ("حداد", "haddad")],
    },
    "greek": {
        "female": ["Eleni", "Katerina", ("Μαρία", "maria")],
        "male": ["Nikos", "Dimitris", ("Γιώργος", "giorgos")],
        "last": ["Papadopoulos", "Georgiou", ("Παπαδόπουλος", "papadopoulos")],
    },
    "japanese": {
        "female": ["Yuki", "Sakura", "Aiko", "Haruka"],
        "male": ["Haruto", "Kenji", "Takeshi", "Ren"],
        "last": ["Tanaka", "Satō", "Suzuki", "Watanabe", "Itō"],
    },
}

COUNTRY_WEIGHTS = [("GB", 64), ("IE", 8), ("DE", 6), ("FR", 6), ("US", 6), ("NG", 4),
                   ("IN", 3), ("ES", 2), ("DK", 1)]

CULTURES_BY_COUNTRY = {
    "GB": [("english", 44), ("welsh", 5), ("scottish", 5), ("irish", 4), ("nigerian", 6),
           ("ghanaian", 3), ("indian", 7), ("chinese", 4), ("polish", 5), ("turkish", 2),
           ("french", 2), ("vietnamese", 2), ("arabic", 3), ("greek", 2), ("nordic", 2),
           ("spanish", 2), ("japanese", 2)],
    "IE": [("irish", 60), ("english", 20), ("polish", 10), ("nigerian", 5), ("indian", 5)],
    "DE": [("german", 70), ("turkish", 15), ("polish", 10), ("greek", 5)],
    "FR": [("french", 70), ("arabic", 12), ("vietnamese", 10), ("spanish", 8)],
    "US": [("english", 50), ("spanish", 20), ("chinese", 10), ("indian", 8),
           ("vietnamese", 6), ("japanese", 6)],
    "NG": [("nigerian", 100)],
    "IN": [("indian", 100)],
    "ES": [("spanish", 100)],
    "DK": [("nordic", 100)],
}

# --- postcodes ---------------------------------------------------------------------
GB_DISTRICTS = ["BS1", "BS3", "BS5", "BS6", "BS7", "BS8", "BS16", "BA1", "BA2", "M1",
                "M20", "L1", "L17", "LS2", "LS6", "B1", "B15", "EH3", "EH8", "G12",
                "CF10", "CF24", "NE1", "SW1A", "SW9", "E8", "N1", "NW5", "SE15", "W12",
                "EC1V", "OX1", "CB2", "BN1", "EX4", "PL4", "NG7", "S10", "YO1", "AB10",
                "BT7", "TR18", "LL55", "GL50", "TA1"]
GB_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
IE_ROUTING_KEYS = ["D02", "D04", "D06", "D6W", "D08", "D15", "T12", "T23", "H91", "V94",
                   "X91", "A94", "K78", "F92"]
IE_UNIQUE_CHARS = "ACDEFHKNPRTVWXY0123456789"
DE_PREFIXES = ["01", "04", "06", "09", "10", "12", "20", "22", "28", "30", "40", "50",
               "60", "70", "80", "81", "90"]  # 01/04/06/09: leading zero
FR_PREFIXES = ["75", "69", "13", "31", "33", "44", "59", "67", "06", "01", "35"]
US_ZIPS = ["02139", "02116", "10001", "10027", "11211", "60614", "94103", "94110",
           "98103", "78704", "30307", "19104", "07030", "06511", "97209"]
NG_POSTCODES = ["100001", "100271", "101233", "900001", "900108", "500001", "200001"]
IN_PINS = ["560001", "560034", "600028", "400050", "110016", "700019", "500033"]
ES_POSTCODES = ["28013", "28004", "08001", "08012", "46001", "41001", "48001"]
DK_POSTCODES = ["2100", "2200", "1050", "8000", "5000", "9000"]

# --- consent spellings (DESIGN §2: yes, y, true, 1, opt-in, opted-in, granted; any
# case, trimmed, mean granted; everything else means NOT granted) -------------------
GRANTED = [("yes", 20), ("Yes", 15), ("Y", 6), ("y", 3), ("true", 8), ("TRUE", 4),
           ("1", 12), ("opt-in", 8), ("opted-in", 6), ("granted", 6), ("YES", 3),
           (" yes", 2), ("Opt-In", 2), ("True", 2)]
NOT_GRANTED = [("no", 30), ("", 25), ("No", 8), ("maybe", 5), ("unknown", 6), ("0", 12),
               ("false", 8), ("N", 3), ("opt-out", 3), ("N/A", 2)]

HEALTH_CONDITIONS = ["asthma", "diabetes", "type 1 diabetes", "coeliac disease",
                     "eczema", "arthritis", "migraine", "psoriasis"]

_FOLD = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "ß": "ss", "ı": "i",
                       "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "ð": "d", "Ð": "D",
                       "þ": "th", "Þ": "Th", "œ": "oe"})


def ascii_fold(s):
    """'Søren Østergaard' -> 'sorenostergaard'; used only to build e-mail addresses."""
    s = unicodedata.normalize("NFKD", s.translate(_FOLD))
    return "".join(c for c in s.lower() if c.isascii() and c.isalnum())


def pick(rng, weighted):
    values, weights = zip(*weighted)
    return rng.choices(values, weights)[0]


def display(name):
    return name[0] if isinstance(name, tuple) else name


def romanised(name):
    return ascii_fold(name[1] if isinstance(name, tuple) else name)


def rand_date(rng, start, end):
    return start + timedelta(days=rng.randint(0, (end - start).days))


def consent_timestamp(rng, day):
    """Either RFC 3339 (Z or an offset) or a bare YYYY-MM-DD, as real exports mix them."""
    r = rng.random()
    if r < 0.30:
        return day.isoformat()
    t = time(rng.randint(7, 22), rng.choice([0, 5, 15, 30, 42, 55]), 0)
    if r < 0.88:
        return datetime.combine(day, t).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.combine(day, t).strftime("%Y-%m-%dT%H:%M:%S") + rng.choice(
        ["+01:00", "+00:00", "-05:00"])


def postcode(rng, country):
    if country == "GB":
        return (f"{rng.choice(GB_DISTRICTS)} {rng.randint(1, 9)}"
                f"{rng.choice(GB_INWARD_LETTERS)}{rng.choice(GB_INWARD_LETTERS)}")
    if country == "IE":
        return f"{rng.choice(IE_ROUTING_KEYS)} " + "".join(
            rng.choice(IE_UNIQUE_CHARS) for _ in range(4))
    if country == "DE":
        return rng.choice(DE_PREFIXES) + f"{rng.randint(0, 999):03d}"
    if country == "FR":
        return rng.choice(FR_PREFIXES) + f"{rng.randint(0, 20):03d}"
    return rng.choice({"US": US_ZIPS, "NG": NG_POSTCODES, "IN": IN_PINS,
                       "ES": ES_POSTCODES, "DK": DK_POSTCODES}[country])


def language(rng, country, culture):
    if country == "GB":
        if culture == "welsh" and rng.random() < 0.4:
            return "cy"
        if culture == "scottish" and rng.random() < 0.2:
            return "gd"
        return "en"
    if country == "IE":
        return "ga" if culture == "irish" and rng.random() < 0.4 else "en"
    if country == "DE":
        return "tr" if culture == "turkish" and rng.random() < 0.3 else "de"
    if country == "FR":
        return "fr"
    if country == "US":
        return "es" if culture == "spanish" and rng.random() < 0.4 else "en"
    if country == "IN":
        return "hi" if rng.random() < 0.2 else "en"
    if country == "ES":
        return "ca" if rng.random() < 0.2 else "es"
    return {"NG": "en", "DK": "da"}[country]


class Generator:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.used_emails = set()

    def email(self, first, last):
        rng = self.rng
        f, l = romanised(first), romanised(last)
        mixed = rng.random() < 0.08  # "Priya.Raghunathan@example.org"
        if mixed:
            f, l = f.capitalize(), l.capitalize()
        local = rng.choice([
            f"{f}.{l}", f"{f}.{l}", f"{f}{l}", f"{f[0]}.{l}", f"{f}_{l}",
            f"{f}.{l}{rng.randint(1, 99)}", f"{l}.{f}", f"{f}{rng.randint(70, 99)}",
            f"{f}.{l}+news",
        ])
        domain = pick(rng, [("example.com", 5), ("example.org", 3), ("example.net", 2)])
        address = f"{local}@{domain}"
        while address.lower() in self.used_emails:
            address = f"{local}{rng.randint(2, 999)}@{domain}"
        self.used_emails.add(address.lower())
        return address

    def person(self, country):
        rng = self.rng
        culture = pick(rng, CULTURES_BY_COUNTRY[country])
        pool = NAMES[culture]
        sex = rng.choice(["female", "male"])
        first = rng.choice(pool[sex])
        last = rng.choice(pool.get(f"last_{sex}") or pool["last"])
        r = rng.random()
        gender = "non-binary" if r < 0.04 else "" if r < 0.14 else sex
        return culture, first, last, gender

    def row(self, **fixed):
        """One customer; keyword arguments pin fields (used for showcase and edge rows)."""
        rng = self.rng
        country = fixed.get("country") or pick(rng, COUNTRY_WEIGHTS)
        culture, first, last, gender = self.person(country)
        first, last = fixed.get("first_name", first), fixed.get("last_name", last)
        r = {c: "" for c in COLUMNS}
        r["country"] = country
        r["first_name"], r["last_name"] = display(first), display(last)
        r["email"] = fixed.get("email") or self.email(first, last)
        r["language"] = language(rng, country, culture)
        r["postcode"] = postcode(rng, country)
        r["birth_date"] = rand_date(rng, date(1950, 1, 1), date(2006, 12, 31)).isoformat()
        r["gender"] = gender
        r["loyalty_tier"] = pick(rng, [("bronze", 53), ("silver", 30), ("gold", 15), ("", 2)])
        r["favourite_category"] = pick(rng, [(c, 19) for c in CATEGORIES] + [("", 5)])

        if rng.random() < 0.9:
            orders = min(60, int(rng.expovariate(1 / 5)) + 1)
            r["order_count"] = str(orders)
            spent = sum(rng.uniform(25, 180) for _ in range(orders))
            r["total_spent"] = f"{spent:.2f}"
            last_order = rand_date(rng, date(2025, 1, 1), date(2026, 11, 19))
            r["last_order_at"] = last_order.isoformat()
            r["last_order_category"] = rng.choice(CATEGORIES)
            recency = (TODAY - last_order).days / 690
        else:
            r["order_count"], r["total_spent"] = "0", "0.00"
            recency = 0.9
        if rng.random() < 0.85:
            category = r["favourite_category"] or rng.choice(CATEGORIES)
            if rng.random() < 0.4:
                category = rng.choice(CATEGORIES)
            r["last_viewed_product"] = rng.choice(PRODUCTS[category])
            if rng.random() < 0.7:  # within the last 90 days
                viewed = rand_date(rng, date(2026, 8, 26), date(2026, 11, 22))
            else:  # older: `stale-behaviour` territory
                viewed = rand_date(rng, date(2025, 9, 1), date(2026, 8, 24))
            r["last_viewed_at"] = viewed.isoformat()
        churn = 0.15 + 0.7 * recency + rng.gauss(0, 0.12)
        r["churn_score"] = f"{min(1.0, max(0.0, churn)):.2f}"
        if rng.random() < 0.04:
            r["health_condition"] = rng.choice(HEALTH_CONDITIONS)

        marketing = fixed.get("marketing")
        if marketing is None:
            marketing = rng.random() < 0.68
        personalisation = fixed.get("personalisation")
        if personalisation is None:
            personalisation = rng.random() < (0.52 if marketing else 0.15)
        r["consent_marketing"] = pick(rng, GRANTED if marketing else NOT_GRANTED)
        r["consent_personalisation"] = pick(rng, GRANTED if personalisation else NOT_GRANTED)
        if marketing:  # current: within the last two years
            day = rand_date(rng, date(2024, 12, 1), date(2026, 11, 22))
            r["consent_at"] = consent_timestamp(rng, day)
        elif rng.random() < 0.5:  # when the "no" was recorded
            day = rand_date(rng, date(2023, 6, 1), date(2026, 11, 22))
            r["consent_at"] = consent_timestamp(rng, day)

        for key in ("email", "first_name", "last_name", "language", "gender",
                    "consent_marketing", "consent_personalisation", "consent_at",
                    "last_viewed_product", "postcode"):
            if key in fixed and key not in ("email", "first_name", "last_name"):
                r[key] = fixed[key]
        return r


# Showcase customers at the top of the file, so previews open on them.
# (first, last, gender, country, language, marketing, personalisation)
SHOWCASE = [
    ("Ngozi", "Okafor", "female", "GB", "en", True, True),
    ("Søren", "Østergaard", "male", "DK", "da", True, False),
    (("伟", "wei"), ("李", "li"), "male", "GB", "en", True, True),
    ("Wei", "Li", "male", "US", "en", True, True),
    ("José", "Núñez", "male", "ES", "es", True, False),
    ("Aoife", "Ní Bhriain", "female", "IE", "ga", True, True),
    ("Priya", "Raghunathan", "female", "GB", "en", True, True),
    ("Mehmet", "Yılmaz", "male", "DE", "de", True, False),
    ("Zoë", "Dubois", "female", "FR", "fr", True, True),
    ("Oluwaseun", "Adeyemi", "", "NG", "en", True, True),
    ("Lan", "Nguyễn Thị", "female", "GB", "en", True, False),
    ("Kwame", "Mensah", "male", "GB", "en", True, True),
    ("Anaïs", "Lefèvre", "female", "FR", "fr", False, False),
    ("Björk", "Guðmundsdóttir", "female", "GB", "en", True, True),
]

# EDGE ROWS: data-row position (0-based, in the final file) -> what sits there.
DUP_OF_NGOZI = 137      # " Ngozi.Okafor@Example.com" (case + leading space)
INVALID_1 = 45          # "not-an-email"
SMITH_JR = 72           # last_name "Smith, Jr." (quoted comma)
AMPERSAND = 120         # first_name "Chloé & Max" (HTML escaping)
EMBEDDED_NEWLINE = 158  # last_viewed_product with a quoted embedded newline
INVALID_2 = 203         # "anna@"
HEADER_INJECTION = 240  # first_name "Eve\r\nBcc: x@example.net"
RAGGED = 275            # too few fields -> malformed_row
DUP_OF_PRIYA = 311      # "PRIYA.RAGHUNATHAN@EXAMPLE.ORG  " (case + trailing spaces)
INVALID_3 = 389         # "bob@@example.com"
EDGE_POSITIONS = {DUP_OF_NGOZI, INVALID_1, SMITH_JR, AMPERSAND, EMBEDDED_NEWLINE,
                  INVALID_2, HEADER_INJECTION, RAGGED, DUP_OF_PRIYA, INVALID_3}

GB_CONSENTED = dict(country="GB", marketing=True, personalisation=True)


def build():
    g = Generator(SEED)
    rows = []  # everything except the ragged line
    for first, last, gender, country, lang, mkt, pers in SHOWCASE:
        email = None
        if first == "Priya":
            email = "Priya.Raghunathan@example.org"
        elif first == "Ngozi":
            email = "ngozi.okafor@example.com"
        if email:
            g.used_emails.add(email.lower())
        rows.append(g.row(first_name=first, last_name=last, email=email, gender=gender,
                          country=country, language=lang, marketing=mkt,
                          personalisation=pers))
    # Fix the first rows' consent spellings so the top of the file shows the mix.
    for r, (m, p) in zip(rows, [("yes", "yes"), ("Yes", "no"), ("opt-in", "granted"),
                                ("TRUE", "1"), ("Y", ""), ("opted-in", "yes")]):
        r["consent_marketing"], r["consent_personalisation"] = m, p
    rows[0]["consent_at"] = "2025-03-12T10:15:00Z"
    rows[0]["favourite_category"], rows[0]["loyalty_tier"] = "coats", "gold"

    ngozi, priya = rows[0], rows[6]
    while len(rows) < N_ROWS - 1:
        pos = len(rows) + (1 if len(rows) >= RAGGED else 0)  # position in the file
        if pos == DUP_OF_NGOZI:
            dup = dict(ngozi, email=" Ngozi.Okafor@Example.com")
        elif pos == DUP_OF_PRIYA:
            dup = dict(priya, email="PRIYA.RAGHUNATHAN@EXAMPLE.ORG  ")
        else:
            dup = None
        if dup is not None:
            rows.append(dup)
        elif pos in (INVALID_1, INVALID_2, INVALID_3):
            bad = {INVALID_1: "not-an-email", INVALID_2: "anna@",
                   INVALID_3: "bob@@example.com"}[pos]
            first = {INVALID_1: "Dominic", INVALID_2: "Anna", INVALID_3: "Bob"}[pos]
            rows.append(g.row(email=bad, first_name=first, **GB_CONSENTED))
        elif pos == SMITH_JR:
            rows.append(g.row(first_name="Robert", last_name="Smith, Jr.",
                              email="bob.smith.jr@example.com", **GB_CONSENTED))
        elif pos == AMPERSAND:
            rows.append(g.row(first_name="Chloé & Max", last_name="Girard",
                              email="girard.household@example.net", **GB_CONSENTED))
        elif pos == EMBEDDED_NEWLINE:
            rows.append(g.row(last_viewed_product="Harbour wool coat\n(navy, size M)",
                              **GB_CONSENTED))
            rows[-1]["last_viewed_at"] = "2026-11-02"
        elif pos == HEADER_INJECTION:
            rows.append(g.row(first_name="Eve\r\nBcc: x@example.net", last_name="Mallory",
                              email="eve.mallory@example.net",
                              consent_at="2026-02-14T09:30:00Z", **GB_CONSENTED))
        else:
            rows.append(g.row())

    # A handful of granted rows whose consent cannot be shown to be current.
    rng = g.rng
    showcase_or_edge = set(range(len(SHOWCASE))) | {
        p - (1 if p > RAGGED else 0) for p in EDGE_POSITIONS}
    candidates = [i for i, r in enumerate(rows)
                  if i not in showcase_or_edge and r["consent_marketing"].strip().lower()
                  in {v.strip().lower() for v, _ in GRANTED}]
    chosen = rng.sample(candidates, 12)
    stale = ["2023-04-18", "2022-11-02T14:20:00Z", "2023-09-30", "2024-06-07T08:05:00Z",
             "2021-01-15", "2024-11-01"]
    for i, value in zip(chosen, stale + ["", "", "", "", "last spring", "2027-01-01"]):
        rows[i]["consent_at"] = value

    # A few products whose name says more than a coat does: browsing them reveals a
    # pregnancy, a child or a health condition (the `sensitive-value` rule, shown by the
    # you-viewed campaign). Chosen without the random generator, so every other value in
    # the file stays as it was: every 20th GB row with both consents, not stale, not an
    # edge row, that viewed something.
    sensitive = ["Maternity rain parka", "Baby carrier rain cover", "Maternity fleece",
                 "Wheelchair rain poncho", "Kids' waterproof dungarees"]
    stale_rows = set(chosen)
    eligible = [i for i, r in enumerate(rows)
                if i not in showcase_or_edge and i not in stale_rows
                and r["country"] == "GB" and r["last_viewed_product"]
                and r["consent_marketing"].strip().lower() in {v.strip().lower() for v, _ in GRANTED}
                and r["consent_personalisation"].strip().lower() in {"yes", "y", "true", "1", "opt-in", "opted-in", "granted"}]
    for i, product in zip(eligible[::20], sensitive):
        rows[i]["last_viewed_product"] = product

    for i, r in enumerate(rows):
        pos = i + (1 if i >= RAGGED else 0)
        r["customer_id"] = f"NW{pos + 1:05d}"
    ragged = f"NW{RAGGED + 1:05d},jamie.doe@example.com,Jamie,Doe,en,GB,BS3 4QT"
    return rows, ragged


def main():
    rows, ragged = build()
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180: CRLF between records
    writer.writerow(COLUMNS)
    for r in rows[:RAGGED]:
        writer.writerow([r[c] for c in COLUMNS])
    buf.write(ragged + "\r\n")  # the one deliberately broken record (too few fields)
    for r in rows[RAGGED:]:
        writer.writerow([r[c] for c in COLUMNS])
    OUT.write_text(buf.getvalue(), encoding="utf-8", newline="")
    print(f"wrote {OUT.name}: {len(rows) + 1} data rows (1 ragged) + header")


if __name__ == "__main__":
    main()
