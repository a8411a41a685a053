"""The one way into a run and out of it: what a training call asks for (:class:`TrainRequest`) and the
session that holds the run while it trains (:class:`Session`), for a new run and a resumed one alike.

::

    request = TrainRequest(preset="demo", train={"steps": 200}, out_dir="runs/demo")
    with Session(request) as session:        # or TrainRequest(resume="runs/demo", train={"steps": 400})
        result = session.train()

Entering a session, in this order (under torchrun every process does each step; rank 0 alone touches the
run directory):

1. the configuration, resolved once (:meth:`TrainRequest.resolve`): from a preset and what is given on top,
   from a whole configuration (:meth:`TrainRequest.from_earlier`), or for a resume the newest checkpoint's,
   where the request and config.json may change only :data:`RESUMABLE`; the converter is built there, once;
2. the world joined (:func:`hvae.distributed.join`): the device, the batch's share of each process, the
   precision checked on that device, and for a new run the memory it needs (:func:`check_memory`);
3. the run directory locked (:mod:`hvae.runlock`) and checked: a new run's must hold no run yet;
4. a resumed run's newest checkpoint that passes its checks chosen (newer ones moved to ``corrupt/``);
5. the model built once: seeded and fresh, or the checkpoint's architecture;
6. the data prepared (or found in its cache) and its splits loaded;
7. the trainer made (:class:`hvae.training.Trainer`, the loop) and the checkpoint restored into it through
   :meth:`~hvae.training.Trainer.restore`; config.json written, metrics.jsonl cut back to the checkpoint.

The configuration comes before the lock: a run directory named after the run (``runs/<name>-<date-time>``)
needs its name, and a bad option is refused before any folder is made. Leaving the session lets go of the
trainer, releases the lock and, after a session that went well, leaves the process group; a new run that
failed before writing config.json leaves no directory behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from hvae import distributed
from hvae.board import require_tensorboard
from hvae.checkpoint import Checkpoint, list_checkpoints, no_checkpoint_error, read_checkpoint, read_manifest, \
    rebuilding, unrecognised_checkpoints
from hvae.data import DEMO_DIR, PrepareReport, WindowSet, default_cache_dir, load_split, prepare_dataset
from hvae.device import autocast, set_up_training_process
from hvae.distributed import World
from hvae.errors import CheckpointError, HvaeError, plain_errors_as
from hvae.interfaces import Converter
from hvae.model import build_model, model_from_dict
from hvae.options import field_names, parse_overrides
from hvae.plausible import density_range
from hvae.plugins import make_converter, registry
from hvae.presets import get_preset
from hvae.rundir import CONFIG_FILE, RUNS_DIR, RunConfig, RunDir, TrainConfig, carry_over, plan_model, unique_path
from hvae.runlock import RunLock
from hvae.training import Trainer, TrainResult

DEFAULT_PRESET = "demo"
RESUMABLE = ("steps", "minutes", "device", "amp", "threads")  # what a resume may change (TrainConfig fields)
NO_TRANSPOSITION = ()  # a transpose_range in a request that means none, whatever the preset or earlier run says
# What a new run from a preset is made of; a resume and a whole configuration take none of it
WHAT_TO_TRAIN = ("preset", "converter", "encoder", "decoder", "loss", "converter_options", "model_options", "force")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainRequest:
    """What a training call asks for, as ``hvae train`` takes it: a new run (from a preset and what is given
    on top, or from a whole configuration) or the resume of one. Nothing is read or built until
    :meth:`resolve`."""

    preset: str | None = None  # the new run's base; None: DEFAULT_PRESET
    converter: str | None = None  # another converter than the preset's (keeps the preset's options it also has)
    encoder: str | None = None  # another encoder (keeps the layer sizes it shares with the preset's)
    decoder: str | None = None  # another decoder (likewise)
    loss: str | None = None  # another loss (from its defaults)
    converter_options: Sequence[str] = ()  # KEY=VALUE, the converter's options by the reference's names
    model_options: Sequence[str] = ()  # KEY=VALUE: ModelConfig fields, or encoder./decoder./loss. options
    force: bool = False  # train a loss that does not fit the converter's outputs, instead of refusing it
    config: RunConfig | None = None  # a whole configuration, trained as it is instead of a preset
    resume: str | os.PathLike | None = None  # continue the run in this directory instead of starting one
    # TrainConfig fields set on top (None: not given); a resume takes only RESUMABLE
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data_dir: str | os.PathLike | None = None  # MIDI folder; None: the preset's (the bundled demo subset)
    cache_dir: str | os.PathLike | None = None  # prepared windows; None: one per data folder, converter, options
    out_dir: str | os.PathLike | None = None  # the new run's directory; None: runs/<name>-<date-time>

    def __post_init__(self) -> None:
        unknown = sorted(set(self.train) - set(field_names(TrainConfig)))
        if unknown:
            raise HvaeError(f"Unknown training option(s): {', '.join(unknown)}. Valid: "
                            f"{', '.join(field_names(TrainConfig))}.")
        if self.resume is None and self.config is None:
            return
        named = [name for name in WHAT_TO_TRAIN if getattr(self, name)]
        if self.resume is not None:
            named += [name for name in ("config", "data_dir", "cache_dir", "out_dir") if getattr(self, name)]
            named += [name for name in self._given() if name not in RESUMABLE]
            if named:
                raise HvaeError(f"A resumed run goes on as it was configured: {', '.join(named)} cannot be given "
                                f"with resume (only {', '.join(RESUMABLE)} may change).")
        elif named:
            raise HvaeError(f"A whole configuration is trained as it is: {', '.join(named)} cannot be given with "
                            f"config (training options, data_dir, cache_dir and out_dir may).")

    @classmethod
    def from_earlier(cls, path: str | os.PathLike, **fields: Any) -> "TrainRequest":
        """A new run with an earlier run's configuration (its config.json, or its directory): the same data,
        converter, model and training, with ``fields`` (``train``, ``data_dir``, ``cache_dir``, ``out_dir``)
        on top."""
        path = Path(path)
        return cls(config=RunDir(path.parent if path.is_file() else path).read_config(), **fields)

    def resolve(self) -> "Resolved":
        """The run's configuration, its converter and notes on how they were chosen. Refuses (one line, before
        anything is written) options that do not fit, a transposition the converter cannot make, and
        TensorBoard logging without its package."""
        converter = None
        notes: list[str] = []
        if self.resume is not None:
            config, notes = resumed_config(self.resume)
        elif self.config is not None:
            config = self._on_other_data(self.config)
        else:
            config, converter = self._from_preset()
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, **self._given()))
        converter = converter or make_converter(config.converter, config.converter_options)
        if config.train.transpose_range is not None and not converter.transposable:
            raise HvaeError(f"Converter {config.converter!r} cannot transpose its windows, so it cannot train with "
                            f"transpose_range {tuple(config.train.transpose_range)}: give --transpose 0.")
        if config.train.tensorboard:
            require_tensorboard()
        return Resolved(config, converter, tuple(notes))

    def _given(self) -> dict[str, Any]:
        """The training options given; a transpose_range of NO_TRANSPOSITION as None."""
        given = {k: v for k, v in self.train.items() if v is not None}
        if given.get("transpose_range") == NO_TRANSPOSITION:
            given["transpose_range"] = None
        return given

    def _from_preset(self) -> tuple[RunConfig, Converter]:
        """The preset's run with the components and ``key=value`` options given, and its converter."""
        preset = get_preset(self.preset or DEFAULT_PRESET)
        name = self.converter or preset.converter
        factory = registry().get("converters", name).factory
        options = dict(preset.converter_options) if name == preset.converter else \
            carry_over(dict(preset.converter_options), factory)
        options.update(parse_overrides(factory.Options, self.converter_options, what=f"converter {name!r}"))
        with plain_errors_as(f"Converter {name!r} rejected its options"):
            converter = make_converter(name, options)
        model = plan_model(preset.model, self.encoder, self.decoder, self.loss, self.model_options)
        # the preset's augmentation goes with its converter
        transpose = preset.transpose_range if name == preset.converter else None
        data_dir = self.data_dir
        if data_dir is None:
            if preset.dataset != "gmd":
                raise HvaeError(f"Preset {preset.name!r} is meant for the {preset.dataset} data set, which is not "
                                f"bundled: give its folder with --data.")
            data_dir = DEMO_DIR
        changed = (name, model.encoder, model.decoder, model.loss) != \
            (preset.converter, preset.model.encoder, preset.model.decoder, preset.model.loss)
        config = RunConfig(
            name="-".join(n for n in (name, model.decoder, model.loss) if n) if changed else preset.name,
            converter=name, converter_options=dataclasses.asdict(converter.options), model=model,
            train=TrainConfig(batch_size=preset.batch_size, steps=preset.steps, transpose_range=transpose),
            data_dir=str(Path(data_dir).resolve()),
            cache_dir=str(self.cache_dir or default_cache_dir(data_dir, converter.name, converter.options)),
            preset=preset.name, force=self.force or (preset.force and not changed))
        return config, converter

    def _on_other_data(self, config: RunConfig) -> RunConfig:
        """``config`` on the data folder and cache given (a new data folder: its own cache by default)."""
        changes = {}
        if self.data_dir is not None:
            changes["data_dir"] = str(Path(self.data_dir).resolve())
        if self.cache_dir is not None or self.data_dir is not None:
            changes["cache_dir"] = str(self.cache_dir or default_cache_dir(self.data_dir, config.converter,
                                                                           config.converter_options))
        return dataclasses.replace(config, **changes)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A request made definite."""

    config: RunConfig  # the run's configuration (a new run's model options are filled in once its model is built)
    converter: Converter  # the run's converter, built once
    notes: tuple[str, ...] = ()  # how a resumed run's configuration was chosen, where the user should hear it


def resumed_config(run_dir: str | os.PathLike) -> tuple[RunConfig, list[str]]:
    """The configuration a resumed run continues with, and notes on how it was chosen.

    Each checkpoint holds its run's full configuration; resuming uses the newest readable one's, so a
    run is continued as it was trained. From ``config.json`` it takes only :data:`RESUMABLE`; any other
    difference is named in a note. Without a readable checkpoint (a run stopped before its first),
    ``config.json`` is the configuration. Raises :class:`CheckpointError` when neither is readable.
    """
    run = RunDir(run_dir)
    try:
        written, problem = run.read_config(), None
    except CheckpointError as exc:
        written, problem = None, str(exc)
    saved = _newest_saved_config(run.path)
    if saved is None:
        if written is None:
            raise CheckpointError(problem)
        return written, []
    directory, config = saved
    if written is None:
        return config, [f"{problem.rstrip('.')}: resuming with the configuration saved in {directory}."]
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, **{k: getattr(written.train, k) for k in RESUMABLE}))
    changed = _differences(config.to_json(), written.to_json())
    if not changed:
        return config, []
    return config, [f"{run.config_file} differs from the configuration saved in {directory} "
                    f"({'; '.join(changed)}): resuming with the checkpoint's, as the run was trained "
                    f"(only {', '.join(RESUMABLE)} are read from {CONFIG_FILE}; start a new run to change others)."]


def _newest_saved_config(run_dir: Path) -> tuple[Path, RunConfig] | None:
    """The newest checkpoint whose manifest reads, and the run configuration it holds."""
    for directory in reversed(list_checkpoints(run_dir)):
        try:
            return directory, RunConfig.from_json(read_manifest(directory)["run"])
        except (CheckpointError, KeyError):
            continue
    return None


def _differences(checkpoint: Any, written: Any, where: str = "") -> list[str]:
    """``key: checkpoint value -> config.json value`` for each leaf that differs."""
    if isinstance(checkpoint, dict) and isinstance(written, dict):
        return [line for key in sorted(set(checkpoint) | set(written))
                for line in _differences(checkpoint.get(key), written.get(key), f"{where}{key}.")]
    if checkpoint == written:
        return []
    return [f"{where.rstrip('.')} {json.dumps(checkpoint)} in the checkpoint, {json.dumps(written)} in {CONFIG_FILE}"]


def default_run_dir(name: str) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``, with a counter when that exists already."""
    return unique_path(RUNS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


class Session:
    """One training call's hold on a run (see the module's docstring). Enter it to get the :attr:`trainer`
    at the run's step; leave it to let the run go.

    ``notes`` holds what the user should hear about the configuration, the data and the checkpoints (a cache
    rebuilt, a corrupt checkpoint passed over, a config.json that differs from the checkpoint's).
    """

    def __init__(self, request: TrainRequest, *, progress: bool = True) -> None:
        self.request, self.progress = request, progress
        self.world = World()  # the processes training together (joined on entering)
        self.device: torch.device | None = None  # this process's device
        self.run: RunDir | None = None  # the run directory (rank 0's, on every rank)
        self.config: RunConfig | None = None  # the run's configuration, as config.json holds it
        self.converter: Converter | None = None  # the run's converter (built once, on entering)
        self.trainer: Trainer | None = None  # the loop, from entering the session until leaving it
        self.notes: list[str] = []
        self._lock: RunLock | None = None  # held by rank 0
        self._fresh = False  # the run directory did not exist before this session

    def __enter__(self) -> "Session":
        set_up_training_process()  # before MKL's first product, where this process is yet to make one
        resolved = self.request.resolve()
        self.notes = list(resolved.notes)
        config, converter = resolved.config, resolved.converter
        self.converter = converter
        self.world, self.device = distributed.join(config.train.device)
        self.world.share(config.train.batch_size)
        autocast(self.device, enabled=config.train.amp)  # a precision this device cannot run: refused here
        resuming = self.request.resume is not None
        if not resuming:
            check_memory(config, converter)
        where = self.request.resume if resuming else self.request.out_dir or default_run_dir(config.name)
        self.run = RunDir(self.world.from_main(os.fspath(where)))
        self._fresh = not self.run.path.exists()
        self._lock = self.run.lock() if self.world.main else None
        try:
            self.world.on_main(lambda: _claim(self.run, self._lock, new=not resuming))
            self._open(config, converter, resuming)
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def _open(self, config: RunConfig, converter: Converter, resuming: bool) -> None:
        """Steps 4 to 7 of the module's docstring."""
        checkpoint = self._newest_checkpoint() if resuming else None
        if checkpoint is None:
            if resuming and self.world.main:  # stopped before its first checkpoint: it begins again
                self.run.truncate_metrics(0, 0)
            torch.manual_seed(config.train.seed)
            model = build_model(config.model, converter, force=config.force).to(self.device)
            config = dataclasses.replace(config, model=model.config,
                                         converter_options=dataclasses.asdict(converter.options))
        else:
            with rebuilding(checkpoint.path):
                model = model_from_dict(checkpoint.meta["model"]).to(self.device)
        report = self.world.on_main(lambda: prepare_data(config, converter, self.progress))
        self.notes += _data_notes(report)
        train_set = load_split(config.cache_dir, "train")
        self.trainer = Trainer(self.run, config=config, model=model, converter=converter, train_set=train_set,
                               validation_set=load_split(config.cache_dir, "validation"), device=self.device,
                               world=self.world)
        if checkpoint is not None:
            self.notes += self.trainer.restore(checkpoint)
        self.config = config
        if not self.world.main:
            return
        if checkpoint is not None:
            self.run.truncate_metrics(checkpoint.step, checkpoint.meta.get("metrics_log", {}).get("bytes"))
        self.run.write_config(config)
        if checkpoint is None or self.run.read_plausible() is None:
            _keep_density_range(self.run, converter, train_set)

    def _newest_checkpoint(self) -> Checkpoint | None:
        """The checkpoint a resume goes on from (rank 0 chooses it, the others read the same), None when the
        run has none yet."""
        chosen = self.world.on_main(lambda: readable_checkpoint(self.run))
        found = self.world.from_main(os.fspath(chosen[0].path) if chosen and chosen[0] else None)
        if chosen:
            self.notes += chosen[1]
            return chosen[0]
        return None if found is None else read_checkpoint(found)

    def train(self) -> TrainResult:
        """Train to the configuration's steps (see :meth:`hvae.training.Trainer.train`)."""
        return self.trainer.train(progress=self.progress)

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: Any) -> None:
        self._release(failed=exc_type is not None)

    def _release(self, failed: bool) -> None:
        """Let go of the trainer (its DistributedDataParallel wrapper must go before the process group) and
        the lock; a new run that failed before writing config.json leaves nothing. Only a session that went
        well leaves the process group: after a failure, a barrier would wait for ranks that are gone."""
        self.trainer = None
        if self._lock is not None:
            self._lock.release()
            if failed and self._fresh:
                self.run.forget_start()
        if not failed:
            distributed.leave(self.world)


def _claim(run: RunDir, lock: RunLock, new: bool) -> None:
    """Lock the run directory (creating it), then refuse one whose files are links and, for a new run, one
    that holds a run already."""
    lock.acquire()
    run.check_layout()
    if new:
        run.check_new()


def check_memory(config: RunConfig, converter: Converter) -> None:
    """Refuse, before any folder is made or anything allocated, a run whose model (weights, gradients
    and Adam's two moments) and batches (inputs and outputs) alone would not fit in this machine's
    memory. The weights are counted on a copy of the model built on PyTorch's meta device, which allocates
    nothing: the run's own model would allocate the very weights this check is there to refuse."""
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


def readable_checkpoint(run: RunDir) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint of ``run`` that passes its checks, and a note for each newer one that did not
    (each moved to ``<run>/corrupt/``, where nothing reads or prunes it). None (and a note) when the run has
    no checkpoint yet."""
    found = list_checkpoints(run.path)
    if not found and unrecognised_checkpoints(run.path):
        raise no_checkpoint_error(run.path)  # weights it cannot name are not replaced by fresh ones
    if not found:
        return None, [f"{run.path} stopped before its first checkpoint: beginning again from step 0."]
    notes = []
    for directory in reversed(found):
        try:
            return read_checkpoint(directory), notes
        except CheckpointError as exc:
            notes.append(f"{exc} Moved it to {run.set_aside(directory)}.")
    raise CheckpointError(f"No readable checkpoint in {run.path}: {' '.join(notes)}")


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


def _keep_density_range(run: RunDir, converter: Converter, train_set: WindowSet) -> None:
    """Write the training windows' density range into the run directory (drum models), where sampling reads
    it: a run keeps it when moved, shipped or its data cache is gone."""
    found = density_range(converter, train_set.outputs) if len(train_set) else None
    if found is not None:
        run.write_plausible(found.low, found.high)


def _data_notes(report: PrepareReport | None) -> list[str]:
    """What to tell the user about the data a run was given (rank 0 holds the report; None elsewhere)."""
    if report is None:
        return []
    notes = []
    if report.rebuild_reason and report.rebuild_reason != "no cache yet":
        notes.append(f"Data cache {report.cache_dir} rebuilt: {report.rebuild_reason}.")
    skipped = [f for f in report.files if f.status != "converted"]
    if skipped:
        notes.append(f"{len(skipped)} of {len(report.files)} MIDI files gave no window; "
                     f"'hvae data info {report.cache_dir} -v' lists each with its reason.")
    return notes
