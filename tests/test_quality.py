"""Sample quality (``hvae.quality``, ``hvae evaluate --samples``): musical features of windows, and the
overlapping area of distance distributions that compares a model's samples with real windows.

Spec: a plain rock beat written as MIDI measures what a drummer would say it is (12 hits a bar, kick on
one, snare on the backbeat, hats on every eighth, each bar the same); a groove's velocities and
microtiming are read in MIDI units and ms; a melody's pitches, intervals and lengths in semitones and
steps. Real windows against other real windows overlap far more than noise against real windows does.
``hvae evaluate`` prints the per-feature table with the ceiling beside it, and its JSON holds the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import miditoolkit
import numpy as np
import pytest

from hvae import quality
from hvae.data import load_split, prepare_dataset
from hvae.plugins import make_converter
from hvae.rundir import DEMO_DIR
from clihelp import invoke

TICKS = 480  # ticks per quarter of the files written here
STEP = TICKS // 4  # one 16th


def drum_file(path: Path, bars: int = 4, late_ticks: int = 0, velocities=(100,)) -> Path:
    """A rock beat: kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on every eighth, at 120 qpm."""
    midi = miditoolkit.MidiFile(ticks_per_beat=TICKS)
    midi.tempo_changes = [miditoolkit.TempoChange(120.0, 0)]
    midi.time_signature_changes = [miditoolkit.TimeSignature(4, 4, 0)]
    drums = miditoolkit.Instrument(program=0, is_drum=True, name="drums")
    k = 0
    for bar in range(bars):
        for step in range(16):
            start = (bar * 16 + step) * STEP + late_ticks
            pitches = ([36] if step in (0, 8) else []) + ([38] if step in (4, 12) else []) + \
                ([42] if step % 2 == 0 else [])
            for pitch in pitches:
                drums.notes.append(miditoolkit.Note(velocities[k % len(velocities)], pitch, start, start + STEP // 2))
                k += 1
    midi.instruments.append(drums)
    midi.dump(str(path))
    return path


def test_a_rock_beat_measures_as_a_drummer_would_say(tmp_path):
    converter = make_converter("drums", {"slice_bars": 4})
    (window, *_) = converter.to_tensors(drum_file(tmp_path / "rock.mid"))
    found = {k: float(v[0]) for k, v in quality.measure(converter, window.outputs[None], 125.0).items()}
    assert found == {"hits_per_bar": 12.0, "step_share": 0.5, "drums_used": 3.0, "kick_on_one": 1.0,
                     "snare_backbeat": 1.0, "hats_on_eighths": 1.0, "off_eighths": 0.0, "repetition": 1.0}


def test_a_groove_reads_velocity_spread_in_midi_units_and_microtiming_in_ms(tmp_path):
    converter = make_converter("groove", {"split_bars": 4})
    # 24 ticks late at 480 ticks a quarter and 120 qpm: 25 ms after the grid, on every hit
    (window, *_) = converter.to_tensors(drum_file(tmp_path / "late.mid", late_ticks=24, velocities=(60, 100)))
    found = quality.measure(converter, window.outputs[None], step_ms=125.0)
    assert found["microtiming"][0] == pytest.approx(25.0, abs=0.5)
    assert found["velocity_spread"][0] == pytest.approx(20.0, abs=0.5)  # half at 60, half at 100
    assert found["hits_per_bar"][0] == 12.0


def test_a_melody_measures_its_pitches_intervals_and_lengths(tmp_path):
    midi = miditoolkit.MidiFile(ticks_per_beat=TICKS)
    midi.tempo_changes = [miditoolkit.TempoChange(120.0, 0)]
    piano = miditoolkit.Instrument(program=0, name="piano")
    for k, pitch in enumerate([60, 62, 64, 65, 67, 65, 64, 62] * 2):  # quarter notes, 4 bars
        piano.notes.append(miditoolkit.Note(80, pitch, k * TICKS, (k + 1) * TICKS))
    midi.instruments.append(piano)
    midi.dump(str(tmp_path / "scale.mid"))
    converter = make_converter("melody", {"slice_bars": 4})
    (window, *_) = converter.to_tensors(tmp_path / "scale.mid")
    found = {k: float(v[0]) for k, v in quality.measure(converter, window.outputs[None], 125.0).items()}
    assert found["pitch_count"] == 5 and found["pitch_range"] == 7
    assert found["mean_interval"] == pytest.approx(26 / 15)  # 1.5 and 2 semitone steps, up and down
    assert found["mean_ioi"] == 4 and found["note_length"] == 4 and found["sounding_share"] == 1.0
    assert found["pitch_class_entropy"] == pytest.approx(-sum(p * np.log2(p) for p in (2 / 16, 4 / 16, 4 / 16,
                                                                                       4 / 16, 2 / 16)))


@pytest.fixture(scope="module")
def demo_windows(tmp_path_factory):
    converter = make_converter("drums", {"slice_bars": 4, "roll_input": True})
    cache = tmp_path_factory.mktemp("quality-cache")
    prepare_dataset(converter, DEMO_DIR, cache, progress=False)
    return converter, load_split(cache, "train")


def test_real_windows_overlap_real_windows_far_more_than_noise_does(demo_windows):
    converter, windows = demo_windows
    rows = np.random.default_rng(0).permutation(len(windows))
    a = quality.measure(converter, windows.outputs[np.sort(rows[:200])], 125.0)
    b = quality.measure(converter, windows.outputs[np.sort(rows[200:400])], 125.0)
    noise = np.eye(converter.output_depth, dtype=np.float32)[np.random.default_rng(1).integers(
        0, converter.output_depth, size=(200, converter.steps))]  # every step a random drum combination
    features = quality.features_of(converter)
    real = quality.overlaps(a, b, features)
    random = quality.overlaps(a, quality.measure(converter, noise, 125.0), features)
    assert real["mean"] > 0.8
    assert random["mean"] < 0.4
    assert set(real) == {f.name for f in features} | {"mean"}


def test_the_overlap_of_two_samples_of_one_distribution_is_near_one_and_of_disjoint_ones_zero():
    rng = np.random.default_rng(0)
    same = quality.overlap(rng.normal(size=5000), rng.normal(size=5000))
    apart = quality.overlap(rng.normal(size=5000), rng.normal(size=5000) + 100)
    assert same > 0.95 and apart < 0.01
    assert quality.overlap(np.zeros(10), np.zeros(10)) == 1.0


def test_hvae_evaluate_prints_the_sample_quality_beside_its_ceiling(trained_drums, tmp_path):
    result = invoke("evaluate", trained_drums, "--samples", "48", "--no-progress", "-o", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    assert "Sample quality: 48 prior samples (temperature 0.5, seed 0, raw draws)" in result.output
    assert "hits_per_bar" in result.output and "of a possible" in result.output
    assert "of the raw draws have" in result.output  # the plausible share and the redrawn figure
    saved = json.loads((tmp_path / "m.json").read_text())["quality"]
    assert saved["samples"] == 48 and saved["ceiling_split"] == "train"
    assert 0 <= saved["overlaps"]["mean"] <= 1 and 0 < saved["ceiling"]["mean"] <= 1
    assert 0 <= saved["plausible_share"] <= 1 and 0 <= saved["redrawn"]["mean"] <= 1


def test_the_same_seed_gives_the_same_figures_and_samples_0_skips_them(trained_drums):
    first = invoke("evaluate", trained_drums, "--samples", "16", "--seed", "3", "--no-progress", "--json")
    again = invoke("evaluate", trained_drums, "--samples", "16", "--seed", "3", "--no-progress", "--json")
    assert json.loads(first.output)["quality"] == json.loads(again.output)["quality"]
    none = invoke("evaluate", trained_drums, "--samples", "0", "--no-progress", "--json")
    assert json.loads(none.output)["quality"] is None


def test_a_melody_model_is_measured_by_the_melody_features(trained_melody):
    result = invoke("evaluate", trained_melody, "--split", "train", "--samples", "16", "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    q = json.loads(result.output)["quality"]
    assert set(q["features"]) == {f.name for f in quality.MELODY_FEATURES}
    assert q["plausible_share"] is None


def test_a_humanizer_is_also_measured_on_what_it_restores_from_the_splits_inputs(trained_humanizer):
    result = invoke("evaluate", trained_humanizer, "--samples", "32", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "From the inputs (velocities and timing removed): 32 windows decoded greedily" in result.output
    data = json.loads(invoke("evaluate", trained_humanizer, "--samples", "32", "--no-progress", "--json").output)
    transfer = data["transfer"]
    assert transfer["source"] == "velocities and timing removed"
    assert {"velocity_spread", "microtiming"} <= set(transfer["overlaps"])
    assert 0 <= transfer["overlaps"]["mean"] <= 1
