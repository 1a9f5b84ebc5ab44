"""Everything metasparse is compared against, run through one interface (:mod:`metasparse.scoring`):

dense; static structured pruning by unit importance (:mod:`.importance`) and by L0 gates (:mod:`.l0`);
training-free activation thresholding (:mod:`.teal`); random per-input decisions (:mod:`.random_policy`);
multitask and scratch controllers (:mod:`.controllers`); and the most-frequent-tag lookup
(:mod:`.lookup`), the floor a dense model has to clear.
"""

# Every method ``evaluate`` and ``bench.transfer`` know, in report order (dense first).
METHODS = ("dense", "meta", "multitask", "importance", "l0", "teal", "random")
