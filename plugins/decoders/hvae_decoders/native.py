"""hvae's fused LSTM cell (``_native.c``), where it was built at install, through ctypes.

One call does a layer-step's element-wise work, forward (:func:`cell_`) or backward
(:func:`cell_backward_`), that PyTorch does in 6-11 operations: faster at every batch size on CPU
(benchmarks/RESULTS.md). :func:`applies` says where it runs: float32 tensors on the CPU, the library
present, and ``HVAE_NATIVE`` not ``0``. Elsewhere the callers (:func:`hvae_decoders.recurrence.lstm_cell_`,
:class:`hvae_decoders.recurrence._Recurrence`) run the same maths as PyTorch operations; the two
agree to float rounding (``tests/test_native.py``). :func:`note` is the one line, printed once to
standard error by the first call that could have used it, that says when a machine without a C
compiler at install runs without it.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
import sys
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p


def _load() -> ctypes.CDLL | None:
    if os.environ.get("HVAE_NATIVE", "1") == "0":
        return None
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _HERE / f"_native{suffix}"
        if path.is_file():
            try:
                library = ctypes.CDLL(str(path))
            except OSError:
                return None
            library.hvae_lstm_forward.argtypes = [_I64, _I64, _PTR, _I64, _PTR, _I64, _PTR, _I64, _PTR, _I64, _PTR, _I64]
            library.hvae_lstm_forward.restype = None
            library.hvae_lstm_backward.argtypes = [_I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR]
            library.hvae_lstm_backward.restype = None
            return library
    return None


_LIBRARY = _load()
AVAILABLE = _LIBRARY is not None
_forward = _LIBRARY.hvae_lstm_forward if AVAILABLE else None
_backward = _LIBRARY.hvae_lstm_backward if AVAILABLE else None
_noted = False


def applies(gates: torch.Tensor) -> bool:
    """Whether the fused cell runs for these gates: float32 on the CPU, the library built (if it is
    not, the first such call prints :func:`note`)."""
    if gates.dtype != torch.float32 or gates.device.type != "cpu":
        return False
    if not AVAILABLE:
        global _noted
        line = None if _noted else note()
        _noted = True
        if line:
            print(line, file=sys.stderr)
    return AVAILABLE


def note() -> str | None:
    """One line for a CPU run without the fused cell (None where it is there or turned off on purpose)."""
    if AVAILABLE or os.environ.get("HVAE_NATIVE", "1") == "0":
        return None
    return ("hvae: note: the fused LSTM cell was not built (no C compiler when hvae-decoders was installed), so "
            "training and sampling on the CPU run slower, with the same results; reinstall hvae-decoders where a C "
            "compiler is present to build it.")


def _fits(tensors: tuple[torch.Tensor, ...], widths: tuple[int, ...], rows: int) -> bool:
    """Whether the C loop may read and write these tensors: float32 on the CPU, ``rows`` rows of the
    given widths, unit stride within rows. Checked at every call: a tensor of another dtype (an
    autocast product in bfloat16, say) would be written past its end."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" and t.dim() == 2 and t.stride(1) == 1
               and t.shape[0] == rows and t.shape[1] == width for t, width in zip(tensors, widths))


def states_fit(c: torch.Tensor, c_out: torch.Tensor, h_out: torch.Tensor) -> bool:
    """Whether :func:`cell_` may read ``c`` and write ``c_out`` and ``h_out``: for a loop that steps
    on the same state buffers, checked once before it (then ``cell_(..., states_checked=True)``)."""
    return AVAILABLE and c.dim() == 2 and _fits((c, c_out, h_out), (c.shape[1],) * 3, c.shape[0])


def cell_(gates: torch.Tensor, c: torch.Tensor, c_out: torch.Tensor, h_out: torch.Tensor,
          add: torch.Tensor | None = None, *, states_checked: bool = False) -> bool:
    """:func:`hvae_decoders.lstm.lstm_cell` in place, where the fused cell can run; whether it did.

    gates ``(N, 4H)`` (plus ``add``, same shape, if given) become the activations (i, f, tanh(g), o),
    ``c_out = f c + i tanh(g)``, ``h_out = o tanh(c_out)``; ``c``, ``c_out``, ``h_out`` are ``(N, H)``.
    Every argument float32 on the CPU with unit stride within rows (rows may be spaced apart: slices
    of wider rows); ``c_out`` may be ``c``. Otherwise nothing is done and the answer is False: the
    caller runs the same maths as PyTorch operations. ``states_checked``: the caller has checked
    ``c``, ``c_out`` and ``h_out`` with :func:`states_fit` (or made them so), and only the fresh
    ``gates`` and ``add`` are checked here: less work in a decoding loop."""
    if not AVAILABLE or c.dim() != 2:
        return False
    rows, size = c.shape
    tensors, widths = (gates,), (4 * size,)
    if not states_checked:
        tensors, widths = tensors + (c, c_out, h_out), widths + (size,) * 3
    if add is not None:
        tensors, widths = tensors + (add,), widths + (4 * size,)
    if not _fits(tensors, widths, rows):
        return False
    _forward(rows, size, gates.data_ptr(), gates.stride(0), None if add is None else add.data_ptr(),
             0 if add is None else add.stride(0), c.data_ptr(), c.stride(0),
             c_out.data_ptr(), c_out.stride(0), h_out.data_ptr(), h_out.stride(0))
    return True


class SteppingCell:
    """:func:`cell_` for a loop that steps on the same state buffers, updated in place: ``c`` and
    ``h_out``, ``(N, H)``, checked (:func:`states_fit`) and their addresses taken once, here. A call
    checks only the fresh ``gates`` and ``add`` (``(N, 4H)`` float32 on the CPU, unit stride within
    rows) and answers whether it ran, as :func:`cell_` does: about 4 µs a call from Python instead of
    8, where a batch-1 sampling step makes one a layer (benchmarks/RESULTS.md)."""

    def __init__(self, c: torch.Tensor, h_out: torch.Tensor):
        if not states_fit(c, c, h_out):
            raise ValueError("SteppingCell needs float32 (N, H) state buffers on the CPU with unit stride within rows")
        self._rows, self._size = c.shape
        self._shape = torch.Size((self._rows, 4 * self._size))
        self._states = (c.data_ptr(), c.stride(0), c.data_ptr(), c.stride(0), h_out.data_ptr(), h_out.stride(0))
        self._buffers = (c, h_out)  # alive as long as their addresses are used

    def _fits(self, t: torch.Tensor) -> bool:
        return t.dtype is torch.float32 and t.is_cpu and t.shape == self._shape and t.stride(1) == 1

    def __call__(self, gates: torch.Tensor, add: torch.Tensor | None = None) -> bool:
        if not self._fits(gates):
            return False
        if add is None:
            _forward(self._rows, self._size, gates.data_ptr(), gates.stride(0), None, 0, *self._states)
        elif self._fits(add):
            _forward(self._rows, self._size, gates.data_ptr(), gates.stride(0), add.data_ptr(), add.stride(0),
                     *self._states)
        else:
            return False
        return True


def cell_backward_(gates: torch.Tensor, c: torch.Tensor, c_prev: torch.Tensor, dh: torch.Tensor,
                   grad_h: torch.Tensor | None, dc: torch.Tensor) -> bool:
    """The backward pass through one step of :func:`cell_`, where it can run; whether it did.

    The activations in ``gates (N, 4H)`` become the gradients of the pre-activation gates, given c_t,
    c_{t-1} and the gradients reaching h_t (``dh``, plus ``grad_h`` if given) and c_t (``dc``, which
    becomes the gradient reaching c_{t-1}). All float32, contiguous, on the CPU; otherwise nothing is
    done and the answer is False."""
    if not AVAILABLE or c.dim() != 2:
        return False
    rows, size = c.shape
    tensors = (gates, c, c_prev, dh, dc) + ((grad_h,) if grad_h is not None else ())
    if not (_fits(tensors, (4 * size,) + (size,) * (len(tensors) - 1), rows)
            and all(t.is_contiguous() for t in tensors)):
        return False
    _backward(rows, size, gates.data_ptr(), c.data_ptr(), c_prev.data_ptr(), dh.data_ptr(),
              grad_h.data_ptr() if grad_h is not None else None, dc.data_ptr())
    return True
