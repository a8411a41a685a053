"""A run directory: what the run in it is made of (:class:`RunConfig`), its files (:class:`RunDir`), and
loading a trained run back from it (:func:`open_run`).

A run directory holds::

    config.json     the resolved RunConfig: converter and options, model, training, data (written first)
    metrics.jsonl   one JSON object per logged step: {"split": "train" | "validation", "step": ..., ...}
    checkpoints/    step-NNNNNNNN/ directories (see :mod:`hvae.checkpoint`), the newest few kept
    samples/        MIDI files written by ``hvae run`` and ``hvae sample``
    reconstructions/, interpolations/, humanized/, similar/, drumified/
                    what ``hvae reconstruct``, ``interpolate`` (and ``mean``), ``humanize``, ``similar`` and
                    ``drumify`` write by default
    report/         the run's page, written by ``hvae report`` (see :mod:`hvae.report.run`)
    tensorboard/    the TensorBoard log of a run trained with ``--tensorboard``
    imported.json   where the weights of a run made by ``hvae import`` came from
    plausible.json  the 5th and 95th percentile of the training windows' drum hits per bar (drum models), which
                    ``hvae sample`` holds its draws to (written when training starts)
    .lock           held by the process training in it (:mod:`hvae.runlock`)
    corrupt/        checkpoints that failed their checks when resuming, moved aside

:class:`RunDir` names each of them, reads and writes the run's files (the configuration, the metrics log,
the density range), holds its lock and sets a corrupt checkpoint aside. :func:`plan_model` makes a model's
configuration from components and ``key=value`` options. :func:`open_run` rebuilds a trained run (model,
converter, configuration, step) from a checkpoint, and gives its data split's windows; :func:`fork_run` makes
a new run directory that goes on from another's checkpoint. Starting and resuming a run's training is
:mod:`hvae.session`'s business.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import torch

from hvae import __version__
from hvae.checkpoint import CHECKPOINTS, JSON_LIMIT, MAX_STEP, read_checkpoint, rebuilding, write_checkpoint
from hvae.data import DEMO_DIR, WindowSet, default_cache_dir, load_split, prepare_dataset
from hvae.errors import CheckpointError, HvaeError, OutputExistsError, UnsafePathError
from hvae.interfaces import Converter
from hvae.manifest import is_count
from hvae.model import ModelConfig, MusicVAE, model_from_dict
from hvae.options import field_names, from_jsonable, parse_overrides
from hvae.plugins import make_converter, registry
from hvae.pretrained import is_shipped, shipped_model
from hvae.runlock import RunLock
from hvae.safefiles import NAME_LIMIT, ensure_dir, foreign_entries, is_plain_name, open_regular, read_plain_file, \
    refuse_links, write_atomic

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
RECONSTRUCTIONS_DIR, INTERPOLATIONS_DIR, HUMANIZED_DIR = "reconstructions", "interpolations", "humanized"
SIMILAR_DIR, DRUMIFIED_DIR = "similar", "drumified"
REPORT_DIR = "report"
BOARD_DIR = "tensorboard"
IMPORT_NOTE = "imported.json"
LOCK_FILE = ".lock"
REPORT_LOCK_FILE = ".report-lock"  # one report at a time; a training does not hold it
PLAUSIBLE_FILE = "plausible.json"
ATTRIBUTES_FILE, TRANSFORMED_DIR = "attributes.json", "transformed"  # hvae attributes / hvae transform
CORRUPT_DIR = "corrupt"  # where resuming moves checkpoints that fail their checks
RUNS_DIR = Path("runs")  # where run directories go when --out is not given (relative to the working directory)
METRICS_LIMIT = 1 << 30  # bytes of metrics.jsonl read back at most (a million steps logged is ~300 MB)
MAX_THREADS = 256  # torch's thread pools crash (SIGSEGV) when asked for tens of thousands
MAX_BATCH_SIZE = 1 << 20  # examples per step; more is a typing mistake (the reference trains with 512)
MAX_MINUTES = 525_600  # a training call's time budget, at most a year
COMPONENT_KINDS = {"encoder": "encoders", "decoder": "decoders", "loss": "losses"}
RUN_ENTRIES = frozenset((CONFIG_FILE, METRICS_FILE, CHECKPOINTS, SAMPLES_DIR, RECONSTRUCTIONS_DIR, INTERPOLATIONS_DIR,
                         HUMANIZED_DIR, SIMILAR_DIR, DRUMIFIED_DIR, REPORT_DIR, BOARD_DIR, IMPORT_NOTE, LOCK_FILE,
                         REPORT_LOCK_FILE, PLAUSIBLE_FILE, CORRUPT_DIR, ATTRIBUTES_FILE, TRANSFORMED_DIR))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: batches, length, logging, validation, checkpoints, seed and device."""

    batch_size: int = 512  # examples per optimiser step (the reference's); split evenly over the processes
    steps: int = 50_000  # total optimiser steps; a resumed run continues up to this
    log_every: int = 10  # steps between training lines in metrics.jsonl (and the first step)
    eval_every: int = 500  # steps between validation passes; there is always one at the end; 0: only then
    eval_examples: int | None = 2048  # validation windows per pass (a fixed seeded subset); None: all
    checkpoint_every: int = 500  # steps between checkpoints; there is always one at the end
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    seed: int = 0  # seeds initialisation, batch order, the latent noise and dropout
    device: str = "auto"  # "cpu", "cuda", "cuda:N" or "auto" (CUDA when there is one)
    amp: bool = False  # mixed precision (autocast) where the device supports it
    threads: int | None = None  # CPU threads torch may use while training; None: the cores others leave free (hvae.cpushare)
    workers: int | None = None  # processes converting MIDI when the data is not cached; None: one per CPU
    # Augmentation: each training window moved by a random whole number of semitones in [low, high]
    # (the reference's transpose_range); None: as they are. Needs a converter that can transpose.
    transpose_range: tuple[int, int] | None = None
    tensorboard: bool = False  # also log metrics.jsonl's scalars for TensorBoard, in RUN/tensorboard/
    # Wall-clock budget of each training call, in minutes (None: none): at the deadline the run stops after
    # the step under way, validates and writes a checkpoint, and a resume goes on from there.
    minutes: float | None = None

    def __post_init__(self) -> None:
        for field in ("batch_size", "steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                      "seed", "eval_examples", "threads", "workers"):
            value = getattr(self, field)
            if not (value is None and field in ("eval_examples", "threads", "workers")) and \
                    (not isinstance(value, int) or isinstance(value, bool)):
                raise HvaeError(f"Training option {field} must be a whole number, got {value!r}.")
        for field in ("batch_size", "steps", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, field) < 1:
                raise HvaeError(f"Training option {field} must be at least 1, got {getattr(self, field)}.")
        if self.steps > MAX_STEP:
            raise HvaeError(f"Training option steps must be at most {MAX_STEP:,}, got {self.steps:,}.")
        if self.batch_size > MAX_BATCH_SIZE:
            raise HvaeError(f"Training option batch_size must be at most {MAX_BATCH_SIZE:,}, got {self.batch_size:,}.")
        if not 0 <= self.seed < 2 ** 64:
            raise HvaeError(f"Training option seed must be from 0 to 2**64 - 1, got {self.seed}.")
        if not isinstance(self.device, str) or not isinstance(self.amp, bool):
            raise HvaeError(f"Training options device and amp must be a name and true/false, got "
                            f"{self.device!r} and {self.amp!r}.")
        if self.eval_every < 0:
            raise HvaeError(f"Training option eval_every must be 0 or more, got {self.eval_every}.")
        if self.minutes is not None and (isinstance(self.minutes, bool) or not isinstance(self.minutes, (int, float))
                                         or not 0 < self.minutes <= MAX_MINUTES):
            raise HvaeError(f"Training option minutes must be more than 0 and at most {MAX_MINUTES:,} (a "
                            f"year), or None, got {self.minutes!r}.")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise HvaeError(f"Training option threads must be from 1 to {MAX_THREADS} or None, got {self.threads}.")
        if self.eval_examples is not None and self.eval_examples < 1:
            raise HvaeError(f"Training option eval_examples must be at least 1 or None, got {self.eval_examples}.")
        if self.transpose_range is not None and (len(self.transpose_range) != 2 or
                                                 self.transpose_range[0] > self.transpose_range[1]):
            raise HvaeError(f"Training option transpose_range must be (low, high) with low <= high, "
                            f"got {self.transpose_range}.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run is made of; saved as ``config.json`` and in every checkpoint."""

    name: str  # the run's name: the preset's, or converter-decoder-loss; it prefixes sample files
    converter: str  # registered converter name
    converter_options: Mapping[str, Any]  # the converter's options (every field)
    model: ModelConfig  # resolved by build_model once built: loss and component options filled in
    train: TrainConfig
    data_dir: str  # folder of MIDI files the windows come from
    cache_dir: str  # where the prepared windows are cached
    preset: str | None = None  # the preset it started from, if any
    force: bool = False  # the converter and loss were declared incompatible and trained anyway

    def __post_init__(self) -> None:
        if not is_plain_name(self.name):
            raise HvaeError(f"A run's name must be a plain file name (at most {NAME_LIMIT} characters, no / or "
                            f"control characters), got {str(self.name)[:40]!r}.")
        for field, kind in (("converter", str), ("converter_options", Mapping), ("model", ModelConfig),
                            ("train", TrainConfig), ("data_dir", str), ("cache_dir", str), ("force", bool)):
            if not isinstance(getattr(self, field), kind):
                raise HvaeError(f"Run option {field} must be a {kind.__name__}, got {getattr(self, field)!r}.")
        if self.preset is not None and not isinstance(self.preset, str):
            raise HvaeError(f"Run option preset must be a name, got {self.preset!r}.")

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunConfig":
        try:
            fields = dict(data)
            fields["model"] = ModelConfig(**fields["model"])
            fields["train"] = from_jsonable(TrainConfig, fields["train"])
            return cls(**fields)
        except (KeyError, TypeError, ValueError, AttributeError, HvaeError) as exc:
            raise CheckpointError(f"Not an hvae run configuration: {type(exc).__name__}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run directory: every path in it, and the run's own files (see the module's docstring)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES_DIR

    @property
    def reconstructions(self) -> Path:
        return self.path / RECONSTRUCTIONS_DIR

    @property
    def interpolations(self) -> Path:
        return self.path / INTERPOLATIONS_DIR

    @property
    def humanized(self) -> Path:
        return self.path / HUMANIZED_DIR

    @property
    def similar(self) -> Path:
        return self.path / SIMILAR_DIR

    @property
    def drumified(self) -> Path:
        return self.path / DRUMIFIED_DIR

    @property
    def transformed(self) -> Path:
        return self.path / TRANSFORMED_DIR

    @property
    def attributes_file(self) -> Path:
        return self.path / ATTRIBUTES_FILE

    @property
    def report(self) -> Path:
        return self.path / REPORT_DIR

    @property
    def tensorboard(self) -> Path:
        return self.path / BOARD_DIR

    @property
    def import_note(self) -> Path:
        return self.path / IMPORT_NOTE

    @property
    def corrupt(self) -> Path:
        return self.path / CORRUPT_DIR

    @property
    def plausible_file(self) -> Path:
        return self.path / PLAUSIBLE_FILE

    def read_plausible(self) -> tuple[float, float] | None:
        """The training windows' 5th and 95th percentile of drum hits per bar, None when the run has none
        (not a drum model, or trained before hvae wrote them)."""
        try:
            data = json.loads(read_plain_file(self.plausible_file, JSON_LIMIT).decode("utf-8"))
            low, high = float(data["low"]), float(data["high"])
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, RecursionError):
            return None
        return (low, high) if 0 <= low <= high < float("inf") else None

    def write_plausible(self, low: float, high: float) -> None:
        write_atomic(self.plausible_file, (json.dumps({"low": low, "high": high, "unit": "drum hits per bar",
                                                       "percentiles": [5, 95]}) + "\n").encode())

    def unlike_run(self) -> str | None:
        """None for a folder that holds a run and only what hvae writes into one; else what it holds instead
        (so that replacing a run never takes someone else's files with it)."""
        if not self.config_file.is_file():
            return f"it has no {CONFIG_FILE}"
        return foreign_entries(self.path, RUN_ENTRIES.__contains__)

    def lock(self) -> RunLock:
        """The run's lock (not yet acquired): one training process at a time (see :mod:`hvae.runlock`)."""
        return RunLock(self.path / LOCK_FILE)

    def report_lock(self) -> RunLock:
        """The lock of the run's report/ (not yet acquired): one report at a time, while a training may go on."""
        return RunLock(self.path / REPORT_LOCK_FILE)

    def read_config(self) -> RunConfig:
        """``config.json``, checked (see :meth:`RunConfig.from_json`)."""
        path = self.config_file
        try:
            data = json.loads(read_plain_file(path, JSON_LIMIT).decode("utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{self.path} is not an hvae run directory (no {CONFIG_FILE}).") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise CheckpointError(f"{path} is unreadable ({type(exc).__name__}).") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} is not an hvae run configuration (not a JSON object).")
        try:
            return RunConfig.from_json(data)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None

    def write_config(self, config: RunConfig) -> None:
        write_atomic(self.config_file, (json.dumps(config.to_json(), indent=2) + "\n").encode())

    def metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (empty when there is none; lines that are not records skipped)."""
        return read_metrics_file(self.metrics_file)

    def open_metrics(self) -> IO[bytes]:
        """``metrics.jsonl`` opened to append to (created if need be; never through a link)."""
        return os.fdopen(open_regular(self.metrics_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab")

    def metrics_size(self) -> int:
        """Bytes in ``metrics.jsonl``, 0 when there is none."""
        try:
            return os.lstat(self.metrics_file).st_size
        except FileNotFoundError:
            return 0

    def truncate_metrics(self, step: int, size: int | None) -> None:
        """Drop what metrics.jsonl gained after the checkpoint of ``step``, which recorded the file's ``size``:
        those steps run again and log the same lines. The lines before stay byte for byte. When the file is
        shorter than that (replaced by hand) or the checkpoint did not record it, lines past ``step`` (and
        a torn last line) are dropped instead."""
        path = self.metrics_file
        if not os.path.lexists(path):
            return
        fd = open_regular(path, os.O_RDWR)
        with os.fdopen(fd, "r+b") as f:
            if size is not None and is_count(size) and os.fstat(fd).st_size >= size:
                f.truncate(size)
                return
            data = f.read()
        lines = data.split(b"\n")
        kept = [line for line in lines[:-1] if _line_step(line, default=0) <= step]
        if lines[-1] and _line_step(lines[-1], default=step + 1) <= step:  # a last line without its newline
            kept.append(lines[-1])
        write_atomic(path, b"".join(line + b"\n" for line in kept))

    def check_layout(self) -> None:
        """Refuse a run directory whose folders or files hvae writes are links (before any work)."""
        refuse_links(self.checkpoints, self.metrics_file, self.corrupt)
        for folder in (self.checkpoints, self.corrupt):
            if os.path.lexists(folder) and not folder.is_dir():
                raise UnsafePathError(f"{folder} is in the way: hvae needs a folder there, and will not "
                                      f"replace the file.")

    def check_new(self) -> None:
        """Refuse a directory that holds a run already, or files a new run would write over."""
        if self.config_file.exists():
            raise HvaeError(f"{self.path} already holds a run: continue it with --resume {self.path}, "
                            f"or choose another --out.")
        theirs = [name for name in (METRICS_FILE, CHECKPOINTS, CORRUPT_DIR) if os.path.lexists(self.path / name)]
        if theirs:  # a new run creates these after config.json: they are someone else's
            raise HvaeError(f"{self.path} holds {', '.join(theirs)} but no {CONFIG_FILE}: not an hvae run, and a new "
                            f"run would write over {'them' if len(theirs) > 1 else 'it'}. Choose another --out.")

    def forget_start(self) -> None:
        """Remove what a failed start left of a directory it created, if it wrote no configuration yet."""
        if not self.config_file.exists():
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            try:
                self.path.rmdir()  # only if empty
            except OSError:
                pass

    def set_aside(self, checkpoint: Path) -> Path:
        """Move a checkpoint that failed its checks to ``corrupt/`` (under a new name), where nothing reads
        or prunes it; returns where it went."""
        aside = self.corrupt / checkpoint.name
        for suffix in range(1, 1000):
            if not aside.exists():
                break
            aside = self.corrupt / f"{checkpoint.name}.{suffix}"
        ensure_dir(aside.parent)
        os.rename(checkpoint, aside)
        return aside


def unique_path(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... : the first that does not exist."""
    candidate, count = base, 1
    while candidate.exists():
        count += 1
        candidate = base.with_name(f"{base.name}-{count}")
    return candidate


def metrics_record(line: bytes | str) -> dict[str, Any] | None:
    """One metrics.jsonl line as a record, or None when it is not one: a JSON object with ``split``
    ("train" or "validation"), a ``step`` (a count) and numbers (or null) for the rest."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # json's errors, and undecodable bytes
        return None
    if not isinstance(record, dict) or record.get("split") not in ("train", "validation") or \
            not is_count(record.get("step")):
        return None
    if not all(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
               for key, value in record.items() if key != "split"):
        return None
    return record


def read_metrics_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (see :func:`metrics_record`; other lines are skipped)."""
    try:
        data = read_plain_file(path, METRICS_LIMIT)
    except FileNotFoundError:
        return []
    return [record for record in map(metrics_record, data.splitlines()) if record is not None]


def _line_step(line: bytes, default: int) -> int:
    """The step of one metrics.jsonl line; ``default`` for a line that is not one (kept when before the
    checkpoint's step: nothing of the user's is dropped but what the resumed run writes again)."""
    record = metrics_record(line)
    return default if record is None else record["step"]


def checkpoint_meta(config: RunConfig, model: MusicVAE, **more: Any) -> dict[str, Any]:
    """What a run's checkpoint records beside its tensors (as JSON): the run's name and config, the
    model's architecture, the plugins (and versions) behind each component, and ``more``."""
    reg = registry()
    components = {"converter": ("converters", config.converter), "encoder": ("encoders", model.config.encoder),
                  "decoder": ("decoders", model.config.decoder), "loss": ("losses", model.config.loss)}
    plugins = {}
    for role, (kind, name) in components.items():
        r = reg.get(kind, name)
        plugins[role] = {"name": name, "plugin": r.plugin, "distribution": r.distribution, "version": r.version}
    meta = {"name": config.name, "hvae_version": __version__, "run": config.to_json(), "model": model.to_dict(),
            "plugins": plugins, **more}
    return json.loads(json.dumps(meta))


def carry_over(options: dict[str, Any], factory: type) -> dict[str, Any]:
    """The options a replaced component shares (by name) with its replacement."""
    names = set(field_names(factory.Options))
    return {k: v for k, v in options.items() if k in names}


def plan_model(model: ModelConfig, encoder: str | None, decoder: str | None, loss: str | None,
               pairs: Sequence[str]) -> ModelConfig:
    """``model`` with components replaced and ``key=value`` overrides applied.

    A replaced encoder or decoder keeps the options it shares with the one it replaces (layer sizes,
    dropout); a replaced loss starts from its defaults. ``encoder.KEY=VALUE``, ``decoder.KEY=VALUE`` and
    ``loss.KEY=VALUE`` set a component's options; other keys are ModelConfig fields.
    """
    reg = registry()
    changes: dict[str, Any] = {}
    for role, name in (("encoder", encoder), ("decoder", decoder)):
        if name is not None and name != getattr(model, role):
            factory = reg.get(COMPONENT_KINDS[role], name).factory
            changes[role], changes[f"{role}_options"] = name, carry_over(dict(getattr(model, f"{role}_options")),
                                                                        factory)
    if loss is not None and loss != model.loss:
        reg.get("losses", loss)
        changes["loss"], changes["loss_options"] = loss, {}
    model = dataclasses.replace(model, **changes)
    plain = [pair for pair in pairs if "." not in pair.split("=", 1)[0]]
    model = dataclasses.replace(model, **parse_overrides(ModelConfig, plain, what="the model"))
    for pair in pairs:
        if pair in plain:
            continue
        role, rest = pair.split(".", 1)
        if role not in COMPONENT_KINDS:
            raise HvaeError(f"Option {pair!r}: a dotted key starts with encoder., decoder. or loss.")
        name = getattr(model, role)
        if name is None:
            raise HvaeError(f"Option {pair!r}: name the {role} with --{role} to set its options.")
        factory = reg.get(COMPONENT_KINDS[role], name).factory
        value = parse_overrides(factory.Options, [rest], what=f"{role} {name!r}")
        model = dataclasses.replace(model, **{f"{role}_options": {**getattr(model, f"{role}_options"), **value}})
    return model


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    """A trained run rebuilt from one of its checkpoints: the model, what it needs to read and write MIDI,
    and the run it belongs to."""

    model: MusicVAE  # weights loaded, in eval mode, on the requested device
    converter: Converter  # the run's converter, with its options
    config: RunConfig  # the run's configuration, as the checkpoint saved it
    step: int  # optimiser steps it was trained for
    dir: RunDir  # the run directory holding the checkpoint
    checkpoint: Path  # the checkpoint directory it was read from
    out: RunDir | None = None  # where commands write (samples/, report/, ...): ``dir``, or for a model in the
    #                            box (hvae.pretrained) runs/<name>/ in the working directory

    @property
    def outputs(self) -> RunDir:
        """The run directory commands write their files into."""
        return self.out or self.dir

    @property
    def name(self) -> str:
        """The run's name (prefixes sample files)."""
        return self.config.name

    def windows(self, split: str, data_dir: str | os.PathLike | None = None,
                progress: bool = True) -> tuple[WindowSet, Path]:
        """The ``split`` windows of the run's data (or of ``data_dir``, converted with the run's converter),
        and the data folder; the data is prepared into its cache first when that is stale."""
        folder = Path(data_dir or self.config.data_dir)
        cache_dir = self.config.cache_dir if data_dir is None else \
            default_cache_dir(folder, self.converter.name, self.converter.options)
        prepare_dataset(self.converter, folder, cache_dir, progress=progress)
        return load_split(cache_dir, split), folder


def open_run(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedRun:
    """The run at ``path`` (a run directory: its newest checkpoint; a checkpoint directory; a file in one; or
    the name of a model in the box, :mod:`hvae.pretrained`) rebuilt: architecture and configuration from the
    checkpoint's JSON, weights from its safetensors.

    A model in the box reads and writes MIDI as any run does; its data is the bundled GMD demo subset (its
    training data is not installed: give ``data_dir`` to :meth:`LoadedRun.windows` for another), and its
    outputs go to ``runs/<name>/``."""
    path = resolve_run(path)
    checkpoint = read_checkpoint(path, with_optimizer=False)
    with rebuilding(checkpoint.path):
        config = RunConfig.from_json(checkpoint.meta["run"])
        model = model_from_dict(checkpoint.meta["model"])
        model.load_state_dict(checkpoint.model)
        converter = make_converter(config.converter, config.converter_options)
    bad = [name for name, tensor in checkpoint.model.items() if tensor.is_floating_point() and
           not bool(torch.isfinite(tensor).all())]
    if bad:
        raise CheckpointError(f"Checkpoint {checkpoint.path} has weights that are not finite numbers (NaN or "
                              f"infinite) in {bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}: "
                              f"it cannot give a sample. Use an earlier checkpoint.")
    model.to(device).eval()
    home = RunDir(checkpoint.path.parent.parent)
    if not is_shipped(checkpoint.path):
        return LoadedRun(model, converter, config, checkpoint.step, home, checkpoint.path)
    config = dataclasses.replace(config, data_dir=str(DEMO_DIR),
                                 cache_dir=str(default_cache_dir(DEMO_DIR, converter.name, converter.options)))
    return LoadedRun(model, converter, config, checkpoint.step, home, checkpoint.path,
                     out=RunDir(RUNS_DIR / home.path.name))


def fork_run(source: str | os.PathLike, target: str | os.PathLike,
             data_dir: str | os.PathLike | None = None) -> Path:
    """A new run directory ``target`` that goes on from the newest checkpoint of ``source`` (a run directory,
    a checkpoint, or the name of a model in the box): its configuration, metrics and that checkpoint, on
    ``data_dir`` when given (for a model in the box, the bundled GMD demo subset otherwise). ``hvae train
    --resume target`` then trains it further, leaving ``source`` as it was. Made beside ``target`` and
    renamed into place: a failed fork leaves nothing."""
    checkpoint = read_checkpoint(resolve_run(source))
    target = Path(target)
    if os.path.lexists(target) and (not target.is_dir() or target.is_symlink() or any(target.iterdir())):
        raise OutputExistsError(target, f"{target} exists and is not an empty folder", argument="target")
    try:
        config = RunConfig.from_json(checkpoint.meta["run"])
    except KeyError:
        raise CheckpointError(f"Checkpoint {checkpoint.path} holds no run configuration.") from None
    if data_dir is not None or is_shipped(checkpoint.path):
        folder = Path(data_dir).resolve() if data_dir is not None else DEMO_DIR
        converter = make_converter(config.converter, config.converter_options)
        config = dataclasses.replace(config, data_dir=str(folder),
                                     cache_dir=str(default_cache_dir(folder, converter.name, converter.options)))
    home = RunDir(checkpoint.path.parent.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = RunDir(target.parent / f".{target.name}.fork-{uuid.uuid4().hex[:8]}")
    try:
        building.path.mkdir()
        building.write_config(config)
        for name in (METRICS_FILE, PLAUSIBLE_FILE):
            if (home.path / name).is_file() and not (home.path / name).is_symlink():
                shutil.copyfile(home.path / name, building.path / name)
        write_checkpoint(building.path, dataclasses.replace(checkpoint, meta={**checkpoint.meta,
                                                                              "run": config.to_json()}))
        if target.is_dir():
            target.rmdir()
        os.rename(building.path, target)
    finally:
        shutil.rmtree(building.path, ignore_errors=True)
    return target


def resolve_run(path: str | os.PathLike) -> Path:
    """``path`` as given, or the folder of the model in the box of that name where no such path exists."""
    if not Path(path).exists():
        model = shipped_model(path)
        if model is not None:
            return model.path
    return Path(path)


load_model = open_run  # the name earlier hvae gave open_run; kept for notebooks and scripts that use it
