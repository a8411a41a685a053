"""Make checkpoints of the reference's NADE drum models with known outputs, from the reference itself (Magenta
2.1.4, TensorFlow 2.15): nade-drums_2bar_reduced and nade-drums_2bar_full at small sizes, written as the reference
writes checkpoints, with what the reference computes from them on real GMD windows. Runs in the reference's
environment, not hvae's:

    ../shared/reference/speed/setup.sh /tmp/refenv
    /tmp/refenv/bin/python experiments/reference_nade.py --out tests/data/reference

The models: MusicVAE(BidirectionalLstmEncoder(), MultiLabelRnnNadeDecoder()) with the configurations'
hyperparameters (the NADE's 128 hidden units included) at small sizes: encoder 24 units, decoder 32x32, z 16.
The windows: one 2-bar window from the middle of each of the first WINDOWS files (sorted by path) of hvae's
bundled GMD subset, converted by the reference's own DrumsConverter with the configuration's options (roll
inputs and outputs; reduced or full pitch classes). Weights, step and ``expected.npz`` as experiments/
reference_fixture.py makes them (see ../shared/reference/magenta-checkpoints/README.md), with ``greedy`` the
reference's greedy NADE decode (``temperature=None``: a drum is hit where its conditional probability is at
least 0.5), ``margin`` the smallest ``|p - 0.5|`` over a greedy step's drums (teacher-forced on the decode),
``r_loss_fed_back`` each window's reconstruction loss under scheduled sampling at probability 1 (every step fed the
NADE's greedy draw from the one before, as the reference's training helper draws it), and ``files``/``window``
where each window came from. ``variables_full_size.json`` lists the variables the reference
builds for the configuration at its own sizes (configs.py as it is).

For nade-drums_2bar_reduced it also writes ``js/``: the checkpoint as a magenta.js folder like the hosted
drums_2bar_nade_9_q2 (``config.json`` with a DrumRollConverter; weights quantised as TensorFlow.js's manifest
describes them, the LSTM kernels to 2 bytes, the rest to 1).
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np
import tensorflow.compat.v1 as tf
from magenta.models.music_vae import configs, data, lstm_models
from magenta.models.music_vae.base_model import MusicVAE
import note_seq

from reference_fixture import COMMON, WINDOWS, restore, write_fixture

DEMO = Path(__file__).resolve().parent.parent / "core" / "hvae" / "demo" / "groove"
# configs.py's nade-drums hyperparameters, at the small sizes (no dropout, no scheduled sampling: teacher forcing)
HPARAMS = dict(COMMON, max_seq_len=32, nade_num_hidden=128, free_bits=48.0, max_beta=0.2, enc_rnn_size=[24],
               dec_rnn_size=[32, 32])
CONFIGS = {"nade-drums_2bar_reduced": data.REDUCED_DRUM_PITCH_CLASSES,
           "nade-drums_2bar_full": data.FULL_DRUM_PITCH_CLASSES}
# magenta.js's quantisation of the hosted *_q2 folder: bytes per stored value, by variable
KERNEL_BYTES, OTHER_BYTES = 2, 1


def windows(pitch_classes) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[int]]:
    """One window from the middle of each of the first WINDOWS demo files, as the configuration's converter
    makes them (every window of a file, duplicates removed, in the converter's order)."""
    converter = data.DrumsConverter(max_bars=100, slice_bars=2, steps_per_quarter=4, roll_input=True,
                                    roll_output=True, pitch_classes=pitch_classes)
    inputs, outputs, files, picked = [], [], [], []
    for path in sorted(DEMO.rglob("*.mid")):
        tensors = converter.to_tensors(note_seq.midi_file_to_note_sequence(str(path)))
        if not tensors.inputs:
            continue
        middle = len(tensors.inputs) // 2
        inputs.append(tensors.inputs[middle])
        outputs.append(tensors.outputs[middle])
        files.append(str(path.relative_to(DEMO)))
        picked.append(middle)
        if len(files) == WINDOWS:
            break
    lengths = np.array([len(x) for x in inputs], np.int32)
    return np.array(inputs, np.float32), np.array(outputs, np.float32), lengths, files, picked


def nade_model() -> MusicVAE:
    return MusicVAE(lstm_models.BidirectionalLstmEncoder(), lstm_models.MultiLabelRnnNadeDecoder())


def margins(build, found: dict, lengths: np.ndarray, checkpoint: Path) -> np.ndarray:
    """The smallest |p - 0.5| over each greedy step's drums, teacher-forced on the greedy decode."""
    depth = found["greedy"].shape[-1]
    with tf.Graph().as_default():
        model = build()
        fed = tf.constant(np.pad(found["greedy"][:, :-1], [(0, 0), (1, 0), (0, 0)]))
        results = model.decoder.reconstruction_loss(fed, tf.constant(found["greedy"]), tf.constant(lengths),
                                                    tf.constant(found["mu"]), None)[2]
        decoder = model.decoder
        flat = tf.reshape(results.rnn_output, [-1, decoder._nade.num_hidden + depth])
        b_enc, b_dec = tf.split(flat, [decoder._nade.num_hidden, depth], axis=1)
        _, cond_probs = decoder._nade.log_prob(tf.reshape(tf.constant(found["greedy"]), [-1, depth]), b_enc, b_dec)
        margin = tf.reshape(tf.reduce_min(tf.abs(cond_probs - 0.5), axis=-1), [WINDOWS, -1])
        with tf.Session() as session:
            restore(session, checkpoint)
            return session.run(margin)


def fed_back_losses(build, hparams, inputs: np.ndarray, outputs: np.ndarray, lengths: np.ndarray, eps: np.ndarray,
                    checkpoint: Path) -> np.ndarray:
    """Each window's reconstruction loss (z = mu + sigma * eps) with scheduled sampling at probability 1: every step
    after the first is fed the NADE's draw from the step before, which the reference's training helper makes
    without a temperature (greedy), so the loss is deterministic."""
    hparams.sampling_schedule, hparams.sampling_rate = "constant", 1.0
    with tf.Graph().as_default():
        model = build()
        q_z = model.encode(tf.constant(inputs), tf.constant(lengths))
        z = q_z.loc + q_z.stddev() * tf.constant(eps)
        x_input = tf.pad(tf.constant(outputs)[:, :-1], [(0, 0), (1, 0), (0, 0)])
        r_loss = model.decoder.reconstruction_loss(x_input, tf.constant(outputs), tf.constant(lengths), z, None)[0]
        with tf.Session() as session:
            restore(session, checkpoint)
            losses = session.run(r_loss)
    hparams.sampling_schedule, hparams.sampling_rate = HPARAMS["sampling_schedule"], HPARAMS["sampling_rate"]
    return losses


def nade_results(inputs: np.ndarray, outputs: np.ndarray, lengths: np.ndarray, build, hparams, found: dict,
                 eps: np.ndarray, checkpoint: Path) -> dict:
    """The NADE's results beside write_fixture's own: ``margin`` and ``r_loss_fed_back``."""
    return dict(margin=margins(build, found, lengths, checkpoint),
                r_loss_fed_back=fed_back_losses(build, hparams, inputs, outputs, lengths, eps, checkpoint))


def quantise(values: np.ndarray, nbytes: int) -> tuple[bytes, dict]:
    """TensorFlow.js's affine quantisation: ``round((v - min) / scale)`` in ``nbytes`` unsigned bytes."""
    top = (1 << (8 * nbytes)) - 1
    low, high = float(values.min()), float(values.max())
    scale = (high - low) / top if high > low else 1.0
    stored = np.round((values - low) / scale).astype({1: "<u1", 2: "<u2"}[nbytes])
    return stored.tobytes(), {"dtype": {1: "uint8", 2: "uint16"}[nbytes], "scale": scale, "min": low}


def write_js(checkpoint: Path, folder: Path, depth: int) -> None:
    """The checkpoint as a quantised magenta.js folder, as Magenta's hosted drums_2bar_nade_9_q2."""
    reader = tf.train.load_checkpoint(str(checkpoint))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n != "global_step")
    blob, weights = b"", []
    for name in names:
        value = reader.get_tensor(name).astype(np.float32)
        stored, quantization = quantise(value, KERNEL_BYTES if "lstm_cell/kernel" in name else OTHER_BYTES)
        blob += stored
        weights.append({"name": name, "shape": list(value.shape), "dtype": "float32", "quantization": quantization})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "group1-shard1of1").write_bytes(blob)
    (folder / "weights_manifest.json").write_text(json.dumps([{"paths": ["group1-shard1of1"], "weights": weights}]))
    config = {"type": "MusicVAE", "dataConverter": {"type": "DrumRollConverter", "args": {"numSteps": 32}}}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def configuration_variables(name: str) -> dict[str, list[int]]:
    """The variables (name: shape) the reference builds for its configuration ``name`` at its own sizes, from
    configs.py as it is (the graph only: nothing is allocated)."""
    config = configs.CONFIG_MAP[name]
    hparams, converter = config.hparams, config.data_converter
    hparams.batch_size = 2  # the variables do not depend on it; the loss graph is built per window
    with tf.Graph().as_default():
        config.model.build(hparams, output_depth=converter.output_depth, is_training=True)
        inputs = tf.zeros([2, hparams.max_seq_len, converter.input_depth])
        outputs = tf.zeros([2, hparams.max_seq_len, converter.output_depth])
        config.model.train(inputs, outputs, tf.fill([2], hparams.max_seq_len))
        return {v.op.name: v.shape.as_list() for v in tf.global_variables()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the folder to write one folder per configuration in")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, pitch_classes in CONFIGS.items():
        inputs, outputs, lengths, files, picked = windows(pitch_classes)
        out = args.out / name
        write_fixture(out, inputs, outputs, lengths, HPARAMS, nade_model, args.seed,
                      arrays=dict(files=np.array(files), window=np.array(picked)),
                      results=functools.partial(nade_results, inputs, outputs, lengths))
        (out / "variables_full_size.json").write_text(json.dumps(configuration_variables(name), indent=1) + "\n")
        if name == "nade-drums_2bar_reduced":
            write_js(out / "tf" / "model.ckpt", out / "js", outputs.shape[-1])


if __name__ == "__main__":
    main()
