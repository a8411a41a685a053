"""The encoder and the decoders: shapes, gradients, the fast sampler against the plain loop (the
``backend`` option's "fast" against its "plain"), the hierarchical decoder's batched bars against
bar-by-bar decoding, and lengths in the encoder."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from hvae.errors import HvaeError
from hvae.interfaces import FastDraws, Loss
from hvae.plugins import registry

torch.set_num_threads(1)

Z = 8
SIZES = (16, 12)  # unequal layer sizes: the stacking must not assume equal ones
STEPS = 8
HIER_LEVELS = (2, 4)
CONTROLS = 3
# output kind -> (depth, loss names that fit)
KINDS = {"onehot": (12, ["categorical"]), "groove": (9, ["groove", "groove-gated"]), "multihot": (5, ["bernoulli"])}
COMBOS = [(decoder, kind, loss) for decoder in ("flat", "hierarchical", "groove")
          for kind, (_, losses) in KINDS.items() for loss in losses]


def make_loss(name: str, depth: int):
    return registry().get("losses", name).factory(depth)


def make_decoder(name: str, depth: int, raw_size: int, control_depth: int = 0, seed: int = 0, **options):
    torch.manual_seed(seed)
    options.setdefault("rnn_sizes", SIZES)
    if name == "hierarchical":
        options.setdefault("level_lengths", HIER_LEVELS)
        options.setdefault("conductor_sizes", (10, 14))
    cls = registry().get("decoders", name).factory
    return cls(output_depth=depth, raw_size=raw_size, z_size=Z, control_depth=control_depth, steps=STEPS, **options)


def targets_for(kind: str, batch: int, steps: int = STEPS) -> torch.Tensor:
    depth = KINDS[kind][0]
    if kind == "onehot":
        return F.one_hot(torch.randint(0, depth, (batch, steps)), depth).float()
    if kind == "groove":
        hits = (torch.rand(batch, steps, depth // 3) > 0.6).float()
        return torch.cat([hits, torch.rand_like(hits) * hits, (torch.rand_like(hits) * 2 - 1) * hits], -1)
    return (torch.rand(batch, steps, depth) > 0.7).float()


def check_values(kind: str, values: torch.Tensor) -> None:
    depth = KINDS[kind][0]
    if kind == "onehot":
        assert torch.equal(values.sum(-1), torch.ones(values.shape[:-1]))
    elif kind == "groove":
        hits, velocities, offsets = values.split(depth // 3, -1)
        assert set(hits.unique().tolist()) <= {0.0, 1.0}
        assert velocities.min() >= 0 and velocities.max() <= 1 and offsets.min() >= -1 and offsets.max() <= 1
    else:
        assert set(values.unique().tolist()) <= {0.0, 1.0}


# --- every decoder with every loss that fits ---------------------------------------------------


@pytest.mark.parametrize("decoder_name,kind,loss_name", COMBOS)
def test_decoder_and_loss_train_and_sample(decoder_name, kind, loss_name):
    depth = KINDS[kind][0]
    loss = make_loss(loss_name, depth)
    decoder = make_decoder(decoder_name, depth, loss.raw_size, dropout=0.1)
    targets = targets_for(kind, 3)
    z = torch.randn(3, Z)
    raw = decoder(z, targets, torch.full((3,), STEPS))
    assert raw.shape == (3, STEPS, loss.raw_size)
    per_sequence, _ = loss(raw, targets, torch.ones(3, STEPS))
    per_sequence.mean().backward()
    trainable = [p for p in decoder.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert any(p.grad.abs().sum() > 0 for p in trainable)
    decoder.eval()
    drawn = decoder.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (3, STEPS, depth)
    check_values(kind, drawn)


@pytest.mark.parametrize("decoder_name", ["flat", "hierarchical"])
def test_decoders_take_controls(decoder_name):
    loss = make_loss("categorical", 12)
    decoder = make_decoder(decoder_name, 12, 12, control_depth=CONTROLS).eval()
    z, controls = torch.randn(2, Z), torch.randn(2, STEPS, CONTROLS)
    assert decoder(z, targets_for("onehot", 2), torch.full((2,), STEPS), controls).shape == (2, STEPS, 12)
    assert decoder.sample(z, STEPS, 1.0, loss, controls).shape == (2, STEPS, 12)


def test_the_groove_decoder_has_grooves_defaults():
    cls = registry().get("decoders", "groove").factory
    decoder = cls(output_depth=27, raw_size=27, z_size=Z, steps=64)
    assert decoder.options.rnn_sizes == (256, 256)
    assert decoder.options.dropout == pytest.approx(0.7)
    assert cls.default_loss == "groove"


# --- the fast sampler draws what the plain loop (hvae_decoders.plain) draws ------------------


def decoder_pair(name: str, depth: int, raw_size: int, control_depth: int = 0, seed: int = 0, **options):
    """The same decoder (same weights, output weights scaled up so that a wrong gate shows in the
    draws) with the fast backend and with the plain one."""
    pair = [make_decoder(name, depth, raw_size, control_depth, seed, backend=backend, **options).eval()
            for backend in ("fast", "plain")]
    for decoder in pair:
        with torch.no_grad():
            decoder.core.output.weight.mul_(20)
    return pair


@pytest.mark.parametrize("decoder_name", ["flat", "hierarchical"])
@pytest.mark.parametrize("kind,loss_name", [("onehot", "categorical"), ("groove", "groove"), ("multihot", "bernoulli")])
def test_fast_sampling_equals_the_plain_loop(decoder_name, kind, loss_name):
    depth = KINDS[kind][0]
    loss = make_loss(loss_name, depth)
    fast, plain = decoder_pair(decoder_name, depth, loss.raw_size, seed=1)
    z = torch.randn(6, Z)
    drawn = [decoder.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(7)) for decoder in (fast, plain)]
    assert drawn[0].dtype == drawn[1].dtype == torch.float32
    assert torch.allclose(drawn[0], drawn[1], atol=1e-5)


@pytest.mark.parametrize("decoder_name", ["flat", "hierarchical"])
def test_fast_sampling_with_controls_equals_the_plain_loop(decoder_name):
    loss = make_loss("categorical", 12)
    fast, plain = decoder_pair(decoder_name, 12, 12, control_depth=CONTROLS, seed=2)
    z, controls = torch.randn(5, Z), torch.randn(5, STEPS, CONTROLS) * 3
    drawn = [decoder.sample(z, STEPS, 1.0, loss, controls, torch.Generator().manual_seed(3)) for decoder in (fast, plain)]
    assert torch.equal(drawn[0], drawn[1])


def test_the_auto_backend_samples_with_the_fast_sampler():
    loss = make_loss("categorical", 12)
    fast = make_decoder("flat", 12, 12, seed=5, backend="fast").eval()
    auto = make_decoder("flat", 12, 12, seed=5).eval()
    assert auto.options.backend == "auto"
    z = torch.randn(4, Z)
    assert torch.equal(auto.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(1)),
                       fast.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(1)))


def test_a_built_decoder_switches_backend_when_its_options_are_replaced():
    calls = []

    class Counting(registry().get("losses", "categorical").factory):
        def sample_indices(self, raw, temperature, generator=None):
            calls.append(raw.shape[0])
            return super().sample_indices(raw, temperature, generator)

    loss, decoder, z = Counting(12), make_decoder("hierarchical", 12, 12).eval(), torch.randn(3, Z)
    decoder.sample(z, STEPS, 1.0, loss)
    assert calls == [3] * STEPS  # the fast sampler's stepper calls the replaced per-step draw, once a step
    decoder.options = dataclasses.replace(decoder.options, backend="plain")
    calls.clear()
    decoder.sample(z, STEPS, 1.0, loss)
    assert calls == [3] * STEPS  # the plain loop: sample_step, which draws through it


@pytest.mark.parametrize("decoder_name", ["flat", "hierarchical"])
@pytest.mark.parametrize("backend", ["auto", "fast", "plain"])
def test_a_loss_that_replaces_sample_step_is_sampled_with_its_own_draws_on_every_backend(decoder_name, backend):
    """A categorical loss whose sample_step always draws class 0: every path draws only class 0, in
    free-running sampling and in scheduled sampling (the fast paths step aside for it)."""

    class AlwaysFirst(registry().get("losses", "categorical").factory):
        def sample_step(self, raw, temperature, generator=None):
            return F.one_hot(torch.zeros(raw.shape[0], dtype=torch.long), raw.shape[-1]).to(raw.dtype)

    loss = AlwaysFirst(12)
    assert not loss.stepper_draws_sample_step and make_loss("categorical", 12).stepper_draws_sample_step
    decoder = make_decoder(decoder_name, 12, 12, backend=backend).eval()
    drawn = decoder.sample(torch.randn(3, Z), STEPS, 1.0, loss)
    assert torch.equal(drawn.argmax(-1), torch.zeros(3, STEPS, dtype=torch.long))
    fed = []
    original = decoder.core.teacher_forced
    decoder.core.teacher_forced = lambda embedding, previous, *a, **k: fed.append(previous) or original(
        embedding, previous, *a, **k)
    decoder.train()
    targets = F.one_hot(torch.randint(1, 12, (3, STEPS)), 12).float()
    decoder(torch.randn(3, Z), targets, torch.full((3,), STEPS), sampling_probability=1.0, loss=loss)
    assert fed == []  # no draw-first path: the plain loop drew through AlwaysFirst.sample_step


def test_sampling_follows_weight_updates():
    loss = make_loss("categorical", 12)
    fast, plain = decoder_pair("flat", 12, 12, seed=4)
    z = torch.randn(6, Z)
    fast.sample(z, STEPS, 1.0, loss)  # lays out the weights once
    with torch.no_grad():
        for p, q in zip(fast.parameters(), plain.parameters()):
            change = torch.randn_like(p) * 0.5
            p.add_(change)
            q.add_(change)
    drawn = [decoder.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(2)) for decoder in (fast, plain)]
    assert torch.equal(drawn[0], drawn[1])


class SampleStepOnly(Loss):
    """A third-party loss with nothing but the loss and its draw (no FastDraws)."""

    name = "sample-step-only"
    accepts = frozenset({"onehot"})

    def __call__(self, raw, targets, mask):
        per_step = -(targets * F.log_softmax(raw, dim=-1)).sum(-1)
        return (per_step * mask).sum(1), {}

    def sample_step(self, raw, temperature, generator=None):
        probabilities = F.softmax(raw / temperature, dim=-1)
        return F.one_hot(torch.multinomial(probabilities, 1, generator=generator).squeeze(1), raw.shape[-1]).float()


@pytest.mark.parametrize("decoder_name", ["flat", "hierarchical"])
def test_a_loss_with_only_sample_step_samples_and_trains_on_every_backend(decoder_name):
    loss = SampleStepOnly(12)
    assert not isinstance(loss, FastDraws)
    fast, plain = decoder_pair(decoder_name, 12, 12, seed=6)
    z = torch.randn(4, Z)
    drawn = [decoder.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(5)) for decoder in (fast, plain)]
    check_values("onehot", drawn[0])
    assert torch.equal(drawn[0], drawn[1])
    targets, lengths = targets_for("onehot", 4), torch.full((4,), STEPS)
    raws = [decoder.train()(z, targets, lengths, sampling_probability=0.5, loss=loss,
                            generator=torch.Generator().manual_seed(6)) for decoder in (fast, plain)]
    assert torch.allclose(raws[0], raws[1], atol=1e-4)


@pytest.mark.parametrize("decoder_name", ["flat", "hierarchical"])
def test_sampling_is_reproducible_with_a_seeded_generator(decoder_name):
    loss = make_loss("categorical", 12)
    decoder = make_decoder(decoder_name, 12, 12).eval()
    with torch.no_grad():
        decoder.core.output.weight.mul_(20)
    z = torch.randn(4, Z)
    first = decoder.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(9))
    again = decoder.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(9))
    other = decoder.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(10))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_sampling_works_under_inference_mode_and_bfloat16_autocast():
    loss = make_loss("categorical", 12)
    decoder = make_decoder("hierarchical", 12, 12).eval()
    z = torch.randn(3, Z)
    with torch.inference_mode():
        plain = decoder.sample(z, STEPS, 0.0, loss)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = decoder.sample(z, STEPS, 0.0, loss)
    check_values("onehot", plain)
    check_values("onehot", half)
    assert half.dtype == torch.float32


def test_greedy_sampling_picks_the_most_likely_output_each_step():
    loss = make_loss("categorical", 12)
    decoder = make_decoder("flat", 12, 12).eval()
    z = torch.randn(3, Z)
    greedy = decoder.sample(z, STEPS, 0.0, loss)
    with torch.no_grad():
        raw = decoder(z, greedy, torch.full((3,), STEPS))  # teacher-forced on its own greedy outputs
    assert torch.equal(raw.argmax(-1), greedy.argmax(-1))


# --- teacher forcing -------------------------------------------------------------------------


def test_hierarchical_teacher_forcing_equals_bar_by_bar_decoding():
    decoder = make_decoder("hierarchical", 12, 12, control_depth=CONTROLS).eval()
    z, targets = torch.randn(3, Z), targets_for("onehot", 3)
    controls = torch.randn(3, STEPS, CONTROLS)
    with torch.no_grad():
        batched = decoder(z, targets, torch.full((3,), STEPS), controls)
        embeddings = decoder.conduct(z)  # (B, bars, H)
        previous = torch.cat([torch.zeros(3, 1, 12), targets[:, :-1]], 1)
        bars, length = HIER_LEVELS
        by_bar = []
        for bar in range(bars):
            steps = slice(bar * length, (bar + 1) * length)
            embedding = embeddings[:, bar]
            state = [(h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous())
                     for h, c in decoder.core.initial_state(embedding)]
            x = torch.cat([previous[:, steps], embedding.unsqueeze(1).expand(-1, length, -1), controls[:, steps]], -1)
            for i, layer in enumerate(decoder.core.lstm.layers):
                x, _ = layer(x, state[i])
            by_bar.append(decoder.core.output(x))
    assert torch.allclose(batched, torch.cat(by_bar, 1), atol=1e-5)


@pytest.mark.parametrize("backend", ["auto", "plain"])
@pytest.mark.parametrize("decoder_name,kind,loss_name,control_depth,dropout", [
    ("flat", "onehot", "categorical", 0, 0.0), ("hierarchical", "onehot", "categorical", CONTROLS, 0.0),
    ("flat", "groove", "groove", CONTROLS, 0.0), ("hierarchical", "multihot", "bernoulli", 0, 0.0),
    ("flat", "onehot", "categorical", CONTROLS, 1e-12), ("hierarchical", "groove", "groove", 0, 1e-12)])
def test_scheduled_sampling_never_sampling_equals_teacher_forcing(decoder_name, kind, loss_name, control_depth,
                                                                  dropout, backend):
    """The step-by-step training loops compute what nn.LSTM computes (a 1e-12 dropout takes the
    plain loop, with dropout on each layer's input, and drops nothing)."""
    depth = KINDS[kind][0]
    loss = make_loss(loss_name, depth)
    decoder = make_decoder(decoder_name, depth, loss.raw_size, control_depth=control_depth, dropout=dropout,
                           backend=backend)
    z, targets, lengths = torch.randn(3, Z), targets_for(kind, 3), torch.full((3,), STEPS)
    controls = torch.randn(3, STEPS, control_depth) if control_depth else None
    teacher = decoder(z, targets, lengths, controls)
    stepped = decoder(z, targets, lengths, controls, sampling_probability=1e-12, loss=loss)
    assert torch.allclose(stepped, teacher, atol=1e-5)
    stepped.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in decoder.parameters() if p.requires_grad)


@pytest.mark.parametrize("decoder_name,dropout", [("flat", 0.0), ("hierarchical", 0.0), ("flat", 1e-12)])
def test_scheduled_sampling_always_sampling_feeds_the_models_own_draws(decoder_name, dropout):
    categorical = registry().get("losses", "categorical").factory

    class Greedy(categorical):  # every draw is the argmax, so the draws can be read off the outputs
        def sample_indices(self, raw, temperature, generator=None):
            return super().sample_indices(raw, 0.0, generator)

    decoder = make_decoder(decoder_name, 12, 12, dropout=dropout)
    z, targets, lengths = torch.randn(3, Z), targets_for("onehot", 3), torch.full((3,), STEPS)
    always = decoder(z, targets, lengths, sampling_probability=1.0, loss=Greedy(12))
    own = F.one_hot(always.argmax(-1), 12).float()
    if decoder_name == "hierarchical":  # each bar starts from the target before it, as the reference trains
        own[:, HIER_LEVELS[1] - 1] = targets[:, HIER_LEVELS[1] - 1]
    assert torch.allclose(always, decoder(z, own, lengths), atol=1e-5)
    assert not torch.allclose(always[:, 1:], decoder(z, targets, lengths)[:, 1:])


def test_hierarchical_level_lengths_must_cover_the_steps():
    with pytest.raises(HvaeError, match="level_lengths"):
        make_decoder("hierarchical", 12, 12, level_lengths=(3, 4))
    cls = registry().get("decoders", "hierarchical").factory
    assert cls(output_depth=12, raw_size=12, z_size=Z, steps=64, rnn_sizes=(8,)).options.level_lengths == (4, 16)
    with pytest.raises(HvaeError, match="whole bars"):
        cls(output_depth=12, raw_size=12, z_size=Z, steps=40, rnn_sizes=(8,))


def test_bad_decoder_options_are_refused():
    with pytest.raises(HvaeError, match="Unknown option"):
        make_decoder("flat", 12, 12, hidden=3)
    with pytest.raises(HvaeError, match="dropout"):
        make_decoder("flat", 12, 12, dropout=1.0)
    with pytest.raises(HvaeError, match="rnn_sizes"):
        make_decoder("flat", 12, 12, rnn_sizes=())


def test_initial_state_follows_the_references_c_then_h_order():
    decoder = make_decoder("flat", 12, 12)
    z = torch.randn(2, Z)
    flat = torch.tanh(decoder.core.initial_state.dense(z))
    (h0, c0), (h1, c1) = decoder.core.initial_state(z)
    assert torch.equal(torch.cat([c0, h0, c1, h1], -1), flat)


def test_lstm_parameters_start_as_the_references():
    decoder = make_decoder("flat", 12, 12)
    layer = decoder.core.lstm.layers[0]
    hidden = SIZES[0]
    assert torch.equal(layer.bias_ih_l0[hidden:2 * hidden], torch.ones(hidden))  # forget bias 1
    assert layer.bias_ih_l0[:hidden].abs().sum() == 0 and layer.bias_ih_l0[2 * hidden:].abs().sum() == 0
    assert not layer.bias_hh_l0.requires_grad and layer.bias_hh_l0.abs().sum() == 0
    assert decoder.core.initial_state.dense.weight.std() < 0.01


# --- encoder ---------------------------------------------------------------------------------


def make_encoder(input_depth=6, **options):
    torch.manual_seed(0)
    options.setdefault("rnn_sizes", (10, 8))
    return registry().get("encoders", "bidirectional").factory(input_depth, Z, **options).eval()


def test_encoder_gives_mu_and_positive_sigma():
    mu, sigma = make_encoder()(torch.randn(4, STEPS, 6), torch.full((4,), STEPS))
    assert mu.shape == sigma.shape == (4, Z)
    assert (sigma > 0).all()


def test_padding_does_not_change_the_encoding():
    encoder = make_encoder()
    inputs = torch.randn(3, STEPS, 6)
    lengths = torch.tensor([STEPS, 5, 2])
    junk = inputs.clone()
    for row, length in enumerate(lengths.tolist()):
        junk[row, length:] = torch.randn(STEPS - length, 6) * 10
    mu, sigma = encoder(inputs, lengths)
    mu_junk, sigma_junk = encoder(junk, lengths)
    assert torch.allclose(mu, mu_junk, atol=1e-6) and torch.allclose(sigma, sigma_junk, atol=1e-6)
    alone, _ = encoder(inputs[1:2, :5], torch.tensor([5]))
    assert torch.allclose(alone, mu[1:2], atol=1e-6)


def test_the_encoding_reads_the_first_and_last_valid_steps():
    encoder = make_encoder(rnn_sizes=(10,))
    with torch.no_grad():
        encoder.mu.weight.normal_()
    inputs, lengths = torch.randn(1, STEPS, 6), torch.tensor([5])
    mu, _ = encoder(inputs, lengths)
    for step in (0, 4):
        changed = inputs.clone()
        changed[0, step] += 1.0
        assert not torch.allclose(encoder(changed, lengths)[0], mu)


def test_encoder_dropout_only_while_training():
    encoder = make_encoder(dropout=0.5)
    inputs, lengths = torch.randn(2, STEPS, 6), torch.full((2,), STEPS)
    assert torch.equal(encoder(inputs, lengths)[0], encoder(inputs, lengths)[0])
    encoder.train()
    with torch.no_grad():
        encoder.mu.weight.normal_()
    assert not torch.equal(encoder(inputs, lengths)[0], encoder(inputs, lengths)[0])


def make_hierarchical_encoder(input_depth=6, steps=16, **options):
    torch.manual_seed(0)
    options.setdefault("rnn_sizes", (10, 8))
    options.setdefault("level_lengths", (4, 4))
    return registry().get("encoders", "hierarchical").factory(input_depth, Z, steps=steps, **options).eval()


def plain_bidirectional(level, sequence: torch.Tensor) -> torch.Tensor:
    """A level's embedding of whole sequences ``(B, T, D)``, written out with nn.LSTM calls."""
    x = sequence
    for fw, bw in zip(level.forward_layers, level.backward_layers):
        out_fw, _ = fw(x)
        out_bw = bw(x.flip(1))[0].flip(1)
        x = torch.cat([out_fw, out_bw], dim=-1)
    return torch.cat([out_fw[:, -1], out_bw[:, 0]], dim=-1)


@pytest.mark.parametrize("backend", ["plain", "fast"])
@pytest.mark.parametrize("one_hot", [False, True])  # the fast path reads one-hot inputs as row gathers
def test_the_hierarchical_encoder_encodes_each_segment_then_the_segments_in_order(backend, one_hot):
    """Three levels (16 steps as 2 x 2 x 4): each level's bidirectional encoder reads its segments one
    by one, the next level reads their embeddings in time order, the top one's embedding gives mu."""
    encoder = make_hierarchical_encoder(level_lengths=(4, 2, 2), backend=backend)
    inputs = F.one_hot(torch.randint(0, 6, (3, 16)), 6).float() if one_hot else torch.randn(3, 16, 6)
    with torch.no_grad():
        mu, sigma = encoder(inputs, torch.full((3,), 16))
        x = inputs
        for level, length in zip(encoder.levels, (4, 2, 2)):
            x = torch.stack([plain_bidirectional(level, x[:, k * length:(k + 1) * length])
                             for k in range(x.shape[1] // length)], dim=1)
        assert torch.allclose(mu, encoder.mu(x[:, 0]), atol=1e-6)
        assert torch.allclose(sigma, F.softplus(encoder.sigma(x[:, 0])), atol=1e-6)


def test_the_hierarchical_encoder_reads_only_the_segments_a_short_sequence_covers():
    encoder = make_hierarchical_encoder()
    with torch.no_grad():
        encoder.mu.weight.normal_()
    inputs = torch.randn(2, 16, 6)
    junk = inputs.clone()
    junk[:, 10:] = 10 * torch.randn(2, 6, 6)
    lengths = torch.tensor([10, 10])
    assert torch.allclose(encoder(inputs, lengths)[0], encoder(junk, lengths)[0], atol=1e-6)
    assert not torch.allclose(encoder(inputs, torch.full((2,), 16))[0], encoder(junk, torch.full((2,), 16))[0])


def test_the_hierarchical_encoder_takes_its_split_from_the_window():
    encoder = make_hierarchical_encoder(steps=64, level_lengths=None)
    assert encoder.options.level_lengths == (16, 4)
    for steps, level_lengths, words in [(64, (16, 3), "product is 64"), (40, None, "not whole bars of 16"),
                                        (16, (16,), "two or more lengths")]:
        with pytest.raises(HvaeError, match=words):
            make_hierarchical_encoder(steps=steps, level_lengths=level_lengths)


def test_a_model_with_the_hierarchical_encoder_trains_through_build_model():
    from hvae.model import ModelConfig, build_model
    from hvae.plugins import make_converter

    converter = make_converter("drums", {"slice_bars": 4})
    model = build_model(ModelConfig(z_size=Z, encoder="hierarchical", encoder_options={"rnn_sizes": (8,)},
                                    decoder_options={"rnn_sizes": (8,)}), converter)
    assert model.config.encoder_options["level_lengths"] == (16, 4)
    inputs = F.one_hot(torch.randint(0, converter.input_depth, (2, 64)), converter.input_depth).float()
    model.encoder.train()
    mu, sigma = model.encoder(inputs, torch.full((2,), 64))
    (mu.sum() + sigma.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.levels.parameters()
               if p.requires_grad)


def test_importing_the_decoders_installs_no_global_hook():
    """No import-time side effects: the sampler's weight cache needs no process-wide optimizer hook."""
    code = ("import importlib, pkgutil, torch.optim.optimizer as o, hvae_decoders; "
            "[importlib.import_module(f'hvae_decoders.{m.name}') for m in pkgutil.iter_modules(hvae_decoders.__path__)]; "
            "print(len(o._global_optimizer_pre_hooks), len(o._global_optimizer_post_hooks))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["0", "0"]


def test_the_plain_backend_keeps_its_earlier_name():
    """Run directories written when the plain loops were called "reference" load and decode as before."""
    from hvae_decoders.backend import check_backend, fast_sampling

    check_backend("reference", "decoder")
    assert not fast_sampling("reference") and not fast_sampling("plain") and fast_sampling("auto")
    with pytest.raises(HvaeError, match="backend must be one of auto, plain, fast"):
        check_backend("slow", "decoder")
