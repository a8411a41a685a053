"""Training throughput of the models hvae ships (core/hvae/pretrained/*), at batch 64 and 512, against
the floor; with ``--before TREE``, the same work on another checkout's code in the same run.

    .venv/bin/python benchmarks/models_throughput.py                  # this tree alone
    .venv/bin/python benchmarks/models_throughput.py --before /tmp/old  # alternating with /tmp/old's code

Each figure comes from a fresh process (``--_one``) on 2 threads: a model with the shipped model's
configuration and random weights, a random full-length batch, whole training steps as training runs
them (forward, backward, clipping, Adam) timed after two warm-up steps, the median of at least 3;
the floor is the step's matrix products timed alone at their shapes (benchmarks/floors.py). With
``--before`` the two trees alternate, the side that goes first changing every round, and each figure
is the median of the rounds. An older tree runs through ``PYTHONPATH`` pointing at its packages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS = ("gmd-drums-4bar", "gmd-drumify-2bar", "gmd-humanize-2bar")
BATCHES = (64, 512)
PACKAGES = ("core", "plugins/decoders", "plugins/losses", "plugins/converters")


def one(name: str, batch: int, budget_s: float) -> dict:
    """Time ``name``'s training step at ``batch`` in this process (the code on sys.path)."""
    import torch

    sys.path.insert(0, str(HERE))
    import floors
    import workloads
    from hvae import device
    from hvae.model import ModelConfig, build_model
    from hvae.plugins import make_converter

    if hasattr(device, "set_up_training_process"):  # as hvae train does
        device.set_up_training_process()
    elif hasattr(device, "ask_for_thread_independent_products"):  # as a tree before it trained (older: neither)
        device.ask_for_thread_independent_products()
    torch.set_num_threads(workloads.THREADS)
    config = json.loads((REPO / "core/hvae/pretrained" / name / "config.json").read_text())
    torch.manual_seed(0)
    model = build_model(ModelConfig(**config["model"]), make_converter(config["converter"],
                                                                       config["converter_options"]))
    step = workloads.TrainingStep(model, workloads.random_batch(model, batch))
    for _ in range(2):
        step()
    times = []
    started = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - started < budget_s and len(times) < 20):
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    seconds = statistics.median(times)
    floor = floors.measure(floors.training_plan(model, batch))
    return {"examples_per_s": batch / seconds, "floor_per_s": batch / floor.seconds, "steps": len(times)}


def measure(name: str, batch: int, tree: Path | None, budget_s: float) -> dict:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(str(tree / p) for p in PACKAGES)
    out = subprocess.run([sys.executable, __file__, "--_one", name, str(batch), "--budget", str(budget_s)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout, timed alternately with this one")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=6.0, help="seconds of timed steps per process")
    parser.add_argument("--_one", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one:
        print(json.dumps(one(args._one[0], int(args._one[1]), args.budget)))
        return
    sides = [("after", None)] + ([("before", args.before.resolve())] if args.before else [])
    load = os.getloadavg()
    print(f"load average at start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    rows = []
    for name in MODELS:
        for batch in BATCHES:
            got: dict[str, list[dict]] = {side: [] for side, _ in sides}
            for round_ in range(args.rounds):
                for side, tree in (sides if round_ % 2 == 0 else sides[::-1]):
                    got[side].append(measure(name, batch, tree, args.budget))
                    print(f"  {name} b{batch} {side}: {got[side][-1]['examples_per_s']:.1f} ex/s", flush=True)
            rows.append((name, batch, {side: (statistics.median(r["examples_per_s"] for r in results),
                                              statistics.median(r["floor_per_s"] for r in results))
                                       for side, results in got.items()}))
    load = os.getloadavg()
    print(f"load average at end {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}\n")
    print("| model | batch | " + " | ".join(f"{side} (ex/s)" for side, _ in sides) + " | floor | of floor |"
          + (" change |" if args.before else ""))
    print("|---|---|" + "---|" * len(sides) + "---|---|" + ("---|" if args.before else ""))
    for name, batch, values in rows:
        after, floor = values["after"]
        cells = " | ".join(f"{values[side][0]:,.1f}" for side, _ in sides)
        change = f" {after / values['before'][0] - 1:+.0%} |" if args.before else ""
        print(f"| {name} | {batch} | {cells} | {floor:,.1f} | {after / floor:.0%} |{change}")


if __name__ == "__main__":
    main()
