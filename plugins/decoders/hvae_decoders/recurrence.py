"""An LSTM layer's recurrence for training on CPU, with each weight gradient computed in one product.

``nn.LSTM`` on CPU (oneDNN) is fast to call but slow to train: its backward pass works step by
step, weight gradients included. Here a layer is split into what can be batched and what cannot:

- the input part of the gates for all steps is computed by the caller, as one product (or a row
  gather for one-hot inputs, with a part that is constant over the sequence projected once);
- :func:`recurrence` runs the steps: per step, one product with the recurrent weights (oneDNN's,
  see :mod:`hvae_decoders.onednn`) and the gate arithmetic in place; its backward pass runs the steps in reverse the same way, writing the gate
  gradients over the saved activations, and then computes the recurrent weight gradient for all
  steps in one product;
- the input weights' gradient follows from the gate gradients by autograd, again in one product.

The decoders use it where the input part is cheap (see ``LstmCore.teacher_forced``). Where it is
not, oneDNN's ``nn.LSTM`` is faster on CPU (its per-step products beat MKL's at these shapes,
benchmarks/RESULTS.md), and on CUDA cuDNN's ``nn.LSTM`` does all of this itself (:mod:`hvae_decoders.backend` chooses).
"""

from __future__ import annotations

import torch

from hvae_decoders import native
from hvae_decoders.onednn import Product, product

def tanh_(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``tanh(x)`` as ``2 sigmoid(2x) - 1`` (into ``out``, else in place): equal to float rounding, and
    on CPU faster than ``torch.tanh`` on more than a few thousand values (benchmarks/RESULTS.md)."""
    out = x.mul_(2) if out is None else torch.mul(x, 2, out=out)
    return out.sigmoid_().mul_(2).sub_(1)


def lstm_cell_(gates: torch.Tensor, c: torch.Tensor, c_out: torch.Tensor, h_out: torch.Tensor,
               tanh_c: torch.Tensor, tanh_g: torch.Tensor | None = None) -> None:
    """:func:`hvae_decoders.lstm.lstm_cell` in place, in the same gate order i, f, g, o: the fast
    twin the sampler and :func:`recurrence` step with.

    gates ``(N, 4H)``: the pre-activation gates, overwritten with the activations; ``c_out = f c + i g``
    (``c_out`` may be ``c``); ``h_out = o tanh(c_out)``; ``tanh_c`` is scratch. Where hvae's fused
    cell applies (float32 on the CPU, :mod:`hvae_decoders.native`) it does all of this in one call,
    with ``tanh(g)`` left in the g part of ``gates``. Otherwise, as PyTorch operations: without
    ``tanh_g`` both tanh are ``2 sigmoid(2x) - 1`` (:func:`tanh_`), so one sigmoid covers all four
    gates and the g part of ``gates`` ends as ``tanh(g)`` (what the backward pass reads). With
    ``tanh_g`` (an ``(N, H)`` buffer) ``torch.tanh`` writes ``tanh(g)`` there and gives
    ``tanh(c_out)``, one sigmoid still covering the gates (their g part then ends unused): fewer
    operations, where there are few values.
    """
    if native.applies(gates) and native.cell_(gates, c, c_out, h_out):
        return
    size = c.shape[-1]
    sigmoid_tanh = tanh_g is None
    if sigmoid_tanh:
        tanh_g = gates[:, 2 * size:3 * size]
        tanh_g.mul_(2)
        gates.sigmoid_()
        tanh_g.mul_(2).sub_(1)
    else:
        torch.tanh(gates[:, 2 * size:3 * size], out=tanh_g)
        gates.sigmoid_()
    torch.mul(gates[:, size:2 * size], c, out=c_out).addcmul_(gates[:, :size], tanh_g)
    if sigmoid_tanh:
        tanh_(c_out, out=tanh_c)
    else:
        torch.tanh(c_out, out=tanh_c)
    torch.mul(gates[:, 3 * size:], tanh_c, out=h_out)


def one_hot_indices(x: torch.Tensor) -> torch.Tensor | None:
    """For ``x (..., D)`` whose rows are one-hot or all zeros: each row's class, ``D`` for a zero row.

    None when some row is neither (continuous or multi-hot values). Reads ``x`` on the host.
    Whole-tensor passes and one product only: reductions along a short last dimension (argmax,
    amax) are several times slower on CPU. The product of 0/1 rows with the column indices is a sum
    of integers below 2^24: exact in float32.
    """
    if x.numel() == 0 or bool(x.amin() < 0) or bool(x.amax() > 1) or bool((x * (1 - x)).any()):
        return None  # some value outside {0, 1}
    depth = x.shape[-1]
    flat = x.reshape(-1, depth).float()
    columns = torch.stack([torch.ones(depth, device=x.device), torch.arange(depth, device=x.device).float()], 1)
    ones, indices = (flat @ columns).unbind(-1)  # per row: how many ones, and their index if one
    if bool((ones > 1).any()):
        return None
    classes = torch.where(ones > 0, indices.long(), depth)
    return classes.reshape(x.shape[:-1])


def gather_rows(weight: torch.Tensor, indices: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``one_hot(indices) @ weight.T (+ bias)`` as a row gather: ``weight (4H, D)``, ``indices (...)``
    with ``D`` for a zero input -> ``(..., 4H)`` (the bias is added to the table, not to every row)."""
    table = torch.cat([weight.t(), weight.new_zeros(1, weight.shape[0])])  # (D + 1, 4H)
    if bias is not None:
        table = table + bias
    return torch.nn.functional.embedding(indices, table)


class _Recurrence(torch.autograd.Function):
    """See :func:`recurrence`. Gate order i, f, g, o (PyTorch's)."""

    @staticmethod
    def forward(ctx, flat_gates: torch.Tensor, weight: torch.Tensor, h0: torch.Tensor,
                c0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, size = h0.shape
        gates = flat_gates.view(-1, batch, 4 * size)  # (T, N, 4H)
        steps = gates.shape[0]
        hs = gates.new_empty(steps, batch, size)
        cs = gates.new_empty(steps, batch, size)
        recurrent = Product(weight.t(), batch, timed=False)  # h @ weight_hh.T; a training's: untimed
        tanh_c = gates.new_empty(batch, size)
        # cs and hs are made here, float32 rows like cs[0] and hs[0]: the states are checked once
        fused = native.applies(gates) and native.states_fit(c0, cs[0], hs[0])
        h, c = h0, c0
        for t in range(steps):
            g = gates[t]  # (N, 4H): the input part, then the activations
            product = recurrent(h)
            if not (fused and native.cell_(g, c, cs[t], hs[t], add=product, states_checked=True)):
                lstm_cell_(g.add_(product), c, cs[t], hs[t], tanh_c)
            h, c = hs[t], cs[t]
        ctx.mark_dirty(flat_gates)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(flat_gates, hs, cs, weight, h0, c0)
        ctx.spent = False
        return hs, flat_gates

    @staticmethod
    def backward(ctx, grad_hs: torch.Tensor | None, _grad_gates: None):
        with torch.autocast(ctx.saved_tensors[0].device.type, enabled=False):  # float32, as the forward ran
            return _Recurrence._backward(ctx, grad_hs)

    @staticmethod
    def _backward(ctx, grad_hs: torch.Tensor | None):
        if ctx.spent:
            raise RuntimeError("hvae's LSTM recurrence can be differentiated once per forward pass "
                               "(its gate gradients overwrite the saved activations).")
        ctx.spent = True
        flat_gates, hs, cs, weight, h0, c0 = ctx.saved_tensors
        steps, batch, size = hs.shape
        gates = flat_gates.view(steps, batch, 4 * size)
        one = gates.new_ones(())
        back = Product(weight, batch, timed=False)  # dgates @ weight_hh
        dh = torch.zeros_like(h0, memory_format=torch.contiguous_format)  # (N, H): the gradient reaching h_t
        dc = torch.zeros_like(c0, memory_format=torch.contiguous_format)  # and c_t
        if native.applies(gates) and (grad_hs is None or grad_hs.dtype == gates.dtype):
            grad_hs = grad_hs.contiguous() if grad_hs is not None else None  # one fused call a step
            c0 = c0.contiguous()
            for t in range(steps - 1, -1, -1):
                g = gates[t]  # the activations in; the gradients before the activations out
                if not native.cell_backward_(g, cs[t], cs[t - 1] if t else c0, dh,
                                             grad_hs[t] if grad_hs is not None else None, dc):
                    raise RuntimeError("hvae's fused LSTM cell refused tensors its forward pass accepted")
                if t or ctx.needs_input_grad[2]:
                    dh = back(g)
            return _results(ctx, flat_gates, gates, hs, weight, h0, dh, dc)
        tanh_c, scratch = torch.empty_like(c0), torch.empty_like(c0)
        for t in range(steps - 1, -1, -1):
            g = gates[t]  # the activations in; the gradients before the activations out
            i, f, cell, o = g[:, :size], g[:, size:2 * size], g[:, 2 * size:3 * size], g[:, 3 * size:]
            if grad_hs is not None:
                dh.add_(grad_hs[t])
            tanh_(cs[t], out=tanh_c)
            torch.addcmul(one, tanh_c, tanh_c, value=-1, out=scratch)  # 1 - tanh(c)^2
            dc.addcmul_(dh, scratch.mul_(o))  # dc = dc + dh o (1 - tanh(c)^2)
            o.addcmul_(o, o, value=-1).mul_(dh).mul_(tanh_c)  # dh tanh(c) o (1 - o)
            torch.addcmul(one, cell, cell, value=-1, out=scratch).mul_(i).mul_(dc)  # dc i (1 - cell^2)
            i.addcmul_(i, i, value=-1).mul_(cell).mul_(dc)  # dc cell i (1 - i)
            cell.copy_(scratch)
            torch.mul(dc, f, out=scratch)  # the gradient reaching c_{t-1}
            f.addcmul_(f, f, value=-1).mul_(cs[t - 1] if t else c0).mul_(dc)  # dc c_{t-1} f (1 - f)
            dc, scratch = scratch, dc
            if t or ctx.needs_input_grad[2]:
                dh = back(g)
        return _results(ctx, flat_gates, gates, hs, weight, h0, dh, dc)


def _results(ctx, flat_gates, gates, hs, weight, h0, dh, dc):
    """:class:`_Recurrence`'s backward results once its steps are done (the gate gradients in ``gates``)."""
    grad_weight = None
    if ctx.needs_input_grad[1]:  # sum over steps of h_{t-1}^T dgates_t, in one product
        grad_weight = product(hs[:-1].flatten(0, 1).t(), gates[1:].flatten(0, 1).t()).add_(h0.t() @ gates[0])
    return (flat_gates, grad_weight, dh if ctx.needs_input_grad[2] else None,
            dc if ctx.needs_input_grad[3] else None)


def recurrence(gates: torch.Tensor, weight: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """The outputs ``(T, N, H)`` of N LSTMs over T steps (in float32 at least).

    gates: each step's input part of the gates with the biases (order i, f, g, o), ``(T, N, 4H)``
    or any shape holding those values in that order (e.g. ``(T N, 4H)``). It is overwritten (with
    the activations, then the gradients): pass a tensor made for the call, not a view (a view is
    copied first).
    weight: ``(H, 4H)``, the recurrent weights transposed (``weight_hh.t()``).
    h0, c0: ``(N, H)``, the initial state.
    """
    dtype = torch.promote_types(gates.dtype, torch.float32)
    if gates._is_view():
        gates = gates.clone()
    with torch.autocast(gates.device.type, enabled=False):
        hs, _ = _Recurrence.apply(gates.to(dtype), weight.to(dtype), h0.to(dtype), c0.to(dtype))
    return hs
