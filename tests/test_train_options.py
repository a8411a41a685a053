"""``hvae train``'s ways in for a new user: --config from an earlier run, --tensorboard, and a progress bar
that says when it validates.

Spec: ``--config RUN/config.json`` trains a new run with the earlier run's converter, model and training
(training options given on top win; what is trained cannot be changed with it); ``--tensorboard`` logs
the same scalars as metrics.jsonl into RUN/tensorboard/, read back here from the event file; while
validation runs the progress bar reads "validating".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clihelp import invoke
from conftest import TINY_MODEL

TINY = [*TINY_MODEL, "-m", "decoder.rnn_sizes=32", "--preset", "hier-drums-4bar"]


def train(tmp_path: Path, name: str, *args) -> Path:
    out = tmp_path / name
    result = invoke("train", *TINY, "--cache", tmp_path / "cache", "--out", out, *args)
    assert result.exit_code == 0, result.output
    return out


def config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_config_starts_a_new_run_with_an_earlier_runs_settings(tmp_path):
    earlier = train(tmp_path, "earlier", "--steps", 2, "-o", "gap_bars=2", "-m", "free_bits=8")
    result = invoke("train", "--config", earlier / "config.json", "--steps", 3, "--seed", 7, "--no-progress",
                    "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    again, before = config(tmp_path / "again"), config(earlier)
    assert again["train"] == {**before["train"], "steps": 3, "seed": 7}
    assert {k: v for k, v in again.items() if k != "train"} == {k: v for k, v in before.items() if k != "train"}
    assert "Trained to step 3" in result.output


def test_config_takes_the_run_directory_too(tmp_path):
    earlier = train(tmp_path, "earlier", "--steps", 1)
    result = invoke("train", "--config", earlier, "--no-progress", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert config(tmp_path / "again")["model"] == config(earlier)["model"]


def test_config_refuses_options_that_change_what_is_trained(tmp_path):
    earlier = train(tmp_path, "earlier", "--steps", 1)
    result = invoke("train", "--config", earlier, "--preset", "demo", "-m", "z_size=8", "--out", tmp_path / "again")
    assert result.exit_code == 2
    assert ("--config trains what the earlier run trained; --model-option, --preset cannot be given with it."
            in result.output)
    assert not (tmp_path / "again").exists()


def test_tensorboard_logs_the_same_scalars_as_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard package (hvae[tensorboard]) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(tmp_path, "run", "--steps", 4, "--log-every", 2, "--eval-every", 2, "--tensorboard")
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    expected: dict[str, list] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for name, value in record.items():
            if name not in ("split", "step"):
                expected.setdefault(f"{record['split']}/{name}", []).append((record["step"], value))
    assert logged.keys() == expected.keys()
    for tag, points in expected.items():
        assert [step for step, _ in logged[tag]] == [step for step, _ in points], tag
        assert [value for _, value in logged[tag]] == pytest.approx([value for _, value in points], rel=1e-6), tag


def test_without_tensorboard_no_event_file_is_written(tmp_path):
    run = train(tmp_path, "run", "--steps", 1)
    assert not (run / "tensorboard").exists()


def test_the_progress_bar_says_validating_while_it_validates(tmp_path):
    result = invoke("train", *[a for a in TINY if a != "--no-progress"], "--progress", "--steps", 2,
                    "--eval-every", 1, "--cache", tmp_path / "cache", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "hier-drums-4bar validating" in result.stderr


def test_minutes_stops_at_the_deadline_with_a_validation_and_a_checkpoint_and_resume_goes_on(tmp_path):
    run = tmp_path / "timed"
    result = invoke("train", *TINY, "--cache", tmp_path / "cache", "--out", run, "--steps", 1_000_000,
                    "--minutes", 0.02, "--eval-every", 0)
    assert result.exit_code == 0, result.output
    assert f"Stopped at the time budget (--minutes) at step" in result.output
    assert f"continue with: hvae train --resume {run}" in result.output
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    stopped = lines[-1]["step"]
    assert lines[-1]["split"] == "validation" and 1 <= stopped < 1_000_000
    assert [p.name for p in (run / "checkpoints").iterdir()][-1] == f"step-{stopped:08d}"
    assert config(run)["train"]["minutes"] == 0.02

    again = invoke("train", "--resume", run, "--minutes", 0.02, "--no-progress")
    assert again.exit_code == 0, again.output
    assert f"steps {stopped} -> 1000000" in again.output
    resumed = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert resumed["split"] == "validation" and resumed["step"] > stopped


def test_hvae_run_with_minutes_trains_until_the_deadline_then_samples(tmp_path):
    run = tmp_path / "run"
    result = invoke("run", *TINY, "--cache", tmp_path / "cache", "--out", run, "--steps", 1_000_000,
                    "--minutes", 0.02, "-n", 2, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert "Stopped at the time budget (--minutes)" in result.output
    assert len(list((run / "samples").glob("*.mid"))) == 2


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf", "1e9"])
def test_a_budget_out_of_range_is_refused_before_any_work(tmp_path, minutes):
    result = invoke("train", *TINY, "--out", tmp_path / "never", "--minutes", minutes)
    assert result.exit_code == 2
    assert "--minutes" in result.output
    assert not (tmp_path / "never").exists()


def test_train_counts_the_parameters_hvae_presets_counts(tmp_path):
    presets = json.loads(invoke("presets", "--json").output)["presets"]
    expected = next(p["parameters"] for p in presets if p["name"] == "demo")
    result = invoke("train", "--preset", "demo", "--steps", 1, "--threads", 1, "--no-progress",
                    "--cache", tmp_path / "cache", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"{expected:,} parameters" in result.output
