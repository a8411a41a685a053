"""The report's question at a real budget: five 4-bar drum models of the full Groove MIDI Dataset, each
trained for the same wall-clock minutes from the same seed, evaluated on the test split.

    python experiments/gmd_4bar.py train    --gmd ../shared/data/groove --out /tmp/gmd-4bar [--minutes 20]
    python experiments/gmd_4bar.py evaluate --out /tmp/gmd-4bar [--doc docs/experiments/gmd-4bar.md]

``train`` runs ``hvae train`` once per combination, ``--jobs`` at a time (default 2, one CPU thread each:
each run has a core of its own on a 2-core machine); a run that was stopped resumes where it was.
``evaluate`` runs the test-split evaluation with 256 prior samples for each finished run and writes the
tables and figures (results.md, results.csv, curves and piano rolls) into OUT, and, with ``--doc``, the
figures next to that page.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# (label, name, what it is, hvae train options)
RUNS = [
    ("a", "hier-groove-cat", "hierarchical decoder, groove converter, categorical loss (forced): the report's failure",
     ["--preset", "hier-groove-4bar"]),
    ("b", "groovae", "GrooVAE: groove converter, groove decoder, groove loss",
     ["--preset", "groovae_4bar"]),
    ("c", "hier-drums-cat", "hierarchical decoder, drums converter, categorical loss: the report's best",
     ["--preset", "hier-drums-4bar"]),
    ("d", "hier-groove-groove", "hierarchical decoder, groove converter, groove loss: the proposed fix",
     ["--preset", "hier-groove-4bar", "--loss", "groove"]),
    ("e", "hier-groove-gated", "hierarchical decoder, groove converter, groove-gated loss: the proposed fix, gated",
     ["--preset", "hier-groove-4bar", "--loss", "groove-gated"]),
    ("f", "hier-drums-cat-small", "(c) at smaller sizes: z 128, a 256-unit encoder, conductor and decoder of 2x128",
     ["--preset", "hier-drums-4bar", "-m", "z_size=128", "-m", "encoder.rnn_sizes=256",
      "-m", "decoder.rnn_sizes=128,128"]),
]
HVAE = [sys.executable, "-m", "hvae.cli"]


def train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    queue = [run for run in RUNS if not args.only or run[0] in args.only]
    running: list[tuple[str, subprocess.Popen]] = []
    while queue or running:
        while queue and len(running) < args.jobs:
            label, name, _, options = queue.pop(0)
            run_dir = out / "runs" / name
            if (run_dir / "checkpoints").is_dir():  # stopped earlier: go on with a new budget
                command = HVAE + ["train", "--resume", str(run_dir), "--minutes", str(args.minutes)]
            else:
                command = HVAE + ["train", *options, "--data", str(args.gmd), "--out", str(run_dir),
                                  "--batch-size", str(args.batch_size), "--seed", str(args.seed),
                                  "--minutes", str(args.minutes), "--threads", str(args.threads),
                                  "--eval-every", "250", "--checkpoint-every", "250", "--no-progress"]
            log = open(out / "logs" / f"{name}.log", "a")
            log.write(f"$ {' '.join(command)}\n# started {time.strftime('%Y-%m-%d %H:%M:%S')}, "
                      f"load {os.getloadavg()[0]:.2f}\n")
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            running.append((name, process))
            print(f"started ({label}) {name}", flush=True)
            # one run prepares the data at a time: two conversions into one cache would race
            while process.poll() is None and not (run_dir / "config.json").is_file():
                time.sleep(2)
        time.sleep(5)
        for name, process in list(running):
            if process.poll() is not None:
                print(f"finished {name}: exit {process.returncode}", flush=True)
                running.remove((name, process))


def evaluate(args: argparse.Namespace) -> None:
    """Report every trained run (hvae report: test-split evaluation with the sample quality, piano rolls),
    then write the tables and the loss curves."""
    import json
    import shutil

    from hvae.report.curves import plot_curves
    from hvae.rundir import RunDir

    out = Path(args.out)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for label, name, what, _ in RUNS:
        run_dir = out / "runs" / name
        if args.only and label not in args.only:
            if (run_dir / "report" / "metrics.json").is_file():  # reported before: in the tables
                rows.append((label, name, what, json.loads((run_dir / "report" / "metrics.json").read_text()),
                             RunDir(run_dir).metrics()))
            continue
        if not (run_dir / "checkpoints").is_dir():
            print(f"({label}) {name}: not trained, left out", flush=True)
            continue
        metrics = run_dir / "report" / "metrics.json"
        if args.again or not metrics.is_file():
            subprocess.run(HVAE + ["report", str(run_dir), "--split", "test", "--no-audio", "--no-progress",
                                   "--quality-samples", str(args.samples), "--samples", "4", "--seed", "0"],
                           check=True, env=env)
        records = RunDir(run_dir).metrics()
        rows.append((label, name, what, json.loads(metrics.read_text()), records))
        print(f"({label}) {name}: reported", flush=True)
    figures = Path(args.doc).parent / Path(args.doc).stem if args.doc else out
    figures.mkdir(parents=True, exist_ok=True)
    plot_curves({f"({label}) {name}": records for label, name, _, _, records in rows}, figures / "loss_curves.png",
                f"GMD 4-bar windows, {args.minutes_label} per run")
    for label, name, _, _, _ in rows:
        for picture in ("samples.png", "reconstruction-1.png"):
            source = out / "runs" / name / "report" / "img" / picture
            if source.is_file():
                shutil.copyfile(source, figures / f"{label}-{name}-{picture}")
    text = tables(rows, args.batch_size)
    (out / "results.md").write_text(text)
    print(text)


def _f(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _share(value) -> str:
    return "–" if value is None else f"{value:.0%}"


def tables(rows, batch_size: int) -> str:
    """The results as Markdown: the reconstruction table, then the sample-quality table per feature."""
    lines = ["| run | steps | examples seen | examples/s | KL bits | accuracy TF / sampled | hit P / R / F1 sampled "
             "| velocity MAE | timing MAE ms | sample overlap (ceiling) | plausible draws | overlap after redraws |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, name, _, m, records in rows:
        train = [r for r in records if r.get("split") == "train"]
        speed = sum(r["examples_per_s"] for r in train) / len(train) if train else None
        tf, sm, q = m["teacher_forced"], m["sampled"], m["quality"]
        lines.append(
            f"| ({label}) {name} | {m['step']:,} | {m['step'] * batch_size:,} | {_f(speed)} | {_f(m['kl_bits'])} "
            f"| {_f(tf.get('accuracy'))} / {_f(sm.get('accuracy'))} "
            f"| {_f(sm.get('hit_precision'))} / {_f(sm.get('hit_recall'))} / {_f(sm.get('hit_f1'))} "
            f"| {_f(sm.get('velocity_mae'))} | {_f(sm.get('timing_mae_ms'))} "
            f"| {_f(q['overlaps']['mean'])} ({_f(q['ceiling']['mean'] if q['ceiling'] else None)}) "
            f"| {_share(q['plausible_share'])} | {_f(q['redrawn']['mean'] if q['redrawn'] else None)} |")
    features = list(dict.fromkeys(f for *_, m, _ in rows for f in m["quality"]["features"]))
    lines += ["", "| feature | " + " | ".join(f"({label})" for label, *_ in rows) + " | ceiling |",
              "|---|" + "---:|" * (len(rows) + 1)]
    for feature in features + ["mean"]:
        cells = [_f(m["quality"]["overlaps"].get(feature)) for *_, m, _ in rows]
        ceiling = next((m["quality"]["ceiling"].get(feature) for *_, m, _ in rows
                        if m["quality"]["ceiling"] and feature in m["quality"]["ceiling"]
                        and m["output_kind"] == "groove"), None)
        if ceiling is None:
            ceiling = next((m["quality"]["ceiling"].get(feature) for *_, m, _ in rows if m["quality"]["ceiling"]), None)
        lines.append(f"| {feature} | " + " | ".join(cells) + f" | {_f(ceiling)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train every combination within the budget")
    t.add_argument("--gmd", type=Path, required=True, help="the Groove MIDI Dataset folder (with info.csv)")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget per run")
    t.add_argument("--jobs", type=int, default=2, help="runs at a time")
    t.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--only", default="", help="labels of the runs to train (e.g. ace); default: all")
    e = sub.add_parser("evaluate", help="report every trained run and write the tables and figures")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--doc", type=Path, default=None,
                   help="a Markdown page whose folder of the same name (without .md) takes the figures")
    e.add_argument("--samples", type=int, default=256, help="prior samples per run for the sample quality")
    e.add_argument("--threads", type=int, default=1, help="CPU threads of each evaluation")
    e.add_argument("--batch-size", type=int, default=64, help="the batch size the runs trained with")
    e.add_argument("--minutes-label", default="20 minutes", help="the budget, as the loss curves' title says it")
    e.add_argument("--again", action="store_true", help="report runs that have a report already again")
    e.add_argument("--only", default="", help="labels of the runs to report now (the others' earlier reports are "
                                               "read); default: all")
    args = parser.parse_args()
    if args.command == "train":
        train(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
