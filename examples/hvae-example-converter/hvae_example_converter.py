"""A kick/snare drum roll: the smallest useful hvae converter, written against hvae's public API.

Each step (a sixteenth note at the default 4 steps per quarter) holds two bits: a kick hit
(General MIDI 35 or 36) and a snare hit (37, 38 or 40). A file is read and quantised with
``hvae.read_midi`` and ``hvae.quantize``; only bars of 16 steps are accepted. Windows of
``slice_bars`` bars start on every bar; windows without a hit are dropped. Inputs and
outputs are the same roll, so the output kind is ``"multihot"``.
"""

from __future__ import annotations

import dataclasses

import miditoolkit
import numpy as np

from hvae import ConversionError, Converter, Example, quantize, read_midi
from hvae.hookspecs import hookimpl
from hvae.interfaces import ConverterOptions
from hvae.music import MidiSource, Note, to_midi

CLASS_PITCHES = ((36, 35), (38, 37, 40))  # kick, snare; the first pitch is the one written back
CLASS_OF_PITCH = {pitch: index for index, pitches in enumerate(CLASS_PITCHES) for pitch in pitches}
VELOCITY = 80  # MIDI velocity of the notes from_tensors writes


@dataclasses.dataclass(frozen=True)
class KickSnareOptions(ConverterOptions):
    """``steps_per_quarter`` and ``quarters_per_bar`` are inherited (4 and 4)."""

    slice_bars: int = 2  # window length in bars; a window starts on every bar


class KickSnareConverter(Converter):
    """MIDI drums <-> a two-class (kick, snare) roll of ``slice_bars`` bars."""

    name = "kick-snare"
    Options = KickSnareOptions
    output_kind = "multihot"

    @property
    def steps_per_bar(self) -> int:
        return self.options.steps_per_quarter * self.options.quarters_per_bar

    @property
    def input_depth(self) -> int:
        return len(CLASS_PITCHES)

    @property
    def output_depth(self) -> int:
        return len(CLASS_PITCHES)

    @property
    def steps(self) -> int:
        return self.options.slice_bars * self.steps_per_bar

    def convert(self, source: MidiSource) -> list[Example]:
        ns = quantize(read_midi(source), self.options.steps_per_quarter)
        if ns.steps_per_bar != self.steps_per_bar:
            raise ConversionError(f"{ns.numerator}/{ns.denominator} time: {ns.steps_per_bar:g} steps per bar, "
                                  f"{self.steps_per_bar} needed")
        hits = [(n.start_step, CLASS_OF_PITCH[n.pitch]) for n in ns.notes if n.is_drum and n.pitch in CLASS_OF_PITCH]
        if not hits:
            raise ConversionError("no kick or snare notes")
        bars = max(step for step, _ in hits) // self.steps_per_bar + 1
        roll = np.zeros((bars * self.steps_per_bar, len(CLASS_PITCHES)), dtype=np.float32)  # (steps, 2)
        for step, index in hits:
            roll[step, index] = 1.0
        windows = [roll[start:start + self.steps]
                   for start in range(0, len(roll) - self.steps + 1, self.steps_per_bar)]
        windows = [w for w in windows if w.any()]
        if not windows:
            raise ConversionError(f"kick and snare span fewer than {self.options.slice_bars} bars")
        no_controls = np.zeros((self.steps, 0), dtype=np.float32)
        return [Example(w, w, no_controls, self.steps) for w in windows]

    def attributes(self) -> dict:
        """One attribute of its own for ``hvae attributes`` / ``hvae transform`` (beside hvae's density, ...)."""
        return {"backbeat": ("share of snare hits on beats 2 and 4", self.backbeat)}

    def backbeat(self, outputs: np.ndarray) -> np.ndarray:
        """Per window ``(B, steps, 2)``: the share of its snare hits on beats 2 and 4 (NaN without a snare)."""
        snare = np.asarray(outputs)[..., 1] > 0.5  # (B, steps)
        beat = self.options.steps_per_quarter
        on_backbeat = (np.arange(snare.shape[1]) % self.steps_per_bar) % (2 * beat) == beat
        total = snare.sum(axis=1)
        return np.where(total > 0, (snare & on_backbeat).sum(axis=1) / np.maximum(total, 1), np.nan)

    def from_tensors(self, outputs: np.ndarray, controls: np.ndarray | None = None,
                     qpm: float = 120.0) -> miditoolkit.MidiFile:
        """A drum track with a one-step note (velocity 80) wherever ``outputs`` ``(steps, 2)`` is above 0.5."""
        seconds_per_step = 60.0 / (qpm * self.options.steps_per_quarter)
        notes = [Note(pitch=CLASS_PITCHES[index][0], velocity=VELOCITY, start=step * seconds_per_step,
                      end=(step + 1) * seconds_per_step, is_drum=True)
                 for step, index in zip(*np.nonzero(np.asarray(outputs) > 0.5))]
        return to_midi(notes, qpm=qpm, time_signature=(self.options.quarters_per_bar, 4))


@hookimpl
def hvae_register_converters(register):
    register(KickSnareConverter)
