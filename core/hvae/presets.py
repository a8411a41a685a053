"""Named model + data + training settings, as plain data.

The reference's configurations keep their exact sizes; the report's four 4-bar runs and a small demo
follow. Converter options use the reference's names. Training ``steps`` are hvae's defaults: the
reference leaves the number of steps to a command-line flag.

    preset = get_preset("hier-drums-4bar")
    converter = make_converter(preset.converter, preset.converter_options)   # hvae.plugins
    model = build_model(preset.model, converter, force=preset.force)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from hvae.errors import UnknownComponentError
from hvae.model import ModelConfig


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str  # what users type
    description: str  # one line: what it is and where it comes from
    converter: str  # registered converter name
    converter_options: Mapping[str, Any]  # the converter's options, by the reference's names
    model: ModelConfig  # the model and its optimisation
    batch_size: int  # examples per training step
    steps: int  # training steps
    dataset: str  # the data it is meant for: "gmd" (Groove MIDI Dataset), "maestro" or "lakh" (Lakh MIDI)
    transpose_range: tuple[int, int] | None = None  # augmentation: random transposition in semitones
    force: bool = False  # the loss does not fit the converter: building needs force=True, on purpose
    origin: str = "reference"  # "reference" (Magenta's configs.py), "report" (the 4-bar study) or "hvae"


@dataclasses.dataclass(frozen=True)
class UnsupportedConfig:
    """A configuration of the reference that hvae cannot build, and why."""

    name: str
    reason: str


# The reference's 2-bar models (cat-drums_2bar_small, cat-mel_2bar_small): 2x256 decoder, 512 encoder.
_SMALL = dict(z_size=256, encoder_options={"rnn_sizes": (512,)}, decoder_options={"rnn_sizes": (256, 256)})
# Their big versions: z 512, a 2048-unit encoder and a 3x2048 decoder.
_BIG = dict(z_size=512, encoder_options={"rnn_sizes": (2048,)}, decoder_options={"rnn_sizes": (2048, 2048, 2048)})
# The report's 4-bar hierarchical runs: the small sizes, a conductor of 2x256, 4 bars of 16 steps.
_HIER_4BAR = dict(z_size=256, decoder="hierarchical", encoder_options={"rnn_sizes": (512,)},
                  decoder_options={"rnn_sizes": (256, 256), "level_lengths": (4, 16)})
# Drum models' KL settings (cat-drums_2bar_small) and scheduled sampling.
_DRUMS_KL = dict(free_bits=48.0, max_beta=0.2)
_MELODY_KL = dict(free_bits=0.0, max_beta=0.2, beta_rate=0.99999)
_INVERSE_SIGMOID = dict(sampling_schedule="inverse_sigmoid", sampling_rate=1000.0)
_DRUMS_2BAR = {"max_bars": 100, "slice_bars": 2, "steps_per_quarter": 4, "roll_input": True}
# The reference's nade-drums models: roll inputs and outputs, a NADE per step (hvae_losses.nade).
_DRUMS_2BAR_ROLLS = {**_DRUMS_2BAR, "roll_output": True}
_NADE_DRUMS = ModelConfig(z_size=256, encoder_options={"rnn_sizes": (1024,)}, decoder_options={"rnn_sizes": (512, 512)},
                          loss="nade", loss_options={"num_hidden": 128}, **_DRUMS_KL, **_INVERSE_SIGMOID)
_MELODY_2BAR = {"skip_polyphony": False, "max_bars": 100, "slice_bars": 2, "steps_per_quarter": 4}
_MELODY_16BAR = {"skip_polyphony": False, "max_bars": 100, "slice_bars": 16, "steps_per_quarter": 4}
_GROOVE_4BAR = {"split_bars": 4, "steps_per_quarter": 4, "quarters_per_bar": 4}
_GROOVE_2BAR = {"split_bars": 2, "steps_per_quarter": 4, "quarters_per_bar": 4}
# Trios: 16 bars of melody, bass and drums; the decoders' parts (melody 90, bass 90, drums 512 classes).
_TRIO_16BAR = {"slice_bars": 16, "gap_bars": 2, "steps_per_quarter": 4}
_TRIO_PARTS = (90, 90, 512)
_TRIO_HIERDEC = dict(z_size=512, decoder="hierarchical", loss="multi-categorical", free_bits=256.0, max_beta=0.2,
                     decoder_options={"rnn_sizes": (1024, 1024), "level_lengths": (16, 16),
                                      "split_depths": _TRIO_PARTS})
# The reference's multi-instrument performances (hier-multiperf_vel_1bar_*): one bar of up to 8 instruments,
# 64 events each at 24 steps per quarter; the encoder reads each instrument's events, then the 8 instruments;
# the decoder's conductor gives each instrument's segment. Med: a 1024-unit encoder, a 3x512 decoder.
_MULTIPERF_1BAR = {"num_velocity_bins": 8, "hop_size_bars": 1, "max_num_instruments": 8,
                   "max_events_per_instrument": 64, "steps_per_quarter": 24}


def _multiperf(name: str, description: str, encoder_size: int, decoder_size: int, chords: bool = False) -> Preset:
    return Preset(
        name=name, description=description, converter="multiperf",
        converter_options={**_MULTIPERF_1BAR, "chord_encoding": "triad"} if chords else _MULTIPERF_1BAR,
        model=ModelConfig(z_size=512, encoder="hierarchical", decoder="hierarchical", loss="categorical",
                          encoder_options={"rnn_sizes": (encoder_size,), "level_lengths": (64, 8),
                                           "padded_segments": True},
                          decoder_options={"rnn_sizes": (decoder_size,) * 3, "level_lengths": (8, 64)}),
        batch_size=256, steps=50_000, dataset="lakh", transpose_range=(-3, 3))


# GrooVAE's model (groovae_4bar and its 2-bar variants): the small sizes, dropout keep probability 0.3.
_GROOVAE = ModelConfig(z_size=256, decoder="groove", loss="groove", encoder_options={"rnn_sizes": (512,)},
                       decoder_options={"rnn_sizes": (256, 256)}, dropout=0.7, **_DRUMS_KL)


def _groovae_2bar(name: str, description: str, **options: Any) -> Preset:
    return Preset(name=name, description=description, converter="groove",
                  converter_options={**_GROOVE_2BAR, **options}, model=_GROOVAE, batch_size=512, steps=50_000,
                  dataset="gmd")


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset(
        name="cat-drums_2bar_small",
        description=("The reference's 2-bar drum model (checkpoints cat-drums_2bar_small.lokl/.hikl): one-hot "
                     "over 512 drum combinations, roll inputs."),
        converter="drums",
        converter_options=_DRUMS_2BAR,
        model=ModelConfig(**_SMALL, **_DRUMS_KL, **_INVERSE_SIGMOID),
        batch_size=512, steps=50_000, dataset="gmd"),
    Preset(
        name="cat-drums_2bar_big",
        description="The reference's big 2-bar drum model: z 512, a 2048-unit encoder, a 3x2048 decoder.",
        converter="drums",
        converter_options=_DRUMS_2BAR,
        model=ModelConfig(**_BIG, **_DRUMS_KL, **_INVERSE_SIGMOID),
        batch_size=512, steps=50_000, dataset="gmd"),
    Preset(
        name="nade-drums_2bar_reduced",
        description=("The reference's 2-bar multi-label drum model: rolls of 9 drums, each step's drums drawn "
                     "by a NADE of 128 hidden units on a 2x512 decoder; a 1024-unit encoder."),
        converter="drums",
        converter_options=_DRUMS_2BAR_ROLLS,
        model=_NADE_DRUMS,
        batch_size=512, steps=50_000, dataset="gmd"),
    Preset(
        name="nade-drums_2bar_full",
        description="nade-drums_2bar_reduced on the reference's full drum classes: rolls of 61 drums.",
        converter="drums",
        converter_options={**_DRUMS_2BAR_ROLLS, "pitch_classes": "full"},
        model=_NADE_DRUMS,
        batch_size=512, steps=50_000, dataset="gmd"),
    Preset(
        name="cat-mel_2bar_small",
        description="The reference's 2-bar melody model: 90 melody events, programs 0-31.",
        converter="melody",
        converter_options=_MELODY_2BAR,
        model=ModelConfig(**_SMALL, **_MELODY_KL, **_INVERSE_SIGMOID),
        batch_size=512, steps=50_000, dataset="maestro", transpose_range=(-5, 5)),
    Preset(
        name="cat-mel_2bar_big",
        description="The reference's big 2-bar melody model (checkpoint cat-mel_2bar_big): z 512, 2048/3x2048.",
        converter="melody",
        converter_options=_MELODY_2BAR,
        model=ModelConfig(**_BIG, free_bits=0.0, max_beta=0.5, beta_rate=0.99999, **_INVERSE_SIGMOID),
        batch_size=512, steps=50_000, dataset="maestro", transpose_range=(-5, 5)),
    Preset(
        name="cat-mel_2bar_med_chords",
        description=("The reference's chord-conditioned 2-bar melody model (magenta.js mel_chords): melodies of "
                     "any program over the chord of each step (49 triad classes, inferred from the notes)."),
        converter="melody",
        converter_options={**_MELODY_2BAR, "valid_programs": None, "chord_encoding": "triad"},
        model=ModelConfig(z_size=256, encoder_options={"rnn_sizes": (1024,)},
                          decoder_options={"rnn_sizes": (512, 512, 512)}),
        batch_size=512, steps=50_000, dataset="maestro", transpose_range=(-3, 3)),
    Preset(
        name="flat-mel_16bar",
        description="The reference's flat 16-bar melody model: a 2x2048 encoder and a 3x2048 decoder.",
        converter="melody",
        converter_options=_MELODY_16BAR,
        model=ModelConfig(z_size=512, encoder_options={"rnn_sizes": (2048, 2048)},
                          decoder_options={"rnn_sizes": (2048, 2048, 2048)}, free_bits=256.0, max_beta=0.2),
        batch_size=512, steps=50_000, dataset="maestro"),
    Preset(
        name="hierdec-mel_16bar",
        description="The reference's 16-bar melody model: conductor and decoder of 2x1024, 16 bars of 16 steps.",
        converter="melody",
        converter_options=_MELODY_16BAR,
        model=ModelConfig(z_size=512, decoder="hierarchical", encoder_options={"rnn_sizes": (2048, 2048)},
                          decoder_options={"rnn_sizes": (1024, 1024), "level_lengths": (16, 16)},
                          free_bits=256.0, max_beta=0.2),
        batch_size=512, steps=50_000, dataset="maestro"),
    Preset(
        name="hier-mel_16bar",
        description=("The reference's 16-bar melody model with a hierarchical encoder (bars of 16 steps, then "
                     "the 16 bars), 1024 units per level; conductor and decoder of 2x1024."),
        converter="melody",
        converter_options=_MELODY_16BAR,
        model=ModelConfig(z_size=512, encoder="hierarchical", decoder="hierarchical",
                          encoder_options={"rnn_sizes": (1024,), "level_lengths": (16, 16)},
                          decoder_options={"rnn_sizes": (1024, 1024), "level_lengths": (16, 16)},
                          free_bits=256.0, max_beta=0.2),
        batch_size=512, steps=50_000, dataset="maestro"),
    Preset(
        name="flat-trio_16bar",
        description=("The reference's flat 16-bar trio model (melody, bass, drums side by side): a 2x2048 "
                     "encoder and a 3x2048 decoder, a softmax cross-entropy per part."),
        converter="trio",
        converter_options=_TRIO_16BAR,
        model=ModelConfig(z_size=512, loss="multi-categorical", encoder_options={"rnn_sizes": (2048, 2048)},
                          decoder_options={"rnn_sizes": (2048, 2048, 2048)}),
        batch_size=256, steps=50_000, dataset="lakh"),
    Preset(
        name="hierdec-trio_16bar",
        description=("The reference's 16-bar trio model: a 2x2048 encoder, a 2x1024 conductor and one 2x1024 "
                     "decoder per part (melody, bass, drums), 16 bars of 16 steps."),
        converter="trio",
        converter_options=_TRIO_16BAR,
        model=ModelConfig(**_TRIO_HIERDEC, encoder_options={"rnn_sizes": (2048, 2048)}),
        batch_size=256, steps=50_000, dataset="lakh"),
    Preset(
        name="hier-trio_16bar",
        description=("The reference's 16-bar trio model with a hierarchical encoder (bars of 16 steps, then the "
                     "16 bars), 1024 units per level; a 2x1024 conductor and one 2x1024 decoder per part."),
        converter="trio",
        converter_options=_TRIO_16BAR,
        model=ModelConfig(**_TRIO_HIERDEC, encoder="hierarchical",
                          encoder_options={"rnn_sizes": (1024,), "level_lengths": (16, 16)}),
        batch_size=256, steps=50_000, dataset="lakh"),
    Preset(
        name="groovae_4bar",
        description=("The reference's GrooVAE (the report's GrooVAE run): hits, velocities and offsets of "
                     "9 drums over 4 bars."),
        converter="groove",
        converter_options=_GROOVE_4BAR,
        model=_GROOVAE,
        batch_size=512, steps=50_000, dataset="gmd"),
    _groovae_2bar("groovae_2bar_humanize",
                  "The reference's 2-bar GrooVAE that humanizes a quantised, constant-velocity drum part.",
                  humanize=True),
    _groovae_2bar("groovae_2bar_tap_fixed_velocity",
                  "The reference's 2-bar GrooVAE that turns a constant-velocity one-drum tap pattern into a groove.",
                  tapify=True, fixed_velocities=True),
    _groovae_2bar("groovae_2bar_tap_fixed_velocity_note_dropout",
                  "groovae_2bar_tap_fixed_velocity trained with input notes dropped (up to 80 %).",
                  tapify=True, fixed_velocities=True, max_note_dropout_probability=0.8),
    _groovae_2bar("groovae_2bar_add_closed_hh",
                  "The reference's 2-bar GrooVAE that adds (or replaces) the closed hi-hat of a groove.",
                  add_instruments=(2,)),
    _groovae_2bar("groovae_2bar_hits_control",
                  ("The reference's 2-bar GrooVAE with the input hits given to the decoder as controls "
                   "(configs.py: groovae_2bar_hits_control_tfds)."),
                  hits_as_controls=True),
    _multiperf("hier-multiperf_vel_1bar_med",
               ("The reference's multi-instrument model: one bar of up to 8 instruments' performances with 8 "
                "velocity bins; hierarchical encoder of 1024, conductor and decoder of 3x512."), 1024, 512),
    _multiperf("hier-multiperf_vel_1bar_big",
               ("hier-multiperf_vel_1bar_med with a 2048-unit encoder and a conductor and decoder of 3x1024."),
               2048, 1024),
    _multiperf("hier-multiperf_vel_1bar_med_chords",
               ("hier-multiperf_vel_1bar_med conditioned on chords (magenta.js multitrack_chords): the chord at "
                "each event (49 triad classes, inferred from the notes)."), 1024, 512, chords=True),
    _multiperf("hier-multiperf_vel_1bar_big_chords",
               "hier-multiperf_vel_1bar_big conditioned on chords, as hier-multiperf_vel_1bar_med_chords.",
               2048, 1024, chords=True),
    Preset(
        name="hier-groove-4bar",
        description=("The report's failing run: hierarchical decoder and softmax cross-entropy on groove "
                     "tensors (needs force)."),
        converter="groove",
        converter_options=_GROOVE_4BAR,
        model=ModelConfig(**_HIER_4BAR, loss="categorical", **_DRUMS_KL),
        batch_size=512, steps=50_000, dataset="gmd", force=True, origin="report"),
    Preset(
        name="hier-drums-4bar",
        description="The report's best run: hierarchical decoder on 4-bar one-hot drums, categorical loss.",
        converter="drums",
        converter_options={**_DRUMS_2BAR, "slice_bars": 4},
        model=ModelConfig(**_HIER_4BAR, loss="categorical", **_DRUMS_KL, **_INVERSE_SIGMOID),
        batch_size=512, steps=50_000, dataset="gmd", origin="report"),
    Preset(
        name="hier-mel-4bar",
        description="The report's melody run: hierarchical decoder on 4-bar MAESTRO melodies.",
        converter="melody",
        converter_options={**_MELODY_2BAR, "slice_bars": 4},
        model=ModelConfig(**_HIER_4BAR, loss="categorical", **_MELODY_KL, **_INVERSE_SIGMOID),
        batch_size=512, steps=50_000, dataset="maestro", transpose_range=(-5, 5), origin="report"),
    Preset(
        name="demo",
        description=("A small 4-bar hierarchical drum model that learns from the bundled 64-file GMD subset "
                     "in 2-3 minutes on 2 CPU cores."),
        converter="drums",
        converter_options={**_DRUMS_2BAR, "slice_bars": 4},
        # A higher, faster-decaying learning rate than the reference's: 800 steps must suffice. 8 free bits,
        # not the reference's 48: with more the posteriors sit far from the prior (the KL below the free
        # bits has no gradient) and many prior samples were noise or near silence: with 48, half of them;
        # with 16, 50-99.5 % plausible from one seed to the next, with 8, 85-99.5 % (the figures: README,
        # "Plausible samples from the demo").
        model=ModelConfig(z_size=64, decoder="hierarchical", loss="categorical",
                          encoder_options={"rnn_sizes": (128,)},
                          decoder_options={"rnn_sizes": (128,), "level_lengths": (4, 16)},
                          free_bits=8.0, max_beta=0.2, learning_rate=4e-3, decay_rate=0.9985),
        batch_size=64, steps=800, dataset="gmd", origin="hvae"),
]}

# The reference's configurations (configs.py) whose components hvae does not have.
UNSUPPORTED: dict[str, UnsupportedConfig] = {}  # none: hvae has every one of the 23


def list_presets() -> list[str]:
    """Preset names, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; :class:`hvae.errors.UnknownComponentError` lists them otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        pass
    if name in UNSUPPORTED:
        raise UnknownComponentError(f"The reference's {name} is not supported: {UNSUPPORTED[name].reason}.")
    raise UnknownComponentError(f"Unknown preset {name!r}. Presets: {', '.join(list_presets())}.")
