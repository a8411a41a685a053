"""Devices and precision: the one place that decides where tensors live and in which float type.

    device = resolve_device("auto")              # cuda if present, else cpu
    with autocast(device, enabled=True):         # bfloat16 on CPU, bfloat16 or float16 on CUDA
        out = model(batch, step)

Sampling under ``autocast`` runs the decoder's step loop with its weights in the autocast dtype
(half the bytes read per step); the LSTM cell state stays float32. In training on CUDA, autocast
sends nn.LSTM to cuDNN in float16 whatever its dtype (PyTorch's rule for ``_cudnn_rnn``): under
``--amp`` the recurrences run in float16 and the other products in bfloat16, without loss scaling;
tests/test_cuda.py holds the result within bfloat16's tolerances of float64.

On CUDA, :func:`resolve_device` also sets the backends on purpose (:func:`configure_cuda`): cuDNN on
for every teacher-forced LSTM layer, float32 as IEEE float32 (no TF32, so a float32 run on a GPU
computes what one on a CPU computes, to rounding; ``--amp`` is the fast mode), no cuDNN autotuning.
Batches reach the GPU through pinned memory without the host waiting (:func:`host_to_device`).

On CPU a training asks for products summed in the same order on any number of threads
(:func:`ask_for_thread_independent_products`: MKL's strict reproducibility mode, before MKL's first
product in the process), so that it may change its thread count with the machine's load
(:mod:`hvae.cpushare`) and still compute what it would have on an idle machine;
:func:`products_independent_of_threads` checks that this holds in the process. It also asks the C
library's malloc to keep the memory it frees (:func:`keep_freed_memory`): each step allocates the same
large tensors again, and fresh pages cost a page fault each.

Under torchrun each process trains on its own device: ``resolve_device("auto", local_rank=1)`` is
``cuda:1`` on a machine with GPUs (``cuda:0`` where each process sees one GPU), else the CPU; and
:func:`distributed_backend` picks the collective library for it (NCCL on CUDA, Gloo on CPU).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from typing import ContextManager

import torch

from hvae.errors import HvaeError

# MKL's strict reproducibility mode: the code path MKL picks for the CPU, each product summed in an order
# that does not depend on the thread count. No measurable cost in a training step here; it slows
# batch-1 products (10 -> 17 us at 1 x 256 by 1024; benchmarks/RESULTS.md), so only trainings ask for it.
STRICT_PRODUCTS = "AUTO,STRICT"
# Products whose sum MKL otherwise splits between threads: (rows summed over, columns left, columns right),
# the shape of a weight's gradient. About 2 ms in all.
_PROBED_PRODUCTS = ((2048, 128, 64), (16384, 32, 32))


def ask_for_thread_independent_products() -> None:
    """Ask MKL for products whose result does not depend on the thread count (a user's ``MKL_CBWR``
    stands). Takes effect only before MKL's first product in the process."""
    os.environ.setdefault("MKL_CBWR", STRICT_PRODUCTS)


# glibc's malloc gives freed blocks of 128 KiB and more back to the system (each its own mapping, and the
# heap's top trimmed), and PyTorch's CPU allocator keeps nothing: a training step, which allocates and
# frees the same large tensors every step, then touches fresh pages every step, one page fault each 4 KiB
# (29,000 a step of cat-drums_2bar_small at batch 64, 86,000 of groovae_4bar: a fifth of their time,
# benchmarks/RESULTS.md). Below these sizes glibc keeps them for the next allocation instead. Larger
# blocks still get their own mappings: kept in the heap they raise hierdec-mel_16bar's peak memory at
# batch 64 by a tenth (7.3 -> 8.2 GB), for 2 % of its step.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
_MALLOC_SETTINGS = ((_M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", 256 << 20),  # blocks under 256 MiB: from the heap
                    (_M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", 256 << 20))  # a free top under 256 MiB: kept


def keep_freed_memory() -> bool:
    """Ask the C library's malloc to keep the memory this process frees for its next allocations
    (glibc's ``mallopt``: blocks under 256 MiB from the heap, whose free top is kept up to 256 MiB),
    instead of giving it back to the system and faulting fresh pages in at the next step. For a
    training: what it keeps is what its steps allocate again. A setting made through glibc's
    environment variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) stands. Whether
    both settings took (False with another C library, where nothing is done)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(name in os.environ or mallopt(parameter, value) == 1 for parameter, name, value in _MALLOC_SETTINGS)


def set_up_training_process() -> None:
    """What a training process asks for before its first product: products that do not depend on the
    thread count (:func:`ask_for_thread_independent_products`) and the memory its steps free kept for
    the next (:func:`keep_freed_memory`). Called by ``Session.__enter__`` and the benchmarks' training points."""
    ask_for_thread_independent_products()
    keep_freed_memory()


@functools.cache
def products_independent_of_threads(threads: int) -> bool:
    """Whether CPU products give the same bits on one thread as on ``threads`` in this process."""
    if threads <= 1:
        return True
    previous = torch.get_num_threads()
    generator = torch.Generator().manual_seed(0)
    try:
        for rows, left, right in _PROBED_PRODUCTS:
            a, b = torch.randn(rows, left, generator=generator), torch.randn(rows, right, generator=generator)
            torch.set_num_threads(1)
            one = a.t() @ b
            torch.set_num_threads(threads)
            if not torch.equal(one, a.t() @ b):
                return False
        return True
    finally:
        torch.set_num_threads(previous)


def resolve_device(spec: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` (Apple
    silicon's GPU, where torch reports it available) as a device.

    ``local_rank`` is the process's place among the training processes on this machine (torchrun's
    ``LOCAL_RANK``) when there are several: ``"auto"`` and ``"cuda"`` then mean the GPU of that
    process, and ``"cuda:N"`` is refused (every process would claim GPU N).

    Raises :class:`hvae.errors.HvaeError` when CUDA or MPS is asked for but absent, or the index is out of range.
    """
    text = str(spec).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise HvaeError(f"Unknown device {spec!r}. Use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise HvaeError(f"Device {spec!r} (Apple silicon's GPU) was asked for, but this PyTorch build sees no "
                            f"MPS device; use cpu or auto.")
        return torch.device("mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HvaeError(f"Device {spec!r} was asked for, but this PyTorch build sees no CUDA GPU; use cpu or auto.")
        count = torch.cuda.device_count()
        if local_rank is not None:
            if device.index is not None:
                raise HvaeError(f"Device {spec!r} names one GPU, but several processes train here and each "
                                f"takes the GPU of its LOCAL_RANK: use cuda or auto.")
            if count > 1 and local_rank >= count:
                raise HvaeError(f"Process {local_rank} on this machine has no GPU of its own: {count} GPU(s) "
                                f"are visible; start at most {count} processes per machine.")
            device = torch.device("cuda", local_rank if count > 1 else 0)
        if device.index is not None and device.index >= count:
            raise HvaeError(f"Device {spec!r} does not exist: {count} CUDA device(s), cuda:0 to cuda:{count - 1}.")
        configure_cuda()
    elif device.type != "cpu":
        raise HvaeError(f"Device {spec!r} is not supported. Use auto, cpu, cuda, cuda:N or mps.")
    return device


def configure_cuda() -> None:
    """The CUDA backend settings hvae runs with, each chosen on purpose (process-wide).

    - cuDNN enabled: nn.LSTM runs a whole teacher-forced layer (all steps, forward and backward) in
      cuDNN's fused kernels; the decoders send every layer there on CUDA by default (``hvae_decoders.backend``).
    - No TF32, in cuDNN or in matrix products: float32 stays IEEE float32, within 1e-5 of a CPU run
      (tests/test_cuda.py); bfloat16 autocast (``--amp``) is the fast mode, opt-in as on CPU.
    - No cuDNN autotuning (``benchmark``): it picks convolution algorithms, and hvae has none; the
      RNN kernels are chosen by cuDNN's heuristics either way.
    """
    torch.backends.cudnn.enabled = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU ``tensor`` on ``device``. To CUDA it is copied through pinned (page-locked) memory and
    the host does not wait for the copy: the next step's work is queued while it runs."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def host_reads_are_free(device: torch.device) -> bool:
    """Whether reading a tensor's value on the host (``bool(t)``, ``t.item()``) is as cheap as on the
    CPU; on a GPU it waits until the device has finished everything queued before it."""
    return device.type == "cpu"


def distributed_backend(device: torch.device) -> str:
    """The ``torch.distributed`` backend for processes training on ``device``: nccl on CUDA, gloo on CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def default_autocast_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CPU and on GPUs that have it, else float16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device | str, enabled: bool = True, dtype: torch.dtype | None = None) -> ContextManager:
    """Mixed precision on ``device`` when ``enabled`` (opt-in on CPU); a no-op context otherwise.

    Raises :class:`HvaeError` on a CPU whose oneDNN cannot run an LSTM in bfloat16 (x86-64 without
    AVX512-BF16 or AMX, e.g. AMD Zen 3): there autocast would fail inside the first recurrence."""
    device = torch.device(device)
    if not enabled:
        return contextlib.nullcontext()
    dtype = dtype or default_autocast_dtype(device)
    if device.type == "cpu" and dtype is torch.bfloat16 and not cpu_bfloat16_lstm():
        raise HvaeError("Mixed precision (--amp) needs a CPU that runs bfloat16 LSTMs (AVX512-BF16 or AMX, as on "
                        "Intel Xeon since Cooper Lake or AMD EPYC since Zen 4), and this one does not: run without "
                        "--amp, in float32.")
    return torch.autocast(device.type, dtype=dtype)


@functools.lru_cache(maxsize=1)
def cpu_bfloat16_lstm() -> bool:
    """Whether this CPU's oneDNN runs an LSTM forward and backward under bfloat16 autocast (tried once, on a
    2-unit LSTM, with gradients on whatever the caller's mode: a first call from sampling, under
    ``no_grad``, must not read a backward pass that cannot run as a CPU that cannot)."""
    with torch.inference_mode(False), torch.enable_grad():
        lstm = torch.nn.LSTM(2, 2)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out, _ = lstm(torch.zeros(1, 1, 2, requires_grad=True))
            out.float().sum().backward()
        except RuntimeError:
            return False
    return True


def grad_scaler(device: torch.device | str, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A loss scaler, enabled only for float16 on CUDA (bfloat16 and float32 need none)."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and dtype is torch.float16)
