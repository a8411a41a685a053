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

``write_fixture`` writes the checkpoint and ``expected.npz`` as experiments/reference_fixture.py does for
hier-enc-drums_4bar: the reference's initialisers plus N(0, 0.05) noise on every variable at global step 100;
mu, sigma, eps, r_loss, kl_bits, loss, loss_after (one training step as music_vae_train takes it: TF1 Adam,
global-norm clipping), greedy (free-running from z = mu, the most likely class each step) and margin (the gap
between the two largest logits of each greedy step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import note_seq
import numpy as np
import tensorflow.compat.v1 as tf
import tensorflow_probability as tfp
from magenta.models.music_vae import data_hierarchical, lstm_models
from magenta.models.music_vae.base_model import MusicVAE

tf.disable_v2_behavior()
ds = tfp.distributions

WINDOWS = 8
STEP = 100
NOISE = 0.05
ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(z_size=8, enc_rnn_size=[16], dec_rnn_size=[16, 16, 16])
# hier-multiperf_vel_1bar_med's hyperparameters: the reference's defaults but for its sizes
HPARAMS = dict(batch_size=WINDOWS, max_seq_len=512, free_bits=0.0, max_beta=1.0, beta_rate=0.0, learning_rate=0.001,
               decay_rate=0.9999, min_learning_rate=1e-5, grad_clip=1.0, clip_mode="global_norm",
               grad_norm_clip_to_zero=10000, dropout_keep_prob=1.0, sampling_schedule="constant", sampling_rate=0.0,
               **SIZES)



def converter(chords: bool):
    """hier-multiperf_vel_1bar_med's converter (_chords: with the triad chord encoding), every window kept."""
    return data_hierarchical.MultiInstrumentPerformanceConverter(
        num_velocity_bins=8, hop_size_bars=1, max_num_instruments=8, max_events_per_instrument=64,
        chord_encoding=note_seq.TriadChordOneHotEncoding() if chords else None, max_tensors_per_notesequence=None)


CONVERTER = converter(chords=False)


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


def build(hparams):
    model = MusicVAE(lstm_models.HierarchicalLstmEncoder(lstm_models.BidirectionalLstmEncoder, [64, 8]),
                     lstm_models.HierarchicalLstmDecoder(lstm_models.CategoricalLstmDecoder(), [8, 64],
                                                         disable_autoregression=True))
    model.build(hparams, output_depth=CONVERTER.output_depth, is_training=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chords", action="store_true", help="hier-multiperf_vel_1bar_med_chords")
    args = parser.parse_args()
    inputs, outputs, lengths, controls = windows(args.chords)
    write_fixture(args.out, inputs, outputs, lengths, HPARAMS, build, args.seed, controls)
    if not args.chords:
        write_js_folder(args.out / "tf" / "model.ckpt", args.out / "js")


def write_fixture(out: Path, inputs: np.ndarray, outputs: np.ndarray, lengths: np.ndarray, values: dict,
                  build_model, seed: int, controls: np.ndarray | None = None) -> None:
    """Write to ``out`` the checkpoint of the model ``build_model(hparams)`` makes with the hyperparameters
    ``values`` (the reference's names), noised, at step STEP, and what the reference computes from it on
    the windows (``lengths``: (B, segments)) under ``controls`` (B, T, C) or none."""
    hparams = lstm_models.get_default_hparams()
    for name, value in values.items():  # the reference's HParams: attributes, no update()
        setattr(hparams, name, value)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((len(inputs), hparams.z_size)).astype(np.float32)
    steps = inputs.shape[1]

    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        model = build_model(hparams)
        x_in, x_out = tf.constant(inputs), tf.constant(outputs)
        length = tf.constant(lengths)
        c_in = None if controls is None else tf.constant(controls)
        # MusicVAE._compute_model_loss with z = mu + sigma * eps (eps given, not drawn)
        q_z = model.encode(x_in, length, c_in)
        mu, sigma = q_z.loc, q_z.stddev()
        z = mu + sigma * tf.constant(eps)
        p_z = ds.MultivariateNormalDiag(loc=[0.] * hparams.z_size, scale_diag=[1.] * hparams.z_size)
        kl_div = ds.kl_divergence(q_z, p_z)
        x_input = tf.pad(x_out[:, :-1], [(0, 0), (1, 0), (0, 0)])
        r_loss = model.decoder.reconstruction_loss(x_input, x_out, length, z, c_in)[0]
        kl_cost = tf.maximum(kl_div - hparams.free_bits * tf.math.log(2.0), 0)
        beta = (1.0 - tf.pow(hparams.beta_rate, tf.to_float(model.global_step))) * hparams.max_beta
        loss = tf.reduce_mean(r_loss) + beta * tf.reduce_mean(kl_cost)
        # one training step, as music_vae_train builds it
        lr = ((hparams.learning_rate - hparams.min_learning_rate) *
              tf.pow(hparams.decay_rate, tf.to_float(model.global_step)) + hparams.min_learning_rate)
        optimizer = tf.train.AdamOptimizer(lr)
        grads, var_list = list(zip(*optimizer.compute_gradients(loss)))
        global_norm = tf.global_norm(grads)
        clipped = tf.cond(global_norm < hparams.grad_norm_clip_to_zero,
                          lambda: tf.clip_by_global_norm(grads, hparams.grad_clip, use_norm=global_norm)[0],
                          lambda: [tf.zeros(tf.shape(g)) for g in grads])
        train_op = optimizer.apply_gradients(list(zip(clipped, var_list)), global_step=model.global_step)
        model_vars = [v for v in tf.global_variables() if "Adam" not in v.name and "power" not in v.name]
        saver = tf.train.Saver(model_vars)
        # greedy decoding from z = mu: the most likely class at each step
        lstm_models.CategoricalLstmDecoder._sample = lambda self, rnn_output, temperature=1.0: tf.one_hot(
            tf.argmax(rnn_output, axis=-1), self._output_depth)
        if controls is None:
            greedy = model.sample(len(inputs), max_length=steps, z=mu, temperature=1.0)[0]
        else:  # the hierarchical decoder samples a batch (its conductor's size) under one control sequence:
            # each window's decoding is the one under its own controls
            greedy = tf.stack([model.sample(len(inputs), max_length=steps, z=mu, c_input=c_in[i], temperature=1.0)[0][i]
                               for i in range(len(inputs))])
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            for variable in model_vars:
                if variable.name.startswith("global_step"):
                    variable.load(STEP, session)
                else:
                    value = session.run(variable)
                    variable.load(value + rng.normal(0, NOISE, value.shape).astype(value.dtype), session)
            out.mkdir(parents=True, exist_ok=True)
            saver.save(session, str(out / "tf" / "model.ckpt"), write_meta_graph=False)
            found = session.run(dict(mu=mu, sigma=sigma, r_loss=r_loss, kl_bits=kl_div / tf.math.log(2.0),
                                     loss=loss, greedy=greedy))
            session.run(train_op)
            found["loss_after"] = session.run(loss)
        names = {v.op.name: v.shape.as_list() for v in model_vars}
    # the margin of each greedy step: its logits teacher-forced on the greedy decode (what the decode fed,
    # every step of every segment)
    full = np.full_like(lengths, steps // lengths.shape[1])
    with tf.Graph().as_default():
        model = build_model(hparams)
        fed = tf.constant(np.pad(found["greedy"][:, :-1], [(0, 0), (1, 0), (0, 0)]))
        results = model.decoder.reconstruction_loss(fed, tf.constant(found["greedy"]), tf.constant(full),
                                                    tf.constant(found["mu"]),
                                                    None if controls is None else tf.constant(controls))[2]
        top = tf.math.top_k(results.rnn_output, k=2).values  # (B, T, 2): the segments merged in time order
        with tf.Session() as session:
            tf.train.Saver([v for v in tf.global_variables() if v.op.name in names]).restore(
                session, str(out / "tf" / "model.ckpt"))
            found["margin"] = session.run(top[..., 0] - top[..., 1])
    extra = {} if controls is None else {"controls": controls}
    np.savez_compressed(out / "expected.npz", inputs=inputs, outputs=outputs, lengths=lengths, eps=eps,
                        step=np.int64(STEP), **extra, **{k: np.asarray(v, np.float32) for k, v in found.items()})
    (out / "variables.json").write_text(json.dumps(names, indent=1) + "\n")
    print(f"written {out}: loss {found['loss']:.6g}, after one step {found['loss_after']:.6g}")


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
