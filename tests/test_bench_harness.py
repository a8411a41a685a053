"""The same-run benchmark harness (benchmarks/samerun.py): points in fresh processes, the two sides
alternating, medians, ratios against the same-run reference, fractions of the floor, the table.
A fake point script stands in for both sides, so no TensorFlow and no timing is needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import cases  # noqa: E402
import samerun  # noqa: E402

FAKE = Path(__file__).with_name("fake_point.py")
HVAE = samerun.Side("hvae", (sys.executable, str(FAKE), "hvae"))
REFERENCE = samerun.Side("reference", (sys.executable, str(FAKE), "reference"))
CAT_64 = cases.case_of("sample:cat-drums_2bar_small:64")


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch, tmp_path):
    monkeypatch.setattr(cases, "RESULTS", [])
    monkeypatch.setattr(cases, "CONVERSIONS", [])
    monkeypatch.setenv("FAKE_POINT_LOG", str(tmp_path / "calls.log"))
    monkeypatch.delenv("HVAE_REFERENCE_PYTHON", raising=False)
    return tmp_path / "calls.log"


def calls(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()]


def test_the_last_point_result_line_is_read_and_other_output_ignored():
    out = 'loading...\nPOINT_RESULT {"seqs_per_s": 1.0}\nwarning\nPOINT_RESULT {"seqs_per_s": 2.5}\n'
    assert samerun.parse_point_result(out) == {"seqs_per_s": 2.5}
    assert samerun.parse_point_result("no result here\n") is None


def test_rounds_alternate_which_side_goes_first_and_keep_a_points_rounds_together():
    order = [(point, k, side.name) for point, k, side in samerun.schedule(["a", "b"], 3, [HVAE, REFERENCE])]
    assert order == [("a", 0, "hvae"), ("a", 0, "reference"), ("a", 1, "reference"), ("a", 1, "hvae"),
                     ("a", 2, "hvae"), ("a", 2, "reference"),
                     ("b", 0, "hvae"), ("b", 0, "reference"), ("b", 1, "reference"), ("b", 1, "hvae"),
                     ("b", 2, "hvae"), ("b", 2, "reference")]


def test_a_failed_point_is_one_line_with_its_exit_code_and_last_error_line():
    assert samerun.run_point(HVAE, "sample:fail:1", [], 60) == {"error": "exit code 3: last line"}
    killed = samerun.run_point(HVAE, "sample:kill:1", [], 60)["error"]
    assert killed.startswith("exit code -9 (killed: likely out of memory)")


def test_a_run_alternates_processes_and_takes_medians_of_rounds(fresh_results):
    bf16 = cases.case_of("sample:hierdec-mel_16bar:1:bf16")
    failures = samerun.run([CAT_64, bf16], [], [HVAE, REFERENCE], 3, ["--threads", "2"], 60, log=lambda _: None)
    assert failures == []
    made = calls(fresh_results)
    assert [c[:2] for c in made[:6]] == [
        ["hvae", CAT_64.point], ["reference", CAT_64.point], ["reference", CAT_64.point], ["hvae", CAT_64.point],
        ["hvae", CAT_64.point], ["reference", CAT_64.point]]
    # the reference runs float32 only: hvae's bfloat16 case is set against its float32 point
    assert {c[1] for c in made if c[0] == "reference"} == {CAT_64.point, "sample:hierdec-mel_16bar:1"}
    assert made[0][2:] == ["--threads", "2", "--reps", str(CAT_64.rounds)]
    result = cases.RESULTS[0]
    assert (result.value, result.reference, result.floor) == (200, 80, 400)
    assert result.ratio == pytest.approx(2.5)
    assert result.fraction == pytest.approx(0.5)
    assert result.peak_rss == result.reference_peak_rss == 1024 * 1024 * 1024


def test_every_failed_round_is_reported_and_a_case_without_a_figure_shows_failed(fresh_results):
    failing = cases.Case("sample", "fail", 1, rounds=1)
    failures = samerun.run([failing], [], [HVAE], 2, [], 60, log=lambda _: None)
    assert failures == ["hvae sample:fail:1, round 1: exit code 3: last line",
                        "hvae sample:fail:1, round 2: exit code 3: last line"]
    assert cases.RESULTS[0].value is None
    assert "| sample fail-b1 | failed ✗ | not timed |" in "\n".join(cases.table((0, 0, 0), (0, 0, 0)))


def test_a_reference_that_fails_every_round_says_why_in_its_cell_and_hvae_counts_as_ahead(fresh_results):
    cat_1 = cases.case_of("sample:cat-drums_2bar_small:1")
    killed = samerun.Side("reference", (sys.executable, str(FAKE), "oom"))
    samerun.run([cat_1], [], [HVAE, killed], 2, [], 60, log=lambda _: None)
    result = cases.RESULTS[0]
    assert result.reference is None and result.ahead
    assert result.reference_failure.startswith("killed, out of memory (the machine has ")
    assert result.reference_failure.endswith(" GiB), 2 of 2 rounds")
    row = next(line for line in cases.table((0, 0, 0), (0, 0, 0)) if line.startswith("| sample cat-drums"))
    assert "| failed: killed, out of memory (the machine has " in row
    assert samerun.short_error("exit code 3: some traceback line") == "exit code 3"


def test_conversions_run_on_hvaes_side_only(fresh_results):
    samerun.run([], ["groove"], [HVAE, REFERENCE], 3, [], 60, log=lambda _: None)
    assert [c[0] for c in calls(fresh_results)] == ["hvae"] * 3
    assert cases.CONVERSIONS == [cases.Conversion("groove", 1150, 5108, 11.0)]


def test_ratio_fraction_and_target():
    ahead = cases.Result(CAT_64, 170, floor=200, rate=None, reference=100)
    assert (ahead.ratio, ahead.fraction, ahead.meets_target) == (1.7, 0.85, True)
    assert not cases.Result(CAT_64, 170, floor=250, rate=None, reference=100).meets_target  # 68% of the floor
    assert not cases.Result(CAT_64, 170, floor=200, rate=None, reference=180).meets_target  # behind
    alone = cases.Result(CAT_64, 170, floor=200, rate=None)
    assert alone.ratio is None and alone.meets_target
    heavy = cases.case_of("train_step:hierdec-mel_16bar:2")
    assert not cases.Result(heavy, 1, floor=1, rate=None, peak_rss=5e9).meets_target  # over 4 GB


def test_the_table_names_the_machine_and_sets_each_figure_beside_the_references(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n")
    cases.RESULTS.append(cases.Result(CAT_64, 1500, floor=3000, rate=1.93e11, reference=1000))
    heavy = cases.case_of("train_step:hierdec-mel_16bar:64")
    cases.RESULTS.append(cases.Result(heavy, 0.8, floor=1.0, rate=2.2e11, peak_rss=7.3e9, reference=0.64,
                                      reference_peak_rss=18e9))
    cases.CONVERSIONS.append(cases.Conversion("groove", 1150, 5108, 7.5))
    lines = cases.table((2.0, 1.5, 1.0), (2.5, 1.75, 1.0), ("a note",), cpuinfo=str(cpuinfo))
    assert lines[0].startswith("Machine: AMD EPYC 9R14 96-Core Processor, ")
    assert " CPUs, " in lines[0] and " GiB. Load average" in lines[0]
    assert "at start 2.00, 1.50, 1.00; at end 2.50, 1.75, 1.00" in lines[0]
    assert lines[1] == "a note"
    assert ("| sample cat-drums_2bar_small-b64 | 1,500 seq/s | 1,000 seq/s | 1.50× | 3,000 | 50% ✗ | 193 GFLOP/s"
            " |  |") in lines
    assert ("| train hierdec-mel_16bar-b64 | 0.8 ex/s (80.0 s/step) | 0.64 ex/s (100.0 s/step) | 1.25× | 1 | 80% "
            "| 220 GFLOP/s | 7.30 GB (≤ 8); ref. 18.00 GB |") in lines
    assert "| groove | 1150 | 5108 | 7.5 | 153 |" in lines


def test_without_a_reference_environment_one_line_says_so_and_hvae_meets_the_floor_alone(monkeypatch, capsys):
    monkeypatch.setattr(samerun, "hvae_side", lambda: HVAE)
    assert samerun.main(["--only", CAT_64.point, "--rounds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    said = [line for line in out if "not timed: no reference environment" in line]
    assert len(said) == 2  # printed at the start, and with the table
    assert out[0] == said[0] and out[0].endswith("hvae against the floor alone.")
    assert any(line.startswith("Machine: ") for line in out)
    assert any(line.startswith("| sample cat-drums_2bar_small-b64 | 100 seq/s | not timed |") for line in out)


def test_a_generic_cpu_name_gets_its_family_model_and_microarchitecture(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                       "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512bw\n\nprocessor\t: 1\n")
    assert cases.cpu_model(str(cpuinfo)) == "AMD EPYC (family 26 model 2, Zen 5, AVX-512)"
    cpuinfo.write_text("vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
                       "flags\t\t: fpu avx2\n")
    assert cases.cpu_model(str(cpuinfo)) == "AMD EPYC (family 25 model 17, Zen 4)"


def test_a_reference_that_is_not_there_is_named(tmp_path):
    side, note = samerun.reference_side(str(tmp_path / "nowhere" / "python"))
    assert side is None
    assert note == f"Reference: not timed: {tmp_path / 'nowhere' / 'python'} does not exist; hvae against the floor alone."


def test_the_table_is_written_between_the_markers_and_nothing_else_changes(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Benchmarks\nbefore\n{samerun.BEGIN}\nold table\n{samerun.END}\nafter\n")
    samerun.write_block(results, ["| new | table |"])
    assert results.read_text() == f"# Benchmarks\nbefore\n{samerun.BEGIN}\n| new | table |\n{samerun.END}\nafter\n"
    results.write_text("no markers\n")
    with pytest.raises(SystemExit, match="has no <!-- same-run table: begin -->"):
        samerun.write_block(results, [])


def test_the_committed_results_file_has_the_block_the_run_fills():
    text = (BENCHMARKS / "RESULTS.md").read_text()
    assert text.count(samerun.BEGIN) == text.count(samerun.END) == 1
    assert text.index(samerun.BEGIN) < text.index(samerun.END)


def test_hvaes_points_stop_as_the_references_do_after_three_timed_runs_once_the_budget_is_spent():
    import points

    runs = []
    timed = points.timeit(lambda: runs.append(1), warmup=2, reps=30, budget_s=0.0)
    assert (timed["n_timed"], len(runs)) == (3, 5)
    assert points.timeit(lambda: None, warmup=0, reps=7, budget_s=60.0)["n_timed"] == 7
    assert points.timeit(lambda: None, warmup=0, reps=1, budget_s=0.0)["n_timed"] == 1
