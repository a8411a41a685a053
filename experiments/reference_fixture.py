"""Make a checkpoint with known outputs from the reference itself (Magenta 2.1.4, TensorFlow 2.15): a model of
one of the reference's architectures at small sizes, written as the reference writes checkpoints, with what the
reference computes from it on real windows. Runs in the reference's environment, not hvae's:

    ../shared/reference/speed/setup.sh /tmp/refenv
    /tmp/refenv/bin/python experiments/reference_fixture.py --windows ../shared/reference/gmd_drums_4bar.npz \
        --out tests/data/reference/hier-enc-drums_4bar
    /tmp/refenv/bin/python experiments/reference_fixture.py --config hierdec-trio_16bar \
        --windows tests/data/trio/reference.npz --out tests/data/reference/hierdec-trio_16bar
    /tmp/refenv/bin/python experiments/reference_fixture.py --config mel_chords \
        --windows tests/data/chords/reference.npz --out tests/data/reference/mel_chords_2bar

The configurations (``--config``):

- ``hier-enc-drums_4bar`` (the default): MusicVAE(HierarchicalLstmEncoder(BidirectionalLstmEncoder, [16, 4]),
  HierarchicalLstmDecoder(CategoricalLstmDecoder(), [4, 16], disable_autoregression=True)) on 4-bar one-hot
  drums, the hyperparameters of hvae's hier-drums-4bar preset at small sizes (encoder 24 units a level, decoder
  32x32, z 16); the windows: the first 8 of the reference's own 4-bar drum tensors.
- ``flat-trio_16bar``, ``hierdec-trio_16bar``, ``hier-trio_16bar``: the reference's configs.py models of those
  names (MultiOutCategoricalLstmDecoder; HierarchicalLstmDecoder over SplitMultiOutLstmDecoder of three
  CategoricalLstmDecoders, with the bidirectional or the hierarchical encoder), their hyperparameters but small
  sizes (encoder 24 units a layer, as many layers as theirs; decoder 32 units a layer; z 16); the windows: the
  first 16-bar window of each of the first 8 real trio files, as the reference's TrioConverter made them
  (``tests/data/trio/reference.npz``, experiments/reference_trio.py).
- ``mel_chords``: the reference's cat-mel_2bar_med_chords, MusicVAE(BidirectionalLstmEncoder(),
  CategoricalLstmDecoder()) on 2-bar melodies of 90 classes with 49 triad chord controls a step, at small sizes
  (encoder 24, decoder 3x32, z 16), its hyperparameters otherwise (no free bits, beta 1); the windows: 8 of the
  reference's own chord-conditioned windows of tests/data/trio/plain.mid, spread over the file
  (``tests/data/chords/reference.npz``, experiments/reference_chords.py). The controls go to the encoder and
  the decoder; the greedy decoding of each window runs under its own chords.

Its weights are the reference's initialisers plus N(0, 0.05) noise on every variable, at global step 100,
as ../shared/reference/magenta-checkpoints were made; ``expected.npz`` has the same arrays as theirs (see that
README): inputs, outputs, lengths, mu, sigma, eps, r_loss, kl_bits, loss, loss_after (one training step as
music_vae_train takes it: TF1 Adam, global-norm clipping), greedy (free-running from z = mu, the most likely
class each step, in each part for trios) and margin (the gap between the two largest logits of each greedy
step; for trios, the smallest of the parts' gaps); ``controls`` too where the windows have them.

``write_fixture`` does this for any model and windows: experiments/reference_nade.py (the NADE drum models) and
experiments/reference_multiperf_fixture.py (the multi-instrument model) write their fixtures with it.
"""

from __future__ import annotations

import argparse
import json
import types
from pathlib import Path
from typing import Callable, NamedTuple

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
# the hyperparameters the fixtures share (a fixture may set its own z_size): no dropout, no scheduled sampling
COMMON = dict(batch_size=WINDOWS, beta_rate=0.0, learning_rate=0.001, decay_rate=0.9999, min_learning_rate=1e-5,
              grad_clip=1.0, clip_mode="global_norm", grad_norm_clip_to_zero=10000, dropout_keep_prob=1.0,
              sampling_schedule="constant", sampling_rate=0.0, z_size=16)
TRIO_DEPTHS = [90, 90, 512]  # melody, bass, drums

# (B, T, D) inputs and outputs, (B,) lengths, (B, T, C) controls or None
Windows = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]


def drum_windows(path: Path) -> Windows:
    """The first WINDOWS of the reference's own 4-bar drum tensors (inputs unpacked from bits, one-hot outputs)."""
    with np.load(path) as data:
        inputs = np.unpackbits(data["inputs"][:WINDOWS], axis=-1)[..., :int(data["input_depth"])]
        outputs = np.eye(512, dtype=np.float32)[data["outputs"][:WINDOWS]]
        lengths = data["lengths"][:WINDOWS].astype(np.int32)
    return inputs.astype(np.float32), outputs, lengths, None


def trio_windows(path: Path) -> Windows:
    """The first 16-bar window of each of the first WINDOWS trio files (classes per part, made one-hot; inputs =
    outputs)."""
    with np.load(path) as data:
        keys = sorted(k for k in data.files if k.endswith("/16"))[:WINDOWS]
        classes = np.stack([data[k][0] for k in keys]).astype(np.int64)  # (B, T, parts)
    outputs = np.concatenate([np.eye(d, dtype=np.float32)[classes[..., i]] for i, d in enumerate(TRIO_DEPTHS)], -1)
    return outputs, outputs, np.full(WINDOWS, outputs.shape[1], np.int32), None


def chord_windows(path: Path) -> Windows:
    """WINDOWS of the reference's chord-conditioned windows of plain.mid, spread over the file, and their chords."""
    with np.load(path) as data:
        classes = data["med_chords/trio/plain"]  # (W, 32, 2): melody class, triad class
    chosen = classes[np.linspace(0, len(classes) - 1, WINDOWS).astype(int)]
    outputs = np.eye(90, dtype=np.float32)[chosen[..., 0]]
    controls = np.eye(49, dtype=np.float32)[chosen[..., 1]]
    return outputs, outputs.copy(), np.full(WINDOWS, 32, dtype=np.int32), controls


def split_trio():
    return lstm_models.SplitMultiOutLstmDecoder([lstm_models.CategoricalLstmDecoder() for _ in TRIO_DEPTHS],
                                                TRIO_DEPTHS)


class Config(NamedTuple):
    model: Callable[[], MusicVAE]  # the reference's model, not built
    hparams: dict  # as the reference names them, over COMMON
    windows: Callable[[Path], Windows]
    depths: list[int] | None = None  # the output's parts, for a margin per part (None: one part)


CONFIGS = {
    "hier-enc-drums_4bar": Config(
        lambda: MusicVAE(lstm_models.HierarchicalLstmEncoder(lstm_models.BidirectionalLstmEncoder, [16, 4]),
                         lstm_models.HierarchicalLstmDecoder(lstm_models.CategoricalLstmDecoder(), [4, 16],
                                                             disable_autoregression=True)),
        dict(max_seq_len=64, free_bits=48.0, max_beta=0.2, enc_rnn_size=[24], dec_rnn_size=[32, 32]), drum_windows),
    "flat-trio_16bar": Config(
        lambda: MusicVAE(lstm_models.BidirectionalLstmEncoder(), lstm_models.MultiOutCategoricalLstmDecoder(
            TRIO_DEPTHS)),
        dict(max_seq_len=256, free_bits=0.0, max_beta=1.0, enc_rnn_size=[24, 24], dec_rnn_size=[32, 32, 32]),
        trio_windows, TRIO_DEPTHS),
    "hierdec-trio_16bar": Config(
        lambda: MusicVAE(lstm_models.BidirectionalLstmEncoder(), lstm_models.HierarchicalLstmDecoder(
            split_trio(), [16, 16], disable_autoregression=True)),
        dict(max_seq_len=256, free_bits=256.0, max_beta=0.2, enc_rnn_size=[24, 24], dec_rnn_size=[32, 32]),
        trio_windows, TRIO_DEPTHS),
    "hier-trio_16bar": Config(
        lambda: MusicVAE(lstm_models.HierarchicalLstmEncoder(lstm_models.BidirectionalLstmEncoder, [16, 16]),
                         lstm_models.HierarchicalLstmDecoder(split_trio(), [16, 16], disable_autoregression=True)),
        dict(max_seq_len=256, free_bits=256.0, max_beta=0.2, enc_rnn_size=[24], dec_rnn_size=[32, 32]),
        trio_windows, TRIO_DEPTHS),
    "mel_chords": Config(
        lambda: MusicVAE(lstm_models.BidirectionalLstmEncoder(), lstm_models.CategoricalLstmDecoder()),
        dict(max_seq_len=32, free_bits=0.0, max_beta=1.0, enc_rnn_size=[24], dec_rnn_size=[32, 32, 32]),
        chord_windows),
}


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
    merged.patched = True
    return merged


def patch_reference() -> None:
    """Make the reference's categorical decoders draw greedily (the most likely class, in each part; the NADE
    draws greedily at no temperature of its own) and let its split decoder run under the hierarchical one."""
    lstm_models.CategoricalLstmDecoder._sample = lambda self, rnn_output, temperature=None: tf.one_hot(
        tf.argmax(rnn_output, axis=-1), self._output_depth)
    lstm_models.MultiOutCategoricalLstmDecoder._sample = lambda self, rnn_output, temperature=None: tf.concat(
        [tf.one_hot(tf.argmax(part, axis=-1), depth)
         for part, depth in zip(tf.split(rnn_output, self._output_depths, axis=-1), self._output_depths)], -1)
    split = lstm_models.SplitMultiOutLstmDecoder
    if not getattr(split._merge_decode_results, "patched", False):
        split._merge_decode_results = _merge_parts(split._merge_decode_results)


def restore(session, checkpoint: Path) -> None:
    """Load into the session's graph the variables the checkpoint holds."""
    held = tf.train.load_checkpoint(str(checkpoint)).get_variable_to_shape_map()
    tf.train.Saver([v for v in tf.global_variables() if v.op.name in held]).restore(session, str(checkpoint))


def reference_hparams(values: dict):
    """The reference's default hyperparameters with ``values`` set (its HParams: attributes, no update())."""
    hparams = lstm_models.get_default_hparams()
    for name, value in values.items():
        setattr(hparams, name, value)
    return hparams


def write_fixture(out: Path, inputs: np.ndarray, outputs: np.ndarray, lengths: np.ndarray, values: dict,
                  model: Callable[[], MusicVAE], seed: int = 0, *, controls: np.ndarray | None = None,
                  depths: list[int] | None = None, arrays: dict | None = None,
                  results: Callable[..., dict] | None = None) -> dict:
    """Write to ``out`` the checkpoint of ``model()`` built with the hyperparameters ``values`` (the reference's
    names), noised, at step STEP (``tf/``, ``variables.json``), and what the reference computes from it on the
    windows (``expected.npz``). ``lengths``: (B,) or, for hierarchical converters, (B, segments); ``controls``:
    (B, T, C) or None, passed to the encoder and the decoder and saved. ``arrays`` are saved as they are
    (after ``controls``); ``results(build, hparams, found, eps, checkpoint)`` returns more results to save
    in place of the categorical ``margin`` (the gap of the two largest logits of each greedy step, the smallest
    of the ``depths`` parts'). Returns the results saved as float32."""
    patch_reference()
    hparams = reference_hparams(values)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((len(inputs), hparams.z_size)).astype(np.float32)

    def build() -> MusicVAE:
        built = model()
        built.build(hparams, output_depth=outputs.shape[-1], is_training=True)
        return built

    found, names = _train_step(build, hparams, inputs, outputs, lengths, controls, eps, rng, seed, out)
    checkpoint = out / "tf" / "model.ckpt"
    if results is None:
        found["margin"] = _class_margins(build, found, lengths, controls, depths or [outputs.shape[-1]], checkpoint)
    else:
        found.update(results(build, hparams, found, eps, checkpoint))
    saved = {**({} if controls is None else {"controls": controls}), **(arrays or {})}
    np.savez_compressed(out / "expected.npz", inputs=inputs, outputs=outputs, lengths=lengths, eps=eps,
                        step=np.int64(STEP), **saved, **{k: np.asarray(v, np.float32) for k, v in found.items()})
    (out / "variables.json").write_text(json.dumps(names, indent=1) + "\n")
    print(f"written {out}: loss {found['loss']:.6g}, after one step {found['loss_after']:.6g}")
    return found


def _train_step(build, hparams, inputs, outputs, lengths, controls, eps, rng, seed: int, out: Path):
    """Give the model's variables the reference's initialisers plus noise at step STEP, save them to ``out/tf``
    and compute mu, sigma, r_loss, kl_bits, loss and greedy, then loss_after one training step as
    music_vae_train takes it. Returns them and the variables' shapes by name.

    The graph's operations are made in a fixed order: the initialisers' seeds follow from it."""
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        model = build()
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
        greedy = _greedy(model, hparams, mu, c_in)
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
    return found, names


def _greedy(model, hparams, mu, c_in):
    """The free-running decode from z = mu, drawing greedily (patch_reference), on the variables the loss built
    (a flat decoder's sampling graph would make its layers anew). The reference samples under one control
    sequence at a time: with controls, each window is decoded under its own, alone; the hierarchical decoder
    cannot decode one window alone (its conductor always runs hparams.batch_size rows, whatever the number asked
    for), so there each window is its row of the whole batch decoded under its controls."""
    with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
        if c_in is None:
            return model.sample(hparams.batch_size, max_length=hparams.max_seq_len, z=mu, temperature=None)[0]
        if isinstance(model.decoder, lstm_models.HierarchicalLstmDecoder):
            return tf.stack([model.sample(hparams.batch_size, max_length=hparams.max_seq_len, z=mu, temperature=None,
                                          c_input=c_in[i])[0][i] for i in range(hparams.batch_size)])
        return tf.concat([model.sample(1, max_length=hparams.max_seq_len, z=mu[i:i + 1], temperature=None,
                                       c_input=c_in[i])[0] for i in range(hparams.batch_size)], axis=0)


def _class_margins(build, found: dict, lengths: np.ndarray, controls, depths: list[int], checkpoint: Path):
    """The gap between the two largest logits of each greedy step (the smallest of the parts'), teacher-forced
    on the greedy decode (what the decode fed, every step of every segment)."""
    steps = found["greedy"].shape[1]
    full = np.full_like(lengths, steps // lengths.shape[1] if lengths.ndim == 2 else steps)
    with tf.Graph().as_default():
        model = build()
        fed = tf.constant(np.pad(found["greedy"][:, :-1], [(0, 0), (1, 0), (0, 0)]))
        results = model.decoder.reconstruction_loss(fed, tf.constant(found["greedy"]), tf.constant(full),
                                                    tf.constant(found["mu"]),
                                                    None if controls is None else tf.constant(controls))[2]
        logits = results.rnn_output  # (B, T, D): the segments merged in time order
        tops = [tf.math.top_k(part, k=2).values for part in tf.split(logits, depths, axis=-1)]
        margin = tf.reduce_min(tf.stack([top[..., 0] - top[..., 1] for top in tops], -1), -1)
        with tf.Session() as session:
            restore(session, checkpoint)
            return session.run(margin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="hier-enc-drums_4bar")
    parser.add_argument("--windows", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = CONFIGS[args.config]
    inputs, outputs, lengths, controls = config.windows(args.windows)
    write_fixture(args.out, inputs, outputs, lengths, {**COMMON, **config.hparams}, config.model, args.seed,
                  controls=controls, depths=config.depths)


if __name__ == "__main__":
    main()
