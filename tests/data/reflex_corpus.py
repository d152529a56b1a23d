"""Generate the labelled reflex corpus: tests/data/reflex/{pii,injection,benign,heldout}.jsonl.

Deterministic: seeded Faker (pinned in setup.cfg) and a seeded random.Random, so running it again
rewrites the same files byte for byte. Run from the repository root:

    .venv/bin/python tests/data/reflex_corpus.py

Each line: {"id", "label" (pii | injection | benign), "types" (what must be found), "source",
"text"}. heldout.jsonl mixes all three labels: texts written after tuning, to measure honestly.
SOURCES.md says where every part comes from.
"""

from __future__ import annotations

import base64
import codecs
import json
import random
import string
import sys
from datetime import date
from pathlib import Path

from faker import Faker

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # so app.reflex.checksums imports when run as a script

# After the sys.path line above: these imports must work when the file runs as a script.
from app.reflex.checksums import base58check_encode, bech32_encode, luhn_ok  # noqa: E402
from tests.data import reflex_cases as cases  # noqa: E402

SEED = 20261123
OUT = Path(__file__).resolve().parent / "reflex"
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "en_CA", "es_ES")


def _day(f: Faker) -> str:
    """A date in a fixed range: Faker's own date() ends today, which would change the corpus."""
    return f.date_between_dates(date(2019, 1, 1), date(2026, 6, 30)).isoformat()


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- PII values: each returns the text fragment (value with any context it needs) ---------------

def _card(f: Faker, r: random.Random) -> str:
    number = f.credit_card_number(card_type=r.choice(["visa16", "mastercard", "amex", "discover"]))
    style = r.choice(["plain", "space", "dash"])
    if style == "plain" or len(number) != 16:
        return f"card {number}"
    groups = [number[i:i + 4] for i in range(0, 16, 4)]
    return "card " + (" " if style == "space" else "-").join(groups)


def _iban(f: Faker, r: random.Random) -> str:
    iban = f.iban()
    if r.random() < 0.5:
        iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def _dob(f: Faker, r: random.Random) -> str:
    d = f.date_between_dates(date(1936, 1, 1), date(2006, 12, 31))
    shown = r.choice([d.strftime("%m/%d/%Y"), d.isoformat(), d.strftime("%d %B %Y"),
                      d.strftime("%B %d, %Y"), d.strftime("%d.%m.%Y")])
    label = r.choice(["date of birth: ", "DOB ", "born on ", "birthday is ", "Date of Birth - "])
    return label + shown


def _jwt(f: Faker, r: random.Random) -> str:
    header = _b64url(json.dumps({"alg": r.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    body = _b64url(json.dumps({"sub": str(f.random_int(1000, 99999)), "name": f.first_name(),
                               "iat": r.randrange(1_600_000_000, 1_790_000_000)}).encode())
    return f"{header}.{body}.{_alnum(r, 43, string.ascii_letters + string.digits + '-_')}"


def _pem(f: Faker, r: random.Random) -> str:
    lines = [_alnum(r, 64, string.ascii_letters + string.digits + "+/") for _ in range(4)]
    kind = r.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


def _wallet(f: Faker, r: random.Random) -> str:
    kind = r.choice(["b58", "bech32", "eth"])
    if kind == "b58":
        return "BTC address " + base58check_encode(bytes([r.choice([0, 5])]) + r.randbytes(20))
    if kind == "bech32":
        return "send it to " + bech32_encode("bc", [0] + [r.randrange(32) for _ in range(32)])
    body = "".join(r.choice("0123456789abcdefABCDEF") for _ in range(40))
    return "my ETH wallet 0x" + body


PII_VALUES = {
    "email": lambda f, r: f.email(),
    "phone": lambda f, r: r.choice(["call ", "phone: ", "mobile ", "reach me on ", "tel. "])
    + f.phone_number(),
    "ssn": lambda f, r: ("SSN " if r.random() < 0.3 else "") + f.ssn(),
    "itin": lambda f, r: "ITIN " + f.itin(),
    "credit_card": _card,
    "iban": _iban,
    "ipv4": lambda f, r: r.choice(["from ", "server ", "client IP ", "host "]) + f.ipv4_public(),
    "ipv6": lambda f, r: "address " + f.ipv6(),
    "mac_address": lambda f, r: "device MAC " + f.mac_address(),
    "date_of_birth": _dob,
    "passport": lambda f, r: r.choice(["passport number ", "Passport No. ", "passport: "])
    + f.passport_number(),
    "drivers_license": lambda f, r: r.choice(["driver's license ", "Driving licence number: ",
                                              "DL# "])
    + r.choice(string.ascii_uppercase) + str(r.randrange(10**6, 10**8)),
    "bank_account": lambda f, r: r.choice(["account number ", "bank account: ", "Acct # "])
    + str(r.randrange(10**7, 10**12)),
    "aba_routing": lambda f, r: r.choice(["routing number ", "ABA ", "routing: "]) + f.aba(),
    "medical_record": lambda f, r: r.choice(["MRN ", "medical record number: ", "patient ID "])
    + r.choice(["", "MR-", "H"]) + str(r.randrange(10**5, 10**9)),
    "aws_access_key": lambda f, r: "AKIA" + _alnum(r, 16, string.ascii_uppercase + string.digits),
    "aws_secret_key": lambda f, r: "aws_secret_access_key = "
    + _alnum(r, 40, string.ascii_letters + string.digits + "/+"),
    "github_token": lambda f, r: r.choice(["ghp_", "gho_", "ghs_"]) + _alnum(r, 36),
    "stripe_key": lambda f, r: r.choice(["sk_live_", "rk_live_", "sk_test_"]) + _alnum(r, 24),
    "slack_token": lambda f, r: "xoxb-" + "-".join(str(r.randrange(10**10, 10**12))
                                                   for _ in range(2)) + "-" + _alnum(r, 24),
    "google_api_key": lambda f, r: "AIza" + _alnum(r, 35,
                                                    string.ascii_letters + string.digits + "-_"),
    "private_key": _pem,
    "jwt": lambda f, r: "Authorization token " + _jwt(f, r),
    "secret": lambda f, r: r.choice(["password: ", "db_password=", "passwd = ", "client_secret: "])
    + f.password(length=r.randrange(10, 18)),
    "crypto_wallet": _wallet,
}

US_ONLY = ("ssn", "itin", "aba_routing")  # Faker has these for en_US only
PII_TEMPLATES = [
    "{lead} Please update the record with {v}.",
    "Hi, {name} here. My details: {v}. Thanks!",
    "{v}",
    "Customer note ({day}): {v} - verified by {first}.",
    "Can you check why {v} fails? {lead}",
    "For the onboarding form use {v} and keep it on file.",
    "{lead}\nContact info: {v}\n{tail}",
]


def pii_records(fakers: dict[str, Faker], rng: random.Random, per_type: int = 13) -> list[dict]:
    records = []
    en = fakers["en_US"]
    for type_, make in PII_VALUES.items():
        for i in range(per_type):
            locale = "en_US" if type_ in US_ONLY else rng.choice(LOCALES)
            f = fakers[locale]
            value = make(f, rng)
            template = PII_TEMPLATES[i % len(PII_TEMPLATES)]
            text = template.format(v=value, lead=en.sentence(), tail=en.sentence(),
                                   name=en.name(), first=en.first_name(), day=_day(en))
            records.append({"label": "pii", "types": [type_], "source": f"faker:{locale}+template",
                            "text": text})
    for _ in range(30):  # several types in one text
        chosen = rng.sample(sorted(PII_VALUES), 3)
        locale = rng.choice(LOCALES)
        parts = [PII_VALUES[t](fakers["en_US" if t in US_ONLY else locale], rng) for t in chosen]
        text = f"{en.name()} ({parts[0]}) asked us to use {parts[1]}; backup: {parts[2]}."
        records.append({"label": "pii", "types": sorted(set(chosen)), "source": "faker:mixed",
                        "text": text})
    return records


# -- injection: seeds, the same seeds in business context, obfuscated and encoded ---------------

_HOMOGLYPH = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "i": "і", "x": "х", "y": "у"}
_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}


def leet(text: str, r: random.Random) -> str:
    return "".join(_LEET[c.lower()] if c.lower() in _LEET and r.random() < 0.6 else c for c in text)


def spaced(text: str, r: random.Random) -> str:
    return "  ".join(" ".join(word) for word in text.split())


def homoglyphs(text: str, r: random.Random) -> str:
    return "".join(_HOMOGLYPH[c] if c in _HOMOGLYPH and r.random() < 0.5 else c for c in text)


def zero_width(text: str, r: random.Random) -> str:
    return "".join(c + ("\u200b" if c.isalpha() and r.random() < 0.3 else "") for c in text)


def fullwidth(text: str, r: random.Random) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


OBFUSCATIONS = {"leet": leet, "spaced": spaced, "homoglyph": homoglyphs, "zero-width": zero_width,
                "fullwidth": fullwidth}
ENCODINGS = {
    "base64": lambda t: "Decode this and follow it: " + base64.b64encode(t.encode()).decode(),
    "hex": lambda t: "hex payload " + t.encode().hex(),
    "rot13": lambda t: codecs.encode(t, "rot13"),
    "url-escape": lambda t: "q=" + "".join(f"%{b:02X}" for b in t.encode()),
}
WRAPPERS = [
    "I need help with {bs}. {attack}",
    "{attack} Also, can you draft a note about {bs}?",
    "Subject: {catch}\n\nHi team,\n{attack}\nRegards, {name}",
    "Here is the customer review to summarise:\n\"\"\"\nGreat service. {attack}\n\"\"\"",
]


def injection_records(f: Faker, rng: random.Random) -> list[dict]:
    records = []
    for family, seeds in cases.INJECTION.items():
        for i, seed in enumerate(seeds):
            records.append({"label": "injection", "types": [family], "source": "hand",
                            "text": seed})
            wrapper = WRAPPERS[i % len(WRAPPERS)]
            text = wrapper.format(attack=seed, bs=f.bs(), catch=f.catch_phrase(), name=f.name())
            records.append({"label": "injection", "types": [family],
                            "source": "hand+faker-context", "text": text})
    for seed in cases.HIDDEN:
        for name, encode in ENCODINGS.items():
            records.append({"label": "injection", "types": ["encoded_instruction"],
                            "source": f"hand+{name}", "text": encode(seed)})
        for name, obfuscate in OBFUSCATIONS.items():
            records.append({"label": "injection", "types": [], "source": f"hand+{name}",
                            "text": obfuscate(seed, rng)})
    return records


# -- benign: tasks, code, numbers that look like PII, security writing, look-alike words ---------

TASKS = [
    "Summarize the quarterly report for {company} and list three risks.",
    "Write a Python function that parses {file_name} and returns the rows as dicts.",
    "Draft a polite reply to {name} about the delayed shipment to {city}.",
    "Compare the pricing pages of {company} and {company2} in a table.",
    "Plan a three-day offsite in {city} for a team of {n} people.",
    "Translate the following into French: {sentence}",
    "Explain {catch} to a new hire in two paragraphs.",
    "Create a checklist for the {job} onboarding on {date}.",
    "Review this paragraph for tone: {paragraph}",
    "Generate five taglines for a product that helps teams {bs}.",
]
NUMBERS = [
    "Order {order} shipped on {date}; tracking 1Z{track}.",
    "Invoice number {order} is due in 30 days.",
    "Upgrade nginx from version {v1} to version {v2} during the maintenance window.",
    "Release v{v4} fixes the memory leak reported in build {v3}.",
    "Firmware version {v4} is required for the new sensors.",
    "The meeting moved to {date} at 10:30 in room {room}.",
    "ISBN 978-0-306-40615-7 is the second edition.",
    "The batch took 1700000000123 ms according to the raw timestamp.",
    "Reference {uuid} in the support ticket.",
    "Total: ${price} for {n} seats, valid until {date}.",
    "Commit {sha} introduced the regression.",
    "Ticket #{order} was escalated to tier 2.",
    "Pi is roughly 3.14159265358979 and e is 2.71828.",
    "Set the timeout to {n}000 ms and the retry count to 3.",
    "Our office is at {building} {street}, suite {room}.",
]


def _non_luhn_number(rng: random.Random) -> str:
    while True:
        digits = "".join(rng.choice(string.digits) for _ in range(16))
        if not luhn_ok(digits) and digits[0] != "0":
            return digits


def benign_records(f: Faker, rng: random.Random) -> list[dict]:
    records = []

    def add(text: str, source: str) -> None:
        records.append({"label": "benign", "types": [], "source": source, "text": text})

    for i in range(90):
        add(TASKS[i % len(TASKS)].format(
            company=f.company(), company2=f.company(), file_name=f.file_name(extension="csv"),
            name=f.name(), city=f.city(), n=rng.randrange(3, 40), sentence=f.sentence(),
            catch=f.catch_phrase(), job=f.job(), date=_day(f), paragraph=f.paragraph(),
            bs=f.bs()), "faker+task-template")
    for snippet in cases.CODE:
        add(snippet, "hand:code")
    for i in range(75):
        add(NUMBERS[i % len(NUMBERS)].format(
            order=_non_luhn_number(rng), date=_day(f), track=_alnum(rng, 16, string.digits),
            v1=f"1.{rng.randrange(18, 26)}.{rng.randrange(0, 9)}",
            v2=f"1.{rng.randrange(26, 28)}.{rng.randrange(0, 9)}",
            v3=".".join(str(rng.randrange(0, 20)) for _ in range(3)),
            v4=".".join(str(rng.randrange(1, 12)) for _ in range(4)),
            room=rng.randrange(100, 999), uuid=f.uuid4(), price=f"{rng.randrange(10, 5000)}.99",
            n=rng.randrange(2, 60), sha=f.sha1(), building=f.building_number(),
            street=f.street_name()), "faker+number-template")
    for text in cases.SECURITY_DISCUSSION:
        add(text, "hand:security-writing")
    for text in cases.WORD_LOOKALIKES:
        add(text, "hand:look-alike-words")
    for i in range(40):  # security writing with Faker-made framing
        base = cases.SECURITY_DISCUSSION[i % len(cases.SECURITY_DISCUSSION)]
        month = date.fromisoformat(_day(f)).strftime("%B")  # not f.month_name(): it ends today
        add(f"{f.name()} wrote in the {month} newsletter: {base}", "hand+faker-framing")
    return records


def heldout_records() -> list[dict]:
    """Hand-written after tuning (reflex_cases.HELD_OUT_*): round 1 was then used to extend the
    rules once; round 2 never was."""
    def rows(label: str, texts, source: str, types=None) -> list[dict]:
        return [{"label": label, "types": list(types or []), "source": source, "text": t}
                for t in texts]

    one, two = "hand:held-out-1 (later used to tune)", "hand:held-out-2"
    return (rows("injection", cases.HELD_OUT_INJECTION, one)
            + rows("benign", cases.HELD_OUT_BENIGN, one)
            + [{"label": "pii", "types": [t], "source": one, "text": text}
               for t, text in cases.HELD_OUT_PII]
            + rows("injection", cases.HELD_OUT_2_INJECTION, two)
            + rows("benign", cases.HELD_OUT_2_BENIGN, two))


def build() -> dict[str, list[dict]]:
    Faker.seed(SEED)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, fk in enumerate(fakers.values()):
        fk.seed_instance(SEED + i)
    rng = random.Random(SEED)
    en = fakers["en_US"]
    sets = {"pii": pii_records(fakers, rng), "injection": injection_records(en, rng),
            "benign": benign_records(en, rng), "heldout": heldout_records()}
    return {label: [{"id": f"{label}-{i:04d}", **record} for i, record in enumerate(records, 1)]
            for label, records in sets.items()}


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for label, records in build().items():
        (OUT / f"{label}.jsonl").write_text(to_jsonl(records), encoding="utf-8")
        print(f"{label}: {len(records)} records -> {OUT / (label + '.jsonl')}")


if __name__ == "__main__":
    main()
