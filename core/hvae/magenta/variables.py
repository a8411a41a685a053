"""hvae's parameters as the reference's variables, and back.

The reference (Magenta's MusicVAE, and magenta.js, which reads the same names) stores

- an LSTM cell as ``SCOPE/kernel`` ``[input + units, 4 units]`` (input rows first, then the
  recurrent ones) and ``SCOPE/bias`` ``[4 units]``, the gates in the order input, cell candidate,
  forget, output, and adds 1.0 to the forget gate when it runs;
- a dense layer as ``SCOPE/kernel`` ``[in, out]`` and ``SCOPE/bias`` ``[out]``.

hvae's layers are one-layer ``nn.LSTM`` (``weight_ih`` ``[4 units, input]``, ``weight_hh``
``[4 units, units]``, gates input, forget, cell candidate, output; ``bias_ih`` holds the forget
gate's 1.0 and ``bias_hh`` is held at zero) and ``nn.Linear`` (``weight`` ``[out, in]``). Each
encoder and decoder names its layers by scope (``reference_layers()``, see
:class:`hvae.interfaces.Encoder`); the conversion of each kind of layer is here. A loss with weights of
its own (the NADE) names them with ``reference_layers(scope)``, given the scope of the decoder's
output projection it sits beside: each an ``nn.Parameter`` stored as the reference stores that
variable, under its full name.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from hvae.errors import CheckpointError, HvaeError

FORGET_BIAS = 1.0  # the reference's LSTM cells add this to the forget gate at run time
# The reference's gate blocks (i, j, f, o) in torch's order (i, f, g, o), and back: the same swap.
GATE_ORDER = (0, 2, 1, 3)
# Variables a checkpoint may hold beside the model's, read past knowingly: TF1 Adam's slots and
# bias powers (hvae starts a fresh optimiser), and the step counter (the run's step).
OPTIMIZER_SLOT = re.compile(r"(.*/(Adam|Adam_1)|beta1_power|beta2_power)$")
GLOBAL_STEP = "global_step"


@dataclasses.dataclass(frozen=True)
class Unsupported:
    """A kind of reference model hvae has no component for, recognised by a variable scope."""

    pattern: str  # a regular expression over variable names
    what: str  # what it is, for the message


UNSUPPORTED = (
    Unsupported(r"^control_preprocessing/", "bidirectional control preprocessing"),
)


def layers_of(model: nn.Module) -> dict[str, nn.Module | nn.Parameter]:
    """The model's layers by the reference's scope names, and the loss's weights (if it has any) by their
    variables' names; an error for an encoder or decoder without them."""
    layers: dict[str, nn.Module | nn.Parameter] = {}
    for role in ("encoder", "decoder"):
        component = getattr(model, role)
        named = getattr(component, "reference_layers", None)
        if named is None:
            raise HvaeError(f"The {role} {getattr(component, 'name', type(component).__name__)!r} has no "
                            f"counterpart in the reference's checkpoints (it offers no reference_layers()).")
        layers.update(named())
    loss_named = getattr(model.loss, "reference_layers", None)
    if loss_named is not None:
        output = next(scope for scope in layers if scope.endswith("output_projection"))
        layers.update(loss_named(output[:-len("output_projection")]))
    return layers


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every variable the reference would store for ``model``, with its shape."""
    shapes = {}
    for scope, layer in layers_of(model).items():
        if isinstance(layer, nn.Parameter):
            shapes[scope] = tuple(layer.shape)
        elif isinstance(layer, nn.LSTM):
            units = layer.hidden_size
            shapes[f"{scope}/kernel"] = (layer.input_size + units, 4 * units)
            shapes[f"{scope}/bias"] = (4 * units,)
        else:
            shapes[f"{scope}/kernel"] = (layer.in_features, layer.out_features)
            shapes[f"{scope}/bias"] = (layer.out_features,)
    return shapes


def _gates(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Gate blocks of ``x`` along ``dim`` reordered between the reference's order and torch's."""
    blocks = x.chunk(4, dim=dim)
    return torch.cat([blocks[i] for i in GATE_ORDER], dim=dim)


def to_reference(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's parameters as the reference's variables (float32 arrays), sorted by name."""
    variables = {}
    with torch.no_grad():
        for scope, layer in layers_of(model).items():
            if isinstance(layer, nn.Parameter):
                variables[scope] = layer.detach().float().cpu().contiguous().numpy()
                continue
            if isinstance(layer, nn.LSTM):
                weights = torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], dim=1)  # (4H, I + H)
                kernel = _gates(weights, 0).t()
                bias = _gates(layer.bias_ih_l0 + layer.bias_hh_l0, 0).clone()
                units = layer.hidden_size
                bias[2 * units:3 * units] -= FORGET_BIAS
            else:
                kernel, bias = layer.weight.t(), layer.bias
            variables[f"{scope}/kernel"] = kernel.detach().float().cpu().contiguous().numpy()
            variables[f"{scope}/bias"] = bias.detach().float().cpu().contiguous().numpy()
    return dict(sorted(variables.items()))


def check_reference(expected: Mapping[str, tuple[int, ...]], shapes: Mapping[str, tuple[int, ...]], source: str,
                    hint: Callable[[], str] = lambda: "") -> list[str]:
    """Check the reference's variables, of ``shapes`` by name, against the ``expected`` shapes of a model's
    variables (:func:`expected_shapes`); returns the names read past.

    Every variable must map to a parameter with the expected shape, every parameter must be
    filled, and the only variables left over may be the optimiser's slots and ``global_step``:
    anything else is a :class:`CheckpointError` naming the variable, its shape and what was
    expected, followed by ``hint()`` (what the checkpoint would fit).
    """
    for pattern in UNSUPPORTED:
        for name in shapes:
            if re.search(pattern.pattern, name):
                raise CheckpointError(f"{source} holds {pattern.what} (variable {name}), which hvae has no "
                                      f"component for.")
    skipped = sorted(name for name in shapes if name not in expected
                     and (OPTIMIZER_SLOT.match(name) or name == GLOBAL_STEP))
    extra = sorted(name for name in shapes if name not in expected and name not in skipped)
    if extra:
        name = extra[0]
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise CheckpointError(f"{source}: variable {name} {list(shapes[name])}{more} maps to no "
                              f"parameter of this model.{hint()}")
    missing = sorted(name for name in expected if name not in shapes)
    if missing:
        name = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source} has no variable {name} {list(expected[name])}{more}, which this model "
                              f"needs.{hint()}")
    for name, shape in expected.items():
        if tuple(shapes[name]) != shape:
            raise CheckpointError(f"{source}: variable {name} has shape {list(shapes[name])}; this "
                                  f"model expects {list(shape)}.{hint()}")
    return skipped


def load_reference(model: nn.Module, shapes: Mapping[str, tuple[int, ...]], read: Callable[[str], np.ndarray],
                   source: str, hint: Callable[[], str] = lambda: "") -> list[str]:
    """Fill every parameter of ``model`` from the reference's variables, of ``shapes`` by name, whose values
    ``read(name)`` gives; returns the names read past. The shapes are checked first
    (:func:`check_reference`), and only the model's own variables are read."""
    skipped = check_reference(expected_shapes(model), shapes, source, hint)
    with torch.no_grad():
        for scope, layer in layers_of(model).items():
            if isinstance(layer, nn.Parameter):
                layer.copy_(torch.from_numpy(np.asarray(read(scope), dtype=np.float32)))
                continue
            kernel = torch.from_numpy(np.asarray(read(f"{scope}/kernel"), dtype=np.float32))
            bias = torch.from_numpy(np.asarray(read(f"{scope}/bias"), dtype=np.float32))
            if isinstance(layer, nn.LSTM):
                units, inputs = layer.hidden_size, layer.input_size
                weights = _gates(kernel.t(), 0)  # (4H, I + H), torch's gate order
                layer.weight_ih_l0.copy_(weights[:, :inputs])
                layer.weight_hh_l0.copy_(weights[:, inputs:])
                bias = _gates(bias, 0).clone()
                bias[units:2 * units] += FORGET_BIAS
                layer.bias_ih_l0.copy_(bias)
                layer.bias_hh_l0.zero_()
            else:
                layer.weight.copy_(kernel.t())
                layer.bias.copy_(bias)
    return skipped


def _lstm_units(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> tuple[int, ...]:
    """Units of the layers ``pattern % 0, 1, ...`` (LSTM cell scopes) while they exist."""
    units = []
    while f"{pattern % len(units)}/bias" in shapes:
        bias = shapes[f"{pattern % len(units)}/bias"]
        units.append(int(bias[0]) // 4 if bias else 0)
    return tuple(units)


def describe_architecture(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, object]:
    """What the variables' shapes say of the model: sizes by hvae's option names (as far as they tell)."""
    fits: dict[str, object] = {}
    if "encoder/mu/kernel" in shapes:
        fits["z_size"] = int(shapes["encoder/mu/kernel"][-1])
    for kind, scope in (("bidirectional", "encoder/"), ("hierarchical", "encoder/hierarchical_level_0/")):
        encoder = _lstm_units(shapes, scope + "cell_%d/bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell")
        if encoder:
            fits["encoder"], fits["encoder.rnn_sizes"] = kind, encoder
            kernel = shapes[f"{scope}cell_0/bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel"]
            fits["encoder input depth"] = int(kernel[0]) - encoder[0]
    hierarchical = any(name.startswith("decoder/hierarchical_level_0/") for name in shapes)
    # a split decoder (trios): one core decoder per part, core_decoder/core_decoder_0/decoder/, _1/, ...
    parts = []
    while f"core_decoder/core_decoder_{len(parts)}/decoder/output_projection/bias" in shapes:
        parts.append(int(shapes[f"core_decoder/core_decoder_{len(parts)}/decoder/output_projection/bias"][0]))
    scope = "core_decoder/core_decoder_0/decoder/" if parts else \
        "core_decoder/decoder/" if hierarchical else "decoder/"
    fits["decoder"] = "hierarchical" if hierarchical else "flat or groove"
    decoder = _lstm_units(shapes, scope + "multi_rnn_cell/cell_%d/lstm_cell")
    if decoder:
        fits["decoder.rnn_sizes"] = decoder
    if hierarchical:
        fits["decoder.conductor_sizes"] = _lstm_units(shapes, "decoder/hierarchical_level_0/cell_%d/lstm_cell")
    if parts:
        fits["decoder.split_depths"] = tuple(parts)
        fits["output depth"] = sum(parts)
    elif f"{scope}output_projection/bias" in shapes:
        fits["output depth"] = int(shapes[f"{scope}output_projection/bias"][0])
    if f"{scope}nade/w_enc" in shapes:
        fits["loss"], fits["loss.num_hidden"] = "nade", int(shapes[f"{scope}nade/w_enc"][-1])
    return fits


def format_architecture(fits: Mapping[str, object]) -> str:
    def value(v: object) -> str:
        return ",".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
    return ", ".join(f"{k}={value(v)}" if " " not in k else f"{k} {value(v)}" for k, v in fits.items())


def matching(fits: Mapping[str, object], candidates: Iterable[tuple[str, Mapping[str, object]]]) -> list[str]:
    """Names of the candidates (name, their own description) that agree with ``fits`` on every size."""
    return [name for name, theirs in candidates
            if all(theirs.get(key) == value for key, value in fits.items() if key != "decoder")
            and (fits.get("decoder") == "hierarchical") == (theirs.get("decoder") == "hierarchical")]
