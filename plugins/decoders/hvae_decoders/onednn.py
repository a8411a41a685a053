"""``x @ weight.T`` for a weight used many times in a row: each step of a sampling loop or a recurrence.

On CPU PyTorch sends float32 products to MKL. oneDNN's product, with the weight reordered once into
its blocked layout, is often faster at the shapes of an LSTM step, but not on every CPU nor at every
shape: on an AMD EPYC (Zen 4/5) it was about 2x MKL's at batch 1; on an Intel Xeon (2026-12-07) MKL's
was faster at batch 1 (8.7 against 22.7 us at 1 x 256 by 1024) and at some shapes at batch 64,
oneDNN's at others (figures: benchmarks/RESULTS.md, "The figures behind the code's choices"). So
:class:`Product` times both, once per shape, batch and thread count in a process
(:func:`onednn_is_faster`), and keeps the faster, where it may: a timed choice can differ from one
process to the next, and with it the rounding, so the products of a training (its recurrence, its
scheduled sampling) take an engine by a fixed rule (:func:`onednn_by_rule`) and the same seed
trains the same model every time. PyTorch exposes oneDNN's product as
``torch.ops.mkldnn`` operators (its compiler's CPU backend uses them); where they are missing (builds
without oneDNN), and on CUDA, the product is a plain one. The two engines' results differ by float
rounding only. Not differentiable: for loops without autograd, and for
:mod:`hvae_decoders.recurrence`, which writes its own backward pass.
"""

from __future__ import annotations

import time

import torch


def _onednn_ops_available() -> bool:
    ops = torch.ops.mkldnn
    return (torch.backends.mkldnn.is_available() and hasattr(ops, "_reorder_linear_weight")
            and hasattr(ops, "_linear_pointwise"))


ONEDNN = _onednn_ops_available()
_onednn_linear = torch.ops.mkldnn._linear_pointwise.default if ONEDNN else None
# Below this much work (batch x weight values) MKL's product is as fast: a batch-1 step of a small
# model reads a weight of a megabyte or less from cache, and oneDNN's call costs more.
ONEDNN_MIN_WORK = 1 << 19
# Above this much work both engines run near the machine's rate and timing them would cost more than
# it could save: oneDNN's is taken, as measured on large LSTMs (benchmarks/RESULTS.md).
TIMED_MAX_WORK = 1 << 24
ONEDNN_MARGIN = 0.95  # oneDNN's product is kept where it takes at most this fraction of MKL's time
_FASTER: dict[tuple, bool] = {}  # (weight shape, batch, dtype, threads) -> whether oneDNN's product is faster


def onednn_is_faster(weight: torch.Tensor, batch: int) -> bool:
    """Whether oneDNN's packed product beats MKL's for ``x (batch, K) @ weight.T`` here: timed once per
    shape, batch, dtype and thread count in a process (best of 5 alternating rounds of 3 calls each,
    a millisecond or so at LSTM shapes); without timing for the largest work (oneDNN's)."""
    work = batch * weight.numel()
    if work > TIMED_MAX_WORK:
        return True
    key = (tuple(weight.shape), batch, weight.dtype, torch.get_num_threads())
    if key not in _FASTER:
        weight = weight.detach().contiguous()
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch)
        right = weight.t().contiguous()
        x = torch.randn(batch, weight.shape[1], generator=torch.Generator().manual_seed(0)).to(weight.dtype)  # not the global RNG
        engines = [lambda: _onednn_linear(x, packed, None, "none", [], ""), lambda: torch.mm(x, right)]
        best = [float("inf")] * 2
        for _ in range(5):
            for index, run in enumerate(engines):
                run()
                started = time.perf_counter()
                for _ in range(3):
                    run()
                best[index] = min(best[index], time.perf_counter() - started)
        _FASTER[key] = best[0] <= ONEDNN_MARGIN * best[1]
    return _FASTER[key]


def onednn_by_rule(weight: torch.Tensor, batch: int) -> bool:
    """Whether oneDNN's product is taken without timing (a training's products): for a weight of 4M
    values or more at any batch (reading it from memory dominates, and oneDNN's layout reads it faster:
    0.64-0.82 of MKL's time at batch 2), and for one of 512K or more at a batch of 32 or more. As
    timed on the Intel Xeon of 2026-12-07 at 2 threads: MKL's faster at 64 x 256 by 1024 (7 %), 64 x 128
    by 512 (41 %) and 16 x 512 by 2048 (5 %); oneDNN's at 64 x 512 by 1024 (10 %), 64 x 512 by 2048
    (16 %) and 64 x 2048 by 512 (8 %) (benchmarks/RESULTS.md, "The figures behind the code's choices")."""
    values = weight.numel()
    return values >= 1 << 22 or (values >= 1 << 19 and batch >= 32)


class Product:
    """``x (M, K) -> x @ weight.T (+ bias) (M, N)`` for a fixed ``weight (N, K)``.

    ``batch`` is the M the products will mostly have (oneDNN picks its weight layout for it).
    ``timed``: the engine the faster here (:func:`onednn_is_faster`); False for a training's products,
    which must round alike in every process: the engine :func:`onednn_by_rule` names.
    """

    def __init__(self, weight: torch.Tensor, batch: int, *, timed: bool):
        weight = weight.detach()
        self.packed = self.right = None
        if (ONEDNN and weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16)
                and batch * weight.numel() >= ONEDNN_MIN_WORK
                and (onednn_is_faster(weight, batch) if timed else onednn_by_rule(weight, batch))):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), batch)
        else:
            self.right = weight.t().contiguous()  # (K, N)

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if self.packed is not None:
            return _onednn_linear(x, self.packed, bias, "none", [], "")
        return torch.mm(x, self.right) if bias is None else torch.addmm(bias, x, self.right)


def _uses_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (ONEDNN and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and x.shape[0] * weight.numel() >= ONEDNN_MIN_WORK)


def product(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` for 2-D operands, by oneDNN where it pays.

    A ``weight`` that is not contiguous (a transposed view, as in the gradient products) goes to
    MKL, which reads it transposed in place: oneDNN would need it copied first, and in a large
    model's backward pass those copies of activations cost a visible part of a training step
    (benchmarks/RESULTS.md).
    """
    if _uses_onednn(x, weight) and weight.is_contiguous():
        return _onednn_linear(x, weight, None, "none", [], "")
    return x @ weight.t()


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight.contiguous(), bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = product(grad, weight.t()) if ctx.needs_input_grad[0] else None
        grad_weight = product(grad.t(), x.t()) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` for a 2-D ``x``, differentiable, with oneDNN's products (forward and backward)
    where they pay: faster than MKL's at the size of a large LSTM's input projections (benchmarks/RESULTS.md)."""
    if _uses_onednn(x, weight):
        return _Linear.apply(x, weight, bias)
    return torch.nn.functional.linear(x, weight, bias)
