"""``hvae presets``: every preset with its architecture, and the reference's configurations hvae lacks."""

from __future__ import annotations

import json

import click


def register(main: click.Group) -> None:
    """Add ``presets`` to the ``hvae`` command line."""
    main.add_command(presets)


def preset_table() -> dict:
    """Each preset's converter, decoder, sizes, parameter count and origin; and the unsupported ones."""
    import torch

    from hvae.model import build_model, trainable_parameters
    from hvae.plugins import make_converter
    from hvae.presets import PRESETS, UNSUPPORTED

    rows = []
    for preset in PRESETS.values():
        with torch.device("meta"):  # shapes only: nothing allocated
            converter = make_converter(preset.converter, preset.converter_options)
            model = build_model(preset.model, converter, force=preset.force)
        cfg = model.config
        rows.append({"name": preset.name, "converter": preset.converter, "decoder": cfg.decoder, "loss": cfg.loss,
                     "z_size": cfg.z_size, "encoder": cfg.encoder,
                     "encoder_sizes": list(cfg.encoder_options["rnn_sizes"]),
                     "decoder_sizes": list(cfg.decoder_options["rnn_sizes"]),
                     "steps": model.spec.steps, "parameters": sum(p.numel() for p in trainable_parameters(model)),
                     "origin": preset.origin, "description": preset.description})
    unsupported = [{"name": u.name, "reason": u.reason} for u in UNSUPPORTED.values()]
    return {"presets": rows, "unsupported": unsupported}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def presets(as_json: bool) -> None:
    """List the presets: converter, decoder, sizes, parameters and where each comes from.

    The encoder column gives its units per layer, "hier:" before them for the hierarchical encoder.
    Origins: reference (Magenta's configs.py, at its exact sizes: its released checkpoints
    import with 'hvae import'), report (the 4-bar study), hvae (the demo). The reference's
    configurations that hvae cannot build follow, with the reason.
    """
    table = preset_table()
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    header = ("name", "converter", "decoder", "loss", "z", "encoder", "decoder units", "steps", "parameters",
              "origin")
    rows = [(r["name"], r["converter"], r["decoder"], r["loss"], str(r["z_size"]),
             ("hier:" if r["encoder"] == "hierarchical" else "") + "x".join(map(str, r["encoder_sizes"])),
             "x".join(map(str, r["decoder_sizes"])), str(r["steps"]),
             f"{r['parameters']:,}", r["origin"]) for r in table["presets"]]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if table["unsupported"]:
        click.echo("\nThe reference's configurations hvae does not support:")
    for u in table["unsupported"]:
        click.echo(f"  {u['name']}: {u['reason']}")
