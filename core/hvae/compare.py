"""``hvae compare``: train a grid of converter × decoder × loss combinations on the same data with the same
budget, evaluate each on the same split, and write the experiment matrix.

::

    OUT/
        results.md        the table (Markdown), with the combinations refused and why
        results.csv       the same, every number
        loss_curves.png   training loss and KL, one line per combination
        same_input.png    each combination's reconstruction of the same file
        report.html       all of the above on one page, linking each run's own report
        runs/<name>/      each combination's run directory (config.json, metrics.jsonl, checkpoints/, report/)

The grid is every preset given (the ``demo`` preset when none is) crossed with every converter, decoder
and loss given (each preset's own when none is). A combination whose loss does not fit its converter's
outputs is refused, with the reason, unless it is forced (``force``, or a preset that forces it).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from hvae.data.cache import default_cache_dir
from hvae.errors import HvaeError, IncompatibleError, TrainingError
from hvae.evaluation import Evaluation, evaluation_of, format_value
from hvae.generation import reconstruct_examples
from hvae.model import build_model, trainable_parameters
from hvae.music import DEFAULT_QPM
from hvae.options import field_names
from hvae.plugins import registry
from hvae.presets import get_preset
from hvae.report.comparison import write_comparison_page
from hvae.report.curves import plot_curves
from hvae.report.pianoroll import Panel, lanes_of, plot_rolls, window_quarters
from hvae.report.run import ReportOptions, write_run_report
from hvae.rundir import MAX_MINUTES, RunConfig, RunDir, open_run, unique_path
from hvae.safefiles import check_output_file, check_output_folder, foreign_entries, write_atomic
from hvae.session import DEFAULT_PRESET, Session, TrainRequest
from hvae.training import Trainer

RUNS_DIR = "runs"
RESULTS = ("results.md", "results.csv", "loss_curves.png", "same_input.png", "report.html")  # what write_results writes
# A run is too short to judge while its training loss is still falling steadily: when more than SETTLED of the
# fall since its first logged line came in the last quarter of its steps (the mean of the lines logged in the
# last quarter against that of the third). A loss that falls at an even pace puts a third of its fall there;
# one that has levelled off, little: an exponential decay does under 10% after two time constants. A run that
# logged fewer than QUARTER_LINES lines in either of those quarters cannot show it (lower --log-every) and is
# marked too. hvae compare validates once, at the end, so the curve is the training loss's.
SETTLED = 0.10
QUARTER_LINES = 2
TOO_SHORT = (f"Too short to judge: more than {SETTLED:.0%} of the training loss's fall came in the last quarter of "
             f"the steps (or too few lines were logged to tell), so more budget may change the ranking.")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Training per combination: ``steps`` optimiser steps, or ``minutes`` of wall time (one of them)."""

    steps: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.minutes is None):
            raise HvaeError("Give the budget per combination in steps or in minutes (--steps N or --minutes M), "
                            "one of them.")
        if self.steps is not None and self.steps < 1:
            raise HvaeError(f"The budget must be at least 1 step, got {self.steps}.")
        if self.minutes is not None and not 0 < self.minutes <= MAX_MINUTES:
            raise HvaeError(f"The budget must be more than 0 minutes and at most {MAX_MINUTES:,} (a year), "
                            f"got {self.minutes}.")

    def describe(self) -> str:
        return f"{self.steps:,} steps" if self.steps is not None else f"{self.minutes:g} minutes"


@dataclasses.dataclass(frozen=True)
class Grid:
    """What to combine, and what every combination shares."""

    presets: tuple[str, ...] = ()  # bases; empty: DEFAULT_PRESET
    converters: tuple[str, ...] = ()  # empty: each preset's own
    decoders: tuple[str, ...] = ()  # empty: each preset's own
    losses: tuple[str, ...] = ()  # empty: each preset's own
    converter_options: tuple[str, ...] = ()  # KEY=VALUE, applied to each converter that has the option
    model_options: tuple[str, ...] = ()  # KEY=VALUE, applied to every combination (as hvae train -m)
    train_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # TrainConfig fields for all
    data_dir: Path | None = None  # MIDI folder; None: each preset's default (the bundled demo subset)
    cache_root: Path | None = None  # folder of the prepared windows (one subfolder per converter); None: default
    force: bool = False  # train combinations whose loss does not fit instead of refusing them


@dataclasses.dataclass(frozen=True)
class Refused:
    """A combination that was not trained."""

    name: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One trained combination."""

    config: RunConfig
    run_dir: Path
    steps: int  # optimiser steps trained
    seconds: float  # wall time of training (with its validation passes and checkpoints)
    train_windows: int
    parameters: int
    final: Mapping[str, float] | None  # the last training line of metrics.jsonl
    evaluation: Evaluation | None  # None when training stopped
    error: str | None = None  # why training stopped early (a loss that is not finite)
    report: Path | None = None  # the run's report page
    late_fall: float | None = None  # the share of the training loss's fall that came in the last quarter (late_fall)

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def too_short(self) -> bool:
        """Whether the run was still learning steadily at its end, or logged too little to tell (see SETTLED)."""
        return self.error is None and (self.late_fall is None or self.late_fall > SETTLED)

    def late_fall_cell(self) -> str:
        """The results table's cell: ``34% (too short)``, ``4%``, or why it is not known."""
        if self.late_fall is None:
            return "– (too few lines)" if self.error is None else "–"
        share = f"{self.late_fall:.0%}" if math.isfinite(self.late_fall) else "no fall yet"
        return share + (" (too short)" if self.too_short else "")

    def row(self) -> dict[str, Any]:
        """Every number of this combination, for results.csv."""
        m = self.config.model
        row: dict[str, Any] = {
            "name": self.name, "preset": self.config.preset, "converter": self.config.converter,
            "decoder": m.decoder, "loss": m.loss, "forced": self.config.force, "steps": self.steps,
            "seconds": round(self.seconds, 2), "budget_minutes": self.config.train.minutes,
            "examples_seen": self.steps * self.config.train.batch_size, "batch_size": self.config.train.batch_size,
            "train_windows": self.train_windows, "parameters": self.parameters,
            "train_loss": (self.final or {}).get("loss"), "train_r_loss": (self.final or {}).get("r_loss"),
            "train_kl_bits": (self.final or {}).get("kl_bits"), "error": self.error or "",
            "late_fall": self.late_fall, "too_short": self.too_short,
        }
        if self.evaluation is not None:
            row.update({"split": self.evaluation.split, "windows": self.evaluation.windows, **self.evaluation.flat()})
        return row


def late_fall(lines: Sequence[Mapping[str, Any]], steps: int) -> float | None:
    """The share of the training loss's fall that came in the last quarter of ``steps``: (third - last) /
    (first - last), where first is the first line's loss and third and last the mean loss of the lines logged
    in the third and the last quarter. Infinite where the loss falls at the end without having fallen below
    the first line's; None where either quarter holds fewer than QUARTER_LINES lines."""
    quarters: tuple[list[float], list[float]] = ([], [])
    for line in lines:
        if line["step"] > steps / 2:
            quarters[line["step"] > 3 * steps / 4].append(line["loss"])
    if not lines or min(len(q) for q in quarters) < QUARTER_LINES:
        return None
    third, last = (sum(q) / len(q) for q in quarters)
    fallen = lines[0]["loss"] - last
    if fallen <= 0:
        return math.inf if third > last else 0.0
    return (third - last) / fallen


def _converter_pairs(grid: Grid, converters: Sequence[str]) -> dict[str, list[str]]:
    """The converter options each converter of the grid takes; an option none of them has is an error."""
    reg = registry()
    fields = {name: set(field_names(reg.get("converters", name).factory.Options)) for name in converters}
    for pair in grid.converter_options:
        key = pair.split("=", 1)[0].strip().replace("-", "_")
        if not any(key in f for f in fields.values()):
            raise HvaeError(f"Converter option {pair!r}: none of the converters compared ({', '.join(converters)}) "
                            f"has an option {key!r}.")
    return {name: [p for p in grid.converter_options if p.split("=", 1)[0].strip().replace("-", "_") in f]
            for name, f in fields.items()}


def plan(grid: Grid) -> tuple[list[RunConfig], list[Refused]]:
    """The combinations to train, in order, and those refused (a loss that does not fit, unforced)."""
    presets = grid.presets or (DEFAULT_PRESET,)
    converters = sorted(set(grid.converters) | {get_preset(p).converter for p in presets})
    pairs = _converter_pairs(grid, converters)
    configs: list[RunConfig] = []
    refused: list[Refused] = []
    seen: set[str] = set()
    for preset, converter, decoder, loss in itertools.product(
            presets, grid.converters or (None,), grid.decoders or (None,), grid.losses or (None,)):
        resolved = TrainRequest(preset=preset, converter=converter, decoder=decoder, loss=loss,
                                converter_options=pairs[converter or get_preset(preset).converter],
                                model_options=grid.model_options, train=dict(grid.train_options),
                                data_dir=grid.data_dir, force=grid.force).resolve()
        config = resolved.config
        if grid.converters or grid.decoders or grid.losses:  # name it by what varies
            parts = (config.converter, config.model.decoder, config.model.loss)
            config = dataclasses.replace(config, name="-".join(((preset,) if len(presets) > 1 else ()) + parts))
        if grid.cache_root is not None:
            cache = default_cache_dir(config.data_dir, config.converter, config.converter_options).name
            config = dataclasses.replace(config, cache_dir=str(Path(grid.cache_root).resolve() / cache))
        key = json.dumps({k: v for k, v in config.to_json().items() if k not in ("name", "preset")}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:  # (the meta device allocates nothing: each combination's model is built for real once, to train)
            with torch.device("meta"):
                build_model(config.model, resolved.converter, force=config.force)
        except IncompatibleError as exc:
            refused.append(Refused(config.name, str(exc)))
            continue
        configs.append(config)
    return configs, refused


def _train(config: RunConfig, run_dir: Path, budget: Budget, progress: bool) -> tuple[Trainer, float, str | None]:
    """Train one combination within ``budget``: the trainer at its last step, the seconds it took, and
    the error that stopped it early (None when it used its budget).

    A time budget trains up to the configuration's steps (the preset's, or ``--steps`` given with it) and
    stops at the deadline, as ``hvae train --minutes`` does: each combination gets the same wall-clock time.
    """
    train = dataclasses.replace(config.train, minutes=budget.minutes) if budget.minutes is not None else \
        dataclasses.replace(config.train, steps=budget.steps)
    error = None
    with Session(TrainRequest(config=dataclasses.replace(config, train=train), out_dir=run_dir),
                 progress=progress) as session:
        started = time.perf_counter()
        try:
            session.train()
        except TrainingError as exc:
            error = str(exc)
        trainer, seconds = session.trainer, time.perf_counter() - started
    return trainer, seconds, error


def check_comparison_folder(out_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """:class:`~hvae.errors.OutputExistsError` unless ``out_dir`` is absent or empty, or, with ``overwrite``, an
    earlier comparison (a folder holding only what ``hvae compare`` writes)."""
    check_output_folder(Path(out_dir), kind="an hvae comparison", overwrite=overwrite, argument="out_dir",
                        unlike=lambda folder: foreign_entries(folder, {*RESULTS, RUNS_DIR}.__contains__))


def run_grid(configs: Sequence[RunConfig], out_dir: str | os.PathLike, budget: Budget, split: str = "test",
             report: ReportOptions | None = None, progress: bool = True,
             echo: Callable[[str], None] = print, overwrite: bool = False) -> list[Outcome]:
    """Train, evaluate on ``split`` and report each combination in turn into ``out_dir/runs/``; ``echo`` tells
    the user how it goes. ``out_dir`` must be absent or empty, or with ``overwrite`` an earlier comparison,
    whose runs stay beside the new ones (see :func:`check_comparison_folder`)."""
    check_comparison_folder(out_dir, overwrite)
    out_dir = Path(out_dir)
    report = dataclasses.replace(report or ReportOptions(), split=split)
    outcomes = []
    for k, config in enumerate(configs):
        run_dir = unique_path(out_dir / RUNS_DIR / config.name)
        echo(f"[{k + 1}/{len(configs)}] {run_dir.name}: {config.converter} converter, {config.model.decoder} decoder, "
             f"{config.model.loss} loss{' (forced)' if config.force else ''}; {budget.describe()}")
        trainer, seconds, error = _train(config, run_dir, budget, progress)
        lines = [r for r in RunDir(run_dir).metrics() if r.get("split") == "train"]
        outcome = Outcome(config=trainer.config, run_dir=run_dir, steps=trainer.step, seconds=seconds,
                          train_windows=len(trainer.train_set),
                          parameters=sum(p.numel() for p in trainable_parameters(trainer.model)),
                          final=lines[-1] if lines else None, evaluation=None, error=error,
                          late_fall=late_fall(lines, trainer.step))
        if error is None:
            loaded = open_run(run_dir, trainer.device)
            windows, data_dir = loaded.windows(split, progress=progress)
            evaluation = evaluation_of(loaded, windows, data_dir, report.batch_size, report.qpm, progress,
                                       report.quality_samples, report.temperature, report.seed)
            page = write_run_report(run_dir, report, evaluation, progress)
            outcome = dataclasses.replace(outcome, evaluation=evaluation, report=page)
            echo(f"    {_summary(evaluation)}")
        else:
            echo(f"    stopped: {error}")
        outcomes.append(outcome)
    return outcomes


def _summary(evaluation: Evaluation) -> str:
    parts = [f"{key} {format_value(value)}" for key, value in evaluation.sampled.items()
             if key in ("accuracy", "hit_f1", "velocity_mae", "timing_mae_ms")]
    parts.append(f"KL {format_value(evaluation.kl_bits)} bits")
    if evaluation.quality is not None:
        parts.append(f"sample overlap {_overlap(evaluation)}")
    return f"sampled on {evaluation.split}: " + ", ".join(parts)


def _overlap(evaluation: Evaluation | None) -> str:
    """The mean sample-quality overlap, with its ceiling: ``0.71 of 0.83``."""
    q = evaluation.quality if evaluation is not None else None
    if q is None:
        return "–"
    return format_value(q.overlaps["mean"]) + (f" of {format_value(q.ceiling['mean'])}" if q.ceiling else "")


def _pair(evaluation: Evaluation | None, key: str) -> str:
    """``teacher-forced / sampled`` of one metric, or a dash where it does not apply."""
    if evaluation is None or key not in evaluation.teacher_forced:
        return "–"
    return f"{format_value(evaluation.teacher_forced[key])} / {format_value(evaluation.sampled[key])}"


TABLE_HEADERS = ("combination", "converter → decoder → loss", "steps", "examples seen", "train s", "train windows",
                 "final loss", "fall in last quarter", "KL bits", "accuracy TF / sampled", "hit F1 TF / sampled", "hit P / R sampled",
                 "velocity MAE sampled", "timing MAE ms sampled", "sample overlap of ceiling", "plausible draws")


def table_rows(outcomes: Sequence[Outcome]) -> list[list[str]]:
    """The results table's cells, as text (see TABLE_HEADERS)."""
    rows = []
    for o in outcomes:
        e = o.evaluation
        sampled = e.sampled if e is not None else {}
        p_r = (f"{format_value(sampled['hit_precision'])} / {format_value(sampled['hit_recall'])}"
               if "hit_precision" in sampled else "–")
        final = f"{o.final['loss']:.4g}" if o.final else "–"
        parts = f"{o.config.converter} → {o.config.model.decoder} → {o.config.model.loss}"
        plausible = e.quality.plausible_share if e is not None and e.quality is not None else None
        rows.append([o.name, parts + (" (forced)" if o.config.force else ""), f"{o.steps:,}",
                     f"{o.steps * o.config.train.batch_size:,}", f"{o.seconds:.0f}",
                     f"{o.train_windows:,}", final + (" (stopped)" if o.error else ""), o.late_fall_cell(),
                     format_value(e.kl_bits) if e is not None else "–", _pair(e, "accuracy"), _pair(e, "hit_f1"),
                     p_r, format_value(sampled["velocity_mae"]) if "velocity_mae" in sampled else "–",
                     format_value(sampled["timing_mae_ms"]) if "timing_mae_ms" in sampled else "–",
                     _overlap(e), f"{plausible:.0%}" if plausible is not None else "–"])
    return rows


def _markdown(outcomes: Sequence[Outcome], refused: Sequence[Refused], budget: Budget, split: str,
              qpm: float) -> str:
    rows = table_rows(outcomes)
    lines = [f"# hvae compare: {len(outcomes)} combination{'s' if len(outcomes) != 1 else ''}, "
             f"{budget.describe()} each", ""]
    if outcomes:
        first = outcomes[0].config
        lines += [f"Data: {first.data_dir}. Metrics on the {split} split; TF = teacher-forced, sampled = "
                  f"free-running from μ; hits over (step, drum class) cells; velocity in MIDI units; timing in "
                  f"ms at {qpm:g} qpm. Sample overlap: the mean over musical features of prior samples against "
                  f"real windows of the split (hvae evaluate), of the ceiling that real training windows reach "
                  f"against them; plausible draws: the share of raw drum samples with a hit density within the "
                  f"training windows' 5th to 95th percentile. Fall in last quarter: the share of the training "
                  f"loss's fall since the first step that came in the last quarter of the steps (the mean of the "
                  f"lines logged there against the third quarter's); over {SETTLED:.0%} marks a run too short to "
                  f"judge.", ""]
        counts = sorted({(o.config.converter, o.train_windows) for o in outcomes})
        if len({n for _, n in counts}) > 1:
            lines += [f"Training windows differ by converter ({', '.join(f'{c}: {n:,}' for c, n in counts)}): each "
                      f"cuts the files its own way (the reference's window and hop lengths, which files it keeps), "
                      f"so compare examples seen, not epochs.", ""]
    short = caveat(outcomes)
    if short:
        lines += [f"**{short}**", ""]
    lines.append("| " + " | ".join(TABLE_HEADERS) + " |")
    lines.append("|" + "|".join("---" if k < 2 else "---:" for k in range(len(TABLE_HEADERS))) + "|")
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    stopped = [o for o in outcomes if o.error]
    if stopped:
        lines += ["", "Stopped early:"] + [f"- {o.name}: {o.error}" for o in stopped]
    if refused:
        lines += ["", "Refused (not trained; --force trains them):"] + [f"- {r.name}: {r.reason}" for r in refused]
    return "\n".join(lines) + "\n"


def caveat(outcomes: Sequence[Outcome]) -> str:
    """The line above the results when a run is too short to judge (see SETTLED); empty otherwise."""
    short = [o.name for o in outcomes if o.too_short]
    if not short:
        return ""
    return f"{len(short)} of {len(outcomes)} runs marked (too short). {TOO_SHORT}"


def _csv(outcomes: Sequence[Outcome]) -> str:
    rows = [o.row() for o in outcomes]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return buffer.getvalue()


def same_input_picture(outcomes: Sequence[Outcome], split: str, path: Path) -> tuple[Path, str] | None:
    """Each evaluated combination's view of the first window of one file of ``split`` (the first file
    every combination has a window of) and its reconstruction; the PNG and that file's path."""
    evaluated = [o for o in outcomes if o.evaluation is not None]
    if not evaluated:
        return None
    loaded = [open_run(o.run_dir) for o in evaluated]
    windows = [m.windows(split, progress=False)[0] for m in loaded]
    common = set.intersection(*({w.source(i) for i in range(len(w))} for w in windows))
    if not common:
        return None
    source = sorted(common)[0]
    panels = []
    for outcome, model, w in zip(evaluated, loaded, windows):
        index = next(i for i in range(len(w)) if w.source(i) == source)
        decoded = reconstruct_examples(model.model, [w[index]])[0]
        lanes = lanes_of(model.converter)
        panels.append(Panel(f"{outcome.name}: the window as its converter reads it",
                            model.converter.from_tensors(w[index].outputs), lanes))
        panels.append(Panel(f"{outcome.name}: reconstruction", model.converter.from_tensors(decoded), lanes))
    quarters = max(window_quarters(m.converter) for m in loaded)
    return plot_rolls(panels, path, quarters, loaded[0].converter.options.steps_per_quarter), source


def write_results(out_dir: str | os.PathLike, outcomes: Sequence[Outcome], refused: Sequence[Refused],
                  budget: Budget, split: str, qpm: float = DEFAULT_QPM, overwrite: bool = False) -> dict[str, Path]:
    """Write results.md, results.csv, loss_curves.png, same_input.png and report.html; returns their paths.
    Any of them already in ``out_dir`` is refused (:class:`~hvae.errors.OutputExistsError`) unless
    ``overwrite``; none is written through a link."""
    out_dir = Path(out_dir)
    for name in RESULTS:
        check_output_file(out_dir / name, overwrite=overwrite, argument="out_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"results.md": out_dir / "results.md", "results.csv": out_dir / "results.csv"}
    write_atomic(paths["results.md"], _markdown(outcomes, refused, budget, split, qpm).encode())
    write_atomic(paths["results.csv"], _csv(outcomes).encode())
    paths["loss_curves.png"] = plot_curves({o.name: RunDir(o.run_dir).metrics() for o in outcomes},
                                           out_dir / "loss_curves.png",
                                           f"{len(outcomes)} combinations, {budget.describe()} each")
    same = same_input_picture(outcomes, split, out_dir / "same_input.png")
    if same is not None:
        paths["same_input.png"] = same[0]
    paths["report.html"] = write_comparison_page(
        out_dir / "report.html", title=f"hvae compare: {budget.describe()} per combination",
        headers=TABLE_HEADERS, rows=table_rows(outcomes), caveat=caveat(outcomes),
        runs=[(o.name, o.report) for o in outcomes], refused=[(r.name, r.reason) for r in refused],
        stopped=[(o.name, o.error) for o in outcomes if o.error], curves=paths["loss_curves.png"],
        same_input=same, split=split)
    return paths
