"""One small logging interface for every training entry point: scalars and figures go to TensorBoard
(the default), MLflow, or nowhere (``logger=tensorboard|mlflow|none``).

Training loops call :func:`log_scalars` / :func:`log_figure` wherever they have a number or a figure;
the entry point opens the run's tracker with :func:`tracking` around its work. Outside of that (a notebook
calling a training function, a test, a rank other than 0 under torchrun) they do nothing, so no loop needs
a tracker passed down to it.

    tensorboard --logdir outputs                                   # every run's ``tb/`` event files
    mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db      # the embedded MLflow store (needs mlflow)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from metasparse.errors import require

log = logging.getLogger(__name__)

KINDS = ("tensorboard", "mlflow", "none")


@dataclass
class LoggerConfig:
    """Where a job's scalars and figures go (the ``logger`` config group).

    Attributes:
        kind: ``tensorboard`` (event files in ``<run dir>/tb``), ``mlflow`` or ``none``.
        tracking_uri: MLflow's store; null: ``sqlite:///outputs/mlflow.db`` (embedded, a file beside the
            runs; a server's URL logs there instead).
        experiment: MLflow experiment name.
    """

    kind: str = "tensorboard"
    tracking_uri: str | None = None
    experiment: str = "metasparse"

    def __post_init__(self) -> None:
        require(self.kind in KINDS, "logger.kind", " | ".join(KINDS), self.kind)


class Tracker:
    """Logs nothing: the tracker outside of :func:`tracking` and for ``logger=none``."""

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Log ``values`` (tag -> number) at ``step``."""

    def figure(self, name: str, png: Path) -> None:
        """Log a figure already written as a PNG."""

    def params(self, values: Mapping[str, object]) -> None:
        """Log the run's settings (flattened config)."""

    def close(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    """Event files under ``log_dir`` (``torch.utils.tensorboard``)."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, float(v), step)

    def figure(self, name: str, png: Path) -> None:
        import matplotlib.image

        img = matplotlib.image.imread(str(png))
        self.writer.add_image(name, img[..., :3], dataformats="HWC")

    def params(self, values: Mapping[str, object]) -> None:
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(values.items())))

    def close(self) -> None:
        self.writer.close()


class MLflowTracker(Tracker):
    """One MLflow run in ``experiment`` at ``uri``."""

    def __init__(self, uri: str, experiment: str, run_name: str) -> None:
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self.mlflow.log_metrics({k.replace("/", "."): float(v) for k, v in values.items()}, step=step)

    def figure(self, name: str, png: Path) -> None:
        self.mlflow.log_artifact(str(png), artifact_path="figures")

    def params(self, values: Mapping[str, object]) -> None:
        self.mlflow.log_params({k: str(v)[:500] for k, v in values.items()})  # MLflow caps a value's length

    def close(self) -> None:
        self.mlflow.end_run()


_active: Tracker = Tracker()


def default_mlflow_uri() -> str:
    return f"sqlite:///{Path('outputs').resolve() / 'mlflow.db'}"


def open_tracker(cfg: LoggerConfig, run_dir: Path, run_name: str) -> Tracker:
    """The tracker ``cfg`` asks for (its dependency is imported only here, when chosen)."""
    if cfg.kind == "tensorboard":
        return TensorBoardTracker(run_dir / "tb")
    if cfg.kind == "mlflow":
        uri = cfg.tracking_uri or default_mlflow_uri()
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return MLflowTracker(uri, cfg.experiment, run_name)
    return Tracker()


@contextmanager
def tracking(
    cfg: LoggerConfig, run_dir: Path, run_name: str, params: Mapping[str, object] | None = None, *, enabled: bool = True
) -> Iterator[Tracker]:
    """Make the run's tracker the active one while the block runs (``enabled=False``: ranks other than 0)."""
    global _active
    tracker = open_tracker(cfg, Path(run_dir), run_name) if enabled else Tracker()
    if params:
        tracker.params(params)
    previous, _active = _active, tracker
    try:
        yield tracker
    finally:
        _active = previous
        tracker.close()


def log_scalars(prefix: str, values: Mapping[str, float], step: int) -> None:
    """Log ``values`` as ``<prefix>/<name>`` at ``step`` to the active tracker (none: nothing happens)."""
    _active.scalars({f"{prefix}/{k}": v for k, v in values.items()}, step)


def log_figure(name: str, png: Path) -> None:
    """Log a written PNG to the active tracker."""
    _active.figure(name, Path(png))


def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (configs as tracker params)."""
    out: dict[str, object] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def job_tracking(cfg, out_dir: Path, job: str, *, enabled: bool = True):
    """:func:`tracking` for an entry point: ``cfg.logger``'s tracker, named after the job and its run dir,
    with the whole config as its params."""
    from omegaconf import OmegaConf

    params = flatten(OmegaConf.to_container(OmegaConf.structured(cfg)))
    return tracking(cfg.logger, out_dir, f"{job} {Path(out_dir).name}", params, enabled=enabled)
