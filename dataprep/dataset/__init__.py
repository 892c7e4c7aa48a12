"""A built dataset on disk: its manifest and its shards, read back (paths in the manifest are
relative to the recipe; :mod:`dataprep.dataset.paths`)."""
