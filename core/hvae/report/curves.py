"""Loss-curve pictures from runs' ``metrics.jsonl`` (PNG, matplotlib's Agg renderer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hvae.training import METRICS_FILE, read_metrics_file

# The panels: (metrics.jsonl key, axis label).
PANELS = (("loss", "loss (reconstruction + beta * KL)"), ("kl_bits", "KL (bits)"))


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (empty when it has none; lines that are not records skipped)."""
    return read_metrics_file(Path(run_dir) / METRICS_FILE)


def plot_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, title: str = "") -> Path:
    """One line per run: training loss and KL bits against step (solid), validation passes as dots.

    ``runs`` maps a run's label to its metrics.jsonl records. Writes a PNG to ``path`` and returns it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(12.0, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(PANELS), squeeze=False)[0]
    for (key, label), ax in zip(PANELS, axes):
        for k, (name, records) in enumerate(runs.items()):
            colour = f"C{k % 10}"
            for split, style in (("train", dict(linestyle="-", linewidth=1.4)),
                                 ("validation", dict(linestyle="none", marker="o", markersize=5))):
                points = [(r["step"], r[key]) for r in records if r.get("split") == split and key in r]
                if points:
                    steps, values = zip(*points)
                    ax.plot(steps, values, color=colour, label=name if split == "train" else None, **style)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(True, color="#dddddd", linewidth=0.5)
    if axes[0].get_lines():
        axes[0].legend(fontsize=8, title="lines: training; dots: validation", title_fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path)
    return path
