"""The bundled trainer: the loader (batches of a built dataset for any PyTorch loop), a small
transformer, the training loop (``loop.train``: config, setup, step, evaluate, checks, save),
and the proofs that the data trains what it claims."""
