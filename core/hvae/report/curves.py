"""Loss-curve pictures from runs' ``metrics.jsonl`` records (:meth:`hvae.rundir.RunDir.metrics`; PNG, matplotlib's
Agg renderer)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hvae.safefiles import write_atomic

# The panels: (metrics.jsonl key, axis label).
PANELS = (("loss", "loss (reconstruction + beta * KL)"), ("kl_bits", "KL (bits)"))
START_SHARE = 0.05  # the first this share of a run's steps: an axis fits the steps after them


def plot_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, title: str = "") -> Path:
    """One line per run: training loss and KL bits against step (solid), validation passes as dots (the
    legend names only what is drawn); the y axis zooms in on the points after the first :data:`START_SHARE`
    of the steps (a line above it says so) when the first steps lie outside their range.

    ``runs`` maps a run's label to its metrics.jsonl records. Writes a PNG to ``path`` and returns it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    curves_figure(runs, title).savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
    return path


def _fit_after_start(ax) -> str:
    """Fit the y axis to the points after the first :data:`START_SHARE` of the steps when the points before
    lie outside their range (the first steps' loss would flatten the rest of a short run); a line saying
    so then, else ""."""
    points = [(x, y) for line in ax.get_lines() for x, y in zip(line.get_xdata(), line.get_ydata())]
    if not points:
        return ""
    start = max(x for x, _ in points) * START_SHARE
    later = [y for x, y in points if x > start]
    if not later:
        return ""
    low, high = min(later), max(later)
    margin = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    if all(low - margin <= y <= high + margin for x, y in points if x <= start):
        return ""
    ax.set_ylim(low - margin, high + margin)
    return f"y axis zoomed in on the steps after the first {int(start):,}, where the curve has settled; " \
           f"the first steps' values lie off the chart"


def curves_figure(runs: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> Figure:
    """The figure :func:`plot_curves` writes."""
    figure = Figure(figsize=(12.0, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(PANELS), squeeze=False)[0]
    dots = False  # whether any validation pass is drawn, for the legend
    for (key, label), ax in zip(PANELS, axes):
        for k, (name, records) in enumerate(runs.items()):
            colour = f"C{k % 10}"
            for split, style in (("train", dict(linestyle="-", linewidth=1.4)),
                                 ("validation", dict(linestyle="none", marker="o", markersize=5))):
                points = [(r["step"], r[key]) for r in records if r.get("split") == split and key in r]
                if points:
                    steps, values = zip(*points)
                    ax.plot(steps, values, color=colour, label=name if split == "train" else None, **style)
                    dots = dots or split == "validation"
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(_fit_after_start(ax), loc="right", fontsize=8, color="#555555")
        ax.grid(True, color="#dddddd", linewidth=0.5)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8, title="lines: training" + ("; dots: validation" if dots else ""),
                       title_fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
