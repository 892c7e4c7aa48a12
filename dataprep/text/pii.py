"""Personal data in text: e-mail addresses, IP addresses and phone numbers become placeholders.

``redact(texts, kinds)`` returns the texts with each match of the chosen kinds replaced by
``<EMAIL>``, ``<IP>`` or ``<PHONE>``, and how many of each it replaced. The placeholders are
short, cannot be mistaken for real text (no address holds "<"), and name the kind, so a model
learns that something was there; datatrove's ``PIIFormatter`` puts fake addresses in instead,
which a reader of the data can no longer tell from real ones. StarCoder's redaction
(Li et al. 2023) used the same kind of tags.

What counts, and the near-misses left alone (tests/test_pii.py has a case for each):

- **email**: ``local@domain.tld`` (ASCII), and the spelled-out ``name at domain dot com`` /
  ``name [at] domain [dot] com`` with a common top-level domain. Not: ``icon@2x.png`` (a file
  extension after the dot), ``git@github.com:owner/repo`` (an SSH remote, not a person),
  ``@handle``, ``user@localhost``. A phrase like "look at example dot com" is redacted: the
  spelled-out form cannot tell it apart.
- **ip**: IPv4 and IPv6 addresses that are publicly routable (``ipaddress``'s ``is_global``;
  IPv6 written from its first group, in 2000::/3); private, loopback, link-local and
  documentation ranges (10.0.0.1, 127.0.0.1, 192.168.x.x, 192.0.2.x, 2001:db8::) identify no one
  and stay. Version and section numbers look like addresses, so a dotted quad stays after
  "v", "version", "release", "build" or "ANSI", inside a longer run (1.2.3.4.5), or when every
  part is under 32 (7.9.0.0, 2.1.1.3; also 1.1.1.1 and 8.8.8.8, which are resolvers, not
  people): about 1 in 4,000 random public addresses is that small.
- **phone**: 7 to 15 digits (E.164's limit) in groups split by single spaces, dashes, dots or an
  area code in parentheses, when the number says it is one: a leading ``+`` country code, an
  area code in parentheses, the North American shape ``555-123-4567``, a national number
  starting with a trunk ``0`` (``020 7946 0958``), or a word like "tel", "phone", "call", "fax"
  just before it. Dates (``2024-01-15``, ``15.01.2024``), prices, thousands (``1 000 000``),
  ISBNs and serial numbers (``4829-1034-5567``) have none of those and stay.

Kinds run in the order email, ip, phone, so an address's digits are gone before the phone
pattern looks. Each kind first picks its candidate documents with one Arrow RE2 pass; only those
go through Python's ``re`` (look-arounds, and the checks above, need it).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep.errors import ConfigError

PLACEHOLDERS = {"email": "<EMAIL>", "ip": "<IP>", "phone": "<PHONE>"}  # also the order they run in

_TLDS = "com|org|net|edu|gov|io|info|co|us|uk|de|fr|es|it|nl|ca|au|in|ru|ch|jp|cn|br"
_FILE_EXTENSIONS = {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "pdf", "js", "ts", "css", "html",
                    "py", "md", "json", "txt", "yml", "yaml", "zip", "gz", "exe"}
EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]*@((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                   r"([A-Za-z]{2,24}))(?![\w-]|\.[A-Za-z0-9])", re.ASCII)
_AT, _DOT = r"\s*[\[({]at[\])}]\s*|\s+at\s+", r"\s*[\[({]dot[\])}]\s*|\s+dot\s+"
SPELLED_EMAIL = re.compile(rf"(?<![\w.])[A-Za-z0-9][\w.+-]*(?:{_AT})[A-Za-z0-9-]+(?:(?:{_DOT})[A-Za-z0-9-]+)*"
                           rf"(?:{_DOT})(?:{_TLDS})\b", re.ASCII | re.IGNORECASE)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)", re.ASCII)
IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}(?![\w:])", re.ASCII)
_VERSION = re.compile(r"(?i)(?:\bv|\bversion|\bver\.?|\brelease|\brel\.?|\bbuild|\bansi)[\s=:'\"`]*$")
PHONE = re.compile(r"(?<![\w+@/.,-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,15}(?:[ .-]\d{1,15}){0,5}"
                   r"(?![\w@/-]|[.,]\d)", re.ASCII)
_PHONE_WORD = re.compile(r"(?i)(?:\b(?:tel|phone|telephone|call|fax|mobile|cell|whatsapp|ph)\b\.?|☎|📞)\W{0,3}$")
_NANP = re.compile(r"(?:1[ .-])?\d{3}([ .-])\d{3}\1\d{4}", re.ASCII)
_NATIONAL = re.compile(r"0\d{1,4}(?:[ .-]\d{2,4}){2,4}", re.ASCII)
_DATE = re.compile(r"\d{4}([-./])\d{1,2}\1\d{1,2}|\d{1,2}([-./])\d{1,2}\2\d{2,4}", re.ASCII)


def _email(match: re.Match, text: str) -> bool:
    local = match.group(0).split("@", 1)[0]
    return match.group(2).lower() not in _FILE_EXTENSIONS and local != "git"


def _ipv4(match: re.Match, text: str) -> bool:
    octets = [int(part) for part in match.group(0).split(".")]
    if max(octets) < 32 or _VERSION.search(text, max(0, match.start() - 12), match.start()):
        return False  # a version or section number: 7.9.0.0, 2.1.1.3
    return ipaddress.IPv4Address(match.group(0)).is_global


def _ipv6(match: re.Match, text: str) -> bool:
    if not re.match(r"[23][0-9A-Fa-f]{3}:", match.group(0)):  # public unicast is 2000::/3
        return False  # and B::f (C++), fe80::1, ::1 are not
    try:
        return ipaddress.IPv6Address(match.group(0)).is_global
    except ValueError:  # clock times, MAC addresses, C++'s a::b: shaped like one, not one
        return False


def _phone(match: re.Match, text: str) -> bool:
    number = match.group(0)
    digits = sum(c.isdigit() for c in number)
    if not 7 <= digits <= 15 or _DATE.fullmatch(number):
        return False
    if number.startswith("+") or "(" in number or _NANP.fullmatch(number) or _NATIONAL.fullmatch(number):
        return True
    return bool(_PHONE_WORD.search(text, max(0, match.start() - 16), match.start()))


# kind -> (an RE2 pattern every document with a match matches, [(Python pattern, check)])
_RULES: dict[str, tuple[str, list[tuple[re.Pattern, Callable[[re.Match, str], bool]]]]] = {
    "email": (r"@|(?i:[\[({\s]dot[\])}\s])", [(EMAIL, _email), (SPELLED_EMAIL, lambda m, t: True)]),
    "ip": (r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]?:[0-9A-Fa-f]{0,4}:", [(IPV4, _ipv4), (IPV6, _ipv6)]),
    "phone": (r"\d(?:[ .()-]{0,2}\d){6}", [(PHONE, _phone)]),
}


def _sub(text: str, rules: list, placeholder: str) -> tuple[str, int]:
    found = 0

    def replace(match: re.Match) -> str:
        nonlocal found
        if check(match, text):
            found += 1
            return placeholder
        return match.group(0)

    for pattern, check in rules:
        text = pattern.sub(replace, text)
    return text, found


PII_STAT = "pii_"  # a pipeline's per-document counter of redactions of a kind: pii_email, pii_ip, pii_phone


def redact(texts: pa.Array | list[str], kinds: Iterable[str]) -> tuple[pa.Array, Counter]:
    """``texts`` with every match of ``kinds`` (of :data:`PLACEHOLDERS`) replaced by its
    placeholder, and the number replaced per kind (kinds with none are left out)."""
    array, per_row = redact_rows(texts, kinds)
    return array, +Counter({kind: int(n.sum()) for kind, n in per_row.items()})


def redact_rows(texts: pa.Array | list[str], kinds: Iterable[str]) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """:func:`redact`, with the number replaced per kind in each text (an int64 array per kind
    asked for), so a pipeline can count what the documents it keeps hold."""
    chosen = set(kinds)
    if chosen - set(PLACEHOLDERS):
        raise ConfigError(f"normalize.pii: unknown kind {sorted(chosen - set(PLACEHOLDERS))[0]!r}",
                          fix=f"use {', '.join(PLACEHOLDERS)}")
    array = pa.array(texts, pa.string()) if isinstance(texts, list) else texts
    counts = {kind: np.zeros(len(array), np.int64) for kind in PLACEHOLDERS if kind in chosen}
    for kind, placeholder in PLACEHOLDERS.items():
        if kind not in chosen or len(array) == 0:
            continue
        prefilter, rules = _RULES[kind]
        candidates = pc.fill_null(pc.match_substring_regex(array, prefilter), False)
        rows = np.flatnonzero(candidates.to_numpy(zero_copy_only=False))
        if not len(rows):
            continue
        new = []
        for row, text in zip(rows.tolist(), array.take(pa.array(rows)).to_pylist()):
            text, found = _sub(text, rules, placeholder)
            counts[kind][row] = found
            new.append(text)
        array = pc.replace_with_mask(array, candidates, pa.array(new, array.type))
    return array, counts
