"""Piano-roll pictures of MIDI files (PNG, drawn with matplotlib's Agg renderer, no display needed).

Time runs left to right in bars: faint lines every grid step, stronger every beat, black every bar.
Drum notes are drawn in named lanes (kick, snare, ...) one grid step wide from their onset, so a note
played early or late sits off the grid; pitched notes are drawn as long as they sound, each panel over the pitches it uses. Colour is velocity,
with a colour bar, where velocities differ; where every note has one velocity, one colour and a line
that says which.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Sequence

import miditoolkit
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hvae.interfaces import Converter
from hvae.safefiles import write_atomic

WIDTH_INCHES = 12.0  # 1,200 pixels at DPI
DPI = 100
ROW_INCHES = 0.2  # height of one drum lane
PITCH_ROW_INCHES = 0.08  # height of one pitch row (a semitone)
MAX_PITCHED_INCHES = 3.5  # a pitched panel's plot is at most this high, however wide its pitch range
MIN_AXES_INCHES = 1.0  # a panel's plot is at least this high
PANEL_EXTRA_INCHES = 0.65  # a panel's title above and bar labels below its plot
TITLE_INCHES = 0.3  # of which the title
TOP_INCHES = 0.1  # margin above the first panel
LEFT_INCHES = 1.1  # room for the lane names
RIGHT_INCHES = 0.9  # room for the velocity colour bar
COLORMAP = "viridis_r"  # quiet notes yellow, loud ones dark
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
PITCH_MARGIN = 2  # empty pitch rows above and below a pitched roll
MAX_PANELS = 24  # rolls in one picture (drums: about 5,900 pixels high); of more, this many evenly spread


@dataclasses.dataclass(frozen=True)
class Lanes:
    """The rows of a drum roll, bottom to top: a name and the MIDI pitches drawn in each."""

    names: tuple[str, ...]
    pitches: tuple[tuple[int, ...], ...]

    def row_of(self) -> dict[int, int]:
        return {pitch: row for row, pitches in enumerate(self.pitches) for pitch in pitches}


@dataclasses.dataclass(frozen=True)
class Panel:
    """One roll of a picture."""

    title: str
    midi: miditoolkit.MidiFile
    lanes: Lanes | None  # None: a pitched roll, one row per MIDI pitch


def lanes_of(converter: Converter) -> Lanes | None:
    """Drum lanes for a converter with drum pitch ``classes`` (drums, groove), named by its
    ``class_names``; None for a pitched converter."""
    if not converter.classes:
        return None
    return Lanes(tuple(converter.class_names), tuple(tuple(c) for c in converter.classes))


def window_quarters(converter: Converter) -> float:
    """A window's length in quarter notes."""
    return converter.steps / converter.options.steps_per_quarter


def _quarters_per_bar(midi: miditoolkit.MidiFile) -> float:
    if midi.time_signature_changes:
        signature = midi.time_signature_changes[0]
        return signature.numerator * 4.0 / signature.denominator
    return 4.0


def _notes(midi: miditoolkit.MidiFile) -> list[tuple[float, float, int, int, bool]]:
    """(start, end) in quarter notes, pitch, velocity and drum flag of every note."""
    per_quarter = float(midi.ticks_per_beat)
    return [(n.start / per_quarter, n.end / per_quarter, n.pitch, n.velocity, instrument.is_drum)
            for instrument in midi.instruments for n in instrument.notes]


def _pitch_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _rows(panel: Panel, pitch_range: tuple[int, int]) -> tuple[list[float], list[str]]:
    """Tick positions and labels of a panel's rows."""
    if panel.lanes is not None:
        return list(range(len(panel.lanes.names))), list(panel.lanes.names)
    low, high = pitch_range
    ticks = [p for p in range(low, high + 1) if p % 12 == 0] or [low]
    return ticks, [_pitch_name(p) for p in ticks]


def _draw(ax, panel: Panel, quarters: float, steps_per_quarter: int, pitch_range: tuple[int, int],
          norm: Normalize) -> None:
    qpb = _quarters_per_bar(panel.midi)
    step = 1.0 / steps_per_quarter
    rows = panel.lanes.row_of() if panel.lanes is not None else None
    boxes, velocities = [], []
    for start, end, pitch, velocity, is_drum in _notes(panel.midi):
        row = rows.get(pitch) if rows is not None else pitch
        if row is None:
            continue
        width = step if is_drum else max(end - start, step / 4)
        boxes.append(Rectangle((start, row - 0.4), width, 0.8))
        velocities.append(velocity)
    if panel.lanes is not None:
        low, high = -0.5, len(panel.lanes.names) - 0.5
    else:
        low, high = pitch_range[0] - 0.5, pitch_range[1] + 0.5
    grid = [k * step for k in range(int(round(quarters * steps_per_quarter)) + 1)]
    on_bar = [x for x in grid if math.isclose(x % qpb, 0.0, abs_tol=1e-9)]
    on_beat = [x for x in grid if math.isclose(x % 1.0, 0.0, abs_tol=1e-9) and x not in on_bar]
    on_step = [x for x in grid if x not in on_bar and x not in on_beat]
    for xs, colour, width in ((on_step, "#e4e4e4", 0.6), (on_beat, "#9a9a9a", 0.6), (on_bar, "black", 1.0)):
        ax.vlines(xs, low, high, colors=colour, linewidths=width, zorder=0)
    if panel.lanes is not None:
        ax.hlines([y - 0.5 for y in range(1, len(panel.lanes.names))], 0.0, quarters, colors="#eeeeee",
                  linewidths=0.5, zorder=0)
    if boxes:
        collection = PatchCollection(boxes, cmap=COLORMAP, norm=norm, edgecolor="black", linewidth=0.3, zorder=2)
        collection.set_array(velocities)
        ax.add_collection(collection)
    ticks, labels = _rows(panel, pitch_range)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_ylim(low, high)
    ax.set_xlim(0.0, quarters)
    bars = int(math.ceil(quarters / qpb - 1e-9))
    ax.set_xticks([b * qpb for b in range(bars)], [f"bar {b + 1}" for b in range(bars)], fontsize=8)
    ax.set_title(f"{panel.title}  ({len(boxes)} notes)", loc="left", fontsize=9)


def plot_rolls(panels: Sequence[Panel], path: str | Path, quarters: float | None = None,
               steps_per_quarter: int = 4) -> Path:
    """Draw ``panels`` (see :func:`roll_png`) and write the PNG to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, roll_png(panels, quarters, steps_per_quarter))
    return path


def roll_png(panels: Sequence[Panel], quarters: float | None = None, steps_per_quarter: int = 4) -> bytes:
    """:func:`roll_figure` as a PNG's bytes."""
    buffer = io.BytesIO()
    roll_figure(panels, quarters, steps_per_quarter).savefig(buffer, format="png")
    return buffer.getvalue()


def drawn_panels(count: int) -> list[int]:
    """Which of ``count`` panels a picture draws: all up to :data:`MAX_PANELS`, else that many evenly spread,
    the first and the last among them (a picture of a 1,000-step interpolation would be 245,000 pixels high)."""
    if count <= MAX_PANELS:
        return list(range(count))
    return [int(k) for k in np.linspace(0, count - 1, MAX_PANELS).round()]


def picture_note(count: int, what: str = "sequences") -> str | None:
    """What to tell the user of a picture of ``count`` panels that draws only some; None when it draws all."""
    if count <= MAX_PANELS:
        return None
    return (f"The picture draws {MAX_PANELS} of the {count} {what}, evenly spread (the first and last among them); "
            f"the MIDI files hold all of them.")


def roll_figure(panels: Sequence[Panel], quarters: float | None = None, steps_per_quarter: int = 4) -> Figure:
    """Draw ``panels`` one above the other, sharing the time axis (at most :data:`MAX_PANELS` of them:
    :func:`drawn_panels`).

    ``quarters`` is the length shown, in quarter notes (default: the last note's end, rounded up to a
    bar); ``steps_per_quarter`` sets the finest grid lines and a drum note's width.
    """
    if not panels:
        raise ValueError("plot_rolls needs at least one panel")
    panels = [panels[k] for k in drawn_panels(len(panels))]
    notes = [note for panel in panels for note in _notes(panel.midi)]
    if quarters is None:
        qpb = _quarters_per_bar(panels[0].midi)
        quarters = max(qpb, math.ceil(max((end for _, end, *_ in notes), default=0.0) / qpb) * qpb)
    ranges = [_pitch_range(panel) for panel in panels]
    heights = [max(len(p.lanes.names) * ROW_INCHES if p.lanes is not None else
                   min((high - low + 1) * PITCH_ROW_INCHES, MAX_PITCHED_INCHES), MIN_AXES_INCHES)
               for p, (low, high) in zip(panels, ranges)]  # axes heights, inches
    total = sum(heights) + len(panels) * PANEL_EXTRA_INCHES + TOP_INCHES
    figure = Figure(figsize=(WIDTH_INCHES, total), dpi=DPI)
    FigureCanvasAgg(figure)
    norm = Normalize(vmin=0, vmax=127)
    width = (WIDTH_INCHES - LEFT_INCHES - RIGHT_INCHES) / WIDTH_INCHES
    top = total - TOP_INCHES  # inches from the bottom; panels are laid out downwards from here
    for panel, height, pitch_range in zip(panels, heights, ranges):
        top -= TITLE_INCHES + height
        ax = figure.add_axes((LEFT_INCHES / WIDTH_INCHES, top / total, width, height / total))
        _draw(ax, panel, quarters, steps_per_quarter, pitch_range, norm)
        top -= PANEL_EXTRA_INCHES - TITLE_INCHES
    velocities = {velocity for _, _, _, velocity, _ in notes}
    if len(velocities) > 1:
        bar_height = min(total - TOP_INCHES - TITLE_INCHES - 0.4, 4.0)
        colorbar_ax = figure.add_axes(((WIDTH_INCHES - RIGHT_INCHES + 0.25) / WIDTH_INCHES,
                                       (total - TOP_INCHES - TITLE_INCHES - bar_height) / total,
                                       0.15 / WIDTH_INCHES, bar_height / total))
        colorbar = figure.colorbar(ScalarMappable(norm=norm, cmap=COLORMAP), cax=colorbar_ax)
        colorbar.set_label("velocity", fontsize=8)
        colorbar.ax.tick_params(labelsize=8)
    elif velocities:
        figure.text(1.0 - (RIGHT_INCHES - 0.1) / WIDTH_INCHES, 1.0 - (TOP_INCHES + TITLE_INCHES) / total,
                    f"velocity\n{velocities.pop()}\nthroughout", fontsize=8, va="top")
    return figure


def _pitch_range(panel: Panel) -> tuple[int, int]:
    """The lowest and highest pitch row of a pitched panel: its notes' pitches and a margin (C4 to C5
    without notes)."""
    pitched = [pitch for _, _, pitch, _, is_drum in _notes(panel.midi) if not is_drum]
    return min(pitched, default=60) - PITCH_MARGIN, max(pitched, default=72) + PITCH_MARGIN
