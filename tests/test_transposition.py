"""Training augmentation by transposition (the reference's ``transpose_range`` for its melody models).

Spec: with ``transpose_range`` each training window is moved by a random number of semitones drawn
from (seed, step) only, so a stopped and resumed run transposes as a straight one does; the melody
presets that the reference augments do so by default and say so; ``--transpose`` sets or turns it
off; a converter that cannot transpose is refused before any work.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import badmidi
from clihelp import invoke, one_line_error
from hvae.checkpoint import read_checkpoint
from hvae.data import load_split
from hvae.errors import HvaeError
from hvae.presets import get_preset
from hvae.plugins import make_converter
from hvae.rundir import RunConfig, TrainConfig
from hvae.training import make_batch, transpositions
from sessions import new_session, train_new, train_on

TINY = ["-m", "z_size=8", "-m", "encoder.rnn_sizes=16", "-m", "decoder.rnn_sizes=16",
        "-m", "decoder.conductor_sizes=16", "--batch-size", "4", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def piano(tmp_path_factory) -> Path:
    """Eight 8-bar piano tunes (C major scale, a quarter each): some fall in every split."""
    folder = tmp_path_factory.mktemp("piano")
    for k in range(8):
        badmidi._only_piano(folder / f"tune-{k}.mid")
    return folder


def melody_run(piano: Path, cache: Path, **train) -> RunConfig:
    preset = get_preset("hier-mel-4bar")
    model = dataclasses.replace(preset.model, z_size=8, encoder_options={"rnn_sizes": (16,)},
                                decoder_options={**preset.model.decoder_options, "rnn_sizes": (16,),
                                                 "conductor_sizes": (16,)})
    settings = dict(batch_size=4, steps=4, log_every=1, eval_every=0, checkpoint_every=2, threads=1,
                    transpose_range=(-5, 5))
    return RunConfig(name="tiny-mel", converter=preset.converter, converter_options=dict(preset.converter_options),
                     model=model, train=TrainConfig(**{**settings, **train}), data_dir=str(piano),
                     cache_dir=str(cache))


def test_the_semitones_are_a_function_of_seed_and_step_within_the_range():
    first = transpositions(0, 7, 512, (-5, 5))
    assert np.array_equal(first, transpositions(0, 7, 512, (-5, 5)))
    assert first.min() == -5 and first.max() == 5
    assert not np.array_equal(first, transpositions(0, 8, 512, (-5, 5)))
    assert not np.array_equal(first, transpositions(1, 7, 512, (-5, 5)))


def test_a_training_batch_is_moved_by_its_semitones(piano, tmp_path):
    with new_session(tmp_path / "run", melody_run(piano, tmp_path / "cache")) as session:
        session.train()
        converter = session.trainer.converter
    windows = load_split(tmp_path / "cache", "train")
    rows = np.arange(min(4, len(windows)))
    semitones = np.array([3, -2, 0, 5])[: len(rows)]
    plain = make_batch(windows, rows, torch.device("cpu"))
    moved = make_batch(windows, rows, torch.device("cpu"), converter, semitones)
    for before, after, shift in zip(plain.outputs, moved.outputs, semitones):
        pitched = before.argmax(-1) >= 2
        assert torch.equal(after.argmax(-1)[pitched], before.argmax(-1)[pitched] + int(shift))
        assert torch.equal(after.argmax(-1)[~pitched], before.argmax(-1)[~pitched])
    assert torch.equal(moved.inputs, moved.outputs)


def test_a_transposing_run_stopped_and_resumed_ends_as_a_straight_one(piano, tmp_path):
    train_new(tmp_path / "straight", melody_run(piano, tmp_path / "cache"))
    train_new(tmp_path / "stopped", melody_run(piano, tmp_path / "cache", steps=2))
    train_on(tmp_path / "stopped", steps=4)
    a, b = read_checkpoint(tmp_path / "straight"), read_checkpoint(tmp_path / "stopped")
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    untransposed = tmp_path / "untransposed"
    train_new(untransposed, melody_run(piano, tmp_path / "cache", transpose_range=None))
    c = read_checkpoint(untransposed)
    assert not all(torch.equal(a.model[k], c.model[k]) for k in a.model)  # the augmentation changed training


def test_a_converter_that_cannot_transpose_is_refused_before_any_work(piano, tmp_path):
    config = melody_run(piano, tmp_path / "cache")
    config = dataclasses.replace(config, converter="drums", converter_options={})
    with pytest.raises(HvaeError, match="Converter 'drums' cannot transpose its windows"):
        train_new(tmp_path / "run", config)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    assert not make_converter(config.converter, config.converter_options).transposable


def test_the_melody_preset_transposes_by_default_and_says_so(piano, tmp_path):
    result = invoke("train", "--preset", "hier-mel-4bar", *TINY, "--steps", 1, "--data", piano,
                    "--cache", tmp_path / "cache", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "Augment: each training window transposed by -5 to +5 semitones at random" in result.stdout
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["transpose_range"] == [-5, 5]
    assert read_checkpoint(tmp_path / "run").meta["run"]["train"]["transpose_range"] == [-5, 5]
    resumed = invoke("train", "--resume", tmp_path / "run", "--steps", 2, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert "Augment: each training window transposed by -5 to +5 semitones" in resumed.stdout


@pytest.mark.parametrize("given, expected", [("0", None), ("3", [-3, 3]), ("-2,7", [-2, 7])])
def test_transpose_sets_or_turns_off_the_augmentation(piano, tmp_path, given, expected):
    result = invoke("train", "--preset", "hier-mel-4bar", *TINY, "--steps", 1, f"--transpose={given}",
                    "--data", piano, "--cache", tmp_path / "cache", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["transpose_range"] == expected
    assert ("Augment:" in result.stdout) == (expected is not None)


def test_transposing_drums_or_a_bad_range_is_a_one_line_error(tmp_path):
    message = one_line_error(invoke("train", "--preset", "demo", *TINY, "--transpose", "3", "--steps", 1,
                                    "--cache", tmp_path / "cache", "--out", tmp_path / "run"))
    assert message.startswith("Error: Converter 'drums' cannot transpose its windows")
    bad = invoke("train", "--preset", "demo", "--transpose", "5,-5", "--out", tmp_path / "run2")
    assert bad.exit_code == 2 and "give LOW,HIGH in semitones" in bad.output


def test_another_converter_on_a_melody_preset_drops_its_transposition(tmp_path):
    result = invoke("train", "--preset", "hier-mel-4bar", "--converter", "drums", "-o", "slice_bars=4", *TINY,
                    "--steps", 1, "--data", badmidi.DEMO_DIR, "--cache", tmp_path / "cache", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["transpose_range"] is None
