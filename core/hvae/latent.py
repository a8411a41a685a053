"""Working in latent space on MIDI files: reconstruct one, interpolate between two, humanize a quantised
drum part; each writes MIDI files and a piano-roll picture of them.

A MIDI file is read with the model's converter into windows of the model's length; one window is
encoded to μ and decoded free-running (the decoding itself: :mod:`hvae.sampling`). User files are read as
the reference reads them at inference (:meth:`hvae.interfaces.Converter.for_user_input`: the groove
converter's inference mode), so any General MIDI drum kit is read (into the same classes, in the same
order, as in training).

Temperature 0 decodes greedily (the most likely class; a hit where p > 0.5); above 0 it draws.

What is written keeps the input's tempo and time signature (a tempo given by the caller wins), lasts
whole bars (a 4-bar window is a 4-bar file), and never replaces a file: a name in use gets ``-2``
(then ``-3``, ...) after the window's label, for every file of the same call.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Sequence

import miditoolkit
import numpy as np
import torch

from hvae.errors import ConversionError, HvaeError
from hvae.interfaces import Converter, Example
from hvae.midifile import concatenate, midi_bytes, write_new
from hvae.music import DEFAULT_QPM, read_midi
from hvae.options import field_names
from hvae.report.pianoroll import Panel, lanes_of, roll_png, window_quarters
from hvae.run import LoadedRun
from hvae.sampling import interpolate_examples, reconstruct_examples

DRUM_CHANNEL_10, DRUM_CHANNEL_ANY = "10", "any"
DRUM_CHANNELS = (DRUM_CHANNEL_10, DRUM_CHANNEL_ANY)  # where drums are read from: General MIDI's channel, or all
NO_DRUMS = "no drum notes on MIDI channel 10"  # the drum converters' reason for a file without drums


@dataclasses.dataclass(frozen=True)
class Window:
    """One window of a MIDI file, as the converter reads it."""

    path: Path  # the MIDI file
    index: int  # which of its windows (0-based)
    count: int  # how many windows the file gives
    example: Example
    name: str | None = None  # what names the files written from it; default: the file's stem
    qpm: float = DEFAULT_QPM  # the file's tempo, quarter notes per minute (its first)
    time_signature: tuple[int, int] = (4, 4)  # the file's (numerator, denominator) (its first)
    tempo_changes: bool = False  # the file has more than one tempo (its first is written)

    @property
    def label(self) -> str:
        """``<name>-w<index>``: names the files written from this window."""
        return f"{self.name or self.path.stem}-w{self.index}"

    def note(self, option: str = "--window") -> str | None:
        """What to tell the user when the file gives several windows; None when it gives one."""
        if self.count == 1:
            return None
        return (f"{self.path} gives {self.count} windows; using window {self.index} "
                f"(choose another with {option} K, 0 to {self.count - 1}).")

    def tempo_note(self, qpm: float | None) -> str | None:
        """What to tell the user when the file's tempo changes and none was given; None otherwise."""
        if qpm is not None or not self.tempo_changes:
            return None
        return f"{self.path} changes tempo; written at its first, {self.qpm:g} qpm (choose one with --qpm)."

    def midi(self, converter: Converter, outputs: np.ndarray, qpm: float | None = None) -> miditoolkit.MidiFile:
        """``outputs`` of this window's length as MIDI at ``qpm`` (default: the file's tempo) in the
        file's time signature (where its bars are as long as the converter's: 2/2 for 4/4, say)."""
        midi = converter.from_tensors(outputs, qpm=qpm or self.qpm)
        numerator, denominator = self.time_signature
        if numerator * 4 == converter.options.quarters_per_bar * denominator:
            midi.time_signature_changes = [miditoolkit.TimeSignature(numerator, denominator, 0)]
        return midi


@dataclasses.dataclass(frozen=True)
class Written:
    """What a latent-space command wrote, and what to tell the user about it."""

    midi: tuple[Path, ...]  # MIDI files, in order
    picture: Path  # the piano-roll PNG
    notes: tuple[str, ...]  # messages for the user (several windows, hits kept)


def read_window(converter: Converter, path: str | os.PathLike, index: int | None = None,
                name: str | None = None, drum_channel: str = DRUM_CHANNEL_10) -> Window:
    """Window ``index`` (default: the first) of ``path``; one-line errors that name the file.

    ``drum_channel`` "any" reads the notes of every channel as drums (files from DAWs that put drums on
    channel 1); the default, "10", only channel 10's, as General MIDI and the reference do."""
    path = Path(path)
    if drum_channel not in DRUM_CHANNELS:
        raise HvaeError(f"Drum channel {drum_channel!r}: give {' or '.join(DRUM_CHANNELS)}.")
    if drum_channel == DRUM_CHANNEL_ANY and lanes_of(converter) is None:
        raise HvaeError(f"--drum-channel {DRUM_CHANNEL_ANY} reads every note as a drum hit; converter "
                        f"{converter.name!r} does not read drums.")
    sequence = read_midi(path)
    if drum_channel == DRUM_CHANNEL_ANY:
        sequence = dataclasses.replace(sequence, notes=[dataclasses.replace(n, is_drum=True) for n in sequence.notes])
    try:
        examples = converter.convert(sequence)
    except ConversionError as exc:
        hint = f" (drums on another channel: --drum-channel {DRUM_CHANNEL_ANY})" if NO_DRUMS in str(exc) else ""
        raise ConversionError(f"{path}: no {converter.steps}-step window for converter {converter.name!r}: "
                              f"{exc}{hint}") from None
    if not examples:
        raise ConversionError(f"{path}: no {converter.steps}-step window for converter {converter.name!r}.")
    if index is None:
        index = 0
    elif not 0 <= index < len(examples):
        raise HvaeError(f"{path} gives {len(examples)} window{'s' if len(examples) != 1 else ''} "
                        f"(0 to {len(examples) - 1}); there is no window {index}.")
    tempos = {qpm for _, qpm in sequence.tempos}
    return Window(path, index, len(examples), examples[index], name,
                  qpm=sequence.tempos[0][1] if sequence.tempos else DEFAULT_QPM,
                  time_signature=tuple(sequence.time_signatures[0][1:]) if sequence.time_signatures else (4, 4),
                  tempo_changes=len(tempos) > 1)


def _numbered(label: str, attempt: int, suffix: str) -> str:
    """``<label><suffix>`` for the first attempt, ``<label>-<attempt><suffix>`` for later ones."""
    return f"{label}{'' if attempt == 1 else f'-{attempt}'}{suffix}"


def _write_group(out_dir: str | os.PathLike, label: str, files: Sequence[tuple[str, bytes]]) -> list[Path]:
    """Files ``<label><suffix>`` with their bytes, as new files of ``out_dir``: under ``<label>-2<suffix>``
    (and so on) for all of them when any name is taken."""
    return write_new(out_dir, [data for _, data in files],
                     lambda attempt: [_numbered(label, attempt, suffix) for suffix, _ in files])


def _written_before(out_dir: str | os.PathLike, label: str, suffix: str, data: bytes) -> Path | None:
    """The file ``<label>[-N]<suffix>`` of ``out_dir`` that holds ``data`` already, if any: the window
    as read that an earlier call wrote, found again."""
    for attempt in itertools.count(1):
        path = Path(out_dir) / _numbered(label, attempt, suffix)
        if not os.path.lexists(path):
            return None
        if path.is_file() and not path.is_symlink() and path.stat().st_size == len(data) and \
                path.read_bytes() == data:
            return path
    raise AssertionError("unreachable")


def reconstruct_file(loaded: LoadedRun, path: str | os.PathLike, out_dir: str | os.PathLike,
                     window: int | None = None, temperature: float = 0.0, seed: int | None = None,
                     qpm: float | None = None, name: str | None = None,
                     drum_channel: str = DRUM_CHANNEL_10) -> Written:
    """Encode one window of ``path``, decode it, and write the window as read, its reconstruction and
    a picture of both into ``out_dir`` (files named after ``name``, default the file's stem) at ``qpm``
    (default: the file's tempo)."""
    return _reencode(loaded, path, out_dir, window, temperature, seed, qpm, name, drum_channel,
                     ("original", "reconstruction", "reconstruction"))[2]


def _reencode(loaded: LoadedRun, path: str | os.PathLike, out_dir: str | os.PathLike, window: int | None,
              temperature: float, seed: int | None, qpm: float | None, name: str | None, drum_channel: str,
              suffixes: tuple[str, str, str]) -> tuple[Window, np.ndarray, Written]:
    """Encode one window of ``path`` to mu and decode it; write the window as read and the decoded
    one as ``<label>-<suffixes[0]>.mid`` and ``<label>-<suffixes[1]>.mid``, and a picture of both as
    ``<label>-<suffixes[2]>.png``. The window as read is written once: where an earlier call wrote the
    same bytes, that file is kept and named, and only the decoded one and the picture are new.
    Returns the window, the decoded outputs and what was written."""
    converter = loaded.converter.for_user_input()
    chosen = read_window(converter, path, window, name, drum_channel)
    outputs = reconstruct_examples(loaded.model, [chosen.example], temperature, seed)[0]
    given, decoded = chosen.midi(converter, chosen.example.outputs, qpm), chosen.midi(converter, outputs, qpm)
    lanes = lanes_of(converter)
    picture = roll_png([Panel(f"{chosen.label}: as read", given, lanes),
                        Panel(f"{suffixes[1]} ({loaded.name}, step {loaded.step})", decoded, lanes)],
                       window_quarters(converter))
    read = midi_bytes(given)
    before = _written_before(out_dir, chosen.label, f"-{suffixes[0]}.mid", read)
    files = [(f"-{suffixes[1]}.mid", midi_bytes(decoded)), (f"-{suffixes[2]}.png", picture)]
    *midi, png = _write_group(out_dir, chosen.label, files if before else [(f"-{suffixes[0]}.mid", read), *files])
    midi = [before, *midi] if before else midi
    notes = (chosen.note(), chosen.tempo_note(qpm))
    return chosen, outputs, Written(tuple(midi), png, tuple(n for n in notes if n))


def interpolate_files(loaded: LoadedRun, a: str | os.PathLike, b: str | os.PathLike, out_dir: str | os.PathLike,
                      steps: int = 8, window_a: int | None = None, window_b: int | None = None,
                      temperature: float = 0.5, seed: int | None = None, qpm: float | None = None,
                      drum_channel: str = DRUM_CHANNEL_10) -> Written:
    """Write the ``steps`` sequences between a window of ``a`` and one of ``b`` (one MIDI file each, one
    of them all in a row, and a picture) into ``out_dir``, at ``qpm`` (default: ``a``'s tempo)."""
    converter = loaded.converter.for_user_input()
    start = read_window(converter, a, window_a, drum_channel=drum_channel)
    end = read_window(converter, b, window_b, drum_channel=drum_channel)
    outputs = interpolate_examples(loaded.model, start.example, end.example, steps, temperature, seed)
    midis = [start.midi(converter, o, qpm) for o in outputs]
    lanes = lanes_of(converter)
    panels = [Panel(f"{start.label}: as read", start.midi(converter, start.example.outputs, qpm), lanes)]
    panels += [Panel(f"{k + 1}/{steps}: t = {t:.2f}", midi, lanes)
               for k, (t, midi) in enumerate(zip(np.linspace(0.0, 1.0, steps), midis))]
    panels.append(Panel(f"{end.label}: as read", start.midi(converter, end.example.outputs, qpm), lanes))
    files = [(f"-{k:02d}-of-{steps:02d}.mid", midi_bytes(midi)) for k, midi in enumerate(midis)]
    files.append(("-all.mid", midi_bytes(concatenate(midis, window_quarters(converter)))))
    files.append((".png", roll_png(panels, window_quarters(converter))))
    *paths, picture = _write_group(out_dir, f"{start.label}_to_{end.label}", files)
    notes = [start.note("--window-a"), end.note("--window-b"), start.tempo_note(qpm)]
    if qpm is None and end.qpm != start.qpm:
        notes.append(f"{b} is at {end.qpm:g} qpm, {a} at {start.qpm:g}: written at {start.qpm:g} (choose with --qpm).")
    return Written(tuple(paths), picture, tuple(n for n in notes if n))


def check_humanizer(loaded: LoadedRun) -> None:
    """Refuse a model that was not trained to humanize (the groove converter's ``humanize=True``)."""
    if loaded.converter.humanizes:
        return
    options = loaded.converter.options
    what = (f"groove converter with humanize={options.humanize}" if "humanize" in field_names(type(options))
            else f"converter {loaded.converter.name!r}")
    raise HvaeError(f"{loaded.name} was trained with the {what}: humanizing needs a GrooVAE trained with the "
                    f"groove converter's humanize=True, such as the model in the box gmd-humanize-2bar "
                    f"(hvae humanize gmd-humanize-2bar IN.mid), or one you train (hvae train --preset "
                    f"groovae_2bar_humanize --data DIR).")


def humanize_file(loaded: LoadedRun, path: str | os.PathLike, out_dir: str | os.PathLike,
                  window: int | None = None, temperature: float = 0.0, seed: int | None = None,
                  qpm: float | None = None, name: str | None = None, drum_channel: str = DRUM_CHANNEL_10) -> Written:
    """Give one window of a quantised, flat-velocity drum file the velocities and timing the model
    decodes from its hits; write it as read, humanized, and a picture of both into ``out_dir``
    (files named after ``name``, default the file's stem)."""
    check_humanizer(loaded)
    chosen, outputs, written = _reencode(loaded, path, out_dir, window, temperature, seed, qpm, name,
                                         drum_channel, ("input", "humanized", "humanized"))
    converter = loaded.converter.for_user_input()
    hits_in = converter.drum_hits(torch.from_numpy(chosen.example.outputs[None]))[0]
    hits_out = converter.drum_hits(torch.from_numpy(outputs[None]))[0]
    kept = int((hits_in * hits_out).sum())
    agreement = (f"The humanized part keeps {kept} of the {int(hits_in.sum())} input hits and adds "
                 f"{int(hits_out.sum()) - kept}.")
    return dataclasses.replace(written, notes=written.notes + (agreement,))
