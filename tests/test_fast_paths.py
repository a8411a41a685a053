"""The fast paths compute what the plain ones compute: hvae's LSTM recurrence against nn.LSTM (forward
and gradients, through whole models and a training step), and scheduled sampling's draw-first pass
against the plain step-by-step loop, compared through the components' ``backend`` option ("fast"
against "reference"). Same seed, same numbers within float tolerance. (The sampler's own
equivalence with the plain loop is in test_decoders.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hvae.errors import HvaeError
from hvae.interfaces import FastDraws
from hvae.model import Batch, DataSpec, ModelConfig, build_model, clip_gradients
from hvae.plugins import registry
from hvae_decoders.recurrence import one_hot_indices, recurrence
from hvae_decoders import onednn
from hvae_decoders.onednn import Product, linear

torch.set_num_threads(1)

STEPS = 8


def test_recurrence_gradients_match_finite_differences_in_float64():
    torch.manual_seed(0)
    steps, batch, size = 4, 3, 5
    shapes = [(steps, batch, 4 * size), (size, 4 * size), (batch, size), (batch, size)]
    inputs = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in shapes]
    weights = torch.randn(steps, batch, size, dtype=torch.float64)

    def f(*args):
        gates, *rest = args
        return (recurrence(gates.clone(), *rest) * weights).sum()

    grads = torch.autograd.grad(f(*inputs), inputs)
    for _ in range(4):  # directional derivatives along random directions
        direction = [torch.randn_like(x) for x in inputs]
        with torch.no_grad():
            eps = 1e-6
            plus = f(*[x + eps * d for x, d in zip(inputs, direction)])
            minus = f(*[x - eps * d for x, d in zip(inputs, direction)])
        numeric = (plus - minus) / (2 * eps)
        analytic = sum((g * d).sum() for g, d in zip(grads, direction))
        assert torch.allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


def test_recurrence_equals_nn_lstm():
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(6, 7, batch_first=True)
    x, h0, c0 = torch.randn(3, STEPS, 6), torch.randn(3, 7), torch.randn(3, 7)
    expected, _ = lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
    gates = F.linear(x.transpose(0, 1), lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)
    got = recurrence(gates, lstm.weight_hh_l0.t(), h0, c0).transpose(0, 1)
    assert torch.allclose(got, expected, atol=1e-6)


def test_one_hot_rows_are_recognised():
    one_hot = F.one_hot(torch.tensor([[2, 0], [1, 1]]), 3).float()
    one_hot[1, 0] = 0
    assert one_hot_indices(one_hot).tolist() == [[2, 0], [3, 1]]
    assert one_hot_indices(one_hot * 0.5) is None
    assert one_hot_indices(one_hot + F.one_hot(torch.tensor([[0, 1], [0, 0]]), 3).float()) is None


# (name, data spec, model options): one-hot and multi-hot inputs, controls, both decoders,
# scheduled sampling, the groove loss, and dropout.
MODELS = {
    "flat-onehot-scheduled": (
        DataSpec("test", "onehot", 12, 12, 0, STEPS),
        dict(decoder="flat", decoder_options={"rnn_sizes": (16, 12)}, sampling_schedule="constant",
             sampling_rate=0.5)),
    "hierarchical-roll-controls": (
        DataSpec("test", "onehot", 5, 12, 3, STEPS),
        dict(decoder="hierarchical", decoder_options={"rnn_sizes": (16,), "level_lengths": (2, 4),
                                                      "conductor_sizes": (10, 14)})),
    "hierarchical-onehot-scheduled": (
        DataSpec("test", "onehot", 12, 12, 0, STEPS),
        dict(decoder="hierarchical", decoder_options={"rnn_sizes": (16, 12), "level_lengths": (2, 4)},
             sampling_schedule="constant", sampling_rate=0.5)),
    "groove": (
        DataSpec("test", "groove", 9, 9, 0, STEPS),
        dict(decoder="groove", decoder_options={"rnn_sizes": (16, 12), "dropout": 0.0})),
    "groove-dropout": (  # the recurrence with the plain path's dropout masks
        DataSpec("test", "groove", 9, 9, 0, STEPS),
        dict(decoder="groove", decoder_options={"rnn_sizes": (16, 12), "dropout": 0.5})),
}


def make_batch(spec: DataSpec, batch: int = 4) -> Batch:
    g = torch.Generator().manual_seed(5)
    if spec.output_kind == "onehot":
        outputs = F.one_hot(torch.randint(0, spec.output_depth, (batch, STEPS), generator=g), spec.output_depth).float()
    else:
        hits = (torch.rand(batch, STEPS, 3, generator=g) < 0.4).float()
        outputs = torch.cat([hits, torch.rand(batch, STEPS, 3, generator=g) * hits,
                             (torch.rand(batch, STEPS, 3, generator=g) * 2 - 1) * hits], -1)
    inputs = outputs.clone() if spec.input_depth == spec.output_depth else (
        torch.rand(batch, STEPS, spec.input_depth, generator=g) < 0.3).float()
    controls = torch.rand(batch, STEPS, spec.control_depth, generator=g) if spec.control_depth else None
    return Batch(inputs, outputs, torch.tensor(([STEPS, STEPS, 5, 3] * batch)[:batch]), controls)


def with_backend(options: dict, backend: str) -> dict:
    """Model options with ``backend`` for the encoder and the decoder."""
    return {**options, "decoder_options": {**options.get("decoder_options", {}), "backend": backend}}


def training_step(name: str, backend: str):
    """Loss, raw outputs and clipped gradients of one training step of MODELS[name] with ``backend``."""
    spec, options = MODELS[name]
    torch.manual_seed(0)
    model = build_model(ModelConfig(z_size=6, encoder_options={"rnn_sizes": (10, 8), "backend": backend},
                                    **with_backend(options, backend)), spec).train()
    with torch.no_grad():  # make the outputs depend strongly on every state, so a wrong gradient shows
        for p in model.parameters():
            p.mul_(3)
        model.encoder.mu.weight.normal_()  # (initialised at 0.001 scale, z would barely depend on x)
        model.encoder.sigma.weight.normal_(std=0.1)
    out = model(make_batch(spec), step=10, generator=torch.Generator().manual_seed(3))
    out.loss.backward()
    clip_gradients(model, model.config)
    return out.loss.detach(), out.raw.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_training_step_gives_the_same_loss_outputs_and_gradients_fast_and_plain(name):
    """"fast": hvae's recurrence in the encoder (at any size) and the decoder, draw-first scheduled
    sampling; "reference": nn.LSTM, and scheduled sampling step by step."""
    fast_loss, fast_raw, fast_grads = training_step(name, "fast")
    plain_loss, plain_raw, plain_grads = training_step(name, "reference")
    assert torch.allclose(fast_loss, plain_loss, rtol=1e-5)
    assert torch.allclose(fast_raw, plain_raw, atol=1e-4)
    assert fast_grads.keys() == plain_grads.keys()
    for key in plain_grads:
        assert torch.allclose(fast_grads[key], plain_grads[key], rtol=1e-3, atol=1e-5), key


@pytest.mark.parametrize("name", ["flat-onehot-scheduled", "groove-dropout"])
def test_a_training_steps_products_never_hang_on_a_timing(name, monkeypatch):
    """Which engine is faster is timed per process and may differ from one to the next; a training's
    products (the recurrence, scheduled sampling's draws) take a fixed engine, so the same seed trains
    the same model in every process. Layers of 256 units at batch 16: work the timing would decide."""
    def timed(weight, batch):
        raise AssertionError(f"a training's product was timed: {tuple(weight.shape)} at batch {batch}")

    monkeypatch.setattr(onednn, "onednn_is_faster", timed)
    spec, options = MODELS[name]
    options = {**options, "decoder_options": {**options["decoder_options"], "rnn_sizes": (256,), "backend": "fast"}}
    torch.manual_seed(0)
    model = build_model(ModelConfig(z_size=6, encoder_options={"rnn_sizes": (256,), "backend": "fast"}, **options),
                        spec).train()
    model(make_batch(spec, 16), step=10, generator=torch.Generator().manual_seed(3)).loss.backward()
    model.eval()
    with torch.no_grad(), pytest.raises(AssertionError, match="timed"):  # sampling does time them
        model.sample(16, generator=torch.Generator().manual_seed(3))


def flat_decoders(*backends: str, depth: int = 12):
    """Flat decoders with the same weights, one per backend."""
    decoders = []
    for backend in backends:
        torch.manual_seed(0)
        decoders.append(registry().get("decoders", "flat").factory(output_depth=depth, raw_size=depth, z_size=6,
                                                                    steps=STEPS, rnn_sizes=(16, 12), backend=backend))
    return decoders


@pytest.mark.parametrize("probability", [0.3, 1.0])
def test_scheduled_sampling_draws_first_then_equals_the_plain_step_loop(probability):
    loss = registry().get("losses", "categorical").factory(12)
    fast_decoder, plain_decoder = flat_decoders("fast", "reference")
    for decoder in (fast_decoder, plain_decoder):
        with torch.no_grad():
            decoder.core.output.weight.mul_(20)
    z, lengths = torch.randn(5, 6), torch.full((5,), STEPS)
    targets = F.one_hot(torch.randint(0, 12, (5, STEPS)), 12).float()
    fast, plain = (decoder(z, targets, lengths, sampling_probability=probability, loss=loss,
                           generator=torch.Generator().manual_seed(4)) for decoder in (fast_decoder, plain_decoder))
    assert torch.allclose(fast, plain, atol=1e-4)
    fast_grads = torch.autograd.grad(fast.square().sum(), list(fast_decoder.parameters())[:4])
    plain_grads = torch.autograd.grad(plain.square().sum(), list(plain_decoder.parameters())[:4])
    for f, p in zip(fast_grads, plain_grads):
        assert torch.allclose(f, p, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("probability", [0.0, 0.02, 0.2])
@pytest.mark.parametrize("controls,amp", [(False, False), (True, False), (False, True)])
def test_scheduled_sampling_steps_only_the_sequences_fed_a_draw(monkeypatch, probability, controls, amp):
    """On the CPU the draw-first pass steps only the sequences that are fed a draw, up to the last such
    step: the same draws as the whole batch's pass (what runs where the host cannot read which), and
    the generator left where the plain loop leaves it, even where no sequence is fed a draw; also under
    bfloat16 autocast (``--amp``), where the pass's raw outputs are bfloat16."""
    from hvae_decoders import decoder_core

    loss = registry().get("losses", "categorical").factory(12)
    torch.manual_seed(3)
    core = decoder_core.LstmCore(12, 12, 6, 3 if controls else 0, (16, 12), 0.0)
    with torch.no_grad():
        core.output.weight.mul_(20)  # decisive draws: a product's rounding cannot move them
    batch = 40
    embedding = torch.randn(batch, 6)
    previous = F.one_hot(torch.randint(0, 12, (batch, STEPS)), 12).float()
    control = torch.randn(batch, STEPS, 3) if controls else None
    use_draw = torch.rand(batch, STEPS, generator=torch.Generator().manual_seed(1)) < probability
    if probability == 0.02:  # one late step and one early one, in two sequences
        use_draw.zero_()
        use_draw[7, 5] = use_draw[30, 2] = True

    def fed(host_reads: bool) -> tuple[torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(decoder_core, "host_reads_are_free", lambda device: host_reads)
        generator = torch.Generator().manual_seed(9)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            got = core._fed_with_draws(embedding, previous, control, use_draw, loss, generator)
        return got, torch.rand(4, generator=generator)

    stepped, after = fed(True)
    whole, whole_after = fed(False)
    assert torch.equal(stepped, whole)
    assert torch.equal(after, whole_after)
    generator = torch.Generator().manual_seed(9)  # the plain loop's draws: one per step from step 1
    for _ in range(STEPS - 1):
        loss.feedback_step(torch.zeros(batch, 12), generator)
    assert torch.equal(after, torch.rand(4, generator=generator))
    unchanged = ~use_draw
    unchanged[:, 0] = True
    assert torch.equal(stepped[unchanged], previous[unchanged])


def test_an_unknown_backend_is_refused():
    with pytest.raises(HvaeError, match="backend must be one of auto, plain, fast"):
        flat_decoders("slow")
    with pytest.raises(HvaeError, match="backend"):
        registry().get("encoders", "bidirectional").factory(6, 4, backend="cudnn")


@pytest.mark.parametrize("name,depth", [("categorical", 12), ("groove", 9), ("groove-gated", 9), ("bernoulli", 5)])
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_a_losss_stepper_draws_what_one_call_per_step_draws(name, depth, temperature):
    loss = registry().get("losses", name).factory(depth)
    assert isinstance(loss, FastDraws)
    raws = torch.randn(6, 3, loss.raw_size) * 3  # 6 steps of 3 sequences
    one_by_one = torch.Generator().manual_seed(8)
    expected = [loss.sample_step(raw, temperature, one_by_one) for raw in raws]
    draw = loss.stepper(len(raws), temperature, torch.Generator().manual_seed(8))
    for raw, want in zip(raws, expected):
        got = draw(raw)
        assert torch.equal(F.one_hot(got, depth).float() if loss.draws_classes else got, want)


def test_onednn_products_equal_plain_ones():
    torch.manual_seed(2)
    x = torch.randn(64, 128, requires_grad=True)
    weight, bias = torch.randn(96, 128, requires_grad=True), torch.randn(96, requires_grad=True)
    grad = torch.randn(64, 96)
    fast = linear(x, weight, bias)
    fast_grads = torch.autograd.grad(fast, (x, weight, bias), grad)
    plain = F.linear(x, weight, bias)
    plain_grads = torch.autograd.grad(plain, (x, weight, bias), grad)
    assert torch.allclose(fast, plain, atol=1e-4)
    assert all(torch.allclose(f, p, atol=1e-3) for f, p in zip(fast_grads, plain_grads))
    with torch.no_grad():
        for timed in (True, False):
            assert torch.allclose(Product(weight, 64, timed=timed)(x, bias), plain, atol=1e-4)
            assert torch.allclose(Product(weight, 1, timed=timed)(x[:1]), x[:1] @ weight.t(), atol=1e-4)


@pytest.mark.parametrize("name", ["flat-onehot-scheduled", "groove"])
def test_sampling_after_an_optimizer_step_uses_the_new_weights(name):
    """The sampler caches its weight layout in eval mode; a fused Adam step writes the weights without
    bumping their version counters, and the next sample must still see the stepped weights."""
    spec, options = MODELS[name]
    torch.manual_seed(0)
    model = build_model(ModelConfig(z_size=6, encoder_options={"rnn_sizes": (10, 8)}, **options), spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5, fused=True)
    z = torch.randn(3, 6)
    model.eval().sample(3, temperature=0.0, z=z)  # fills the cache
    model.train()(make_batch(spec), step=1).loss.backward()
    optimizer.step()
    stepped = model.eval().sample(3, temperature=0.0, z=z, generator=torch.Generator().manual_seed(1))
    fresh = build_model(model.config, spec).eval()
    fresh.load_state_dict(model.state_dict())
    expected = fresh.sample(3, temperature=0.0, z=z, generator=torch.Generator().manual_seed(1))
    assert torch.equal(stepped, expected)


def test_scheduled_sampling_draws_with_the_weights_of_each_training_step():
    """Scheduled sampling's draws run on the sampler's weight layout; after a fused Adam step (no
    version counters move) the next training step must draw with the stepped weights."""
    spec, options = MODELS["flat-onehot-scheduled"]
    torch.manual_seed(0)
    model = build_model(ModelConfig(z_size=6, encoder_options={"rnn_sizes": (10, 8)}, **options), spec).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5, fused=True)
    batch = make_batch(spec)
    model(batch, step=1, generator=torch.Generator().manual_seed(2)).loss.backward()
    optimizer.step()
    stepped = model(batch, step=2, generator=torch.Generator().manual_seed(3)).raw
    fresh = build_model(model.config, spec).train()
    fresh.load_state_dict(model.state_dict())
    expected = fresh(batch, step=2, generator=torch.Generator().manual_seed(3)).raw
    assert torch.equal(stepped, expected)


def test_a_fused_step_in_eval_mode_is_followed_once_the_cache_is_invalidated():
    spec, options = MODELS["groove"]
    torch.manual_seed(0)
    model = build_model(ModelConfig(z_size=6, encoder_options={"rnn_sizes": (10, 8)}, **options), spec).eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5, fused=True)
    z = torch.randn(3, 6)
    model.sample(3, temperature=0.0, z=z)  # fills the cache
    model(make_batch(spec), step=1).loss.backward()
    optimizer.step()
    model.decoder.core.invalidate()
    stepped = model.sample(3, temperature=0.0, z=z)
    fresh = build_model(model.config, spec).eval()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(stepped, fresh.sample(3, temperature=0.0, z=z))
