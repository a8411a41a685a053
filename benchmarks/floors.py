"""The arithmetic floor of each benchmark: the matrix products the work needs, timed on this machine.

FLOPs are counted the cheap way, as hvae computes (benchmarks/RESULTS.md, "The floor"): a one-hot input is a row gather (no FLOPs),
and the part of a layer's input that is constant over a sequence (z, a bar's conductor output) is
projected once per sequence or bar. Element-wise work (gates, sampling, Adam) is not counted.

A :class:`Plan` lists chains of products with the number of times each runs per batch. A chain is
timed by running its products back to back on distinct operands, so at batch 1 the time includes
reading every weight matrix of a step from memory, as the real step must. Each chain is timed with
both float32 engines PyTorch has on CPU, MKL's ``torch.mm`` and oneDNN's product with the weight
packed once (what hvae's decoders use, :mod:`hvae_decoders.onednn`), and the faster counts. The
floor is the sum of the chain times; the matmul rate at the shapes used is the plan's FLOPs over
that sum.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable

import torch

from hvae.model import MusicVAE, uses_scheduled_sampling
from hvae_decoders import onednn
from hvae_decoders.sampler import draws_classes

ENGINES = ("mkl", "onednn") if onednn.ONEDNN else ("mkl",)

# A product of more than this many FLOPs runs near the machine's peak rate whatever its exact
# shape; it is timed with its dimensions capped at BIG_DIM and its rate applied to its full FLOPs.
BIG_FLOPS = 2e9
BIG_DIM = 2048
MIN_TIMING_SECONDS = 0.25  # time each chain for at least this long
MIN_TIMING_REPEATS = 3


@dataclasses.dataclass(frozen=True)
class Matmul:
    """``(m, k) @ (k, n)`` in float32."""

    m: int
    k: int
    n: int

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.k * self.n


@dataclasses.dataclass
class Plan:
    """Chains of products and how many times each runs for one batch."""

    chains: list[tuple[int, tuple[Matmul, ...]]] = dataclasses.field(default_factory=list)

    def add(self, times: int, *products: Matmul) -> None:
        products = tuple(p for p in products if p.m and p.k and p.n)
        if times and products:
            self.chains.append((times, products))

    @property
    def flops(self) -> float:
        return sum(times * sum(p.flops for p in chain) for times, chain in self.chains)


@dataclasses.dataclass(frozen=True)
class Floor:
    flops: float  # per batch
    seconds: float  # the products alone, per batch

    @property
    def rate(self) -> float:
        """FLOP/s at the shapes used."""
        return self.flops / self.seconds


_chain_seconds: dict[tuple[torch.dtype, tuple[Matmul, ...]], float] = {}


def _capped(p: Matmul) -> Matmul:
    if p.flops <= BIG_FLOPS:
        return p
    return Matmul(min(p.m, BIG_DIM), min(p.k, BIG_DIM), min(p.n, BIG_DIM))


def runner(chain: tuple[Matmul, ...], dtype: torch.dtype = torch.float32,
           engine: str = "mkl") -> Callable[[], None]:
    """A function that runs ``chain``'s products once on its own operands (capped, see BIG_FLOPS),
    with ``engine``: "mkl" (``torch.mm``) or "onednn" (oneDNN's product, weight packed beforehand)."""
    operands = [(torch.randn(p.m, p.k, dtype=dtype), torch.randn(p.k, p.n, dtype=dtype),
                 torch.empty(p.m, p.n, dtype=dtype)) for p in map(_capped, chain)]
    if engine == "onednn":
        packed = [(a, torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), a.shape[0]))
                  for a, b, _ in operands]

        def run_onednn() -> None:
            for a, weight in packed:
                onednn._onednn_linear(a, weight, None, "none", [], "")

        return run_onednn

    def run() -> None:
        for a, b, out in operands:
            torch.mm(a, b, out=out)

    return run


def capped_flops(chain: tuple[Matmul, ...]) -> float:
    """FLOPs of one run of :func:`runner`'s function."""
    return sum(_capped(p).flops for p in chain)


def _time(run: Callable[[], None]) -> float:
    run()
    repeats, started = 0, time.perf_counter()
    while repeats < MIN_TIMING_REPEATS or time.perf_counter() - started < MIN_TIMING_SECONDS:
        run()
        repeats += 1
    return (time.perf_counter() - started) / repeats


def chain_seconds(chain: tuple[Matmul, ...], dtype: torch.dtype = torch.float32) -> float:
    """Seconds one run of ``chain`` takes in ``dtype`` with the faster engine (measured once per session)."""
    key = (dtype, chain)
    if key not in _chain_seconds:
        seconds = min(_time(runner(chain, dtype, engine)) for engine in ENGINES)
        _chain_seconds[key] = seconds * sum(p.flops for p in chain) / capped_flops(chain)
    return _chain_seconds[key]


def measure(plan: Plan, dtype: torch.dtype = torch.float32) -> Floor:
    """The plan's FLOPs and the seconds its products take on this machine in ``dtype``."""
    return Floor(plan.flops, sum(times * chain_seconds(chain, dtype) for times, chain in plan.chains))


# --- what each piece of work computes ---------------------------------------------------------


def _sizes(options, key: str) -> tuple[int, ...]:
    return tuple(int(s) for s in options[key])


def _step_chain(batch: int, fed: int, sizes: Iterable[int], raw: int) -> tuple[Matmul, ...]:
    """One decoder step: layer 0 on ``[fed output (a matmul unless 0), h]``, upper layers on
    ``[h below, h]``, the output layer."""
    sizes = tuple(sizes)
    products = [Matmul(batch, fed + sizes[0], 4 * sizes[0])]
    products += [Matmul(batch, below + size, 4 * size) for below, size in zip(sizes[:-1], sizes[1:])]
    return tuple(products) + (Matmul(batch, sizes[-1], raw),)


def _start(plan: Plan, times: int, batch: int, embedding: int, sizes: tuple[int, ...]) -> None:
    """A decoder's per-sequence (or per-bar) work: the initial state and layer 0's embedding part."""
    plan.add(times, Matmul(batch, embedding, 2 * sum(sizes)), Matmul(batch, embedding, 4 * sizes[0]))


def sampling_plan(model: MusicVAE, batch: int) -> Plan:
    """Free-running decoding of ``batch`` sequences (the decoding core, without the encoder)."""
    cfg, spec = model.config, model.spec
    options = cfg.decoder_options
    sizes = _sizes(options, "rnn_sizes")
    raw = model.loss.raw_size
    fed = 0 if draws_classes(model.loss) else spec.output_depth  # a drawn class is a row gather
    plan = Plan()
    if cfg.decoder == "hierarchical":
        bars, bar_steps = (int(n) for n in options["level_lengths"])
        conductor = _sizes(options, "conductor_sizes")
        plan.add(1, Matmul(batch, cfg.z_size, 2 * sum(conductor)))
        conductor_step = _step_chain(batch, 0, conductor, 0)[:-1]  # zero inputs, no output layer
        plan.add(bars, *conductor_step)
        _start(plan, bars, batch, conductor[-1], sizes)
        plan.add(bars * bar_steps, *_step_chain(batch, fed, sizes, raw))
    else:
        _start(plan, 1, batch, cfg.z_size, sizes)
        plan.add(spec.steps, *_step_chain(batch, fed, sizes, raw))
    return plan


def _layer(plan: Plan, seqs: int, steps: int, hidden: int, matmul_in: int = 0, input_grad: bool = True,
           constant_in: int = 0, forward: bool = True) -> None:
    """Products of one LSTM layer over ``seqs`` sequences of ``steps`` steps.

    matmul_in: width of the per-step input that needs a product (0 for a one-hot input: a gather);
    input_grad: whether that input needs its gradient (not for data);
    constant_in: width of an input part constant over the sequence (projected once per sequence);
    forward: False when the caller counts the forward products of the sequence itself.
    """
    rows, gates = seqs * steps, 4 * hidden
    if forward:
        plan.add(1, Matmul(rows, matmul_in, gates))
        plan.add(steps, Matmul(seqs, hidden, gates))
    plan.add(1, Matmul(seqs, constant_in, gates))
    plan.add(1, Matmul(matmul_in, rows, gates), Matmul(constant_in, seqs, gates))  # weight gradients
    if input_grad:
        plan.add(1, Matmul(rows, gates, matmul_in), Matmul(seqs, gates, constant_in))
    plan.add(steps, Matmul(seqs, gates, hidden))  # backward recurrence
    plan.add(1, Matmul(hidden, rows, gates))  # recurrent weight gradient


def _dense(plan: Plan, rows: int, inputs: int, outputs: int, forward: bool = True) -> None:
    if forward:
        plan.add(1, Matmul(rows, inputs, outputs))
    plan.add(1, Matmul(inputs, rows, outputs), Matmul(rows, outputs, inputs))


def _decoder_core(plan: Plan, seqs: int, steps: int, embedding: int, fed: int, sizes: tuple[int, ...],
                  raw: int, dropout: bool, stepped: bool) -> None:
    """A core decoder trained on ``seqs`` sequences: initial state, LSTM layers, output layer.

    With dropout on its input the embedding cannot be projected once per sequence. ``stepped``
    (scheduled sampling) runs the forward pass one step at a time through every layer and the
    output layer; the backward pass is the teacher-forced one (a drawn class carries no gradient).
    """
    _dense(plan, seqs, embedding, 2 * sum(sizes))
    below = fed + embedding if dropout else fed
    for i, size in enumerate(sizes):
        _layer(plan, seqs, steps, size, matmul_in=below, input_grad=i > 0 or dropout,
               constant_in=0 if dropout or i else embedding, forward=not stepped)
        below = size
    _dense(plan, seqs * steps, sizes[-1], raw, forward=not stepped)
    if stepped:
        plan.add(steps, *_step_chain(seqs, fed + embedding if dropout else fed, sizes, raw))


def training_plan(model: MusicVAE, batch: int) -> Plan:
    """One training step on ``batch`` examples: encoder, decoder and their gradients."""
    cfg, spec = model.config, model.spec
    steps = spec.steps
    plan = Plan()
    encoder_sizes = _sizes(cfg.encoder_options, "rnn_sizes")
    one_hot_input = spec.output_kind == "onehot" and spec.input_depth == spec.output_depth
    below = 0 if one_hot_input else spec.input_depth + spec.control_depth
    for i, size in enumerate(encoder_sizes):
        for _direction in range(2):
            _layer(plan, batch, steps, size, matmul_in=below, input_grad=i > 0)
        below = 2 * size
    _dense(plan, batch, below, cfg.z_size)  # mu
    _dense(plan, batch, below, cfg.z_size)  # sigma
    options = cfg.decoder_options
    sizes = _sizes(options, "rnn_sizes")
    dropout = bool(options.get("dropout"))
    fed = 0 if spec.output_kind == "onehot" else spec.output_depth
    stepped = uses_scheduled_sampling(cfg)
    raw = model.loss.raw_size
    if cfg.decoder == "hierarchical":
        bars, bar_steps = (int(n) for n in options["level_lengths"])
        conductor = _sizes(options, "conductor_sizes")
        _dense(plan, batch, cfg.z_size, 2 * sum(conductor))
        below = 0  # the conductor's input is zeros
        for size in conductor:
            _layer(plan, batch, bars, size, matmul_in=below)
            below = size
        _decoder_core(plan, batch * bars, bar_steps, conductor[-1], fed, sizes, raw, dropout, stepped)
    else:
        _decoder_core(plan, batch, steps, cfg.z_size, fed, sizes, raw, dropout, stepped)
    return plan


def plan_for(case, model: MusicVAE) -> Plan:
    """The plan of a :class:`cases.Case`."""
    return sampling_plan(model, case.batch) if case.work == "sample" else training_plan(model, case.batch)


def dtype_of(case) -> torch.dtype:
    return torch.bfloat16 if case.precision == "bf16" else torch.float32
