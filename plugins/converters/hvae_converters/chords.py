"""Chords for the chord-conditioned melody converter: inferred from the notes, encoded as triads, parsed from text.

Inference (the reference's, from note_seq's chord inference, for files that carry no chord symbols): a quantized
piece is cut into frames of one chord each (two a bar in 4/4 and 6/8, one in 2/2, 2/4 and 3/4); each frame's
notes make a pitch-class profile (seconds each pitch class sounds, unit length); a hidden Markov model over
(key, chord) pairs, 12 keys times 97 chords (no chord, or a root and one of eight kinds), explains the profiles
and the Viterbi path gives each frame its chord. Drum notes and unpitched programs do not count.

Triad encoding (the reference's ``TriadChordOneHotEncoding``), 49 classes::

    0                no chord
    1 + root         major triad (C = 1, C# = 2, ...); also 7 and maj7 chords
    13 + root        minor triad; also m7
    25 + root        augmented triad
    37 + root        diminished triad; also m7b5 (half-diminished)
"""

from __future__ import annotations

import bisect
import functools
import math
import re

import numpy as np

from hvae.errors import ConversionError, HvaeError
from hvae.music import NoteSequence

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # names of inferred roots
MAJOR, MINOR, AUGMENTED, DIMINISHED = range(4)  # triad qualities, in the encoding's order
QUALITY_SUFFIXES = ("", "m", "aug", "dim")  # how a triad class is written back
# The chord kinds inference chooses from: (suffix, pitch classes above the root, the triad it holds)
KINDS = (("", (0, 4, 7), MAJOR), ("m", (0, 3, 7), MINOR), ("+", (0, 4, 8), AUGMENTED), ("dim", (0, 3, 6), DIMINISHED),
         ("7", (0, 4, 7, 10), MAJOR), ("maj7", (0, 4, 7, 11), MAJOR), ("m7", (0, 3, 7, 10), MINOR),
         ("m7b5", (0, 3, 6, 10), DIMINISHED))
NO_CHORD = 0  # the no-chord index, both among inferred chords and among triad classes
CHORDS = 1 + 12 * len(KINDS)  # inferred chords: no chord, then root-major (C, Cm, C+, ..., C#, C#m, ...)
TRIAD_CLASSES = 1 + 4 * 12  # the triad encoding's depth
NO_CHORD_SYMBOL = "N.C."  # the reference's name for no chord

# Inference settings (the reference's defaults)
MAX_CHORDS = 1000  # a piece needing more chords than this gets none: it gives no windows
CHORDS_PER_BAR = {(2, 2): 1, (2, 4): 1, (3, 4): 1, (4, 4): 2, (6, 8): 2}
KEY_CHANGE = 0.001  # probability of a key change between frames
CHORD_CHANGE = 0.5  # probability of a chord change between frames
OUT_OF_KEY = 0.01  # probability of a chord pitch outside the key
CONCENTRATION = 100.0  # how closely a frame's pitches must match its chord's
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
UNPITCHED_PROGRAMS = frozenset(list(range(96, 104)) + list(range(112, 128)))  # GM sound effects, percussive


def chord_name(chord: int) -> str:
    """``"Ebm7"``, ``"N.C."``: the name of an inferred chord index."""
    if chord == NO_CHORD:
        return NO_CHORD_SYMBOL
    root, kind = divmod(chord - 1, len(KINDS))
    return PITCH_NAMES[root] + KINDS[kind][0]


# For each inferred chord index, its triad class
TRIAD_OF_CHORD = np.array([NO_CHORD] + [1 + triad * 12 + root for root in range(12) for _, _, triad in KINDS],
                          dtype=np.int64)


def triad_name(triad: int) -> str:
    """``"Am"``, ``"F#dim"``, ``"N.C."``: the name of a triad class, as the reference decodes it."""
    if triad == NO_CHORD:
        return NO_CHORD_SYMBOL
    quality, root = divmod(triad - 1, 12)
    return ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")[root] + QUALITY_SUFFIXES[quality]


def infer_chords(qns: NoteSequence) -> np.ndarray:
    """The chord in force at each step of a quantized piece, ``(qns.total_steps,)`` inferred chord indices.

    Raises :class:`ConversionError` where the reference cannot infer chords: a meter it has no chord
    rate for, a bar that does not split into whole-step chords, an empty piece, more than ``MAX_CHORDS``.
    """
    path, steps_per_chord, _ = _infer_frames(qns)
    steps = np.minimum(np.arange(qns.total_steps) // steps_per_chord, len(path) - 1)
    return path[steps]


def infer_chord_symbols(qns: NoteSequence) -> list[tuple[float, int]]:
    """The chord changes of a quantized piece as the reference writes them into it, ``(time s, chord index)``:
    one where a frame's chord differs from the one before (the first frame's at 0 s), timed at the frame's
    start ``frame * seconds per chord``. Raises :class:`ConversionError` as :func:`infer_chords`."""
    path, _, seconds_per_chord = _infer_frames(qns)
    changes = np.flatnonzero(np.diff(path, prepend=-1))
    return [(int(frame) * seconds_per_chord, int(path[frame])) for frame in changes]


def _infer_frames(qns: NoteSequence) -> tuple[np.ndarray, int, float]:
    """Each frame's inferred chord ``(frames,)``, the steps and the seconds of a frame."""
    meter = (qns.numerator, qns.denominator)
    if meter not in CHORDS_PER_BAR:
        raise ConversionError(f"chords cannot be inferred in {meter[0]}/{meter[1]} time")
    steps_per_chord = qns.steps_per_bar / CHORDS_PER_BAR[meter]
    if steps_per_chord != round(steps_per_chord):
        raise ConversionError(f"chords cannot be inferred: {steps_per_chord:g} steps per chord")
    steps_per_chord = int(steps_per_chord)
    seconds_per_chord = steps_per_chord / qns.steps_per_second
    frames = int(math.ceil(qns.total_time / seconds_per_chord))
    if frames == 0:
        raise ConversionError("chords cannot be inferred: the piece is empty")
    if frames > MAX_CHORDS:
        raise ConversionError(f"chords cannot be inferred for {frames:,} chords, at most {MAX_CHORDS:,}")
    path = _viterbi(CONCENTRATION * np.dot(_pitch_profiles(qns, seconds_per_chord, frames), _chord_vectors().T))
    return path, steps_per_chord, seconds_per_chord


def chords_at(per_step: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The chords of absolute ``steps`` from :func:`infer_chords`'s ``per_step``; steps past the piece's end
    keep its last chord (no chord for a piece of no steps)."""
    if not len(per_step):
        return np.full(len(steps), NO_CHORD, dtype=per_step.dtype)
    return per_step[np.minimum(steps, len(per_step) - 1)]


def _pitch_profiles(qns: NoteSequence, seconds_per_chord: float, frames: int) -> np.ndarray:
    """``(frames, 12)``: how long each pitch class sounds in each frame, each non-empty row of unit length.
    Times are the notes' own (unquantized) seconds."""
    bounds = (seconds_per_chord * np.arange(1, frames)).tolist()
    x = np.zeros((frames, 12))
    for note in qns.notes:
        if note.is_drum or note.program in UNPITCHED_PROGRAMS:
            continue
        first, last = bisect.bisect_right(bounds, note.start), bisect.bisect_left(bounds, note.end)
        pc = note.pitch % 12
        if first >= last:
            x[first, pc] += note.end - note.start
            continue
        x[first, pc] += bounds[first] - note.start
        for frame in range(first + 1, last):
            x[frame, pc] += bounds[frame] - bounds[frame - 1]
        x[last, pc] += note.end - bounds[last - 1]
    norm = np.linalg.norm(x, axis=1)
    sounding = norm > 0
    x[sounding, :] /= norm[sounding, np.newaxis]
    return x


@functools.lru_cache(maxsize=1)
def _chord_vectors() -> np.ndarray:
    """``(CHORDS, 12)``: each chord's pitch classes as a unit vector (zeros for no chord)."""
    x = np.zeros((CHORDS, 12))
    for chord in range(1, CHORDS):
        root, kind = divmod(chord - 1, len(KINDS))
        x[chord, [(root + p) % 12 for p in KINDS[kind][1]]] = 1
    x[1:, :] /= np.linalg.norm(x[1:, :], axis=1)[:, np.newaxis]
    return x


@functools.lru_cache(maxsize=1)
def _key_chord_probabilities() -> np.ndarray:
    """``(12, CHORDS)``: P(chord | key); each chord pitch outside the key's major scale costs ``OUT_OF_KEY``."""
    inside = np.zeros((12, CHORDS), dtype=np.int32)
    outside = np.zeros((12, CHORDS), dtype=np.int32)
    for key in range(12):
        scale = {(key + p) % 12 for p in MAJOR_SCALE}
        for chord in range(1, CHORDS):
            root, kind = divmod(chord - 1, len(KINDS))
            pitches = {(root + p) % 12 for p in KINDS[kind][1]}
            inside[key, chord], outside[key, chord] = len(pitches & scale), len(pitches - scale)
    p = (1 - OUT_OF_KEY) ** inside * OUT_OF_KEY ** outside
    p /= p.sum(axis=1)[:, np.newaxis]
    return p


@functools.lru_cache(maxsize=1)
def _log_incoming() -> np.ndarray:
    """``(12·CHORDS, 12·CHORDS)`` log P(next key and chord | key and chord), one row per next state (so that
    _viterbi reads each state's predecessors contiguously), states key-major.

    A key change (to any other key alike) draws the next chord from the new key's chords; within a key the
    chord stays with probability ``1 - CHORD_CHANGE`` or moves to a chord drawn from the key's chords, with
    a little of the old chord's probability spread evenly over the others.
    """
    p = _key_chord_probabilities()
    n = CHORDS
    key_of = np.repeat(np.arange(12), n)
    chord_of = np.tile(np.arange(n), 12)
    to_key, to_chord = key_of[:, np.newaxis], chord_of[:, np.newaxis]
    from_key, from_chord = key_of[np.newaxis, :], chord_of[np.newaxis, :]
    change_key = (KEY_CHANGE / 11) * p[to_key, to_chord]
    change_chord = (1 - KEY_CHANGE) * (CHORD_CHANGE * (p[to_key, to_chord] + p[to_key, from_chord] / (n - 1)))
    stay = (1 - KEY_CHANGE) * (1 - CHORD_CHANGE)
    return np.log(np.where(from_key != to_key, change_key, np.where(from_chord != to_chord, change_chord, stay)))


def _viterbi(frame_loglik: np.ndarray) -> np.ndarray:
    """The most likely chord of each frame, ``(F,)``, from each frame's log-likelihood per chord ``(F, CHORDS)``;
    the first frame's key is uniform. Ties go to the lowest state, as the reference's argmax."""
    incoming = _log_incoming()
    key_chord = np.log(_key_chord_probabilities())
    frames = len(frame_loglik)
    loglik = -np.log(12) + key_chord.reshape(-1) + np.tile(frame_loglik[0], 12)
    back = np.zeros((frames, len(incoming)), dtype=np.int64)
    for frame in range(1, frames):
        scores = incoming + loglik[np.newaxis, :]
        back[frame] = scores.argmax(axis=1)
        loglik = scores.max(axis=1) + np.tile(frame_loglik[frame], 12)
    path = [int(np.argmax(loglik))]
    for frame in range(frames - 1, 0, -1):
        path.append(int(back[frame, path[-1]]))
    return np.array(path[::-1], dtype=np.int64) % CHORDS


# Chord symbols as users write them: a root, a kind, an optional bass after "/" (ignored by the encoding)
_SYMBOL = re.compile(r"^([A-G])([#b]*)([^/]*?)(?:/([A-G][#b]*))?$")
_STEP_PITCHES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# kind spellings -> the triad they hold (None: no triad, which the encoding refuses)
_KIND_TRIADS = {
    **dict.fromkeys(("", "maj", "M", "7", "maj7", "M7", "6", "9", "maj9", "M9", "add9", "7b9", "7#9"), MAJOR),
    **dict.fromkeys(("m", "min", "-", "m7", "min7", "-7", "m6", "m9", "m11", "mmaj7", "mM7", "m(maj7)", "madd9"),
                    MINOR),
    **dict.fromkeys(("+", "aug", "+7", "aug7"), AUGMENTED),
    **dict.fromkeys(("o", "dim", "°", "o7", "dim7", "m7b5", "ø", "ø7", "-7b5"), DIMINISHED),
    **dict.fromkeys(("sus", "sus2", "sus4", "7sus4", "5"), None),
}


def parse_chord(symbol: str) -> int:
    """The triad class of a chord symbol such as ``"C"``, ``"F#m7"``, ``"Bbdim"``, ``"G7/B"`` or ``"N.C."``.

    The triad is read from the chord's kind (a seventh chord keeps its triad; the bass is ignored), as the
    reference's triad encoding reads chord symbols. Raises :class:`HvaeError` for a symbol that is not a
    chord, or one without a major, minor, augmented or diminished triad (a suspended chord, a power chord).
    """
    text = symbol.strip()
    if text.upper() in ("N.C.", "NC", "N.C"):
        return NO_CHORD
    match = _SYMBOL.match(text)
    kind = match.group(3) if match else None
    if kind not in _KIND_TRIADS:
        raise HvaeError(f"{symbol!r} is not a chord symbol (write e.g. C, Am, F#m7, Bbdim, G7/B or N.C.)")
    triad = _KIND_TRIADS[kind]
    if triad is None:
        raise HvaeError(f"{symbol!r} has no major, minor, augmented or diminished triad, which the model's "
                        f"chord encoding needs")
    step, accidentals = match.group(1), match.group(2)
    root = (_STEP_PITCHES[step] + accidentals.count("#") - accidentals.count("b")) % 12
    return 1 + triad * 12 + root


def parse_progression(text: str | list[str] | tuple[str, ...]) -> list[int]:
    """Triad classes of a progression: ``"C G Am F"`` (spaces or commas) or a list of symbols."""
    symbols = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    if not symbols:
        raise HvaeError("the chord progression is empty (write e.g. \"C G Am F\")")
    return [parse_chord(s) for s in symbols]


def progression_controls(triads: list[int], steps: int) -> np.ndarray:
    """One-hot controls ``(steps, TRIAD_CLASSES)`` for a progression spread evenly over ``steps``: chord ``i`` of
    ``n`` plays from step ``floor(i·steps/n)``. Four chords over 2 bars give each half a bar."""
    if len(triads) > steps:
        raise HvaeError(f"{len(triads)} chords do not fit in {steps} steps")
    owner = (np.arange(steps) * len(triads)) // steps
    return np.eye(TRIAD_CLASSES, dtype=np.float32)[np.asarray(triads)[owner]]


def transpose_triads(controls: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """One-hot triads ``(B, T, TRIAD_CLASSES)`` with each window's roots moved by ``shift`` ``(B,)`` semitones;
    no chord stays no chord and all-zero (padding) rows stay zero."""
    triads = controls.argmax(axis=-1)  # (B, T)
    quality, root = np.divmod(triads - 1, 12)
    moved = np.where(triads > 0, 1 + quality * 12 + (root + shift[:, None]) % 12, triads)
    return np.eye(TRIAD_CLASSES, dtype=controls.dtype)[moved] * (controls.max(axis=-1) > 0)[..., None]
