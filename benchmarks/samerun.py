"""hvae and the reference TensorFlow MusicVAE timed alternately in the same run: ``make bench``.

    python benchmarks/samerun.py [--reference VENV_OR_PYTHON] [--rounds 3] [--only sample:groovae_4bar:64]
                                 [--write benchmarks/RESULTS.md]

For each case of cases.py, in rounds: round k runs the reference's point (``tf_speed.py --_point``,
``$HVAE_SHARED/reference/speed``) and hvae's (``points.py --_point``), each in a fresh process with
the same threads, warm-up and timed runs; which side goes first alternates from round to round.
Each figure is the median of its rounds, and so is the floor (timed in hvae's process after its
work). The table gives both figures, their ratio, the floor and the fraction of it, with the
machine. The reference environment is ``--reference`` or ``$HVAE_REFERENCE_PYTHON``; without one
the run says so in one line and reports hvae against the floor alone. Converting the whole GMD has
no reference point (tf_speed.py times sampling and training): hvae's seconds are reported alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import cases
import workloads

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("HVAE_SHARED", HERE.parents[1] / "shared"))
TF_SPEED = SHARED / "reference" / "speed" / "tf_speed.py"
POINTS = HERE / "points.py"
MARKER = "POINT_RESULT "
BEGIN, END = "<!-- same-run table: begin -->", "<!-- same-run table: end -->"
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Side:
    name: str  # "hvae" or "reference"
    command: tuple[str, ...]  # a point runs as command + ("--_point", POINT, timing options...)
    version: str = ""  # what runs, for the table


def parse_point_result(stdout: str) -> dict | None:
    """The JSON of the last ``POINT_RESULT {json}`` line of ``stdout``, or None."""
    found = None
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            found = json.loads(line[len(MARKER):])
    return found


def run_point(side: Side, point: str, options: list[str], timeout_s: float) -> dict:
    """One point in a fresh process; on failure ``{"error": one line}``."""
    try:
        p = subprocess.run([*side.command, "--_point", point, *options], capture_output=True, text=True,
                           timeout=timeout_s, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:g} s"}
    result = parse_point_result(p.stdout)
    if result is not None and "error" not in result:
        return result
    if result is not None:
        return {"error": str(result["error"])}
    killed = " (killed: likely out of memory)" if p.returncode in (-9, 137) else ""
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit code {p.returncode}{killed}: {tail}"}


def schedule(points: list[str], rounds: int, sides: list[Side]) -> list[tuple[str, int, Side]]:
    """(point, round, side) in running order: a point's rounds together, the first side alternating."""
    order = []
    for point in points:
        for k in range(rounds):
            for side in sides if k % 2 == 0 else sides[::-1]:
                order.append((point, k, side))
    return order


def median_of(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def _bytes(mib: float | None) -> float | None:
    return None if mib is None else mib * MIB


def summarise(case: cases.Case, hvae: list[dict], reference: list[dict],
              reference_errors: list[str] = ()) -> cases.Result:
    """The case's row from its rounds (medians over the rounds that succeeded); where the reference
    failed every round, why (the first round's error, shortened)."""
    key = "seqs_per_s" if case.work == "sample" else "examples_per_s"
    failure = None
    if not reference and reference_errors:
        failure = f"{short_error(reference_errors[0])}, {len(reference_errors)} of {len(reference_errors)} rounds"
    return cases.Result(case, median_of(hvae, key), floor=median_of(hvae, "floor_per_s"),
                        rate=median_of(hvae, "floor_flops_per_s"), peak_rss=_bytes(median_of(hvae, "peak_rss_mb")),
                        reference=median_of(reference, key),
                        reference_peak_rss=_bytes(median_of(reference, "peak_rss_mb")), reference_failure=failure)


def short_error(error: str) -> str:
    """A round's error as a table cell: a kill by the kernel's out-of-memory killer says so and the
    machine's memory; another error keeps its first part (the exit code), not the process's last line."""
    if "likely out of memory" in error:
        memory = cases.machine_memory()
        return "killed, out of memory" + (f" (the machine has {memory})" if memory else "")
    return error.split(":", 1)[0]


def _version(python: str, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    p = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return f"{package} {p.stdout.strip()}" if p.returncode == 0 else f"{package} (version unknown)"


def reference_side(reference: str | None, tf_speed: Path = TF_SPEED) -> tuple[Side | None, str]:
    """The reference's side from a virtual environment or its Python, or None and the one line that says why."""
    if not reference:
        return None, ("Reference: not timed: no reference environment (set HVAE_REFERENCE_PYTHON or "
                      "make bench REFERENCE=VENV; ../shared/reference/speed/setup.sh VENV builds one); "
                      "hvae against the floor alone.")
    python = Path(reference) / "bin" / "python" if Path(reference).is_dir() else Path(reference)
    for needed in (python, tf_speed):
        if not needed.exists():
            return None, f"Reference: not timed: {needed} does not exist; hvae against the floor alone."
    side = Side("reference", (str(python), str(tf_speed)), _version(str(python), "tensorflow"))
    return side, f"Reference: {side.version} ({python}), {tf_speed.name}, timed in the same run."


def hvae_side() -> Side:
    return Side("hvae", (sys.executable, str(POINTS)), _version(sys.executable, "torch"))


def _shown(result: dict) -> str:
    if "error" in result:
        return "error: " + result["error"]
    for key, unit in (("seqs_per_s", "seq/s"), ("examples_per_s", "ex/s"), ("seconds", "s")):
        if key in result:
            return f"{result[key]:,.2f} {unit}"
    return json.dumps(result)


def run(selected: list[cases.Case], converters: list[str], sides: list[Side], rounds: int, options: list[str],
        timeout_s: float, log=print) -> list[str]:
    """Times every case and conversion, appends them to cases.RESULTS and cases.CONVERSIONS; returns the
    failures, one line each."""
    failures = []
    by_point: dict[tuple[str, str], list[dict]] = {}
    errors: dict[tuple[str, str], list[str]] = {}
    points = {c.point: c for c in selected}
    jobs = schedule(list(points), rounds, sides) + schedule([f"convert:{c}" for c in converters], rounds, sides[:1])
    for point, k, side in jobs:
        side_point = points[point].reference_point if point in points and side.name == "reference" else point
        reps = ["--reps", str(points[point].rounds)] if point in points else []
        result = run_point(side, side_point, options + reps, timeout_s)
        log(f"round {k + 1}/{rounds} {side.name:<9} {side_point}: {_shown(result)}")
        if "error" in result:
            failures.append(f"{side.name} {side_point}, round {k + 1}: {result['error']}")
            errors.setdefault((point, side.name), []).append(result["error"])
        else:
            by_point.setdefault((point, side.name), []).append(result)
    for point, case in points.items():
        cases.RESULTS.append(summarise(case, by_point.get((point, "hvae"), []), by_point.get((point, "reference"), []),
                                       errors.get((point, "reference"), [])))
    for converter in converters:
        done = by_point.get((f"convert:{converter}", "hvae"))
        if done:
            cases.CONVERSIONS.append(cases.Conversion(converter, done[0]["files"], done[0]["windows"],
                                                      median_of(done, "seconds")))
    return failures


def write_block(path: Path, lines: list[str]) -> None:
    """Replaces what lies between the BEGIN and END markers of ``path`` with ``lines``."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} block to fill")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + "\n".join([BEGIN, *lines, END]) + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", default=os.environ.get("HVAE_REFERENCE_PYTHON"),
                   help="the reference's virtual environment or its python (default: $HVAE_REFERENCE_PYTHON)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per point, each side once a round")
    p.add_argument("--only", default="", help="comma list: only the points containing one of these")
    p.add_argument("--threads", type=int, default=workloads.THREADS)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--budget", type=float, default=20.0, help="seconds of timed runs per process (at least 3 runs)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before a point's process is stopped")
    p.add_argument("--write", type=Path, help="put the table between the same-run markers of this file")
    args = p.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    wanted = (lambda point: not only or any(s in point for s in only))
    selected = [c for c in cases.SAMPLING + cases.TRAINING if wanted(c.point)]
    converters = [c for c in cases.CONVERTERS if wanted(f"convert:{c}")]
    if not selected and not converters:
        raise SystemExit(f"no point matches --only {args.only}")
    load_before = os.getloadavg()
    reference, note = reference_side(args.reference)
    print(note, flush=True)
    hvae = hvae_side()
    sides = [hvae] + ([reference] if reference else [])
    options = ["--threads", str(args.threads), "--warmup", str(args.warmup), "--budget", str(args.budget)]
    failures = run(selected, converters, sides, args.rounds, options, args.timeout,
                   log=lambda line: print(line, flush=True))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = (f"{when}; hvae: {hvae.version}. {note}",
             f"{args.rounds} rounds a point, the two sides alternating, {args.threads} threads each; "
             "figures are medians of the rounds.")
    lines = cases.table(load_before, os.getloadavg(), notes)
    if failures:
        lines += ["", *(f"Failed: {f}" for f in failures)]
    print("\n" + "\n".join(lines))
    if args.write:
        write_block(args.write, lines)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
