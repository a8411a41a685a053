"""Training a MusicVAE: the loop, its metrics log, checkpoints, resuming, and stopping cleanly.

The trainer writes a run directory (its layout and files: :mod:`hvae.run`): config.json first, then a
line of metrics.jsonl every ``log_every`` steps and a checkpoint every ``checkpoint_every``.

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
from typing import IO, Any, Iterator, Mapping

import numpy as np
import torch
from tqdm import tqdm

from hvae import distributed
from hvae.board import Board
from hvae.checkpoint import REBUILD_ERRORS, Checkpoint, capture_rng, list_checkpoints, no_checkpoint_error, \
    read_checkpoint, restore_rng, unrecognised_checkpoints, write_checkpoint
from hvae.data import PrepareReport, WindowSet, load_split, prepare_dataset
from hvae.device import autocast, default_autocast_dtype, grad_scaler, host_to_device
from hvae.distributed import World
from hvae.errors import CheckpointError, HvaeError, TrainingError
from hvae.interfaces import Converter
from hvae.manifest import is_count
from hvae.model import Batch, ModelOutput, MusicVAE, build_model, clip_gradients, make_lr_schedule, make_optimizer, \
    model_from_dict
from hvae.plausible import density_range
from hvae.plugins import make_converter
from hvae.run import RunConfig, RunDir, checkpoint_meta, resume_config
from hvae.runlock import RunLock

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


def prepare_data(config: RunConfig, converter: Converter, progress: bool = True) -> PrepareReport:
    """Convert the run's MIDI folder into its cache, or find it already there."""
    if not config.data_dir:
        raise HvaeError(f"Run {config.name!r} has no MIDI folder to train on (imported without --data): import "
                        f"it again with 'hvae import ... --data DIR'.")
    report = prepare_dataset(converter, config.data_dir, config.cache_dir, workers=config.train.workers,
                             progress=progress)
    if report.splits["train"].windows == 0:
        raise HvaeError(f"No training windows: none of the {len(report.files)} MIDI files under {config.data_dir} "
                        f"in the train split gave a window with converter {config.converter!r}. "
                        f"Run 'hvae data prepare' to see why each file was skipped.")
    return report


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
    """One run in memory: model, optimiser, schedule, data and the step reached.

    Build it with :meth:`start` (a new run directory) or :meth:`resume` (the newest checkpoint of
    an existing one), then call :meth:`train`. Under torchrun every process does the same, and
    ``world`` says which process this is.

    From :meth:`start` or :meth:`resume` until :meth:`train` returns, the process (rank 0) holds
    the run directory's lock (:mod:`hvae.runlock`): a second run on the directory is refused.
    ``notes`` holds what the user should hear about the data and checkpoints (a cache rebuilt, a
    corrupt checkpoint passed over).
    """

    def __init__(self, run_dir: Path, config: RunConfig, model: MusicVAE, converter: Converter,
                 train_set: WindowSet, validation_set: WindowSet, device: torch.device, step: int = 0,
                 world: World = World(), lock: RunLock | None = None, notes: list[str] | None = None,
                 run_id: str | None = None):
        self.run_dir, self.config, self.model, self.converter = run_dir, config, model, converter
        self.dir = RunDir(run_dir)  # its files and folders
        self.run_id = run_id or uuid.uuid4().hex  # recorded in each checkpoint: pruning removes only this run's
        self.interval = _Interval()  # the training line being summed (saved in checkpoints: see _Interval)
        self.train_set, self.validation_set, self.device, self.step = train_set, validation_set, device, step
        self.world, self.lock, self.notes = world, lock, list(notes or [])
        world.share(config.train.batch_size)
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

    @classmethod
    def start(cls, run_dir: str | os.PathLike, config: RunConfig, progress: bool = True) -> "Trainer":
        """A new run in ``run_dir`` (created; it must not hold a run already). Seeds everything first.

        Under torchrun every process calls it: all take rank 0's ``run_dir``, and rank 0 prepares
        the data while the others wait, then every rank loads it.
        """
        world, device = distributed.join(config.train.device)
        world.share(config.train.batch_size)
        autocast(device, enabled=config.train.amp)  # a precision this device cannot run: refused before any work
        check_memory(config, _checked_converter(config))
        run = RunDir(world.from_main(os.fspath(run_dir)))
        lock = run.lock() if world.main else None
        fresh = not run.path.exists()
        world.on_main(lambda: _claim_new(run, lock))
        try:
            return cls._begin(run.path, config, world, device, lock, progress)
        except BaseException:
            if lock is not None:
                lock.release()
                if fresh:
                    run.forget_start()
            raise

    @classmethod
    def _begin(cls, run_dir: Path, config: RunConfig, world: World, device: torch.device, lock: RunLock | None,
               progress: bool, notes: list[str] | None = None) -> "Trainer":
        """Step 0 of a run: the seeded model, the data, config.json written."""
        converter = _checked_converter(config)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, converter, force=config.force).to(device)
        reports: list[PrepareReport] = []
        world.on_main(lambda: reports.append(prepare_data(config, converter, progress)))
        config = dataclasses.replace(config, model=model.config,
                                     converter_options=dataclasses.asdict(converter.options))
        train_set = load_split(config.cache_dir, "train")
        if world.main:
            RunDir(run_dir).write_config(config)
            _keep_density_range(RunDir(run_dir), converter, train_set)
        return cls(run_dir, config, model, converter, train_set,
                   load_split(config.cache_dir, "validation"), device, world=world, lock=lock,
                   notes=(notes or []) + _data_notes(reports))

    @classmethod
    def resume(cls, run_dir: str | os.PathLike, steps: int | None = None, device: str | None = None,
               amp: bool | None = None, threads: int | None = None, progress: bool = True,
               minutes: float | None = None) -> "Trainer":
        """Continue the run in ``run_dir`` from its newest checkpoint, optionally to a new total of
        ``steps``, within a new time budget of ``minutes``, on another ``device``, with mixed precision
        switched (``amp``) or other ``threads``.

        Lines logged after that checkpoint are dropped from metrics.jsonl: those steps run again.
        A run stopped before its first checkpoint begins again from step 0 (its config.json and
        seed give the same start). A checkpoint that fails its checks is reported (``notes``),
        moved to ``<run>/corrupt/``, and the one before it is used. Under torchrun every process reads the same checkpoint; it may have been written by a run
        with another number of processes.
        """
        run_dir = Path(run_dir)
        config, notes = resume_config(run_dir)
        overrides = {k: v for k, v in (("steps", steps), ("minutes", minutes), ("device", device), ("amp", amp),
                                       ("threads", threads)) if v is not None}
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, **overrides))
        world, target = distributed.join(config.train.device)
        world.share(config.train.batch_size)
        autocast(target, enabled=config.train.amp)
        lock = RunDir(run_dir).lock() if world.main else None
        world.on_main(lambda: (lock.acquire(), RunDir(run_dir).check_layout()))
        try:
            return cls._resume(run_dir, config, world, target, lock, progress, notes)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def _resume(cls, run_dir: Path, config: RunConfig, world: World, target: torch.device, lock: RunLock | None,
                progress: bool, notes: list[str]) -> "Trainer":
        chosen: list[tuple[Checkpoint | None, list[str]]] = []
        world.on_main(lambda: chosen.append(_readable_checkpoint(run_dir)))
        found = world.from_main(os.fspath(chosen[0][0].path) if chosen and chosen[0][0] else None)
        if found is None:  # stopped before its first checkpoint
            if world.main:
                RunDir(run_dir).truncate_metrics(0, 0)
            return cls._begin(run_dir, config, world, target, lock, progress,
                              notes=notes + (chosen[0][1] if chosen else []))
        checkpoint, passed_over = chosen[0] if chosen else (read_checkpoint(found), [])
        notes = notes + passed_over
        converter = _checked_converter(config)
        try:
            model = model_from_dict(checkpoint.meta["model"])
            model.load_state_dict(checkpoint.model)
        except REBUILD_ERRORS as exc:
            raise CheckpointError(f"Checkpoint {checkpoint.path} does not fit this hvae and its plugins: "
                                  f"{type(exc).__name__}: {exc}") from None
        model.to(target)
        reports: list[PrepareReport] = []
        world.on_main(lambda: reports.append(prepare_data(config, converter, progress)))
        trainer = cls(run_dir, config, model, converter, load_split(config.cache_dir, "train"),
                      load_split(config.cache_dir, "validation"), target, step=checkpoint.step, world=world,
                      lock=lock, notes=notes + _data_notes(reports), run_id=checkpoint.meta.get("run_id"))
        try:
            if checkpoint.optimizer is None:  # imported weights (hvae import): no optimiser state to continue
                trainer.schedule = make_lr_schedule(trainer.optimizer, model.config, start_step=checkpoint.step)
                trainer.notes.append(f"{checkpoint.path} holds no optimiser state (imported or shipped weights): "
                                     f"training goes on with a fresh Adam, at the learning rate of step "
                                     f"{checkpoint.step}.")
            else:
                trainer.optimizer.load_state_dict(checkpoint.optimizer)
                trainer.schedule.load_state_dict(checkpoint.meta["lr_schedule"])
            if checkpoint.meta.get("grad_scaler"):
                trainer.scaler.load_state_dict(checkpoint.meta["grad_scaler"])
            restore_rng(checkpoint.rng)
        except REBUILD_ERRORS as exc:
            raise CheckpointError(f"Checkpoint {checkpoint.path} does not fit this hvae and its plugins: "
                                  f"{type(exc).__name__}: {exc}") from None
        trainer.interval.load(checkpoint.meta.get("interval"), target)
        trainer.last_checkpoint, trainer.checkpointed_step = checkpoint.path, checkpoint.step
        if world.main:
            trainer.dir.truncate_metrics(checkpoint.step, checkpoint.meta.get("metrics_log", {}).get("bytes"))
            trainer.dir.write_config(config)
            if trainer.dir.read_plausible() is None:
                _keep_density_range(trainer.dir, converter, trainer.train_set)
        return trainer

    def train(self, progress: bool = True) -> TrainResult:
        """Train up to ``config.train.steps``; log, validate and checkpoint on the way and at the end.

        Raises :class:`TrainingError` when the loss is not finite (nothing of that step is applied
        or saved). With ``config.train.minutes``, returns at that deadline (counted from this call's
        start) after the step under way, a validation pass and a checkpoint, as at the last step.
        Returns early, after a checkpoint, on Ctrl-C or SIGTERM (to any of the processes:
        they agree after each step, and all stop after the same one). Gives up the run directory's
        lock when it returns.
        """
        # (held since start or resume, unless trained before; every rank takes part in on_main)
        self.world.on_main(lambda: self.lock.acquire() if self.lock is not None else None)
        try:
            return self._train(progress)
        finally:
            if self.lock is not None:
                self.lock.release()

    def _train(self, progress: bool) -> TrainResult:
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
        with _StopRequest() as stop, _cpu_threads(cfg.threads), metrics_file as log, \
                contextlib.closing(self.board) if self.board else contextlib.nullcontext(), \
                tqdm(total=cfg.steps, initial=self.step, unit="step", desc=self.config.name,
                     disable=not (progress and self.world.main), dynamic_ncols=True) as bar:
            stopping = self._stop_signal(stop)
            while self.step < cfg.steps and not stopping and not out_of_time:
                parts, lr = self._train_step()
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


def _checked_converter(config: RunConfig) -> Converter:
    """The run's converter, refused if the run transposes and the converter cannot."""
    converter = make_converter(config.converter, config.converter_options)
    if config.train.transpose_range is not None and not converter.transposable:
        raise HvaeError(f"Converter {config.converter!r} cannot transpose its windows, so it cannot train with "
                        f"transpose_range {tuple(config.train.transpose_range)}: give --transpose 0.")
    return converter


def check_memory(config: RunConfig, converter: Converter) -> None:
    """Refuse, before any folder is made or anything allocated, a run whose model (weights, gradients
    and Adam's two moments) and batches (inputs and outputs) alone would not fit in this machine's
    memory. The model is built on PyTorch's meta device, which allocates nothing, to count its weights."""
    with torch.device("meta"):
        model = build_model(config.model, converter, force=config.force)
    weights = sum(p.numel() for p in model.parameters()) * 4 * 4
    batches = config.train.batch_size * converter.steps * \
        (converter.input_depth + converter.output_depth + converter.control_depth) * 4 * 2
    total = _physical_memory()
    if total and weights + batches > total:
        raise HvaeError(f"This run needs at least {(weights + batches) / 2**30:,.1f} GiB (the model "
                        f"{weights / 2**30:,.1f} GiB with its gradients and optimiser state, a batch of "
                        f"{config.train.batch_size:,} {batches / 2**30:,.1f} GiB), more than this machine's "
                        f"{total / 2**30:,.1f} GiB: lower the batch size or the model's sizes.")


def _physical_memory() -> int | None:
    """Bytes of memory this machine has (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _claim_new(run: RunDir, lock: RunLock) -> None:
    """Lock the run directory (creating it), then make sure it holds no run yet."""
    lock.acquire()
    try:
        run.check_layout()
        run.check_new()
    except HvaeError:
        lock.release()
        raise


def _readable_checkpoint(run_dir: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint of ``run_dir`` that passes its checks, and a note for each newer one
    that did not (each moved to ``<run>/corrupt/``, where nothing reads or prunes it). None (and a
    note) when the run has no checkpoint yet."""
    found = list_checkpoints(run_dir)
    if not found and unrecognised_checkpoints(run_dir):
        raise no_checkpoint_error(run_dir)  # weights it cannot name are not replaced by fresh ones
    if not found:
        return None, [f"{run_dir} stopped before its first checkpoint: beginning again from step 0."]
    notes = []
    for directory in reversed(found):
        try:
            return read_checkpoint(directory), notes
        except CheckpointError as exc:
            notes.append(f"{exc} Moved it to {RunDir(run_dir).set_aside(directory)}.")
    raise CheckpointError(f"No readable checkpoint in {run_dir}: {' '.join(notes)}")


def _keep_density_range(run: RunDir, converter: Converter, train_set: WindowSet) -> None:
    """Write the training windows' density range into the run directory (drum models), where sampling reads
    it: a run keeps it when moved, shipped or its data cache is gone."""
    found = density_range(converter, train_set.outputs) if len(train_set) else None
    if found is not None:
        run.write_plausible(found.low, found.high)


def _data_notes(reports: list[PrepareReport]) -> list[str]:
    """What to tell the user about the data a run was given (rank 0 holds the report)."""
    if not reports:
        return []
    report, notes = reports[0], []
    if report.rebuild_reason and report.rebuild_reason != "no cache yet":
        notes.append(f"Data cache {report.cache_dir} rebuilt: {report.rebuild_reason}.")
    skipped = [f for f in report.files if f.status != "converted"]
    if skipped:
        notes.append(f"{len(skipped)} of {len(report.files)} MIDI files gave no window; "
                     f"'hvae data info {report.cache_dir} -v' lists each with its reason.")
    return notes


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


@contextlib.contextmanager
def _cpu_threads(threads: int | None) -> Iterator[None]:
    """Let torch use ``threads`` CPU threads inside the block (None: leave its setting alone)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
