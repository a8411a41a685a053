"""Training runs in tests, the way every caller starts and resumes one: through a session."""

from __future__ import annotations

import os

from hvae.rundir import RunConfig
from hvae.session import Session, TrainRequest
from hvae.training import Trainer


def train_new(run_dir: str | os.PathLike, config: RunConfig) -> Trainer:
    """Train a new run of ``config`` in ``run_dir`` to its steps; its trainer, at the last step."""
    return _trained(TrainRequest(config=config, out_dir=run_dir))


def train_on(run_dir: str | os.PathLike, **train) -> Trainer:
    """Resume the run in ``run_dir`` with the training options ``train`` (steps, ...) and train it; its trainer."""
    return _trained(TrainRequest(resume=run_dir, train=train))


def new_session(run_dir: str | os.PathLike, config: RunConfig) -> Session:
    """A session for a new run of ``config`` in ``run_dir``, to enter."""
    return Session(TrainRequest(config=config, out_dir=run_dir), progress=False)


def resumed_session(run_dir: str | os.PathLike, **train) -> Session:
    """A session resuming the run in ``run_dir`` with the training options ``train``, to enter."""
    return Session(TrainRequest(resume=run_dir, train=train), progress=False)


def _trained(request: TrainRequest) -> Trainer:
    with Session(request, progress=False) as session:
        session.train()
        return session.trainer
