"""The built-in losses: values against hand computation, sampling, and the refusal messages."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hvae.errors import HvaeError, IncompatibleError
from hvae.interfaces import OUTPUT_KINDS, check_compatible
from hvae.plugins import registry


def loss_class(name: str):
    return registry().get("losses", name).factory


def all_loss_classes():
    return [r.factory for r in registry().registrations("losses")]


def test_the_four_losses_are_registered():
    assert {"categorical", "groove", "groove-gated", "bernoulli"} <= set(registry().names("losses"))


# --- categorical -----------------------------------------------------------------------------


def test_categorical_is_cross_entropy_summed_over_valid_steps():
    loss = loss_class("categorical")(4)
    raw = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]]])  # (1, 3, 4)
    targets = F.one_hot(torch.tensor([[0, 2, 3]]), 4).float()
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    per_sequence, metrics = loss(raw, targets, mask)
    expected = (-math.log(math.exp(2) / (math.exp(2) + 3))) + (-math.log(1 / (math.e + 3)))
    assert per_sequence.shape == (1,)
    assert per_sequence.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["accuracy"].item() == pytest.approx(0.5)  # step 0 right, step 1 wrong, step 2 masked


def test_categorical_on_continuous_targets_computes_the_references_soft_cross_entropy():
    loss = loss_class("categorical")(3)
    raw = torch.tensor([[[1.0, 2.0, 3.0]]])
    targets = torch.tensor([[[1.0, 0.5, -0.25]]])  # a hit, a velocity, a negative offset
    per_sequence, _ = loss(raw, targets, torch.ones(1, 1))
    log_p = torch.log_softmax(raw, dim=-1)[0, 0]
    assert per_sequence.item() == pytest.approx(-(1.0 * log_p[0] + 0.5 * log_p[1] - 0.25 * log_p[2]).item())


def test_categorical_draws_one_hot_rows_and_argmax_at_temperature_zero():
    loss = loss_class("categorical")(5)
    raw = torch.randn(7, 5)
    drawn = loss.sample_step(raw, 1.0, torch.Generator().manual_seed(0))
    assert drawn.shape == (7, 5)
    assert torch.equal(drawn.sum(-1), torch.ones(7))
    assert torch.equal(loss.sample_step(raw, 0.0), F.one_hot(raw.argmax(-1), 5).float())


def test_categorical_draws_follow_the_tempered_softmax():
    loss = loss_class("categorical")(3)
    logits = torch.tensor([1.0, 0.0, -1.0])
    raw = logits.expand(40000, 3)
    counts = loss.sample_step(raw, 2.0, torch.Generator().manual_seed(1)).sum(0) / 40000
    assert torch.allclose(counts, torch.softmax(logits / 2.0, -1), atol=0.01)


def test_categorical_indices_and_one_hot_draws_agree_for_one_seed():
    loss = loss_class("categorical")(6)
    raw = torch.randn(4, 6)
    indices = loss.sample_indices(raw, 0.7, torch.Generator().manual_seed(3))
    values = loss.sample_step(raw, 0.7, torch.Generator().manual_seed(3))
    assert torch.equal(values.argmax(-1), indices)


# --- groove ----------------------------------------------------------------------------------


def _one_drum(hit: float, velocity: float, offset: float) -> torch.Tensor:
    return torch.tensor([[[hit, velocity, offset]]])


def test_groove_loss_is_hit_log_loss_plus_velocity_and_offset_squared_errors():
    raw = _one_drum(0.3, -0.4, 0.8)
    target = _one_drum(1.0, 0.5, -0.2)
    per_sequence, metrics = loss_class("groove")(3)(raw, target, torch.ones(1, 1))
    sig = lambda x: 1 / (1 + math.exp(-x))
    hit = -math.log(sig(0.3) + 1e-7)
    velocity = (sig(-0.4) - 0.5) ** 2
    offset = (math.tanh(0.8) + 0.2) ** 2
    assert per_sequence.item() == pytest.approx(hit + velocity + offset, rel=1e-6)
    assert metrics["hits_loss"].item() == pytest.approx(hit, rel=1e-6)
    assert metrics["velocities_loss"].item() == pytest.approx(velocity, rel=1e-5)
    assert metrics["offsets_loss"].item() == pytest.approx(offset, rel=1e-5)


def test_groove_loss_counts_velocity_and_offset_errors_without_a_hit_and_the_gated_one_does_not():
    raw = _one_drum(-0.3, 1.0, 0.5)
    target = _one_drum(0.0, 0.0, 0.0)
    mask = torch.ones(1, 1)
    sig = lambda x: 1 / (1 + math.exp(-x))
    hit = -math.log(1 - sig(-0.3) + 1e-7)
    ungated, _ = loss_class("groove")(3)(raw, target, mask)
    gated, _ = loss_class("groove-gated")(3)(raw, target, mask)
    assert ungated.item() == pytest.approx(hit + sig(1.0) ** 2 + math.tanh(0.5) ** 2, rel=1e-6)
    assert gated.item() == pytest.approx(hit, rel=1e-6)


def test_groove_loss_ignores_masked_steps():
    loss = loss_class("groove")(6)
    raw, target = torch.randn(2, 4, 6), torch.rand(2, 4, 6)
    full, _ = loss(raw, target, torch.ones(2, 4))
    first_two, _ = loss(raw[:, :2], target[:, :2], torch.ones(2, 2))
    masked, _ = loss(raw, target, torch.tensor([[1.0, 1, 0, 0], [1, 1, 0, 0]]))
    assert torch.allclose(masked, first_two)
    assert (full > masked).all()


def test_groove_draws_hits_at_temperature_and_takes_velocities_and_offsets_as_they_are():
    loss = loss_class("groove")(9)
    raw = torch.randn(50, 9) * 3
    drawn = loss.sample_step(raw, 1.0, torch.Generator().manual_seed(0))
    hits, velocities, offsets = drawn.split(3, dim=-1)
    assert set(hits.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(velocities, torch.sigmoid(raw[:, 3:6]))
    assert torch.allclose(offsets, torch.tanh(raw[:, 6:]))
    assert torch.equal(loss.sample_step(raw, 0.0)[:, :3], (raw[:, :3] > 0).float())


def test_groove_loss_needs_three_values_per_drum():
    with pytest.raises(HvaeError, match="3 values per drum"):
        loss_class("groove")(10)


# --- bernoulli -------------------------------------------------------------------------------


def test_bernoulli_is_sigmoid_cross_entropy_per_drum():
    raw, targets = torch.randn(2, 3, 9), (torch.rand(2, 3, 9) > 0.5).float()
    per_sequence, metrics = loss_class("bernoulli")(9)(raw, targets, torch.ones(2, 3))
    expected = F.binary_cross_entropy_with_logits(raw, targets, reduction="none").sum(dim=(1, 2))
    assert torch.allclose(per_sequence, expected)
    assert 0.0 <= metrics["accuracy"].item() <= 1.0


def test_bernoulli_draws_independent_bits():
    drawn = loss_class("bernoulli")(9).sample_step(torch.zeros(2000, 9), 1.0, torch.Generator().manual_seed(0))
    assert set(drawn.unique().tolist()) == {0.0, 1.0}
    assert drawn.mean().item() == pytest.approx(0.5, abs=0.02)


# --- every loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", registry().names("losses"))
def test_every_loss_gives_finite_per_sequence_values_and_reproducible_draws(name):
    cls = loss_class(name)
    loss = cls(9)
    assert cls.accepts and cls.accepts <= set(OUTPUT_KINDS)
    raw, targets = torch.randn(3, 4, loss.raw_size, requires_grad=True), torch.rand(3, 4, 9)
    per_sequence, metrics = loss(raw, targets, torch.ones(3, 4))
    per_sequence.sum().backward()
    assert per_sequence.shape == (3,) and torch.isfinite(per_sequence).all()
    assert torch.isfinite(raw.grad).all()
    assert all(value.dim() == 0 for value in metrics.values())
    first = loss.sample_step(raw[:, 0].detach(), 1.0, torch.Generator().manual_seed(5))
    again = loss.sample_step(raw[:, 0].detach(), 1.0, torch.Generator().manual_seed(5))
    assert first.shape == (3, 9) and torch.equal(first, again)


def test_unknown_loss_options_are_refused():
    with pytest.raises(HvaeError, match="Unknown option"):
        loss_class("categorical")(4, smoothing=0.1)


# --- refusals --------------------------------------------------------------------------------


def test_categorical_on_groove_is_refused_with_the_reason_and_what_fits():
    with pytest.raises(IncompatibleError) as error:
        check_compatible("groove", loss_class("categorical"), "categorical", "groove", all_loss_classes(), 27)
    message = str(error.value)
    assert "softmax cross-entropy over 27 values treats multi-hot hits and continuous velocities/offsets " \
           "as one categorical distribution" in message.lower()
    assert "Losses that fit: groove, groove-gated." in message
    assert "\n" not in message


@pytest.mark.parametrize("kind,name,fits", [
    ("multihot", "categorical", "bernoulli, nade"),
    ("onehot", "groove", "categorical"),
    ("onehot", "bernoulli", "categorical"),
    ("groove", "bernoulli", "groove, groove-gated"),
])
def test_every_refusal_says_why_and_what_fits(kind, name, fits):
    with pytest.raises(IncompatibleError) as error:
        check_compatible(kind, loss_class(name), name, "some-converter", all_loss_classes(), 12)
    message = str(error.value)
    assert loss_class(name).why_not[kind].format(depth=12) in message
    assert f"Losses that fit: {fits}." in message


@pytest.mark.parametrize("kind,name", [("onehot", "categorical"), ("groove", "groove"),
                                       ("groove", "groove-gated"), ("multihot", "bernoulli"),
                                       ("multihot", "nade")])
def test_fitting_pairs_pass(kind, name):
    check_compatible(kind, loss_class(name), name, "c", all_loss_classes(), 9)


def test_categorical_draws_never_a_class_whose_weight_underflows_and_follow_512_classes():
    loss = loss_class("categorical")(512)
    logits = torch.randn(512) * 2
    logits[7] = -200.0  # exp(-200 / T - max) is 0 in float32
    raw = logits.expand(100000, 512)
    indices = loss.sample_indices(raw, 0.9, torch.Generator().manual_seed(4))
    assert (indices != 7).all() and indices.max() < 512
    frequencies = torch.bincount(indices, minlength=512) / len(indices)
    assert torch.allclose(frequencies, torch.softmax(logits / 0.9, -1), atol=0.006)


@pytest.mark.parametrize("temperature", [0.0, 0.5, 1.0])
def test_the_gated_loss_draws_velocity_and_offset_0_where_it_draws_no_hit_as_the_converter_writes(temperature):
    loss = loss_class("groove-gated")(9)  # 3 drums
    raw = torch.randn(64, 9, generator=torch.Generator().manual_seed(0)) * 3
    drawn = loss.sample_step(raw, temperature, generator=torch.Generator().manual_seed(1))
    hits, velocities, offsets = drawn.split(3, dim=-1)
    assert (hits == 0).any() and (hits == 1).any()
    assert torch.all(velocities[hits == 0] == 0) and torch.all(offsets[hits == 0] == 0)
    assert torch.all(velocities[hits == 1] > 0)  # where a hit is, what the decoder made of it
    ungated = loss_class("groove")(9).sample_step(raw, temperature, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ungated[:, :3], hits)  # the same hits as the ungated loss draws
