"""hvae's fused LSTM cell (hvae_decoders/_native.c, built at install where there is a C compiler)
computes what the definition computes: the cell against :func:`hvae_decoders.lstm.lstm_cell` in
float64, the recurrence's backward pass against autograd through the definition, and whole trainings
and samples through the CLI with and without it. Without it hvae runs the same maths as PyTorch
operations and says so in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from conftest import TINY_MODEL
from hvae.cli import main
from hvae_decoders import native
from hvae_decoders.lstm import lstm_cell
from hvae_decoders.recurrence import recurrence

needs_native = pytest.mark.skipif(not native.AVAILABLE, reason="hvae's fused LSTM cell was not built here "
                                                              "(no C compiler when hvae-decoders was installed)")


def wide_rows(rows: int, width: int, spare: int) -> torch.Tensor:
    """``(rows, width)`` whose rows lie ``spare`` values apart inside a wider tensor, as the sampler's are."""
    return torch.zeros(rows, width + spare)[:, spare:]


@needs_native
@pytest.mark.parametrize("rows,size", [(1, 7), (3, 256), (64, 33), (5, 512)])
@pytest.mark.parametrize("add", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
def test_the_fused_cell_equals_the_definition(rows, size, add, in_place):
    g = torch.Generator().manual_seed(rows * size)
    gates = torch.randn(rows, 4 * size, generator=g) * 4
    extra = torch.randn(rows, 4 * size, generator=g) if add else None
    c = torch.randn(rows, size, generator=g) * 3
    h_want, c_want = lstm_cell((gates + extra if add else gates).double(), c.double())
    state = wide_rows(rows, size, 5)
    state.copy_(c)
    c_out = state if in_place else torch.empty(rows, size)
    h_out = wide_rows(rows, size, 3)
    work = gates.clone()
    native.cell_(work, state, c_out, h_out, add=wide_rows(rows, 4 * size, 2).copy_(extra) if add else None)
    assert torch.allclose(h_out.double(), h_want, atol=1e-6)
    assert torch.allclose(c_out.double(), c_want, rtol=1e-6, atol=1e-6)
    i, f, g_act, o = work.double().chunk(4, dim=-1)
    pre = (gates + extra if add else gates).double().chunk(4, dim=-1)
    assert torch.allclose(g_act, torch.tanh(pre[2]), atol=1e-6)  # what the backward pass reads
    assert torch.allclose(torch.cat([i, f, o], -1), torch.sigmoid(torch.cat([pre[0], pre[1], pre[3]], -1)), atol=1e-6)


@needs_native
def test_the_fused_cell_saturates_without_nan():
    gates = torch.tensor([[-1e4, 1e4, -90.0, 90.0, 1e4, -1e4, 88.5, -88.5]]).repeat(2, 4)  # (2, 32), H = 8
    c = torch.full((2, 8), 5.0)
    h, c_out = torch.empty(2, 8), torch.empty(2, 8)
    h_want, c_want = lstm_cell(gates.double(), c.double())
    native.cell_(gates, c, c_out, h)
    assert torch.isfinite(h).all() and torch.isfinite(c_out).all()
    assert torch.allclose(h.double(), h_want, atol=1e-6) and torch.allclose(c_out.double(), c_want, atol=1e-5)


def definition_outputs(gates: torch.Tensor, weight: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """The recurrence step by step through :func:`lstm_cell`, differentiable by autograd."""
    h, c, outputs = h0, c0, []
    for step in gates:
        h, c = lstm_cell(step + h @ weight, c)
        outputs.append(h)
    return torch.stack(outputs)


@needs_native
@pytest.mark.parametrize("batch,size", [(4, 9), (16, 64)])
def test_the_fused_backward_pass_equals_autograd_through_the_definition(batch, size):
    g = torch.Generator().manual_seed(size)
    steps = 6
    inputs = [torch.randn(steps, batch, 4 * size, generator=g), torch.randn(size, 4 * size, generator=g) * 0.3,
              torch.randn(batch, size, generator=g), torch.randn(batch, size, generator=g)]
    weights = torch.randn(steps, batch, size, generator=g)
    fused = [x.clone().requires_grad_() for x in inputs]
    exact = [x.double().requires_grad_() for x in inputs]
    out = recurrence(fused[0] * 1.0, *fused[1:])
    want = definition_outputs(*exact)
    assert torch.allclose(out.double(), want, atol=1e-6)
    got = torch.autograd.grad((out * weights).sum(), fused)
    expected = torch.autograd.grad((want * weights.double()).sum(), exact)
    for name, a, b in zip(("gates", "weight", "h0", "c0"), got, expected):
        assert torch.allclose(a.double(), b, rtol=1e-4, atol=1e-5), name


def train_and_sample(out: Path, capsys) -> tuple[list[float], str]:
    """Train a tiny cat-drums_2bar_small 6 steps through ``hvae run`` (one-hot input: the decoder's
    recurrence, the sampler); each logged loss, and what went to standard error."""
    result = CliRunner().invoke(main, ["run", *TINY_MODEL, "--preset", "cat-drums_2bar_small", "-m",
                                       "decoder.rnn_sizes=32,32", "--steps", "6", "--log-every", "1",
                                       "--seed", "3", "--num-samples", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(list((out / "samples").glob("*.mid"))) == 2
    losses = [row["loss"] for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if row.get("split") == "train"]
    return losses, result.stderr + capsys.readouterr().err


def test_a_run_without_the_fused_cell_says_so_once_and_trains_the_same(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(native, "_noted", False)
    built = native.AVAILABLE
    if built:
        with_cell, said = train_and_sample(tmp_path / "fused", capsys)
        assert "fused LSTM cell" not in said
    monkeypatch.setattr(native, "AVAILABLE", False)
    without, said = train_and_sample(tmp_path / "plain", capsys)
    assert said.count("hvae: note: the fused LSTM cell was not built") == 1, said
    assert len(without) == 6
    if built:
        assert with_cell == pytest.approx(without, rel=1e-4)


def test_training_under_bfloat16_autocast_gives_the_cell_only_float32_and_matches_without_it(monkeypatch):
    """Under autocast the sampler's and the backward pass's products come out in bfloat16: the fused cell
    must not take them (it would write float32 values past their end); the step equals the one without
    the cell, to bfloat16's rounding."""
    from hvae.device import autocast, cpu_bfloat16_lstm
    from hvae.model import ModelConfig, build_model
    from hvae.plugins import make_converter

    if not cpu_bfloat16_lstm():
        pytest.skip("this CPU runs no bfloat16 LSTM")

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        config = ModelConfig(z_size=8, encoder_options={"rnn_sizes": (16,)}, decoder="flat",
                             decoder_options={"rnn_sizes": (32, 32)}, sampling_schedule="constant", sampling_rate=0.5)
        model = build_model(config, make_converter("drums", {"slice_bars": 2, "roll_input": False})).train()
        classes = torch.randint(0, model.spec.output_depth, (4, model.spec.steps), generator=torch.Generator().manual_seed(1))
        x = torch.nn.functional.one_hot(classes, model.spec.output_depth).float()
        from hvae.model import Batch

        with autocast("cpu", True):
            out = model(Batch(x, x, torch.full((4,), model.spec.steps)), step=1, generator=torch.Generator().manual_seed(2))
            out.loss.backward()
        return out.loss.detach().float(), model.decoder.core.layers[0].weight_hh_l0.grad

    fused_loss, fused_grad = step()
    monkeypatch.setattr(native, "AVAILABLE", False)
    monkeypatch.setattr(native, "_noted", True)
    plain_loss, plain_grad = step()
    assert torch.isfinite(fused_loss) and torch.allclose(fused_loss, plain_loss, rtol=2e-2)
    assert torch.allclose(fused_grad, plain_grad, rtol=5e-2, atol=5e-3)


@needs_native
@pytest.mark.parametrize("add", [False, True])
def test_a_stepping_cell_computes_what_the_cell_computes_and_refuses_what_it_cannot_read(add):
    """The sampler's cell, bound to its state buffers once: the same values as :func:`native.cell_`, and
    for gates it cannot read (another dtype, shape or layout) False, with nothing written."""
    g = torch.Generator().manual_seed(5)
    gates, extra = torch.randn(3, 64, generator=g) * 4, torch.randn(3, 64, generator=g)
    c = torch.randn(3, 16, generator=g)
    want_c, want_h, want_gates = c.clone(), torch.empty(3, 16), gates.clone()
    assert native.cell_(want_gates, want_c, want_c, want_h, add=extra if add else None)
    state, h = wide_rows(3, 16, 4).copy_(c), wide_rows(3, 16, 2)
    cell = native.SteppingCell(state, h)
    got_gates = gates.clone()
    assert cell(got_gates, extra if add else None)
    assert torch.equal(got_gates, want_gates) and torch.equal(state, want_c) and torch.equal(h, want_h)
    before = (state.clone(), h.clone())
    for wrong in (gates.double(), gates[:2], gates.t().contiguous().t(), torch.randn(3, 65)[:, :64].t()):
        assert not cell(wrong.clone() if wrong.is_contiguous() else wrong)
    assert not cell(gates.clone(), extra.double())
    assert torch.equal(state, before[0]) and torch.equal(h, before[1])
    with pytest.raises(ValueError):
        native.SteppingCell(c.double(), h)
