"""Drum pitch classes: which General MIDI pitches fold into each of the nine drum classes.

Class order (both sets): kick, snare, closed hi-hat, open hi-hat, low tom, mid tom,
high tom, crash, ride. The first pitch of a class is the one written back to MIDI.
"""

from __future__ import annotations

DRUM_CLASS_NAMES = ("kick", "snare", "closed hi-hat", "open hi-hat", "low tom", "mid tom", "high tom",
                    "crash", "ride")

# Every General MIDI percussion pitch and the Roland kit's 22 and 26, folded into nine classes
# (the reference's default set).
REDUCED: tuple[tuple[int, ...], ...] = (
    (36, 35),
    (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85),
    (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22),
    (46, 67, 72, 74, 79, 81, 26),
    (45, 29, 41, 43, 61, 64, 84),
    (48, 47, 60, 63, 77, 86, 87),
    (50, 30, 62, 76, 83),
    (49, 52, 55, 57, 58),
    (51, 53, 59, 82),
)

# The pitches a Roland TD-11 kit (the Groove MIDI Dataset's) sends, in the same nine classes.
ROLAND: tuple[tuple[int, ...], ...] = (
    (36,),
    (38, 37, 40),
    (42, 22, 44),
    (46, 26),
    (43, 58),
    (47, 45),
    (50, 48),
    (49, 52, 55, 57),
    (51, 53, 59),
)

# One class per General MIDI percussion pitch (61 classes), in the reference's order.
FULL: tuple[tuple[int, ...], ...] = tuple((p,) for p in (
    36, 35, 38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85, 42, 44, 54, 68, 69, 70, 71, 73,
    78, 80, 46, 67, 72, 74, 79, 81, 45, 29, 41, 61, 64, 84, 48, 47, 60, 63, 77, 86, 87, 50, 30, 43, 62,
    76, 83, 49, 55, 57, 58, 51, 52, 53, 59, 82))

PITCH_CLASS_SETS = {"reduced": REDUCED, "roland": ROLAND, "full": FULL}


def pitch_classes(name: str) -> tuple[tuple[int, ...], ...]:
    from hvae.errors import HvaeError

    try:
        return PITCH_CLASS_SETS[name]
    except KeyError:
        raise HvaeError(f"Unknown pitch classes {name!r}. Choose from: {', '.join(PITCH_CLASS_SETS)}.") from None


def class_names(classes: tuple[tuple[int, ...], ...]) -> tuple[str, ...]:
    """Display names of drum classes: the nine drum names, or each class's first pitch."""
    if len(classes) == len(DRUM_CLASS_NAMES):
        return DRUM_CLASS_NAMES
    return tuple(f"pitch {cls[0]}" for cls in classes)
