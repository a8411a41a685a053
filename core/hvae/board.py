"""TensorBoard logging of a run: the scalars of every metrics.jsonl line, under ``RUN/tensorboard/``.

Each line ``{"split": "train", "step": 10, "loss": ..., ...}`` becomes scalars tagged ``train/loss``, ... at
that step. The ``tensorboard`` package is optional (``pip install tensorboard``, or hvae's extra
``hvae[tensorboard]``); asking for the log without it is a one-line error before training starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from hvae.errors import HvaeError

BOARD_DIR = "tensorboard"  # inside the run directory


def require_tensorboard() -> None:
    """Raise :class:`HvaeError` when TensorBoard logging cannot work here."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise HvaeError("--tensorboard needs the tensorboard package: pip install tensorboard "
                        "(or hvae[tensorboard]).") from None


class Board:
    """A TensorBoard event file in ``run_dir/tensorboard``; a run resumed at ``step`` drops what the
    earlier one logged after it (as metrics.jsonl does)."""

    def __init__(self, run_dir: str | os.PathLike, step: int = 0):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / BOARD_DIR), purge_step=step or None)

    def add(self, record: Mapping[str, Any]) -> None:
        """The numbers of one metrics.jsonl line, as ``<split>/<name>`` scalars at its step."""
        for name, value in record.items():
            if name not in ("split", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{record['split']}/{name}", value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
