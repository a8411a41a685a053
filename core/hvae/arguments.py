"""Checks of the values hvae's public functions take: counts, temperatures, tempos and other numbers.

Each public entry point (``MusicVAE.sample``, ``Converter.from_tensors``, :func:`hvae.generation.write_samples`,
...) checks what it is given once, here, so that a value of the wrong type or out of range raises
:class:`~hvae.errors.InvalidArgument` in one line, worded as the command line words it, instead of a
``ZeroDivisionError`` or ``RuntimeError`` from deep inside NumPy or torch, or a NaN accepted silently.
"""

from __future__ import annotations

import math
import numbers

from hvae.errors import InvalidArgument

MIN_QPM = 60e6 / 0xFFFFFF  # MIDI stores a tempo as at most 2**24 - 1 microseconds a quarter: about 3.58 qpm
MAX_QPM = 60e6  # and at least one microsecond a quarter


def count(value: object, what: str, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int from ``low`` to ``high``; ``what`` names it ("The number of samples")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{what} must be a whole number, not {value!r}.")
    if value < low or (high is not None and value > high):
        bounds = f"at least {low:,}" if high is None else f"from {low:,} to {high:,}"
        raise InvalidArgument(f"{what} must be {bounds}, got {value:,}.")
    return int(value)


def number(value: object, what: str, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> float:
    """``value`` as a finite float within ``low`` (excluded with ``low_open``) and ``high``."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or (low is not None and (value < low or (low_open and value == low))) \
            or (high is not None and value > high):
        above = "" if low is None else f" {'above' if low_open else 'at least'} {_figure(low)}"
        below = "" if high is None else f"{' and' if above else ''} at most {_figure(high)}"
        raise InvalidArgument(f"{what} must be a finite number{above}{below}, got {value!r}.")
    return float(value)


def _figure(bound: float) -> str:
    """A bound as a message says it: 60,000,000, 0.5, 3.57628."""
    return f"{bound:,.0f}" if float(bound).is_integer() else f"{bound:.6g}"


def temperature(value: object, greedy: bool = True) -> float:
    """A decoding temperature: a finite number above 0, or 0 (greedy decoding) where ``greedy``."""
    return number(value, "The temperature", low=0.0, low_open=not greedy)


def tempo(value: object) -> float:
    """A tempo in quarter notes per minute that a MIDI file can store."""
    return number(value, "The tempo (quarter notes per minute)", low=MIN_QPM, high=MAX_QPM)
