"""Training precision: fp32, or the forward passes under bfloat16 autocast on the CPU.

Why: on a CPU with bf16 instructions (AVX512-BF16, AMX) a pretraining step under autocast took 0.77 of the
fp32 step here (README, "Pretraining in bf16"), and pretraining plus the joint phase has a 30-minute
budget. Weights, optimiser state and the saved checkpoints stay fp32, and inference runs fp32.
"""

from __future__ import annotations

import torch

PRECISIONS = ("fp32", "bf16")


def training_autocast(precision: str) -> torch.autocast:
    """The context a training step's forward passes run in: bfloat16 autocast for ``bf16``, a disabled one
    for ``fp32``. Under it linear layers and matmuls run in bf16 and what follows them in bf16 too (on the
    CPU autocast keeps layer norm and softmax in the input's dtype); the losses cast the logits to fp32
    (:func:`metasparse.model.loss.task_loss`).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; allowed: {', '.join(PRECISIONS)}")
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
