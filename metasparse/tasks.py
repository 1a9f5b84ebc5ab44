"""Word-level prediction tasks declared in ``tasks/*.yaml``: adding a task is adding a file.

A task file names the dataset ``column`` it predicts, its ``labels`` and its ``metric``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from metasparse.errors import ConfigValueError

TASKS_DIR_ENV = "METASPARSE_TASKS_DIR"
_KEYS = {"name", "column", "metric", "labels"}
METRICS = ("accuracy",)


@dataclass(frozen=True)
class Task:
    """One word-level task.

    Attributes:
        name: task name, equal to the file's stem.
        column: dataset column with the gold labels.
        metric: how it is scored (``accuracy``).
        labels: the label inventory, in id order.
    """

    name: str
    column: str
    metric: str
    labels: tuple[str, ...]

    @cached_property
    def label_to_id(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.labels)}

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def encode(self, labels: Sequence[str]) -> list[int]:
        """Label ids of one sentence; an unknown label raises naming it and the task."""
        try:
            return [self.label_to_id[lab] for lab in labels]
        except KeyError as exc:
            raise ConfigValueError(f"label {exc.args[0]!r} is not in task {self.name!r}") from None


def tasks_dir() -> Path:
    """``$METASPARSE_TASKS_DIR`` or the ``tasks/`` folder beside the package."""
    env = os.environ.get(TASKS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "tasks"


def available_tasks(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or tasks_dir()).glob("*.yaml"))


def load_task(name: str, directory: Path | None = None) -> Task:
    """Load ``<tasks dir>/<name>.yaml``.

    Raises:
        ConfigValueError: unknown task (lists the available ones) or a malformed file (names the key).
    """
    directory = directory or tasks_dir()
    path = directory / f"{name}.yaml"
    if not path.exists():
        raise ConfigValueError(
            f"unknown task {name!r}; available in {directory}: {', '.join(available_tasks(directory))}"
        )
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise ConfigValueError(f"{path}: expected a mapping with keys {sorted(_KEYS)}")
    if unknown := set(spec) - _KEYS:
        raise ConfigValueError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    if missing := _KEYS - set(spec):
        raise ConfigValueError(f"{path}: missing key(s) {sorted(missing)}")
    if spec["name"] != name:
        raise ConfigValueError(f"{path}: name {spec['name']!r} differs from the file name {name!r}")
    if spec["metric"] not in METRICS:
        raise ConfigValueError(f"{path}: metric {spec['metric']!r}; allowed: {', '.join(METRICS)}")
    labels = spec["labels"]
    if not isinstance(labels, list) or not labels or len(set(labels)) != len(labels):
        raise ConfigValueError(f"{path}: labels must be a non-empty list without duplicates")
    return Task(name=name, column=str(spec["column"]), metric=spec["metric"], labels=tuple(map(str, labels)))
