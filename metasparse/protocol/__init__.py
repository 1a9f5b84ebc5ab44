"""The evaluation protocol every method goes through, on top of :func:`metasparse.scoring.score` (accuracy,
macro-F1, FLOPs): latency, throughput and CPU time (:mod:`.speed`), batch-size consistency
(:mod:`.consistency`) and stress inputs (:mod:`.stress`)."""
