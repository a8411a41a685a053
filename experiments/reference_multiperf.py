"""The reference's multi-instrument performance windows for tests/test_converter_multiperf.py. Runs in
the reference's environment (Magenta 2.1.4), not hvae's:

    ../shared/reference/speed/setup.sh /tmp/refenv
    /tmp/refenv/bin/python experiments/reference_multiperf.py --out tests/data/multiperf
    /tmp/refenv/bin/python experiments/reference_multiperf.py --out tests/data/multiperf --chords

The windows the reference's MultiInstrumentPerformanceConverter makes, in its order, every window kept
(``max_tensors_per_notesequence`` off), under each of the SETTINGS of tests/multiperf_files.py. A window
is stored as each row's token (the argmax of its one-hot; -1 for a padding row of zeros), ``(W, rows)``
int16, and its segments' lengths ``(W, segments)`` int16; the script checks that inputs equal outputs and
every row is one-hot or zero. A file that gives no window has no key. Keys ``{file stem}/{setting}`` and
``{file stem}/{setting}/lengths``; for the real files also ``{file stem}/{setting}/notes``, what the
reference's from_tensors reads back from the windows (see ``notes``).

- ``reference.npz``: the real trio files tests/data/trio/*.mid (Bach chorale voices over GMD drums) and
  three GMD files (one drum track each: no window at any setting).
- ``random_reference.npz``: the random files of tests/multitrack.py and tests/multiperf_files.py (sustain
  pedals, pedals shared by a track's instruments, up to eleven instruments, dense bars);
  ``multitrack_digest`` and ``multiperf_digest``: each set's sha256.

With ``--chords``, the chord-conditioned converter (``chord_encoding`` a TriadChordOneHotEncoding, chords
inferred by the reference) under each of the CHORD_SETTINGS, the real and the random files in one file,
``chords_reference.npz``; each window's controls also, as each row's triad class (-1: a padding row of
zeros), key ``{file stem}/{setting}/chords``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import note_seq
import numpy as np
from magenta.models.music_vae import data_hierarchical
from note_seq import chords_encoder_decoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import multiperf_files  # noqa: E402  (the random files and the converter settings, shared with the test)
import multitrack  # noqa: E402

GROOVE = ROOT.parent / "shared" / "data" / "groove"


def tokens(window: np.ndarray) -> np.ndarray:
    window = np.asarray(window, dtype=np.int64)
    sums = window.sum(axis=-1)
    assert np.all((sums == 0) | (sums == 1)), "a row is neither one-hot nor zero"
    return np.where(sums == 1, window.argmax(axis=-1), -1).astype(np.int16)


def windows(paths: list[Path], key, with_notes: bool = False, settings: dict | None = None) -> dict[str, np.ndarray]:
    arrays = {}
    for name, options in (settings or multiperf_files.SETTINGS).items():
        options = dict(options)
        if options.pop("chord_encoding", None) == "triad":
            options["chord_encoding"] = chords_encoder_decoder.TriadChordOneHotEncoding()
        converter = data_hierarchical.MultiInstrumentPerformanceConverter(max_tensors_per_notesequence=None,
                                                                          **options)
        for path in sorted(paths):
            tensors = converter.to_tensors(note_seq.midi_file_to_note_sequence(str(path)))
            assert all(np.array_equal(i, o) for i, o in zip(tensors.inputs, tensors.outputs))
            print(f"{path.name}: {len(tensors.outputs)} windows, {name}")
            if tensors.outputs:
                arrays[f"{key(path)}/{name}"] = np.stack([tokens(w) for w in tensors.outputs])
                arrays[f"{key(path)}/{name}/lengths"] = np.stack(tensors.lengths).astype(np.int16)
                if "chord_encoding" in options:
                    arrays[f"{key(path)}/{name}/chords"] = np.stack([tokens(c) for c in tensors.controls])
                if with_notes:
                    arrays[f"{key(path)}/{name}/notes"] = notes(converter, tensors.outputs)
    return arrays


def notes(converter, outputs) -> np.ndarray:
    """The notes the converter's from_tensors reads back from each window, (N, 8) float64: window, instrument,
    program, is_drum, pitch, velocity, start and end (seconds, at 120 qpm), in its order."""
    sequences = converter.from_tensors(np.asarray(outputs, dtype=np.float32))
    return np.array([(w, n.instrument, n.program, n.is_drum, n.pitch, n.velocity, n.start_time, n.end_time)
                     for w, sequence in enumerate(sequences) for n in sequence.notes], dtype=np.float64).reshape(-1, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="tests/data/multiperf")
    parser.add_argument("--chords", action="store_true", help="the chord-conditioned settings only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.chords:
        settings = multiperf_files.CHORD_SETTINGS
        arrays = windows(sorted((ROOT / "tests" / "data" / "trio").glob("*.mid")), lambda p: p.stem,
                         settings=settings)
        with tempfile.TemporaryDirectory() as folder:
            trio_paths = multitrack.write_files(Path(folder) / "trio")
            perf_paths = multiperf_files.write_files(Path(folder) / "perf")
            arrays.update(windows(trio_paths + perf_paths, lambda p: "random_" + p.stem, settings=settings))
            np.savez_compressed(args.out / "chords_reference.npz",
                                multitrack_digest=np.array(multitrack.digest(trio_paths)),
                                multiperf_digest=np.array(multitrack.digest(perf_paths)), **arrays)
        return
    real = windows(sorted((ROOT / "tests" / "data" / "trio").glob("*.mid")), lambda p: p.stem, with_notes=True)
    real.update(windows([GROOVE / f for f in multiperf_files.GMD_FILES], lambda p: "gmd_" + p.stem))
    np.savez_compressed(args.out / "reference.npz", **real)
    with tempfile.TemporaryDirectory() as folder:
        trio_paths = multitrack.write_files(Path(folder) / "trio")
        perf_paths = multiperf_files.write_files(Path(folder) / "perf")
        random = windows(trio_paths + perf_paths, lambda p: p.stem)
        np.savez_compressed(args.out / "random_reference.npz", multitrack_digest=np.array(multitrack.digest(trio_paths)),
                            multiperf_digest=np.array(multitrack.digest(perf_paths)), **random)


if __name__ == "__main__":
    main()
