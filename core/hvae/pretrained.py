"""The models that ship with hvae: trained on the Groove MIDI Dataset (CC BY 4.0), ready after setup.

Each is an ordinary run directory under ``hvae/pretrained/<name>/`` — ``config.json``, ``metrics.jsonl``,
one checkpoint of float16 weights, ``plausible.json`` (its training windows' hit densities) — with a
``MODEL_CARD.md`` (data, split, budget, machine, test-split metrics, the command that reproduces it). Every
command that takes a run takes a model's name instead (``hvae sample gmd-drums-4bar``); what such a command
writes goes to ``runs/<name>/`` in the working directory, never into the installed package.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
CARD = "MODEL_CARD.md"


@dataclasses.dataclass(frozen=True)
class ShippedModel:
    """One model in the box: its name, folder and the first line of its card's summary."""

    name: str
    path: Path
    summary: str  # what it does, in a line (the card's first paragraph)

    @property
    def card(self) -> Path:
        return self.path / CARD


def shipped_models() -> list[ShippedModel]:
    """Every model in the box, by name."""
    if not PRETRAINED_DIR.is_dir():
        return []
    found = []
    for folder in sorted(PRETRAINED_DIR.iterdir()):
        if (folder / "config.json").is_file() and (folder / CARD).is_file():
            found.append(ShippedModel(folder.name, folder, _summary(folder / CARD)))
    return found


def shipped_model(name: str | os.PathLike) -> ShippedModel | None:
    """The model called ``name`` (a plain name, not a path), or None."""
    text = os.fspath(name)
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", text):
        return None
    return next((m for m in shipped_models() if m.name == text), None)


def is_shipped(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies inside the models in the box (where nothing may be written)."""
    try:
        Path(path).resolve().relative_to(PRETRAINED_DIR)
    except ValueError:
        return False
    return True


def _summary(card: Path) -> str:
    """The first paragraph after the card's title, as one line."""
    lines = card.read_text(encoding="utf-8").splitlines()
    paragraph: list[str] = []
    for line in lines[1:]:
        if line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            break
    return " ".join(paragraph)
