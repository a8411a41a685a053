"""``hvae models``: the models in the box (:mod:`hvae.pretrained`)."""

from __future__ import annotations

import json

import click

from hvae.pretrained import shipped_models


def register(main: click.Group) -> None:
    """Add ``models`` to the ``hvae`` command line."""
    main.add_command(models)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def models(as_json: bool) -> None:
    """List the models in the box: trained on the Groove MIDI Dataset, ready to use by name.

    Every command that takes a run takes a model's name instead, and writes what it makes into
    runs/<name>/ in the working directory. Each model's card (data, split, training budget,
    machine, test-split metrics and the command that reproduces it) is the MODEL_CARD.md file
    printed beside it. The Groove MIDI Dataset is CC BY 4.0 (Gillick, Roberts, Engel, Eck and
    Bamman; Google Magenta): keep its attribution with what you make from these models' weights.

    \b
    Examples:
      hvae sample gmd-drums-4bar -n 8
      hvae humanize gmd-humanize-2bar beat.mid
      hvae train --resume gmd-drums-4bar --out runs/my-drums --data my-midi/ --minutes 30
    """
    found = shipped_models()
    if as_json:
        click.echo(json.dumps([{"name": m.name, "summary": m.summary, "card": str(m.card), "path": str(m.path)}
                               for m in found], indent=2))
        return
    if not found:
        click.echo("No models in the box (this installation ships none).")
        return
    for m in found:
        click.echo(f"{m.name}\n  {m.summary}\n  card: {m.card}")
