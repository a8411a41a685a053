"""``hvae evaluate``: the papers' reconstruction metrics of a trained model on a data split.

Spec: one-hot models get accuracy per step, teacher-forced and sampled; drum outputs get hit
precision/recall/F1 over (step, drum) cells; groove outputs also velocity MAE in MIDI units and timing
MAE in ms (an offset of 1 is half a step; a step is 60,000 / qpm / steps_per_quarter ms); all get the
mean KL in bits. A table by default, JSON with --json or -o; user mistakes are one-line errors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
from hvae.data import DEMO_DIR
from hvae.evaluation import MetricTally
from clihelp import invoke, one_line_error

TF, SAMPLED = "teacher_forced", "sampled"


@pytest.fixture(scope="module")
def drums_json(trained_drums, tmp_path_factory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("evaluate") / "metrics.json"
    result = invoke("evaluate", str(trained_drums), "--json", "-o", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out, result.stdout


def test_a_drum_model_gets_accuracy_and_hit_metrics_teacher_forced_and_sampled(drums_json):
    metrics, _, _ = drums_json
    assert (metrics["split"], metrics["output_kind"], metrics["step"]) == ("test", "onehot", 40)
    for mode in (TF, SAMPLED):
        assert set(metrics[mode]) == {"accuracy", "hit_precision", "hit_recall", "hit_f1"}
        assert 0.0 <= metrics[mode]["accuracy"] <= 1.0
        assert 0.0 <= metrics[mode]["hit_recall"] <= 1.0
    assert metrics["kl_bits"] > 0 and metrics["reconstruction_loss"] > 0


def test_every_window_of_the_test_split_is_evaluated(drums_json, trained_drums):
    metrics, _, _ = drums_json
    config = json.loads((trained_drums / "config.json").read_text())
    manifest = json.loads((Path(config["cache_dir"]) / "manifest.json").read_text())
    assert metrics["windows"] == manifest["splits"]["test"]["windows"] > 0


def test_dash_o_writes_the_same_json_it_prints(drums_json):
    metrics, path, _ = drums_json
    assert json.loads(path.read_text()) == metrics


def test_the_default_output_is_a_table_with_both_decodings(trained_drums):
    result = invoke("evaluate", str(trained_drums), "--split", "validation", "--no-progress")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if line.startswith("metric"))
    assert "teacher-forced" in header and "sampled" in header
    assert "on the validation split" in result.output
    for label in ("accuracy", "hit F1", "KL (bits per window)"):
        assert any(line.startswith(label) for line in result.output.splitlines()), label


def test_a_groove_model_gets_velocity_in_midi_units_and_timing_in_ms(trained_humanizer):
    result = invoke("evaluate", str(trained_humanizer), "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["output_kind"] == "groove" and "accuracy" not in metrics[TF]
    assert metrics["step_ms"] == pytest.approx(125.0)  # 120 qpm, 4 steps per quarter
    for mode in (TF, SAMPLED):
        assert metrics[mode]["hit_f1"] > 0
        assert 0 < metrics[mode]["velocity_mae"] < 127
        assert 0 < metrics[mode]["timing_mae_ms"] <= 125.0  # offsets differ by 2 at most: one step


def test_timing_in_ms_follows_the_tempo(trained_humanizer):
    at = {qpm: json.loads(invoke("evaluate", str(trained_humanizer), "--json", "--qpm", qpm, "--no-progress").stdout)
          for qpm in ("120", "60")}
    assert at["60"]["step_ms"] == pytest.approx(250.0)
    assert at["60"][SAMPLED]["timing_mae_ms"] == pytest.approx(2 * at["120"][SAMPLED]["timing_mae_ms"])
    assert at["60"][SAMPLED]["velocity_mae"] == pytest.approx(at["120"][SAMPLED]["velocity_mae"])


def test_a_perfect_groove_prediction_scores_one_and_zero_errors():
    converter = hvae.get_converter("groove", split_bars=1)
    targets = torch.from_numpy(converter.to_tensors(
        DEMO_DIR / "drummer1/session1/2_funk_80_beat_4-4.mid")[3].outputs[None])  # (1, 16, 27)
    mask = torch.ones(targets.shape[:2])
    perfect, shifted = MetricTally(converter, 125.0), MetricTally(converter, 125.0)
    perfect.add(targets, targets, mask)
    late = targets.clone()
    late[..., 18:] -= 0.5  # every offset half a unit later: a quarter step, 31.25 ms at 125 ms a step
    late[..., 9:18] += 10 / 127  # every velocity 10 louder
    shifted.add(late, targets, mask)
    assert perfect.metrics() == {"hit_precision": 1.0, "hit_recall": 1.0, "hit_f1": 1.0, "velocity_mae": 0.0,
                                 "timing_mae_ms": 0.0}
    assert shifted.metrics()["timing_mae_ms"] == pytest.approx(31.25)
    assert shifted.metrics()["velocity_mae"] == pytest.approx(10.0, abs=1e-4)


def test_drum_combination_classes_are_read_as_hits_bit_by_bit():
    converter = hvae.get_converter("drums", slice_bars=1)
    outputs = torch.zeros(1, 2, 512)
    outputs[0, 0, 0b000000011] = 1.0  # kick and snare
    outputs[0, 1, 0] = 1.0  # silence
    hits = converter.drum_hits(outputs)
    assert hits.shape == (1, 2, 9)
    assert hits[0, 0].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0] and hits[0, 1].sum() == 0


@pytest.fixture
def one_file_folder(tmp_path, monkeypatch) -> Path:
    """A folder with one GMD file and no info.csv: its path hash puts it in the test split."""
    monkeypatch.setenv("HVAE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DEMO_DIR / "drummer1/session1/2_funk_80_beat_4-4.mid", data)
    return data


def test_another_data_folder_is_converted_with_the_runs_converter(trained_drums, one_file_folder):
    result = invoke("evaluate", str(trained_drums), "--data", str(one_file_folder), "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["data_dir"] == str(one_file_folder) and metrics["split"] == "test"
    assert metrics["windows"] == len(hvae.get_converter("drums", slice_bars=4).to_tensors(
        one_file_folder / "2_funk_80_beat_4-4.mid"))


def test_an_empty_split_is_a_one_line_error(trained_drums, one_file_folder):
    result = invoke("evaluate", str(trained_drums), "--data", str(one_file_folder), "--split", "train",
                    "--no-progress")
    assert one_line_error(result) == (f"Error: The train split of {one_file_folder} has no windows for converter "
                                      f"'drums'; choose another split.")


def test_a_folder_that_is_no_checkpoint_is_a_one_line_error(tmp_path):
    assert one_line_error(invoke("evaluate", str(tmp_path))).startswith(f"Error: No checkpoint in {tmp_path}")


def test_kl_is_reported_in_bits_per_window(drums_json, trained_drums):
    from hvae.rundir import open_run
    from hvae.data import load_split
    from hvae.model import kl_divergence

    metrics, _, _ = drums_json
    loaded = open_run(trained_drums)
    config = json.loads((trained_drums / "config.json").read_text())
    test = load_split(config["cache_dir"], "test").as_tensors()
    with torch.no_grad():
        mu, sigma = loaded.model.encode(test["inputs"], test["lengths"])
    assert metrics["kl_bits"] == pytest.approx(float(kl_divergence(mu, sigma).mean()) / np.log(2), rel=1e-4)


@pytest.fixture(scope="module")
def barely_trained(tmp_path_factory) -> Path:
    """The demo preset trained 100 steps (of its 800): it predicts each step from z and the position alone."""
    root = tmp_path_factory.mktemp("barely-trained")
    result = invoke("train", "--steps", 100, "--no-progress", "--cache", root / "cache", "--out", root / "run")
    assert result.exit_code == 0, result.output
    return root / "run"


def test_a_model_that_hardly_uses_the_steps_before_gets_a_line_saying_why_the_columns_agree(barely_trained):
    metrics = json.loads(invoke("evaluate", str(barely_trained), "--json", "--no-progress").stdout)
    assert metrics["agreement"] >= 0.99
    assert metrics[TF]["accuracy"] == pytest.approx(metrics[SAMPLED]["accuracy"], abs=0.01)
    table = " ".join(invoke("evaluate", str(barely_trained), "--no-progress").output.split())
    assert (f"Teacher-forced and sampled decoding predict {metrics['agreement']:.1%} of the steps alike: the model "
            f"hardly uses the steps before yet") in table


def test_a_model_that_uses_the_steps_before_decodes_them_differently_and_gets_no_such_line(trained_humanizer):
    result = invoke("evaluate", str(trained_humanizer), "--json", "--no-progress")
    metrics = json.loads(result.stdout)
    assert 0.0 < metrics["agreement"] < 0.99 and metrics[TF] != metrics[SAMPLED]
    assert "of the steps alike" not in invoke("evaluate", str(trained_humanizer), "--no-progress").output


def test_a_model_that_decodes_every_window_alike_is_pointed_out(tmp_path):
    from conftest import _train

    run = _train(tmp_path / "run", tmp_path / "cache", "--preset", "hier-drums-4bar", "-m", "decoder.rnn_sizes=32",
                 "--steps", "3")
    result = invoke("evaluate", run, "--samples", "0", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "The model ignores its latent code" in result.output
