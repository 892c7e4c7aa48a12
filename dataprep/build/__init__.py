"""Building a dataset: :func:`dataprep.build.run.run` reads chunks, runs the task's chunk worker on
threads, processes or Ray, and feeds the ordered stage (dedup, split, pack, write); with checkpoints,
accounting of every record, the output lock and atomic writes."""
