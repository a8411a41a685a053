"""``hvae similar``, ``interpolate --grid`` / ``--mode``, ``mean``, ``drumify`` and ``--whole``: issue 22's latent space.

Spec, on real MIDI through the command line with the models in the box: similarity 1 decodes the input's
reconstruction and lower similarity moves further from it; a grid's corners are the reconstructions of
its four files, laid out as magenta.js lays out four inputs, and its files are named by row and column;
the mean is the middle of the interpolation; drumify turns GMD grooves tapped on one key into drums that
keep the taps and use several drums, and refuses a model not trained for it; a 7-bar part comes back
7 bars long, at its tempo, with its onsets.
"""

from __future__ import annotations

import csv
from pathlib import Path

import miditoolkit
import numpy as np
import pytest
import torch

import hvae
from hvae.data import DEMO_DIR
from hvae.generation import LINEAR, SLERP, grid_latents, similar_latents
from clihelp import invoke, one_line_error

FUNK = DEMO_DIR / "drummer1/session1/2_funk_80_beat_4-4.mid"
ROCK = DEMO_DIR / "drummer1/session3/9_rock_135_beat_4-4.mid"
JAZZ = DEMO_DIR / "drummer1/session1/47_jazz_102_beat_4-4.mid"
SAMBA = DEMO_DIR / "drummer1/session1/38_latin-samba_116_beat_4-4.mid"
STEP = 0.25  # quarter notes in a grid step (16th notes)


def printed_paths(result) -> list[Path]:
    assert result.exit_code == 0, result.output
    return [Path(line) for line in result.stdout.splitlines()]


def hits(path: Path) -> set[tuple[int, int]]:
    """(16th-note step, pitch) of every note."""
    midi = miditoolkit.MidiFile(str(path))
    return {(round(n.start / midi.ticks_per_beat / STEP), n.pitch) for i in midi.instruments for n in i.notes}


def onsets(path: Path) -> np.ndarray:
    """Every note's onset, in quarter notes, sorted."""
    midi = miditoolkit.MidiFile(str(path))
    return np.array(sorted(n.start / midi.ticks_per_beat for i in midi.instruments for n in i.notes))


def quarters(path: Path) -> float:
    """The file's length in quarter notes (miditoolkit counts one tick past the last event)."""
    midi = miditoolkit.MidiFile(str(path))
    return (midi.max_tick - 1) / midi.ticks_per_beat


def test_similarity_1_decodes_the_input_s_reconstruction(tmp_path):
    variations = printed_paths(invoke("similar", "gmd-drums-4bar", FUNK, "-n", "2", "--similarity", "1", "-t", "0",
                                      "--out", tmp_path / "s"))
    rebuilt = printed_paths(invoke("reconstruct", "gmd-drums-4bar", FUNK, "--out", tmp_path / "r"))[1]
    assert [p.name for p in variations] == ["2_funk_80_beat_4-4-w0-similar1-00-of-02.mid",
                                            "2_funk_80_beat_4-4-w0-similar1-01-of-02.mid",
                                            "2_funk_80_beat_4-4-w0-similar1-all.mid", "2_funk_80_beat_4-4-w0-similar1.png"]
    assert hits(variations[0]) == hits(variations[1]) == hits(rebuilt)


@pytest.mark.parametrize("mode", [SLERP, LINEAR])
def test_lower_similarity_moves_further_from_the_input(mode, tmp_path):
    rebuilt = hits(printed_paths(invoke("reconstruct", "gmd-drums-4bar", ROCK, "--out", tmp_path / "r"))[1])
    distances = []
    for similarity in ("1", "0.7", "0.3", "0"):
        written = printed_paths(invoke("similar", "gmd-drums-4bar", ROCK, "-n", "4", "--similarity", similarity,
                                       "--mode", mode, "-t", "0", "--seed", "3", "--out", tmp_path / similarity))
        distances.append(np.mean([len(hits(p) ^ rebuilt) for p in written[:4]]))  # hits that differ
    assert distances[0] == 0
    assert distances == sorted(distances) and distances[-1] > distances[1] + 10, distances


def test_linear_similarity_is_magenta_js_s_blend():
    mu = torch.randn(16)
    drawn = torch.randn((3, 16), generator=torch.Generator().manual_seed(5))
    blended = similar_latents(mu, 3, 0.8, LINEAR, torch.Generator().manual_seed(5))
    assert torch.allclose(blended, 0.8 * mu + 0.2 * drawn, atol=1e-6)


def test_a_similarity_outside_0_to_1_is_refused(tmp_path):
    result = invoke("similar", "gmd-drums-4bar", FUNK, "--similarity", "1.5", "--out", tmp_path)
    assert result.exit_code == 2 and "1.5 is not in the range 0.0<=x<=1.0" in result.output


def test_the_linear_grid_is_magenta_js_s_bilinear_grid():
    a, b, c, d = corners = torch.randn(4, 8)
    grid = grid_latents(corners, 3, LINEAR).reshape(3, 3, 8)  # (row, column, Z)
    for r, y in enumerate((0.0, 0.5, 1.0)):
        for col, x in enumerate((0.0, 0.5, 1.0)):
            expected = (1 - y) * (1 - x) * a + y * (1 - x) * b + (1 - y) * x * c + y * x * d
            assert torch.allclose(grid[r, col], expected, atol=1e-6)


def test_a_grid_has_its_files_named_by_row_and_column_and_its_corners_are_the_reconstructions(tmp_path):
    files = (FUNK, ROCK, JAZZ, SAMBA)
    written = printed_paths(invoke("interpolate", "gmd-drums-4bar", *files, "--grid", "3", "-t", "0",
                                   "--out", tmp_path / "g"))
    stem = "2_funk_80_beat_4-4-w0_9_rock_135_beat_4-4-w0_47_jazz_102_beat_4-4-w0_38_latin-samba_116_beat_4-4-w0-grid3"
    assert [p.name for p in written] == [f"{stem}-r{r}c{c}.mid" for r in range(3) for c in range(3)] + [
        f"{stem}-all.mid", f"{stem}.png"]
    cells = {p.name[len(stem) + 1:-4]: p for p in written[:9]}
    for corner, path in zip(("r0c0", "r2c0", "r0c2", "r2c2"), files):  # A top left, B bottom left, C, D
        rebuilt = printed_paths(invoke("reconstruct", "gmd-drums-4bar", path, "--out", tmp_path / corner))[1]
        assert len(hits(rebuilt)) > 10 and hits(cells[corner]) == hits(rebuilt), corner
    assert quarters(written[9]) == 9 * 16  # all cells in a row: nine 4-bar windows


@pytest.mark.parametrize("count", [2, 3, 5])
def test_an_interpolation_of_other_than_2_or_4_files_is_a_one_line_error(count, tmp_path):
    result = invoke("interpolate", "gmd-drums-4bar", *[FUNK] * count, "--grid", "3", "--out", tmp_path)
    assert one_line_error(result) == (f"Error: An interpolation takes 2 files (A to B), or 4 corners with --grid N; "
                                      f"got {count} files with --grid.")


def test_four_files_without_a_grid_size_is_a_one_line_error(tmp_path):
    result = invoke("interpolate", "gmd-drums-4bar", FUNK, ROCK, JAZZ, SAMBA, "--out", tmp_path)
    assert one_line_error(result) == "Error: Four files make a grid: give its size with --grid N (a 5 x 5 grid: --grid 5)."


@pytest.mark.parametrize("mode", [SLERP, LINEAR])
def test_the_mean_is_the_middle_of_the_interpolation(mode, tmp_path):
    mean, picture = printed_paths(invoke("mean", "gmd-drums-4bar", FUNK, ROCK, "--mode", mode, "--out", tmp_path / "m"))
    assert mean.name == "2_funk_80_beat_4-4-w0_mean_9_rock_135_beat_4-4-w0.mid" and picture.suffix == ".png"
    steps = printed_paths(invoke("interpolate", "gmd-drums-4bar", FUNK, ROCK, "--steps", "3", "--mode", mode, "-t", "0",
                                 "--out", tmp_path / "i"))
    assert len(hits(mean)) > 10 and hits(mean) == hits(steps[1])
    assert quarters(mean) == 16


def excerpt(source: Path, out: Path, bars: int, taps: bool = False) -> Path:
    """The first ``bars`` bars of a GMD file, written as hvae writes files; with ``taps``, every onset as a
    note on one key (middle C, channel 1): a rhythm tapped on a keyboard, as played."""
    midi = miditoolkit.MidiFile(str(source))
    end = bars * 4 * midi.ticks_per_beat
    notes = [n for i in midi.instruments for n in i.notes if n.start < end]
    if taps:
        midi.instruments = [miditoolkit.Instrument(0, False, "taps", [miditoolkit.Note(n.velocity, 60, n.start, n.start + 30)
                                                                      for n in sorted(notes, key=lambda n: n.start)])]
    else:
        midi.instruments = [miditoolkit.Instrument(0, True, "drums", notes)]  # without the hi-hat pedal's controls
    midi.max_tick = end
    return hvae.write_midi(midi, out)


def gmd_test_beats(gmd_dir: Path, count: int) -> list[Path]:
    """The first ``count`` 4/4 beats of the GMD test split."""
    with open(gmd_dir / "info.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test" and r["beat_type"] == "beat"
                and r["time_signature"] == "4-4"]
    return [gmd_dir / r["midi_filename"] for r in rows[:count]]


def test_drumify_turns_gmd_grooves_tapped_on_one_key_into_drums_that_keep_the_taps(gmd_dir, tmp_path):
    kept = []
    for k, source in enumerate(gmd_test_beats(gmd_dir, 4)):
        taps = excerpt(source, tmp_path / f"taps{k}.mid", bars=6, taps=True)
        result = invoke("drumify", "gmd-drumify-2bar", taps, "--out", tmp_path / "out")
        as_read, drums, picture = printed_paths(result)
        assert (as_read.name, drums.name, picture.name) == (f"taps{k}-taps.mid", f"taps{k}-drums.mid", f"taps{k}-drums.png")
        assert " taps (a hit within a step of each) with " in result.stderr
        tapped, played = onsets(taps), onsets(drums)
        kept.append(np.mean([np.abs(played - t).min() <= STEP for t in tapped]))
        assert len({pitch for _, pitch in hits(drums)}) >= 3  # several drums
        midi, given = miditoolkit.MidiFile(str(drums)), miditoolkit.MidiFile(str(taps))
        assert quarters(drums) == 24 and midi.tempo_changes[0].tempo == pytest.approx(given.tempo_changes[0].tempo)
    assert min(kept) >= 0.9, kept  # measured: 0.958 to 1.0 of the taps over 8 test files (8 bars each)


def test_drumify_refuses_a_model_not_trained_for_it(tmp_path):
    message = one_line_error(invoke("drumify", "gmd-humanize-2bar", FUNK, "--out", tmp_path))
    assert message.startswith("Error: gmd-humanize-2bar was trained with the groove converter with tapify=False: "
                              "drumify needs a GrooVAE trained with the groove converter's tapify=True")
    message = one_line_error(invoke("drumify", "gmd-drums-4bar", FUNK, "--out", tmp_path))
    assert "gmd-drums-4bar was trained with the converter 'drums': drumify needs" in message


def test_a_7_bar_part_humanized_whole_comes_back_7_bars_at_its_tempo_with_its_onsets(gmd_dir, tmp_path):
    source = gmd_test_beats(gmd_dir, 1)[0]
    part = excerpt(source, tmp_path / "part.mid", bars=7)
    flat = tmp_path / "flat.mid"
    midi = miditoolkit.MidiFile(str(part))
    step = midi.ticks_per_beat // 4
    midi.instruments[0].notes = [miditoolkit.Note(90, n.pitch, round(n.start / step) * step, round(n.start / step) * step
                                                  + step // 2) for n in midi.instruments[0].notes
                                 if round(n.start / step) * step < 28 * midi.ticks_per_beat]  # quantised, flat
    midi.max_tick = 28 * midi.ticks_per_beat  # miditoolkit reads one tick past the last event
    hvae.write_midi(midi, flat)
    given, humanized, _ = printed_paths(invoke("humanize", "gmd-humanize-2bar", flat, "--whole", "--out", tmp_path / "h"))
    assert (given.name, humanized.name) == ("flat-input.mid", "flat-humanized.mid")
    assert quarters(humanized) == quarters(given) == 28
    out, original = miditoolkit.MidiFile(str(humanized)), miditoolkit.MidiFile(str(flat))
    assert out.tempo_changes[0].tempo == pytest.approx(original.tempo_changes[0].tempo)
    assert [(t.numerator, t.denominator) for t in out.time_signature_changes] == [(4, 4)]
    played, flat_onsets = onsets(humanized), onsets(flat)
    assert played.max() > 24  # the seventh bar is played too
    assert np.mean([np.abs(flat_onsets - t).min() <= STEP for t in played]) >= 0.95
    assert np.mean([np.abs(played - t).min() <= STEP for t in flat_onsets]) >= 0.95


def test_reconstruct_whole_gives_a_file_of_the_input_s_length(gmd_dir, tmp_path):
    part = excerpt(gmd_test_beats(gmd_dir, 1)[0], tmp_path / "part.mid", bars=7)
    original, rebuilt, _ = printed_paths(invoke("reconstruct", "gmd-drums-4bar", part, "--whole", "--out", tmp_path))
    assert (original.name, rebuilt.name) == ("part-original.mid", "part-reconstruction.mid")
    assert quarters(rebuilt) == quarters(original) == 28 and onsets(rebuilt).max() > 16  # past the first window


def test_window_and_whole_together_are_a_one_line_error(tmp_path):
    result = invoke("reconstruct", "gmd-drums-4bar", FUNK, "--whole", "--window", "2", "--out", tmp_path)
    assert one_line_error(result) == ("Error: --window K takes one window of each file and --whole all of it: "
                                      "give one of them.")


def test_the_python_api_writes_what_the_command_line_writes(tmp_path):
    run = hvae.open_run("gmd-drums-4bar")
    written = hvae.similar_file(run, FUNK, tmp_path / "api", n=2, similarity=0.5, seed=7)
    printed = printed_paths(invoke("similar", "gmd-drums-4bar", FUNK, "-n", "2", "--similarity", "0.5", "--seed", "7",
                                   "--out", tmp_path / "cli"))
    assert [p.read_bytes() for p in written.midi] == [p.read_bytes() for p in printed[:3]]
