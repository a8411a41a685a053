"""The groove representation: per grid step and drum class, a hit, a velocity and a timing offset.

A file is quantised to ``steps_per_quarter`` steps; every drum note is folded into one of
the drum classes and the loudest note of each class on each step is kept (the first of
equally loud ones, in file order). A step holds, for D classes (D = 9 by default):

- ``[0, D)`` hits, 1.0 or 0.0;
- ``[D, 2D)`` velocities, MIDI velocity / 127;
- ``[2D, 3D)`` offsets in [-1, 1]: twice the distance from the played onset to its grid
  step, in steps, positive when the note was played *early*.

The sequence is padded with silent steps to a whole bar after the last onset and cut into
windows of ``split_bars`` bars every ``hop_size`` steps. The inputs are the outputs,
optionally flattened (``humanize``, ``tapify``, ``fixed_velocities``), thinned (note
dropout) or stripped of classes (``add_instruments``) so a model learns to restore them.

Where hvae departs from the reference, on purpose:

- Only drum-channel notes are read, and a drum note whose pitch is in no class is skipped.
  The reference reads every note by pitch and fails on one outside its classes; on
  drum-only files whose pitches are all in the classes (all of the Groove MIDI Dataset)
  the two agree.
- Note dropout happens only when ``is_training`` is set; the reference drops notes in
  evaluation too.
- ``max_tensors_per_notesequence`` is honoured (the reference ignores it here).
- ``from_tensors`` clamps a start before zero (an early hit on the first step) to zero and
  writes velocity at least 1, because MIDI can hold neither a negative time nor a note
  of velocity 0.
- With velocity and offset bins and one step per grid step, ``from_tensors`` decodes
  every step; the reference decodes only the first ``steps / D`` of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import miditoolkit
import numpy as np
import torch

from hvae.arguments import tempo
from hvae.errors import ConversionError, HvaeError
from hvae.interfaces import Converter, ConverterOptions, Example
from hvae.music import DEFAULT_QPM, MidiSource, Note, NoteSequence, quantize, read_midi, to_midi
from hvae_converters.drum_pitches import class_names, pitch_classes

TAP_CLASS = 3  # the class tapify writes every tap to (open hi-hat in the 9-class sets)
VELOCITY_BIN_RANGE = (0.0, 1.0)  # velocities binned over this range (after / 127)
OFFSET_BIN_RANGE = (-1.0, 1.0)  # offsets binned over this range
BIN_EDGE_MARGIN = 1e-4  # added to the top bin edge, as the reference does
MIN_DROPOUT_WEIGHT = 0.2  # a note's dropout chance is p * max(this, 1 - velocity / 127)


@dataclasses.dataclass(frozen=True)
class GrooveOptions(ConverterOptions):
    """Options of the groove converter; defaults are the reference's ``groovae_4bar``.

    Inherited: ``steps_per_quarter`` (4), ``quarters_per_bar`` (4, bars must have
    exactly this many quarters), ``max_tensors_per_notesequence`` (None: every window).
    """

    split_bars: int | None = 4  # window length in bars; None: the whole file is one example
    pitch_classes: str = "roland"  # drum classes notes are read into: "roland", "reduced" or "full"
    inference_pitch_classes: str = "reduced"  # classes used when is_inferring; same count as pitch_classes
    is_inferring: bool = False  # the reference's inference mode: read and write inference_pitch_classes
    humanize: bool = False  # inputs keep the hits only: velocities and offsets set to 0
    tapify: bool = False  # inputs: each step's loudest hit alone, on class TAP_CLASS
    add_instruments: tuple[int, ...] = ()  # class indices removed from the inputs (the model adds them)
    num_velocity_bins: int | None = None  # velocities as one-hot bins; None: continuous. Needs num_offset_bins
    num_offset_bins: int | None = None  # offsets as one-hot bins; None: continuous. Needs num_velocity_bins
    split_instruments: bool = False  # one class per step: D times as many steps, one-hot class controls
    hop_size: int | None = None  # grid steps between window starts; None: split_bars bars
    hits_as_controls: bool = False  # the output hits are also given as controls
    fixed_velocities: bool = False  # input velocities set to 0, offsets kept
    max_note_dropout_probability: float | None = None  # training: drop input notes, quieter ones more often
    is_training: bool = False  # False: evaluation (no note dropout, first windows when limited)
    seed: int | None = None  # seed of the random parts (note dropout, window sampling); None: fresh


class GrooveConverter(Converter):
    """MIDI drums <-> per-step (hits, velocities, offsets) for each drum class, as GrooVAE."""

    name = "groove"
    Options = GrooveOptions
    output_kind = "groove"

    def __init__(self, options: GrooveOptions | None = None, **overrides: Any):
        super().__init__(options, **overrides)
        o = self.options
        self._train_classes = pitch_classes(o.pitch_classes)
        self._infer_classes = pitch_classes(o.inference_pitch_classes)
        if len(self._train_classes) != len(self._infer_classes):
            raise HvaeError(
                f"pitch_classes {o.pitch_classes!r} has {len(self._train_classes)} classes and "
                f"inference_pitch_classes {o.inference_pitch_classes!r} has {len(self._infer_classes)}; "
                f"they must have the same number")
        if (o.num_velocity_bins is None) != (o.num_offset_bins is None):
            raise HvaeError("num_velocity_bins and num_offset_bins must be set together")
        if o.hop_size is not None and o.split_bars is None:
            raise HvaeError("hop_size needs split_bars")
        bad = [i for i in o.add_instruments if not 0 <= i < self.num_drums]
        if bad:
            raise HvaeError(f"add_instruments {bad} out of range: classes are 0..{self.num_drums - 1}")
        if o.tapify and self.num_drums <= TAP_CLASS:
            raise HvaeError(f"tapify writes to class {TAP_CLASS}, and there are only {self.num_drums} classes")
        self._rng = np.random.default_rng(o.seed)

    @property
    def num_drums(self) -> int:
        """D, the number of drum classes."""
        return len(self._train_classes)

    @property
    def classes(self) -> tuple[tuple[int, ...], ...]:
        """The pitch classes in use: the inference ones when ``is_inferring``."""
        return self._infer_classes if self.options.is_inferring else self._train_classes

    @property
    def categorical(self) -> bool:
        return self.options.num_velocity_bins is not None

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the drum lanes, in class order (for piano rolls and reports)."""
        return class_names(self.classes)

    def drum_hits(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The hits ``(B, T, D)`` of outputs ``(B, T, 3D)``: the first third of each step above 0.5."""
        return (outputs[..., :outputs.shape[-1] // 3] > 0.5).float()

    def for_user_input(self) -> "GrooveConverter":
        """This converter in the reference's inference mode (``is_inferring``): a user's MIDI is read, and
        MIDI written, in the inference pitch classes."""
        if self.options.is_inferring:
            return self
        return type(self)(dataclasses.replace(self.options, is_inferring=True))

    @property
    def humanizes(self) -> bool:
        """True with ``humanize``: the inputs keep the hits only, so the model restores velocities and timing."""
        return self.options.humanize

    @property
    def drumifies(self) -> bool:
        """True with ``tapify``: the inputs are taps on one drum, so the model turns a rhythm into drums."""
        return self.options.tapify

    @property
    def input_transform(self) -> str | None:
        """What the inputs lack (humanize, tapify, fixed velocities, instruments to add, note dropout)."""
        o, parts = self.options, []
        if o.tapify:
            parts.append("every step's hits tapped on one drum")
        if o.humanize:
            parts.append("velocities and timing removed")
        elif o.fixed_velocities:
            parts.append("velocities removed")
        if o.add_instruments:
            parts.append(f"drums {', '.join(self.class_names[i] for i in o.add_instruments)} removed")
        return "; ".join(parts) or None

    @property
    def output_depth(self) -> int:
        per_drum = 1 + self.options.num_velocity_bins + self.options.num_offset_bins if self.categorical else 3
        return per_drum * (1 if self.options.split_instruments else self.num_drums)

    @property
    def input_depth(self) -> int:
        return self.output_depth

    @property
    def control_depth(self) -> int:
        o = self.options
        hits = (1 if o.split_instruments else self.num_drums) if o.hits_as_controls else 0
        return hits + (self.num_drums if o.split_instruments else 0)

    @property
    def steps_per_bar(self) -> int:
        return self.options.steps_per_quarter * self.options.quarters_per_bar

    @property
    def steps(self) -> int:
        """Steps per example: ``split_bars`` bars of grid steps, times D with ``split_instruments``."""
        if self.options.split_bars is None:
            raise HvaeError("split_bars=None makes examples as long as their file: there is no fixed length")
        return self.options.split_bars * self.steps_per_bar * (self.num_drums if self.options.split_instruments else 1)

    def convert(self, source: MidiSource) -> list[Example]:
        hits, velocities, offsets = self._grid(self._quantized(source))
        inputs = self._inputs(hits, velocities, offsets)
        outputs = self._layout(hits, velocities, offsets)
        controls = self._controls(hits)
        examples = self._windows(inputs, outputs, controls, len(hits) // self.steps_per_bar)
        return self._limit(examples)

    def tile(self, source: MidiSource, bars: int) -> list[Example]:
        """The first ``bars`` bars of ``source`` as consecutive windows of ``split_bars`` bars, the last padded
        with silent steps (no hit, velocity and offset 0); hits on step ``bars`` bars and later left out."""
        o = self.options
        if o.split_bars is None or o.split_instruments:
            raise HvaeError("the groove converter cuts a file into consecutive windows only with split_bars set "
                            "and split_instruments off")
        kept, window = bars * self.steps_per_bar, o.split_bars * self.steps_per_bar
        padded = -(-kept // window) * window
        hits, velocities, offsets = (np.pad(channel[:kept], ((0, padded - len(channel[:kept])), (0, 0)))
                                     for channel in self._grid(self._quantized(source)))
        inputs, outputs = self._inputs(hits, velocities, offsets), self._layout(hits, velocities, offsets)
        controls = self._controls(hits)
        return [_example(inputs[i:i + window], outputs[i:i + window], controls[i:i + window])
                for i in range(0, padded, window)]

    def _quantized(self, source: MidiSource) -> NoteSequence:
        """``source`` quantised to ``steps_per_quarter``; refused when its bars are not this converter's."""
        sequence = quantize(read_midi(source), self.options.steps_per_quarter)
        if sequence.steps_per_bar != self.steps_per_bar:
            raise ConversionError(f"{sequence.numerator}/{sequence.denominator} time: "
                                  f"{sequence.steps_per_bar:g} steps per bar, {self.steps_per_bar} needed")
        return sequence

    def _grid(self, sequence: NoteSequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hits, velocities (÷127) and offsets ([-1, 1]), each ``(S, D)``; S = whole bars of grid steps."""
        drums = [n for n in sequence.notes if n.is_drum]
        if not drums:
            raise ConversionError("no drum notes on MIDI channel 10")
        class_of = np.full(128, -1, dtype=np.int64)
        for index, pitches in enumerate(self.classes):
            class_of[list(pitches)] = index
        pitch = np.array([n.pitch for n in drums], dtype=np.int64)
        drum = class_of[pitch]
        known = drum >= 0
        if not known.any():
            raise ConversionError(f"no drum note is in the {self._class_set_name()} pitch classes "
                                  f"(pitches {', '.join(map(str, sorted(set(pitch.tolist()))))})")
        drum = drum[known]
        step = np.array([n.start_step for n in drums], dtype=np.int64)[known]
        velocity = np.array([n.velocity for n in drums], dtype=np.int64)[known]
        start = np.array([n.start for n in drums], dtype=np.float64)[known]

        # Loudest note per (step, class); among equals, the first in file order.
        order = np.lexsort((np.arange(len(step)), -velocity, drum, step))
        cell = step[order] * self.num_drums + drum[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = cell[1:] != cell[:-1]
        chosen = order[first]

        num_steps = int(np.ceil((step.max() + 1) / self.steps_per_bar)) * self.steps_per_bar
        step_seconds = 60.0 / sequence.qpm / self.options.steps_per_quarter
        shape = (num_steps, self.num_drums)
        hits, velocities, offsets = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        at = (step[chosen], drum[chosen])
        hits[at] = 1.0
        velocities[at] = velocity[chosen] / 127.0
        offsets[at] = (step_seconds * step[chosen] - start[chosen]) / step_seconds * 2.0
        return hits, velocities, offsets

    def _class_set_name(self) -> str:
        o = self.options
        return o.inference_pitch_classes if o.is_inferring else o.pitch_classes

    def _inputs(self, hits: np.ndarray, velocities: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """The encoder's view of the grid, ``(S', input_depth)``, after the input transformations."""
        o = self.options
        in_hits, in_velocities, in_offsets = hits.copy(), velocities.copy(), offsets.copy()
        if o.is_training and o.max_note_dropout_probability is not None:
            probability = self._rng.uniform(0.0, o.max_note_dropout_probability)
            chance = np.maximum(MIN_DROPOUT_WEIGHT, 1.0 - in_velocities) * probability
            keep = 1.0 - self._rng.binomial(1, chance)
            in_hits *= keep
            in_velocities *= keep
            in_offsets *= keep
        if o.tapify:
            rows = np.arange(len(hits))
            loudest = np.argmax(in_velocities, axis=1)
            for channel, source in ((in_hits, hits), (in_velocities, velocities), (in_offsets, offsets)):
                channel[:] = 0.0
                channel[:, TAP_CLASS] = source[rows, loudest]
        if o.humanize:
            in_velocities[:] = 0.0
            in_offsets[:] = 0.0
        if o.fixed_velocities:
            in_velocities[:] = 0.0
        if o.add_instruments:
            removed = list(o.add_instruments)
            for channel in (in_hits, in_velocities, in_offsets):
                channel[:, removed] = 0.0
        return self._layout(in_hits, in_velocities, in_offsets)

    def _layout(self, hits: np.ndarray, velocities: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Concatenate the three ``(S, D)`` channels into ``(S, 3D)``, binned and/or split as configured."""
        o = self.options
        if self.categorical:
            velocities = _one_hot_bins(velocities, VELOCITY_BIN_RANGE, o.num_velocity_bins)
            offsets = _one_hot_bins(offsets, OFFSET_BIN_RANGE, o.num_offset_bins)
        else:
            velocities, offsets = velocities[..., None], offsets[..., None]
        parts = [hits[..., None], velocities, offsets]  # each (S, D, width)
        if o.split_instruments:
            return np.concatenate([p.reshape(len(hits) * self.num_drums, -1) for p in parts], axis=1)
        return np.concatenate([p.reshape(len(hits), -1) for p in parts], axis=1)

    def _controls(self, hits: np.ndarray) -> np.ndarray:
        """Controls ``(S', control_depth)``: the hits and/or the one-hot class of each split step."""
        o = self.options
        rows = len(hits) * (self.num_drums if o.split_instruments else 1)
        parts = []
        if o.hits_as_controls:
            parts.append(hits.reshape(rows, -1))
        if o.split_instruments:
            parts.append(np.tile(np.eye(self.num_drums), (len(hits), 1)))
        return np.concatenate(parts, axis=1) if parts else np.zeros((rows, 0))

    def _windows(self, inputs: np.ndarray, outputs: np.ndarray, controls: np.ndarray,
                 bars: int) -> list[Example]:
        o = self.options
        if o.split_bars is None:
            return [_example(inputs, outputs, controls)]
        scale = self.num_drums if o.split_instruments else 1
        size = o.split_bars * self.steps_per_bar * scale
        hop = (o.hop_size or o.split_bars * self.steps_per_bar) * scale
        starts = range(0, len(outputs) - size + 1, hop)
        if not starts:
            raise ConversionError(f"{bars} bar{'s' if bars != 1 else ''} of drums, {o.split_bars} needed")
        self.check_window_memory(min(len(starts), o.max_tensors_per_notesequence or len(starts)))
        return [_example(inputs[i:i + size], outputs[i:i + size], controls[i:i + size]) for i in starts]

    def _limit(self, examples: list[Example]) -> list[Example]:
        """At most ``max_tensors_per_notesequence``: the first ones, or a random choice when training."""
        limit = self.options.max_tensors_per_notesequence
        if not limit or len(examples) <= limit:
            return examples
        if self.options.is_training:
            picked = np.sort(self._rng.choice(len(examples), size=limit, replace=False))
            return [examples[i] for i in picked]
        return examples[:limit]

    def from_tensors(self, outputs: np.ndarray, controls: np.ndarray | None = None,
                     qpm: float = DEFAULT_QPM) -> miditoolkit.MidiFile:
        """Drum notes from one example's outputs ``(steps, output_depth)``, as MIDI at ``qpm``.

        A note wherever a hit exceeds 0.5, with the first pitch of its class (inference
        classes when ``is_inferring``), velocity ``round(v * 127)`` (at least 1), starting
        ``offset / 2`` steps before its grid step (clamped at 0 s) and one step long.
        ``controls`` are not needed.
        """
        qpm = tempo(qpm)
        outputs = np.asarray(outputs)
        if not np.issubdtype(outputs.dtype, np.floating):
            outputs = outputs.astype(np.float32)
        if outputs.ndim != 2 or outputs.shape[1] != self.output_depth:
            raise ConversionError(f"groove outputs must be (steps, {self.output_depth}); got {outputs.shape}")
        hits, velocities, offsets = self._split_channels(outputs)
        step, drum = np.nonzero(hits > 0.5)
        if self.categorical:
            velocity = (np.argmax(velocities[step, drum], axis=-1) / self.options.num_velocity_bins * 127).astype(int)
            offset = np.argmax(offsets[step, drum], axis=-1) / self.options.num_offset_bins - 0.5
        else:
            velocity = np.clip(np.round(velocities[step, drum] * 127).astype(int), 0, 127)
            offset = np.clip(offsets[step, drum] / 2, -0.5, 0.5)
        step_seconds = 60.0 / qpm / self.options.steps_per_quarter
        start = (step - offset.astype(np.float64)) * step_seconds
        first_pitch = [pitches[0] for pitches in self.classes]
        notes = [Note(pitch=first_pitch[d], velocity=max(int(v), 1), start=max(float(s), 0.0),
                      end=float(s) + step_seconds, is_drum=True)
                 for d, v, s in zip(drum.tolist(), velocity.tolist(), start.tolist())]
        return to_midi(notes, qpm=qpm, time_signature=(self.options.quarters_per_bar, 4),
                       quarters=len(hits) / self.options.steps_per_quarter)

    def _split_channels(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hits ``(S, D)`` and velocities / offsets ``(S, D)``, or ``(S, D, bins)`` when binned."""
        o, drums = self.options, self.num_drums
        widths = (1, o.num_velocity_bins, o.num_offset_bins) if self.categorical else (1, 1, 1)
        if o.split_instruments:
            if len(outputs) % drums:
                raise ConversionError(f"split-instrument outputs need a multiple of {drums} steps; "
                                      f"got {len(outputs)}")
            per_drum = outputs.reshape(len(outputs) // drums, drums, sum(widths))
            parts = np.split(per_drum, np.cumsum(widths)[:-1], axis=-1)
        else:
            parts = [part.reshape(len(outputs), drums, -1)
                     for part in np.split(outputs, np.cumsum(widths)[:-1] * drums, axis=1)]
        hits, velocities, offsets = parts  # each (S, D, width)
        if self.categorical:
            return hits[..., 0], velocities, offsets
        return hits[..., 0], velocities[..., 0], offsets[..., 0]

def _one_hot_bins(values: np.ndarray, value_range: tuple[float, float], bins: int) -> np.ndarray:
    """``(S, D)`` values as ``(S, D, bins)`` one-hots: bin i holds (edge[i-1], edge[i]], bin 0 up to the low end."""
    low, high = value_range
    edges = np.linspace(low, high + BIN_EDGE_MARGIN, bins)
    return np.eye(bins)[np.digitize(values, edges, right=True)]


def _example(inputs: np.ndarray, outputs: np.ndarray, controls: np.ndarray) -> Example:
    return Example(inputs=inputs.astype(np.float32), outputs=outputs.astype(np.float32),
                   controls=controls.astype(np.float32), length=len(outputs))
