"""Check 9, the tokenizer: the manifest's tokenizer section against the tokenizer files it names,
and the unknown tokens in the rows.

The files are the ones ``run`` read (``tokenizer.files``, found through
:func:`dataprep.dataset.paths.resolve`, which must still have their recorded sha256), or the
copy saved in the dataset (``tokenizer.saved_as``, which must still have the recorded
``fingerprint``). The special roles are derived from them again exactly as ``run`` derived
them (:func:`dataprep.text.tokenizer.load_tokenizer` with the recorded recipe's ``tokenizer``
section), and each role the manifest records must name the same token and id::

    manifest  special_tokens.eos = '<|endoftext|>' (id 50265)    files: eos = '</s>' (id 2)
    -> tokenizer_special_tokens: the manifest records EOS '<|endoftext|>' (id 50265), the files give '</s>' (id 2)

``tokenizer.vocab_size`` must be the files' own. A larger one would hide ids the tokenizer cannot
decode, so the row check (``token_out_of_vocab``) tests ids against the smaller of the two.

Unknown tokens (the id a tokenizer writes for text it cannot represent, such as a T5 ``{``) are
counted in the rows of each split. They are not an error in themselves: the count goes into the
report's stats (``unknown_tokens``, ``unknown_share``), and is a finding only when the manifest
states another count (``counts.unknown_tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import columns as C
from ..errors import DataprepError
from dataprep.dataset.manifest import Manifest, as_json
from dataprep.dataset.manifest_parts import Tokenizer
from dataprep.text.special_tokens import ALL_ROLES, ROLES, unknown_token_id
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, load_tokenizer
from dataprep.storage import sha256_file
from .check_rows import RowBatch
from .contract import Contract
from .findings import Finding

MANIFEST = C.MANIFEST_FILE
SKIPPED = "tokenizer checks skipped"


@dataclass(frozen=True)
class TokenizerFacts:
    """What the tokenizer files say, for the row checks (``None`` where they could not be read)."""

    vocab_size: int | None = None
    unk_id: int | None = None  # the unknown-token id to count in the rows (see unknown_token_id)
    loaded: LoadedTokenizer | None = None  # for decoding the tokens a finding shows

    def decode(self, ids) -> str | None:
        """``ids`` as text (special tokens kept), or None without the tokenizer."""
        if self.loaded is None:
            return None
        return self.loaded.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def check_tokenizer(manifest: Manifest, out: Path, notes: list[str]) -> tuple[list[Finding], TokenizerFacts]:
    """The tokenizer files against the manifest: digests, vocab size and every special role.

    Files that are not there (a dataset moved to another machine) skip the checks with a note.
    """
    tok = manifest.tokenizer
    recorded = _recorded_roles(tok)
    facts = TokenizerFacts(unk_id=None if tok.special_tokens is None else unknown_token_id(as_json(tok.special_tokens)))
    findings = []
    if not tok.saved_as:
        for i, entry in enumerate(tok.files):
            path = Path(manifest.resolve(entry.path))
            if not path.is_file():
                notes.append(f"{SKIPPED}: {path} (tokenizer.files[{i}]) is not there")
                return findings, facts
            findings += _digest(path, entry.sha256, i)
    try:
        loaded = _load(manifest, out)
    except DataprepError as exc:
        notes.append(f"{SKIPPED}: cannot load the tokenizer the manifest names ({exc})")
        return findings, facts
    if tok.saved_as and loaded.fingerprint != tok.fingerprint:
        why = f"fingerprint is {loaded.fingerprint[:16]}..., the manifest says {tok.fingerprint[:16]}...: the saved tokenizer changed after the run"
        findings.append(Finding("tokenizer_file_changed", why, file=f"{tok.saved_as}/", path="tokenizer.fingerprint"))
    if tok.vocab_size != loaded.vocab_size:
        why = f"tokenizer.vocab_size is {tok.vocab_size:,} but the tokenizer files hold {loaded.vocab_size:,} tokens"
        findings.append(Finding("tokenizer_vocab_size", why, file=MANIFEST, path="tokenizer.vocab_size"))
    findings += _inconsistent_ids(tok)
    derived = {role: (entry["token"], entry["id"]) for role, entry in loaded.special_tokens.items()}
    for role in ALL_ROLES:
        if role not in recorded:
            continue  # a manifest without special_tokens records no unk
        want, got = recorded[role], derived.get(role)
        if want is not None and want[0] is None and got is not None:  # special_ids only: the id is all it records
            got = (None, got[1])
        if want != got:
            why = f"the manifest records {_role_text(role, want)}, the tokenizer files give {_role_text(role, got)}"
            where = "special_ids" if tok.special_tokens is None else "special_tokens"
            findings.append(Finding("tokenizer_special_tokens", why, file=MANIFEST, path=f"tokenizer.{where}.{role}"))
    if tok.special_tokens is None:
        facts = replace(facts, unk_id=unknown_token_id(loaded.special_tokens))
    return findings, replace(facts, vocab_size=loaded.vocab_size, loaded=loaded)


def bound(contract: Contract, facts: TokenizerFacts) -> Contract:
    """The contract with the vocab size the tokenizer files really have, where that is smaller."""
    if facts.vocab_size is None or facts.vocab_size >= contract.vocab_size:
        return contract
    return replace(contract, vocab_size=facts.vocab_size)


def count_unknown(rows: RowBatch, unk_id: int | None) -> int:
    """Unknown-token ids in the rows (never in the pad piece: unknown_token_id is None when pad is unk)."""
    return 0 if unk_id is None else int(np.count_nonzero(rows.ids == unk_id))


def unknown_tokens(manifest: Manifest, counted: dict[str, int], tokens: dict[str, int], unk_id: int) -> tuple[dict[str, Any], list[Finding]]:
    """The stats for the unknown tokens counted per split, and a finding per split whose count the
    manifest states otherwise. A pretraining split may have dropped the tail of its token stream
    (``packing.<split>.dropped_tokens``), which the manifest's count still includes."""
    total, content = sum(counted.values()), sum(tokens.values())
    stats = {"unknown_tokens": {s: counted[s] for s in C.SPLITS}, "unknown_share": round(total / content, 6) if content else 0.0}
    stated = manifest.counts.unknown_tokens
    findings = []
    if stated is not None:
        special = manifest.tokenizer.special_tokens or {}
        for split in C.SPLITS:
            n = counted[split]
            want = stated[split]
            dropped = manifest.packing[split].dropped_tokens
            if not (n <= want <= n + dropped):
                token = special["unk"].token if "unk" in special else None
                named = f" {token!r}" if token else ""
                why = f"the rows hold {n:,} unknown tokens (id {unk_id}{named}), counts.unknown_tokens.{split} says {want:,}"
                if dropped:
                    why += f" ({dropped:,} tokens of the split were dropped, which may hold up to that many)"
                findings.append(Finding("unknown_tokens", why, file=MANIFEST, path=f"counts.unknown_tokens.{split}", split=split))
    return stats, findings


# --- helpers ---------------------------------------------------------------------------------


def _load(manifest: Manifest, out: Path) -> LoadedTokenizer:
    """The tokenizer the manifest names, with the recorded recipe's options (BOS/EOS not required)."""
    spec = dict(manifest.recipe.get("tokenizer", {}))
    spec.pop("train", None)
    spec.update(add_bos=False, add_eos=False)
    spec["path"] = manifest.tokenizer_path(out)
    return load_tokenizer(TokenizerSpec(**spec), base_dir=out, warn=False)


def _recorded_roles(tok: Tokenizer) -> dict[str, tuple[str | None, int] | None]:
    """role -> (token, id), None where the manifest says the role does not exist. ``special_tokens``
    covers every role; a manifest with only ``special_ids`` records ids of BOS, EOS and pad."""
    if tok.special_tokens is not None:
        entries = tok.special_tokens
        return {role: (entries[role].token, entries[role].id) if role in entries else None for role in ALL_ROLES}
    ids = tok.special_ids
    return {role: (None, ids[role]) if role in ids else None for role in ROLES}


def _inconsistent_ids(tok: Tokenizer) -> list[Finding]:
    """``special_ids`` must repeat the ids of ``special_tokens``."""
    if tok.special_tokens is None:
        return []
    findings = []
    for role in ROLES:
        stated, entry = tok.special_ids.get(role), tok.special_tokens.get(role)
        if stated != (None if entry is None else entry.id):
            why = f"tokenizer.special_ids.{role} is {stated}, tokenizer.special_tokens.{role} says {_role_text(role, None if entry is None else (entry.token, entry.id))}"
            findings.append(Finding("manifest_inconsistent", why, file=MANIFEST, path=f"tokenizer.special_ids.{role}"))
    return findings


def _digest(path: Path, expected: str, index: int) -> list[Finding]:
    actual = sha256_file(path)
    if actual == expected:
        return []
    why = f"sha256 is {actual[:16]}..., the manifest says {expected[:16]}...: the tokenizer file changed after the run"
    return [Finding("tokenizer_file_changed", why, file=str(path), path=f"tokenizer.files[{index}]")]


def _role_text(role: str, value: tuple[str | None, int] | None) -> str:
    if value is None:
        return f"no {role.upper()} token"
    token, id_ = value
    return f"{role.upper()} id {id_}" if token is None else f"{role.upper()} {token!r} (id {id_})"
