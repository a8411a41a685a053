"""Training: the loss falls on real drum windows, runs resume bit for bit, divergence stops cleanly,
and metrics.jsonl says what happened at each logged step.

Models here are tiny (16 LSTM units, z of 8) so each test takes seconds on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
from hvae.checkpoint import list_checkpoints, read_checkpoint
from hvae.data import DEMO_DIR, prepare_dataset
from hvae.errors import HvaeError, TrainingError
from hvae.model import learning_rate_at
from hvae.presets import get_preset
from hvae.rundir import METRICS_FILE, RunConfig, TrainConfig
from hvae.training import batch_indices
from sessions import new_session, resumed_session, train_new

TRAIN_FIELDS = {"split", "step", "loss", "r_loss", "kl", "kl_bits", "beta", "lr", "accuracy", "examples_per_s"}
VALIDATION_FIELDS = {"split", "step", "examples", "loss", "r_loss", "kl", "kl_bits", "beta", "accuracy"}


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory) -> Path:
    """The bundled demo subset as 4-bar drum windows (the demo preset's converter)."""
    preset = get_preset("demo")
    converter = hvae.get_converter(preset.converter, **preset.converter_options)
    out = tmp_path_factory.mktemp("drums-4bar")
    prepare_dataset(converter, DEMO_DIR, out, workers=2, progress=False)
    return out


def tiny_run(cache: Path, model_changes: dict | None = None, **train) -> RunConfig:
    """The demo preset shrunk to 16-unit LSTMs, trained with ``train`` options."""
    preset = get_preset("demo")
    model = dataclasses.replace(preset.model, z_size=8, encoder_options={"rnn_sizes": (16,)},
                                decoder_options={"rnn_sizes": (16,), "level_lengths": (4, 16)},
                                **(model_changes or {}))
    # one thread: tiny models train fastest on one, and this machine's two cores are shared
    settings = dict(batch_size=16, steps=8, log_every=2, eval_every=0, checkpoint_every=4, eval_examples=32,
                    threads=1)
    return RunConfig(name="tiny", converter=preset.converter, converter_options=dict(preset.converter_options),
                     model=model, train=TrainConfig(**{**settings, **train}), data_dir=str(DEMO_DIR),
                     cache_dir=str(cache), preset="demo")


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def test_loss_falls_over_a_few_dozen_steps_on_real_demo_windows(demo_cache, tmp_path):
    config = tiny_run(demo_cache, {"learning_rate": 3e-3}, steps=40, batch_size=32, log_every=5)
    with new_session(tmp_path / "run", config) as session:
        result = session.train()
    losses = [line["loss"] for line in metrics(tmp_path / "run") if line["split"] == "train"]
    assert result.step == 40
    assert losses[0] > 390  # 64 steps of a uniform guess over 512 classes: 64 ln 512 = 399 nats
    assert losses[-1] < 0.85 * losses[0]
    assert result.validation["loss"] < 0.85 * losses[0]


def test_stop_and_resume_gives_the_same_weights_as_training_straight(demo_cache, tmp_path):
    # dropout and scheduled sampling draw random numbers every step: the resumed run must draw the same
    changes = {"dropout": 0.3, "sampling_rate": 0.5}
    straight = train_new(tmp_path / "straight", tiny_run(demo_cache, changes, steps=8, eval_every=3))
    train_new(tmp_path / "stopped", tiny_run(demo_cache, changes, steps=3, eval_every=3))
    with resumed_session(tmp_path / "stopped", steps=8) as session:
        resumed = session.trainer
        assert resumed.step == 3
        session.train()

    expected, actual = straight.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    expected_moments = straight.optimizer.state_dict()["state"]
    for index, moments in resumed.optimizer.state_dict()["state"].items():
        for key, value in moments.items():
            assert torch.equal(value, expected_moments[index][key]), (index, key)
    validation = lambda run: [l for l in metrics(run) if l["split"] == "validation" and l["step"] > 3]
    assert validation(tmp_path / "straight") == validation(tmp_path / "stopped")


def test_a_run_killed_after_its_checkpoint_resumes_from_it_without_duplicate_lines(demo_cache, tmp_path):
    run = tmp_path / "run"
    train_new(run, tiny_run(demo_cache, steps=6, log_every=1, checkpoint_every=3))
    shutil.rmtree(list_checkpoints(run)[-1])  # killed after logging step 6, before checkpointing it
    with open(run / METRICS_FILE, "a") as log:
        log.write('{"split": "train", "st')  # and in the middle of a line
    with resumed_session(run) as session:
        assert session.trainer.step == 3
        session.train()
    steps = [line["step"] for line in metrics(run) if line["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_loss_that_is_not_finite_stops_training_and_keeps_the_last_good_checkpoint(demo_cache, tmp_path):
    # a learning rate of 1e20 throws the weights far out in one step; the next KL overflows to inf
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"loss is (inf|nan) at step 2.*step-00000001 \(step 1\), is intact"):
        train_new(run, tiny_run(demo_cache, {"learning_rate": 1e20}, steps=6, log_every=1, checkpoint_every=1))
    assert [p.name for p in list_checkpoints(run)] == ["step-00000001"]
    kept = read_checkpoint(run)
    assert kept.step == 1
    assert all(torch.isfinite(t).all() for t in kept.model.values())
    assert [line["step"] for line in metrics(run)] == [1]


def test_steps_after_a_loss_that_is_not_finite_leave_the_weights_and_moments_as_before_it(demo_cache, tmp_path):
    # the loss is read on the host only when a line, a validation or a checkpoint is due (here at step 4):
    # steps 2 to 4 run, but none of their updates may land
    config = tiny_run(demo_cache, {"learning_rate": 1e20}, steps=6, log_every=4, checkpoint_every=4)
    weights, moments = {}, {}

    def keep_after_step_one(optimizer, args, kwargs):
        if trainer.step == 0:  # (the hook runs inside step 1's update, before the step count moves)
            weights.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
            moments.update({(i, k): v.clone() for i, s in optimizer.state_dict()["state"].items() for k, v in s.items()})

    with new_session(tmp_path / "run", config) as session:
        trainer = session.trainer
        trainer.optimizer.register_step_post_hook(keep_after_step_one)
        with pytest.raises(TrainingError, match=r"loss is (inf|nan) at step 2.*no checkpoint was written yet"):
            session.train()
    assert trainer.step == 4
    assert all(torch.equal(v, weights[k]) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(v, moments[i, k]) for i, s in trainer.optimizer.state_dict()["state"].items()
               for k, v in s.items())
    assert list_checkpoints(tmp_path / "run") == [] and [line["step"] for line in metrics(tmp_path / "run")] == [1]


def test_metrics_lines_hold_the_loss_parts_at_each_logged_step(demo_cache, tmp_path):
    trainer = train_new(tmp_path / "run", tiny_run(demo_cache, steps=7, log_every=3, eval_every=4))
    lines = metrics(tmp_path / "run")
    assert [(l["split"], l["step"]) for l in lines] == [
        ("train", 1), ("train", 3), ("validation", 4), ("train", 6), ("train", 7), ("validation", 7)]
    for line in lines:
        assert set(line) == (TRAIN_FIELDS if line["split"] == "train" else VALIDATION_FIELDS)
        assert all(np.isfinite(v) for k, v in line.items() if k != "split")
        assert 0.0 <= line["accuracy"] <= 1.0
    train = [l for l in lines if l["split"] == "train"]
    assert train[0]["beta"] == 0.0 and train[-1]["beta"] == pytest.approx(0.2)  # (1 - 0^step) * max_beta
    # the rate each line's last update used: (lr - min_lr) * decay^step + min_lr, from step 0
    assert train[0]["lr"] == pytest.approx(learning_rate_at(0, trainer.model.config))
    assert train[-1]["lr"] == pytest.approx(learning_rate_at(6, trainer.model.config))
    assert train[-1]["lr"] < train[0]["lr"]
    assert all(l["kl_bits"] == pytest.approx(l["kl"] / np.log(2)) for l in lines)


def test_each_epoch_visits_every_window_once_in_a_seeded_order():
    rows = np.concatenate([batch_indices(10, 4, seed=7, step=s) for s in range(5)])  # 2 epochs of 10
    assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:]) == list(range(10))
    assert not np.array_equal(rows[:10], rows[10:])
    assert np.array_equal(batch_indices(10, 4, seed=7, step=3), rows[12:16])
    assert not np.array_equal(batch_indices(10, 4, seed=8, step=3), rows[12:16])


def test_a_run_directory_holding_a_run_is_not_started_again(demo_cache, tmp_path):
    train_new(tmp_path / "run", tiny_run(demo_cache, steps=1))
    with pytest.raises(HvaeError, match="already holds a run"):
        with new_session(tmp_path / "run", tiny_run(demo_cache, steps=1)):
            pass
