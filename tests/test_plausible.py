"""``hvae sample`` and ``hvae run`` hold a drum model's samples to a plausible hit density.

Spec: a sample whose drum hits per bar lie outside the 5th to 95th percentile of the run's training
windows is drawn again (up to 10 times), and the command says how many it drew again and how many are
still outside; ``--no-redraw`` keeps the first draws and says nothing; a melody model is not checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

import hvae
from hvae.data import load_split
from hvae.music import read_midi
from hvae.plausible import density_range
from clihelp import invoke

NOTE = re.compile(r"Drew (\d+) of the (\d+) samples again: their drum hits per bar lay outside the training data's "
                  r"5th to 95th percentile, ([\d.]+) to ([\d.]+) \(noise or next to silence\); "
                  r"(?:(\d+) still outside after 10 redraws kept|all are within it now)\. "
                  r"--no-redraw keeps the first draws\.")


def training_range(run: Path):
    config = json.loads((run / "config.json").read_text())
    converter = hvae.get_converter(config["converter"], **config["converter_options"])
    return density_range(converter, np.asarray(load_split(config["cache_dir"], "train").outputs))


def written(result) -> list[Path]:
    assert result.exit_code == 0, result.output
    return [Path(line) for line in result.stdout.splitlines()]


def densities(paths: list[Path]) -> np.ndarray:
    return np.array([len(read_midi(path).notes) / 4 for path in paths])


def test_samples_outside_the_training_datas_density_are_drawn_again_and_the_command_says_so(trained_drums, tmp_path):
    first = written(invoke("sample", trained_drums, "-n", 8, "--seed", 0, "--no-redraw", "--out", tmp_path / "a"))
    plausible = training_range(trained_drums)
    outside = ~plausible.holds(densities(first))
    assert outside.any()  # a 40-step model draws noise now and then
    result = invoke("sample", trained_drums, "-n", 8, "--seed", 0, "--out", tmp_path / "b")
    found = NOTE.fullmatch(result.stderr.strip())
    assert found, result.stderr
    assert (int(found[1]), int(found[2])) == (outside.sum(), 8)
    assert (float(found[3]), float(found[4])) == (round(plausible.low, 1), round(plausible.high, 1))
    again = written(result)
    assert int((~plausible.holds(densities(again))).sum()) == int(found[5] or 0) <= outside.sum()
    for was_outside, before, after in zip(outside, first, again):  # only the implausible ones were drawn again
        assert (before.read_bytes() != after.read_bytes()) == was_outside


def test_no_redraw_keeps_the_first_draws_and_says_nothing(trained_drums, tmp_path):
    result = invoke("sample", trained_drums, "-n", 3, "--seed", 0, "--no-redraw", "--out", tmp_path)
    assert len(written(result)) == 3 and result.stderr == ""


def test_a_melody_models_samples_are_not_checked(trained_melody, tmp_path):
    result = invoke("sample", trained_melody, "-n", 3, "--seed", 0, "--out", tmp_path)
    assert result.exit_code == 0 and result.stderr == ""
