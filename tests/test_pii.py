"""Personal-data redaction (dataprep.text.pii): what is replaced, exactly, and the near-misses kept.

Each positive case has a near-miss beside it that differs in what the rule looks at (a file
extension after the "@", a private address, a date's shape), so a detector that fired on
everything, or on nothing, fails here. Real text: the addresses and numbers in c4_demo's web pages.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep.errors import ConfigError
from dataprep.text.pii import PLACEHOLDERS, redact

C4 = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora" / "c4_demo.jsonl"
ALL = list(PLACEHOLDERS)


def one(text: str, kinds=ALL) -> tuple[str, Counter]:
    out, counts = redact([text], kinds)
    return out[0].as_py(), counts


@pytest.mark.parametrize("text, expected", [
    ("Write to jane.doe@example.com today.", "Write to <EMAIL> today."),
    ("Contact: JOHN_SMITH+news@mail.co.uk.", "Contact: <EMAIL>."),
    ("<dholth@gmail.com>, <thomas@python.org>", "<<EMAIL>>, <<EMAIL>>"),
    ("mail jane.doe at example dot com please", "mail <EMAIL> please"),
    ("email me at mcushing7 (at) hotmail (dot) com.", "email me at <EMAIL>."),
    ("bob [at] mail [dot] org", "<EMAIL>"),
])
def test_emails_are_replaced(text, expected):
    assert one(text) == (expected, Counter(email=expected.count("<EMAIL>")))


@pytest.mark.parametrize("text", [
    "![logo](images/icon@2x.png)",                     # a retina image name
    "git clone git@github.com:owner/repo.git",         # an SSH remote
    "follow @handle and ping user@localhost",          # no domain
    "I looked at the site dot com yesterday.",         # "at" and "dot" without an address shape
    "npm install @types/node",
])
def test_email_near_misses_are_kept(text):
    assert one(text) == (text, Counter())


@pytest.mark.parametrize("text, expected", [
    ("server 142.250.72.14 answered", "server <IP> answered"),
    ("connect to 54.240.162.118:443.", "connect to <IP>:443."),
    ("from 203.0.114.9, then", "from <IP>, then"),
    ("v6 2001:4860:4860::8888 works", "v6 <IP> works"),
    ("peer 2a00:1450:4001:82b::200e.", "peer <IP>."),
])
def test_public_ip_addresses_are_replaced(text, expected):
    assert one(text) == (expected, Counter(ip=1))


@pytest.mark.parametrize("text", [
    "router 192.168.1.1, host 10.0.0.1, loopback 127.0.0.1",   # private: identify no one
    "docs use 192.0.2.7 and 203.0.113.5 and 2001:db8::1",      # documentation ranges
    "listen on 0.0.0.0 or ::1 or fe80::1",
    "requires version 142.250.72.14 or later",                  # after "version"
    "version='6.0.0.0' and Version=\"5.1.0.0\"",
    "see ANSI 4.12.2.1 and section 2.1.1.3",                    # every part under 32
    "an OID 1.3.6.1.4.1 and 142.250.72.14.5",                   # longer dotted runs
    "at 12:30:45, MAC 00:1A:2B:3C:4D:5E, C++ B::f(int) and std::cout",
])
def test_ip_near_misses_are_kept(text):
    assert one(text) == (text, Counter())


@pytest.mark.parametrize("text, expected", [
    ("Call +1 415 555 2671 now", "Call <PHONE> now"),
    ("+44 20 7946 0958", "<PHONE>"),
    ("+14155552671", "<PHONE>"),
    ("office (415) 555-2671.", "office <PHONE>."),
    ("give us a call at 780-800-7092 to", "give us a call at <PHONE> to"),
    ("call 910.538.0115.", "call <PHONE>."),
    ("contact us today on 07885 577 899,.", "contact us today on <PHONE>,."),
    ("Tel: 7946 0958", "Tel: <PHONE>"),
    ("phone 5551234", "phone <PHONE>"),
])
def test_phone_numbers_are_replaced(text, expected):
    assert one(text) == (expected, Counter(phone=1))


@pytest.mark.parametrize("text", [
    "On 2024-01-15 or 15.01.2024 or 01/02/2024",       # dates
    "It cost $1,234.56 or 1.234.567 EUR",               # prices, thousands
    "for 1 000 000 units",                              # a grouped number
    "ISBN 978-3-16-148410-0",
    "SN 4829-1034-5567 and part 12345678",              # serial numbers: no phone shape, no word
    "call 2024-01-15",                                  # a date, even after "call"
    "card 4111 1111 1111 1111",                         # 16 digits: over E.164's 15
    "years 1999-2004 and 1999 2000 2001",
])
def test_phone_near_misses_are_kept(text):
    assert one(text) == (text, Counter())


def test_kinds_choose_what_is_replaced_and_run_email_ip_phone():
    text = "jane@example.com at 142.250.72.14, tel +1 415 555 2671"
    assert one(text, ["phone"]) == ("jane@example.com at 142.250.72.14, tel <PHONE>", Counter(phone=1))
    assert one(text, ["email", "ip"]) == ("<EMAIL> at <IP>, tel +1 415 555 2671", Counter(email=1, ip=1))
    assert one(text, []) == (text, Counter())
    # the address goes first, so its digits never reach the phone rule
    assert one("fax 142.250.72.14") == ("fax <IP>", Counter(ip=1))


def test_nulls_empty_batches_and_unknown_kinds():
    out, counts = redact(pa.array([None, "", "mail a@example.org"], pa.string()), ALL)
    assert out.to_pylist() == [None, "", "mail <EMAIL>"] and counts == Counter(email=1)
    out, counts = redact(pa.array([], pa.string()), ALL)
    assert len(out) == 0 and counts == Counter()
    with pytest.raises(ConfigError, match="unknown kind 'emails'") as err:
        redact(["x"], ["emails"])
    assert "email, ip, phone" in err.value.explain()[1]


def test_c4_demo_addresses_and_numbers_are_gone_and_other_documents_untouched():
    docs = [json.loads(line)["text"] for line in C4.open(encoding="utf-8")]
    out, counts = redact(pa.array(docs), ALL)
    out = out.to_pylist()
    joined = "\n".join(out)
    for gone in ["vdwarren@education.wisc.edu", "mcushing7 (at) hotmail (dot) com", "780-800-7092",
                 "07885 577 899", "910.538.0115", "woof@rescuedtails.com", "951-704-3374", "213-484-0480"]:
        assert gone not in joined and any(gone in doc for doc in docs)
    changed = [i for i, (a, b) in enumerate(zip(docs, out)) if a != b]
    # every change is a placeholder put where a match was, and nothing else moved
    for i in changed:
        assert any(p in out[i] for p in PLACEHOLDERS.values())
    assert sum(out[i].count(PLACEHOLDERS[kind]) - docs[i].count(PLACEHOLDERS[kind])
               for i in changed for kind in PLACEHOLDERS) == sum(counts.values())
    assert [doc for i, doc in enumerate(docs) if i not in changed] == [doc for i, doc in enumerate(out) if i not in changed]
    assert len(changed) < len(docs) // 10


# ---- the recipe schema for normalize.pii (for the lead to put in schemas/recipe.schema.json) ----

PII_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "description": "Personal data replaced by placeholders after the other normalize steps (dataprep/text/pii.py "
                   "lists what counts and what is left alone), counted per kind. Off unless asked for.",
    "properties": {
        "email": {"enum": ["redact", "keep"], "default": "keep",
                  "description": "redact: e-mail addresses, also spelled out (name at example dot com) -> <EMAIL>."},
        "ip": {"enum": ["redact", "keep"], "default": "keep",
               "description": "redact: public IPv4/IPv6 addresses -> <IP> (private, documentation and "
                              "version-number-like ones stay)."},
        "phone": {"enum": ["redact", "keep"], "default": "keep",
                  "description": "redact: phone numbers (+country code, (area) code, 555-123-4567, 0-prefixed "
                                 "national, or after tel/phone/call/fax) -> <PHONE>."},
    },
}


def test_the_schema_snippet_has_one_entry_per_kind():
    import jsonschema

    assert list(PII_SCHEMA["properties"]) == list(PLACEHOLDERS)
    validator = jsonschema.Draft202012Validator(PII_SCHEMA)
    assert not list(validator.iter_errors({"email": "redact", "ip": "redact", "phone": "keep"}))
    assert list(validator.iter_errors({"emails": "redact"})) and list(validator.iter_errors({"ip": "yes"}))
    chosen = [kind for kind, what in {"email": "redact", "ip": "keep", "phone": "redact"}.items() if what == "redact"]
    assert one("a@example.org 142.250.72.14 +1 415 555 2671", chosen)[1] == Counter(email=1, phone=1)
