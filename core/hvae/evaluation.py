"""Reconstruction quality of a trained model on a data split, measured as the MusicVAE and GrooVAE papers do.

Every window of the split is encoded to μ and decoded from μ twice:

- teacher-forced: the decoder is fed the true previous step; each step's prediction is the loss's most
  likely draw from the decoder's outputs (the most likely class; a hit where p > 0.5, with the predicted
  velocity and offset);
- sampled: the decoder runs free from μ, fed its own most likely draws (temperature 0).

Metrics are pooled over every valid step of every window (not averaged per window):

- ``accuracy`` (one-hot and roll outputs): the fraction of steps decoded exactly right; for outputs of
  several one-hot parts (trios), ``accuracy/NAME`` is each part's (``accuracy/melody``, ``accuracy/bass``,
  ``accuracy/drums``) and ``accuracy`` their mean, as the reference reports its trio models;
- ``hit_precision``, ``hit_recall``, ``hit_f1``: over (step, drum class) cells, for every output whose drum
  hits can be read (the drums converter's class combinations, rolls, groove hits), so converters compare;
- ``velocity_mae`` (groove): mean |predicted - true| velocity in MIDI units (0-127), over the cells where
  both the target and the prediction have a hit;
- ``timing_mae_ms`` (groove): over the same cells, mean |predicted - true| onset in milliseconds. An offset
  o in [-1, 1] puts the onset o/2 steps before its grid step, and a step lasts 60,000 / qpm /
  steps_per_quarter ms (125 ms at the 120 qpm the converters write, 4 steps per quarter), so
  ms = |Δo| / 2 · step ms.

Sample quality (:mod:`hvae.quality`): ``samples`` prior samples (256 by default, temperature 0.5, the
model's raw draws) against as many real windows of the split, feature by feature, as the overlapping
area of their distributions, and their mean; beside it the same figure for real windows of the
training split against the split's (the ceiling a finite set reaches), and for drum models the share of
raw draws whose hits per bar lie in the training windows' 5th to 95th percentile, and the figures after
the draws outside it are drawn again (as ``hvae sample`` does).

Besides these: the mean KL(q(z|x) ‖ N(0, I)) in bits per window, the teacher-forced reconstruction
loss in nats per window (both from μ), and ``agreement``, the fraction of steps on which the two decodings
predict the same output. Early in training a model predicts each step from z and its place alone (for a
100-step demo model: silence or one kick-and-hi-hat pattern, whatever came before), so feeding it the true
previous step or its own changes nothing and both columns are equal to the last digit; the table says so
(from 99 % of the steps alike).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from hvae.data.windows import WindowSet
from hvae.device import resolve_device
from hvae.errors import HvaeError
from hvae.interfaces import Converter
from hvae.model import LN2, MusicVAE, kl_divergence, valid_steps
from hvae.music import DEFAULT_QPM  # the tempo MIDI is written at (the reference's 120 qpm)
from hvae.plausible import DensityRange, draw_plausible, hits_per_bar, plausible_range, reads_hits
from hvae import quality
from hvae.rundir import LoadedRun, open_run

GREEDY = 0.0  # decoding temperature of the metrics: the most likely draw at every step
SAMPLES = 256  # prior samples for the sample quality (MGEval and GrooveEvaluator compare sets of this order)
SAMPLE_TEMPERATURE = 0.5  # their temperature: hvae sample's default
MODES = ("teacher_forced", "sampled")
IGNORED_LATENT = 0.05  # distinct sampled decodings per window below which a model ignores its latent code
SAME_DECODING = 0.99  # agreement from which the table explains why the two columns (nearly) agree
# Metric names, in the order tables show them, with their labels.
METRIC_LABELS = {
    "accuracy": "accuracy",
    "hit_precision": "hit precision",
    "hit_recall": "hit recall",
    "hit_f1": "hit F1",
    "velocity_mae": "velocity MAE (MIDI units)",
    "timing_mae_ms": "timing MAE (ms)",
}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The metrics of one checkpoint on one split (see the module docstring for their definitions)."""

    checkpoint: str  # the checkpoint directory evaluated
    name: str  # the run's name
    step: int  # training steps of the checkpoint
    split: str  # train, validation or test
    data_dir: str  # the MIDI folder the windows came from
    windows: int  # windows evaluated
    output_kind: str  # the converter's: onehot, groove or multihot
    qpm: float  # tempo at which offsets were turned into milliseconds
    step_ms: float  # one grid step at that tempo, in ms
    kl_bits: float  # mean KL(q(z|x) || N(0, I)) per window, bits
    reconstruction_loss: float  # mean teacher-forced reconstruction loss per window from mu, nats
    teacher_forced: Mapping[str, float]  # metric name -> value (the names in METRIC_LABELS that apply)
    sampled: Mapping[str, float]  # the same, decoding free-running from mu
    agreement: float = math.nan  # fraction of steps the two decodings predict alike (drum hits, or classes)
    distinct: float = math.nan  # different sampled decodings over windows: near 0, every input decodes alike
    quality: "SampleQuality | None" = None  # prior samples against the split's windows; None when not asked
    transfer: "SampleQuality | None" = None  # the windows decoded from their own inputs, for a converter with an
    #                                          input transform (humanize, tap-to-drums); None otherwise

    def to_json(self) -> dict[str, Any]:
        return json_safe(dataclasses.asdict(self))

    @property
    def ignores_latent(self) -> bool:
        """Whether nearly every window decodes alike from its mu (under IGNORED_LATENT distinct decodings, of
        a split of more than a few windows): the decoder makes its output from its position alone."""
        return self.windows >= 20 and self.distinct < IGNORED_LATENT

    def flat(self) -> dict[str, float]:
        """Scalars for a table row: ``kl_bits``, ``reconstruction_loss``, ``tf_<metric>``, ``sampled_<metric>``,
        and with sample quality ``quality_<feature>`` (``quality_mean``), ``ceiling_mean``, ``plausible_share``
        and ``redrawn_quality_mean``."""
        row = {"kl_bits": self.kl_bits, "reconstruction_loss": self.reconstruction_loss}
        row.update({f"tf_{k}": v for k, v in self.teacher_forced.items()})
        row.update({f"sampled_{k}": v for k, v in self.sampled.items()})
        for quality_table in (self.quality, self.transfer):
            if quality_table is not None:
                row.update(quality_table.flat())
        return row

    def table(self) -> str:
        """A plain-text table: one metric a line, teacher-forced and sampled side by side."""
        lines = [f"{self.name} (step {self.step}) on the {self.split} split: {self.windows:,} windows "
                 f"of {self.data_dir}",
                 f"{'metric':<28}{'teacher-forced':>16}{'sampled':>12}"]
        for key, label in metric_labels(self.teacher_forced).items():
            lines.append(f"{label:<28}{format_value(self.teacher_forced[key]):>16}"
                         f"{format_value(self.sampled[key]):>12}")
        lines.append(f"{'KL (bits per window)':<28}{format_value(self.kl_bits):>16}")
        lines.append(f"{'reconstruction loss (nats)':<28}{format_value(self.reconstruction_loss):>16}")
        lines.append(f"{'steps decoded alike':<28}{format_value(self.agreement):>16}")
        if self.agreement >= SAME_DECODING:
            lines.append(f"Teacher-forced and sampled decoding predict {self.agreement:.1%} of the steps alike: "
                         f"the model hardly uses the steps before yet (it predicts from z and the position, as "
                         f"early in training), so feeding it the true previous step changes next to nothing. "
                         f"Train longer.")
        if self.ignores_latent:
            lines.append(f"The model ignores its latent code: {self.distinct:.1%} of the windows decode to "
                         f"something of their own (KL {self.kl_bits:.3g} bits); every input comes back nearly "
                         f"alike. Train longer, or lower free_bits or max_beta (-m free_bits=...).")
        if "timing_mae_ms" in self.teacher_forced:
            lines.append(f"Timing at {self.qpm:g} qpm: one step is {self.step_ms:g} ms, an offset of 1 is "
                         f"{self.step_ms / 2:g} ms.")
        for quality_table in (self.quality, self.transfer):
            if quality_table is not None:
                lines += ["", quality_table.table(self.split)]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class SampleQuality:
    """Prior samples against real windows, feature by feature (see :mod:`hvae.quality`)."""

    samples: int  # prior samples drawn (or windows decoded from their inputs)
    real: int  # real windows of the split they are compared with
    temperature: float
    seed: int
    features: Mapping[str, str]  # feature name -> what it measures (with its unit)
    overlaps: Mapping[str, float]  # feature -> overlapping area for the raw draws, and "mean"
    ceiling: Mapping[str, float] | None = None  # the same for real windows of ceiling_split (same N)
    ceiling_split: str | None = None
    plausible_share: float | None = None  # drums: share of raw draws within the training density range
    plausible_range: tuple[float, float] | None = None  # that range, hits per bar
    redrawn: Mapping[str, float] | None = None  # overlaps once the draws outside it are drawn again
    source: str = "prior"  # "prior": samples from z ~ N(0, I); else the converter's input transform: the same
    #                        windows decoded (greedily, from mu) from their inputs that lack it

    def flat(self) -> dict[str, float]:
        if self.source != "prior":
            return {f"transfer_{k}": v for k, v in self.overlaps.items()}
        row = {f"quality_{k}": v for k, v in self.overlaps.items()}
        if self.ceiling is not None:
            row["ceiling_mean"] = self.ceiling["mean"]
        if self.plausible_share is not None:
            row["plausible_share"] = self.plausible_share
        if self.redrawn is not None:
            row["redrawn_quality_mean"] = self.redrawn["mean"]
        return row

    def table(self, split: str) -> str:
        """The per-feature overlaps as plain text, the ceiling beside them."""
        ceiling = self.ceiling is not None
        what = (f"Sample quality: {self.samples} prior samples (temperature {self.temperature:g}, seed "
                f"{self.seed}, raw draws)" if self.source == "prior" else
                f"From the inputs ({self.source}): {self.samples} windows decoded greedily from the mu of their "
                f"inputs")
        lines = [f"{what} against {self.real} real windows of the {split} split; the "
                 f"overlapping area of the two distributions of each feature (1 = indistinguishable)"
                 + (f", and of {self.real} {self.ceiling_split} windows against them (the ceiling)" if ceiling
                    else "") + ".",
                 f"{'feature':<22}{'samples':>10}" + (f"{'ceiling':>10}" if ceiling else "") + "  what it measures"]
        for name, what in self.features.items():
            lines.append(f"{name:<22}{format_value(self.overlaps[name]):>10}"
                         + (f"{format_value(self.ceiling[name]):>10}" if ceiling else "") + f"  {what}")
        lines.append(f"{'mean':<22}{format_value(self.overlaps['mean']):>10}"
                     + (f"{format_value(self.ceiling['mean']):>10}" if ceiling else ""))
        if ceiling and not math.isnan(self.ceiling["mean"]) and self.ceiling["mean"] > 0:
            lines.append(f"The samples reach {format_value(self.overlaps['mean'])} of a possible "
                         f"{format_value(self.ceiling['mean'])} ({self.overlaps['mean'] / self.ceiling['mean']:.0%}).")
        if self.plausible_share is not None:
            low, high = self.plausible_range
            lines.append(f"{self.plausible_share:.1%} of the raw draws have {low:.1f} to {high:.1f} hits per bar "
                         f"(the training windows' 5th to 95th percentile); with the others drawn again, as "
                         f"'hvae sample' does, the mean overlap is {format_value(self.redrawn['mean'])}.")
        return "\n".join(lines)


def metric_labels(metrics: Mapping[str, float]) -> dict[str, str]:
    """The metrics present in ``metrics`` with their labels, in table order: each part's accuracy
    (``accuracy/melody``: "  melody accuracy") right after the overall accuracy."""
    labels = {}
    for key, label in METRIC_LABELS.items():
        if key in metrics:
            labels[key] = label
        if key == "accuracy":
            labels.update({k: f"  {k.split('/', 1)[1]} accuracy" for k in metrics if k.startswith("accuracy/")})
    return labels


def format_value(value: float) -> str:
    """Four significant figures; "n/a" for NaN (a metric with nothing to count, e.g. no hit predicted)."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.4g}"


def json_safe(value: Any) -> Any:
    """``value`` with NaN floats as None, so it is valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class MetricTally:
    """Counts pooled over batches for one decoding mode; :meth:`metrics` turns them into rates."""

    def __init__(self, converter: Converter, step_ms: float):
        self.converter, self.step_ms = converter, step_ms
        self.counts: dict[str, float] = {}

    def _add(self, name: str, value: torch.Tensor) -> None:
        self.counts[name] = self.counts.get(name, 0.0) + float(value)

    def add(self, predicted: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> None:
        """Count one batch: predicted and target outputs ``(B, T, D)``, valid steps ``mask`` ``(B, T)``."""
        kind = self.converter.output_kind
        self._add("steps", mask.sum())
        if kind == "onehot":
            self._add("correct", ((predicted.argmax(-1) == targets.argmax(-1)).float() * mask).sum())
        elif kind == "onehot-parts":
            depths = [depth for _, depth in self.converter.parts]
            for (name, _), part, true in zip(self.converter.parts, predicted.split(depths, -1),
                                             targets.split(depths, -1)):
                self._add(f"correct/{name}", ((part.argmax(-1) == true.argmax(-1)).float() * mask).sum())
        elif kind == "multihot":
            self._add("correct", (((predicted > 0.5) == (targets > 0.5)).all(-1).float() * mask).sum())
        hits, true_hits = self.converter.drum_hits(predicted), self.converter.drum_hits(targets)
        if hits is None:
            return
        valid = mask.unsqueeze(-1)
        both = hits * true_hits * valid  # (B, T, N)
        self._add("true_positives", both.sum())
        self._add("predicted_hits", (hits * valid).sum())
        self._add("true_hits", (true_hits * valid).sum())
        if kind == "groove":
            drums = targets.shape[-1] // 3
            velocity_error = (predicted[..., drums:2 * drums] - targets[..., drums:2 * drums]).abs() * 127.0
            offset_error = (predicted[..., 2 * drums:] - targets[..., 2 * drums:]).abs()
            self._add("velocity_error", (velocity_error * both).sum())
            self._add("offset_error", (offset_error * both).sum())

    def metrics(self) -> dict[str, float]:
        """The rates counted so far (see the module docstring); NaN where there was nothing to count."""
        c, nan = self.counts, float("nan")
        ratio = lambda a, b: c[a] / c[b] if c.get(b) else nan
        result: dict[str, float] = {}
        if "correct" in c:
            result["accuracy"] = ratio("correct", "steps")
        parts = {key.split("/", 1)[1]: ratio(key, "steps") for key in c if key.startswith("correct/")}
        if parts:  # the parts' mean, then each part's
            result["accuracy"] = float(np.mean(list(parts.values())))
            result.update({f"accuracy/{name}": value for name, value in parts.items()})
        if "true_positives" in c:
            precision, recall = ratio("true_positives", "predicted_hits"), ratio("true_positives", "true_hits")
            result["hit_precision"], result["hit_recall"] = precision, recall
            result["hit_f1"] = (2 * c["true_positives"] / (c["predicted_hits"] + c["true_hits"])
                                if c["predicted_hits"] + c["true_hits"] else nan)
        if "velocity_error" in c:
            result["velocity_mae"] = ratio("velocity_error", "true_positives")
            result["timing_mae_ms"] = ratio("offset_error", "true_positives") / 2.0 * self.step_ms
        return result


def step_milliseconds(converter: Converter, qpm: float) -> float:
    """One grid step of ``converter`` at ``qpm``, in ms: 60,000 / qpm / steps_per_quarter."""
    return 60_000.0 / qpm / converter.options.steps_per_quarter


@torch.no_grad()
def evaluate_windows(model: MusicVAE, converter: Converter, windows: WindowSet, batch_size: int = 256,
                     qpm: float = DEFAULT_QPM, progress: bool = True) -> dict[str, Any]:
    """The metrics of ``model`` on every window of ``windows``: ``kl_bits``, ``reconstruction_loss``,
    ``teacher_forced`` and ``sampled`` (dicts of metric name -> value), ``windows``."""
    if len(windows) == 0:
        raise HvaeError(f"The {windows.split} split has no windows to evaluate.")
    if converter.output_kind == "groove" and converter.output_depth % 3:
        raise HvaeError(f"Converter {converter.name!r} writes {converter.output_depth} values a step; evaluation "
                        f"reads groove steps as thirds of hits, velocities and offsets.")
    model.eval()
    device = model.device
    step_ms = step_milliseconds(converter, qpm)
    tallies = {mode: MetricTally(converter, step_ms) for mode in MODES}
    kl_bits = reconstruction = alike = valid = 0.0
    distinct: set[bytes] = set()  # the different sampled decodings (classes, or what is on)
    starts = range(0, len(windows), batch_size)
    for start in tqdm(starts, desc=f"evaluate {windows.split}", unit="batch", disable=not progress,
                      dynamic_ncols=True):
        rows = np.arange(start, min(start + batch_size, len(windows)))
        targets = torch.from_numpy(windows.outputs[rows]).to(device)  # (B, T, D)
        steps = min(targets.shape[1], model.spec.steps)
        targets = targets[:, :steps]
        inputs = torch.from_numpy(windows.inputs[rows]).to(device)[:, :steps]
        controls = windows.controls[rows]
        controls = torch.from_numpy(controls).to(device)[:, :steps] if controls.shape[-1] else None
        lengths = torch.from_numpy(windows.lengths[rows].astype(np.int64)).to(device).clamp(max=steps)
        mask = valid_steps(model.spec, targets, lengths)  # (B, T)
        mu, sigma = model.encode(inputs, lengths, controls)
        kl_bits += float(kl_divergence(mu.float(), sigma.float()).sum()) / LN2
        raw = model.decoder(mu, targets, lengths, controls, sampling_probability=0.0, loss=model.loss)  # (B, T, R)
        loss, _ = model.loss(raw, targets, mask)
        reconstruction += float(loss.sum())
        forced = model.loss.sample_step(raw.reshape(-1, raw.shape[-1]), GREEDY).reshape(targets.shape)
        tallies["teacher_forced"].add(forced.float(), targets, mask)
        sampled = model.decode(mu, GREEDY, controls)[:, :steps]  # (B, T, D)
        tallies["sampled"].add(sampled.float(), targets, mask)
        alike += float((same_steps(converter, forced.float(), sampled.float()) * mask).sum())
        valid += float(mask.sum())
        decoded = sampled.argmax(-1) if converter.output_kind == "onehot" else (sampled > 0.5)
        distinct.update(row.tobytes() for row in decoded.cpu().numpy())
    n = len(windows)
    return {"windows": n, "kl_bits": kl_bits / n, "reconstruction_loss": reconstruction / n,
            "teacher_forced": tallies["teacher_forced"].metrics(), "sampled": tallies["sampled"].metrics(),
            "agreement": alike / valid if valid else math.nan, "distinct": len(distinct) / n}


def same_steps(converter: Converter, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` 1.0 where two decodings ``(B, T, D)`` predict the same step: the same class (one-hot; in
    every part for parts), the same drum hits (rolls, groove), else the same values."""
    if converter.output_kind == "onehot":
        return (a.argmax(-1) == b.argmax(-1)).float()
    if converter.output_kind == "onehot-parts":  # the same class in every part
        return (a == b).all(-1).float()
    hits_a, hits_b = converter.drum_hits(a), converter.drum_hits(b)
    if hits_a is not None:
        return (hits_a == hits_b).all(-1).float()
    return (a == b).all(-1).float()


@torch.no_grad()
def sample_quality(model: MusicVAE, converter: Converter, windows: WindowSet, samples: int = SAMPLES,
                   temperature: float = SAMPLE_TEMPERATURE, seed: int = 0, qpm: float = DEFAULT_QPM,
                   ceiling_windows: WindowSet | None = None, plausible: DensityRange | None = None,
                   batch_size: int = 256) -> SampleQuality:
    """``samples`` prior samples of ``model`` against as many windows of ``windows`` (a seeded choice), feature
    by feature (:mod:`hvae.quality`); with ``ceiling_windows``, as many of those against the same real ones;
    with ``plausible``, the share of draws within that density range and the figures after redrawing.

    A model with controls draws each sample with the controls of one of the chosen real windows."""
    if samples < 2:
        raise HvaeError(f"Sample quality compares distributions of samples: give at least 2, got {samples}.")
    if len(windows) < 2:
        raise HvaeError(f"The {windows.split} split has {len(windows)} window; sample quality needs at least 2.")
    step_ms = step_milliseconds(converter, qpm)
    rows = quality.pick(len(windows), samples, seed)
    real = quality.measure(converter, windows.outputs[rows], step_ms)
    features = quality.features_of(converter)
    model.eval()
    controls = None
    if converter.control_depth:  # one sample for each chosen window, with its controls
        controls, samples = np.asarray(windows.controls[rows]), len(rows)

    def draw(generator_seed: int, redraw: DensityRange | None) -> np.ndarray:
        generator = torch.Generator(device=model.device)
        generator.manual_seed(generator_seed)
        drawn = []
        for start in range(0, samples, batch_size):
            count = min(batch_size, samples - start)
            if redraw is not None and controls is None:
                drawn.append(draw_plausible(model, converter, count, temperature, generator, redraw)[0])
                continue
            part = None if controls is None else torch.from_numpy(controls[start:start + count]).to(model.device)
            drawn.append(model.sample(count, temperature, controls=part, generator=generator).float().cpu().numpy())
        return np.concatenate(drawn)

    raw = draw(seed, None)
    found = _against(converter, real, raw, features, step_ms, ceiling_windows, seed, samples=samples,
                     temperature=temperature)
    if plausible is not None and controls is None and reads_hits(converter):
        share = float(plausible.holds(hits_per_bar(converter, raw)).mean())
        redrawn = quality.overlaps(real, quality.measure(converter, draw(seed, plausible), step_ms), features)
        found = dataclasses.replace(found, plausible_share=share, plausible_range=(plausible.low, plausible.high),
                                    redrawn=redrawn)
    return found


@torch.no_grad()
def transfer_quality(model: MusicVAE, converter: Converter, windows: WindowSet, samples: int = SAMPLES,
                     seed: int = 0, qpm: float = DEFAULT_QPM, ceiling_windows: WindowSet | None = None,
                     batch_size: int = 256) -> SampleQuality:
    """``samples`` windows of ``windows`` (a seeded choice) decoded greedily from the mu of their inputs (which
    lack what ``converter.input_transform`` says), against the same windows as they are, feature by feature:
    how real what the model restores looks (a humanizer's velocities and timing, say)."""
    if len(windows) < 2:
        raise HvaeError(f"The {windows.split} split has {len(windows)} window; the quality needs at least 2.")
    step_ms = step_milliseconds(converter, qpm)
    rows = quality.pick(len(windows), samples, seed)
    features = quality.features_of(converter)
    model.eval()
    decoded = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        controls = windows.controls[chunk]
        decoded.append(model.reconstruct(
            torch.from_numpy(windows.inputs[chunk]), torch.from_numpy(windows.lengths[chunk].astype(np.int64)),
            torch.from_numpy(controls) if controls.shape[-1] else None).float().cpu().numpy())
    real = quality.measure(converter, windows.outputs[rows], step_ms)
    return _against(converter, real, np.concatenate(decoded), features, step_ms, ceiling_windows, seed,
                    samples=len(rows), temperature=GREEDY, source=converter.input_transform)


def _against(converter: Converter, real: Mapping[str, np.ndarray], made: np.ndarray,
             features: Sequence[quality.Feature], step_ms: float, ceiling_windows: WindowSet | None, seed: int,
             **fields: Any) -> SampleQuality:
    """The windows ``made`` ``(N, T, D)`` against the ``real`` windows' features, and the ceiling: as many
    ``ceiling_windows`` (a seeded choice) against the same real ones."""
    count = len(next(iter(real.values())))
    ceiling = None
    if ceiling_windows is not None and len(ceiling_windows) >= 2:
        other = quality.measure(converter, ceiling_windows.outputs[quality.pick(len(ceiling_windows), count, seed)],
                                step_ms)
        ceiling = quality.overlaps(real, other, features)
    return SampleQuality(real=count, seed=seed, ceiling=ceiling,
                         ceiling_split=ceiling_windows.split if ceiling is not None else None,
                         features={f.name: f.description + (f" ({f.unit})" if f.unit else "") for f in features},
                         overlaps=quality.overlaps(real, quality.measure(converter, made, step_ms), features), **fields)


def evaluation_of(loaded: LoadedRun, windows: WindowSet, data_dir: Path, batch_size: int = 256,
                  qpm: float = DEFAULT_QPM, progress: bool = True, samples: int = SAMPLES,
                  temperature: float = SAMPLE_TEMPERATURE, seed: int = 0) -> Evaluation:
    """:func:`evaluate_windows` of a loaded run's model on ``windows`` (of ``data_dir``), and with ``samples``
    (0: none) the :func:`sample_quality` of its prior samples, against the training split's windows as the
    ceiling (the validation split's when ``windows`` are the training split) and the density range
    ``hvae sample`` holds its draws to (:func:`hvae.plausible.plausible_range`)."""
    if len(windows) == 0:
        raise HvaeError(f"The {windows.split} split of {data_dir} has no windows for converter "
                        f"{loaded.converter.name!r}; choose another split.")
    found = evaluate_windows(loaded.model, loaded.converter, windows, batch_size, qpm, progress)
    evaluation = Evaluation(checkpoint=str(loaded.checkpoint.resolve()), name=loaded.name, step=loaded.step,
                            split=windows.split, data_dir=str(data_dir), windows=found["windows"],
                            output_kind=loaded.converter.output_kind, qpm=qpm,
                            step_ms=step_milliseconds(loaded.converter, qpm), kl_bits=found["kl_bits"],
                            reconstruction_loss=found["reconstruction_loss"],
                            teacher_forced=found["teacher_forced"], sampled=found["sampled"],
                            agreement=found["agreement"], distinct=found["distinct"])
    if not samples:
        return evaluation
    try:
        other, _ = loaded.windows("validation" if windows.split == "train" else "train", data_dir, progress)
    except HvaeError:
        other = None
    plausible, _ = plausible_range(loaded)  # what hvae sample holds its draws to
    transfer = None
    if loaded.converter.input_transform is not None:
        transfer = transfer_quality(loaded.model, loaded.converter, windows, samples, seed, qpm, other, batch_size)
    return dataclasses.replace(evaluation, transfer=transfer, quality=sample_quality(
        loaded.model, loaded.converter, windows, samples, temperature, seed, qpm, other, plausible, batch_size))


def evaluate_checkpoint(checkpoint: str | os.PathLike, *, split: str = "test", data_dir: str | os.PathLike | None = None,
                        batch_size: int = 256, qpm: float = DEFAULT_QPM, device: str = "auto",
                        progress: bool = True, samples: int = SAMPLES, temperature: float = SAMPLE_TEMPERATURE,
                        seed: int = 0) -> Evaluation:
    """Evaluate the checkpoint meant by ``checkpoint`` (a run directory, a checkpoint directory or its
    JSON) on ``split`` of its run's data, or of ``data_dir``; with ``samples`` prior samples (0: none)
    at ``temperature`` for the sample quality."""
    loaded = open_run(checkpoint, resolve_device(device))
    windows, folder = loaded.windows(split, data_dir, progress)
    return evaluation_of(loaded, windows, folder, batch_size, qpm, progress, samples, temperature, seed)
