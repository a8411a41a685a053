"""Make a checkpoint with known outputs from the reference itself (Magenta 2.1.4, TensorFlow 2.15): a model of
one of the reference's architectures at small sizes, written as the reference writes checkpoints, with what the
reference computes from it on real windows. Runs in the reference's environment, not hvae's:

    ../shared/reference/speed/setup.sh /tmp/refenv
    /tmp/refenv/bin/python experiments/reference_fixture.py --windows ../shared/reference/gmd_drums_4bar.npz \
        --out tests/data/reference/hier-enc-drums_4bar
    /tmp/refenv/bin/python experiments/reference_fixture.py --config hierdec-trio_16bar \
        --windows tests/data/trio/reference.npz --out tests/data/reference/hierdec-trio_16bar

The configurations (``--config``):

- ``hier-enc-drums_4bar`` (the default): MusicVAE(HierarchicalLstmEncoder(BidirectionalLstmEncoder, [16, 4]),
  HierarchicalLstmDecoder(CategoricalLstmDecoder(), [4, 16], disable_autoregression=True)) on 4-bar one-hot
  drums, the hyperparameters of hvae's hier-drums-4bar preset at small sizes (encoder 24 units a level, decoder
  32x32, z 16); the windows: the reference's own 4-bar drum tensors.
- ``flat-trio_16bar``, ``hierdec-trio_16bar``, ``hier-trio_16bar``: the reference's configs.py models of those
  names (MultiOutCategoricalLstmDecoder; HierarchicalLstmDecoder over SplitMultiOutLstmDecoder of three
  CategoricalLstmDecoders, with the bidirectional or the hierarchical encoder), their hyperparameters but small
  sizes (encoder 24 units a layer, as many layers as theirs; decoder 32 units a layer; z 16); the windows: the
  first 16-bar window of each of the first 8 real trio files, as the reference's TrioConverter made them
  (``tests/data/trio/reference.npz``, experiments/reference_trio.py).

Its weights are the reference's initialisers plus N(0, 0.05) noise on every variable, at global step 100,
as ../shared/reference/magenta-checkpoints were made; ``expected.npz`` has the same arrays as theirs (see that
README): inputs, outputs, lengths, mu, sigma, eps, r_loss, kl_bits, loss, loss_after (one training step as
music_vae_train takes it: TF1 Adam, global-norm clipping), greedy (free-running from z = mu, the most likely
class each step, in each part for trios) and margin (the gap between the two largest logits of each greedy
step; for trios, the smallest of the parts' gaps).
"""

from __future__ import annotations

import argparse
import json
import types
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
# the hyperparameters every configuration shares: no dropout, no scheduled sampling, the reference's defaults
COMMON = dict(batch_size=WINDOWS, beta_rate=0.0, learning_rate=0.001, decay_rate=0.9999, min_learning_rate=1e-5,
              grad_clip=1.0, clip_mode="global_norm", grad_norm_clip_to_zero=10000, dropout_keep_prob=1.0,
              sampling_schedule="constant", sampling_rate=0.0, z_size=16)
TRIO_DEPTHS = [90, 90, 512]  # melody, bass, drums


def split_trio():
    return lstm_models.SplitMultiOutLstmDecoder([lstm_models.CategoricalLstmDecoder() for _ in TRIO_DEPTHS],
                                                TRIO_DEPTHS)


# name: (encoder, decoder, hyperparameters, output depths)
CONFIGS = {
    "hier-enc-drums_4bar": (
        lambda: lstm_models.HierarchicalLstmEncoder(lstm_models.BidirectionalLstmEncoder, [16, 4]),
        lambda: lstm_models.HierarchicalLstmDecoder(lstm_models.CategoricalLstmDecoder(), [4, 16],
                                                    disable_autoregression=True),
        dict(max_seq_len=64, free_bits=48.0, max_beta=0.2, enc_rnn_size=[24], dec_rnn_size=[32, 32]), [512]),
    "flat-trio_16bar": (
        lstm_models.BidirectionalLstmEncoder,
        lambda: lstm_models.MultiOutCategoricalLstmDecoder(TRIO_DEPTHS),
        dict(max_seq_len=256, free_bits=0.0, max_beta=1.0, enc_rnn_size=[24, 24], dec_rnn_size=[32, 32, 32]),
        TRIO_DEPTHS),
    "hierdec-trio_16bar": (
        lstm_models.BidirectionalLstmEncoder,
        lambda: lstm_models.HierarchicalLstmDecoder(split_trio(), [16, 16], disable_autoregression=True),
        dict(max_seq_len=256, free_bits=256.0, max_beta=0.2, enc_rnn_size=[24, 24], dec_rnn_size=[32, 32]),
        TRIO_DEPTHS),
    "hier-trio_16bar": (
        lambda: lstm_models.HierarchicalLstmEncoder(lstm_models.BidirectionalLstmEncoder, [16, 16]),
        lambda: lstm_models.HierarchicalLstmDecoder(split_trio(), [16, 16], disable_autoregression=True),
        dict(max_seq_len=256, free_bits=256.0, max_beta=0.2, enc_rnn_size=[24], dec_rnn_size=[32, 32]),
        TRIO_DEPTHS),
}


def windows(path: Path, depths: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WINDOWS windows as the reference's converter made them: its 4-bar drum tensors (inputs unpacked from
    bits), or the first 16-bar window of each trio file (classes per part, made one-hot; inputs = outputs)."""
    with np.load(path) as data:
        if len(depths) == 1:
            inputs = np.unpackbits(data["inputs"][:WINDOWS], axis=-1)[..., :int(data["input_depth"])]
            outputs = np.eye(depths[0], dtype=np.float32)[data["outputs"][:WINDOWS]]
            return inputs.astype(np.float32), outputs, data["lengths"][:WINDOWS].astype(np.int32)
        keys = sorted(k for k in data.files if k.endswith("/16"))[:WINDOWS]
        classes = np.stack([data[k][0] for k in keys]).astype(np.int64)  # (B, T, parts)
    outputs = np.concatenate([np.eye(d, dtype=np.float32)[classes[..., i]] for i, d in enumerate(depths)], -1)
    return outputs, outputs, np.full(WINDOWS, outputs.shape[1], np.int32)


def _merge_parts(merge):
    """The reference's SplitMultiOutLstmDecoder merge with its length check against the parts' own length.

    Magenta 2.1.4's split decoder asserts that every core decoded ``max_seq_len`` steps; under the
    hierarchical decoder each core decodes one bar (16 of the 256 steps), so the assertion fails at run time
    and the reference's hierdec-trio_16bar and hier-trio_16bar graphs cannot run as released. Here the check
    is that every part decoded as many steps as the first; the computation is the reference's own."""
    def merged(self, decode_results):
        hparams = self.hparams
        self.hparams = types.SimpleNamespace(max_seq_len=decode_results[0].final_sequence_lengths)
        try:
            return merge(self, decode_results)
        finally:
            self.hparams = hparams
    return merged


lstm_models.SplitMultiOutLstmDecoder._merge_decode_results = _merge_parts(
    lstm_models.SplitMultiOutLstmDecoder._merge_decode_results)


def build(config: str, hparams):
    encoder, decoder, _, depths = CONFIGS[config]
    model = MusicVAE(encoder(), decoder())
    model.build(hparams, output_depth=sum(depths), is_training=True)
    return model


def greedy_draws(depths: list[int]) -> None:
    """Make the reference's categorical decoders draw greedily: the most likely class (in each part)."""
    lstm_models.CategoricalLstmDecoder._sample = lambda self, rnn_output, temperature=1.0: tf.one_hot(
        tf.argmax(rnn_output, axis=-1), self._output_depth)
    lstm_models.MultiOutCategoricalLstmDecoder._sample = lambda self, rnn_output, temperature=1.0: tf.concat(
        [tf.one_hot(tf.argmax(part, axis=-1), depth)
         for part, depth in zip(tf.split(rnn_output, self._output_depths, axis=-1), self._output_depths)], -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="hier-enc-drums_4bar")
    parser.add_argument("--windows", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="hier-enc-drums_4bar")
    args = parser.parse_args()
    depths = CONFIGS[args.config][3]
    inputs, outputs, lengths = windows(args.windows, depths)
    hparams = lstm_models.get_default_hparams()
    for name, value in {**COMMON, **CONFIGS[args.config][2]}.items():  # the reference's HParams: attributes, no update()
        setattr(hparams, name, value)
    rng = np.random.default_rng(args.seed)
    eps = rng.standard_normal((WINDOWS, hparams.z_size)).astype(np.float32)

    with tf.Graph().as_default():
        tf.set_random_seed(args.seed)
        model = build(args.config, hparams)
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
        greedy_draws(depths)
        with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):  # the flat decoder's variables
            greedy = model.sample(WINDOWS, max_length=hparams.max_seq_len, z=mu, temperature=1.0)[0]
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
                                     loss=loss, greedy=decoded))
            session.run(train_op)
            found["loss_after"] = session.run(loss)
        names = {v.op.name: v.shape.as_list() for v in model_vars}
    return found, names


def greedy_classes(model, mu):
    """Free-running decode from z = mu, the most likely class at each step."""
    lstm_models.CategoricalLstmDecoder._sample = lambda self, rnn_output, temperature=1.0: tf.one_hot(
        tf.argmax(rnn_output, axis=-1), self._output_depth)
    return model.sample(WINDOWS, max_length=64, z=mu, temperature=1.0)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    inputs, outputs, lengths = windows(args.windows)
    hparams = lstm_models.get_default_hparams()
    for name, value in HPARAMS.items():  # the reference's HParams: attributes, no update()
        setattr(hparams, name, value)
    rng = np.random.default_rng(args.seed)
    eps = rng.standard_normal((WINDOWS, SIZES["z_size"])).astype(np.float32)
    found, names = reference_results(build, hparams, inputs, outputs, lengths, eps, rng, args.out, greedy_classes,
                                     args.seed)
    # the margin of each greedy step: its logits teacher-forced on the greedy decode (what the decode fed)
    with tf.Graph().as_default():
        model = build(args.config, hparams)
        fed = tf.constant(np.pad(found["greedy"][:, :-1], [(0, 0), (1, 0), (0, 0)]))
        results = model.decoder.reconstruction_loss(fed, tf.constant(found["greedy"]), tf.constant(lengths),
                                                    tf.constant(found["mu"]),
                                                    None if controls is None else tf.constant(controls))[2]
        logits = results.rnn_output  # (B, T, D): the segments merged in time order
        tops = [tf.math.top_k(part, k=2).values for part in tf.split(logits, depths, axis=-1)]
        margin = tf.reduce_min(tf.stack([top[..., 0] - top[..., 1] for top in tops], -1), -1)
        with tf.Session() as session:
            tf.train.Saver([v for v in tf.global_variables() if v.op.name in names]).restore(
                session, str(args.out / "tf" / "model.ckpt"))
            found["margin"] = session.run(margin)
    np.savez_compressed(args.out / "expected.npz", inputs=inputs, outputs=outputs, lengths=lengths, eps=eps,
                        step=np.int64(STEP), **extra, **{k: np.asarray(v, np.float32) for k, v in found.items()})
    (args.out / "variables.json").write_text(json.dumps(names, indent=1) + "\n")
    print(f"written {args.out}: loss {found['loss']:.6g}, after one step {found['loss_after']:.6g}")


if __name__ == "__main__":
    main()
