"""MIDI a DAW takes as it is: what reconstruct, interpolate, humanize and sample write.

Spec: a file written from a user's file keeps its tempo and time signature (the "-original" file too);
``--qpm`` sets another. Every file lasts whole bars: a 4-bar window is a 4-bar file, to the tick, for
two independent readers (mido's length, pretty_midi's end time), which also agree on its tempo and
notes. Every track has a name. Drums on a channel other than 10 are read with ``--drum-channel any``,
and without it the reason names channel 10 and that option. No file is ever replaced: a name in use
gets a number, and two samplers writing into one folder at the same moment keep all their files.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import miditoolkit
import mido
import numpy as np
import pytest

pretty_midi = pytest.importorskip("pretty_midi", reason="pretty_midi (the test extra) reads the files back")

from clihelp import invoke, one_line_error  # noqa: E402

BARS = 4  # the models' windows
QUARTERS_PER_BAR = 4


@pytest.fixture(scope="module")
def gmd_file(gmd_dir):
    """``gmd_file(qpm)``: the first 4/4 beat of the GMD whose info.csv says it is at ``qpm``."""
    with open(gmd_dir / "info.csv", newline="") as f:
        rows = list(csv.DictReader(f))

    def pick(qpm: int) -> Path:
        row = next(r for r in rows if int(r["bpm"]) == qpm and r["beat_type"] == "beat"
                   and r["time_signature"] == "4-4")
        return gmd_dir / row["midi_filename"]

    return pick


def printed(result) -> list[Path]:
    assert result.exit_code == 0, result.output
    return [Path(line) for line in result.stdout.splitlines()]


def mido_tempo(path: Path) -> float:
    """The file's one tempo in quarter notes per minute, as mido reads it."""
    tempos = [m.tempo for t in mido.MidiFile(path).tracks for m in t if m.type == "set_tempo"]
    assert len(tempos) == 1, tempos
    return mido.tempo2bpm(tempos[0])


def pm_tempo(path: Path) -> float:
    times, tempos = pretty_midi.PrettyMIDI(str(path)).get_tempo_changes()
    assert list(times) == [0.0], times
    return float(tempos[0])


def input_tempo(path: Path) -> float:
    return mido_tempo(path)


def seconds(quarters: float, qpm: float) -> float:
    return quarters * 60.0 / qpm


def assert_lasts(path: Path, bars: int, qpm: float) -> None:
    """``path`` lasts exactly ``bars`` 4/4 bars at ``qpm`` in mido and in pretty_midi, and every track
    ends on that tick."""
    midi = mido.MidiFile(path)
    expected = seconds(bars * QUARTERS_PER_BAR, qpm)
    assert midi.length == pytest.approx(expected, abs=1e-6)
    assert pretty_midi.PrettyMIDI(str(path)).get_end_time() == pytest.approx(expected, abs=1e-6)
    assert {sum(m.time for m in track) for track in midi.tracks} == {bars * QUARTERS_PER_BAR * midi.ticks_per_beat}


def mido_notes(path: Path) -> list[tuple[float, int, int]]:
    """(onset seconds to 0.1 ms, pitch, velocity) of every note, by mido's clock."""
    found, now = [], 0.0
    for message in mido.MidiFile(path):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            found.append((round(now, 4), message.note, message.velocity))
    return sorted(found)


def pm_notes(path: Path) -> list[tuple[float, int, int]]:
    return sorted((round(n.start, 4), n.pitch, n.velocity)
                  for i in pretty_midi.PrettyMIDI(str(path)).instruments for n in i.notes)


@pytest.mark.parametrize("qpm", [90, 138])
def test_reconstruct_keeps_the_inputs_tempo_in_the_original_and_the_reconstruction(trained_drums, gmd_file,
                                                                                    tmp_path, qpm):
    source = gmd_file(qpm)
    original, rebuilt, _ = printed(invoke("reconstruct", trained_drums, source, "--out", tmp_path))
    for path in (original, rebuilt):
        assert mido_tempo(path) == pytest.approx(input_tempo(source), abs=1e-6)
        assert pm_tempo(path) == pytest.approx(qpm, abs=0.01)


@pytest.mark.parametrize("qpm", [90, 138])
def test_reconstructed_files_are_exactly_four_bars_for_mido_and_pretty_midi(trained_drums, gmd_file, tmp_path, qpm):
    original, rebuilt, _ = printed(invoke("reconstruct", trained_drums, gmd_file(qpm), "--out", tmp_path))
    for path in (original, rebuilt):
        assert_lasts(path, BARS, input_tempo(gmd_file(qpm)))


@pytest.mark.parametrize("qpm", [90, 138])
def test_mido_and_pretty_midi_read_the_same_notes(trained_drums, gmd_file, tmp_path, qpm):
    original, rebuilt, _ = printed(invoke("reconstruct", trained_drums, gmd_file(qpm), "--out", tmp_path))
    assert mido_notes(original)
    for path in (original, rebuilt):
        assert mido_notes(path) == pm_notes(path)


def test_the_time_signature_of_the_input_is_written(trained_drums, gmd_file, tmp_path):
    original, rebuilt, _ = printed(invoke("reconstruct", trained_drums, gmd_file(90), "--out", tmp_path))
    for path in (original, rebuilt):
        signatures = [(s.numerator, s.denominator) for s in pretty_midi.PrettyMIDI(str(path)).time_signature_changes]
        assert signatures == [(4, 4)]


def test_qpm_overrides_the_inputs_tempo(trained_drums, gmd_file, tmp_path):
    original, rebuilt, _ = printed(invoke("reconstruct", trained_drums, gmd_file(138), "--qpm", 100,
                                          "--out", tmp_path))
    for path in (original, rebuilt):
        assert pm_tempo(path) == pytest.approx(100, abs=0.01)
        assert_lasts(path, BARS, 100)


def test_interpolate_writes_at_the_first_files_tempo_each_step_four_bars_and_all_of_them_in_a_row(
        trained_drums, gmd_file, tmp_path):
    start, end = gmd_file(90), gmd_file(138)
    result = invoke("interpolate", trained_drums, start, end, "--steps", 3, "--out", tmp_path)
    *steps, everything, _ = printed(result)
    assert f"is at {input_tempo(end):g} qpm" in result.stderr
    for path in steps:
        assert pm_tempo(path) == pytest.approx(90, abs=0.01)
        assert_lasts(path, BARS, input_tempo(start))
    assert_lasts(everything, 3 * BARS, input_tempo(start))


def test_humanize_keeps_the_inputs_tempo_and_length(trained_humanizer, gmd_file, tmp_path):
    source = gmd_file(138)
    given, humanized, _ = printed(invoke("humanize", trained_humanizer, source, "--out", tmp_path))
    for path in (given, humanized):
        assert pm_tempo(path) == pytest.approx(138, abs=0.01)
        assert_lasts(path, BARS, input_tempo(source))


@pytest.mark.parametrize("qpm", [90, 138])
def test_samples_are_written_at_qpm_and_last_exactly_four_bars(trained_drums, tmp_path, qpm):
    for path in printed(invoke("sample", trained_drums, "-n", 3, "--qpm", qpm, "--out", tmp_path)):
        assert pm_tempo(path) == pytest.approx(qpm, abs=0.01)
        assert_lasts(path, BARS, mido_tempo(path))
        assert mido_notes(path) == pm_notes(path)


def test_every_track_is_named_drums_for_drum_models(trained_drums, gmd_file, tmp_path):
    written = printed(invoke("reconstruct", trained_drums, gmd_file(90), "--out", tmp_path / "r"))[:2]
    written += printed(invoke("sample", trained_drums, "-n", 2, "--out", tmp_path / "s"))
    for path in written:
        assert [i.name for i in pretty_midi.PrettyMIDI(str(path)).instruments] == ["drums"]


def test_a_melody_track_is_named_by_its_general_midi_program(trained_melody, tmp_path):
    for path in printed(invoke("sample", trained_melody, "-n", 3, "--out", tmp_path)):
        instruments = pretty_midi.PrettyMIDI(str(path)).instruments
        assert [i.name for i in instruments] == ["Acoustic Grand Piano"] * len(instruments)
        assert_lasts(path, BARS, 120)


def on_channel_1(source: Path, out: Path) -> Path:
    """``source`` with its drum channel's messages moved to channel 1, as many DAWs export drums."""
    midi = mido.MidiFile(source)
    for track in midi.tracks:
        for k, message in enumerate(track):
            if not message.is_meta and getattr(message, "channel", None) == 9:
                track[k] = message.copy(channel=0)
    midi.save(out)
    return out


def test_drums_on_channel_1_are_refused_with_a_reason_naming_channel_10_and_the_option(trained_drums, gmd_file,
                                                                                       tmp_path):
    moved = on_channel_1(gmd_file(90), tmp_path / "channel-1.mid")
    message = one_line_error(invoke("reconstruct", trained_drums, moved, "--out", tmp_path))
    assert message.endswith("no drum notes on MIDI channel 10 (drums on another channel: --drum-channel any)")


def test_drum_channel_any_reads_channel_1_drums_as_channel_10_ones_are_read(trained_drums, gmd_file, tmp_path):
    moved = on_channel_1(gmd_file(90), tmp_path / "channel-1.mid")
    as_read, _, _ = printed(invoke("reconstruct", trained_drums, moved, "--drum-channel", "any", "--out",
                                   tmp_path / "moved"))
    expected, _, _ = printed(invoke("reconstruct", trained_drums, gmd_file(90), "--out", tmp_path / "kept"))
    assert mido_notes(as_read) == mido_notes(expected) != []


def test_drum_channel_any_is_refused_for_a_melody_model(trained_melody, maestro_file, tmp_path):
    message = one_line_error(invoke("reconstruct", trained_melody, maestro_file, "--drum-channel", "any",
                                    "--out", tmp_path))
    assert message == ("Error: --drum-channel any reads every note as a drum hit; converter 'melody' does not "
                       "read drums.")


def test_a_second_reconstruction_into_the_same_folder_gets_new_names_and_leaves_the_first(trained_drums, gmd_file,
                                                                                          tmp_path):
    first = printed(invoke("reconstruct", trained_drums, gmd_file(90), "--out", tmp_path))
    before = {path: path.read_bytes() for path in first}
    second = printed(invoke("reconstruct", trained_drums, gmd_file(90), "--out", tmp_path))
    # the window as read is written once and named again; the reconstruction and picture are new
    assert second[0] == first[0] and [p.name for p in second[1:]] == [p.name.replace("-w0-", "-w0-2-")
                                                                       for p in first[1:]]
    assert {path: path.read_bytes() for path in first} == before


def test_an_interpolation_written_twice_keeps_both(trained_drums, gmd_file, tmp_path):
    args = ("interpolate", trained_drums, gmd_file(90), gmd_file(138), "--steps", 2, "--out", tmp_path)
    first, second = printed(invoke(*args)), printed(invoke(*args))
    assert not set(first) & set(second)
    assert all(p.exists() for p in first + second)


def sampler(run: Path, out: Path, seed: int) -> subprocess.Popen:
    """``hvae sample`` in its own process, at a fixed time stamp (SOURCE_DATE_EPOCH): every sampler
    started with it tries the same file names."""
    environment = {**os.environ, "SOURCE_DATE_EPOCH": "1764547200"}
    return subprocess.Popen([sys.executable, "-m", "hvae.cli", "sample", str(run), "-n", "5", "--seed", str(seed),
                             "--device", "cpu", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=environment, text=True)


def test_two_samplers_into_one_folder_at_once_keep_all_their_files(trained_drums, tmp_path):
    processes = [sampler(trained_drums, tmp_path / "shared", seed) for seed in (1, 2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    written = [[Path(line) for line in out.splitlines()] for out, _ in outputs]
    assert len(set(written[0] + written[1])) == 10
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == sorted(p.name for p in written[0] + written[1])
    for seed, paths in zip((1, 2), written):  # each printed path holds what that sampler drew
        alone = sampler(trained_drums, tmp_path / f"alone-{seed}", seed)
        out, err = alone.communicate(timeout=120)
        assert alone.returncode == 0, err
        assert [p.read_bytes() for p in paths] == [Path(line).read_bytes() for line in out.splitlines()]


def late_last_hits(converter, bars: int):
    """Groove outputs: a kick and a snare on every beat, and on the window's last step a hit as late as the
    converter writes (offset -1: half a step after the grid), whose note sounds past the window's end."""
    steps, drums = bars * 16, converter.num_drums
    outputs = np.zeros((steps, 3 * drums), np.float32)
    outputs[::4, 0] = outputs[::4, 1] = 1.0  # hits
    outputs[::4, drums] = outputs[::4, drums + 1] = 0.8  # velocities
    outputs[-1, 2] = 1.0
    outputs[-1, drums + 2] = 0.5
    outputs[-1, 2 * drums + 2] = -1.0  # late
    return outputs


@pytest.mark.parametrize("bars", [2, 4])
def test_a_groove_whose_last_hit_is_late_is_written_exactly_its_bars_long(tmp_path, bars):
    import hvae

    converter = hvae.get_converter("groove", split_bars=bars)
    midi = converter.from_tensors(late_last_hits(converter, bars))
    assert max(n.end for i in midi.instruments for n in i.notes) > midi.max_tick  # the reference's note spills
    path = hvae.write_midi(midi, tmp_path / "late.mid")  # the Python API's writer, the CLI's too
    assert_lasts(path, bars, 120)
    last = max(pm_notes(path))
    assert last[0] < seconds(bars * QUARTERS_PER_BAR, 120)  # the late hit is kept, cut at the end


def test_groove_samples_are_whole_loops_however_late_their_last_hits(trained_humanizer, tmp_path):
    paths = printed(invoke("sample", trained_humanizer, "-n", 12, "--seed", 3, "--out", tmp_path))
    for path in paths:
        assert_lasts(path, BARS, 120)


def test_a_gmd_file_cut_short_drops_its_controllers_past_the_end(gmd_file, tmp_path):
    """The GMD's hi-hat pedal (controller 4) goes on past a cut: what lies after the end is left out,
    and the file is exactly its bars, at its tempo."""
    import hvae

    source = gmd_file(138)
    midi = miditoolkit.MidiFile(str(source))
    two_bars = 2 * QUARTERS_PER_BAR * midi.ticks_per_beat
    assert any(c.time > two_bars for i in midi.instruments for c in i.control_changes)
    midi.max_tick = two_bars
    path = hvae.write_midi(midi, tmp_path / "cut.mid")
    assert_lasts(path, 2, mido_tempo(source))
    assert all(c.time <= two_bars for i in miditoolkit.MidiFile(str(path)).instruments for c in i.control_changes)


def test_a_file_read_and_written_again_keeps_its_bars(trained_drums, tmp_path):
    """miditoolkit reads a file's length as one tick past its last event; a file that ends on its bar
    line, read and written again, still lasts its bars (not one more)."""
    import hvae

    first = printed(invoke("sample", trained_drums, "-n", 1, "--seed", 1, "--out", tmp_path))[0]
    again = hvae.write_midi(miditoolkit.MidiFile(str(first)), tmp_path / "again.mid")
    assert_lasts(again, BARS, 120)
    assert mido_notes(again) == mido_notes(first)
