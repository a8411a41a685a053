"""TensorBoard logging of a run: the scalars of every metrics.jsonl line, in the run's ``tensorboard/`` folder.

Each line ``{"split": "train", "step": 10, "loss": ..., ...}`` becomes scalars tagged ``train/loss``, ... at
that step. The ``tensorboard`` package is optional (``pip install tensorboard``, or hvae's extra
``hvae[tensorboard]``); asking for the log without it is a one-line error before training starts.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from hvae.errors import HvaeError

def require_tensorboard() -> None:
    """Raise :class:`HvaeError` when TensorBoard logging cannot work here."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise HvaeError("--tensorboard needs the tensorboard package: pip install tensorboard "
                        "(or hvae[tensorboard]).") from None


class Board:
    """A TensorBoard event file in ``log_dir`` (a run's ``tensorboard`` folder); a run resumed at ``step``
    drops what the earlier one logged after it (as metrics.jsonl does)."""

    def __init__(self, log_dir: str | os.PathLike, step: int = 0):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=os.fspath(log_dir), purge_step=step or None)

    def add(self, record: Mapping[str, Any]) -> None:
        """The numbers of one metrics.jsonl line, as ``<split>/<name>`` scalars at its step."""
        for name, value in record.items():
            if name not in ("split", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{record['split']}/{name}", value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
