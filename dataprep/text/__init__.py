"""Text, before and into tokens.

- ``normalize``: Unicode normalization; ``filters``: document filters and dedup hashes.
- ``tokenizer``: the recipe's ``TokenizerSpec``, ``LoadedTokenizer`` (encode documents into the
  flat layout the packers take, pickling, saving) and ``load_tokenizer``.
- ``tokenizer_files``: reading the file layouts (``tokenizer.json``, ``vocab.json`` +
  ``merges.txt``, ``vocab.txt``, ``tokenizer_config.json``).
- ``special_tokens``: which token plays BOS, EOS, pad and unk, and where each role came from.
- ``encode_engine``: which library encodes pretraining documents (tokenizers, or gigatoken after a
  parity probe), and BOS/EOS framing.
- ``train_bpe``: training a byte-level BPE on the recipe's documents.
- ``long_documents``: encoding in bounded memory: groups, seams in long documents, ``malloc_trim``.
- ``tokenizer_manifest``: the manifest's ``tokenizer`` section.
- ``hf_backend`` and ``reference``: the installed transformers' tokenizer, and comparing its ids.
"""
