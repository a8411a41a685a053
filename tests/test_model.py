"""MusicVAE: the loss arithmetic, the schedules, building from the registry, refusal and force."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hvae.errors import IncompatibleError, UnknownComponentError, HvaeError
from hvae.model import (Batch, DataSpec, ModelConfig, beta_at, build_model, clip_gradients, kl_divergence,
                        learning_rate_at, make_lr_schedule, make_optimizer, model_from_dict,
                        sampling_probability_at)

torch.set_num_threads(1)

DRUMS = DataSpec(converter="drums", output_kind="onehot", input_depth=10, output_depth=16, control_depth=0, steps=8)
GROOVE = DataSpec(converter="groove", output_kind="groove", input_depth=9, output_depth=9, control_depth=0, steps=8)
ROLL = DataSpec(converter="drums", output_kind="multihot", input_depth=9, output_depth=9, control_depth=0, steps=8)
TINY = dict(z_size=4, encoder_options={"rnn_sizes": (8,)}, decoder_options={"rnn_sizes": (8,)})


def tiny(**fields) -> ModelConfig:
    return ModelConfig(**{**TINY, **fields})


def drums_batch(n=4, steps=8, depth=16, generator_seed=0) -> Batch:
    g = torch.Generator().manual_seed(generator_seed)
    classes = torch.randint(0, depth, (n, steps), generator=g)
    return Batch(inputs=torch.rand(n, steps, 10, generator=g).round(), outputs=F.one_hot(classes, depth).float(),
                 lengths=torch.full((n,), steps))


def groove_batch(n=4, steps=8) -> Batch:
    hits = (torch.rand(n, steps, 3) > 0.5).float()
    values = torch.cat([hits, torch.rand(n, steps, 3) * hits, (torch.rand(n, steps, 3) * 2 - 1) * hits], -1)
    return Batch(inputs=values, outputs=values, lengths=torch.full((n,), steps))


# --- arithmetic ------------------------------------------------------------------------------


def test_beta_anneals_as_the_reference():
    cfg = ModelConfig(max_beta=0.2, beta_rate=0.99999)
    assert beta_at(0, cfg) == 0.0
    assert beta_at(1000, cfg) == pytest.approx((1 - 0.99999 ** 1000) * 0.2)
    assert beta_at(10, ModelConfig(max_beta=0.5, beta_rate=0.0)) == 0.5


def test_learning_rate_decays_to_its_floor():
    cfg = ModelConfig()
    assert learning_rate_at(0, cfg) == pytest.approx(1e-3)
    assert learning_rate_at(10_000, cfg) == pytest.approx((1e-3 - 1e-5) * 0.9999 ** 10_000 + 1e-5)
    assert learning_rate_at(10 ** 7, cfg) == pytest.approx(1e-5)


def test_scheduled_sampling_probabilities():
    assert sampling_probability_at(5, ModelConfig()) == 0.0
    inverse = ModelConfig(sampling_schedule="inverse_sigmoid", sampling_rate=1000.0)
    assert sampling_probability_at(0, inverse) == pytest.approx(1 - 1000 / 1001)
    assert sampling_probability_at(5000, inverse) == pytest.approx(1 - 1000 / (1000 + math.exp(5)))
    assert sampling_probability_at(5000, inverse, training=False) == 1.0
    exponential = ModelConfig(sampling_schedule="exponential", sampling_rate=0.999)
    assert sampling_probability_at(100, exponential) == pytest.approx(1 - 0.999 ** 100)
    assert sampling_probability_at(3, ModelConfig(sampling_rate=0.25)) == 0.25


def test_kl_divergence_of_a_diagonal_gaussian():
    mu, sigma = torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 0.5]])
    expected = 0.5 * ((4 + 0.25 - 1 - 2 * math.log(2)) + (0.25 + 1 - 1 - 2 * math.log(0.5)))
    assert kl_divergence(mu, sigma).item() == pytest.approx(expected)
    assert kl_divergence(torch.zeros(1, 3), torch.ones(1, 3)).item() == 0.0


def test_the_loss_is_reconstruction_plus_beta_times_kl_above_the_free_bits():
    cfg = tiny(free_bits=0.01, max_beta=0.5, beta_rate=0.9)
    model = build_model(cfg, DRUMS)
    out = model(drums_batch(), step=3, generator=torch.Generator().manual_seed(0))
    kl = kl_divergence(out.mu, out.sigma)
    beta = (1 - 0.9 ** 3) * 0.5
    kl_cost = torch.clamp(kl - 0.01 * math.log(2), min=0)
    assert out.beta == pytest.approx(beta)
    assert out.kl.item() == pytest.approx(kl.mean().item(), rel=1e-5)
    assert out.kl_bits.item() == pytest.approx(kl.mean().item() / math.log(2), rel=1e-5)
    assert out.kl_loss.item() == pytest.approx(kl_cost.mean().item(), rel=1e-5, abs=1e-7)
    assert out.loss.item() == pytest.approx(out.r_loss.item() + beta * kl_cost.mean().item(), rel=1e-6)
    assert out.raw.shape == (4, 8, 16) and 0 <= out.metrics["accuracy"].item() <= 1


def test_free_bits_make_a_small_kl_free():
    model = build_model(tiny(free_bits=1000.0), DRUMS)
    out = model(drums_batch(), step=10)
    assert out.kl_loss.item() == 0.0
    assert out.loss.item() == pytest.approx(out.r_loss.item())


def test_reconstruction_counts_only_steps_within_each_length():
    model = build_model(tiny(), DRUMS).eval()
    batch = drums_batch()
    short = Batch(batch.inputs, batch.outputs, torch.tensor([8, 8, 4, 2]))
    generator = lambda: torch.Generator().manual_seed(1)
    full, part = model(batch, generator=generator()), model(short, generator=generator())
    assert part.r_loss < full.r_loss


# --- building --------------------------------------------------------------------------------


def test_categorical_on_groove_is_refused_before_building():
    with pytest.raises(IncompatibleError, match="one categorical distribution"):
        build_model(tiny(decoder="hierarchical", loss="categorical",
                         decoder_options={"rnn_sizes": (8,), "level_lengths": (2, 4)}), GROOVE)


def test_forced_categorical_on_groove_trains_with_a_large_loss():
    cfg = tiny(decoder="hierarchical", loss="categorical", decoder_options={"rnn_sizes": (8,), "level_lengths": (2, 4)})
    model = build_model(cfg, GROOVE, force=True)
    assert model.forced and model.to_dict()["forced"]
    optimizer = make_optimizer(model, model.config)
    batch = groove_batch()
    for step in range(3):
        out = model(batch, step)
        optimizer.zero_grad()
        out.loss.backward()
        clip_gradients(model, model.config)
        optimizer.step()
        assert torch.isfinite(out.loss)
    targets = batch.outputs
    uniform = -(targets * math.log(1 / 9)).sum() / 4  # the loss of a uniform softmax, per sequence
    assert out.r_loss.item() > 0.5 * uniform.item() > 10


def test_unknown_component_names_list_what_is_installed():
    with pytest.raises(UnknownComponentError, match="Installed: flat, groove, hierarchical"):
        build_model(tiny(decoder="transformer"), DRUMS)
    with pytest.raises(UnknownComponentError, match="Unknown loss"):
        build_model(tiny(loss="focal"), DRUMS)


def test_bad_model_settings_are_refused():
    with pytest.raises(HvaeError, match="sampling_schedule"):
        build_model(tiny(sampling_schedule="linear"), DRUMS)
    with pytest.raises(HvaeError, match="inverse_sigmoid"):
        build_model(tiny(sampling_schedule="inverse_sigmoid", sampling_rate=0.5), DRUMS)
    with pytest.raises(HvaeError, match="Unknown option"):
        build_model(tiny(encoder_options={"size": 3}), DRUMS)


@pytest.mark.parametrize("spec,decoder,expected", [(DRUMS, "flat", "categorical"), (GROOVE, "groove", "groove"),
                                                   (GROOVE, "flat", "groove"), (ROLL, "hierarchical", "bernoulli"),
                                                   (DRUMS, "groove", "categorical")])
def test_the_default_loss_fits_the_output_kind(spec, decoder, expected):
    options = {"rnn_sizes": (8,), "level_lengths": (2, 4)} if decoder == "hierarchical" else {"rnn_sizes": (8,)}
    assert build_model(tiny(decoder=decoder, decoder_options=options), spec).config.loss == expected


def test_dropout_reaches_encoder_and_decoder():
    model = build_model(tiny(dropout=0.3), DRUMS)
    assert model.config.encoder_options["dropout"] == 0.3 and model.config.decoder_options["dropout"] == 0.3


def test_the_config_rebuilds_the_same_model():
    model = build_model(tiny(decoder="hierarchical", decoder_options={"rnn_sizes": (8,)}), DataSpec(
        converter="drums", output_kind="onehot", input_depth=10, output_depth=16, control_depth=2, steps=32))
    assert model.config.decoder_options["level_lengths"] == (2, 16)
    twin = model_from_dict(model.to_dict())
    twin.load_state_dict(model.state_dict())
    assert twin.config == model.config and twin.spec == model.spec
    z = torch.randn(2, 4)
    assert torch.equal(model.eval().decode(z, 0.0, torch.zeros(32, 2)), twin.eval().decode(z, 0.0, torch.zeros(32, 2)))


# --- optimisation ----------------------------------------------------------------------------


def test_adam_updates_every_trainable_parameter_and_not_the_frozen_biases():
    model = build_model(tiny(), DRUMS)
    optimizer = make_optimizer(model, model.config)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    frozen = [p for name, p in model.named_parameters() if "bias_hh" in name]
    assert frozen and not any(id(p) in optimized for p in frozen)
    assert len(optimized) == sum(1 for p in model.parameters() if p.requires_grad)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_the_learning_rate_schedule_follows_learning_rate_at():
    cfg = ModelConfig(decay_rate=0.9)
    model = build_model(tiny(decay_rate=0.9), DRUMS)
    optimizer = make_optimizer(model, cfg)
    schedule = make_lr_schedule(optimizer, cfg)
    for step in range(4):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(learning_rate_at(step, cfg))
        optimizer.step()
        schedule.step()


def test_gradients_are_clipped_to_the_global_norm():
    model = build_model(tiny(), DRUMS)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    expected = math.sqrt(sum(9.0 * p.numel() for p in params))
    norm = clip_gradients(model, ModelConfig(grad_clip=2.0))
    assert norm.item() == pytest.approx(expected, rel=1e-5)
    after = math.sqrt(sum(p.grad.square().sum().item() for p in params))
    assert after == pytest.approx(2.0, rel=1e-5)


@pytest.mark.parametrize("value", [1e6, float("nan")])
def test_a_huge_or_broken_gradient_zeroes_the_step(value):
    model = build_model(tiny(), DRUMS)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.full_like(p, value)
    clip_gradients(model, ModelConfig())
    assert all(p.grad.abs().sum() == 0 for p in model.parameters() if p.requires_grad)


def test_a_tiny_model_learns_a_batch():
    torch.manual_seed(0)
    model = build_model(tiny(z_size=8, decoder_options={"rnn_sizes": (32,)}, learning_rate=1e-2), DRUMS)
    optimizer = make_optimizer(model, model.config)
    batch = drums_batch(n=2)
    first = None
    for step in range(60):
        out = model(batch, step)
        first = first if first is not None else out.r_loss.item()
        optimizer.zero_grad()
        out.loss.backward()
        clip_gradients(model, model.config)
        optimizer.step()
    assert out.r_loss.item() < 0.5 * first


# --- generation ------------------------------------------------------------------------------


def test_sample_decode_and_reconstruct_shapes():
    model = build_model(tiny(), DRUMS).eval()
    drawn = model.sample(3, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (3, 8, 16) and torch.equal(drawn.sum(-1), torch.ones(3, 8))
    assert torch.equal(drawn, model.sample(3, temperature=0.5, generator=torch.Generator().manual_seed(0)))
    batch = drums_batch()
    assert model.reconstruct(batch.inputs, batch.lengths).shape == (4, 8, 16)
    assert model.decode(torch.zeros(2, 4)).shape == (2, 8, 16)
    with pytest.raises(HvaeError, match="2 latent vectors"):
        model.sample(3, z=torch.zeros(2, 4))


def test_groove_model_samples_hits_velocities_and_offsets():
    model = build_model(tiny(decoder="groove", decoder_options={"rnn_sizes": (8,)}), GROOVE).eval()
    drawn = model.sample(2, temperature=1.0)
    hits, velocities, offsets = drawn.split(3, -1)
    assert set(hits.unique().tolist()) <= {0.0, 1.0}
    assert velocities.min() >= 0 and velocities.max() <= 1 and offsets.abs().max() <= 1
    out = model(groove_batch(), 0)
    assert {"hits_loss", "velocities_loss", "offsets_loss", "hit_f1"} <= set(out.metrics)


# --- device and precision --------------------------------------------------------------------


def test_devices_resolve_and_a_missing_gpu_is_a_clear_error():
    from hvae.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(HvaeError, match="Unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(HvaeError, match="sees no CUDA GPU"):
            resolve_device("cuda:1")


def test_autocast_and_grad_scaler():
    from hvae.device import autocast, cpu_bfloat16_lstm, grad_scaler

    cpu = torch.device("cpu")
    assert not grad_scaler(cpu, torch.bfloat16).is_enabled()
    model = build_model(tiny(), DRUMS)
    if not cpu_bfloat16_lstm():  # x86-64 without AVX512-BF16 or AMX: refused in one line, before any work
        with pytest.raises(HvaeError, match=r"^Mixed precision \(--amp\) needs a CPU that runs bfloat16 LSTMs"):
            autocast(cpu, enabled=True)
        return
    with autocast(cpu, enabled=True):
        out = model(drums_batch(), 1)
    assert out.raw.dtype == torch.bfloat16 and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    with autocast(cpu, enabled=False):
        assert model(drums_batch(), 1).raw.dtype == torch.float32


def test_amp_on_a_cpu_without_bfloat16_lstms_is_one_line_not_a_traceback(trained_drums, tmp_path):
    """oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA) behaves as a CPU without bfloat16 (AMD Zen 3, say)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-m", "hvae.cli", "sample", str(trained_drums), "-n", "1", "--amp",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: Mixed precision (--amp) needs a CPU that runs bfloat16 LSTMs (AVX512-BF16 or AMX, as on Intel Xeon "
        "since Cooper Lake or AMD EPYC since Zen 4), and this one does not: run without --amp, in float32."]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_amp_sampling_in_a_fresh_process_runs_where_the_cpu_has_bfloat16_lstms(trained_drums, tmp_path):
    """The bfloat16 probe runs with gradients whatever its caller's mode: in a fresh ``hvae sample --amp``
    its first caller is the sampler, under ``no_grad``, where a probe without gradients called every
    CPU one without bfloat16."""
    import subprocess
    import sys

    from hvae.device import cpu_bfloat16_lstm

    with torch.no_grad():
        under_no_grad = cpu_bfloat16_lstm.__wrapped__()
    with torch.inference_mode():
        under_inference_mode = cpu_bfloat16_lstm.__wrapped__()
    assert under_no_grad == under_inference_mode == cpu_bfloat16_lstm.__wrapped__()
    if not cpu_bfloat16_lstm():
        pytest.skip("this CPU runs no bfloat16 LSTM (the refusal is tested above)")
    done = subprocess.run([sys.executable, "-m", "hvae.cli", "sample", str(trained_drums), "-n", "1", "--amp",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out").glob("*.mid"))) == 1


def test_training_with_amp_on_such_a_cpu_is_refused_before_the_run_directory_is_made(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-m", "hvae.cli", "train", "--amp", "--steps", "1", "--no-progress",
                           "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().startswith("Error: Mixed precision (--amp) needs a CPU that runs bfloat16 LSTMs")
    assert not (tmp_path / "run").exists()
