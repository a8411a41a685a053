"""Working in latent space on MIDI files: reconstruct one, interpolate between two (or across the grid between
four), decode the mean of two, vary one (similar), humanize a quantised drum part, turn a rhythm into drums
(drumify); each writes MIDI files and a piano-roll picture of them.

A MIDI file is read with the model's converter into windows of the model's length; one window is
encoded to μ and decoded free-running (the decoding itself: :mod:`hvae.generation`). User files are read as
the reference reads them at inference (:meth:`hvae.interfaces.Converter.for_user_input`: the groove
converter's inference mode), so any General MIDI drum kit is read (into the same classes, in the same
order, as in training).

Temperature 0 decodes greedily (the most likely class; a hit where p > 0.5); above 0 it draws.

A whole file (``whole=True``; always for drumify) is cut into consecutive windows of the model's bars
(:meth:`hvae.interfaces.Converter.tile`: the last padded with silence), each window encoded and decoded,
and the results joined and trimmed back to the file's length in whole bars, as Magenta Studio's Groove did.

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
import mido
import numpy as np
import torch

from hvae.errors import ConversionError, HvaeError
from hvae.generation import (SLERP, blend, chords_hint, encode_examples, decode_latents, grid_examples,
                             interpolate_examples, reconstruct_examples, similar_examples, takes_chords)
from hvae.interfaces import Converter, Example
from hvae.midifile import concatenate, midi_bytes, write_new
from hvae.music import DEFAULT_QPM, NoteSequence, read_midi
from hvae.options import field_names
from hvae.report.pianoroll import Panel, lanes_of, picture_note, roll_png, window_quarters
from hvae.rundir import LoadedRun

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
        midi = converter.from_tensors(outputs, qpm=self.qpm if qpm is None else qpm)
        numerator, denominator = self.time_signature
        if numerator * 4 == converter.options.quarters_per_bar * denominator:
            midi.time_signature_changes = [miditoolkit.TimeSignature(numerator, denominator, 0)]
        return midi


@dataclasses.dataclass(frozen=True)
class Part(Window):
    """A whole MIDI file as consecutive windows of the model's bars; ``example`` holds all of it, trimmed
    to ``bars`` (its ``length`` steps), ``windows`` the windows the model takes (the last padded)."""

    windows: tuple[Example, ...] = ()
    bars: int = 0  # the file's length in whole bars

    @property
    def label(self) -> str:
        """``<name>``: names the files written from the whole file."""
        return self.name or self.path.stem

    def join(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs ``(K, T, D)`` of the K windows as one sequence ``(S, D)`` of the file's length."""
        return np.concatenate(list(outputs))[:self.example.length]


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
    sequence = _read_sequence(converter, path, drum_channel)
    try:
        examples = converter.convert(sequence)
    except ConversionError as exc:
        raise _unconvertible(converter, path, exc) from None
    if not examples:
        raise ConversionError(f"{path}: no {converter.steps}-step window for converter {converter.name!r}.")
    if index is None:
        index = 0
    elif not 0 <= index < len(examples):
        raise HvaeError(f"{path} gives {len(examples)} window{'s' if len(examples) != 1 else ''} "
                        f"(0 to {len(examples) - 1}); there is no window {index}.")
    return Window(path, index, len(examples), examples[index], name, **_timing(sequence))


def read_part(converter: Converter, path: str | os.PathLike, name: str | None = None,
              drum_channel: str = DRUM_CHANNEL_10, taps: bool = False) -> Part:
    """All of ``path``, however long, as consecutive windows of the converter's bars (see :class:`Part`);
    with ``taps``, every note of every channel is read as a tap on one drum (drumify's input)."""
    path = Path(path)
    if not converter.tiles:
        raise HvaeError(f"Converter {converter.name!r} cannot cut a file into consecutive windows: use one "
                        f"window (--window K) instead of the whole file.")
    sequence = _read_sequence(converter, path, DRUM_CHANNEL_ANY if taps else drum_channel)
    if taps:
        tap = converter.classes[0][0]
        sequence = dataclasses.replace(sequence, notes=[dataclasses.replace(n, pitch=tap) for n in sequence.notes])
    bars = file_bars(path, converter.options.quarters_per_bar)
    try:
        windows = converter.tile(sequence, bars)
    except ConversionError as exc:
        raise _unconvertible(converter, path, exc) from None
    steps = bars * converter.options.quarters_per_bar * converter.options.steps_per_quarter
    whole = Example(*(np.concatenate([getattr(w, field) for w in windows])[:steps]
                      for field in ("inputs", "outputs", "controls")), length=steps)
    return Part(path, 0, 1, whole, name, windows=tuple(windows), bars=bars, **_timing(sequence))


def file_bars(path: str | os.PathLike, quarters_per_bar: int) -> int:
    """The length of the MIDI file ``path`` (its last event: the end of its longest track) in bars of
    ``quarters_per_bar`` quarter notes, rounded up; at least 1."""
    midi = mido.MidiFile(os.fspath(path), clip=True)
    ticks = max(sum(message.time for message in track) for track in midi.tracks)
    return max(1, -(-ticks // (quarters_per_bar * midi.ticks_per_beat)))


def _read_sequence(converter: Converter, path: Path, drum_channel: str) -> NoteSequence:
    """The notes of ``path``; with ``drum_channel`` "any", every note as a drum note."""
    if drum_channel not in DRUM_CHANNELS:
        raise HvaeError(f"Drum channel {drum_channel!r}: give {' or '.join(DRUM_CHANNELS)}.")
    if drum_channel == DRUM_CHANNEL_ANY and lanes_of(converter) is None:
        raise HvaeError(f"--drum-channel {DRUM_CHANNEL_ANY} reads every note as a drum hit; converter "
                        f"{converter.name!r} does not read drums.")
    sequence = read_midi(path)
    if drum_channel == DRUM_CHANNEL_ANY:
        sequence = dataclasses.replace(sequence, notes=[dataclasses.replace(n, is_drum=True) for n in sequence.notes])
    return sequence


def _unconvertible(converter: Converter, path: Path, exc: ConversionError) -> ConversionError:
    """The converter's reason for refusing ``path``, naming the file (and where drums might be)."""
    hint = f" (drums on another channel: --drum-channel {DRUM_CHANNEL_ANY})" if NO_DRUMS in str(exc) else ""
    return ConversionError(f"{path}: no {converter.steps}-step window for converter {converter.name!r}: {exc}{hint}")


def _timing(sequence: NoteSequence) -> dict:
    """A file's first tempo and time signature, and whether its tempo changes (:class:`Window`'s fields)."""
    return {"qpm": sequence.tempos[0][1] if sequence.tempos else DEFAULT_QPM,
            "time_signature": tuple(sequence.time_signatures[0][1:]) if sequence.time_signatures else (4, 4),
            "tempo_changes": len({qpm for _, qpm in sequence.tempos}) > 1}


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


def reconstruct_file(loaded: LoadedRun, path: str | os.PathLike, out_dir: str | os.PathLike, *,
                     window: int | None = None, temperature: float = 0.0, seed: int | None = None,
                     qpm: float | None = None, name: str | None = None,
                     drum_channel: str = DRUM_CHANNEL_10, whole: bool = False) -> Written:
    """Encode one window of ``path`` (with ``whole``, all of it, window by window), decode it, and write it
    as read, its reconstruction and a picture of both into ``out_dir`` (files named after ``name``, default
    the file's stem) at ``qpm`` (default: the file's tempo)."""
    return _reencode(loaded, path, out_dir, window=window, temperature=temperature, seed=seed, qpm=qpm, name=name,
                     drum_channel=drum_channel, suffixes=("original", "reconstruction", "reconstruction"),
                     whole=whole)[2]


def _reencode(loaded: LoadedRun, path: str | os.PathLike, out_dir: str | os.PathLike, *, window: int | None,
              temperature: float, seed: int | None, qpm: float | None, name: str | None, drum_channel: str,
              suffixes: tuple[str, str, str], whole: bool = False,
              taps: bool = False) -> tuple[Window, np.ndarray, Written]:
    """Encode one window of ``path`` to mu and decode it (with ``whole``, every window of the file, joined:
    :func:`read_part`); write it as read and decoded as ``<label>-<suffixes[0]>.mid`` and
    ``<label>-<suffixes[1]>.mid``, and a picture of both as ``<label>-<suffixes[2]>.png``. What was read is
    written once: where an earlier call wrote the same bytes, that file is kept and named, and only the
    decoded one and the picture are new. Returns the window (or part), the decoded outputs ``(S, D)`` and
    what was written."""
    converter = loaded.converter.for_user_input()
    if whole:
        chosen = read_part(converter, path, name, drum_channel, taps)
        outputs = chosen.join(reconstruct_examples(loaded.model, chosen.windows, temperature, seed))
    else:
        chosen = read_window(converter, path, window, name, drum_channel)
        outputs = reconstruct_examples(loaded.model, [chosen.example], temperature, seed)[0]
    given, decoded = chosen.midi(converter, chosen.example.outputs, qpm), chosen.midi(converter, outputs, qpm)
    lanes = lanes_of(converter)
    picture = roll_png([Panel(f"{chosen.label}: as read", given, lanes),
                        Panel(f"{suffixes[1]} ({loaded.name}, step {loaded.step})", decoded, lanes)],
                       len(outputs) / converter.options.steps_per_quarter)
    read = midi_bytes(given)
    before = _written_before(out_dir, chosen.label, f"-{suffixes[0]}.mid", read)
    files = [(f"-{suffixes[1]}.mid", midi_bytes(decoded)), (f"-{suffixes[2]}.png", picture)]
    *midi, png = _write_group(out_dir, chosen.label, files if before else [(f"-{suffixes[0]}.mid", read), *files])
    midi = [before, *midi] if before else midi
    notes = (chosen.note(), chosen.tempo_note(qpm))
    return chosen, outputs, Written(tuple(midi), png, tuple(n for n in notes if n))


def _write_series(out_dir: str | os.PathLike, stem: str, converter: Converter,
                  decoded: Sequence[tuple[str, str, miditoolkit.MidiFile]], before: Sequence[Panel],
                  after: Sequence[Panel] = (), in_a_row: bool = True) -> tuple[list[Path], str | None]:
    """Write each decoded sequence ``(suffix, title, midi)`` as ``<stem><suffix>.mid``, with ``in_a_row``
    all of them one after another as ``<stem>-all.mid``, and a picture ``<stem>.png`` of the panels
    ``before``, the decoded ones and ``after`` (at most :data:`~hvae.report.pianoroll.MAX_PANELS` of them), as
    new files of ``out_dir``. Returns their paths, and a note when the picture draws only some panels."""
    lanes = lanes_of(converter)
    panels = [*before, *(Panel(title, midi, lanes) for _, title, midi in decoded), *after]
    files = [(f"{suffix}.mid", midi_bytes(midi)) for suffix, _, midi in decoded]
    if in_a_row:
        files.append(("-all.mid", midi_bytes(concatenate([midi for *_, midi in decoded], window_quarters(converter)))))
    files.append((".png", roll_png(panels, window_quarters(converter))))
    return _write_group(out_dir, stem, files), picture_note(len(panels), "rolls")


def _as_read(converter: Converter, window: Window, qpm: float | None, at: Window | None = None) -> Panel:
    """A panel of ``window`` as read, at the tempo of ``at`` (default: its own) or ``qpm``."""
    return Panel(f"{window.label}: as read", (at or window).midi(converter, window.example.outputs, qpm),
                 lanes_of(converter))


def _tempo_notes(first: Window, others: Sequence[tuple[str | os.PathLike, Window]], qpm: float | None) -> list[str]:
    """What to tell the user when files at other tempos than ``first`` are written at its tempo."""
    if qpm is not None:
        return []
    return [f"{path} is at {window.qpm:g} qpm, {first.path} at {first.qpm:g}: written at {first.qpm:g} "
            f"(choose with --qpm)." for path, window in others if window.qpm != first.qpm]


def interpolate_files(loaded: LoadedRun, a: str | os.PathLike, b: str | os.PathLike, out_dir: str | os.PathLike,
                      *, steps: int = 8, window_a: int | None = None, window_b: int | None = None,
                      temperature: float = 0.5, seed: int | None = None, qpm: float | None = None,
                      drum_channel: str = DRUM_CHANNEL_10, mode: str = SLERP,
                      chords: str | Sequence[str] | None = None) -> Written:
    """Write the ``steps`` sequences between a window of ``a`` and one of ``b`` (one MIDI file each, one
    of them all in a row, and a picture) into ``out_dir``, at ``qpm`` (default: ``a``'s tempo); ``mode``
    "slerp" (the reference) or "linear" (magenta.js). A chord-conditioned model plays the way over ``chords``
    (``"C G Am F"``)."""
    converter = loaded.converter.for_user_input()
    if chords is None and takes_chords(converter):
        raise HvaeError(f"This model is conditioned on chords: an interpolation between two files plays over a "
                        f"progression{chords_hint(converter)}.")
    controls = None if chords is None else converter.chord_controls(chords)
    start = read_window(converter, a, window_a, drum_channel=drum_channel)
    end = read_window(converter, b, window_b, drum_channel=drum_channel)
    outputs = interpolate_examples(loaded.model, start.example, end.example, steps, temperature, seed, mode,
                                   controls)
    decoded = [(f"-{k:02d}-of-{steps:02d}", f"{k + 1}/{steps}: t = {t:.2f}", start.midi(converter, o, qpm))
               for k, (t, o) in enumerate(zip(np.linspace(0.0, 1.0, steps), outputs))]
    (*paths, picture), shown = _write_series(out_dir, f"{start.label}_to_{end.label}", converter, decoded,
                                             [_as_read(converter, start, qpm)], [_as_read(converter, end, qpm, start)])
    notes = [start.note("--window-a"), end.note("--window-b"), start.tempo_note(qpm),
             *_tempo_notes(start, [(b, end)], qpm), shown]
    return Written(tuple(paths), picture, tuple(n for n in notes if n))


def grid_files(loaded: LoadedRun, corners: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, size: int = 5,
               temperature: float = 0.5, seed: int | None = None, qpm: float | None = None,
               drum_channel: str = DRUM_CHANNEL_10, mode: str = SLERP) -> Written:
    """Write the ``size`` × ``size`` grid between the first windows of four files (Beat Blender's square),
    laid out as magenta.js lays out four inputs: A top left, B bottom left, C top right, D bottom right.
    One MIDI file per cell, ``<stem>-r<row>c<column>.mid`` (0-based, row 0 at the top), one with all cells
    row by row, and a picture, into ``out_dir`` at ``qpm`` (default: A's tempo); ``mode`` "linear" is
    magenta.js's bilinear grid, "slerp" blends along the sphere."""
    if len(corners) != 4:
        raise HvaeError(f"A grid has 4 corners (A top left, B bottom left, C top right, D bottom right); "
                        f"got {len(corners)} file{'s' if len(corners) != 1 else ''}.")
    converter = loaded.converter.for_user_input()
    windows = [read_window(converter, path, drum_channel=drum_channel) for path in corners]
    outputs = grid_examples(loaded.model, [w.example for w in windows], size, temperature, seed, mode)
    cells = [(r, c) for r in range(size) for c in range(size)]
    decoded = [(f"-r{r}c{c}", f"row {r}, column {c}", windows[0].midi(converter, o, qpm))
               for (r, c), o in zip(cells, outputs)]
    stem = "_".join(w.label for w in windows) + f"-grid{size}"
    (*paths, picture), shown = _write_series(out_dir, stem, converter, decoded,
                                             [_as_read(converter, w, qpm, windows[0]) for w in windows])
    notes = [windows[0].tempo_note(qpm), *_tempo_notes(windows[0], list(zip(corners[1:], windows[1:])), qpm), shown]
    if any(w.count > 1 for w in windows):
        notes.insert(0, "Each corner is the first window of its file.")
    return Written(tuple(paths), picture, tuple(dict.fromkeys(n for n in notes if n)))


def mean_file(loaded: LoadedRun, a: str | os.PathLike, b: str | os.PathLike, out_dir: str | os.PathLike,
              *, window_a: int | None = None, window_b: int | None = None, temperature: float = 0.0,
              seed: int | None = None, qpm: float | None = None, drum_channel: str = DRUM_CHANNEL_10,
              mode: str = SLERP) -> Written:
    """Decode the midpoint between the μ of a window of ``a`` and one of ``b`` (on the slerp, or the linear
    mean with ``mode`` "linear"); write it as ``<a>_mean_<b>.mid`` with a picture of the three into
    ``out_dir`` at ``qpm`` (default: ``a``'s tempo)."""
    converter = loaded.converter.for_user_input()
    first = read_window(converter, a, window_a, drum_channel=drum_channel)
    second = read_window(converter, b, window_b, drum_channel=drum_channel)
    mu = encode_examples(loaded.model, [first.example, second.example])
    outputs = decode_latents(loaded.model, blend(mu[0], mu[1], 0.5, mode)[None], temperature, seed)[0]
    decoded = [("", f"mean ({mode})", first.midi(converter, outputs, qpm))]
    (path, picture), _ = _write_series(out_dir, f"{first.label}_mean_{second.label}", converter, decoded,
                                       [_as_read(converter, first, qpm)], [_as_read(converter, second, qpm, first)],
                                       in_a_row=False)
    notes = [first.note("--window-a"), second.note("--window-b"), first.tempo_note(qpm),
             *_tempo_notes(first, [(b, second)], qpm)]
    return Written((path,), picture, tuple(n for n in notes if n))


def check_groove_transfer(loaded: LoadedRun) -> None:
    """Refuse a model that does not take its hits as controls (the groove converter's ``hits_as_controls``)."""
    options = loaded.converter.options
    if loaded.converter.output_kind != "groove" or not getattr(options, "hits_as_controls", False):
        what = (f"groove converter with hits_as_controls={options.hits_as_controls}"
                if "hits_as_controls" in field_names(type(options)) else f"converter {loaded.converter.name!r}")
        raise HvaeError(f"{loaded.name} was trained with the {what}: groove transfer needs a GrooVAE that takes "
                        f"the hits to play as controls (hvae train --preset groovae_2bar_hits_control --data DIR, "
                        f"or -o hits_as_controls=true on a groove preset).")


def groove_transfer_file(loaded: LoadedRun, groove: str | os.PathLike, pattern: str | os.PathLike,
                         out_dir: str | os.PathLike, *, window_groove: int | None = None,
                         window_pattern: int | None = None, temperature: float = 0.0, seed: int | None = None,
                         qpm: float | None = None, drum_channel: str = DRUM_CHANNEL_10) -> Written:
    """Play the hits of a window of ``pattern`` with the feel of one of ``groove``: a GrooVAE that takes its
    hits as controls encodes the groove (with its own hits) and decodes under the pattern's hits. Writes
    ``<pattern>_with_<groove>.mid`` and a picture of the three into ``out_dir`` at ``qpm`` (default: the
    pattern's tempo)."""
    check_groove_transfer(loaded)
    converter = loaded.converter.for_user_input()
    feel = read_window(converter, groove, window_groove, drum_channel=drum_channel)
    hits = read_window(converter, pattern, window_pattern, drum_channel=drum_channel)
    mu = encode_examples(loaded.model, [feel.example])
    outputs = decode_latents(loaded.model, mu, temperature, seed, controls=hits.example.controls)[0]
    decoded = [("", f"{hits.label}'s hits, {feel.label}'s feel", hits.midi(converter, outputs, qpm))]
    (path, picture), _ = _write_series(out_dir, f"{hits.label}_with_{feel.label}", converter, decoded,
                                  [_as_read(converter, hits, qpm), _as_read(converter, feel, qpm, hits)],
                                  in_a_row=False)
    kept = _hits_kept(loaded, hits.example.outputs, outputs)
    notes = [feel.note("--window-groove"), hits.note("--window-pattern"), hits.tempo_note(qpm),
             *_tempo_notes(hits, [(groove, feel)], qpm), kept]
    return Written((path,), picture, tuple(n for n in notes if n))


def _hits_kept(loaded: LoadedRun, pattern: np.ndarray, outputs: np.ndarray) -> str:
    """How many of the pattern's hits (step and drum) the decoded groove plays, in words."""
    wanted, played = _hits(loaded, pattern), _hits(loaded, outputs)
    return (f"Hits: {int((wanted & played).sum())} of the pattern's {int(wanted.sum())} played, "
            f"{int((played & ~wanted).sum())} added.")


def similar_file(loaded: LoadedRun, path: str | os.PathLike, out_dir: str | os.PathLike, *, n: int = 8,
                 similarity: float = 0.8, window: int | None = None, temperature: float = 0.5,
                 seed: int | None = None, qpm: float | None = None, name: str | None = None,
                 drum_channel: str = DRUM_CHANNEL_10, mode: str = SLERP) -> Written:
    """Write ``n`` variations of one window of ``path``: its μ blended with ``n`` draws from the prior
    (``similarity`` 1: the input's reconstruction; 0: prior samples), one MIDI file each
    (``<label>-similar<similarity>-<k>-of-<n>.mid``), all in a row, and a picture, into ``out_dir``."""
    converter = loaded.converter.for_user_input()
    chosen = read_window(converter, path, window, name, drum_channel)
    outputs = similar_examples(loaded.model, chosen.example, n, similarity, temperature, seed, mode)
    decoded = [(f"-{k:02d}-of-{n:02d}", f"{k + 1}/{n}: similarity {similarity:g} ({mode})",
                chosen.midi(converter, o, qpm)) for k, o in enumerate(outputs)]
    (*paths, picture), shown = _write_series(out_dir, f"{chosen.label}-similar{similarity:g}", converter, decoded,
                                             [_as_read(converter, chosen, qpm)])
    notes = (chosen.note(), chosen.tempo_note(qpm), shown)
    return Written(tuple(paths), picture, tuple(n for n in notes if n))


def _check_trained(loaded: LoadedRun, able: bool, option: str, task: str, model: str, command: str,
                   preset: str) -> None:
    """Refuse a model whose converter was not trained with the groove converter's ``option`` (``able``
    False), saying so and naming the model in the box and the preset that do ``task``."""
    if able:
        return
    options = loaded.converter.options
    what = (f"groove converter with {option}={getattr(options, option)}" if option in field_names(type(options))
            else f"converter {loaded.converter.name!r}")
    raise HvaeError(f"{loaded.name} was trained with the {what}: {task} needs a GrooVAE trained with the "
                    f"groove converter's {option}=True, such as the model in the box {model} "
                    f"(hvae {command} {model} IN.mid), or one you train (hvae train --preset {preset} --data DIR).")


def check_humanizer(loaded: LoadedRun) -> None:
    """Refuse a model that was not trained to humanize (the groove converter's ``humanize=True``)."""
    _check_trained(loaded, loaded.converter.humanizes, "humanize", "humanizing", "gmd-humanize-2bar", "humanize",
                   "groovae_2bar_humanize")


def check_drumifier(loaded: LoadedRun) -> None:
    """Refuse a model that was not trained to turn taps into drums (the groove converter's ``tapify=True``)."""
    _check_trained(loaded, loaded.converter.drumifies, "tapify", "drumify", "gmd-drumify-2bar", "drumify",
                   "groovae_2bar_tap_fixed_velocity")


def humanize_file(loaded: LoadedRun, path: str | os.PathLike, out_dir: str | os.PathLike, *,
                  window: int | None = None, temperature: float = 0.0, seed: int | None = None,
                  qpm: float | None = None, name: str | None = None, drum_channel: str = DRUM_CHANNEL_10,
                  whole: bool = False) -> Written:
    """Give one window of a quantised, flat-velocity drum file (with ``whole``, all of it, window by
    window) the velocities and timing the model decodes from its hits; write it as read, humanized, and a
    picture of both into ``out_dir`` (files named after ``name``, default the file's stem)."""
    check_humanizer(loaded)
    chosen, outputs, written = _reencode(loaded, path, out_dir, window=window, temperature=temperature, seed=seed,
                                         qpm=qpm, name=name, drum_channel=drum_channel,
                                         suffixes=("input", "humanized", "humanized"), whole=whole)
    hits_in, hits_out = _hits(loaded, chosen.example.outputs), _hits(loaded, outputs)
    kept = int((hits_in * hits_out).sum())
    agreement = (f"The humanized part keeps {kept} of the {int(hits_in.sum())} input hits and adds "
                 f"{int(hits_out.sum()) - kept}.")
    return dataclasses.replace(written, notes=written.notes + (agreement,))


def drumify_file(loaded: LoadedRun, path: str | os.PathLike, out_dir: str | os.PathLike, *,
                 temperature: float = 0.0, seed: int | None = None, qpm: float | None = None,
                 name: str | None = None) -> Written:
    """Turn the rhythm of ``path`` (every note of every channel: taps on one key, a bass line, a melody, a
    drum part), however long, into a drum groove with a tap-to-drums GrooVAE; write the taps as read
    (``<name>-taps.mid``), the drums (``<name>-drums.mid``) and a picture of both into ``out_dir``."""
    check_drumifier(loaded)
    chosen, outputs, written = _reencode(loaded, path, out_dir, window=None, temperature=temperature, seed=seed,
                                         qpm=qpm, name=name, drum_channel=DRUM_CHANNEL_ANY,
                                         suffixes=("taps", "drums", "drums"), whole=True, taps=True)
    taps, drums = _hits(loaded, chosen.example.outputs), _hits(loaded, outputs)
    tapped = taps.any(axis=1)
    near = np.lib.stride_tricks.sliding_window_view(np.pad(drums.any(axis=1), 1), 3).any(axis=1)
    used = int(drums.any(axis=0).sum())
    agreement = (f"The drums keep {int((tapped & near).sum())} of the {int(tapped.sum())} taps (a hit within a "
                 f"step of each) with {int(drums.sum())} hits on {used} drum{'s' if used != 1 else ''}.")
    return dataclasses.replace(written, notes=written.notes + (agreement,))


def _hits(loaded: LoadedRun, outputs: np.ndarray) -> np.ndarray:
    """The drum hits ``(S, N)`` (bool) of one sequence's outputs ``(S, D)``."""
    return loaded.converter.drum_hits(torch.from_numpy(outputs[None]))[0].numpy() > 0
