"""The ``backend`` option of the encoder and the decoders: which implementation of the same maths runs.

- ``"plain"`` (also accepted under its earlier name, ``"reference"``): the plain versions, the definition
  the others are checked against. Sampling and scheduled sampling run the step loops of
  :mod:`hvae_decoders.plain` (one LSTM step at a time on the layers' own weights, one
  ``loss.sample_step`` a step); teacher forcing and the encoder run ``nn.LSTM`` (cuDNN on CUDA,
  oneDNN on CPU).
- ``"fast"``: the tuned versions wherever one exists: the sampler of :mod:`hvae_decoders.sampler`,
  scheduled sampling that draws first and then teacher-forces, and hvae's recurrence
  (:mod:`hvae_decoders.recurrence`) for teacher forcing and for an encoder of any size, on any device.
- ``"auto"`` (the default): what runs fastest on the device: the sampler and draw-first scheduled
  sampling everywhere; on CUDA every teacher-forced layer as ``nn.LSTM`` (cuDNN does it all); off
  CUDA the decoders' layers as hvae's recurrence, and the encoder's from ``RECURRENCE_MIN_UNITS`` units.

Dropout while training changes each step's input differently: a decoder that drops builds its
layers' input parts as products over the dropped inputs (the same masks as the plain path's for a
seed) and runs scheduled sampling as the plain loop whatever the backend.
The backends compute the same thing (same draws for a seed, outputs equal to float rounding);
``tests/test_fast_paths.py`` and ``tests/test_decoders.py`` compare them through this option. How
fast each is: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import torch

from hvae.errors import HvaeError

BACKENDS = ("auto", "plain", "fast")
EARLIER_NAMES = {"reference": "plain"}  # run directories written before the rename keep loading

# Devices whose teacher-forced LSTM layers run as nn.LSTM under "auto" (cuDNN on CUDA).
NN_LSTM_DEVICES = frozenset({"cuda"})

# Under "auto", off CUDA, encoder layers of at least this many units run hvae's recurrence rather
# than nn.LSTM (oneDNN), which is faster below (benchmarks/RESULTS.md, "The figures behind the code's choices").
RECURRENCE_MIN_UNITS = 1024


def check_backend(backend: object, what: str) -> None:
    """Raise :class:`HvaeError` unless ``backend`` is one of :data:`BACKENDS`."""
    if backend not in BACKENDS and backend not in EARLIER_NAMES:
        raise HvaeError(f"{what}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")


def fast_sampling(backend: str) -> bool:
    """Whether free-running decoding and scheduled sampling take their fast paths."""
    return EARLIER_NAMES.get(backend, backend) != "plain"


def decoder_recurrence(backend: str, device: torch.device) -> bool:
    """Whether a decoder's teacher-forced layers run hvae's recurrence (else nn.LSTM)."""
    if backend == "auto":
        return device.type not in NN_LSTM_DEVICES
    return backend == "fast"


def encoder_recurrence(backend: str, device: torch.device, units: int) -> bool:
    """Whether the encoder's layers (the smallest of ``units`` units) run hvae's recurrence (else nn.LSTM)."""
    if backend == "auto":
        return units >= RECURRENCE_MIN_UNITS and device.type not in NN_LSTM_DEVICES
    return backend == "fast"
