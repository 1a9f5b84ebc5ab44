"""The evaluation protocol every method goes through: accuracy and macro-F1 (:mod:`.scores`), latency,
throughput and CPU time (:mod:`.speed`), batch-size consistency (:mod:`.consistency`) and stress inputs
(:mod:`.stress`)."""
