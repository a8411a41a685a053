"""Converting many MIDI files in parallel, file by file, without letting one file stop the run.

Each file goes through ``converter.convert(path)``. A file that is not readable MIDI
(:class:`MidiReadError`), that yields nothing usable (:class:`ConversionError`, or no
windows), or on which a converter fails unexpectedly (any other exception, reported with
its type) is skipped with a one-line reason; the others are stacked and encoded compactly
(:mod:`hvae.data.encoding`) in the worker, so little crosses between processes.

Workers are processes, even for one worker: a file that kills the process converting it (a
crash in native code, the kernel's out-of-memory killer) cannot take the run down. Each worker
rebuilds the converter from its registered name and options (so third-party converters work the
same as built-in ones), converts chunks of files, and dies with the process that started it
(Linux: ``PR_SET_PDEATHSIG``), so killing ``hvae data prepare`` leaves no worker behind. When a
worker dies, the files it may have held are converted again one at a time in a fresh worker, to
name the file that killed it (recorded as failed, with the signal); the rest convert as usual.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import dataclasses
import multiprocessing
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from hvae.data.encoding import Encoded, encode
from hvae.errors import ConversionError, MidiReadError
from hvae.interfaces import Converter
from hvae.plugins import make_converter

CONVERTED, UNREADABLE, UNUSABLE, FAILED = "converted", "unreadable", "unusable", "failed"  # a file's status
FILES_PER_UPDATE = 16  # target: about this many progress updates per worker over a run
MAX_CHUNK = 8  # files per task, at most: an interrupted run waits for at most a few tasks


@dataclasses.dataclass(frozen=True)
class FileResult:
    """The outcome of converting one file; arrays only when ``status == CONVERTED``."""

    index: int  # position in the list of files given to convert_files
    status: str  # CONVERTED, UNREADABLE, UNUSABLE or FAILED
    reason: str  # why the file was skipped; "" when converted
    windows: int
    inputs: Encoded | None = None  # (windows, T, input_depth)
    outputs: Encoded | None = None  # (windows, T, output_depth)
    controls: Encoded | None = None  # (windows, T, control_depth)
    lengths: np.ndarray | None = None  # (windows,) int32, steps used


def default_workers() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _reason(exc: BaseException, path: str) -> str:
    """An exception's message on one line, without the file name it may start with (the summary names the file)."""
    message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    for prefix in (f"{path}: ", f"{Path(path).name}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def _stack(converter: Converter, examples: list, what: str, depth: int) -> np.ndarray:
    steps = converter.steps
    arrays = []
    for example in examples:
        array = np.asarray(getattr(example, what), dtype=np.float32)
        if depth == 0 and array.size == 0:
            array = array.reshape(steps, 0)
        if array.shape != (steps, depth):
            raise ValueError(f"converter returned {what} of shape {array.shape}, ({steps}, {depth}) expected")
        arrays.append(array)
    return np.stack(arrays)


def convert_file(converter: Converter, index: int, path: str) -> FileResult:
    """Convert one file; never raises for anything the file or the converter does."""
    try:
        examples = list(converter.convert(path))
        if not examples:
            return FileResult(index, UNUSABLE, "no windows", 0)
        inputs = _stack(converter, examples, "inputs", converter.input_depth)
        outputs = _stack(converter, examples, "outputs", converter.output_depth)
        controls = _stack(converter, examples, "controls", converter.control_depth)
        lengths = np.array([int(e.length) for e in examples], dtype=np.int32)
    except MidiReadError as exc:
        return FileResult(index, UNREADABLE, _reason(exc, path) or "not readable MIDI", 0)
    except ConversionError as exc:
        return FileResult(index, UNUSABLE, _reason(exc, path) or "no usable windows", 0)
    except (Exception, SystemExit) as exc:
        message = _reason(exc, path)
        return FileResult(index, FAILED, f"{type(exc).__name__}: {message}" if message else type(exc).__name__, 0)
    return FileResult(index, CONVERTED, "", len(examples), encode(inputs), encode(outputs), encode(controls),
                      lengths)


_worker_converter: Converter | None = None


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when the thread that started it ends


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent goes; exit now if it has gone already."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(name: str, options: Mapping[str, Any], parent: int) -> None:
    """Process-pool initializer: die with the parent, rebuild the converter from the registry.
    Ctrl-C is the parent's."""
    global _worker_converter
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_converter = make_converter(name, options)


def _convert_chunk(chunk: Sequence[tuple[int, str]]) -> list[FileResult]:
    assert _worker_converter is not None, "worker not initialised"
    return [convert_file(_worker_converter, index, path) for index, path in chunk]


def _chunks_of(indexed: Sequence[tuple[int, str]], workers: int) -> list[list[tuple[int, str]]]:
    size = max(1, min(MAX_CHUNK, len(indexed) // (workers * FILES_PER_UPDATE)))
    return [list(indexed[i:i + size]) for i in range(0, len(indexed), size)]


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork where the platform has it (fast, and in-process registrations carry over), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _start_pool(converter: Converter, chunks: Sequence[Sequence[tuple[int, str]]], workers: int
                ) -> tuple[concurrent.futures.ProcessPoolExecutor, list[concurrent.futures.Future]]:
    """Start the workers and queue every chunk (before any progress-bar thread exists, for fork's sake)."""
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=_pool_context(), initializer=_init_worker,
        initargs=(converter.name, dataclasses.asdict(converter.options), os.getpid()))
    return executor, [executor.submit(_convert_chunk, chunk) for chunk in chunks]


def _died(index: int) -> FileResult:
    return FileResult(index, FAILED, "the process converting it died (a crash, or killed by the system: out of "
                                     "memory?)", 0)


def convert_files(converter: Converter, paths: Sequence[str], workers: int,
                  progress: bool = True) -> list[FileResult]:
    """Convert ``paths`` with ``workers`` processes; results in the order of ``paths``.

    Shows a progress bar (files/s and windows so far) on stderr when ``progress``. A file that kills
    its worker is found (see the module's docstring) and reported as failed; the others convert.
    """
    workers = max(1, min(workers, len(paths)))
    pending = list(enumerate(paths))
    results: list[FileResult] = []
    windows = 0
    with tqdm(total=len(paths), unit="file", desc=f"Converting with {converter.name}",
              disable=not progress, dynamic_ncols=True, delay=0.5) as bar:
        suspects = 0  # after a worker died: how many of the pending files to convert one by one, to find it
        while pending:
            alone = pending[:suspects]
            chunks = [[item] for item in alone] if alone else _chunks_of(pending, workers)
            done = _run(converter, chunks, 1 if alone else workers, results, bar)
            finished = {r.index for r in results}
            if alone and done < len(chunks):  # the first one that did not finish killed its worker
                culprit = chunks[done][0]
                results.append(_died(culprit[0]))
                finished.add(culprit[0])
                bar.update(1)
            suspects = 0 if alone or done == len(chunks) else (workers + 1) * max(len(c) for c in chunks)
            pending = [item for item in pending if item[0] not in finished]
            windows = sum(r.windows for r in results)
            bar.set_postfix(windows=windows, refresh=False)
    results.sort(key=lambda r: r.index)
    return results


def _run(converter: Converter, chunks: list[list[tuple[int, str]]], workers: int, results: list[FileResult],
         bar: tqdm) -> int:
    """Convert ``chunks`` in a pool of ``workers``, adding to ``results``; returns how many chunks finished
    before a worker died (all of them when none did; with one worker, in order)."""
    executor, futures = _start_pool(converter, chunks, workers)
    finished = 0
    try:
        for future in (concurrent.futures.as_completed(futures) if workers > 1 else futures):
            batch = future.result()
            results.extend(batch)
            finished += 1
            bar.update(len(batch))
    except BrokenProcessPool:
        pass
    finally:
        for future in futures:  # on an interrupt or a dead worker, drop the queued work; running tasks end soon
            future.cancel()
        executor.shutdown(wait=finished == len(chunks))
    return finished
