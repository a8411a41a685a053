"""Training in several processes, on one machine or many: torchrun's environment, the process group,
DistributedDataParallel, and the few collective steps the trainer needs.

    hvae train --nproc 2 ...                                        # two processes on this machine
    torchrun --nproc-per-node 2 -m hvae.cli train ...               # the same, started by hand
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m hvae.cli train ...

Every process (a rank) holds the whole model and takes its slice of each global batch;
DistributedDataParallel averages the gradients, so every rank applies the same update and the
weights stay identical. Rank 0 alone writes the run directory. See ``docs/distributed.md``.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import sys
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun
from torch.nn.parallel import DistributedDataParallel

from hvae.device import distributed_backend, resolve_device
from hvae.errors import HvaeError

T = TypeVar("T")
Rows = TypeVar("Rows", np.ndarray, torch.Tensor)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun (and torch.distributed.run) sets


@dataclasses.dataclass(frozen=True)
class World:
    """The processes training together, as one of them sees it. ``World()`` is a single process.

    The methods are collective where there are several processes: every rank must call them, in
    the same order. With one process they do nothing but return.
    """

    rank: int = 0  # this process, 0 to size - 1; rank 0 writes the run directory
    size: int = 1  # processes training together
    local_rank: int = 0  # this process among those on its machine (it takes that GPU)

    @property
    def main(self) -> bool:
        """True on rank 0, the process that writes logs, metrics, checkpoints and samples."""
        return self.rank == 0

    def share(self, batch_size: int) -> int:
        """Examples per process of a global batch of ``batch_size``; it must divide evenly."""
        if batch_size % self.size:
            fits = batch_size - batch_size % self.size or self.size
            raise HvaeError(f"A batch of {batch_size} examples does not divide among {self.size} processes: "
                            f"give a batch size that is a multiple of {self.size} (e.g. {fits}).")
        return batch_size // self.size

    def shard(self, rows: Rows) -> Rows:
        """This rank's consecutive slice of the global batch ``rows`` (first axis)."""
        share = self.share(len(rows))
        return rows[self.rank * share:(self.rank + 1) * share]

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in DistributedDataParallel (gradients averaged over the ranks); itself when alone."""
        if self.size == 1:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def average(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over the ranks of ``values`` (a tensor on this rank's device)."""
        if self.size == 1:
            return values
        total = values.clone()
        dist.all_reduce(total)
        return total / self.size

    def largest(self, value: int) -> int:
        """The largest of the ranks' ``value``: they agree on it (e.g. a signal that one of them received)."""
        if self.size == 1:
            return value
        found = torch.tensor([value], dtype=torch.int64, device=_collective_device())
        dist.all_reduce(found, op=dist.ReduceOp.MAX)
        return int(found.item())

    def from_main(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (what the others pass is ignored); they wait for it."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, work: Callable[[], T]) -> T | None:
        """Call ``work()`` on rank 0 alone while the others wait; its value on rank 0, None on the others.
        An :class:`HvaeError` it raises is raised on every rank, so no rank waits for one that gave up."""
        failure: HvaeError | None = None
        value = None
        if self.main:
            try:
                value = work()
            except HvaeError as exc:
                failure = exc
        message = self.from_main(None if failure is None else str(failure))
        if failure is not None:
            raise failure
        if message is not None:
            raise HvaeError(message)
        return value


# Gloo reports a peer that is gone (a closed or reset connection) as a bare RuntimeError, no type or errno of
# its own: its only mark is the source file of Gloo's transport it names (tests/test_distributed.py pins it)
_GLOO_TRANSPORT = "/gloo/transport/"


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc``, raised in a collective step, says another process of the run is gone: torch's
    distributed errors (NCCL's DistBackendError, the store's and the network's), or Gloo's transport
    failing."""
    if isinstance(exc, dist.DistError):
        return True
    return type(exc) is RuntimeError and _GLOO_TRANSPORT in str(exc).split("]", 1)[0]


def _collective_device() -> torch.device:
    """Where tensors given to collectives must be: the current GPU with NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def environment() -> World:
    """The world torchrun describes in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; one process without them."""
    present = [name for name in TORCHRUN_VARIABLES if name in os.environ]
    if not present:
        return World()
    if len(present) < len(TORCHRUN_VARIABLES):
        missing = ", ".join(name for name in TORCHRUN_VARIABLES if name not in present)
        raise HvaeError(f"Started as one of several processes, but {missing} is not set: start them with "
                        f"torchrun (or hvae train --nproc N), which sets {', '.join(TORCHRUN_VARIABLES)}.")
    try:
        world = World(*(int(os.environ[name]) for name in TORCHRUN_VARIABLES))
    except ValueError:
        raise HvaeError(f"{', '.join(f'{n}={os.environ[n]!r}' for n in TORCHRUN_VARIABLES)}: not whole "
                        f"numbers.") from None
    if not (0 <= world.rank < world.size and 0 <= world.local_rank):
        raise HvaeError(f"RANK {world.rank} is not one of WORLD_SIZE {world.size} processes (0 to {world.size - 1}).")
    return world


def join(device: str) -> tuple[World, torch.device]:
    """This process's world and device (``"auto"``, ``"cpu"``, ``"cuda"``...); with several processes,
    the process group is joined (NCCL on CUDA, Gloo on CPU) and left when the interpreter exits."""
    world = environment()
    if world.size == 1:
        return world, resolve_device(device)
    target = resolve_device(device, local_rank=world.local_rank)
    if not dist.is_initialized():
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group(backend=distributed_backend(target))
        atexit.register(_destroy)  # after a failure; a command that ends well calls leave() first
    elif dist.get_world_size() != world.size or dist.get_rank() != world.rank:
        raise HvaeError(f"The process group holds rank {dist.get_rank()} of {dist.get_world_size()}, but torchrun "
                        f"says rank {world.rank} of {world.size}.")
    return world, target


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def leave(world: World) -> None:
    """End this process's part in a run that went well on every rank: wait until all ranks are
    done with the process group, then destroy it while the interpreter is fully alive. (Left to
    interpreter exit, Gloo's threads can be torn down mid-work: the process aborts with
    "terminate called without an active exception".) Drop the models wrapped for the group first.
    A command that failed does not call it: a barrier would wait for ranks that are gone."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def launch(processes: int, args: Sequence[str]) -> None:
    """Make the command ``hvae ARGS`` run in ``processes`` processes on this machine.

    This process becomes torchrun's agent (``torch.distributed.run``): it starts ``python -m hvae.cli
    ARGS`` that many times (ARGS without ``--nproc``), with the rendezvous on the loopback interface
    at a port the system chooses, waits for them and exits with their status (128 + the signal's
    number when a signal stopped them, as a shell reports it). For one process it returns, and the
    command runs here.
    """
    if any(name in os.environ for name in TORCHRUN_VARIABLES):
        raise HvaeError("--nproc starts torchrun, but torchrun started this process already: leave --nproc out "
                        "(torchrun's --nproc-per-node says how many).")
    if processes == 1:
        return
    try:
        torchrun(["--nnodes", "1", "--nproc-per-node", str(processes), "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", "127.0.0.1:0", "-m", "hvae.cli", *args])
    except SignalException as exc:  # Ctrl-C or SIGTERM: passed on to the processes, which checkpoint and stop
        raise SystemExit(128 + exc.sigval) from None
    except ChildFailedError as exc:  # the failed process has printed why
        rank, failure = exc.get_first_failure()
        print(f"Training process {rank} of {processes} failed (exit status {failure.exitcode}); torchrun stopped "
              f"the others.", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(0)
