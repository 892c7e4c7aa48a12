"""Text, before and into tokens: Unicode normalization, document filters, and the tokenizer
(loading, special-token roles, training a BPE, encoding long documents)."""
