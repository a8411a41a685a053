"""The CUDA path computes what the CPU computes, and waits for nothing while it does.

Spec, on one CUDA GPU (tests marked ``cuda``; they skip on a machine without one, see conftest.py):

- every decoder with every loss that fits, teacher-forced (loss, raw outputs, gradients) and sampled
  (greedy), in float32 on CUDA against float64 on the CPU, same weights and inputs: outputs and loss
  within 1e-5 relative, each parameter's gradient within 1e-4 (IEEE float32: hvae turns TF32 off);
- the same under bfloat16 autocast (``--amp``): loss within 1e-2 relative, raw outputs within 3e-2,
  the whole gradient within 5e-2 (cuDNN's LSTMs run in float16 under CUDA autocast, the products in
  bfloat16); greedy draws equal float64's at 90% of steps or more; and at the GMD presets' sizes and
  batch of 512 the whole gradient within 5e-2 of float32's;
- the fast sampler and scheduled sampling's draw-first pass (the decoders' default backend) equal the
  plain step-by-step loops (``backend="plain"``) on CUDA, same generator;
- a training step (scheduled sampling, dropout) and a sampling call make no host synchronisation
  (``torch.cuda.set_sync_debug_mode("error")`` raises on any);
- two processes on two GPUs (NCCL) log what one process logs (skipped with fewer than two GPUs).

On any machine: the float64 CPU model the GPU is compared with agrees with float32 on the CPU, and
``hvae train --device cuda`` without a GPU is a one-line error.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from hvae.cli import main
from hvae.data import DEMO_DIR
from hvae.model import Batch, DataSpec, ModelConfig, MusicVAE, build_model
from hvae.plugins import make_converter, registry
from hvae.presets import get_preset
from hvae.rundir import METRICS_FILE
from hvae.session import Session, TrainRequest

STEPS = 8
# output kind -> (depth, the losses that fit it); every decoder runs with each
KINDS = {"onehot": (12, ["categorical"]), "groove": (9, ["groove", "groove-gated"]),
         "multihot": (5, ["bernoulli", "nade"]), "onehot-parts": (12, ["multi-categorical"])}
PARTS = (("a", 4), ("b", 3), ("c", 5))  # the onehot-parts kind's parts, depths adding to 12
COMBOS = [(decoder, kind, loss) for decoder in ("flat", "hierarchical", "groove")
          for kind, (_, losses) in KINDS.items() for loss in losses]
IDS = [f"{d}-{k}-{l}" for d, k, l in COMBOS]
CUDA = torch.device("cuda")


def tiny_model(decoder: str, kind: str, loss: str, seed: int = 0, backend: str = "auto") -> MusicVAE:
    """A small model on the CPU, without dropout or scheduled sampling, its outputs made to depend
    strongly on every state (so a wrong gate shows, and greedy draws have wide margins)."""
    depth = KINDS[kind][0]
    options = {"rnn_sizes": (16, 12), "dropout": 0.0, "backend": backend}
    if decoder == "hierarchical":
        options.update(level_lengths=(2, 4), conductor_sizes=(10, 14))
    torch.manual_seed(seed)
    model = build_model(ModelConfig(z_size=6, encoder_options={"rnn_sizes": (10, 8)}, decoder=decoder, loss=loss,
                                    decoder_options=options),
                        DataSpec("test", kind, depth, depth, 0, STEPS, parts=PARTS if kind == "onehot-parts" else ()))
    with torch.no_grad():
        model.decoder.core.output.weight.mul_(20)
        model.encoder.mu.weight.normal_()  # (initialised at 0.001 scale, z would barely depend on x)
    return model


def tiny_batch(kind: str, batch: int = 4, seed: int = 5) -> tuple[Batch, torch.Tensor]:
    """A batch of ``kind`` outputs with sequences of several lengths, and its latent noise ``(B, 6)``."""
    depth = KINDS[kind][0]
    g = torch.Generator().manual_seed(seed)
    if kind == "onehot":
        outputs = F.one_hot(torch.randint(0, depth, (batch, STEPS), generator=g), depth).float()
    elif kind == "onehot-parts":
        outputs = torch.cat([F.one_hot(torch.randint(0, d, (batch, STEPS), generator=g), d).float()
                             for _, d in PARTS], -1)
    elif kind == "groove":
        hits = (torch.rand(batch, STEPS, depth // 3, generator=g) < 0.4).float()
        outputs = torch.cat([hits, torch.rand(hits.shape, generator=g) * hits,
                             (torch.rand(hits.shape, generator=g) * 2 - 1) * hits], -1)
    else:
        outputs = (torch.rand(batch, STEPS, depth, generator=g) < 0.3).float()
    lengths = torch.tensor([STEPS, STEPS, 5, 3][:batch])
    return Batch(outputs.clone(), outputs, lengths), torch.randn(batch, 6, generator=g)


def on(model: MusicVAE, device: torch.device | str, dtype: torch.dtype = torch.float32) -> MusicVAE:
    return copy.deepcopy(model).to(device, dtype)


def relative(value: torch.Tensor, reference: torch.Tensor) -> float:
    """``|value - reference| / |reference|`` (norms over all elements), computed in float64 on the CPU."""
    reference = reference.detach().double().cpu()
    return float((value.detach().double().cpu() - reference).norm() / reference.norm().clamp(min=1e-30))


def training_pass(model: MusicVAE, batch: Batch, noise: torch.Tensor):
    """Loss, raw outputs and each parameter's gradient of one teacher-forced pass."""
    device = model.device
    out = model(batch.to(device), step=3, noise=noise.to(device, model.dtype))
    out.loss.backward()
    return out.loss, out.raw, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def greedy(model: MusicVAE, z: torch.Tensor) -> torch.Tensor:
    return model.eval().sample(z.shape[0], temperature=0.0, z=z.to(model.device)).double().cpu()


def discrete_agreement(kind: str, drawn: torch.Tensor, reference: torch.Tensor) -> float:
    """The fraction of steps whose discrete part (class, hits) equals the reference's."""
    if kind == "groove":
        drawn, reference = drawn[..., :KINDS[kind][0] // 3], reference[..., :KINDS[kind][0] // 3]
    return float((drawn == reference).all(-1).double().mean())


# --- on any machine ----------------------------------------------------------------------------------


@pytest.mark.parametrize("decoder,kind,loss", COMBOS, ids=IDS)
def test_the_float64_reference_on_the_cpu_agrees_with_float32(decoder, kind, loss):
    model = tiny_model(decoder, kind, loss)
    batch, noise = tiny_batch(kind)
    loss32, raw32, _ = training_pass(on(model, "cpu"), batch, noise)
    loss64, raw64, _ = training_pass(on(model, "cpu", torch.float64), batch, noise)
    assert raw64.dtype == torch.float64
    assert relative(raw32, raw64) < 1e-5 and relative(loss32, loss64) < 1e-5
    z = torch.randn(5, 6)
    assert torch.allclose(greedy(on(model, "cpu"), z), greedy(on(model, "cpu", torch.float64), z), atol=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_training_on_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--device", "cuda", "--steps", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: Device 'cuda' was asked for, but this PyTorch build sees no CUDA GPU; use cpu or auto."]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "run").exists()


# --- CUDA against the CPU ------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("decoder,kind,loss", COMBOS, ids=IDS)
def test_teacher_forced_float32_on_cuda_is_float64_on_the_cpu(decoder, kind, loss):
    model = tiny_model(decoder, kind, loss)
    batch, noise = tiny_batch(kind)
    loss_gpu, raw_gpu, grads_gpu = training_pass(on(model, CUDA), batch, noise)
    loss_ref, raw_ref, grads_ref = training_pass(on(model, "cpu", torch.float64), batch, noise)
    assert raw_gpu.device.type == "cuda"
    assert relative(loss_gpu, loss_ref) < 1e-5
    assert relative(raw_gpu, raw_ref) < 1e-5
    assert grads_gpu.keys() == grads_ref.keys()
    for name, grad in grads_ref.items():
        assert relative(grads_gpu[name], grad) < 1e-4, name


@pytest.mark.cuda
@pytest.mark.parametrize("decoder,kind,loss", COMBOS, ids=IDS)
def test_greedy_sampling_in_float32_on_cuda_is_float64_on_the_cpu(decoder, kind, loss):
    model = tiny_model(decoder, kind, loss)
    z = torch.randn(16, 6)
    drawn, reference = greedy(on(model, CUDA), z), greedy(on(model, "cpu", torch.float64), z)
    assert discrete_agreement(kind, drawn, reference) == 1.0
    assert torch.allclose(drawn, reference, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("decoder,kind,loss", COMBOS, ids=IDS)
def test_bfloat16_autocast_on_cuda_is_within_its_tolerance_of_float64(decoder, kind, loss):
    model = tiny_model(decoder, kind, loss)
    batch, noise = tiny_batch(kind)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss_gpu, raw_gpu, grads_gpu = training_pass(on(model, CUDA), batch, noise)
    loss_ref, raw_ref, grads_ref = training_pass(on(model, "cpu", torch.float64), batch, noise)
    assert torch.isfinite(loss_gpu) and relative(loss_gpu, loss_ref) < 1e-2
    assert relative(raw_gpu.float(), raw_ref) < 3e-2
    names = sorted(grads_ref)
    flat = lambda grads: torch.cat([grads[name].detach().double().cpu().flatten() for name in names])
    assert relative(flat(grads_gpu), flat(grads_ref)) < 5e-2
    z = torch.randn(64, 6)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        drawn = greedy(on(model, CUDA), z)
    reference = greedy(on(model, "cpu", torch.float64), z)
    assert discrete_agreement(kind, drawn, reference) >= 0.9


def preset_batch(model: MusicVAE, batch: int) -> Batch:
    """``batch`` random full-length windows shaped like the model's converter output (drum rolls in)."""
    spec, g = model.spec, torch.Generator().manual_seed(0)
    if spec.output_kind == "onehot":
        outputs = F.one_hot(torch.randint(0, spec.output_depth, (batch, spec.steps), generator=g), spec.output_depth)
    else:
        hits = torch.rand(batch, spec.steps, spec.output_depth // 3, generator=g) < 0.3
        values = [hits * torch.rand(hits.shape, generator=g) for _ in range(2)]  # velocities, offsets (>= 0 here)
        outputs = torch.cat([hits, *values], -1)
    inputs = outputs if spec.input_depth == spec.output_depth else \
        torch.rand(batch, spec.steps, spec.input_depth, generator=g) < 0.2
    return Batch(inputs.float(), outputs.float(), torch.full((batch,), spec.steps))


@pytest.mark.cuda
@pytest.mark.parametrize("preset", ["hier-drums-4bar", "groovae_4bar"])
def test_bfloat16_autocast_keeps_float32s_gradient_at_a_presets_size_and_batch(preset):
    """At 512 examples each example's share of the gradient is small: float16 (cuDNN's LSTMs under
    autocast) must not lose it. Teacher-forced, without dropout, so both passes compute the same function."""
    p = get_preset(preset)
    torch.manual_seed(0)
    config = dataclasses.replace(p.model, dropout=0.0, sampling_schedule="constant", sampling_rate=0.0)
    model = build_model(config, make_converter(p.converter, p.converter_options)).to(CUDA)
    batch, noise = preset_batch(model, p.batch_size), torch.randn(p.batch_size, config.z_size)
    _, _, full = training_pass(on(model, CUDA), batch, noise)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _, mixed = training_pass(on(model, CUDA), batch, noise)
    names = sorted(full)
    flat = lambda grads: torch.cat([grads[name].detach().double().cpu().flatten() for name in names])
    assert torch.isfinite(loss) and relative(flat(mixed), flat(full)) < 5e-2


# --- the fast paths against plain loops, on CUDA -----------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("decoder,kind,loss", [("flat", "onehot", "categorical"), ("flat", "groove", "groove"),
                                               ("hierarchical", "onehot", "categorical"),
                                               ("hierarchical", "multihot", "bernoulli")])
def test_the_fast_sampler_on_cuda_equals_the_plain_loop(decoder, kind, loss):
    fast, plain = (on(tiny_model(decoder, kind, loss, seed=1, backend=backend), CUDA).eval()
                   for backend in ("auto", "plain"))
    z = torch.randn(32, 6, device=CUDA)
    generator = lambda: torch.Generator(CUDA).manual_seed(7)
    with torch.no_grad():
        drawn = [model.decoder.sample(z, STEPS, 1.0, model.loss, generator=generator()) for model in (fast, plain)]
    assert torch.allclose(drawn[0], drawn[1], atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("probability", [0.3, 1.0])
def test_scheduled_sampling_on_cuda_draws_first_then_equals_the_plain_step_loop(probability):
    fast, plain = (on(tiny_model("flat", "onehot", "categorical", seed=2, backend=backend), CUDA)
                   for backend in ("auto", "plain"))
    z, lengths = torch.randn(5, 6, device=CUDA), torch.full((5,), STEPS, device=CUDA)
    targets = F.one_hot(torch.randint(0, 12, (5, STEPS), device=CUDA), 12).float()
    raws = [model.decoder(z, targets, lengths, sampling_probability=probability, loss=model.loss,
                          generator=torch.Generator(CUDA).manual_seed(4)) for model in (fast, plain)]
    assert torch.allclose(raws[0], raws[1], atol=1e-4)
    grads = [torch.autograd.grad(raw.square().sum(), list(model.decoder.core.parameters())[:4])
             for raw, model in zip(raws, (fast, plain))]
    assert all(relative(f, p) < 1e-4 for f, p in zip(*grads))


# --- no host synchronisation ---------------------------------------------------------------------------

# The report's two GMD models shrunk: scheduled sampling through the hierarchical decoder, and dropout.
SHRUNK = ["z_size=8", "encoder.rnn_sizes=16", "decoder.rnn_sizes=16"]


def cuda_session(preset: str, root: Path) -> Session:
    train = {"steps": 3, "batch_size": 16, "seed": 0, "device": "cuda", "log_every": 10, "eval_every": 0,
             "checkpoint_every": 10, "workers": 2}
    return Session(TrainRequest(preset=preset, model_options=SHRUNK, train=train, data_dir=DEMO_DIR,
                                cache_dir=root / "cache", out_dir=root / "run"), progress=False)


@pytest.mark.cuda
@pytest.mark.parametrize("preset", ["hier-drums-4bar", "groovae_4bar"])
def test_a_training_step_on_cuda_waits_for_nothing(preset, tmp_path):
    with cuda_session(preset, tmp_path) as session:
        trainer = session.trainer
        trainer.model.train()
        trainer._train_step()  # the first step sets up cuDNN and the optimiser's state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            trainer._train_step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        trainer._check_finite()


@pytest.mark.cuda
@pytest.mark.parametrize("decoder,kind,loss", [("hierarchical", "onehot", "categorical"),
                                               ("groove", "groove", "groove")])
def test_sampling_on_cuda_waits_for_nothing(decoder, kind, loss):
    model = on(tiny_model(decoder, kind, loss), CUDA).eval()
    generator = torch.Generator(CUDA).manual_seed(0)
    model.sample(8, temperature=0.5, generator=generator)  # lays out the weights
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        drawn = model.sample(8, temperature=0.5, generator=generator)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert drawn.device.type == "cuda" and drawn.shape == (8, STEPS, KINDS[kind][0])


# --- several GPUs -----------------------------------------------------------------------------------------

TINY_RUN = ["--preset", "demo", "-m", "z_size=8", "-m", "encoder.rnn_sizes=16", "-m", "decoder.rnn_sizes=16",
            "--batch-size", "16", "--seed", "3", "--workers", "2", "--log-every", "1", "--eval-every", "0",
            "--device", "cuda", "--steps", "4", "--no-progress"]


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL across processes needs two GPUs")
def test_two_processes_on_two_gpus_log_what_one_logs(tmp_path):
    for name, extra in (("one", []), ("two", ["--nproc", "2"])):
        command = [sys.executable, "-m", "hvae.cli", "train", *TINY_RUN, *extra, "--cache", str(tmp_path / "cache"),
                   "--out", str(tmp_path / name)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    lines = lambda name: [json.loads(line) for line in (tmp_path / name / METRICS_FILE).read_text().splitlines()]
    for one, two in zip(lines("one"), lines("two"), strict=True):
        assert two["step"] == one["step"] and two["loss"] == pytest.approx(one["loss"], rel=1e-5)


def test_every_registered_decoder_and_loss_is_covered():
    assert {d for d, _, _ in COMBOS} == set(registry().names("decoders"))
    assert {l for _, _, l in COMBOS} == set(registry().names("losses"))
