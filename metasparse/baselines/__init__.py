"""Everything metasparse is compared against, each run through :mod:`metasparse.scoring`'s ``Method``
interface (their names: ``metasparse.config.METHODS``):

dense; static structured pruning by unit importance (:mod:`.importance`), by L0 gates (:mod:`.l0`) and by
importance under a measured latency table (:mod:`.latency_static`, HALP-style);
training-free activation thresholding (:mod:`.teal`); random per-input decisions (:mod:`.random_policy`);
multitask and scratch controllers (:mod:`.controllers`). The most-frequent-tag lookup, the floor a dense
model has to clear, is :mod:`metasparse.scoring.lookup`.
"""
