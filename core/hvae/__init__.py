"""hvae: MusicVAE-family models in PyTorch.

Public API::

    import hvae
    conv = hvae.get_converter("drums", slice_bars=4)
    examples = conv.to_tensors("beat.mid")          # list of hvae.Example
    midi = conv.from_tensors(examples[0].outputs)   # miditoolkit.MidiFile
    hvae.write_midi(midi, "again.mid")              # the file the CLI writes: whole bars, named tracks

    run = hvae.open_run("gmd-drums-4bar")          # a model in the box, with its attribute vectors
    vectors = hvae.AttributeVectors.load(run.dir.attributes_file)
    hvae.transform_file(run, vectors, "beat.mid", [{"density": 1.0}], "out/")   # denser

    hvae.import_checkpoint("cat-drums_2bar_small.lokl.tar", "cat-drums_2bar_small", "runs/lokl")
    run = hvae.open_run("runs/lokl")                # .model (MusicVAE, eval mode), .converter, .config, .step
    drums = run.model.sample(4, temperature=0.5)    # (4, 32, 512) one-hot steps
    # a chord-conditioned model (cat-mel_2bar_med_chords) takes a progression as controls, (32, 49) one-hot:
    #   run.model.sample(4, controls=torch.from_numpy(run.converter.chord_controls("C G Am F")))
    #   hvae.interpolate_files(run, "a.mid", "b.mid", "out/", chords="C G Am F")

    run = hvae.open_run("gmd-drumify-2bar")         # latent space on MIDI files (hvae.latent), as the CLI:
    hvae.drumify_file(run, "bass.mid", "out/")     # also reconstruct_file, humanize_file (whole=True: any
    #                                               length), interpolate_files, grid_files, mean_file, similar_file

    with hvae.Session(hvae.TrainRequest(preset="demo", train={"steps": 200})) as session:   # as hvae train
        result = session.train()                    # also TrainRequest(resume="runs/...", train={"steps": 400})

``hvae.load_model`` is the earlier name of ``hvae.open_run``, kept.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hvae.errors import (CheckpointError, ConversionError, HvaeError, IncompatibleError, InvalidArgument,
                         MidiReadError, PluginError, UnknownComponentError)

if TYPE_CHECKING:
    from hvae.interfaces import Converter, Decoder, Encoder, Example, Loss
    from hvae.rundir import load_model, open_run
    from hvae.session import Session, TrainRequest
    from hvae.magenta.exporting import export_magenta_js
    from hvae.magenta.importing import import_checkpoint
    from hvae.midifile import write_midi
    from hvae.music import NoteSequence, quantize, read_midi

__version__ = "0.1.0"

LATENT = ("reconstruct_file", "interpolate_files", "grid_files", "mean_file", "similar_file", "humanize_file",
          "drumify_file", "groove_transfer_file")  # the latent-space commands' functions (hvae.latent)
# Loaded on first use (PEP 562): importing hvae, as `hvae --help` does, does not load torch.
_LAZY = {"Converter": "hvae.interfaces", "Decoder": "hvae.interfaces", "Encoder": "hvae.interfaces",
         "Example": "hvae.interfaces", "Loss": "hvae.interfaces", "NoteSequence": "hvae.music",
         "quantize": "hvae.music", "read_midi": "hvae.music", "load_model": "hvae.rundir", "open_run": "hvae.rundir",
         "Session": "hvae.session", "TrainRequest": "hvae.session",
         "import_checkpoint": "hvae.magenta.importing", "export_magenta_js": "hvae.magenta.exporting",
         "write_midi": "hvae.midifile", "AttributeVectors": "hvae.attributes",
         "attribute_vectors": "hvae.attributes", "measure_attributes": "hvae.attributes",
         "transform_file": "hvae.attributes", **{name: "hvae.latent" for name in LATENT}}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hvae' has no attribute {name!r}")


def get_converter(name: str, **options: Any) -> Converter:
    """A converter by registered name, with options by the reference's names (see
    :func:`hvae.plugins.make_converter`)."""
    from hvae.plugins import make_converter

    return make_converter(name, options)


def list_components(kind: str) -> list[str]:
    """Registered names of one kind: converters, encoders, decoders or losses."""
    from hvae.plugins import registry

    return registry().names(kind)


__all__ = [
    "AttributeVectors", "attribute_vectors", "measure_attributes", "transform_file", "CheckpointError", "ConversionError", "Converter", "Decoder", "Encoder", "Example", "HvaeError",
    "IncompatibleError", "InvalidArgument", "Loss", "MidiReadError", "NoteSequence", "PluginError", "UnknownComponentError",
    "export_magenta_js", "get_converter", "import_checkpoint", "list_components", "load_model", "open_run",
    "quantize", "read_midi", "write_midi", *LATENT,
]
