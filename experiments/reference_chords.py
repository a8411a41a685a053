"""The reference's chord-conditioned melody windows for tests/test_converter_chords.py. Runs in the reference's
environment (Magenta 2.1.4), not hvae's:

    ../shared/reference/speed/setup.sh /tmp/refenv
    /tmp/refenv/bin/python experiments/reference_chords.py --maestro ../shared/data/maestro \
        --out tests/data/chords/reference.npz

The converter is the reference's OneHotMelodyConverter with ``chord_encoding=TriadChordOneHotEncoding()``, as in
its cat-mel_2bar_med_chords configuration, every window kept (``max_tensors_per_notesequence`` off). MIDI files
carry no chord symbols, so the reference infers the chords of every piece (note_seq's chord inference). A
window is stored as each step's melody class and chord class, ``(W, T, 2)`` int16 (the argmax of the outputs
and of the controls; the script checks that both are one-hot and that inputs equal outputs). The reference keeps
its windows in a Python set, so their order changes from run to run: they are stored sorted (lexicographically
over the flattened window). A file that gives no window has no key.

Keys ``{setting}/{source}/{file stem}``; sources are ``trio`` (tests/data/trio/*.mid: Bach chorales over GMD
drums), ``edge`` (tests/data/chords/*.mid: 2/2, 6/8, 8/8 and unpitched programs, experiments/chord_test_files.py),
``random`` (the 60 random multi-track files of tests/multitrack.py; ``digest`` is their sha256) and
``maestro`` (the MAESTRO performances of MAESTRO below, read from ``--maestro``; only their windows are stored).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import note_seq
import numpy as np
from magenta.models.music_vae import data

MELODY_DEPTH = 90
CHORD_DEPTH = 49
# name -> the reference's OneHotMelodyConverter arguments besides the chord encoding
SETTINGS = {
    "med_chords": dict(max_bars=100, slice_bars=2, steps_per_quarter=4),  # configs.py: cat-mel_2bar_med_chords
    "4bar_end": dict(max_bars=100, slice_bars=4, steps_per_quarter=4, gap_bars=2.0, add_end_token=True,
                     valid_programs=data.MEL_PROGRAMS),
}
MAESTRO = (  # short performances (chord inference gives up beyond 1,000 chords)
    "2015/MIDI-Unprocessed_R1_D1-1-8_mid--AUDIO-from_mp3_04_R1_2015_wav--4.midi",
    "2015/MIDI-Unprocessed_R1_D1-9-12_mid--AUDIO-from_mp3_10_R1_2015_wav--2.midi",
    "2015/MIDI-Unprocessed_R1_D1-1-8_mid--AUDIO-from_mp3_06_R1_2015_wav--3.midi",
    "2015/MIDI-Unprocessed_R1_D1-1-8_mid--AUDIO-from_mp3_02_R1_2015_wav--5.midi",
    "2015/MIDI-Unprocessed_R2_D1-2-3-6-7-8-11_mid--AUDIO-from_mp3_08_R2_2015_wav--2.midi",
    "2015/MIDI-Unprocessed_R2_D2-12-13-15_mid--AUDIO-from_mp3_13_R2_2015_wav--3.midi",
    "2015/MIDI-Unprocessed_R1_D2-13-20_mid--AUDIO-from_mp3_17_R1_2015_wav--1.midi",
)


def classes(outputs: np.ndarray, controls: np.ndarray, end_token: bool) -> np.ndarray:
    outputs, controls = np.asarray(outputs, np.float32), np.asarray(controls, np.float32)
    assert outputs.shape[1] == MELODY_DEPTH + end_token and controls.shape[1] == CHORD_DEPTH
    assert np.all(outputs.sum(axis=-1) == 1) and np.all(controls.sum(axis=-1) == 1), "a step is not one-hot"
    return np.stack([outputs.argmax(axis=-1), controls.argmax(axis=-1)], axis=-1).astype(np.int16)


def windows(paths: list[Path], source: str) -> dict[str, np.ndarray]:
    arrays = {}
    for setting, options in SETTINGS.items():
        converter = data.OneHotMelodyConverter(chord_encoding=note_seq.TriadChordOneHotEncoding(),
                                               max_tensors_per_notesequence=None, **options)
        end_token = options.get("add_end_token", False)
        for path in sorted(paths):
            tensors = converter.to_tensors(note_seq.midi_file_to_note_sequence(str(path)))
            assert all(np.array_equal(i, o) for i, o in zip(tensors.inputs, tensors.outputs))
            print(f"{setting} {path.name}: {len(tensors.outputs)} windows")
            if tensors.outputs:
                stacked = np.stack([classes(o, c, end_token) for o, c in zip(tensors.outputs, tensors.controls)])
                order = np.lexsort(stacked.reshape(len(stacked), -1).T[::-1])
                arrays[f"{setting}/{source}/{path.stem}"] = stacked[order]
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maestro", type=Path, required=True, help="MAESTRO v3.0.0 (read only here)")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    arrays = windows(sorted((repo / "tests" / "data" / "trio").glob("*.mid")), "trio")
    arrays.update(windows(sorted((repo / "tests" / "data" / "chords").glob("*.mid")), "edge"))
    arrays.update(windows([args.maestro / name for name in MAESTRO], "maestro"))
    sys.path.insert(0, str(repo / "tests"))
    import multitrack  # the random files, written here as the test writes them

    with tempfile.TemporaryDirectory() as folder:
        paths = multitrack.write_files(Path(folder))
        arrays.update(windows(paths, "random"))
        digest = multitrack.digest(paths)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, digest=np.array(digest), **arrays)


if __name__ == "__main__":
    main()
