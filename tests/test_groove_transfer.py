"""hvae groove-transfer: one file's hits played with another's feel, by a GrooVAE that takes its hits as
controls (the reference's groovae_2bar_hits_control), through the CLI and Python, on GMD files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hvae
from clihelp import invoke, one_line_error
from test_midi_out import assert_lasts, mido_tempo


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory) -> Path:
    """A small groovae_2bar_hits_control trained 150 steps on the demo subset."""
    root = tmp_path_factory.mktemp("transfer")
    result = invoke("train", "--preset", "groovae_2bar_hits_control", "-m", "decoder.rnn_sizes=64",
                    "-m", "encoder.rnn_sizes=64", "-m", "z_size=32", "-m", "dropout=0", "-m", "learning_rate=0.005",
                    "--steps", 150, "--batch-size", 32, "--threads", 1, "--no-progress", "--cache", root / "cache",
                    "--out", root / "run")
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture(scope="module")
def beats(gmd_dir) -> list[Path]:
    return sorted((gmd_dir / "drummer1" / "eval_session").glob("*_beat_4-4.mid"))[:3]


def hits_and_feel(path: Path) -> tuple[np.ndarray, np.ndarray]:
    converter = hvae.get_converter("groove", split_bars=2).for_user_input()
    outputs = converter.to_tensors(path)[0].outputs
    return outputs[:, :9] > 0.5, outputs[:, 9:]


def test_the_pattern_is_played_with_the_grooves_feel(transfer_run, beats, tmp_path):
    groove, pattern, other = beats
    result = invoke("groove-transfer", transfer_run, "--groove", groove, "--pattern", pattern, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    written = [Path(line) for line in result.stdout.splitlines()]
    assert [p.name for p in written] == [f"{pattern.stem}-w0_with_{groove.stem}-w0.mid",
                                         f"{pattern.stem}-w0_with_{groove.stem}-w0.png"]
    assert_lasts(written[0], 2, mido_tempo(pattern))
    wanted, _ = hits_and_feel(pattern)
    played, feel = hits_and_feel(written[0])
    assert (wanted & played).sum() >= 0.9 * wanted.sum() and (played & ~wanted).sum() <= 0.1 * wanted.sum()
    assert "of the pattern's" in result.stderr
    # Another groove, the same pattern: the same hits, another feel.
    again = hvae.groove_transfer_file(hvae.open_run(transfer_run), other, pattern, tmp_path)
    played_again, feel_again = hits_and_feel(again.midi[0])
    assert (wanted & played_again).sum() >= 0.9 * wanted.sum()
    assert not np.allclose(feel, feel_again)


def test_a_model_that_does_not_take_hits_as_controls_is_refused_with_the_way_to_one(beats):
    message = one_line_error(invoke("groove-transfer", "gmd-drums-4bar", "--groove", beats[0], "--pattern", beats[1]))
    assert "groove transfer needs a GrooVAE that takes the hits to play as controls" in message
    assert "groovae_2bar_hits_control" in message
