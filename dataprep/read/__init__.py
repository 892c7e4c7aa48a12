"""Input readers: files, folders and globs -> record batches of named fields plus ``(source, line)``.

Two steps. :func:`resolve_inputs` turns a recipe's ``inputs:`` into a sorted,
de-duplicated list of :class:`InputFile` with format and compression resolved.
:func:`read_records` streams one of them as Arrow record batches, one
``large_string`` column per :class:`FieldSpec`, whose ``source`` and ``line``
columns say where every record came from; :func:`read_batches` is the pretraining
case, the input's ``text_field`` as one ``text`` column (:data:`SCHEMA`)::

    inputs: [{path: corpus/}]         corpus/a.jsonl      corpus/b.txt (txt_unit: line)
                                            |                   |
    resolve_inputs  ->  [InputFile(a.jsonl, jsonl, None), InputFile(b.txt, txt, None)]
    read_batches(files[1], 1, ...)  ->  text="first line"  source=1  line=1
                                        text="third line"  source=1  line=3   (line 2 blank)

Records come in the shapes real datasets use: field paths index lists
(``instances.0.output``); ``records:`` reads one record per element of a nested list
(SQuAD's ``data[*].paragraphs[*].qas[*]``), whose fields reach their parents with ``^``;
``text_template:`` builds pretraining text from several fields; messages keep tool
calls, reasoning and per-message train flags, with roles mapped by ``roles:``.

Text is passed through untouched (no stripping, no normalization: later stages
do that). Bad records (invalid UTF-8, malformed JSON or rows, missing or
wrong-typed fields, a JSON value that is not an object) either raise
:class:`~dataprep.errors.InputError` or, with ``on_error="skip"``, are counted by
reason (:data:`DROP_REASONS`) and logged (the first ``MAX_LOGGED`` per file, then
one summary line). Inside :func:`collecting` (``validate --recipe``: run's own readers in
a check-only mode) every bad record is handed to a list instead, with its location, reason,
message and fix. A damaged *file* is never a bad record: a .gz/.zst, parquet or
arrow file cut short or corrupt raises in every mode, naming the file and the fix.

Every text reader reads UTF-8 bytes from :func:`open_binary`, which decompresses and,
for an input with another ``encoding:`` (or ``auto``, decided per file when inputs are
resolved and kept as ``InputFile.encoding``), transcodes on the fly::

    file bytes -> _compressed (gzip / zstd, damage = InputError) -> _transcode (codec -> UTF-8) -> reader

Modules, in the order data flows through them::

    _file       InputSpec, InputFile: one input, as the recipe names it and as it is read
    _inputs     resolve_inputs: what to read (files found, format and encoding resolved per file)
    _fields     FieldSpec and the kinds (text, any, json, messages): what a record must hold
    _messages   chat adapters: OpenAI / ShareGPT -> canonical messages (tool calls, reasoning, train flags)
    _nested     records: nested sources, one record per list element, parents reached with ^
    _template   text_template: pretraining text joined from fields
    _text       txt: file / line / paragraph
    _json       jsonl (streamed) and json arrays
    _delimited  tsv and csv (streamed)
    _columnar   parquet and arrow / HF datasets (column at a time)
    _records    read_records, read_batches: batching and provenance
    _common     open_binary, the bad-record policy, message helpers
    _compressed gzip / zstd streams where a cut or corrupt container is a file error
    _encoding   `encoding:` names, detecting a codec (auto), the codec a message suggests
    _transcode  any codec -> UTF-8 bytes, incrementally; bytes the codec rejects marked
"""

from ._columnar import arrow_batches
from ._common import DROP_REASONS, MAX_LOGGED, ON_ERROR, collecting, json_message, open_binary, text_message, utf8_message
from ._delimited import DIALECTS
from ._fields import EMPTY, FIELD_KINDS, FieldSpec, iter_field, records_schema
from ._file import FORMATS, TABULAR, TXT_UNITS, InputFile, InputSpec
from ._inputs import file_sha256, file_size, local_size, resolve_inputs
from ._messages import ROLE_TARGETS, SHAREGPT_ROLES, normalize_messages
from ._records import SCHEMA, read_batches, read_records

__all__ = [
    "DIALECTS",
    "DROP_REASONS",
    "EMPTY",
    "FIELD_KINDS",
    "FORMATS",
    "MAX_LOGGED",
    "ON_ERROR",
    "ROLE_TARGETS",
    "SHAREGPT_ROLES",
    "SCHEMA",
    "TABULAR",
    "TXT_UNITS",
    "FieldSpec",
    "InputFile",
    "InputSpec",
    "arrow_batches",
    "collecting",
    "file_sha256",
    "file_size",
    "iter_field",
    "json_message",
    "local_size",
    "open_binary",
    "normalize_messages",
    "read_batches",
    "read_records",
    "records_schema",
    "resolve_inputs",
    "text_message",
    "utf8_message",
]
