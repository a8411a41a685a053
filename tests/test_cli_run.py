"""``hvae run``, ``hvae sample`` and ``hvae train`` used the way a user runs them.

Spec: ``hvae run`` prepares the demo data, trains and writes MIDI that reads back with notes;
``hvae sample`` writes the reference's file names; a converter and loss that do not fit are refused
in one line before any work, and ``--force`` trains them; Ctrl-C leaves a checkpoint to resume from.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import miditoolkit
import pytest
import torch
from click.testing import CliRunner

from hvae.checkpoint import list_checkpoints, read_checkpoint
from hvae.cli import main

HVAE = str(Path(sys.executable).parent / "hvae")
# The demo preset shrunk to 32-unit LSTMs on one thread (the fastest for them): runs of seconds.
TINY = ["-m", "z_size=16", "-m", "encoder.rnn_sizes=32", "-m", "decoder.rnn_sizes=32", "--batch-size", "32",
        "--threads", "1", "--no-progress"]
SAMPLE_NAME = re.compile(r"^(?P<name>.+)_sample_\d{4}-\d\d-\d\d_\d{6}-(?P<i>\d{3})-of-(?P<n>\d{3})\.mid$")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, cache):
    """``hvae run --steps 30 --preset demo`` on the bundled demo subset, with tiny layer sizes."""
    out = tmp_path_factory.mktemp("runs") / "demo"
    result = invoke("run", "--steps", "30", "--preset", "demo", "-o", "max_bars=100", *TINY,
                    "--cache", str(cache / "drums"), "--out", str(out), "-n", "3", "--temperature", "1.0")
    return out, result


def test_run_trains_on_the_demo_subset_and_writes_midi_with_notes(demo_run):
    out, result = demo_run
    assert result.exit_code == 0, result.output
    paths = [Path(line.strip()) for line in result.output.splitlines() if line.strip().endswith(".mid")]
    assert len(paths) == 3
    for path in paths:
        assert path.parent == out / "samples"
        midi = miditoolkit.MidiFile(str(path))
        notes = [n for instrument in midi.instruments for n in instrument.notes]
        assert notes and all(instrument.is_drum for instrument in midi.instruments)
        assert midi.tempo_changes[0].tempo == pytest.approx(120.0)
    config = json.loads((out / "config.json").read_text())
    assert (config["name"], config["preset"], config["train"]["steps"]) == ("demo", "demo", 30)
    assert config["model"]["decoder_options"]["rnn_sizes"] == [32]  # the command line overrode the preset
    assert config["converter_options"]["slice_bars"] == 4  # the preset's, kept
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert (lines[-1]["split"], lines[-1]["step"]) == ("validation", 30)
    assert read_checkpoint(out).step == 30


def test_sample_writes_the_reference_file_names_and_prints_them(demo_run, tmp_path):
    out, _ = demo_run
    result = invoke("sample", str(out), "-n", "2", "--temperature", "0.5", "--seed", "3", "--out",
                    str(tmp_path / "a"), "--qpm", "90")
    assert result.exit_code == 0, result.output
    printed = [Path(line) for line in result.stdout.split()]
    assert sorted(printed) == sorted((tmp_path / "a").iterdir())
    assert [SAMPLE_NAME.match(p.name).group("name", "i", "n") for p in sorted(printed)] == [
        ("demo", "000", "002"), ("demo", "001", "002")]
    assert miditoolkit.MidiFile(str(printed[0])).tempo_changes[0].tempo == pytest.approx(90.0)
    again = invoke("sample", str(out), "-n", "2", "--seed", "3", "--out", str(tmp_path / "b"), "--qpm", "90")
    assert [p.read_bytes() for p in sorted(printed)] == [p.read_bytes() for p in sorted((tmp_path / "b").iterdir())]
    assert again.exit_code == 0


def test_sample_in_mixed_precision_decodes_in_bfloat16_and_writes_drums(demo_run, tmp_path, monkeypatch):
    out, _ = demo_run
    import hvae.model

    seen = []
    decode = hvae.model.MusicVAE.decode
    monkeypatch.setattr(hvae.model.MusicVAE, "decode", lambda self, *args, **kwargs: (
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None),
        decode(self, *args, **kwargs))[1])
    result = invoke("sample", str(out), "-n", "3", "--seed", "3", "--amp", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {torch.bfloat16}  # every draw (and any redraw) in bfloat16
    for path in sorted(tmp_path.iterdir()):
        midi = miditoolkit.MidiFile(str(path))
        assert all(instrument.is_drum for instrument in midi.instruments)
        assert all(0 < n.velocity < 128 for i in midi.instruments for n in i.notes)


def test_an_incompatible_combination_is_refused_in_one_line_before_any_work(tmp_path):
    result = CliRunner().invoke(main, ["run", "--converter", "groove", "--decoder", "hierarchical", "--loss",
                                       "categorical", "--cache", str(tmp_path / "cache"), "--out",
                                       str(tmp_path / "run"), *TINY])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: Loss 'categorical' does not fit converter 'groove'")
    assert "--force" in lines[0]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_force_trains_the_incompatible_combination(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--converter", "groove", "--decoder", "hierarchical", "--loss", "categorical", "--force",
                    "--steps", "3", "--cache", str(tmp_path / "cache"), "--out", str(out), "-n", "1", *TINY)
    assert result.exit_code == 0, result.output
    assert "FORCED" in result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["force"], config["converter"], config["model"]["loss"]) == (True, "groove", "categorical")
    assert config["name"] == "groove-hierarchical-categorical"
    assert len(list((out / "samples").glob("groove-hierarchical-categorical_sample_*-000-of-001.mid"))) == 1


def test_resume_takes_no_options_that_would_change_the_run(demo_run):
    out, _ = demo_run
    result = CliRunner().invoke(main, ["train", "--resume", str(out), "--batch-size", "8"])
    assert result.exit_code == 2
    assert "--batch-size cannot be given with it" in result.output


def test_ctrl_c_writes_a_checkpoint_and_resume_continues_from_it(demo_run, cache, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([HVAE, "train", *TINY, "--steps", "100000", "--log-every", "1",
                                "--checkpoint-every", "100000", "--cache", str(cache / "drums"), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 3):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    stopped = read_checkpoint(out).step
    assert f"Stopped by SIGINT at step {stopped}; continue with: hvae train --resume {out}" in stderr
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == stopped

    resumed = invoke("train", "--resume", str(out), "--steps", str(stopped + 2), "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert [p.name for p in list_checkpoints(out)][-1] == f"step-{stopped + 2:08d}"


def test_sample_names_its_files_after_name_when_given(trained_drums, tmp_path):
    from clihelp import invoke

    result = invoke("sample", trained_drums, "-n", 2, "--seed", 7, "--name", "funk-t0.5-s7", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.glob("*.mid"))
    assert len(names) == 2 and all(n.startswith("funk-t0.5-s7_sample_") for n in names)
    bad = invoke("sample", trained_drums, "-n", 1, "--name", "../up", "--out", tmp_path)
    assert bad.exit_code == 1 and "not a plain file name" in bad.output
