"""The model side of trios (melody, bass and drums side by side, output kind "onehot-parts"): the
multi-categorical loss, the hierarchical decoder with one core decoder per part, and the trio presets
built, trained and sampled at small sizes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from hvae.errors import HvaeError
from hvae.model import Batch, DataSpec, ModelConfig, build_model, make_optimizer
from hvae.plugins import registry
from hvae.presets import get_preset
from hvae_decoders.decoder_core import shift_right

torch.set_num_threads(1)

PARTS = (("melody", 5), ("bass", 4), ("drums", 7))  # small parts, the trio's order
DEPTHS = tuple(depth for _, depth in PARTS)
DEPTH = sum(DEPTHS)
Z = 6
STEPS = 8
LEVELS = (2, 4)


def multi(**options):
    return registry().get("losses", "multi-categorical").factory(DEPTH, **options)


def parts_of(classes: torch.Tensor) -> torch.Tensor:
    """Class indices ``(..., parts)`` as one-hot parts side by side ``(..., DEPTH)``."""
    return torch.cat([F.one_hot(classes[..., i], depth).float() for i, depth in enumerate(DEPTHS)], dim=-1)


def random_trio(batch: int, steps: int = STEPS, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return parts_of(torch.stack([torch.randint(0, d, (batch, steps), generator=g) for d in DEPTHS], dim=-1))


def split_decoder(seed: int = 0, **options):
    torch.manual_seed(seed)
    cls = registry().get("decoders", "hierarchical").factory
    options = {"rnn_sizes": (12, 10), "conductor_sizes": (9, 11), "level_lengths": LEVELS, "split_depths": DEPTHS,
               **options}
    decoder = cls(output_depth=DEPTH, raw_size=DEPTH, z_size=Z, steps=STEPS, **options)
    with torch.no_grad():  # outputs that depend strongly on the state: a wrong feed shows
        for core in decoder.cores:
            core.output.weight.mul_(20)
    return decoder


# --- the loss -------------------------------------------------------------------------------------------


def test_the_loss_is_the_sum_of_each_parts_cross_entropy_over_valid_steps():
    loss, targets = multi(output_depths=DEPTHS), random_trio(3)
    raw, mask = torch.randn(3, STEPS, DEPTH), torch.ones(3, STEPS)
    mask[2, 5:] = 0
    per_sequence, _ = loss(raw, targets, mask)
    expected = sum(-(t * F.log_softmax(r, -1)).sum(-1) for r, t in zip(raw.split(DEPTHS, -1), targets.split(DEPTHS, -1)))
    assert torch.allclose(per_sequence, (expected * mask).sum(1), atol=1e-5)


def test_each_part_has_its_accuracy_under_its_name_and_accuracy_is_their_mean():
    loss, targets = multi(output_depths=DEPTHS, part_names=("melody", "bass", "drums")), random_trio(2)
    raw = targets.clone() * 5  # every part right...
    raw[0, :, :5] = -targets[0, :, :5]  # ...but the first sequence's melody, always wrong
    mask = torch.ones(2, STEPS)
    _, metrics = loss(raw, targets, mask)
    assert {k: round(v.item(), 6) for k, v in metrics.items()} == {
        "accuracy/melody": 0.5, "accuracy/bass": 1.0, "accuracy/drums": 1.0, "accuracy": round(2.5 / 3, 6)}


def test_the_parts_are_named_part_n_without_names_and_one_part_without_depths():
    assert multi(output_depths=DEPTHS).names == ("part_0", "part_1", "part_2")
    assert multi().depths == (DEPTH,)


@pytest.mark.parametrize("options", [dict(output_depths=(5, 4)), dict(output_depths=(DEPTH, 0)),
                                     dict(output_depths=DEPTHS, part_names=("a", "b")),
                                     dict(output_depths=DEPTHS, part_names=("a", "a", "b"))])
def test_depths_that_do_not_add_up_or_names_that_do_not_fit_are_refused(options):
    with pytest.raises(HvaeError, match="multi-categorical"):
        multi(**options)


def test_a_draw_is_one_class_in_each_part_and_greedy_is_each_parts_argmax():
    loss, raw = multi(output_depths=DEPTHS), torch.randn(50, DEPTH)
    drawn = loss.sample_step(raw, 1.0, torch.Generator().manual_seed(1))
    for part in drawn.split(DEPTHS, -1):
        assert torch.equal(part.sum(-1), torch.ones(50)) and set(part.unique().tolist()) == {0.0, 1.0}
    greedy = loss.sample_step(raw, 0.0)
    assert torch.equal(greedy, parts_of(torch.stack([r.argmax(-1) for r in raw.split(DEPTHS, -1)], -1)))


def test_each_part_is_drawn_from_its_own_tempered_softmax():
    loss, logits = multi(output_depths=DEPTHS), torch.randn(DEPTH)
    drawn = loss.sample_step(logits.expand(40_000, -1), 0.7, torch.Generator().manual_seed(2))
    for frequency, part in zip(drawn.mean(0).split(DEPTHS), logits.split(DEPTHS)):
        assert torch.allclose(frequency, torch.softmax(part / 0.7, -1), atol=0.01)


def test_the_fast_draws_are_the_draws_of_sample_step():
    loss, raw = multi(output_depths=DEPTHS), torch.randn(4, 6, DEPTH)
    stepper = loss.stepper(6, 0.8, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    for t in range(6):
        assert torch.equal(stepper(raw[:, t]), loss.sample_step(raw[:, t], 0.8, generator))


def test_build_model_gives_the_loss_the_converters_parts_unless_it_has_its_own():
    spec = DataSpec("trio", "onehot-parts", DEPTH, DEPTH, 0, STEPS, PARTS)
    config = ModelConfig(z_size=Z, encoder_options={"rnn_sizes": (8,)}, decoder_options={"rnn_sizes": (8,)})
    model = build_model(config, spec)
    assert model.config.loss == "multi-categorical"
    assert (model.loss.depths, model.loss.names) == (DEPTHS, ("melody", "bass", "drums"))
    own = build_model(dataclasses.replace(config, loss_options={"output_depths": (9, 7)}), spec)
    assert (own.loss.depths, own.loss.names) == ((9, 7), ("part_0", "part_1"))
    rebuilt = build_model(ModelConfig(**dataclasses.asdict(model.config)), spec)
    assert rebuilt.loss.options == model.loss.options


# --- the flat decoder with the loss: its fast sampler draws what the plain loop draws ----------------------


def test_the_flat_decoders_fast_sampler_draws_what_the_plain_loop_draws():
    cls, loss = registry().get("decoders", "flat").factory, multi(output_depths=DEPTHS)
    pair = []
    for backend in ("fast", "plain"):
        torch.manual_seed(4)
        decoder = cls(output_depth=DEPTH, raw_size=DEPTH, z_size=Z, steps=STEPS, rnn_sizes=(12, 10),
                      backend=backend).eval()
        with torch.no_grad():
            decoder.core.output.weight.mul_(20)
        pair.append(decoder)
    z = torch.randn(6, Z)
    for temperature in (0.0, 1.0):
        fast, plain = (d.sample(z, STEPS, temperature, loss, generator=torch.Generator().manual_seed(5)) for d in pair)
        assert torch.equal(fast, plain)


# --- the hierarchical decoder, one core decoder per part --------------------------------------------------


def test_the_split_decoder_names_each_parts_layers_as_the_reference_does():
    names = set(split_decoder().reference_layers())
    for i in range(3):
        scope = f"core_decoder/core_decoder_{i}/decoder/"
        assert {scope + "z_to_initial_state", scope + "output_projection", scope + "multi_rnn_cell/cell_0/lstm_cell",
                scope + "multi_rnn_cell/cell_1/lstm_cell"} <= names
    assert len(names) == 3 + 3 * 4 and not any(n.startswith("core_decoder/decoder/") for n in names)


def test_each_core_reads_only_its_own_part():
    decoder, z = split_decoder().eval(), torch.randn(2, Z)
    targets = random_trio(2)
    other = targets.clone()
    other[..., 5:] = random_trio(2, seed=9)[..., 5:]  # the bass and drums changed, the melody kept
    raw, raw_other = (decoder(z, t, torch.full((2,), STEPS)) for t in (targets, other))
    assert torch.equal(raw[..., :5], raw_other[..., :5]) and not torch.allclose(raw[..., 5:], raw_other[..., 5:])


def test_each_core_is_the_unsplit_decoder_of_its_part_under_the_same_conductor():
    split, z, targets = split_decoder().eval(), torch.randn(3, Z), random_trio(3)
    raw = split(z, targets, torch.full((3,), STEPS))
    cls = registry().get("decoders", "hierarchical").factory
    start = 0
    for core, depth in zip(split.cores, DEPTHS):
        single = cls(output_depth=depth, raw_size=depth, z_size=Z, steps=STEPS, rnn_sizes=(12, 10),
                     conductor_sizes=(9, 11), level_lengths=LEVELS).eval()
        single.conductor_state.load_state_dict(split.conductor_state.state_dict())
        single.conductor.load_state_dict(split.conductor.state_dict())
        single.core.load_state_dict(core.state_dict())
        part = targets[..., start:start + depth]
        assert torch.allclose(single(z, part, torch.full((3,), STEPS)), raw[..., start:start + depth], atol=1e-6)
        start += depth


@pytest.mark.parametrize("backend", ["fast", "plain"])
def test_greedy_sampling_feeds_each_part_its_own_argmax(backend):
    """Decoded greedily, each step is the argmax of each part of the raw outputs that teacher forcing on the
    decoded sequence itself gives (each bar starts from the previous bar's last step)."""
    decoder, z, loss = split_decoder(backend=backend).eval(), torch.randn(4, Z), multi(output_depths=DEPTHS)
    drawn = decoder.sample(z, STEPS, 0.0, loss)
    raw = decoder(z, drawn, torch.full((4,), STEPS))
    assert torch.equal(loss.sample_step(raw.reshape(-1, DEPTH), 0.0).reshape(drawn.shape), drawn)


def test_sampling_is_reproducible_and_draws_one_class_in_each_part():
    decoder, z, loss = split_decoder().eval(), torch.randn(5, Z), multi(output_depths=DEPTHS)
    first, again = (decoder.sample(z, STEPS, 1.0, loss, generator=torch.Generator().manual_seed(6)) for _ in "ab")
    assert torch.equal(first, again) and first.shape == (5, STEPS, DEPTH)
    assert all(torch.equal(part.sum(-1), torch.ones(5, STEPS)) for part in first.split(DEPTHS, -1))


def test_scheduled_sampling_feeds_each_part_its_own_draw_where_it_chooses_to():
    """With a loss that draws greedily, scheduled sampling at probability 1 gives the raw outputs of teacher
    forcing on its own draws (each bar's first step fed the target); at probability 0, teacher forcing's."""

    class Greedy(registry().get("losses", "multi-categorical").factory):
        def sample_step(self, raw, temperature, generator=None):
            return super().sample_step(raw, 0.0, generator)

    decoder, z, targets = split_decoder().train(), torch.randn(3, Z), random_trio(3)
    loss, lengths = Greedy(DEPTH, output_depths=DEPTHS), torch.full((3,), STEPS)
    scheduled = decoder(z, targets, lengths, sampling_probability=1.0, loss=loss)
    bars, length = LEVELS
    drawn = loss.sample_step(scheduled.reshape(-1, DEPTH), 0.0).reshape(3, bars, length, DEPTH)
    fed = shift_right(targets).reshape(3, bars, length, DEPTH)  # a bar's first step: the previous target
    fed[:, :, 1:] = drawn[:, :, :-1]  # its step t + 1: the draw at step t
    # teacher forcing feeds step t target t - 1: the fed sequence moved back one step, as targets
    as_targets = torch.cat([fed.reshape(3, STEPS, DEPTH)[:, 1:], targets[:, -1:]], dim=1)
    assert torch.allclose(decoder(z, as_targets, lengths), scheduled, atol=1e-5)
    never = decoder(z, targets, lengths, sampling_probability=1e-12, loss=loss,
                    generator=torch.Generator().manual_seed(0))
    assert torch.allclose(never, decoder(z, targets, lengths), atol=1e-5)


def test_split_depths_that_do_not_fit_are_refused():
    with pytest.raises(HvaeError, match="split_depths"):
        split_decoder(split_depths=(5, 4))
    cls = registry().get("decoders", "hierarchical").factory
    with pytest.raises(HvaeError, match="one raw value per output value"):
        cls(output_depth=DEPTH, raw_size=3 * DEPTH, z_size=Z, steps=STEPS, rnn_sizes=(8,), level_lengths=LEVELS,
            split_depths=DEPTHS)


# --- the presets at small sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flat-trio_16bar", "hierdec-trio_16bar", "hier-trio_16bar"])
def test_each_trio_preset_trains_and_samples_at_small_sizes(name):
    preset = get_preset(name)
    options = {"rnn_sizes": (8, 8)}
    decoder_options = {**preset.model.decoder_options, "rnn_sizes": (12,)}
    config = dataclasses.replace(preset.model, z_size=Z, encoder_options={**preset.model.encoder_options, **options},
                                 decoder_options=decoder_options, learning_rate=1e-2)
    if config.encoder == "hierarchical":
        config = dataclasses.replace(config, encoder_options={**config.encoder_options, "rnn_sizes": (8,),
                                                              "level_lengths": (4, 16)})
    if config.decoder == "hierarchical":
        config = dataclasses.replace(config, decoder_options={**decoder_options, "level_lengths": (4, 16)})
    trio = (("melody", 90), ("bass", 90), ("drums", 512))
    model = build_model(config, DataSpec("trio", "onehot-parts", 692, 692, 0, 64, trio))
    assert model.loss.names == ("melody", "bass", "drums")
    torch.manual_seed(0)
    outputs = torch.cat([F.one_hot(torch.randint(0, 2, (4, 64)), d).float() for _, d in trio], dim=-1)
    batch, optimizer = Batch(outputs, outputs, torch.full((4,), 64)), make_optimizer(model, model.config)
    losses = []
    for step in range(20):
        out = model(batch, step)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.r_loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert set(out.metrics) == {"accuracy", "accuracy/melody", "accuracy/bass", "accuracy/drums"}
    samples = model.eval().sample(3, temperature=0.5, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (3, 64, 692)
    assert all(torch.equal(part.sum(-1), torch.ones(3, 64)) for part in samples.split((90, 90, 512), -1))
