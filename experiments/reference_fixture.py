"""Make a checkpoint with known outputs from the reference itself (Magenta 2.1.4, TensorFlow 2.15): a model with
the reference's HierarchicalLstmEncoder, written as the reference writes checkpoints, with what the reference
computes from it on real windows. Runs in the reference's environment, not hvae's:

    ../shared/reference/speed/setup.sh /tmp/refenv
    /tmp/refenv/bin/python experiments/reference_fixture.py --windows ../shared/reference/gmd_drums_4bar.npz \
        --out tests/data/reference/hier-enc-drums_4bar

The model: MusicVAE(HierarchicalLstmEncoder(BidirectionalLstmEncoder, [16, 4]),
HierarchicalLstmDecoder(CategoricalLstmDecoder(), [4, 16], disable_autoregression=True)) on 4-bar one-hot drums,
the hyperparameters of hvae's hier-drums-4bar preset at small sizes (encoder 24 units a level, decoder 32x32,
z 16). Its weights are the reference's initialisers plus N(0, 0.05) noise on every variable, at global step 100,
as ../shared/reference/magenta-checkpoints were made; ``expected.npz`` has the same arrays as theirs (see that
README): inputs, outputs, lengths, mu, sigma, eps, r_loss, kl_bits, loss, loss_after (one training step as
music_vae_train takes it: TF1 Adam, global-norm clipping), greedy (free-running from z = mu, the most likely
class each step) and margin (the gap between the two largest logits of each greedy step).

``write_fixture`` does the work for any model and windows (experiments/reference_multiperf_fixture.py uses it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow.compat.v1 as tf
import tensorflow_probability as tfp
from magenta.models.music_vae import lstm_models
from magenta.models.music_vae.base_model import MusicVAE

tf.disable_v2_behavior()
ds = tfp.distributions

WINDOWS = 8
STEP = 100
NOISE = 0.05
SIZES = dict(z_size=16, enc_rnn_size=[24], dec_rnn_size=[32, 32])
# hvae's hier-drums-4bar preset, as the reference names its hyperparameters (no dropout, no scheduled sampling)
HPARAMS = dict(batch_size=WINDOWS, max_seq_len=64, free_bits=48.0, max_beta=0.2, beta_rate=0.0, learning_rate=0.001,
               decay_rate=0.9999, min_learning_rate=1e-5, grad_clip=1.0, clip_mode="global_norm",
               grad_norm_clip_to_zero=10000, dropout_keep_prob=1.0, sampling_schedule="constant", sampling_rate=0.0,
               **SIZES)
DEPTH = 512  # 2^9 drum combinations


def windows(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first WINDOWS windows of the reference's own 4-bar drum tensors (inputs unpacked from bits)."""
    with np.load(path) as data:
        inputs = np.unpackbits(data["inputs"][:WINDOWS], axis=-1)[..., :int(data["input_depth"])].astype(np.float32)
        outputs = np.eye(DEPTH, dtype=np.float32)[data["outputs"][:WINDOWS]]
        lengths = data["lengths"][:WINDOWS].astype(np.int32)
    return inputs, outputs, lengths


def build(hparams):
    model = MusicVAE(lstm_models.HierarchicalLstmEncoder(lstm_models.BidirectionalLstmEncoder, [16, 4]),
                     lstm_models.HierarchicalLstmDecoder(lstm_models.CategoricalLstmDecoder(), [4, 16],
                                                         disable_autoregression=True))
    model.build(hparams, output_depth=DEPTH, is_training=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_fixture(args.out, *windows(args.windows), HPARAMS, build, args.seed)


def write_fixture(out: Path, inputs: np.ndarray, outputs: np.ndarray, lengths: np.ndarray, values: dict,
                  build_model, seed: int) -> None:
    """Write to ``out`` the checkpoint of the model ``build_model(hparams)`` makes with the hyperparameters
    ``values`` (the reference's names), noised, at step STEP, and what the reference computes from it on
    the windows (``lengths``: (B,) or, for hierarchical converters, (B, segments))."""
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
        # MusicVAE._compute_model_loss with z = mu + sigma * eps (eps given, not drawn)
        q_z = model.encode(x_in, length)
        mu, sigma = q_z.loc, q_z.stddev()
        z = mu + sigma * tf.constant(eps)
        p_z = ds.MultivariateNormalDiag(loc=[0.] * hparams.z_size, scale_diag=[1.] * hparams.z_size)
        kl_div = ds.kl_divergence(q_z, p_z)
        x_input = tf.pad(x_out[:, :-1], [(0, 0), (1, 0), (0, 0)])
        r_loss = model.decoder.reconstruction_loss(x_input, x_out, length, z, None)[0]
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
        greedy = model.sample(len(inputs), max_length=steps, z=mu, temperature=1.0)[0]
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
    full = np.full_like(lengths, steps // lengths.shape[1] if lengths.ndim == 2 else steps)
    with tf.Graph().as_default():
        model = build_model(hparams)
        fed = tf.constant(np.pad(found["greedy"][:, :-1], [(0, 0), (1, 0), (0, 0)]))
        results = model.decoder.reconstruction_loss(fed, tf.constant(found["greedy"]), tf.constant(full),
                                                    tf.constant(found["mu"]), None)[2]
        logits = results.rnn_output  # (B, T, D): the segments merged in time order
        top = tf.math.top_k(logits, k=2).values
        with tf.Session() as session:
            tf.train.Saver([v for v in tf.global_variables() if v.op.name in names]).restore(
                session, str(out / "tf" / "model.ckpt"))
            found["margin"] = session.run(top[..., 0] - top[..., 1])
    np.savez_compressed(out / "expected.npz", inputs=inputs, outputs=outputs, lengths=lengths, eps=eps,
                        step=np.int64(STEP), **{k: np.asarray(v, np.float32) for k, v in found.items()})
    (out / "variables.json").write_text(json.dumps(names, indent=1) + "\n")
    print(f"written {out}: loss {found['loss']:.6g}, after one step {found['loss_after']:.6g}")



if __name__ == "__main__":
    main()
