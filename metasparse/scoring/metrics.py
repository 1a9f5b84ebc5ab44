"""Accuracy bookkeeping per cell and language, and the macro averages the goals are stated in."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class AccuracyTable:
    """Correct and total counts per (group, task); groups are cell names or language codes."""

    correct: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    total: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def add(self, group: str, task: str, correct: int, total: int) -> None:
        self.correct[group, task] += correct
        self.total[group, task] += total

    def acc(self, group: str, task: str) -> float:
        t = self.total.get((group, task), 0)
        return self.correct.get((group, task), 0) / t if t else float("nan")

    def groups(self) -> list[str]:
        return sorted({g for g, _ in self.total})

    def macro(self, task: str) -> float:
        """Mean of per-group accuracies (each language counts the same)."""
        accs = [self.acc(g, task) for g in self.groups() if self.total.get((g, task))]
        return sum(accs) / len(accs) if accs else float("nan")

    def micro(self, task: str) -> float:
        c = sum(v for (g, t), v in self.correct.items() if t == task)
        n = sum(v for (g, t), v in self.total.items() if t == task)
        return c / n if n else float("nan")

    def as_dict(self, tasks: list[str]) -> dict:
        return {g: {t: self.acc(g, t) for t in tasks} for g in self.groups()}
