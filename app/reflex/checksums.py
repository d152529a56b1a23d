"""Check digits that separate real identifiers from look-alike numbers.

python-stdnum does Luhn, IBAN, ABA routing checksums and ITINs; what it does not do, or does
differently from what this layer needs (the routing-symbol prefix, SSNs without its list of
advertised numbers, Litecoin and test-net wallets, encoding), is written here, each saying why.
"""

from __future__ import annotations

import hashlib

from stdnum import iban, luhn
from stdnum.us import itin, rtn

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def luhn_ok(digits: str) -> bool:
    return luhn.is_valid(digits)


def iban_ok(value: str) -> bool:
    """ISO 13616 mod-97 and the country's IBAN length. The national check digits inside the
    BBAN (``check_country``) are not required: a real IBAN that a bank formats oddly, or a
    generated one, is still an account number to keep out of logs."""
    return iban.is_valid(value, check_country=False)


def aba_ok(digits: str) -> bool:
    """The ABA checksum (python-stdnum) and a Federal Reserve routing symbol as prefix:
    00-12 banks, 21-32 thrifts, 61-72 electronic, 80 travellers' cheques (stdnum checks only
    the checksum, and nine digits with a valid checksum are common in other numbers)."""
    if not rtn.is_valid(digits):
        return False
    prefix = int(digits[:2])
    return prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000.

    Hand-written because python-stdnum's ``us.ssn`` also refuses the numbers once printed in
    advertisements (078-05-1120): they belong to nobody, but a text that gives one as "my SSN"
    is redacted all the same, which costs nothing."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def itin_ok(area: str, group: str, serial: str) -> bool:
    """IRS ITINs: a 9 and the group ranges the IRS issues (python-stdnum)."""
    return itin.is_valid(area + group + serial)


# Hand-written below: python-stdnum's ``bitcoin`` module validates Bitcoin main-net addresses
# only, and the wallet rule also accepts Litecoin ("L", "M", "ltc1") and test-net ("tb1")
# addresses; the encoders build valid addresses for the corpus generator, which no library here
# does.

def base58check_ok(address: str) -> bool:
    num = 0
    for ch in address:
        idx = _B58.find(ch)
        if idx < 0:
            return False
        num = num * 58 + idx
    raw = num.to_bytes(25, "big") if num.bit_length() <= 200 else b""
    if len(raw) != 25:
        return False
    payload, check = raw[:-4], raw[-4:]
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == check


def _bech32_polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_ok(address: str) -> bool:
    address = address.lower()
    hrp, _, data = address.rpartition("1")
    if not hrp or len(data) < 6 or any(c not in _BECH32 for c in data):
        return False
    # BIP-173 (bech32, constant 1) and BIP-350 (bech32m) checksums.
    return _bech32_polymod(_hrp_expand(hrp) + [_BECH32.index(c) for c in data]) in (1, 0x2BC830A3)


def bech32_encode(hrp: str, data: list[int]) -> str:
    """Used by the corpus generator to build valid wallet addresses."""
    values = _hrp_expand(hrp) + data
    polymod = _bech32_polymod(values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[d] for d in data + checksum)


def base58check_encode(payload: bytes) -> str:
    """Used by the corpus generator to build valid wallet addresses."""
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    num = int.from_bytes(raw, "big")
    out = ""
    while num:
        num, rem = divmod(num, 58)
        out = _B58[rem] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out
