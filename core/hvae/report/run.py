"""``hvae report RUN_DIR``: one run's page — metrics, loss curves, samples, reconstructions and an
interpolation, as piano rolls with their MIDI, and audio where fluidsynth and a soundfont are installed.

::

    RUN_DIR/report/
        index.html      the page
        metrics.json    the evaluation it shows (see hvae.evaluation)
        img/            loss_curves.png, samples.png, reconstruction-<k>.png, interpolation.png
        midi/           every sequence shown
        audio/          their WAVs, where audio is rendered
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import miditoolkit
import numpy as np

from hvae import arguments
from hvae.data.windows import WindowSet
from hvae.device import resolve_device
from hvae.evaluation import SAMPLES, Evaluation, SampleQuality, evaluation_of, format_value, metric_labels
from hvae.generation import interpolate_examples, reconstruct_examples, write_samples
from hvae.midifile import concatenate, write_midi
from hvae.model import trainable_parameters
from hvae.music import DEFAULT_QPM
from hvae.plausible import plausible_range
from hvae.report import html
from hvae.report.audio import Renderer, find_renderer
from hvae.report.curves import plot_curves
from hvae.report.pianoroll import Panel, lanes_of, picture_note, plot_rolls, window_quarters
from hvae.rundir import LoadedRun, RunDir, open_run
from hvae.safefiles import atomic_directory, refuse_links, write_atomic

PAGE = "index.html"
# What one page shows at most: each sample and reconstruction is a MIDI file, a WAV and a roll on the page, and
# the interpolation one MIDI file and WAV of all its steps (32 four-bar steps: 4 minutes of audio at 120 qpm).
MAX_SAMPLES, MAX_RECONSTRUCTIONS, MAX_INTERPOLATION_STEPS = 64, 32, 32


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """What a run's report shows and how it is made."""

    split: str = "test"  # the split evaluated, and the windows reconstructed and interpolated come from
    data_dir: str | None = None  # MIDI folder to take that split from; None: the run's own data
    samples: int = 4  # sequences drawn from the prior (0: none)
    temperature: float = 0.5  # of the samples and the interpolation
    reconstructions: int = 3  # windows of the split reconstructed, each from a different file where possible
    interpolation_steps: int = 5  # sequences between (and including) two reconstructed windows; 0: none
    seed: int = 0  # seeds the samples and the interpolation's draws
    qpm: float = DEFAULT_QPM  # tempo of the MIDI written, and of timing errors in ms
    audio: bool = True  # render WAVs where fluidsynth and a soundfont are installed
    device: str = "auto"
    batch_size: int = 256  # windows per evaluation batch
    quality_samples: int = SAMPLES  # prior samples drawn for the sample quality (0: none)


class _Media:
    """Puts MIDI files into the report folder and gives the markup to reach them (and hear them)."""

    def __init__(self, folder: Path, page: Path, renderer: Renderer | None):
        self.folder, self.page, self.renderer = folder, page, renderer

    def add(self, midi: miditoolkit.MidiFile, name: str) -> Path:
        return write_midi(midi, self.folder / "midi" / f"{name}.mid")

    def markup(self, items: Sequence[tuple[str, Path]]) -> str:
        """A link to each MIDI file, with an audio player when audio is rendered."""
        parts = []
        for label, path in items:
            if self.renderer is not None:
                wav = self.renderer.render(path, self.folder / "audio" / f"{path.stem}.wav")
                parts.append(html.audio(html.relative(wav, self.page), label))
            parts.append(html.link(html.relative(path, self.page), f"{label} (MIDI)"))
        return " ".join(parts)

    def picture(self, png: Path, alt: str, caption: str, items: Sequence[tuple[str, Path]]) -> str:
        return html.figure(html.relative(png, self.page), alt, caption, self.markup(items))


def pick_windows(windows: WindowSet, count: int) -> list[int]:
    """Up to ``count`` window indices spread over the split, the first window of different files."""
    if count < 1 or len(windows) == 0:
        return []
    _, firsts = np.unique(windows.sources, return_index=True)
    firsts = np.sort(firsts)
    chosen = np.unique(np.linspace(0, len(firsts) - 1, min(count, len(firsts))).round().astype(int))
    return [int(firsts[k]) for k in chosen]


def _header(loaded: LoadedRun) -> list[str]:
    config, m = loaded.config, loaded.model.config
    parameters = sum(p.numel() for p in trainable_parameters(loaded.model))
    lines = [f"<h1>Run {html.escape(loaded.name)}</h1>",
             f"<p class=\"meta\">{html.escape(config.converter)} converter &rarr; {html.escape(m.encoder)} encoder "
             f"&rarr; {html.escape(m.decoder)} decoder &rarr; {html.escape(m.loss)} loss &middot; z {m.z_size} "
             f"&middot; {parameters:,} parameters &middot; {loaded.step:,} steps of batch "
             f"{config.train.batch_size}</p>",
             f"<p class=\"meta\">Data: {html.escape(config.data_dir)}. "
             f"Checkpoint: {html.escape(loaded.checkpoint)}.</p>"]
    if config.force:
        lines.append("<p class=\"forced\">FORCED: the loss does not fit the converter's outputs; this run was "
                     "trained anyway (--force) to show what happens.</p>")
    return lines


def _metrics(evaluation: Evaluation) -> list[str]:
    rows = [(label, format_value(evaluation.teacher_forced[key]), format_value(evaluation.sampled[key]))
            for key, label in metric_labels(evaluation.teacher_forced).items()]
    rows.append(("KL (bits per window)", format_value(evaluation.kl_bits), ""))
    rows.append(("reconstruction loss (nats per window)", format_value(evaluation.reconstruction_loss), ""))
    lines = [f"<h2>Reconstruction on the {html.escape(evaluation.split)} split</h2>",
             f"<p>{evaluation.windows:,} windows, each encoded to &mu; and decoded from it: teacher-forced (fed "
             f"the true previous step) and sampled (free-running on its own most likely draws). Rates are pooled "
             f"over all steps; hits over (step, drum) cells.</p>",
             html.table(("metric", "teacher-forced", "sampled"), rows)]
    if evaluation.ignores_latent:
        lines.append(f"<p class=\"note\">This model ignores its latent code: only {evaluation.distinct:.1%} of the "
                     f"windows decode to something of their own (KL {format_value(evaluation.kl_bits)} bits), so "
                     f"every reconstruction below looks alike. Train longer, or lower free_bits or max_beta.</p>")
    if "timing_mae_ms" in evaluation.teacher_forced:
        lines.append(f"<p class=\"note\">Velocity and timing errors count where both the target and the "
                     f"prediction have a hit. Timing in ms at {evaluation.qpm:g} qpm: one step is "
                     f"{evaluation.step_ms:g} ms and an offset of 1 (the converter's unit) is half a step, "
                     f"{evaluation.step_ms / 2:g} ms.</p>")
    return lines


def _quality(evaluation: Evaluation) -> list[str]:
    if evaluation.quality is None:
        return _left_out("Sample quality", "No sample quality: --quality-samples 0 was given.")
    lines = _quality_table(evaluation, evaluation.quality)
    if evaluation.transfer is not None:
        lines += _quality_table(evaluation, evaluation.transfer)
    return lines


def _quality_table(evaluation: Evaluation, q: SampleQuality) -> list[str]:
    ceiling = q.ceiling is not None
    rows = [(name, format_value(q.overlaps[name])) + ((format_value(q.ceiling[name]),) if ceiling else ()) + (what,)
            for name, what in q.features.items()]
    rows.append(("mean", format_value(q.overlaps["mean"])) + ((format_value(q.ceiling["mean"]),) if ceiling else ())
                + ("",))
    headers = ("feature", "samples") + ((f"ceiling ({q.ceiling_split} windows)",) if ceiling else ()) + \
        ("what it measures",)
    what = (f"{q.samples} samples from the prior (temperature {q.temperature:g}, seed {q.seed}, the model's raw "
            f"draws)" if q.source == "prior" else
            f"{q.samples} windows decoded greedily from the &mu; of their own inputs ({html.escape(q.source)})")
    lines = [f"<h2>{'Sample quality' if q.source == 'prior' else 'Quality of what it restores'}</h2>",
             f"<p>{what} against {q.real} windows of the {html.escape(evaluation.split)} split: per feature, the "
             f"overlapping area of the feature's distribution over the samples and over the real windows (1 = "
             f"indistinguishable). The ceiling: as many real windows of another split against the same ones (two "
             f"finite sets of real music do not reach 1 either).</p>",
             html.table(headers, rows)]
    if q.plausible_share is not None:
        low, high = q.plausible_range
        lines.append(f"<p class=\"note\">{q.plausible_share:.1%} of the raw draws have {low:.1f} to {high:.1f} hits "
                     f"per bar (the training windows' 5th to 95th percentile). With the others drawn again, as "
                     f"<code>hvae sample</code> does, the mean overlap is {format_value(q.redrawn['mean'])}.</p>")
    return lines


def _curves(run: RunDir, folder: Path, media: _Media) -> list[str]:
    records = run.metrics()
    if not records:
        return ["<h2>Training</h2>", "<p class=\"note\">No metrics.jsonl in the run directory.</p>"]
    png = plot_curves({run.path.name: records}, folder / "img" / "loss_curves.png")
    return ["<h2>Training</h2>", media.picture(png, "loss curves", "Loss and KL per logged step.", [])]


def _left_out(title: str, why: str) -> list[str]:
    """A section's heading and a note saying why it has nothing to show."""
    return [f"<h2>{html.escape(title)}</h2>", f"<p class=\"note left-out\">{html.escape(why)}</p>"]


def _samples(loaded: LoadedRun, options: ReportOptions, folder: Path, media: _Media) -> list[str]:
    if options.samples < 1:
        return _left_out("Samples", "No samples: --samples 0 was given.")
    lines = [f"<h2>Samples (temperature {options.temperature:g})</h2>"]
    if loaded.converter.control_depth:
        return lines + ["<p class=\"note\">No samples: this model is conditioned on controls per step, which "
                        "sampling from the prior does not have.</p>"]
    plausible, notes = plausible_range(loaded)
    drawn = write_samples(loaded.model, loaded.converter, folder / "midi", loaded.name, n=options.samples,
                          temperature=options.temperature, seed=options.seed, qpm=options.qpm, plausible=plausible)
    paths = drawn.paths
    lanes = lanes_of(loaded.converter)
    panels = [Panel(f"sample {k + 1}", miditoolkit.MidiFile(str(p)), lanes) for k, p in enumerate(paths)]
    png = plot_rolls(panels, folder / "img" / "samples.png", window_quarters(loaded.converter),
                     loaded.converter.options.steps_per_quarter)
    caption = (f"{len(paths)} sequences decoded from z ~ N(0, I), seed {options.seed}, drawn as hvae sample draws "
               f"them" + (f" (those with a hit density outside the training windows' {plausible.low:.1f} to "
                          f"{plausible.high:.1f} hits per bar drawn again)" if plausible is not None else "")
               + ". " + " ".join(notes + drawn.notes + tuple(filter(None, [picture_note(len(panels))]))))
    return lines + [media.picture(png, "samples", caption, [(f"sample {k + 1}", p) for k, p in enumerate(paths)])]


def _reconstructions(loaded: LoadedRun, windows: WindowSet, chosen: list[int], options: ReportOptions,
                     folder: Path, media: _Media) -> list[str]:
    if not chosen:
        why = ("--reconstructions 0 was given" if options.reconstructions < 1 else
               f"the {windows.split} split has no windows")
        return _left_out("Reconstructions", f"No reconstructions: {why}.")
    converter, lanes = loaded.converter, lanes_of(loaded.converter)
    examples = [windows[i] for i in chosen]
    outputs = reconstruct_examples(loaded.model, examples)
    lines = ["<h2>Reconstructions</h2>",
             f"<p>Windows of the {html.escape(windows.split)} split, each encoded to &mu; and decoded greedily.</p>"]
    for k, (index, example, decoded) in enumerate(zip(chosen, examples, outputs)):
        source = windows.source(index)
        original = converter.from_tensors(example.outputs, qpm=options.qpm)
        rebuilt = converter.from_tensors(decoded, qpm=options.qpm)
        png = plot_rolls([Panel(f"window {index}: {source}", original, lanes), Panel("reconstruction", rebuilt, lanes)],
                         folder / "img" / f"reconstruction-{k + 1}.png", window_quarters(converter),
                         converter.options.steps_per_quarter)
        items = [("original", media.add(original, f"reconstruction-{k + 1}-original")),
                 ("reconstruction", media.add(rebuilt, f"reconstruction-{k + 1}"))]
        lines.append(media.picture(png, f"reconstruction {k + 1}", f"Window {index} of {source}.", items))
    return lines


def _interpolation(loaded: LoadedRun, windows: WindowSet, chosen: list[int], options: ReportOptions,
                   folder: Path, media: _Media) -> list[str]:
    if options.interpolation_steps < 2:
        return _left_out("Interpolation", f"No interpolation: --interpolation-steps {options.interpolation_steps} "
                                          f"was given (an interpolation needs at least its 2 ends).")
    if len(chosen) < 2:
        return _left_out("Interpolation", f"No interpolation: it runs between the first and the last reconstructed "
                                          f"window, and there {'is' if len(chosen) == 1 else 'are'} {len(chosen)} "
                                          f"(--reconstructions 2 or more, on a split of windows from 2 files or more).")
    lines = [f"<h2>Interpolation (temperature {options.temperature:g})</h2>"]
    if loaded.converter.control_depth:
        return lines + ["<p class=\"note\">No interpolation: this model is conditioned on controls per step, "
                        "which the points between two windows do not have.</p>"]
    converter, lanes = loaded.converter, lanes_of(loaded.converter)
    a, b = chosen[0], chosen[-1]
    outputs = interpolate_examples(loaded.model, windows[a], windows[b], options.interpolation_steps,
                                   options.temperature, options.seed)
    steps = len(outputs)
    panels = [Panel(f"A: window {a} ({windows.source(a)})", converter.from_tensors(windows[a].outputs, qpm=options.qpm),
                    lanes)]
    midis = [converter.from_tensors(o, qpm=options.qpm) for o in outputs]
    panels += [Panel(f"t = {t:.2f}", midi, lanes) for t, midi in zip(np.linspace(0.0, 1.0, steps), midis)]
    panels.append(Panel(f"B: window {b} ({windows.source(b)})",
                        converter.from_tensors(windows[b].outputs, qpm=options.qpm), lanes))
    png = plot_rolls(panels, folder / "img" / "interpolation.png", window_quarters(converter),
                     converter.options.steps_per_quarter)
    joined = media.add(concatenate(midis, window_quarters(converter)), "interpolation")
    caption = (f"{steps} sequences decoded from the spherical interpolation between the μ of A and of B "
               f"(t = 0 to 1), one after another in the MIDI file. {picture_note(len(panels), 'rolls') or ''}")
    return lines + [media.picture(png, "interpolation", caption, [("interpolation", joined)])]


def write_run_report(run_dir: str | os.PathLike, options: ReportOptions = ReportOptions(),
                     evaluation: Evaluation | None = None, progress: bool = True) -> Path:
    """Write the report of the run (or checkpoint) at ``run_dir`` into its ``report`` folder (replacing
    the last one) and return its ``index.html``.

    ``evaluation`` is shown instead of evaluating again when given (it must be of the same split). The new
    report is built beside the last one and swapped in whole, under the report's own lock: a second report on
    the same run meanwhile is refused (:class:`~hvae.runlock.RunInUseError`), never mixed in; a training
    going on does not stop it (the report reads its newest whole checkpoint).
    """
    _check(options)
    loaded = open_run(run_dir, resolve_device(options.device))
    refuse_links(loaded.outputs.report)
    with loaded.outputs.report_lock():  # taken before the work, so a report that would be refused does none
        windows, data_dir = loaded.windows(options.split, options.data_dir, progress)
        if evaluation is None:
            evaluation = evaluation_of(loaded, windows, data_dir, options.batch_size, options.qpm, progress,
                                       options.quality_samples, options.temperature, options.seed)
        with atomic_directory(loaded.outputs.report, replace=True) as folder:
            _write_page(loaded, options, evaluation, windows, folder)
    return loaded.outputs.report / PAGE


def _check(options: ReportOptions) -> None:
    """Refuse counts a page cannot show (:data:`MAX_SAMPLES`, ...) before any work."""
    arguments.count(options.samples, "A report's samples", low=0, high=MAX_SAMPLES)
    arguments.count(options.reconstructions, "A report's reconstructions", low=0, high=MAX_RECONSTRUCTIONS)
    arguments.count(options.interpolation_steps, "A report's interpolation steps", low=0, high=MAX_INTERPOLATION_STEPS)
    arguments.count(options.quality_samples, "A report's sample-quality samples", low=0)
    arguments.temperature(options.temperature, greedy=False)
    arguments.tempo(options.qpm)


def _write_page(loaded: LoadedRun, options: ReportOptions, evaluation: Evaluation, windows: WindowSet,
                folder: Path) -> None:
    """Write the report's page, MIDI, pictures and audio into the empty ``folder``."""
    page_path = folder / PAGE
    write_atomic(folder / "metrics.json", (json.dumps(evaluation.to_json(), indent=2) + "\n").encode())
    renderer, audio_note = find_renderer() if options.audio else (None, "Audio is off (--no-audio).")
    media = _Media(folder, page_path, renderer)
    chosen = pick_windows(windows, options.reconstructions)
    body = _header(loaded)
    body.append(f"<p class=\"note\">{html.escape(audio_note)}</p>")
    body += _metrics(evaluation)
    body += _quality(evaluation)
    body += _curves(loaded.dir, folder, media)
    body += _samples(loaded, options, folder, media)
    body += _reconstructions(loaded, windows, chosen, options, folder, media)
    body += _interpolation(loaded, windows, chosen, options, folder, media)
    body.append(f"<p class=\"meta\">{html.link(html.relative(folder / 'metrics.json', page_path), 'metrics.json')}"
                f"</p>")
    write_atomic(page_path, html.page(f"hvae report: {loaded.name}", body).encode())
