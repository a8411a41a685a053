"""Bad MIDI never crashes hvae: every input of the bad corpus (tests/badmidi.py) through every converter.

Spec: ``convert`` returns examples, or raises ``MidiReadError`` (not readable MIDI; the message
names the file) or ``ConversionError`` (readable, nothing usable; the message says why), each
in one line. ``to_tensors`` returns a list or raises ``MidiReadError``. Nothing else escapes.
Where the reference has an answer, hvae gives it: 3/4 and 6/8 are refused for their 12 steps a
bar, drums and melodies are cut where the tempo or the meter changes and converted piece by
piece, grooves are refused. ``hvae data prepare`` skips every bad file by name with its reason.
Each conversion of the corpus runs once per module (the ``outcome`` fixture); the tests look at it.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

import hvae
from hvae.errors import ConversionError, MidiReadError
from hvae.interfaces import Example
from hvae.music import MAX_STEPS, read_midi
from badmidi import BAD_INPUTS, BEAT, DEMO_DIR, HUGE_NOTES, OTHER_BEAT, OTHER_TUNE, TUNE, write_bad_corpus

CONVERTERS = {"drums": {"slice_bars": 4}, "groove": {"split_bars": 4}, "melody": {"slice_bars": 4}}
HUGE = "hundred-thousand-notes.mid"
ALL = [bad.name for bad in BAD_INPUTS]
WHAT = {bad.name: bad.what for bad in BAD_INPUTS}
READABLE = [bad.name for bad in BAD_INPUTS if bad.readable]
UNREADABLE = [bad.name for bad in BAD_INPUTS if not bad.readable]
HVAE = str(Path(sys.executable).parent / "hvae")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one call did: examples, or the exception it raised; and how long it took."""

    examples: list | None
    error: Exception | None
    seconds: float

    def describe(self) -> str:
        if self.error is None:
            return f"{len(self.examples)} examples"
        return "".join(traceback.format_exception(self.error))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_bad_corpus(tmp_path_factory.mktemp("bad-midi"))


@pytest.fixture(scope="module")
def outcome(corpus):
    """``outcome(converter, name, method)``: what ``method`` ("convert" or "to_tensors") of the
    4-bar converter did on corpus input ``name``, computed once per module."""
    done: dict[tuple[str, str, str], Outcome] = {}

    def run(converter: str, name: str, method: str = "convert") -> Outcome:
        key = (converter, name, method)
        if key not in done:
            call = getattr(hvae.get_converter(converter, **CONVERTERS[converter]), method)
            started = time.perf_counter()
            try:
                examples, error = call(corpus[name]), None
            except Exception as exc:
                examples, error = None, exc
            done[key] = Outcome(examples, error, time.perf_counter() - started)
        return done[key]

    return run


def reason(result: Outcome, converter: str) -> str:
    assert isinstance(result.error, ConversionError), f"{converter}: {result.describe()}"
    return str(result.error)


def pitches(converter: str, example: Example) -> set[int]:
    """The pitches of one example, decoded to MIDI."""
    midi = hvae.get_converter(converter, **CONVERTERS[converter]).from_tensors(example.outputs)
    return {note.pitch for note in read_midi(midi).notes}


def pitch_set(part: dict | tuple) -> set[int]:
    """The pitches of a beat (step -> pitches) or a tune (pitches) of the corpus."""
    return {p for hits in part.values() for p in hits} if isinstance(part, dict) else set(part)


# --- reading --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", UNREADABLE)
def test_unreadable_inputs_raise_midi_read_error_naming_the_file_in_one_line(corpus, name):
    with pytest.raises(MidiReadError) as raised:
        read_midi(corpus[name])
    message = str(raised.value)
    assert message.startswith(f"{corpus[name]}: ") and "\n" not in message


@pytest.mark.parametrize("name", [name for name in READABLE if name != HUGE])  # HUGE: the next test
def test_readable_inputs_read_without_error(corpus, name):
    read_midi(corpus[name])


def test_the_huge_input_holds_100_000_notes(corpus):
    assert len(read_midi(corpus[HUGE]).notes) == HUGE_NOTES


# --- the contract, for every input and converter --------------------------------------------------------------------

@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize("name", ALL)
def test_convert_returns_examples_or_raises_a_one_line_hvae_error(outcome, corpus, converter, name):
    result = outcome(converter, name)
    if result.error is None:
        c = hvae.get_converter(converter, **CONVERTERS[converter])
        assert result.examples and all(isinstance(e, Example) and e.inputs.shape == (c.steps, c.input_depth)
                                       and e.outputs.shape == (c.steps, c.output_depth) for e in result.examples)
    else:
        assert isinstance(result.error, (MidiReadError, ConversionError)), f"{WHAT[name]}: {result.describe()}"
        message = str(result.error)
        assert message and "\n" not in message
        assert message.startswith(f"{corpus[name]}: ") or not isinstance(result.error, MidiReadError)


@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize("name", ALL)
def test_only_unreadable_inputs_give_a_read_error(outcome, converter, name):
    readable = next(bad.readable for bad in BAD_INPUTS if bad.name == name)
    assert isinstance(outcome(converter, name).error, MidiReadError) != readable


@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize("name", [name for name in ALL if name != HUGE])
def test_to_tensors_returns_the_examples_or_an_empty_list_or_raises_midi_read_error(outcome, converter, name):
    converted, result = outcome(converter, name), outcome(converter, name, "to_tensors")
    if isinstance(converted.error, MidiReadError):
        assert isinstance(result.error, MidiReadError), result.describe()
    else:
        assert result.error is None, result.describe()
        assert len(result.examples) == (0 if converted.error else len(converted.examples))


# --- what the reference would say -----------------------------------------------------------------------------------

@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize("name, meter", [("waltz-3-4.mid", "3/4"), ("jig-6-8.mid", "6/8")])
def test_three_four_and_six_eight_are_refused_for_their_12_steps_per_bar(outcome, converter, name, meter):
    assert reason(outcome(converter, name), converter) == f"{meter} time: 12 steps per bar, 16 needed"


@pytest.mark.parametrize("converter, before, after", [("drums", BEAT, OTHER_BEAT), ("melody", TUNE, OTHER_TUNE)])
def test_a_tempo_change_cuts_the_file_and_each_side_gives_its_own_windows(outcome, converter, before, after):
    windows = [pitches(converter, e) for e in outcome(converter, "tempo-change.mid").examples]
    from_before = [w for w in windows if w <= pitch_set(before)]
    from_after = [w for w in windows if w <= pitch_set(after)]
    assert from_before and from_after and len(from_before) + len(from_after) == len(windows)


def test_groove_refuses_a_tempo_change(outcome):
    assert reason(outcome("groove", "tempo-change.mid"), "groove") == "tempo change from 120.0 qpm to 90.0 qpm"


@pytest.mark.parametrize("converter, before", [("drums", BEAT), ("melody", TUNE)])
def test_a_meter_change_to_3_4_keeps_the_windows_of_the_4_4_part(outcome, converter, before):
    windows = [pitches(converter, e) for e in outcome(converter, "meter-change.mid").examples]
    assert windows and all(w <= pitch_set(before) for w in windows)


def test_groove_refuses_a_meter_change(outcome):
    assert reason(outcome("groove", "meter-change.mid"), "groove") == "time-signature change from 4/4 to 3/4"


@pytest.mark.parametrize("converter, expected", [("drums", "no notes"),
                                                 ("groove", "no drum notes on MIDI channel 10"),
                                                 ("melody", "no notes")])
@pytest.mark.parametrize("name", ["no-notes.mid", "zero-length-notes.mid", "negative-length-notes.mid"])
def test_inputs_without_a_sounding_note_say_so(outcome, converter, expected, name):
    assert reason(outcome(converter, name), converter) == expected


@pytest.mark.parametrize("converter", ["drums", "groove"])
def test_piano_alone_gives_no_drums(outcome, converter):
    assert reason(outcome(converter, "only-piano.mid"), converter) == "no drum notes on MIDI channel 10"


def test_piano_alone_gives_melodies(outcome):
    assert outcome("melody", "only-piano.mid").examples


@pytest.mark.parametrize("converter", CONVERTERS)
def test_overlapping_notes_of_one_pitch_still_convert(outcome, converter):
    assert outcome(converter, "overlapping-notes.mid").examples


@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize("name, expected", [
    ("zero-numerator.mid", "time signature 0/4: numerator is 0"),
    ("absurd-denominator.mid", f"4/{2**255} time: {64 / 2**255:g} steps per bar, 16 needed"),
])
def test_impossible_time_signatures_are_refused(outcome, converter, name, expected):
    assert reason(outcome(converter, name), converter) == expected


@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize("name", ["absurd-delta.mid", "absurd-delta-coarse.mid"])
def test_notes_millions_of_steps_away_are_refused_at_once(outcome, converter, name):
    result = outcome(converter, name)
    assert reason(result, converter).endswith(f"; at most {MAX_STEPS:,} steps are converted")
    assert result.seconds < 5


def test_ticks_beyond_ten_billion_are_a_read_error(outcome):
    assert "largest tick 10737433200 is absurd" in str(outcome("drums", "absurd-ticks-beyond-limit.mid").error)


@pytest.mark.parametrize("converter", CONVERTERS)
def test_100_000_notes_convert_in_reasonable_time(outcome, converter):
    result = outcome(converter, HUGE)
    assert result.examples, result.describe()
    assert result.seconds < 60


@pytest.mark.parametrize("name, message", [
    ("directory.mid", "is a directory"),
    ("dangling-link.mid", "no such file"),
    ("empty.mid", "not a readable MIDI file (it ends early: empty or truncated)"),
])
def test_unreadable_paths_say_why(outcome, corpus, name, message):
    assert str(outcome("drums", name).error) == f"{corpus[name]}: {message}"


# --- hvae data prepare ----------------------------------------------------------------------------------------------

def prepare(data: Path, out: Path) -> subprocess.CompletedProcess:
    """``hvae data prepare`` with drums, 4 bars, two workers, every skipped file listed."""
    return subprocess.run([HVAE, "data", "prepare", "--converter", "drums", "-o", "slice_bars=4", "--data", str(data),
                           "--out", str(out), "--workers", "2", "--verbose", "--no-progress"],
                          capture_output=True, text=True, timeout=300)


def test_prepare_names_every_bad_file_with_its_reason_and_converts_the_good_ones(outcome, corpus, tmp_path):
    """Every input but the directory (a folder named like a file is searched like any folder) and
    the link to nothing (its own test below)."""
    data = tmp_path / "data"
    write_bad_corpus(data)
    for source in sorted(DEMO_DIR.rglob("*.mid"))[:2]:
        shutil.copy(source, data / source.name)
    run = prepare(data, tmp_path / "out")
    output = run.stdout + run.stderr
    assert run.returncode == 0 and "Traceback" not in output, output
    for name in ALL:
        error = outcome("drums", name).error
        if error is not None and name not in ("directory.mid", "dangling-link.mid"):
            assert f"    {name}\n" in output and str(error).removeprefix(f"{corpus[name]}: ") in output, name
    converted = 2 + sum(outcome("drums", name).error is None for name in ALL)
    assert re.search(rf"^total +\d+ +{converted} +\d+$", output, re.MULTILINE), output


def test_prepare_names_a_symbolic_link_to_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sorted(DEMO_DIR.rglob("*.mid"))[0], data / "good.mid")
    (data / "dangling-link.mid").symlink_to(tmp_path / "nothing-here.mid")
    run = prepare(data, tmp_path / "out")
    assert run.returncode == 0 and "no such file" in run.stdout and "    dangling-link.mid\n" in run.stdout, run.stdout


def test_prepare_on_unreadable_files_alone_fails_with_one_clear_message(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for bad in BAD_INPUTS:
        if not bad.readable:
            bad.write(data / bad.name)
    run = prepare(data, tmp_path / "out")
    assert run.returncode == 1 and "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    assert run.stderr.startswith("Error: No usable windows: none of the ") and run.stderr.count("\n") == 1
