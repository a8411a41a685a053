"""Attribute vectors (hvae.attributes): measuring attributes on real windows, finding the vectors through
``hvae attributes``, using them through ``hvae transform``, and the refusals, from the CLI and Python."""

from __future__ import annotations

import json
import importlib.util
from pathlib import Path

import miditoolkit
import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke, one_line_error
from test_midi_out import assert_lasts, mido_tempo
from hvae.attributes import (AttributeVectors, attribute_vectors, attributes_of, measure_attributes, settings_of,
                             transform_file)
from hvae.data import DEMO_DIR
from hvae.errors import HvaeError
from hvae.testing import registered_plugin

torch.set_num_threads(1)

DRUM_GROUPS = ("kick", "snare", "hats", "toms", "cymbals")
# experiments/attribute_vectors.py: its Spearman correlation (ties at their mean rank)
_SPEC = importlib.util.spec_from_file_location(
    "attribute_vectors", Path(__file__).resolve().parents[1] / "experiments" / "attribute_vectors.py")
EXPERIMENT = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(EXPERIMENT)


def demo_windows(converter, files: int = 6) -> np.ndarray:
    paths = sorted(DEMO_DIR.rglob("*.mid"))[:files]
    return np.stack([e.outputs for path in paths for e in converter.to_tensors(path)])


def test_drum_attributes_of_real_windows_add_up():
    """The drum groups partition the 9 classes: their hits per bar sum to the density."""
    converter = hvae.get_converter("drums", slice_bars=4)
    outputs = demo_windows(converter)
    measured = measure_attributes(converter, outputs)
    hits = converter.drum_hits(torch.from_numpy(outputs)).numpy()
    assert np.allclose(measured["density"], hits.sum(axis=(1, 2)) / 4)
    assert np.allclose(sum(measured[g] for g in DRUM_GROUPS), measured["density"])
    assert np.allclose(measured["kick"], hits[..., 0].sum(axis=1) / 4)
    assert set(measured) == {a.name for a in attributes_of(converter)}
    assert 0 <= np.nanmin(measured["syncopation"]) and np.nanmax(measured["syncopation"]) <= 1


def test_groove_attributes_read_velocities_and_timing():
    converter = hvae.get_converter("groove", split_bars=2)
    outputs = demo_windows(converter, files=3)
    measured = measure_attributes(converter, outputs)
    assert {"velocity", "swing"} <= set(measured)
    flat = outputs.copy()
    n = 9
    flat[..., n:2 * n] = np.where(flat[..., :n] > 0.5, 0.8, 0.0)  # every hit at one velocity
    flat[..., 2 * n:] = 0.0  # and on the grid
    again = measure_attributes(converter, flat)
    assert np.nanmax(again["velocity"]) == pytest.approx(0, abs=1e-4) and np.nanmax(again["swing"]) == 0
    assert np.nanmean(measured["velocity"]) > 5 and np.nanmean(measured["swing"]) > 1  # real grooves have both


def test_melody_attributes_move_as_a_transposition_says(maestro_files):
    """Up a semitone: the register rises by exactly 1, intervals, density and syncopation stay."""
    converter = hvae.get_converter("melody", slice_bars=2)
    examples = [e for path in maestro_files[:1] for e in converter.to_tensors(path)][:40]
    inputs = np.stack([e.inputs for e in examples])
    outputs = np.stack([e.outputs for e in examples])
    _, up = converter.transpose(inputs, outputs, np.ones(len(outputs), dtype=np.int64))
    before, after = measure_attributes(converter, outputs), measure_attributes(converter, up)
    moved = ~np.isnan(before["register"])
    assert moved.sum() > 10
    assert np.allclose(after["register"][moved], before["register"][moved] + 1)
    for name in ("interval", "density", "syncopation8", "syncopation16"):
        assert np.allclose(after[name], before[name], equal_nan=True)
    assert 0 <= np.nanmin(before["diatonic"]) and np.nanmax(before["diatonic"]) <= 1


def test_hvae_attributes_writes_the_quartiles_mean_difference(trained_drums, tmp_path):
    result = invoke("attributes", trained_drums, "--no-progress")
    assert result.exit_code == 0, result.output
    path = trained_drums / "attributes.json"
    assert f"Vectors:  {path}" in result.output and "density" in result.output and "hvae transform" in result.output
    vectors = AttributeVectors.load(path)
    assert set(vectors.vectors) == {"density", "syncopation", *DRUM_GROUPS}
    # The same from the definition: top quartile's mean mu minus the bottom one's, on the train split.
    loaded = hvae.open_run(trained_drums)
    windows, _ = loaded.windows("train", progress=False)
    tensors = windows.as_tensors()
    with torch.no_grad():
        mu = loaded.model.encode(tensors["inputs"], tensors["lengths"])[0].numpy()
    density = measure_attributes(loaded.converter, tensors["outputs"].numpy())["density"]
    low, high = np.quantile(density, [0.25, 0.75])
    expected = mu[density >= high].mean(axis=0) - mu[density <= low].mean(axis=0)
    assert np.allclose(vectors["density"].vector, expected, atol=1e-5)
    assert vectors["density"].top > vectors["density"].bottom
    # Python gives the same.
    again = attribute_vectors(loaded)
    assert np.allclose(again["density"].vector, vectors["density"].vector, atol=1e-6)


def test_hvae_transform_sweeps_and_names_each_file_by_its_scale(trained_drums, tmp_path):
    assert invoke("attributes", trained_drums, "--no-progress").exit_code == 0
    beat = sorted(DEMO_DIR.rglob("*.mid"))[0]
    result = invoke("transform", trained_drums, beat, "--sweep", "density=-1:1:3", "-a", "snare=0.5",
                    "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = [Path(line) for line in result.stdout.splitlines()]
    stem = f"{beat.stem}-w0"
    assert [p.name for p in written] == [f"{stem}-snare+0.5-density-1.mid", f"{stem}-snare+0.5-density+0.mid",
                                         f"{stem}-snare+0.5-density+1.mid", f"{stem}-attributes.png"]
    qpm = mido_tempo(beat)
    for path in written[:-1]:
        assert_lasts(path, 4, qpm)  # whole 4-bar files at the input's tempo
    assert "as read: snare" in result.stderr and result.stderr.count("density") >= 4
    again = invoke("transform", trained_drums, beat, "-a", "density=1", "--out", tmp_path / "out")
    # the picture's name is taken: the whole call's files take -2, so one call's files share a name
    assert again.exit_code == 0 and again.stdout.splitlines()[0].endswith(f"{stem}-2-density+1.mid")
    assert len(list((tmp_path / "out").iterdir())) == 6


def test_python_transform_measures_what_it_wrote(trained_drums, tmp_path):
    loaded = hvae.open_run(trained_drums)
    vectors = attribute_vectors(loaded)
    beat = sorted(DEMO_DIR.rglob("*.mid"))[1]
    done = transform_file(loaded, vectors, beat, settings_of(vectors, {"density": 2.0}), tmp_path)
    assert len(done.midi) == 1 and done.picture.suffix == ".png" and len(done.measured) == 2
    converter = loaded.converter.for_user_input()
    notes = [n for inst in miditoolkit.MidiFile(str(done.midi[0])).instruments for n in inst.notes]
    assert len(notes) / 4 == pytest.approx(done.measured[1]["density"])  # one note a hit, 4 bars


@pytest.mark.parametrize("args, words", [
    (["-a", "loudness=1"], "No attribute vector 'loudness'; these are: density, syncopation"),
    (["-a", "density"], "give NAME=SCALE"),
    (["-a", "density=nan"], "give NAME=SCALE"),
    (["-a", "density=50"], "at most 10 either way"),
    (["--sweep", "density=-1:1"], "give NAME=FROM:TO:COUNT"),
    (["--sweep", "density=-1:1:1000"], "2 to 101 values"),
    ([], "Nothing to add"),
])
def test_transform_refuses_bad_settings_in_one_line(trained_drums, args, words):
    assert invoke("attributes", trained_drums, "--no-progress").exit_code == 0
    beat = sorted(DEMO_DIR.rglob("*.mid"))[0]
    assert words in one_line_error(invoke("transform", trained_drums, beat, *args))


def test_transform_refuses_another_models_vectors_and_says_how_to_make_them(trained_drums, tmp_path):
    beat = sorted(DEMO_DIR.rglob("*.mid"))[0]
    other = tmp_path / "other.json"
    assert invoke("attributes", trained_drums, "--no-progress", "--out", other).exit_code == 0
    run = tmp_path / "run"
    assert invoke("train", "--preset", "hier-drums-4bar", "-m", "decoder.rnn_sizes=16", "-m", "encoder.rnn_sizes=16",
                  "-m", "z_size=8", "--steps", "2", "--no-progress", "--out", run).exit_code == 0
    message = one_line_error(invoke("transform", run, beat, "-a", "density=1"))
    assert "has no attribute vectors yet" in message and "hvae attributes" in message
    message = one_line_error(invoke("transform", run, beat, "-a", "density=1", "--vectors", other))
    assert "holds the attribute vectors of another model" in message
    (tmp_path / "junk.json").write_text(json.dumps({"format": "something"}))
    assert "not an attribute vectors file" in one_line_error(
        invoke("transform", run, beat, "-a", "density=1", "--vectors", tmp_path / "junk.json"))


def test_a_converter_plugin_adds_its_own_attribute(tmp_path, monkeypatch):
    example = Path(__file__).resolve().parents[1] / "examples" / "hvae-example-converter"
    monkeypatch.syspath_prepend(str(example))
    import hvae_example_converter

    with registered_plugin(hvae_example_converter, name="kick-snare"):
        converter = hvae.get_converter("kick-snare", slice_bars=2)
        assert [a.name for a in attributes_of(converter)][-1] == "backbeat"
        outputs = demo_windows(converter, files=4)
        measured = measure_attributes(converter, outputs)
        assert np.allclose(measured["density"], outputs.sum(axis=(1, 2)) / 2)
        backbeat = measured["backbeat"]
        assert np.array_equal(np.isnan(backbeat), outputs[..., 1].sum(axis=1) == 0)  # NaN: no snare
        assert np.nanmin(backbeat) >= 0 and np.nanmax(backbeat) <= 1
        backbeats_only = outputs.copy()
        backbeats_only[:, [t for t in range(32) if t % 8 != 4], 1] = 0  # keep the snares on beats 2 and 4
        kept = backbeats_only[..., 1].sum(axis=1) > 0
        assert kept.sum() > 5 and np.all(measure_attributes(converter, backbeats_only)["backbeat"][kept] == 1)
        run = tmp_path / "run"
        trained = invoke("train", "--converter", "kick-snare", "--decoder", "flat", "--loss", "bernoulli", "-o",
                         "slice_bars=2", "-m", "z_size=8", "-m", "encoder.rnn_sizes=16", "-m", "decoder.rnn_sizes=16",
                         "--steps", "5", "--no-progress", "--cache", tmp_path / "cache", "--out", run)
        assert trained.exit_code == 0, trained.output
        result = invoke("attributes", run, "--no-progress")
        assert result.exit_code == 0, result.output
        assert "backbeat" in result.output and "share of snare hits on beats 2 and 4" in result.output


def test_a_converter_attribute_that_shadows_hvaes_is_refused():
    converter = hvae.get_converter("drums", slice_bars=2)
    converter.attributes = lambda: {"density": ("mine", lambda outputs: np.zeros(len(outputs)))}
    with pytest.raises(HvaeError, match="defines attribute 'density', which hvae measures itself"):
        attributes_of(converter)


def gmd_test_windows(gmd_dir: Path, converter, count: int, seed: int = 0) -> np.ndarray:
    """``count`` 4-bar windows of the GMD's test split (info.csv), from beats in 4/4, chosen with ``seed``."""
    import csv

    with open(gmd_dir / "info.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test" and r["time_signature"] == "4-4"]
    rng = np.random.default_rng(seed)
    windows = []
    for row in rng.permutation(rows):
        examples = converter.to_tensors(gmd_dir / row["midi_filename"])
        if examples:
            windows.append(examples[rng.integers(len(examples))].inputs)
        if len(windows) == count:
            return np.stack(windows)
    raise AssertionError("too few test windows")


def test_the_shipped_drum_models_density_vector_raises_the_density_monotonically(gmd_dir, tmp_path):
    """The issue's bar: a density sweep from -1.5 to +1.5 (7 steps) on 20 test-split inputs raises the
    hits per bar with a mean Spearman rho of at least 0.9, and moves the density more than any other
    attribute (each measured in units of its quartile spread); through ``hvae transform`` on one file."""
    loaded = hvae.open_run("gmd-drums-4bar")
    vectors = AttributeVectors.load(loaded.dir.attributes_file)
    vectors.check_model(loaded, "the shipped vectors")
    converter = loaded.converter.for_user_input()
    inputs = torch.from_numpy(gmd_test_windows(gmd_dir, converter, 20))
    scales = np.linspace(-1.5, 1.5, 7)
    rho, travel = [], {name: [] for name in vectors.vectors}
    with torch.no_grad():
        mu, _ = loaded.model.encode(inputs, torch.full((len(inputs),), inputs.shape[1]))
        for code in mu:
            z = code[None] + torch.from_numpy(scales[:, None] * vectors["density"].vector[None]).float()
            measured = measure_attributes(converter, loaded.model.decode(z, temperature=0.0).numpy())
            rho.append(np.nan_to_num(EXPERIMENT.spearman(scales, measured["density"])))  # 0 where it stays
            for name, v in vectors.vectors.items():
                travel[name].append((np.nanmean(measured[name][-2:]) - np.nanmean(measured[name][:2]))
                                    / (v.top - v.bottom))
    assert np.mean(rho) >= 0.9
    moved = {name: abs(np.nanmean(values)) for name, values in travel.items()}
    assert max(moved, key=moved.get) == "density"
    beat = next(p for p in sorted(gmd_dir.rglob("*_beat_4-4.mid")) if "eval_session" in str(p))
    result = invoke("transform", "gmd-drums-4bar", beat, "--sweep", "density=-1.5:1.5:7", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*-density*.mid"))) == 7
