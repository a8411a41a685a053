"""Checks shared by the decoders' and the encoder's options (sizes, dropout, backend)."""

from __future__ import annotations

from typing import Any

from hvae.errors import HvaeError
from hvae.options import apply_overrides
from hvae_decoders.backend import check_backend


def resolve_options(component: Any, options: Any, overrides: dict[str, Any], what: str) -> Any:
    """``component.Options`` (or ``options``) with ``overrides`` applied and sizes and dropout checked."""
    resolved = apply_overrides(options if options is not None else component.Options(), overrides, what=what)
    for field in ("rnn_sizes", "conductor_sizes"):
        sizes = getattr(resolved, field, None)
        if sizes is None and field == "conductor_sizes":
            continue
        if not sizes or any(int(size) < 1 for size in sizes):
            raise HvaeError(f"{what}: {field} must list one or more positive layer sizes, got {sizes!r}.")
    dropout = getattr(resolved, "dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise HvaeError(f"{what}: dropout must be in [0, 1), got {dropout!r}.")
    check_backend(getattr(resolved, "backend", "auto"), what)
    return resolved
