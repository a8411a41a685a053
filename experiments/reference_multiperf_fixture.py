"""Make a checkpoint of the reference's hier-multiperf_vel_1bar model at small sizes, with what the reference
computes from it on real multi-instrument windows. Runs in the reference's environment, not hvae's:

    ../shared/reference/speed/setup.sh /tmp/refenv
    /tmp/refenv/bin/python experiments/reference_multiperf_fixture.py --out tests/data/reference/hier-multiperf_1bar
    /tmp/refenv/bin/python experiments/reference_multiperf_fixture.py --chords \
        --out tests/data/reference/hier-multiperf_chords_1bar

The model: configs.py's hier-multiperf_vel_1bar_med, MusicVAE(HierarchicalLstmEncoder(BidirectionalLstmEncoder,
[64, 8]), HierarchicalLstmDecoder(CategoricalLstmDecoder(), [8, 64], disable_autoregression=True)), with its
hyperparameters (the reference's defaults: no free bits, beta 1) at small sizes: encoder 16 units a level,
conductor and decoder 3x16, z 8. The windows: the first two the preset's converter (the reference's
MultiInstrumentPerformanceConverter) makes of each trio file tests/data/trio/*.mid that gives any, eight in
all; ``lengths`` are the converter's, one per instrument segment, (8, 8).

Beside the TensorFlow checkpoint (``tf/``) the same variables as a magenta.js checkpoint folder (``js/``:
config.json naming its MultitrackConverter, weights_manifest.json and one float32 shard), written here from the
checkpoint with TensorFlow's reader, the layout of ../shared/reference/magenta-checkpoints/*/js.

With ``--chords``, hier-multiperf_vel_1bar_med_chords: the converter infers each file's chords and gives each
row the chord of its event (TriadChordOneHotEncoding, 49 classes), which the encoder reads beside the windows
and the decoder beside its inputs; ``expected.npz`` also has the windows' ``controls`` (8, 512, 49), under
which the reference computed everything (the greedy decoding too). No magenta.js folder.

experiments/reference_fixture.py's ``write_fixture`` writes the checkpoint and ``expected.npz``, as for
hier-enc-drums_4bar: the reference's initialisers plus N(0, 0.05) noise on every variable at global step 100;
mu, sigma, eps, r_loss, kl_bits, loss, loss_after (one training step as music_vae_train takes it: TF1 Adam,
global-norm clipping), greedy (free-running from z = mu, the most likely class each step) and margin (the gap
between the two largest logits of each greedy step). With chords, each window's greedy decoding is its row of
the whole batch decoded under its chords: the hierarchical decoder cannot decode one window alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import note_seq
import numpy as np
import tensorflow.compat.v1 as tf
from magenta.models.music_vae import data_hierarchical, lstm_models
from magenta.models.music_vae.base_model import MusicVAE

from reference_fixture import COMMON, WINDOWS, write_fixture

ROOT = Path(__file__).resolve().parents[1]
# hier-multiperf_vel_1bar_med's hyperparameters (the reference's defaults but for its sizes) at small sizes
HPARAMS = dict(COMMON, max_seq_len=512, free_bits=0.0, max_beta=1.0, z_size=8, enc_rnn_size=[16],
               dec_rnn_size=[16, 16, 16])


def converter(chords: bool):
    """hier-multiperf_vel_1bar_med's converter (_chords: with the triad chord encoding), every window kept."""
    return data_hierarchical.MultiInstrumentPerformanceConverter(
        num_velocity_bins=8, hop_size_bars=1, max_num_instruments=8, max_events_per_instrument=64,
        chord_encoding=note_seq.TriadChordOneHotEncoding() if chords else None, max_tensors_per_notesequence=None)


def windows(chords: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The first two windows of each trio file that gives any, eight in all: inputs, outputs, each segment's
    length and (with ``chords``) the controls."""
    made = converter(chords)
    inputs, outputs, lengths, controls = [], [], [], []
    for path in sorted((ROOT / "tests" / "data" / "trio").glob("*.mid")):
        tensors = made.to_tensors(note_seq.midi_file_to_note_sequence(str(path)))
        inputs += tensors.inputs[:2]
        outputs += tensors.outputs[:2]
        lengths += tensors.lengths[:2]
        controls += tensors.controls[:2]
    return (np.asarray(inputs[:WINDOWS], np.float32), np.asarray(outputs[:WINDOWS], np.float32),
            np.asarray(lengths[:WINDOWS], np.int32),
            np.asarray(controls[:WINDOWS], np.float32) if chords else None)


def model() -> MusicVAE:
    """hier-multiperf_vel_1bar_med's model, not built."""
    return MusicVAE(lstm_models.HierarchicalLstmEncoder(lstm_models.BidirectionalLstmEncoder, [64, 8]),
                    lstm_models.HierarchicalLstmDecoder(lstm_models.CategoricalLstmDecoder(), [8, 64],
                                                        disable_autoregression=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chords", action="store_true", help="hier-multiperf_vel_1bar_med_chords")
    args = parser.parse_args()
    inputs, outputs, lengths, controls = windows(args.chords)
    write_fixture(args.out, inputs, outputs, lengths, HPARAMS, model, args.seed, controls=controls)
    if not args.chords:
        write_js_folder(args.out / "tf" / "model.ckpt", args.out / "js")


def write_js_folder(checkpoint: Path, out: Path) -> None:
    """The checkpoint's model variables (not global_step) as a magenta.js folder of one shard."""
    reader = tf.train.load_checkpoint(str(checkpoint))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n != "global_step")
    values = [np.asarray(reader.get_tensor(n), dtype="<f4") for n in names]
    out.mkdir(parents=True, exist_ok=True)
    (out / "group1-shard1of1").write_bytes(b"".join(v.tobytes() for v in values))
    weights = [{"name": n, "shape": list(v.shape), "dtype": "float32"} for n, v in zip(names, values)]
    (out / "weights_manifest.json").write_text(json.dumps([{"paths": ["group1-shard1of1"], "weights": weights}]))
    # magenta.js's MultitrackConverter: 8 instruments (segments) of 64 events, one bar of 96 steps
    args = {"numSteps": 512, "numSegments": 8, "stepsPerQuarter": 24, "totalSteps": 96, "numVelocityBins": 8}
    (out / "config.json").write_text(json.dumps({"type": "MusicVAE",
                                                 "dataConverter": {"type": "MultitrackConverter", "args": args}}))


if __name__ == "__main__":
    main()
