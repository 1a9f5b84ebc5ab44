"""Data layer: pinned UD registry, downloads, CoNLL-U reading, splits, cells, tokenizer, episodes."""

from metasparse.data.cells import Cell, CellIndex, partition_cells
from metasparse.data.fetch import cache_dir, data_dir, fetch
from metasparse.data.registry import load_registry
from metasparse.data.ud import load_folder, load_ud

__all__ = [
    "Cell",
    "CellIndex",
    "cache_dir",
    "data_dir",
    "fetch",
    "load_folder",
    "load_registry",
    "load_ud",
    "partition_cells",
]
