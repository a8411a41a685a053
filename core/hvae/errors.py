"""Domain exceptions. The CLI turns them into one-line messages; nothing else should."""

from __future__ import annotations

import contextlib
from typing import Iterator


class HvaeError(Exception):
    """Base class of every error hvae raises on purpose."""


class InvalidArgument(HvaeError, ValueError):
    """A value given to a public function (a count, a temperature, a tempo, a converter's option) of the
    wrong type or out of range, refused in one line as the command line refuses it (:mod:`hvae.arguments`
    checks them); a ``ValueError`` too, as Python's own functions raise for such values."""


class MidiReadError(HvaeError):
    """A MIDI file could not be read (corrupt, truncated, not MIDI, unreadable)."""


class ConversionError(HvaeError):
    """A note sequence cannot be converted (wrong meter, tempo changes, negative times, ...)."""


class PluginError(HvaeError):
    """Plugin loading or registration went wrong (duplicate names, bad hooks)."""


class UnknownComponentError(HvaeError):
    """A converter, encoder, decoder, loss or preset name that nothing registered."""


class IncompatibleError(HvaeError):
    """A converter, decoder and loss that do not fit together."""


class CheckpointError(HvaeError):
    """A checkpoint that is missing, corrupt or not an hvae checkpoint."""


class TrainingError(HvaeError):
    """Training cannot go on (a loss that is not finite); the last checkpoint is left intact."""


class UnsafePathError(HvaeError):
    """A path hvae would write through is a symbolic link, or not the kind of file it expects."""


class OutputExistsError(HvaeError):
    """The folder an output would be written to holds something hvae will not write over as it is.

    ``str()`` says what to do in Python's words (``out=``, ``overwrite=True``); the command line words the
    same advice with its own options through :meth:`worded` (``--out``, ``--force``).
    """

    def __init__(self, path: object, problem: str, *, replaceable: bool = False, argument: str = "out"):
        self.path, self.problem, self.replaceable = path, problem, replaceable
        super().__init__(self.worded(f"{argument}=", "overwrite=True"))

    def worded(self, out: str, overwrite: str) -> str:
        """The message, naming ``out`` as the way to choose another folder and ``overwrite`` as the way to
        replace this one (where it may be replaced)."""
        if self.replaceable:
            return f"{self.problem}: choose another {out}, or {overwrite} to replace it."
        return f"{self.problem}: choose another {out}."


@contextlib.contextmanager
def plain_errors_as(what: str) -> Iterator[None]:
    """Inside the block, an exception that is not an :class:`HvaeError` (a third-party component that
    validates with plain exceptions) becomes one: ``<what>: <type>: <message>``."""
    try:
        yield
    except HvaeError:
        raise
    except Exception as exc:
        raise HvaeError(f"{what}: {type(exc).__name__}: {exc}") from None
