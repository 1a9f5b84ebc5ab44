"""Running the backbone and scoring it: one ``Method`` interface (dense, per-input policy, static plan) and
one corpus walker, ``score``, that every part of the package uses (calibration, pretraining and
meta-training validation, evaluate, monitor, diagnose, the benches)."""

from metasparse.scoring.methods import Dense, Method, MethodOutput, PlanMethod, PolicyMethod, StaticMethod
from metasparse.scoring.score import Scores, score

__all__ = ["Dense", "Method", "MethodOutput", "PlanMethod", "PolicyMethod", "Scores", "StaticMethod", "score"]
