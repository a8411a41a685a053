"""The reference's trio windows for tests/test_converter_trio.py. Runs in the reference's environment
(Magenta 2.1.4), not hvae's:

    ../shared/reference/speed/setup.sh /tmp/refenv
    /tmp/refenv/bin/python experiments/reference_trio.py --out tests/data/trio

Two fixtures, each the windows the reference's TrioConverter makes, in its order, every window kept
(``max_tensors_per_notesequence`` off). A window is stored as each step's class in each part, ``(W, T, 3)``
int16 (melody, bass, drums: the argmax of each part's one-hot; the script checks that every part of every
step is one-hot); a file that gives no window has no key.

- ``reference.npz``: the real trio files tests/data/trio/*.mid at 16 bars (the reference's trio_16bar
  converter) and 4 bars, gap_bars 2. Keys ``{file stem}/{bars}``.
- ``random_reference.npz``: the random multi-track files of tests/multitrack.py at each of its SETTINGS.
  Keys ``{file stem}/{slice_bars}/{gap_bars}``; ``digest``: the files' sha256.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import note_seq
import numpy as np
from magenta.models.music_vae import data

DEPTHS = (90, 90, 512)


def classes(window: np.ndarray) -> np.ndarray:
    parts = np.split(np.asarray(window, dtype=np.float32), np.cumsum(DEPTHS)[:-1], axis=-1)
    for part in parts:
        assert np.all(part.sum(axis=-1) == 1), "a part of a step is not one-hot"
    return np.stack([part.argmax(axis=-1) for part in parts], axis=-1).astype(np.int16)


def windows(paths: list[Path], settings: list[tuple[int, int]], key) -> dict[str, np.ndarray]:
    arrays = {}
    for bars, gap in settings:
        converter = data.TrioConverter(steps_per_quarter=4, slice_bars=bars, gap_bars=gap,
                                       max_tensors_per_notesequence=None)
        for path in sorted(paths):
            tensors = converter.to_tensors(note_seq.midi_file_to_note_sequence(str(path)))
            assert all(np.array_equal(i, o) for i, o in zip(tensors.inputs, tensors.outputs))
            print(f"{path.name}: {len(tensors.outputs)} windows of {bars} bars, gap {gap}")
            if tensors.outputs:
                arrays[key(path, bars, gap)] = np.stack([classes(w) for w in tensors.outputs])
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="tests/data/trio (holds the real files)")
    args = parser.parse_args()
    real = windows(sorted(args.out.glob("*.mid")), [(16, 2), (4, 2)], lambda p, bars, gap: f"{p.stem}/{bars}")
    np.savez_compressed(args.out / "reference.npz", **real)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import multitrack  # the random files, written here as the test writes them

    with tempfile.TemporaryDirectory() as folder:
        paths = multitrack.write_files(Path(folder))
        random = windows(paths, list(multitrack.SETTINGS), lambda p, bars, gap: f"{p.stem}/{bars}/{gap}")
        np.savez_compressed(args.out / "random_reference.npz", digest=np.array(multitrack.digest(paths)), **random)


if __name__ == "__main__":
    main()
