"""Cost tables on disk: one per machine, thread count and architecture, beside the backbone.

:func:`load_or_measure` re-measures a stored table that names another machine, thread count, backbone
or codebook: it is never used silently. Latency depends on shapes, not weight values, so a table
measured for another backbone of the same architecture (another seed, a co-trained copy) on this
machine is re-used, which also prices every seed of an experiment with the same table. Its controller
row is re-timed when the table timed another controller (settings, not weights) or none.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import torch

from metasparse.io import atomic_write
from metasparse.model.encoder import GatedEncoder
from metasparse.runtime import cost_measure
from metasparse.runtime.controller_timing import controller_signature
from metasparse.runtime.costs import CostTable, codebook_units
from metasparse.runtime.identity import backbone_identity, machine_fingerprint

log = logging.getLogger(__name__)

# Median IQR over a table's cells above which a measurement is called noisy (a quiet 2-core machine gives
# 4-10%; another job on the CPU gives 20% and more): re-measured once with twice the rounds.
NOISY_SPREAD = 0.15


def table_path(backbone_dir: Path, threads: int, ident: str) -> Path:
    """The table's file beside the backbone: one per machine, thread count and architecture (``ident``)."""
    fp = hashlib.sha256(machine_fingerprint().encode()).hexdigest()[:12]
    return Path(backbone_dir) / "costs" / f"{fp}-t{threads}-{ident[:8]}.json"


def _valid_table(path: Path, threads: int, ident: str, units: list) -> CostTable | None:
    table = CostTable.from_json(path.read_text(), str(path))
    reason = table.stale_reason(machine_fingerprint(), threads, ident, units)
    if reason is not None:
        log.warning("cost table %s is stale (%s): re-measuring", path, reason)
        return None
    return table


def _sibling_table(path: Path, threads: int, ident: str, units: list) -> CostTable | None:
    """A valid table of the same name beside another backbone in the same cache folder."""
    backbones = path.parent.parent.parent
    for other in sorted(backbones.glob(f"*/costs/{path.name}")):
        if other == path:
            continue
        table = CostTable.from_json(other.read_text(), str(other))
        if table.stale_reason(machine_fingerprint(), threads, ident, units) is None:
            log.info("re-using the cost table of the same architecture measured for %s", other.parent.parent.name)
            return table
    return None


def load_or_measure(
    model: GatedEncoder, backbone_dir: Path, *, threads: int, remeasure: bool = False, **measure_kw
) -> tuple[CostTable, Path, bool]:
    """The backbone's table for this machine and thread count: loaded when it matches, else copied
    from another backbone of the same architecture, else measured, and stored beside the backbone
    (atomically). A stored table that names another machine, thread count, backbone or codebook is
    re-measured with a warning, never used.

    Returns:
        (table, its path, whether it was measured now).
    """
    ident = backbone_identity(model)
    path = table_path(backbone_dir, threads, ident)
    units = codebook_units(model.codebook)
    if not remeasure:
        table = _valid_table(path, threads, ident, units) if path.exists() else None
        if table is None and not path.exists():
            table = _sibling_table(path, threads, ident, units)
            if table is not None:
                atomic_write(path, table.to_json().encode())
        if table is not None:
            return _for_controller(table, path, model, measure_kw), path, False
    table = _measure_quietly(model, ident, threads, measure_kw)
    atomic_write(path, table.to_json().encode())
    log.info("cost table (median IQR %.1f%%) -> %s", 100 * table.spread, path)
    return table, path, True


def _for_controller(table: CostTable, path: Path, model: GatedEncoder, measure_kw: dict) -> CostTable:
    """``table``, its controller row re-timed (and stored) when it was timed for another controller or none:
    a table first measured without one (a static baseline's) would otherwise price a controller at 0."""
    ctrl = measure_kw.get("controller")
    if ctrl is None or table.controller == controller_signature(ctrl):
        return table
    log.info("cost table %s: timing the controller row for %s", path, controller_signature(ctrl))
    table = cost_measure.retime_controller(table, model, ctrl, rounds=measure_kw.get("rounds", 7))
    atomic_write(path, table.to_json().encode())
    return table


def _measure_quietly(model: GatedEncoder, ident: str, threads: int, measure_kw: dict) -> CostTable:
    """Measure; a noisy table (median IQR over :data:`NOISY_SPREAD`) is measured once more with twice the
    rounds and the quieter kept, with a warning when even that one is noisy (never silently)."""
    old = torch.get_num_threads()
    try:
        t0 = time.time()
        table = cost_measure.measure(model, backbone=ident, threads=threads, **measure_kw)
        log.info("measured the cost table in %.1fs (median IQR %.1f%%)", time.time() - t0, 100 * table.spread)
        if table.spread > NOISY_SPREAD:
            rounds = 2 * measure_kw.get("rounds", 7)
            log.warning(
                "cost table noisy (median IQR %.0f%%): measuring again with %d rounds", 100 * table.spread, rounds
            )
            again = cost_measure.measure(model, backbone=ident, threads=threads, **{**measure_kw, "rounds": rounds})
            table = min(table, again, key=lambda t: t.spread)
        if table.spread > NOISY_SPREAD:
            log.warning(
                "cost table still noisy (median IQR %.0f%%): something else is using the CPU; its latency "
                "prices are rough. Re-measure on a quiet machine: python -m metasparse.bench.costs "
                "costs.remeasure=true",
                100 * table.spread,
            )
    finally:
        torch.set_num_threads(old)
    return table
