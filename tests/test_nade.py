"""The NADE loss (the reference's MultiLabelRnnNadeDecoder): a distribution over rolls, its draws, and its place
in a model (trained, saved and sampled with the decoder's plain loop)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import mido
import pytest
import torch
from click.testing import CliRunner

import hvae
from hvae.cli import main

from hvae.model import Batch, build_model
from hvae.plugins import make_converter, registry
from hvae.presets import get_preset
from hvae_decoders.sampler import fast_draws

torch.set_num_threads(1)


def nade(depth: int, hidden: int, seed: int = 0):
    torch.manual_seed(seed)
    loss = registry().get("losses", "nade").build(depth, num_hidden=hidden).double()
    with torch.no_grad():  # weights large enough that every drum visibly depends on the ones before it
        loss.w_enc.mul_(4.0)
        loss.w_dec_t.mul_(4.0)
    return loss


def every_roll(depth: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=depth)), dtype=torch.float64)  # (2^D, D)


def log_prob(loss, raw: torch.Tensor, rolls: torch.Tensor) -> torch.Tensor:
    """log P(roll) of each roll ``(N, D)`` under raw ``(R,)``, one step each."""
    per_step, _ = loss(raw.expand(len(rolls), 1, -1), rolls.unsqueeze(1), torch.ones(len(rolls), 1, dtype=rolls.dtype))
    return -per_step


@pytest.mark.parametrize("depth,hidden", [(1, 3), (5, 4), (9, 6)])
def test_the_probabilities_of_all_rolls_add_up_to_one(depth, hidden):
    loss = nade(depth, hidden)
    raw = torch.randn(hidden + depth, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    total = log_prob(loss, raw, every_roll(depth)).exp().sum().item()
    # each factor is p + 1e-6, as the reference takes its log: at most 1e-6 per drum and roll above 1
    assert abs(total - 1.0) <= depth * 2 ** depth * 1e-6 + 1e-12


def test_each_drum_is_conditioned_on_the_ones_before_it_only():
    loss = nade(4, 5)
    raw = torch.randn(9, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    rolls = every_roll(4)
    logits = loss.conditionals(raw.expand(len(rolls), -1), rolls)  # (16, 4)
    for i in range(4):  # drum i's logit changes with drums before it, never with itself or later ones
        for a, b in itertools.combinations(range(16), 2):
            if torch.equal(rolls[a, :i], rolls[b, :i]):
                assert torch.allclose(logits[a, i], logits[b, i])
    assert not torch.allclose(logits[0, 3], logits[-1, 3])


def test_draws_come_at_the_rolls_probabilities():
    depth, hidden, n = 3, 4, 40_000
    loss = nade(depth, hidden)
    raw = torch.randn(hidden + depth, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    rolls = every_roll(depth)
    drawn = loss.sample_step(raw.expand(n, -1), 1.0, torch.Generator().manual_seed(4))  # (n, D)
    codes = (drawn * torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)).sum(-1).long()
    frequencies = torch.bincount(codes, minlength=8).double() / n
    probabilities = log_prob(loss, raw, rolls).exp()
    assert probabilities.min() > 0.001  # every roll is drawn often enough to be measured
    tolerance = 4 * (probabilities * (1 - probabilities) / n).sqrt() + 1e-5
    assert ((frequencies - probabilities).abs() <= tolerance).all(), (frequencies, probabilities)


def test_a_temperature_divides_each_drums_logit():
    loss = nade(1, 2)
    raw = torch.tensor([0.3, -0.2, 0.8], dtype=torch.float64)
    drawn = loss.sample_step(raw.expand(40_000, -1), 0.5, torch.Generator().manual_seed(5))
    logit = loss.conditionals(raw.unsqueeze(0), torch.zeros(1, 1, dtype=torch.float64))[0, 0]
    assert abs(drawn.mean().item() - torch.sigmoid(logit / 0.5).item()) < 0.01


def test_a_greedy_draw_takes_each_drum_at_half_probability_given_the_ones_drawn_before_it():
    loss = nade(9, 6)
    raw = torch.randn(64, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * 3
    greedy = loss.sample_step(raw, 0.0)
    p = torch.sigmoid(loss.conditionals(raw, greedy))
    assert torch.equal(greedy, (p >= 0.5).double())
    assert 0 < greedy.mean() < 1
    assert torch.equal(loss.feedback_step(raw), greedy)  # scheduled sampling feeds the greedy roll, as the reference


def tiny(name: str):
    preset = get_preset(name)
    converter = make_converter(preset.converter, preset.converter_options)
    config = dataclasses.replace(preset.model, z_size=4, encoder_options={"rnn_sizes": (8,)},
                                 decoder_options={"rnn_sizes": (8,)}, loss_options={"num_hidden": 5})
    torch.manual_seed(0)
    return build_model(config, converter), converter


def test_the_model_trains_the_nades_weights_with_its_own():
    model, converter = tiny("nade-drums_2bar_full")
    names = {name for name, _ in model.named_parameters()}
    assert {"loss.w_enc", "loss.w_dec_t"} <= names
    assert model.loss.w_enc.shape == (61, 1, 5) and model.decoder.core.output.out_features == 5 + 61
    rolls = (torch.rand(3, 32, 61, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    inputs = torch.cat([rolls, (rolls.sum(-1, keepdim=True) == 0).float()], dim=-1)
    out = model(Batch(inputs, rolls, torch.full((3,), 32)), step=10_000)  # scheduled sampling: greedy rolls fed
    out.loss.backward()
    assert model.loss.w_enc.grad.abs().sum() > 0 and model.loss.w_dec_t.grad.abs().sum() > 0
    assert out.sampling_probability > 0.5


def test_no_fast_sampler_runs_for_it_and_every_backend_draws_the_same():
    model, _ = tiny("nade-drums_2bar_reduced")
    assert not fast_draws(model.loss)  # the sampler's draws would not be the NADE's
    model.eval()
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    samples = []
    for backend in ("plain", "fast"):
        model.decoder.options = dataclasses.replace(model.decoder.options, backend=backend)
        samples.append(model.decode(z, 1.0, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(samples[0], samples[1]) and samples[0].shape == (5, 32, 9)
    assert set(samples[0].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name,classes", [("nade-drums_2bar_reduced", 9), ("nade-drums_2bar_full", 61)])
def test_hvae_run_trains_each_nade_preset_on_the_gmd_demo_and_samples_drums_on_channel_10(tmp_path, name, classes):
    result = CliRunner().invoke(main, [
        "run", "--steps", "20", "--preset", name, "-m", "z_size=8", "-m", "encoder.rnn_sizes=16",
        "-m", "decoder.rnn_sizes=16", "-m", "loss.num_hidden=8", "--batch-size", "32", "--threads", "1",
        "--no-progress", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "-n", "2",
        "--temperature", "1.0", "--no-redraw"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = hvae.load_model(tmp_path / "run")
    assert run.step == 20 and run.model.config.loss == "nade" and run.model.loss.w_enc.shape == (classes, 1, 8)
    paths = [Path(line.strip()) for line in result.output.splitlines() if line.strip().endswith(".mid")]
    assert len(paths) == 2
    allowed = {pitch for pitches in run.converter.classes for pitch in pitches}
    for path in paths:
        notes = [m for track in mido.MidiFile(path).tracks for m in track if m.type == "note_on" and m.velocity]
        assert notes and {m.channel for m in notes} == {9}  # General MIDI's drum channel, 10
        assert {m.note for m in notes} <= allowed


def test_a_loss_that_feeds_back_its_own_way_is_never_fed_back_by_the_draw_first_path():
    """Scheduled sampling's fast path feeds back draws at temperature 1; a loss that says otherwise
    (``feedback_step``, as the NADE's greedy rolls) runs the plain loop on every backend."""
    categorical = registry().get("losses", "categorical").factory

    class GreedyFeedback(categorical):
        def feedback_step(self, raw, generator=None):
            return self.sample_step(raw, 0.0, generator)

    loss = GreedyFeedback(12)
    outputs = []
    for backend in ("plain", "fast"):
        torch.manual_seed(0)
        decoder = registry().get("decoders", "flat").build(output_depth=12, raw_size=12, z_size=3, steps=8,
                                                           rnn_sizes=(6,), backend=backend)
        targets = torch.eye(12)[torch.randint(0, 12, (5, 8), generator=torch.Generator().manual_seed(1))]
        z = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
        outputs.append(decoder(z, targets, torch.full((5,), 8), sampling_probability=1.0, loss=loss,
                               generator=torch.Generator().manual_seed(3)))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
