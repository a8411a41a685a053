"""Trios through the command line: each trio preset trains and samples with ``hvae run`` on the real trio files
of ``tests/data/trio`` (tiny sizes given with -m), and ``hvae evaluate`` reports each track's accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import miditoolkit
import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke
from hvae.model import step_mask

torch.set_num_threads(1)

TRIOS = Path(__file__).parent / "data" / "trio"
# Each preset at tiny sizes (its architecture kept: layers, levels, the split decoder).
TINY = {
    "flat-trio_16bar": ["encoder.rnn_sizes=8,8", "decoder.rnn_sizes=8,8,8"],
    "hierdec-trio_16bar": ["encoder.rnn_sizes=8,8", "decoder.rnn_sizes=8,8"],
    "hier-trio_16bar": ["encoder.rnn_sizes=8", "decoder.rnn_sizes=8,8"],
}


def run(preset: str, out: Path, cache: Path):
    options = [arg for size in TINY[preset] + ["z_size=8", "learning_rate=0.01"] for arg in ("-m", size)]
    return invoke("run", "--preset", preset, "--data", TRIOS, *options, "--steps", "20", "--batch-size", "8",
                  "--threads", "1", "--no-progress", "--cache", cache, "--out", out, "-n", "2")


@pytest.fixture(scope="module")
def flat_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trio")
    result = run("flat-trio_16bar", folder / "run", folder / "cache")
    assert result.exit_code == 0, result.output
    return folder / "run"


def sampled_tracks(output: str) -> list[list[tuple[str, int, bool, int]]]:
    paths = [Path(line.strip()) for line in output.splitlines() if line.strip().endswith(".mid")]
    return [[(i.name, int(i.program), i.is_drum, len(i.notes)) for i in miditoolkit.MidiFile(str(p)).instruments]
            for p in paths]


def assert_samples_are_trios(output: str) -> None:
    """Two sampled files, each with the three named tracks: melody, bass (program 33) and drums."""
    files = sampled_tracks(output)
    assert len(files) == 2
    for tracks in files:
        assert [(name, program, drum) for name, program, drum, _ in tracks] == [
            ("melody", 0, False), ("bass", 33, False), ("drums", 0, True)]


@pytest.mark.parametrize("preset", ["hierdec-trio_16bar", "hier-trio_16bar"])
def test_each_hierarchical_trio_preset_trains_20_steps_and_samples_trios(preset, tmp_path):
    result = run(preset, tmp_path / "run", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert "155 training" in result.output and "multi-categorical loss" in result.output
    assert_samples_are_trios(result.output)
    config = hvae.load_model(tmp_path / "run").model.config
    assert config.decoder_options["split_depths"] == (90, 90, 512)


def test_the_flat_trio_preset_trains_20_steps_and_samples_trios(flat_run):
    samples = sorted((flat_run / "samples").glob("*.mid"))
    assert len(samples) == 2
    assert_samples_are_trios("\n".join(str(p) for p in samples))


def test_evaluate_prints_each_tracks_accuracy_and_their_mean(flat_run):
    result = invoke("evaluate", flat_run, "--split", "train", "--samples", "0", "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["teacher_forced"]
    parts = [found[f"accuracy/{name}"] for name in ("melody", "bass", "drums")]
    assert found["accuracy"] == pytest.approx(np.mean(parts))
    # each track's teacher-forced accuracy as the model itself gives it on those windows
    loaded = hvae.open_run(flat_run)
    windows, _ = loaded.windows("train", progress=False)
    tensors, model = windows.as_tensors(), loaded.model.eval()
    with torch.no_grad():
        lengths = tensors["lengths"].long()
        mu, _ = model.encode(tensors["inputs"], lengths)
        raw = model.decoder(mu, tensors["outputs"], lengths, loss=model.loss)
        _, metrics = model.loss(raw, tensors["outputs"], step_mask(lengths, raw.shape[1]))
    for name, value in zip(("melody", "bass", "drums"), parts):
        assert value == pytest.approx(metrics[f"accuracy/{name}"].item(), abs=1e-6)
    assert len(set(np.round(parts, 6))) == 3  # three figures, not one repeated
    table = invoke("evaluate", flat_run, "--split", "train", "--samples", "0", "--no-progress")
    assert table.exit_code == 0, table.output
    rows = {line.strip().split("  ")[0]: line.split()[-2:] for line in table.output.splitlines()}
    for name, value in zip(("melody", "bass", "drums"), parts):
        assert rows[f"{name} accuracy"][0] == f"{value:.4g}"
