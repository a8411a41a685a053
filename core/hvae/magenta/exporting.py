"""``hvae export --format magenta-js``: a trained model as a checkpoint folder magenta.js loads.

    export_magenta_js("runs/demo", "web/drums")    # config.json, weights_manifest.json, shards

magenta.js (``@magenta/music``'s ``MusicVAE``) reads the reference's variable names and layout
(:mod:`hvae.magenta.variables`) and builds its model from them and from ``config.json``'s
``dataConverter``. It runs flat decoders beside a single-layer bidirectional encoder, and
hierarchical decoders beside a two-level hierarchical encoder (one layer per level) that splits
windows into the decoder's bars (a multi-instrument model's instruments: its MultitrackConverter, one
chunk a window), and a NADE (the nade loss) on drum rolls, which it decodes greedily only; a model it cannot
run is refused in one line, before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from hvae.safefiles import atomic_directory, check_output_folder
from hvae.errors import HvaeError
from hvae.magenta import jsformat
from hvae.magenta.variables import to_reference
from hvae.rundir import open_run

@dataclasses.dataclass(frozen=True)
class ExportResult:
    out: Path
    files: list[Path]
    variables: int
    bytes: int
    config: dict[str, Any]


def magenta_js_config(model: Any, converter: Any) -> dict[str, Any]:
    """The ``config.json`` magenta.js builds ``model`` from; :class:`HvaeError` for what it cannot run."""
    cfg = model.config
    if cfg.decoder not in ("flat", "groove", "hierarchical"):
        raise HvaeError(f"magenta.js has no counterpart of the {cfg.decoder!r} decoder.")
    chords = converter.name in ("melody", "multiperf") and converter.options.chord_encoding == "triad"
    if model.spec.control_depth and not chords:
        raise HvaeError("magenta.js cannot be given this model's controls (hits_as_controls): a model with "
                        "controls cannot be exported to it.")
    config = {"type": "MusicVAE", "dataConverter": _data_converter(converter, cfg.loss)}
    if converter.name == "trio":
        _check_split(model)
    if chords:  # magenta.js's name for the reference's triad chord encoding, given a chordProgression
        config["chordEncoder"] = "TriadChordEncoder"
    if cfg.decoder == "hierarchical":
        config["dataConverter"]["args"]["numSegments"] = _segments(model)
    else:
        _check_flat_encoder(model)
    return config


def _check_split(model: Any) -> None:
    """magenta.js decodes a trio with one core decoder per track (its variables core_decoder_0, _1, _2) under
    a conductor: a trio model with one decoder for the three tracks (flat-trio_16bar) it cannot load."""
    cfg = model.config
    if cfg.decoder == "hierarchical" and cfg.decoder_options.get("split_depths"):
        return
    layers = len(tuple(cfg.encoder_options.get("rnn_sizes", ())))
    encoder = f", and runs single-layer encoders only (this model's has {layers})" if layers != 1 else ""
    raise HvaeError(f"magenta.js cannot load this trio model: it decodes trios with one core decoder per track "
                    f"under a conductor (the hierarchical decoder's split_depths, as hier-trio_16bar), not one "
                    f"{cfg.decoder} decoder for the three tracks{encoder}.")


def _check_flat_encoder(model: Any) -> None:
    cfg = model.config
    if cfg.encoder == "hierarchical":
        raise HvaeError("magenta.js runs a hierarchical encoder only with a hierarchical decoder of the same "
                        "segments; this model's decoder is flat.")
    if cfg.encoder != "bidirectional":
        raise HvaeError(f"magenta.js cannot run the {cfg.encoder!r} encoder: it runs the bidirectional one.")
    layers = len(tuple(cfg.encoder_options.get("rnn_sizes", ())))
    if layers != 1:
        raise HvaeError(f"magenta.js runs single-layer bidirectional encoders only; this model's has {layers} "
                        f"layers (encoder.rnn_sizes={cfg.encoder_options['rnn_sizes']}).")


def _segments(model: Any) -> int:
    """The bars magenta.js decodes (its ``numSegments``) of a hierarchical model it can run: its conductor
    runs only beside a two-level hierarchical encoder of one layer per level, split as the decoder is."""
    cfg, decoder = model.config, model.decoder
    bars, bar_steps = decoder.bars, decoder.bar_steps
    hint = (f"a model trained with --encoder hierarchical can be (it splits the {model.spec.steps} steps "
            f"into the decoder's {bars} bars of {bar_steps})")
    if cfg.encoder != "hierarchical":
        raise HvaeError(f"magenta.js runs a hierarchical decoder only beside a hierarchical encoder, and this "
                        f"model's encoder is {cfg.encoder!r}: it cannot be exported; {hint}.")
    levels = tuple(cfg.encoder_options["level_lengths"])
    if levels != (bar_steps, bars):
        raise HvaeError(f"magenta.js splits the encoder's input as the decoder's bars ({bar_steps} steps x "
                        f"{bars}); this model's encoder.level_lengths is {levels}: it cannot be exported.")
    layers = len(tuple(cfg.encoder_options["rnn_sizes"]))
    if layers != 1:
        raise HvaeError(f"magenta.js runs one layer per level of a hierarchical encoder; this model's has "
                        f"{layers} (encoder.rnn_sizes={cfg.encoder_options['rnn_sizes']}).")
    return bars


def _data_converter(converter: Any, loss: str) -> dict[str, Any]:
    name, options, steps = converter.name, converter.options, converter.steps
    if name == "drums":
        args: dict[str, Any] = {"numSteps": steps, "pitchClasses": [list(c) for c in converter.classes]}
        if options.roll_output:  # rolls: magenta.js decodes them with a NADE (the nade-drums models)
            if loss != "nade":
                raise HvaeError(f"magenta.js decodes drum rolls with a NADE (the nade loss), not the {loss!r} loss.")
            if not options.roll_input:
                raise HvaeError("magenta.js reads drum rolls with roll inputs; this model's inputs are one-hot "
                                "(roll_input=false): it cannot be exported.")
            return {"type": "DrumRollConverter", "args": args}
        if loss != "categorical":
            raise HvaeError(f"magenta.js decodes one-hot drums with a categorical output, not the {loss!r} loss.")
        return {"type": "DrumsConverter" if options.roll_input else "DrumsOneHotConverter", "args": args}
    if name == "melody":
        if loss != "categorical":
            raise HvaeError(f"magenta.js decodes melodies with a categorical output, not the {loss!r} loss.")
        return {"type": "MelodyConverter", "args": {"numSteps": steps, "minPitch": options.min_pitch,
                                                     "maxPitch": options.max_pitch,
                                                     "ignorePolyphony": not options.skip_polyphony}}
    if name == "groove":
        if options.num_velocity_bins or options.num_offset_bins:
            raise HvaeError("magenta.js's GrooveConverter reads continuous velocities and offsets, not bins.")
        if loss == "groove-gated":
            raise HvaeError("magenta.js feeds its groove decoder the velocities and offsets of steps without a hit; "
                            "a model trained with the groove-gated loss is fed zeros there, and would decode "
                            "other drums in magenta.js than in hvae: it cannot be exported.")
        if loss != "groove":
            raise HvaeError(f"magenta.js decodes grooves as hits, velocities and offsets, not with the {loss!r} loss.")
        args = {"numSteps": steps, "stepsPerQuarter": options.steps_per_quarter, "humanize": options.humanize,
                "tapify": options.tapify, "splitInstruments": options.split_instruments}
        # the classes it reads and writes MIDI in: the converter's inference classes
        args["pitchClasses"] = [list(c) for c in converter.for_user_input().classes]
        return {"type": "GrooveConverter", "args": args}
    if name == "trio":
        if loss != "multi-categorical":
            raise HvaeError(f"magenta.js decodes trios with a categorical output per track, not the {loss!r} loss.")
        melody = converter.melody.options
        track = {"minPitch": melody.min_pitch, "maxPitch": melody.max_pitch,
                 "ignorePolyphony": not melody.skip_polyphony}
        return {"type": "TrioConverter", "args": {
            "numSteps": steps, "melArgs": dict(track), "bassArgs": dict(track),
            "drumsArgs": {"pitchClasses": [list(c) for c in converter.drums.classes]}}}
    if name == "multiperf":
        if loss != "categorical":
            raise HvaeError(f"magenta.js decodes performances with a categorical output, not the {loss!r} loss.")
        window_steps = options.steps_per_quarter * options.quarters_per_bar * options.hop_size_bars
        if options.hop_size_bars != options.chunk_size_bars or window_steps != 4 * options.steps_per_quarter:
            raise HvaeError("magenta.js's MultitrackConverter reads windows of one chunk whose steps are its time "
                            "shifts (4 quarters): this model's windows of "
                            f"{options.hop_size_bars} bars of {options.quarters_per_bar} quarters in chunks of "
                            f"{options.chunk_size_bars} cannot be exported.")
        return {"type": "MultitrackConverter",
                "args": {"numSteps": steps, "stepsPerQuarter": options.steps_per_quarter, "totalSteps": window_steps,
                         "numVelocityBins": options.num_velocity_bins, "minPitch": options.min_pitch,
                         "maxPitch": options.max_pitch}}
    raise HvaeError(f"magenta.js has no data converter for hvae's {name!r} converter.")


def export_magenta_js(path: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> ExportResult:
    """Write the model of the run or checkpoint ``path`` as a magenta.js checkpoint folder ``out``
    (which must not exist, or be empty): float32 shards of at most 4 MB. Nothing is left half-written.

    ``overwrite`` replaces an ``out`` that holds an earlier export (and only that): the new folder is
    written whole beside it, then swapped in. :class:`~hvae.errors.OutputExistsError` for an ``out``
    that may not be written."""
    out = Path(out)
    replacing = check_output_folder(out, kind="a magenta.js checkpoint folder", unlike=jsformat.unlike_js_folder,
                                    overwrite=overwrite, sources=[path])
    loaded = open_run(path)
    config = magenta_js_config(loaded.model, loaded.converter)
    variables = to_reference(loaded.model)
    with atomic_directory(out, replace=replacing) as building:
        written = jsformat.write_js_folder(building, variables, config)
    files = [out / p.name for p in written]
    return ExportResult(out=out, files=files, variables=len(variables),
                        bytes=sum(v.nbytes for v in variables.values()), config=config)
