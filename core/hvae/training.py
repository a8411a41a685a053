"""Training a MusicVAE: the loop, its metrics log, checkpoints, and stopping cleanly.

Starting and resuming a run (the lock, the processes, the configuration, the model, the checkpoint restored)
is :mod:`hvae.session`'s; the trainer it makes writes the run directory (its layout and files:
:mod:`hvae.rundir`): a line of metrics.jsonl every ``log_every`` steps and a checkpoint every ``checkpoint_every``.

The batch order and every random draw of a step are functions of (seed, step) only: the latent
noise comes from a generator seeded with (seed, step), dropout and scheduled sampling from a stream
seeded with (seed, step, rank). So ``k`` steps, a stop, and a resume give the same weights as the
steps run straight. Ctrl-C (or SIGTERM) finishes the step under way, writes a checkpoint and
returns; a loss that is not finite stops training before the bad step touches the weights, leaving
the last checkpoint as it was.

A training step reads nothing back from the device, so on a GPU the host queues the next step
while the last one runs. The loss parts stay on the device, summed there, until a line is logged;
the finiteness check runs there too (:class:`_Divergence`): from the first step whose loss is not
finite on, each update is skipped on the device, and the error is raised at the next line, validation
or checkpoint, naming that step, before anything is written.

Under torchrun (see :mod:`hvae.distributed`) every process runs this same loop. Rank ``r`` of ``N``
takes rows ``r*B/N`` to ``(r+1)*B/N`` of each global batch of ``B`` and the same rows of the
batch's latent noise, so the global batch, the data order and the noise are the single process's.
The loss is a mean over the batch, and DistributedDataParallel averages the ranks' gradients: the
mean of ``N`` equal-sized shard means is the global mean, so the update is the single-process
update (to float rounding). Dropout masks are drawn per rank and are not the single process's.
Rank 0 alone writes config.json, metrics.jsonl and checkpoints, and runs validation; the logged
figures are means over the ranks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

import numpy as np
import torch
from tqdm import tqdm

from hvae import cpushare
from hvae.board import Board
from hvae.checkpoint import Checkpoint, capture_rng, rebuilding, restore_rng, write_checkpoint
from hvae.data import WindowSet
from hvae.device import (autocast, default_autocast_dtype, grad_scaler, host_to_device,
                         products_independent_of_threads)
from hvae.distributed import World
from hvae.errors import TrainingError
from hvae.interfaces import Converter
from hvae.manifest import is_count
from hvae.model import Batch, ModelOutput, MusicVAE, clip_gradients, make_lr_schedule, make_optimizer
from hvae.rundir import RunConfig, RunDir, checkpoint_meta

LOGGED_PARTS = ("loss", "r_loss", "kl", "kl_bits")  # ModelOutput scalars written to metrics.jsonl
NOISE_STREAM, RANK_STREAM, TRANSPOSE_STREAM = 1, 2, 3  # tags of a training step's random streams (see _seed)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """How a call to :meth:`Trainer.train` ended."""

    run_dir: Path
    step: int  # optimiser steps taken in total
    checkpoint: Path  # the newest checkpoint directory
    interrupted: str | None  # the signal that stopped it ("SIGINT", "SIGTERM"), None when it ran to the end
    first: dict[str, float] | None  # the first training line this call logged
    last: dict[str, float] | None  # the last training line this call logged
    validation: dict[str, float] | None  # the last validation pass, None when there was none
    seconds: float  # wall time of the call
    out_of_time: bool = False  # stopped at the deadline of ``minutes`` (validated and checkpointed; resumable)


def batch_indices(examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The training rows of batch ``step`` (0-based), ``(batch_size,)`` int64.

    The training set is read as an endless stream of seeded permutations, one per epoch, so the
    batch depends on (seed, step) only: a resumed run draws exactly the batches a straight one would.
    """
    positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    epochs = positions // examples
    rows = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        here = epochs == epoch
        rows[here] = _permutation(examples, seed, int(epoch))[positions[here] % examples]
    return rows


@functools.lru_cache(maxsize=4)
def _permutation(examples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.Generator(np.random.PCG64([seed, epoch])).permutation(examples)


def make_batch(windows: WindowSet, rows: np.ndarray, device: torch.device, converter: Converter | None = None,
               semitones: np.ndarray | None = None) -> Batch:
    """Rows of a split as a :class:`Batch` on ``device`` (controls None when the converter has none),
    each moved by its ``semitones`` (by ``converter``'s :meth:`~hvae.interfaces.Converter.transpose`) if given."""
    controls = windows.controls[rows]
    inputs, outputs = windows.inputs[rows], windows.outputs[rows]
    if semitones is not None:
        controls = converter.transpose_controls(controls, outputs, semitones)
        inputs, outputs = converter.transpose(inputs, outputs, semitones)
    move = lambda array: host_to_device(torch.from_numpy(array), device)
    return Batch(inputs=move(np.ascontiguousarray(inputs, dtype=np.float32)),
                 outputs=move(np.ascontiguousarray(outputs, dtype=np.float32)),
                 lengths=move(windows.lengths[rows].astype(np.int64)),
                 controls=move(controls) if controls.shape[-1] else None)


def transpositions(seed: int, step: int, batch_size: int, transpose_range: tuple[int, int]) -> np.ndarray:
    """The semitones each window of batch ``step`` is moved by, ``(batch_size,)``: a function of
    (seed, step) only, so a resumed run transposes as a straight one does."""
    low, high = transpose_range
    return np.random.Generator(np.random.PCG64(_seed(seed, step, TRANSPOSE_STREAM))).integers(
        low, high, size=batch_size, endpoint=True)


class Trainer:
    """One run in memory at its step: model, optimiser, schedule, data; :meth:`train` runs the loop.

    A :class:`hvae.session.Session` makes it (for a new run, or a resumed one through :meth:`restore`) and
    holds the run directory's lock while it trains. Under torchrun every process holds one, and ``world``
    says which process this is.
    """

    def __init__(self, run: RunDir, *, config: RunConfig, model: MusicVAE, converter: Converter, train_set: WindowSet,
                 validation_set: WindowSet, device: torch.device, world: World = World()):
        self.dir, self.run_dir = run, run.path  # its files and folders
        self.config, self.model, self.converter = config, model, converter
        self.run_id = uuid.uuid4().hex  # recorded in each checkpoint: pruning removes only this run's
        self.interval = _Interval()  # the training line being summed (saved in checkpoints: see _Interval)
        self.train_set, self.validation_set, self.device, self.step = train_set, validation_set, device, 0
        self.world = world
        self.parallel = world.wrap(model, device)  # what a training step calls: the model, or DDP around it
        self.optimizer = make_optimizer(model, model.config)
        self.schedule = make_lr_schedule(self.optimizer, model.config)
        amp_dtype = default_autocast_dtype(device) if config.train.amp else None
        self.scaler = grad_scaler(device, amp_dtype)  # loss scaling, enabled for float16 on CUDA only
        self.noise = torch.Generator(device)  # the latent noise of each step, reseeded with (seed, step)
        self.divergence = _Divergence(device)
        self.last_checkpoint: Path | None = None
        self.checkpointed_step = -1  # step of last_checkpoint
        self.board: Board | None = None  # the TensorBoard log while training with tensorboard on

    def restore(self, checkpoint: Checkpoint) -> list[str]:
        """Go on from ``checkpoint``, written by this run's architecture: its weights, step, optimiser
        moments and learning-rate schedule, loss scaler, random state, the training line being summed, and
        which run wrote it. Returns what the user should hear (weights with no optimiser state to continue)."""
        notes = []
        with rebuilding(checkpoint.path):
            self.model.load_state_dict(checkpoint.model)
            if checkpoint.optimizer is None:  # imported weights (hvae import): no optimiser state to continue
                self.schedule = make_lr_schedule(self.optimizer, self.model.config, start_step=checkpoint.step)
                notes.append(f"{checkpoint.path} holds no optimiser state (imported or shipped weights): "
                             f"training goes on with a fresh Adam, at the learning rate of step {checkpoint.step}.")
            else:
                self.optimizer.load_state_dict(checkpoint.optimizer)
                self.schedule.load_state_dict(checkpoint.meta["lr_schedule"])
            if checkpoint.meta.get("grad_scaler"):
                self.scaler.load_state_dict(checkpoint.meta["grad_scaler"])
            restore_rng(checkpoint.rng)
        self.interval.load(checkpoint.meta.get("interval"), self.device)
        self.step, self.run_id = checkpoint.step, checkpoint.meta.get("run_id") or self.run_id
        self.last_checkpoint, self.checkpointed_step = checkpoint.path, checkpoint.step
        return notes

    def train(self, progress: bool = True) -> TrainResult:
        """Train up to ``config.train.steps``; log, validate and checkpoint on the way and at the end.

        Raises :class:`TrainingError` when the loss is not finite (nothing of that step is applied
        or saved). With ``config.train.minutes``, returns at that deadline (counted from this call's
        start) after the step under way, a validation pass and a checkpoint, as at the last step.
        Returns early, after a checkpoint, on Ctrl-C or SIGTERM (to any of the processes:
        they agree after each step, and all stop after the same one).
        """
        cfg = self.config.train
        started = time.perf_counter()
        first = last = validation = None
        interval = self.interval
        interval.restart()
        self.model.train()
        metrics_file = self.dir.open_metrics() if self.world.main else contextlib.nullcontext()
        self.board = Board(self.dir.tensorboard, self.step) if cfg.tensorboard and self.world.main else None
        deadline = started + cfg.minutes * 60.0 if cfg.minutes is not None else math.inf
        out_of_time = False
        with _StopRequest() as stop, _cpu_threads(cfg.threads) as adapt_threads, metrics_file as log, \
                contextlib.closing(self.board) if self.board else contextlib.nullcontext(), \
                tqdm(total=cfg.steps, initial=self.step, unit="step", desc=self.config.name,
                     disable=not (progress and self.world.main), dynamic_ncols=True) as bar:
            stopping = self._stop_signal(stop)
            while self.step < cfg.steps and not stopping and not out_of_time:
                parts, lr = self._train_step()
                adapt_threads()
                stopping = self._stop_signal(stop)
                out_of_time = self._past(deadline)
                interval.add(parts, lr, examples=cfg.batch_size)
                bar.update(1)
                finished = self.step == cfg.steps or out_of_time
                logging = self.step == 1 or self.step % cfg.log_every == 0 or finished
                # (when stopping too: a resumed run does not validate the step it resumes at)
                validating = finished or (cfg.eval_every and self.step % cfg.eval_every == 0)
                saving = finished or self.step % cfg.checkpoint_every == 0 or stopping
                if logging or validating or saving:
                    self._check_finite()
                if logging:
                    last = self._record(log, interval.take(self.step))
                    first = first or last
                elif stopping:  # summarised, not logged: the interval goes on in the checkpoint, as if not stopped
                    last = interval.peek(self.step)
                    first = first or last
                    bar.set_postfix(loss=f"{last['loss']:.3g}", kl_bits=f"{last['kl_bits']:.3g}",
                                    beta=f"{last['beta']:.3g}", ex_s=f"{last['examples_per_s']:.0f}")
                if validating:
                    bar.set_description(f"{self.config.name} validating", refresh=True)
                    evaluated = self.world.from_main(self.evaluate() if self.world.main else None)
                    bar.set_description(self.config.name, refresh=False)
                    if evaluated is not None:
                        validation = self._record(log, evaluated)
                if saving:
                    self.save(metrics={"train": last, "validation": validation})
                interval.restart()
            if self.checkpointed_step != self.step:  # stopped before the first step
                self.save(metrics={"train": last, "validation": validation})
            # a signal that came while the last step validated or saved is still the run's to report
            stopping = stopping or self._stop_signal(stop)
        return TrainResult(self.run_dir, self.step, self.last_checkpoint, stopping, first, last, validation,
                           time.perf_counter() - started, out_of_time=out_of_time and self.step < cfg.steps)

    def _stop_signal(self, stop: "_StopRequest") -> str | None:
        """The signal that stops training, agreed by the ranks (one that received a signal stops them all)."""
        signum = self.world.largest(stop.signum)
        return signal.Signals(signum).name if signum else None

    def _past(self, deadline: float) -> bool:
        """Whether a rank's clock has passed ``deadline`` (the ranks agree: they stop after the same step)."""
        if deadline == math.inf:
            return False
        return bool(self.world.largest(int(time.perf_counter() >= deadline)))

    def _train_step(self) -> tuple["_Parts", float]:
        """One optimiser step, read nowhere on the host; returns the loss parts (means over the ranks, on the
        device) and the learning rate the update used. An update after a loss that is not finite is skipped."""
        cfg = self.config.train
        rows = batch_indices(len(self.train_set), cfg.batch_size, cfg.seed, self.step)
        semitones = None if cfg.transpose_range is None else \
            self.world.shard(transpositions(cfg.seed, self.step, cfg.batch_size, cfg.transpose_range))
        batch = make_batch(self.train_set, self.world.shard(rows), self.device, self.converter, semitones)
        noise = self.world.shard(self._latent_noise(cfg.batch_size))  # (B / N, Z)
        with _step_random(cfg.seed, self.step, self.world.rank, self.device), autocast(self.device, enabled=cfg.amp):
            out = self.parallel(batch, self.step, noise=noise)
        parts = _parts(out, self.world)
        skip = self.divergence.watch(parts, self.step + 1)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()  # under DDP: the gradients of the global batch mean on every rank
        self.scaler.unscale_(self.optimizer)
        clip_gradients(self.model, self.model.config)
        if self.scaler.is_enabled():  # float16: the scaler skips steps with non-finite gradients itself
            self.scaler.step(self.optimizer)
        else:
            _step_unless(self.optimizer, skip)
        self.scaler.update()
        self.schedule.step()
        self.step += 1
        return parts, lr

    def _check_finite(self) -> None:
        """Raise :class:`TrainingError` if a loss since the start was not finite (reads the device)."""
        bad = self.divergence.first_bad()
        if bad is None:
            return
        step, values = bad
        where = (f"the last good checkpoint, {self.last_checkpoint} (step {self.checkpointed_step}), is intact"
                 if self.last_checkpoint else "no checkpoint was written yet")
        raise TrainingError(
            f"Training stopped: the loss is {values['loss']} at step {step} (reconstruction "
            f"{values['r_loss']:.4g}, KL {values['kl']:.4g}); {where}. A learning rate "
            f"too high for the model is the usual cause: lower learning_rate.")

    def _latent_noise(self, examples: int) -> torch.Tensor:
        """``(examples, Z)`` standard normal draws for this step's global batch: the same on every rank."""
        self.noise.manual_seed(_seed(self.config.train.seed, self.step, NOISE_STREAM))
        return torch.randn((examples, self.model.config.z_size), generator=self.noise, device=self.device)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Loss parts and metrics on the validation split (``eval_examples`` of it), averaged per window.

        Runs on its own seeded random stream, so it neither depends on nor disturbs training's.
        None when the split has no windows. Calls no collective: ``train`` runs it on rank 0 alone.
        """
        cfg = self.config.train
        examples = len(self.validation_set)
        if examples == 0:
            return None
        rows = np.random.Generator(np.random.PCG64([cfg.seed, examples])).permutation(examples)
        rows = np.sort(rows[:cfg.eval_examples] if cfg.eval_examples else rows)
        sums: dict[str, float] = {}
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=_cuda_indices(self.device)):
                torch.manual_seed(cfg.seed)
                for start in range(0, len(rows), cfg.batch_size):
                    chunk = rows[start:start + cfg.batch_size]
                    with autocast(self.device, enabled=cfg.amp):
                        out = self.model(make_batch(self.validation_set, chunk, self.device), self.step)
                    for name, value in _parts(out).read().items():
                        sums[name] = sums.get(name, 0.0) + value * len(chunk)
        finally:
            self.model.train()
        return {"split": "validation", "step": self.step, "examples": len(rows),
                **{name: total / len(rows) for name, total in sums.items()}}

    def save(self, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write a checkpoint of the current step (see :mod:`hvae.checkpoint`).

        Under torchrun every rank calls it: rank 0 writes, the others wait for the checkpoint's path.
        """
        self.last_checkpoint = self.world.from_main(self._write_checkpoint(metrics) if self.world.main else None)
        self.checkpointed_step = self.step
        return self.last_checkpoint

    def _write_checkpoint(self, metrics: Mapping[str, Any] | None) -> Path:
        meta = checkpoint_meta(self.config, self.model, run_id=self.run_id, interval=self.interval.state(),
                               metrics_log={"bytes": self.dir.metrics_size()},
                               lr_schedule=self.schedule.state_dict(), grad_scaler=self.scaler.state_dict(),
                               metrics=dict(metrics or {}))
        checkpoint = Checkpoint(step=self.step, model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                                rng=capture_rng(), meta=meta)
        return write_checkpoint(self.run_dir, checkpoint, keep=self.config.train.keep_checkpoints)

    def _record(self, log: IO[bytes] | None, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` as a metrics.jsonl line (on rank 0, the only one holding the file), and in the
        TensorBoard log when there is one."""
        if log is not None:
            try:
                log.write((json.dumps(record) + "\n").encode())
                log.flush()
            except OSError as exc:  # a full disk, say: name the file
                raise OSError(exc.errno, exc.strerror, os.fspath(self.dir.metrics_file)) from None
        if self.board is not None:
            self.board.add(record)
        return record


def _seed(seed: int, step: int, stream: int, *more: int) -> int:
    """A 64-bit seed for one random stream of one training step (a NumPy SeedSequence of them all)."""
    return int(np.random.SeedSequence([seed, step, stream, *more]).generate_state(1, np.uint64)[0])


def _cuda_indices(device: torch.device) -> list[int]:
    """The CUDA devices whose generators a fork of the random state must save: ``device``'s, if any."""
    return [device.index or 0] if device.type == "cuda" else []


@contextlib.contextmanager
def _step_random(seed: int, step: int, rank: int, device: torch.device) -> Iterator[None]:
    """Torch's global generators seeded with (seed, step, rank) inside the block, restored after it.

    Dropout and scheduled sampling draw from them: a function of the step, so resuming repeats
    them exactly, and of the rank, so the processes of a run do not repeat each other's masks.
    """
    with torch.random.fork_rng(devices=_cuda_indices(device)):
        torch.manual_seed(_seed(seed, step, RANK_STREAM, rank))
        yield


@dataclasses.dataclass(frozen=True)
class _Parts:
    """The logged scalars of one forward pass (or their sum over steps), means over the ranks, kept
    on the device: ``values[i]`` is ``names[i]``, float64; beta, known on the host, stays there."""

    names: tuple[str, ...]  # LOGGED_PARTS, then the loss's metrics; "loss" first
    values: torch.Tensor  # (len(names),) float64 on the model's device
    beta: float

    def __add__(self, other: "_Parts") -> "_Parts":
        return _Parts(self.names, self.values + other.values, self.beta + other.beta)

    def read(self) -> dict[str, float]:
        """The values on the host (waits for the device), with beta after the loss parts."""
        values = dict(zip(self.names, self.values.tolist()))
        return {**{name: values.pop(name) for name in LOGGED_PARTS}, "beta": self.beta, **values}


def _step_unless(optimizer: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """``optimizer.step()`` unless ``skip`` (a float32 flag on the device) is 1. A fused optimizer skips
    on the device (the flag GradScaler hands it): weights, moments and step counts stay as they were,
    and the host does not wait. Any other reads the flag first."""
    if all(group.get("fused") for group in optimizer.param_groups):
        optimizer.found_inf = skip
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not bool(skip):
        optimizer.step()


def _parts(out: ModelOutput, world: World = World()) -> _Parts:
    """The logged scalars of one forward pass, means over the ranks: loss parts, beta and the loss's metrics."""
    scalars = {name: getattr(out, name) for name in LOGGED_PARTS}
    scalars.update(out.metrics)
    values = world.average(torch.stack([value.detach().double() for value in scalars.values()]))
    return _Parts(tuple(scalars), values, float(out.beta))


class _Divergence:
    """The first step whose loss was not finite, and its logged scalars, tracked on the device."""

    def __init__(self, device: torch.device) -> None:
        self.bad = torch.zeros((), dtype=torch.bool, device=device)  # a loss so far was not finite
        self.step = torch.zeros((), dtype=torch.int64, device=device)  # the first such step (1-based)
        self.parts: _Parts | None = None  # its scalars (or, while none was, some finite step's)

    def watch(self, parts: _Parts, step: int) -> torch.Tensor:
        """Note step ``step``'s scalars; the optimiser's skip flag: float32 1.0 from the first bad step on."""
        bad = ~torch.isfinite(parts.values[0])
        first = bad & ~self.bad
        self.step = torch.where(first, step, self.step)
        values = parts.values if self.parts is None else torch.where(first, parts.values, self.parts.values)
        self.parts = dataclasses.replace(parts, values=values)
        self.bad = self.bad | bad
        return self.bad.float()

    def first_bad(self) -> tuple[int, dict[str, float]] | None:
        """``(step, scalars)`` of the first step whose loss was not finite, or None (reads the device)."""
        if not bool(self.bad):
            return None
        return int(self.step), self.parts.read()


class _Interval:
    """Loss parts summed on the device over the steps since the last training line, and the time they took.

    A checkpoint saves the sums (:meth:`state`), so a run resumed from it logs its next line over the
    same steps, with the same figures, as a run never stopped.
    """

    def __init__(self) -> None:
        self.sums: _Parts | None = None
        self.steps = self.examples = 0
        self.seconds = self.lr = 0.0
        self.restart()

    def restart(self) -> None:
        """Start timing again (after validation or a checkpoint, which are not training time)."""
        self.clock = time.perf_counter()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.seconds += now - self.clock
        self.clock = now

    def add(self, parts: _Parts, lr: float, examples: int) -> None:
        self.lr = lr
        self.sums = parts if self.sums is None else self.sums + parts
        self.steps += 1
        self.examples += examples
        self._tick()

    def take(self, step: int) -> dict[str, Any]:
        """The training line for the steps so far: means over them, the learning rate of the last, and
        examples per second of training time (until the device finished them). Then a new interval starts."""
        record = self.peek(step)
        self.sums, self.steps, self.examples, self.seconds = None, 0, 0, 0.0
        return record

    def peek(self, step: int) -> dict[str, Any]:
        """The training line for the steps so far, without starting a new interval."""
        sums = self.sums.read()  # waits for the device: its work is training time
        self._tick()
        return {"split": "train", "step": step, **{k: v / self.steps for k, v in sums.items()},
                "lr": self.lr, "examples_per_s": self.examples / max(self.seconds, 1e-9)}

    def state(self) -> dict[str, Any]:
        """The sums so far as JSON (reads the device)."""
        sums = self.sums
        return {"names": list(sums.names) if sums else [], "values": sums.values.tolist() if sums else [],
                "beta": sums.beta if sums else 0.0, "steps": self.steps, "examples": self.examples,
                "seconds": self.seconds, "lr": self.lr}

    def load(self, state: Any, device: torch.device) -> None:
        """Go on from :meth:`state` (read back from a checkpoint; ignored unless of that shape)."""
        numbers = (int, float)
        if not isinstance(state, dict) or not isinstance(state.get("names"), list) or \
                not isinstance(state.get("values"), list) or len(state["names"]) != len(state["values"]) or \
                not all(isinstance(n, str) for n in state["names"]) or \
                not all(isinstance(v, numbers) for v in state["values"]) or \
                not all(is_count(state.get(k)) for k in ("steps", "examples")) or \
                not all(isinstance(state.get(k), numbers) for k in ("beta", "seconds", "lr")):
            return
        self.sums = _Parts(tuple(state["names"]), torch.tensor(state["values"], dtype=torch.float64, device=device),
                           float(state["beta"])) if state["steps"] and state["names"] else None
        self.steps, self.examples = state["steps"], state["examples"]
        self.seconds, self.lr = float(state["seconds"]), float(state["lr"])


class _StopRequest:
    """Turns Ctrl-C and SIGTERM into a request the loop honours after the step under way.

    A second signal raises :class:`KeyboardInterrupt` at once. Only the main thread can hold
    signal handlers; elsewhere signals keep their usual effect.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "_StopRequest":
        self.signum = 0  # the signal received, 0 for none
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc_info: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


ADAPT_THREADS_S = 5.0  # seconds between looks at how busy other processes keep the CPU (threads=None)


@contextlib.contextmanager
def _cpu_threads(threads: int | None) -> Iterator[Callable[[], None]]:
    """Let torch use ``threads`` CPU threads inside the block. None: the cores other processes leave
    free (:mod:`hvae.cpushare`), looked at again every ``ADAPT_THREADS_S`` seconds by the function the
    block gets (called once a step), where products give the same result on any number of threads
    (:func:`hvae.device.products_independent_of_threads`); elsewhere all the cores, throughout, so
    that the machine's load cannot change the model. ``OMP_NUM_THREADS`` set by the user stands."""
    previous = torch.get_num_threads()
    share = None
    if threads is None and not cpushare.threads_set_by_user():
        share = cpushare.CpuShare()
        if not products_independent_of_threads(share.cores):
            share, threads = None, share.cores
    looked = time.monotonic()

    def adapt() -> None:
        nonlocal looked
        if share is not None and time.monotonic() - looked >= ADAPT_THREADS_S:
            looked = time.monotonic()
            chosen = share.threads()
            if chosen != torch.get_num_threads():
                torch.set_num_threads(chosen)

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield adapt
    finally:
        torch.set_num_threads(previous)
