"""The PII and secret patterns, each with its type, severity and the check that confirms it.

Patterns are written to be linear: every one starts at a left boundary its own characters cannot
satisfy (so a long run of candidate characters can only start a match once), repeats are either
bounded or unambiguous (separator and content classes never overlap), and whitespace gaps are
bounded. The combined pattern in app.reflex.pii tries them as one alternation; a rule that
matches but fails its check does not hide a later rule matching at the same place.

A rule's ``check(value, text, start, end)`` returns None (not PII), a confidence, or a Hit that
renames the type or narrows the span (an IBAN followed by capitalised words).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import app.reflex.checksums as checksums


@dataclass(frozen=True)
class Hit:
    type: str
    confidence: float
    start: int
    end: int


# What a rule's check says of a candidate: a confidence, a Hit (another type or span), or None
# (not PII after all).
Verdict = float | Hit | None


@dataclass(frozen=True)
class Rule:
    name: str  # group name in the combined pattern; the value group is ``<name>_v`` when present
    type: str
    pattern: str
    check: Callable[[str, str, int, int], Verdict] | None = None
    confidence: float = 0.9


SEVERITY = {
    "aws_access_key": "critical", "aws_secret_key": "critical", "github_token": "critical",
    "stripe_key": "critical", "slack_token": "critical", "google_api_key": "critical",
    "private_key": "critical",
    "ssn": "high", "itin": "high", "credit_card": "high", "iban": "high", "passport": "high",
    "drivers_license": "high", "bank_account": "high", "medical_record": "high", "jwt": "high",
    "secret": "high",
    "email": "medium", "phone": "medium", "date_of_birth": "medium", "aba_routing": "medium",
    "crypto_wallet": "medium",
    "ipv4": "low", "ipv6": "low", "mac_address": "low",
}

# "<keyword> number: ", "<keyword> # ", "<keyword> is " between a context word and its value.
_FILL = (r"(?:[ \t]{1,2}(?i:number|num\.?|no\.?|#|id))?[ \t]{0,2}[:#=]?[ \t]{0,2}"
         r"(?:(?i:is|was)[ \t]{1,2})?")
_CONTEXT_WINDOW = 48


def _before(text: str, start: int, words: re.Pattern[str]) -> bool:
    return bool(words.search(text, max(0, start - _CONTEXT_WINDOW), start))


# -- identity numbers ------------------------------------------------------------------------

def _ssn_or_itin(value: str, text: str, start: int, end: int) -> Verdict:
    digits = re.sub(r"\D", "", value)
    if len(digits) != 9:
        return None
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if checksums.itin_ok(area, group, serial):
        return Hit("itin", 0.9, start, end)
    if checksums.ssn_ok(area, group, serial):
        return Hit("ssn", 0.9, start, end)
    return None


def _has_digit(value: str, text: str, start: int, end: int) -> Verdict:
    return 0.85 if any(c.isdigit() for c in value) and len(value) >= 5 else None


_ACCOUNT_CONTEXT = re.compile(r"(?i)\b(?:routing|aba|rtn|bank|account|acct|transit)\b")


def _aba(value: str, text: str, start: int, end: int) -> Verdict:
    return 0.9 if checksums.aba_ok(value) else None


def _bank_account(value: str, text: str, start: int, end: int) -> Verdict:
    return 0.85 if 6 <= sum(c.isdigit() for c in value) <= 17 else None


# -- payment -----------------------------------------------------------------------------------

# Visa, Mastercard (51-55, 2221-2720), Amex, Diners, Discover, UnionPay, JCB (35xx; the old
# 15-digit 2131 and 1800 are checked for length below), Maestro (50xx, 56-58, 6304, 6390, 67xx,
# 0604; 12 to 19 digits).
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|"
                          r"3(?:0[0-5]|[68])|6(?:011|5|4[4-9]|2)|35\d\d|2131|1800|"
                          r"50(?:18|20|38)|5[6-8]|5893|6304|6390|67(?:59|6[1-3])|0604")
_JCB_15 = ("2131", "1800")
_NOT_A_CARD = re.compile(r"(?i)\b(?:order|invoice|tracking|shipment|ticket|ref(?:erence)?|isbn|"
                         r"serial|sku|part|case|confirmation|transaction id|imei)\b")
_CARD_WORDS = re.compile(r"(?i)\b(?:card|visa|mastercard|maestro|amex|jcb|discover|diners|credit|"
                         r"debit|cc|pan)\b")


def _credit_card(value: str, text: str, start: int, end: int) -> Verdict:
    digits = re.sub(r"\D", "", value)
    if not 12 <= len(digits) <= 19 or not _CARD_PREFIX.match(digits):
        return None
    if digits.startswith(_JCB_15) and len(digits) != 15:
        return None
    if len(digits) == 12 and not _before(text, start, _CARD_WORDS):
        return None  # only Maestro is that short; without a card word it is any 12-digit id
    groups = re.split(r"[ -]", value)
    if len(groups) > 1 and (len(set(re.findall(r"[ -]", value))) > 1
                            or any(len(g) < 3 for g in groups)):
        return None  # mixed or one-digit groups: a list of numbers, not one card
    if not checksums.luhn_ok(digits):
        return None
    if _before(text, start, _NOT_A_CARD) and not _before(text, start, _CARD_WORDS):
        return None
    return 0.95


_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26,
    "IT": 27, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MT": 31, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "UA": 29,
}


def _iban(value: str, text: str, start: int, end: int) -> Verdict:
    # The pattern may run on into following capitalised words; shrink to the valid IBAN.
    compact = value.replace(" ", "")
    want = _IBAN_LENGTH.get(value[:2])
    if want is None or len(compact) < want:
        return None
    taken = 0
    for i, ch in enumerate(value):
        taken += ch != " "
        if taken == want:
            if checksums.iban_ok(compact[:want]):
                return Hit("iban", 0.95, start, start + i + 1)
            return None
    return None


# -- network -----------------------------------------------------------------------------------

_VERSION_WORDS = re.compile(r"(?i)(?:version|\bver\.?|release|\bbuild|firmware|\bv)"
                            r"[\w \t('\"=:]{0,12}$")


def _ipv4(value: str, text: str, start: int, end: int) -> Verdict:
    addr = ipaddress.IPv4Address(value)
    if addr.is_loopback or addr.is_unspecified or addr.is_multicast or value == "255.255.255.255":
        return None  # not about a person or a host of theirs
    if _VERSION_WORDS.search(text, max(0, start - 30), start):
        return None  # "version 10.0.0.1" names a release
    if re.search(r"(?i)\b(?:upgrade|update|bump|release|version)\b",
                 text[max(0, start - 30):start]):
        return 0.5  # "upgrade to 10.0.0.1": may be a host, may be a version
    return 0.9 if not addr.is_private else 0.7


def _ipv6(value: str, text: str, start: int, end: int) -> Verdict:
    try:
        addr = ipaddress.IPv6Address(value)
    except ValueError:
        return None
    groups = [g for g in value.split(":") if g]
    if addr.is_loopback or addr.is_unspecified or sum(map(len, groups)) < 5 \
            or max(map(len, groups), default=0) < 3:
        return None  # "::1", and slices like "a[1::2]"
    return 0.9


def _mac(value: str, text: str, start: int, end: int) -> Verdict:
    hexes = re.sub(r"[^0-9A-Fa-f]", "", value)
    return None if len(set(hexes.lower())) == 1 else 0.85  # 00:00:.. and ff:ff:.. are not devices


# -- dates -------------------------------------------------------------------------------------

def _dob(value: str, text: str, start: int, end: int) -> Verdict:
    numbers = re.findall(r"\d+", value)
    years = [int(n) for n in numbers if len(n) == 4]
    day_month = [int(n) for n in numbers if len(n) <= 2]
    if not years:
        day_month = day_month[:2]  # d/m/yy: the last number is the year
    if any(not 1900 <= y <= 2030 for y in years) or any(not 1 <= n <= 31 for n in day_month):
        return None
    if len(day_month) == 2 and min(day_month) > 12:
        return None  # neither number can be the month
    return 0.9


# -- secrets -----------------------------------------------------------------------------------

def _jwt(value: str, text: str, start: int, end: int) -> Verdict:
    head = value.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return 0.95 if isinstance(decoded, dict) and "alg" in decoded else None


_PLACEHOLDER = re.compile(r"(?i)\*{3}|x{4}|\.\.\.|^(?:<|\$\{|\{\{|%\(|\$[A-Z_]+$)|^(?:none|null|"
                          r"true|false|required|optional|changeme|example|string|redacted)$|"
                          r"^\[redacted")
# Code, not a value: a dotted name, a call or a subscript ("os.environ[", "get_password(user)").
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*(?:(?:\.[A-Za-z_]\w*)+$|(?:\.[A-Za-z_]\w*)*[(\[])")
SPECIFIC_SECRETS: list[tuple[str, re.Pattern[str]]] = []  # filled below from the rules themselves


def _secret(value: str, text: str, start: int, end: int) -> Verdict:
    # Trailing punctuation is kept in the span: it may belong to the secret, and redacting a
    # full stop too much is better than leaving a password's last character in clear.
    if len(value) < 6 or _PLACEHOLDER.search(value) or _IDENTIFIER.match(value):
        return None
    for kind, pattern in SPECIFIC_SECRETS:
        if pattern.fullmatch(value):
            return Hit(kind, 0.95, start, end)
    mixed = any(c.isdigit() for c in value) + any(c.isalpha() for c in value) \
        + any(not c.isalnum() for c in value) + (value != value.lower() != value.upper())
    if mixed < 2 and len(value) < 12:
        return None  # "password: required", "secret = yes"
    return Hit("secret", 0.8, start, end)


# -- crypto ------------------------------------------------------------------------------------

_WALLET_WORDS = re.compile(r"(?i)\b(?:wallet|eth|ether|ethereum|address|send|usdt|usdc|metamask|"
                           r"erc-?20|crypto|pay|deposit|withdraw)\b")


def _b58(value: str, text: str, start: int, end: int) -> Verdict:
    return 0.95 if checksums.base58check_ok(value) else None


def _bech32(value: str, text: str, start: int, end: int) -> Verdict:
    if value != value.lower() and value != value.upper():
        return None
    return 0.95 if checksums.bech32_ok(value) else None


def _eth(value: str, text: str, start: int, end: int) -> Verdict:
    body = value[2:]
    if _before(text, start, _WALLET_WORDS):
        return 0.85
    # Checksummed (EIP-55) addresses mix cases; hashes and ids printed in hex do not.
    return 0.7 if body != body.lower() and body != body.upper() else None


def _email(value: str, text: str, start: int, end: int) -> Verdict:
    tld = value.rsplit(".", 1)[-1].lower()
    if tld in {"png", "jpg", "jpeg", "gif", "svg", "webp", "js", "ts", "py", "css", "html", "json",
               "txt", "md", "map", "lock", "whl", "tgz"}:
        return None  # icon@2x.png, package@1.0.js
    if value.lower().startswith("git@"):
        return None  # an SSH remote, not a mailbox
    return 0.95


_PHONE_WORDS = re.compile(r"(?i)\b(?:call|phone|tel|telephone|mobile|cell|fax|contact|reach|text|"
                          r"whatsapp|sms|dial)\b")


def _phone_digits(value: str) -> str:
    return re.sub(r"\D", "", re.split(r"[ ]?(?:x|ext)", value, maxsplit=1)[0])


def _phone_intl(value: str, text: str, start: int, end: int) -> Verdict:
    digits = _phone_digits(value)
    if not 8 <= len(digits) <= 15 or "((" in value or "))" in value:
        return None
    if "." in value and any(len(g) > 4 for g in re.findall(r"\d+", value.split(".", 1)[1])):
        return None  # +3.14159265: a signed decimal, not a number to dial
    return 0.9


def _phone_nanp(value: str, text: str, start: int, end: int) -> Verdict:
    digits = _phone_digits(value)
    digits = digits[1:] if len(digits) == 11 else digits
    if digits[0] in "23456789" and digits[3] in "23456789":
        return 0.85
    return 0.7 if _before(text, start, _PHONE_WORDS) else None


_DATE_SHAPE = re.compile(r"\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}")


def _phone_keyed(value: str, text: str, start: int, end: int) -> Verdict:
    """A number right after a phone word ("call me at", "mobile:", "my number is"): any
    national or international layout, 7-15 digits."""
    digits = _phone_digits(value)
    if not 7 <= len(digits) <= 15 or "((" in value or "))" in value \
            or value.count("(") != value.count(")") or _DATE_SHAPE.fullmatch(value):
        return None
    groups = re.findall(r"\d+", value)
    if sum(len(g) == 1 for g in groups) > 2:
        return None  # "call 1 2 3 4 5 6 7": counting, not dialling
    return 0.8


def _phone_in_context(value: str, text: str, start: int, end: int) -> Verdict:
    """Bare digits are a phone number only when the words before say so ("call 4155552671")."""
    return 0.7 if _before(text, start, _PHONE_WORDS) and not value.startswith("00") else None


def _fragment(text: str, start: int) -> bool:
    """Whether the candidate continues a run of digit groups ("DE00 3704 0044 0532 ..."): then it
    is the tail of a longer number (a failed IBAN, a serial), not a phone number of its own."""
    return bool(re.search(r"\d[ -]$", text[max(0, start - 2):start]))


def _phone_national(value: str, text: str, start: int, end: int) -> Verdict:
    digits = _phone_digits(value)
    if not 9 <= len(digits) <= 12 or digits.startswith("00") or _fragment(text, start):
        return None
    if _before(text, start, _PHONE_WORDS):
        return 0.8
    groups = re.findall(r"\d+", value)
    french = len(groups) == 5 and all(len(g) == 2 for g in groups)
    # A trunk 0, an area code and two to four groups of 2-4 digits, one kind of separator
    # after the area code ("0660 489 28 58", "091 417 77 63", "08-170 669 07").
    separators = set(re.findall(r"[ -]", value.split(groups[0], 1)[1].lstrip("/)- ")))
    laid_out = 3 <= len(groups) <= 5 and len(separators) <= 1 and all(
        2 <= len(g) <= 4 for g in groups[1:]) and len(groups[-1]) >= 2
    return 0.6 if french or laid_out else None


def _phone_international_00(value: str, text: str, start: int, end: int) -> Verdict:
    """``00`` + country code, dialled the European way ("00420 702 914 177")."""
    if _fragment(text, start):
        return None
    return 0.8 if 10 <= len(_phone_digits(value)) <= 17 else None


_DATE = (r"\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})(?!\d)|\d{4}-\d{2}-\d{2}(?!\d)"
         r"|(?i:(?:\d{1,2}(?:st|nd|rd|th)?[ ])?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
         r"[a-z]{0,6}\.?[ ](?:\d{1,2}(?:st|nd|rd|th)?,?[ ])?\d{4})(?!\d)")

_EXT = r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?"
# Words that say a phone number follows, and the few words that may stand between them and it
# ("call me at", "reach us on", "my mobile number is", "messages to").
_PHONE_KEY = (r"(?i:\b(?:(?:tele)?phone|tel|mobile|cell(?:phone)?|fax|whats[ ]?app|sms|call|dial|"
              r"reach|contact|text|messages?[ ]to|(?:my|his|her|their|your|our)[ ]number))")
_PHONE_GAP = (r"(?:[ \t]{1,2}(?i:me|us|him|her|them|is|was|at|on|via|under|number|no\.?|nr\.?)"
              r"(?![\w])){0,3}[ \t]{0,2}[:#=.-]?[ \t]{0,2}")

# Order matters only between rules that can start at the same character: context-keyword rules
# come first (their match starts at the keyword, before the value they report).
RULES: list[Rule] = [
    Rule("dob", "date_of_birth",
         r"(?i:\b(?:date[ ]of[ ]birth|birth[ ]?date|d\.o\.b\.?|dob|born(?:[ ]on)?|birthday))"
         r"[ \t]{0,2}[:\-]?[ \t]{0,2}(?:(?i:is|was|on)[ \t]{1,2})?(?P<dob_v>" + _DATE + ")",
         _dob),
    Rule("ssnk", "ssn",
         r"(?i:\b(?:ssn|social[ ]security(?:[ ]number|[ ]no\.?|[ ]\#)?|itin|taxpayer[ ]id"
         r"(?:entification)?[ ]number))[ \t]{0,2}[:#]?[ \t]{0,2}(?:(?i:is)[ \t]{1,2})?"
         r"(?P<ssnk_v>\d{3}[ -]?\d{2}[ -]?\d{4})(?![\w-])", _ssn_or_itin),
    Rule("passport", "passport",
         r"(?i:\bpassport)" + _FILL + r"(?P<passport_v>[A-Z]{0,2}\d{6,9})(?![\w])", _has_digit,
         0.85),
    Rule("license", "drivers_license",
         r"(?:(?i:\b(?:driv(?:er'?s?'?|ing)[ ](?:licen[cs]e|permit|lic\.?)|licen[cs]e[ ]number))"
         r"|\bDLN?\b)"
         # 5 (Kansas "A1B2C") to 20 characters; Washington's end in "*" ("WDLABCD456DG*").
         + _FILL + r"(?P<license_v>[A-Z0-9](?:[A-Z0-9-]{3,18})[A-Z0-9*])(?![\w*-])", _has_digit,
         0.85),
    Rule("phonek", "phone",
         _PHONE_KEY + _PHONE_GAP + r"(?P<phonek_v>(?:\+|00)?\(?\+?\d{1,15}\)?"
         r"(?:[ ./-]{1,2}\(?\d{1,10}\)?){0,6}" + _EXT + r")(?![\w-]|\.\d)", _phone_keyed),
    Rule("mrn", "medical_record",
         r"(?i:\b(?:mrn|medical[ ]record|patient[ ]id|health[ ]record|chart[ ]number))" + _FILL
         + r"(?P<mrn_v>[A-Z]{0,3}-?\d{5,10})(?![\w-])", _has_digit, 0.85),
    Rule("aba", "aba_routing",
         r"(?i:\b(?:routing(?:[ ]transit)?|aba(?:[ ]routing)?|rtn))" + _FILL
         + r"(?P<aba_v>\d{9})(?![\w-])", _aba),
    Rule("account", "bank_account",
         r"(?i:\b(?:bank[ ]account|account[ ]number|account[ ]no\.?|acct\.?|checking[ ]account"
         r"|savings[ ]account|a/c))" + _FILL
         + r"(?P<account_v>\d{6,17}|\d{2,6}(?:-\d{2,8}){1,3})(?![\w-])", _bank_account),
    Rule("awss", "aws_secret_key",
         r"(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key)[\"']?[ \t]{0,2}[:=][ \t]{0,2}"
         r"[\"']?(?P<awss_v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"),
    Rule("bearer", "secret", r"(?i:\bbearer)[ \t]{1,2}(?P<bearer_v>[A-Za-z0-9._~+/-]{20,400}=*)",
         _secret),
    Rule("secret", "secret",
         r"(?i:(?<![A-Za-z0-9])(?:password|passwd|pwd|passphrase|secret|api[_-]?key|apikey"
         r"|access[_-]?token"
         r"|auth[_-]?token|client[_-]?secret|private[_-]?token))[\"']?[ \t]{0,2}(?:[:=]|(?i:is))"
         r"[ \t]{0,2}[\"']?(?P<secret_v>[^\s\"'`<>]{6,200})", _secret),
    Rule("pem", "private_key",
         r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----(?:[A-Za-z0-9+/=\s:,.]|-(?!----))*"
         r"(?:-----END[A-Z ]{0,40}PRIVATE KEY-----)?"),
    Rule("jwt", "jwt",
         r"(?<![A-Za-z0-9_-])(?P<jwt_v>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
         r"(?![A-Za-z0-9_-])", _jwt),
    Rule("aws", "aws_access_key",
         r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}"
         r"(?![A-Za-z0-9])"),
    Rule("github", "github_token",
         r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"
         r"(?![A-Za-z0-9_])"),
    Rule("stripe", "stripe_key",
         r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,247}(?![A-Za-z0-9])"),
    Rule("slack", "slack_token", r"(?<![A-Za-z0-9-])xox[abposr]-[A-Za-z0-9-]{10,250}"),
    Rule("google", "google_api_key", r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
    Rule("email", "email",
         r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
         r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![\w-])",
         _email),
    Rule("ssn", "ssn", r"(?<![\w-])(?P<ssn_v>\d{3}-\d{2}-\d{4})(?![\w-])", _ssn_or_itin),
    Rule("card", "credit_card", r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])", _credit_card),
    Rule("phone_intl", "phone",
         r"(?<![\w+])\+\(?[1-9][0-9 ().-]{6,20}[0-9]" + _EXT + r"(?![\w])", _phone_intl),
    Rule("phone_00", "phone",
         r"(?<![\w+.-])00[1-9]\d{0,3}(?:[ -]\d{1,4}){2,5}(?![\w-]|\.\d)",
         _phone_international_00),
    Rule("phone_nanp", "phone",
         r"(?<![\w+.-])(?:001[ .-]|1[ .-]?)?"
         r"(?:\(\d{3}\)[ ]?\d{3}[ .-]?|\d{3}[.-]\d{3}[.-]|\d{3} \d{3} )\d{4}"
         + _EXT + r"(?![\w-]|\.\d)", _phone_nanp),
    Rule("phone_nat", "phone",
         r"(?<![\w+.-])(?:\(0\d{1,4}\)[ -]?\d{3,8}(?:[ -]\d{2,6}){0,2}"
         r"|0\d{1,4}(?:[ -]|/[ ]?)\d{2,8}(?:[ -]\d{2,4}){0,3}"
         r"|0[1-9](?:[ .]\d{2}){4})(?![\w-]|\.\d)", _phone_national),
    Rule("phone_ctx", "phone", r"(?<![\w+.-])\d{10,11}(?![\w-]|\.\d)", _phone_in_context),
    Rule("iban", "iban", r"(?<![\w])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![\w])", _iban),
    Rule("mac", "mac_address",
         r"(?<![\w:.-])[0-9A-Fa-f]{2}(?P<mac_sep>[:-])[0-9A-Fa-f]{2}(?:(?P=mac_sep)[0-9A-Fa-f]{2}){4}"
         r"(?![\w:-])|(?<![\w.])[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(?![\w.])", _mac),
    Rule("ipv4", "ipv4",
         r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
         r"(?![\w]|\.\d)", _ipv4),
    Rule("ipv6", "ipv6",
         r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])", _ipv6),
    Rule("b58", "crypto_wallet",
         r"(?<![A-Za-z0-9])[13LM][1-9A-HJ-NP-Za-km-z]{25,34}(?![A-Za-z0-9])",
         _b58),
    Rule("bech32", "crypto_wallet",
         r"(?<![A-Za-z0-9])(?:bc|tb|ltc|BC|TB|LTC)1[02-9ac-hj-np-zAC-HJ-NP-Z]{6,87}(?![A-Za-z0-9])",
         _bech32),
    Rule("eth", "crypto_wallet", r"(?<![A-Za-z0-9])0x[0-9a-fA-F]{40}(?![A-Za-z0-9])", _eth),
]

SPECIFIC_SECRETS.extend(
    (rule.type, re.compile(rule.pattern))
    for rule in RULES if rule.name in ("aws", "github", "stripe", "slack", "google", "jwt")
)
