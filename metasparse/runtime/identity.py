"""Names a cost table is keyed by: the machine it was measured on and the backbone's architecture."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import torch

from metasparse.model.encoder import GatedEncoder


def machine_fingerprint() -> str:
    """What a latency depends on besides the model: processor model, core count, architecture, torch."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}|{cpu}|cores={os.cpu_count()}|torch={torch.__version__}"


def backbone_identity(model: GatedEncoder) -> str:
    """A stable name for a backbone's architecture (latency depends on shapes, not on weight values)."""
    s = model.spec
    shape = [s.layers, s.d_model, s.heads, s.d_ffn, s.ffn_groups, s.char_dim, s.char_channels, sorted(s.tasks.items())]
    shape.append(None if s.adapter is None else [s.adapter.kind, s.adapter.rank])
    if s.piece_ends:  # added later: absent when off, so older tables keep their names
        shape.append("piece_ends")
    if s.tag_lexicon:  # likewise: its projection is part of every forward's fixed cost
        shape.append(f"tag_lexicon={s.tag_lexicon}")
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]
