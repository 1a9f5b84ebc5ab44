"""Training machinery shared by the entry points: encoded corpora, batching, evaluation, checkpoints."""
