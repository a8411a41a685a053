"""The four component interfaces. Plugins subclass these; the core uses nothing else.

Shapes: B batch, T steps, D depth, Z latent size, R the raw size a loss asks of the decoder.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import miditoolkit
import numpy as np
import torch
from torch import nn

from hvae.errors import ConversionError, HvaeError, IncompatibleError
from hvae.music import DEFAULT_QPM, MidiSource
from hvae.options import apply_overrides

MAX_FILE_WINDOW_BYTES = 1 << 30  # the float32 windows of one file, at most (the largest GMD file needs ~80 MB)

# "onehot": one class a step; "groove": hits, velocities and offsets; "multihot": several classes a step
# (rolls); "onehot-parts": several one-hot parts side by side, one class a step in each (a trio's melody,
# bass and drums), named with their depths by the converter's ``parts``.
OUTPUT_KINDS = ("onehot", "groove", "multihot", "onehot-parts")


@dataclasses.dataclass(frozen=True)
class Example:
    """One training window, as numpy arrays (float32)."""

    inputs: np.ndarray  # (T, input_depth)
    outputs: np.ndarray  # (T, output_depth)
    controls: np.ndarray  # (T, control_depth); control_depth may be 0
    length: int  # steps actually used (== T for fixed-length converters)


@dataclasses.dataclass(frozen=True)
class ConverterOptions:
    """Options common to every converter; subclasses add their own fields."""

    steps_per_quarter: int = 4  # quantisation: steps per quarter note
    quarters_per_bar: int = 4  # quarter notes per bar; the built-ins accept only 4 (4/4 time)
    max_tensors_per_notesequence: int | None = None  # at most this many windows per file; None: every window


class Converter(abc.ABC):
    """MIDI <-> tensors for one representation (drums, groove, melody, ...).

    Built as ``ConverterClass(options=None, **overrides)``; hvae builds every converter by name with
    :func:`hvae.plugins.make_converter`.

    Optional capabilities, with defaults a converter overrides where they apply: ``classes`` and
    ``class_names`` (a drum converter's classes: piano-roll lanes), :meth:`drum_hits` (where an output's
    drum hits are: hit metrics, sample densities), :meth:`for_user_input` (how it reads a user's MIDI),
    ``humanizes`` (whether a model trained on it restores velocities and timing from bare hits),
    ``drumifies`` (whether it turns taps into drums), ``input_transform`` (what its inputs lack that the
    model restores), :meth:`tile` (a whole file as consecutive windows: parts of any length) and
    :meth:`attributes` (musical attributes of its windows beyond hvae's own, for attribute vectors).
    A converter of ``"onehot-parts"`` outputs names its parts in ``parts``: the depths add up to
    ``output_depth``, and losses and decoders that split the outputs read them from there.
    """

    name: ClassVar[str]
    Options: ClassVar[type[ConverterOptions]] = ConverterOptions
    output_kind: ClassVar[str]  # one of OUTPUT_KINDS
    classes: tuple[tuple[int, ...], ...] = ()  # drum converters: each class's MIDI pitches, in class order
    parts: tuple[tuple[str, int], ...] = ()  # "onehot-parts" converters: (name, depth) of each part, in order
    padded_rows: bool = False  # rows of all zeros pad its windows (multiperf's segments): not steps of the loss
    default_chords: str = "C G Am F"  # chord converters: what `hvae run` samples over when given no --chords

    def __init__(self, options: ConverterOptions | None = None, **overrides: Any):
        base = options if options is not None else self.Options()
        self.options = apply_overrides(base, overrides, what=f"converter {self.name!r}")

    @property
    @abc.abstractmethod
    def input_depth(self) -> int: ...

    @property
    @abc.abstractmethod
    def output_depth(self) -> int: ...

    @property
    def control_depth(self) -> int:
        return 0

    @property
    @abc.abstractmethod
    def steps(self) -> int:
        """Fixed number of steps per example (e.g. 64 for 4 bars of 16 steps)."""

    def to_tensors(self, source: MidiSource) -> list[Example]:
        """Every window of ``source`` (path, bytes, MidiFile or NoteSequence) as examples.

        Returns an empty list when the file is readable MIDI but yields nothing usable
        (wrong meter, no drums, too short), as the reference does. Raises
        :class:`hvae.errors.MidiReadError` when the file is not readable MIDI.
        """
        try:
            return self.convert(source)
        except ConversionError:
            return []

    @abc.abstractmethod
    def convert(self, source: MidiSource) -> list[Example]:
        """Like :meth:`to_tensors`, but says why nothing is usable.

        Raises :class:`hvae.errors.ConversionError` with a one-line reason ("3/4 time:
        12 steps per bar, 16 needed", "no drum notes", ...) instead of returning ``[]``;
        :class:`hvae.errors.MidiReadError` when the file is not readable MIDI.
        """

    @abc.abstractmethod
    def from_tensors(self, outputs: np.ndarray, controls: np.ndarray | None = None,
                     qpm: float = DEFAULT_QPM) -> miditoolkit.MidiFile:
        """One example's outputs, shape ``(steps, output_depth)``, as MIDI at ``qpm``."""

    def check_window_memory(self, windows: int) -> None:
        """Refuse, before allocating them, ``windows`` examples of one file that would take more than
        ``MAX_FILE_WINDOW_BYTES`` as float32 tensors (inputs, outputs and controls): a converter calls it
        once it knows how many windows a file gives. Raises :class:`ConversionError`."""
        needed = windows * self.steps * (self.input_depth + self.output_depth + self.control_depth) * 4
        if needed > MAX_FILE_WINDOW_BYTES:
            raise ConversionError(f"{windows:,} windows would take {needed / 2**30:.1f} GiB, more than the "
                                  f"{MAX_FILE_WINDOW_BYTES / 2**30:g} GiB one file may take (split the file, or "
                                  f"set max_tensors_per_notesequence)")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "output_kind": self.output_kind, "input_depth": self.input_depth,
                "output_depth": self.output_depth, "control_depth": self.control_depth,
                "steps": self.steps, "options": dataclasses.asdict(self.options)}

    def transpose(self, inputs: np.ndarray, outputs: np.ndarray,
                  semitones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``(B, T, depth)`` moved by ``semitones`` ``(B,)``, for training augmentation (the
        reference's ``transpose_range``). A window whose notes would leave the converter's pitch
        range moves by the amount nearest to the one asked for that keeps them all in it. A
        converter that supports it overrides this and sets ``transposable``."""
        raise NotImplementedError(f"converter {self.name!r} cannot transpose its windows")

    def chord_controls(self, progression: str | Sequence[str]) -> np.ndarray:
        """Controls ``(steps, control_depth)`` that play the chord ``progression`` (``"C G Am F"`` or a list of
        symbols) over one window, for drawing from a chord-conditioned model. A converter without chord
        controls (the default) refuses: :class:`HvaeError`."""
        raise HvaeError(f"This model is not conditioned on chords (converter {self.name!r}): it takes no --chords.")

    def transpose_controls(self, controls: np.ndarray, outputs: np.ndarray, semitones: np.ndarray) -> np.ndarray:
        """Controls ``(B, T, control_depth)`` moved as :meth:`transpose` moves the windows ``outputs`` (given
        before moving) by ``semitones``. Controls that name no pitch (the default) stay as they are; a
        converter whose controls do (chords) overrides this."""
        return controls

    @property
    def transposable(self) -> bool:
        """Whether :meth:`transpose` is supported (training with ``transpose_range`` needs it)."""
        return type(self).transpose is not Converter.transpose

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the drum ``classes``, in class order (piano-roll lanes); by default each class's first pitch."""
        return tuple(f"pitch {pitches[0]}" for pitches in self.classes)

    def drum_hits(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The drum hits ``(B, T, N)`` (0/1) that outputs ``(B, T, D)`` hold, or None when they hold none.

        Read by the hit metrics (:mod:`hvae.evaluation`), the density check of samples
        (:mod:`hvae.plausible`) and ``hvae humanize``. By default every value of a ``"multihot"`` output
        above 0.5 is a hit and other kinds hold none; a drum converter says where its hits are.
        """
        if self.output_kind == "multihot":
            return (outputs > 0.5).float()
        return None

    def for_user_input(self) -> "Converter":
        """The converter that reads a user's MIDI files for this one's model (``hvae reconstruct``,
        ``interpolate``, ``humanize``): the reference's inference mode where the converter has one (the
        same tensors, read from any General MIDI kit). By default this converter itself."""
        return self

    @property
    def humanizes(self) -> bool:
        """Whether a model trained on this converter's windows restores velocities and timing from bare
        hits (its inputs keep the hits only), as ``hvae humanize`` needs. False by default."""
        return False

    def attributes(self) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
        """Attributes of this converter's windows that ``hvae attributes`` measures besides its own (drum
        hits per bar, syncopation, ...; :mod:`hvae.attributes`): name -> (what it is, in a few words; a
        function of output windows ``(B, T, output_depth)`` giving one float per window, NaN where a
        window has none). Names are what users type (``hvae transform --attribute NAME=1``). None by default."""
        return {}

    @property
    def drumifies(self) -> bool:
        """Whether a model trained on this converter's windows turns a rhythm tapped on one drum into a drum
        groove (its inputs are taps), as ``hvae drumify`` needs. False by default."""
        return False

    def tile(self, source: MidiSource, bars: int) -> list[Example]:
        """The first ``bars`` bars of ``source`` as consecutive windows of :attr:`steps` rows, one grid step
        a row, from its first bar on: the last window padded with silence, notes from bar ``bars`` on left
        out (``hvae reconstruct --whole``, ``humanize --whole``, ``drumify``: parts of any length). A
        converter that supports it overrides this and so sets ``tiles``."""
        raise NotImplementedError(f"converter {self.name!r} cannot cut a file into consecutive windows")

    @property
    def tiles(self) -> bool:
        """Whether :meth:`tile` is supported."""
        return type(self).tile is not Converter.tile

    @property
    def input_transform(self) -> str | None:
        """What a window loses on its way to the model's input, in a few words ("velocities and timing
        removed"), when the model learns to restore it (GrooVAE's humanize, tap-to-drums); None when the
        inputs hold what the outputs hold (the default). :mod:`hvae.evaluation` then also measures the
        outputs decoded from the split's own inputs."""
        return None


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """Options common to every loss (none yet); subclasses add their own fields."""


class Loss(abc.ABC):
    """An output distribution: training loss, metrics and sampling of the next step.

    A loss implements :meth:`__call__` and :meth:`sample_step`; that is all a decoder needs to train
    and to sample (scheduled sampling feeds back :meth:`feedback_step`, a draw at temperature 1 unless
    the loss says otherwise). A loss that is also an ``nn.Module`` holds parameters of its own, which the
    model trains and saves with the encoder's and decoder's. A loss may also offer :class:`FastDraws`, which the built-in decoders' fast
    sampler looks for.
    """

    name: ClassVar[str]
    Options: ClassVar[type] = LossOptions
    accepts: ClassVar[frozenset[str]]  # output kinds this loss is right for
    description: ClassVar[str] = ""
    # Why this loss is wrong for an output kind it does not accept; ``{depth}`` is the output depth.
    why_not: ClassVar[Mapping[str, str]] = {}

    def __init__(self, output_depth: int, options: Any = None, **overrides: Any):
        self.output_depth = output_depth
        base = options if options is not None else self.Options()
        self.options = apply_overrides(base, overrides, what=f"loss {self.name!r}")

    @property
    def raw_size(self) -> int:
        """Size of the decoder's raw output per step."""
        return self.output_depth

    @abc.abstractmethod
    def __call__(self, raw: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Per-sequence loss ``(B,)`` summed over valid steps, and 0-dim metric tensors.

        raw ``(B, T, R)``, targets ``(B, T, D)``, mask ``(B, T)`` (1.0 on valid steps).
        """

    @abc.abstractmethod
    def sample_step(self, raw: torch.Tensor, temperature: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw the next output ``(B, D)`` from raw ``(B, R)`` at ``temperature``."""

    def feedback_step(self, raw: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """What scheduled sampling feeds the decoder in place of the target ``(B, D)``, from raw ``(B, R)``:
        by default a draw at temperature 1, as the reference's categorical and groove decoders do."""
        return self.sample_step(raw, 1.0, generator)


@runtime_checkable
class FastDraws(Protocol):
    """Optional capability of a :class:`Loss`: draws made the cheap way, for a fast sampler.

    The built-in decoders' fast paths (sampling, scheduled sampling) run only for a loss with it; a
    loss without it is sampled by the plain loops, through :meth:`Loss.sample_step`, one call per step.

    ``draws_classes``: True when each step is one class out of ``output_depth``. The stepper then
    returns class indices ``(B,)`` int64 instead of the one-hot rows ``sample_step`` returns, and a
    decoder may feed a draw back as a row gather instead of a matrix product.

    ``stepper(steps, temperature, generator)``: a function for ``steps`` consecutive draws; its t-th
    call on raw ``(B, R)`` returns what the t-th of as many calls of ``sample_step`` would (as class
    indices with ``draws_classes``), consuming ``generator`` as those calls would. It may draw every
    step's random numbers at once (on CPU one call of ``(steps, ...)`` gives the same numbers as
    ``steps`` calls of ``(...)``). ``hvae_losses.common.UniformDraws`` implements both for a loss
    whose draw is a function of uniform random numbers.

    ``stepper_draws_sample_step`` (optional, True where absent): False when the stepper no longer
    draws what ``sample_step`` draws (a subclass replaced ``sample_step`` only); the decoders then run
    the plain loops, so every path draws with the loss's own ``sample_step``.
    """

    draws_classes: bool

    def stepper(self, steps: int, temperature: float,
                generator: torch.Generator | None = None) -> Callable[[torch.Tensor], torch.Tensor]: ...


class Encoder(nn.Module):
    """``forward(inputs (B, T, input_depth), lengths (B,)) -> (mu (B, Z), sigma (B, Z))``.

    Built as ``EncoderClass(input_depth, z_size, options=None, **overrides)``; ``input_depth``
    includes the control depth (controls are concatenated to the inputs, as the reference does).
    An encoder whose class sets ``takes_steps = True`` is also given ``steps=``, the converter's
    window length (the hierarchical encoder splits windows by it).

    Optional capability, for reading and writing the reference's checkpoints (:mod:`hvae.magenta`):
    ``reference_layers() -> {scope: module}`` names each of the encoder's layers by the variable scope
    the reference stores it under (``"encoder/mu"``); each module is a one-layer ``nn.LSTM`` (the
    scope's ``kernel`` and ``bias`` are an LSTM cell's) or an ``nn.Linear`` (a dense layer's).
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    takes_steps: ClassVar[bool] = False


class Decoder(nn.Module):
    """Maps z to raw outputs. Teacher-forced in ``forward``, free-running in ``sample``.

    Built as ``DecoderClass(output_depth=, raw_size=, z_size=, control_depth=, steps=, options=None,
    **overrides)``: ``raw_size`` is what the loss asks per step, ``steps`` the converter's length.

    Optional capability: ``reference_layers()``, as for :class:`Encoder`.
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    default_loss: ClassVar[str | None] = None  # the loss used when the model config names none

    @abc.abstractmethod
    def forward(self, z: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
                controls: torch.Tensor | None = None, *, sampling_probability: float = 0.0,
                loss: Loss | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw outputs ``(B, T, R)`` given z ``(B, Z)`` and targets ``(B, T, D)``.

        Step t sees target t-1 (zeros at t=0), or, with probability ``sampling_probability`` per
        sequence and step, the model's own draw through ``loss.sample_step`` (scheduled sampling).
        """

    @abc.abstractmethod
    def sample(self, z: torch.Tensor, steps: int, temperature: float, loss: Loss,
               controls: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Outputs ``(B, steps, D)`` drawn step by step through ``loss.sample_step``."""


def check_compatible(output_kind: str, loss_cls: type[Loss], loss_name: str, converter_name: str,
                     all_losses: Sequence[type[Loss]] = (), output_depth: int | None = None) -> None:
    """Raise :class:`IncompatibleError` when ``loss_cls`` does not accept ``output_kind``.

    The message says what the converter writes, what the loss models, why the two do not fit
    (the loss's ``why_not``) and which installed losses would.
    """
    if output_kind in loss_cls.accepts:
        return
    fitting = sorted(getattr(l, "name", "?") for l in all_losses if output_kind in l.accepts)
    reason = loss_cls.why_not.get(output_kind, "")
    if reason:
        reason = " " + reason.format(depth=output_depth if output_depth is not None else "the") + "."
    raise IncompatibleError(
        f"Loss {loss_name!r} does not fit converter {converter_name!r}: the converter writes "
        f"{output_kind!r} outputs, and {loss_name!r} models {', '.join(sorted(loss_cls.accepts))} outputs"
        f"{' (' + loss_cls.description + ')' if loss_cls.description else ''}.{reason} "
        f"Losses that fit: {', '.join(fitting) or 'none installed'}. Use --force to train it anyway.")
