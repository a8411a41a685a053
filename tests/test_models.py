"""The models in the box (``hvae models``, :mod:`hvae.pretrained`): musical output right after setup.

Spec: three GMD models ship with hvae, each a run directory of float16 weights with a model card, 30 MB
at most together; ``hvae models`` lists them; every command that takes a run takes a model's name, and
writes into runs/<name>/ in the working directory, never into the installed package; the Python API opens
them by name; a model fine-tunes into a new run directory (``hvae train --resume NAME --out DIR``).
"""

from __future__ import annotations

import json
from pathlib import Path

import miditoolkit
import mido
import pytest
import torch

import hvae
from hvae.data import DEMO_DIR
from hvae.pretrained import PRETRAINED_DIR, shipped_models
from clihelp import invoke

NAMES = ("gmd-drums-4bar", "gmd-humanize-2bar", "gmd-drumify-2bar")


def bars(path: Path) -> float:
    """How many 4/4 bars every track of the file lasts (mido: each track's end, in quarters / 4)."""
    midi = mido.MidiFile(path)
    (ticks,) = {sum(m.time for m in track) for track in midi.tracks}
    return ticks / midi.ticks_per_beat / 4


def package_state() -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in PRETRAINED_DIR.rglob("*")}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_three_models_ship_with_cards_in_at_most_30_mb():
    models = {m.name: m for m in shipped_models()}
    assert set(NAMES) <= set(models)
    size = sum(p.stat().st_size for p in PRETRAINED_DIR.rglob("*") if p.is_file())
    assert size <= 30 * 2**20
    for name in NAMES:
        card = models[name].card.read_text()
        assert "Groove MIDI Dataset" in card and "CC BY 4.0" in card
        assert "python experiments/" in card or "hvae train" in card  # how to make it again
        assert (models[name].path / "plausible.json").is_file() or "humanize" in name or "drumify" in name


def test_hvae_models_lists_them_with_their_cards():
    result = invoke("models")
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.output
    listed = json.loads(invoke("models", "--json").output)
    assert {m["name"] for m in listed} >= set(NAMES)
    assert all(Path(m["card"]).is_file() for m in listed)


def test_sample_by_name_writes_whole_4_bar_loops_into_runs_of_the_working_directory(in_tmp):
    before = package_state()
    result = invoke("sample", "gmd-drums-4bar", "-n", 8, "--seed", 0)
    assert result.exit_code == 0, result.output
    files = sorted((in_tmp / "runs" / "gmd-drums-4bar" / "samples").glob("*.mid"))
    assert len(files) == 8
    for path in files:
        assert bars(path) == 4
        assert sum(len(i.notes) for i in miditoolkit.MidiFile(str(path)).instruments) > 0
    assert package_state() == before


def test_the_python_api_opens_a_model_by_name():
    run = hvae.open_run("gmd-drums-4bar")
    assert run.config.name == "gmd-drums-4bar" and run.step > 0
    drawn = run.model.sample(2, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert drawn.shape[:2] == (2, 64) and torch.isfinite(drawn).all()
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # float16 on disk, float32 to compute


def test_humanize_by_name_gives_a_quantised_beat_velocities_and_timing(in_tmp):
    source = sorted(DEMO_DIR.rglob("*.mid"))[0]
    result = invoke("humanize", "gmd-humanize-2bar", source, "--out", in_tmp / "out")
    assert result.exit_code == 0, result.output
    humanized = [p for p in (in_tmp / "out").glob("*.mid") if "input" not in p.name]
    assert humanized
    midi = miditoolkit.MidiFile(str(humanized[0]))
    notes = [n for i in midi.instruments for n in i.notes]
    assert len({n.velocity for n in notes}) > 3  # expressive velocities, not one flat value
    assert any(n.start % (midi.ticks_per_beat // 4) for n in notes)  # some hits off the 16th grid
    assert bars(humanized[0]) == 2  # a whole 2-bar loop, whatever the timing


def test_drumify_by_name_turns_a_tapped_rhythm_into_a_groove(in_tmp):
    source = sorted(DEMO_DIR.rglob("*.mid"))[0]
    result = invoke("reconstruct", "gmd-drumify-2bar", source, "--out", in_tmp / "out")
    assert result.exit_code == 0, result.output
    made = [p for p in (in_tmp / "out").glob("*.mid") if "original" not in p.name]
    pitches = {n.pitch for p in made for i in miditoolkit.MidiFile(str(p)).instruments for n in i.notes}
    assert len(pitches) >= 2  # more than the one drum the taps were on


def test_evaluate_by_name_reads_the_bundled_demo_data(in_tmp):
    result = invoke("evaluate", "gmd-drums-4bar", "--samples", 16, "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["data_dir"] == str(DEMO_DIR) and 0 <= data["quality"]["overlaps"]["mean"] <= 1


def test_a_model_fine_tunes_into_a_new_run_and_stays_as_it_was(in_tmp):
    before = package_state()
    step = hvae.open_run("gmd-drums-4bar").step
    result = invoke("train", "--resume", "gmd-drums-4bar", "--out", in_tmp / "mine", "--data", DEMO_DIR,
                    "--steps", step + 2, "--threads", 1, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"steps {step} -> {step + 2}" in result.output
    assert (in_tmp / "mine" / "checkpoints" / f"step-{step + 2:08d}").is_dir()
    assert json.loads((in_tmp / "mine" / "config.json").read_text())["data_dir"] == str(DEMO_DIR)
    assert package_state() == before


def test_resuming_a_model_without_out_starts_a_new_run_under_runs(in_tmp):
    step = hvae.open_run("gmd-humanize-2bar").step
    result = invoke("train", "--resume", "gmd-humanize-2bar", "--steps", step + 1, "--threads", 1, "--no-progress")
    assert result.exit_code == 0, result.output
    (made,) = (in_tmp / "runs").iterdir()
    assert made.name.startswith("gmd-humanize-2bar-")
    assert (made / "checkpoints" / f"step-{step + 1:08d}").is_dir()


def test_an_unknown_name_is_one_line_naming_the_models(in_tmp):
    result = invoke("sample", "gmd-drums-8bar")
    assert result.exit_code == 2
    assert "no such run, checkpoint or model in the box" in result.output
    assert "gmd-drums-4bar" in result.output
