"""Training in several processes under torchrun, and preparing data in shards.

Spec: two Gloo processes on the CPU, each taking its half of every global batch, log the losses one
process logs for the same seed and global batch, step for step, and end with its weights (to float
rounding: the gradient of the global batch mean arrives as the mean of two half-batch gradients);
a checkpoint of either resumes in the other and continues as the other would; rank 0 alone writes
and prints; a batch that does not divide among the processes is refused before any starts. Shards
prepared with --shard K/N and merged are the cache one preparation writes.

The tiny model has no dropout. Dropout masks (and scheduled sampling's draws) come from a stream
seeded with (seed, step, rank), so the processes do not repeat each other's masks, but they are not
the masks one process draws: with dropout the run is as valid, not the same. The latent noise is drawn
for the whole global batch in every process and sliced like the batch, so it is one process's noise.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import hvae
from hvae.checkpoint import read_checkpoint
from hvae.cli import main
from hvae.data import DEMO_DIR, Shard, load_split, merge_caches, prepare_dataset
from hvae.distributed import World, lost_peer
from hvae.errors import HvaeError
from hvae.presets import get_preset
from hvae.rundir import METRICS_FILE
from hvae.training import batch_indices

# The demo preset shrunk to 16-unit LSTMs, one thread per process, a line in metrics.jsonl per step.
TINY = ["--preset", "demo", "-m", "z_size=8", "-m", "encoder.rnn_sizes=16", "-m", "decoder.rnn_sizes=16",
        "--batch-size", "16", "--seed", "3", "--threads", "1", "--workers", "1", "--log-every", "1",
        "--eval-every", "3", "--checkpoint-every", "2", "--no-progress"]
TORCHRUN = [str(Path(sys.executable).parent / "torchrun"), "--nnodes", "1", "--nproc-per-node", "2",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "-m", "hvae.cli"]
HVAE = str(Path(sys.executable).parent / "hvae")
COMPARED = ("loss", "r_loss", "kl", "accuracy")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def start(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return done


def metrics(run_dir: Path, split: str = "train") -> dict[int, dict]:
    lines = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
    return {line["step"]: line for line in lines if line["split"] == split}


def assert_same_lines(actual: dict[int, dict], expected: dict[int, dict]) -> None:
    """Equal to float rounding: the runs differ by ~1e-7 relative; another draw of the latent noise moves
    the loss by 1e-6 to 1e-5 relative within 3 steps (and the weights by ~3e-2 within 4)."""
    assert actual.keys() == expected.keys()
    for step, line in actual.items():
        for name in COMPARED:
            assert line[name] == pytest.approx(expected[step][name], rel=1e-6), (step, name)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    preset = get_preset("demo")
    out = tmp_path_factory.mktemp("drums-4bar")
    prepare_dataset(hvae.get_converter(preset.converter, **preset.converter_options), DEMO_DIR, out, workers=2,
                    progress=False)
    return out


@pytest.fixture(scope="module")
def one_process(cache, tmp_path_factory) -> Path:
    """Six steps in this process."""
    out = tmp_path_factory.mktemp("runs") / "one"
    result = invoke("train", *TINY, "--steps", "6", "--cache", str(cache), "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Four steps in two processes started by torchrun, on a cache that rank 0 prepares first."""
    root = tmp_path_factory.mktemp("runs")
    done = start([*TORCHRUN, "train", *TINY, "--steps", "4", "--cache", str(root / "cache"),
                  "--out", str(root / "two")])
    return root / "two", done


def test_each_rank_takes_its_consecutive_slice_of_the_single_process_batch():
    for step in (0, 7, 40):  # 40 crosses an epoch of 100 windows
        batch = batch_indices(100, 12, seed=5, step=step)
        slices = [World(rank, 4).shard(batch) for rank in range(4)]
        assert [len(s) for s in slices] == [3, 3, 3, 3]
        assert np.array_equal(np.concatenate(slices), batch)


def test_two_processes_log_the_losses_of_one_process_step_for_step(one_process, two_processes):
    two, _ = two_processes
    assert sorted(metrics(two)) == [1, 2, 3, 4]
    assert_same_lines(metrics(two), {step: line for step, line in metrics(one_process).items() if step <= 4})
    assert_same_lines({3: metrics(two, "validation")[3]}, {3: metrics(one_process, "validation")[3]})
    assert all(line["examples_per_s"] > 0 for line in metrics(two).values())


def test_two_processes_end_with_the_weights_of_one_process(one_process, two_processes):
    two, _ = two_processes
    expected = read_checkpoint(one_process / "checkpoints" / "step-00000004").model
    actual = read_checkpoint(two).model
    assert actual.keys() == expected.keys()  # saved without DistributedDataParallel's "module." prefix
    for name, tensor in actual.items():
        torch.testing.assert_close(tensor, expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_rank_0_alone_prints_the_run_and_writes_it(two_processes):
    two, done = two_processes
    assert done.stdout.count("Run:") == 1 and done.stdout.count("Trained to step 4") == 1
    assert "batch 16 (8 in each of 2 processes)" in done.stdout
    assert sorted(p.name for p in two.iterdir()) == [".lock", "checkpoints", "config.json", "metrics.jsonl",
                                                      "plausible.json"]
    assert [line["step"] for line in map(json.loads, (two / METRICS_FILE).read_text().splitlines())] == \
        [1, 2, 3, 3, 4, 4]  # train lines 1-4, validation at 3 and at the end, each once


def test_a_checkpoint_of_two_processes_resumes_in_one_and_continues_as_one_would(one_process, two_processes,
                                                                                  tmp_path):
    two, _ = two_processes
    run = shutil.copytree(two, tmp_path / "two")
    result = invoke("train", "--resume", str(run), "--steps", "6", "--no-progress")
    assert result.exit_code == 0, result.output
    assert read_checkpoint(run).step == 6
    assert_same_lines({s: l for s, l in metrics(run).items() if s > 4},
                      {s: l for s, l in metrics(one_process).items() if s > 4})


def test_a_checkpoint_of_one_process_resumes_in_two_started_with_nproc(one_process, tmp_path):
    alone = shutil.copytree(one_process, tmp_path / "alone")
    assert invoke("train", "--resume", str(alone), "--steps", "8", "--no-progress").exit_code == 0
    spread = shutil.copytree(one_process, tmp_path / "spread")
    done = start([HVAE, "train", "--resume", str(spread), "--steps", "8", "--nproc", "2", "--no-progress"])
    assert "Trained to step 8" in done.stdout
    assert read_checkpoint(spread).step == 8
    assert_same_lines({s: l for s, l in metrics(spread).items() if s > 6},
                      {s: l for s, l in metrics(alone).items() if s > 6})


def test_a_batch_that_does_not_divide_among_the_processes_is_refused_before_any_starts(cache, tmp_path):
    result = CliRunner().invoke(main, ["train", *TINY, "--batch-size", "15", "--nproc", "2", "--cache", str(cache),
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: A batch of 15 examples does not divide among 2 processes: give a "
                                     "batch size that is a multiple of 2 (e.g. 14).")
    assert not (tmp_path / "run").exists()
    with pytest.raises(HvaeError, match="does not divide among 4 processes"):
        World(rank=1, size=4).shard(batch_indices(100, 6, seed=0, step=0))


@pytest.fixture(scope="module")
def drums():
    preset = get_preset("demo")
    return hvae.get_converter(preset.converter, **preset.converter_options)


@pytest.fixture(scope="module")
def shards(drums, tmp_path_factory) -> list[Path]:
    """The demo folder prepared in three shards."""
    root = tmp_path_factory.mktemp("shards")
    for index in range(3):
        prepare_dataset(drums, DEMO_DIR, root / str(index), workers=2, progress=False, shard=Shard(index, 3))
    return [root / str(index) for index in range(3)]


def test_each_file_is_in_exactly_one_shard(shards):
    held = [{record["path"] for record in json.loads((s / "manifest.json").read_text())["files"]} for s in shards]
    assert all(held)  # none empty
    assert sum(len(h) for h in held) == len(set().union(*held)) == 64


def test_shards_merged_are_the_cache_of_one_preparation(drums, cache, shards, tmp_path):
    merged = merge_caches(tmp_path / "merged", list(reversed(shards)))
    for split in ("train", "validation", "test"):
        expected, actual = load_split(cache, split), load_split(merged.cache_dir, split)
        assert actual.files == expected.files
        assert np.array_equal(actual.lengths, expected.lengths) and np.array_equal(actual.sources, expected.sources)
        for what in ("inputs", "outputs", "controls"):
            mine, theirs = getattr(actual, what).encoded, getattr(expected, what).encoded
            assert mine.kind == theirs.kind and np.array_equal(mine.data, theirs.data), (split, what)
    again = prepare_dataset(drums, DEMO_DIR, merged.cache_dir, workers=2, progress=False)
    assert again.cached  # training finds the merged cache up to date and converts nothing


def test_an_unfinished_shard_is_prepared_again_and_finished_ones_are_reused(shards, tmp_path):
    copies = [shutil.copytree(s, tmp_path / s.name) for s in shards]
    (copies[1] / "manifest.json").unlink()  # killed before its commit point
    refused = CliRunner().invoke(main, ["data", "merge", str(tmp_path / "merged"), *map(str, copies)])
    assert refused.exit_code == 1
    assert f"{copies[1]} is not a finished shard" in refused.output
    options = [arg for name, value in get_preset("demo").converter_options.items()
               for arg in ("-o", f"{name}={value}")]
    again = [invoke("data", "prepare", "-c", "drums", *options, "--shard", f"{index}/3", "--out", str(copy),
                    "-j", "2", "--no-progress").output for index, copy in enumerate(copies)]
    assert "MIDI files of shard 0/3" in again[0] and "Cache up to date" in again[0]
    assert "Converted" in again[1] and "(no cache yet)" in again[1]
    assert "Cache up to date" in again[2]
    merged = CliRunner().invoke(main, ["data", "merge", str(tmp_path / "merged"), *map(str, copies)])
    assert merged.exit_code == 0, merged.output
    assert "Merged 3 shards" in merged.output


def test_a_damaged_missing_or_repeated_shard_is_refused_by_name(shards, tmp_path):
    damaged = shutil.copytree(shards[2], tmp_path / "damaged")
    with open(damaged / "train.npz", "r+b") as f:
        f.write(b"garbage")
    with pytest.raises(HvaeError, match=r"Shard 2/3 in .*damaged is damaged: train.npz does not match its checksum"):
        merge_caches(tmp_path / "out", [shards[0], shards[1], damaged])
    with pytest.raises(HvaeError, match=r"Shard 1/3 missing: prepare it with 'hvae data prepare --shard 1/3'"):
        merge_caches(tmp_path / "out", [shards[0], shards[2]])
    with pytest.raises(HvaeError, match="Shard 0/3 is given twice"):
        merge_caches(tmp_path / "out", [shards[0], shards[1], shards[2], shards[0]])
    assert not (tmp_path / "out").exists()


def test_shard_k_of_n_is_parsed_and_checked():
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    with pytest.raises(HvaeError, match="the shards of 4 are numbered 0/4 to 3/4"):
        Shard.parse("4/4")
    with pytest.raises(HvaeError, match="is not K/N"):
        Shard.parse("two of four")


# --- a process of the group that is gone -----------------------------------------------------------------------------

PEER_GONE = """
import datetime, os, sys, torch, torch.distributed as dist
from hvae.distributed import lost_peer
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{sys.argv[2]}", rank=rank, world_size=2,
                        timeout=datetime.timedelta(seconds=60))
dist.all_reduce(torch.ones(1))
if rank == 1:
    os._exit(0)  # gone without a word
try:
    dist.all_reduce(torch.ones(1))
except RuntimeError as exc:
    print(f"lost_peer={lost_peer(exc)} {type(exc).__name__}")
os._exit(0)
"""


def test_a_gloo_peer_that_is_gone_is_told_from_other_runtime_errors(tmp_path):
    script = tmp_path / "peer_gone.py"
    script.write_text(PEER_GONE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    ranks = [subprocess.Popen([sys.executable, str(script), str(rank), port], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [process.communicate(timeout=120) for process in ranks]
    assert outputs[0][0].strip() == "lost_peer=True RuntimeError", outputs[0]
    assert lost_peer(torch.distributed.DistBackendError("NCCL communicator was aborted"))
    assert not lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied (gloo/transport/)"))
