"""The page ``hvae compare`` writes: the results table, the loss curves, each combination's
reconstruction of the same window, links to every run's own report, and what was refused and why."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hvae.safefiles import write_atomic
from hvae.report import html


def write_comparison_page(path: Path, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
                          runs: Sequence[tuple[str, Path | None]], refused: Sequence[tuple[str, str]],
                          stopped: Sequence[tuple[str, str]], curves: Path,
                          same_input: tuple[Path, str] | None, split: str, caveat: str = "") -> Path:
    """Write the page to ``path``: ``rows`` under ``headers``, with ``caveat`` (a warning, when there is one)
    above them; ``runs`` are (name, report page or None); ``refused`` and ``stopped`` are (name, reason);
    ``same_input`` is (PNG, the source file) or None."""
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>Metrics on the {html.escape(split)} split. TF = teacher-forced (fed the true previous step), "
            f"sampled = free-running from &mu;. Hits are counted over (step, drum class) cells, so converters "
            f"compare; velocity is in MIDI units, timing in milliseconds.</p>"]
    if caveat:
        body.append(f"<p><b>{html.escape(caveat)}</b></p>")
    body.append(html.table(headers, rows, text_columns=2))
    if stopped:
        body.append("<h2>Stopped early</h2>")
        body.append("<ul>" + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(r)}</li>" for n, r in stopped)
                    + "</ul>")
    if refused:
        body.append("<h2>Refused (not trained; --force trains them)</h2>")
        body.append("<ul>" + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(r)}</li>" for n, r in refused)
                    + "</ul>")
    body.append("<h2>Training</h2>")
    body.append(html.figure(html.relative(curves, path), "loss curves",
                            "Training loss and KL per logged step, one colour per combination; dots are "
                            "validation passes."))
    if same_input is not None:
        picture, source = same_input
        body.append("<h2>The same input, every combination</h2>")
        body.append(html.figure(html.relative(picture, path), "same input",
                                f"The first window of {source} as each combination's converter reads it, and "
                                f"its reconstruction (encoded to μ, decoded greedily)."))
    body.append("<h2>Runs</h2>")
    items = [f"<li>{html.link(html.relative(page, path), name)}</li>" if page is not None
             else f"<li>{html.escape(name)} (no report)</li>" for name, page in runs]
    body.append("<ul>" + "".join(items) + "</ul>")
    write_atomic(path, html.page(title, body).encode())
    return path
