"""Packing token sequences into fixed-length rows: ``wrap`` (concatenate and cut) and ``bfd``
(best-fit decreasing, no example cut), with the row blocks and statistics they produce."""
