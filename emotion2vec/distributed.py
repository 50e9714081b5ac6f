"""Sharded runs under ``torchrun``: the processes of one job, the shard each one takes, and how they meet.

``torchrun --nproc_per_node N -m emotion2vec extract ...`` (and ``predict``, ``pseudo-label``) starts N processes
whose environment says who they are (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``; the same variables on every node
of a multi-node job). :func:`join` reads them and initialises torch.distributed (gloo for CPU processes, nccl for
GPUs; each process on its own GPU, ``cuda:LOCAL_RANK``). Without them there is one process and nothing is
initialised: a plain run is a job of one. (Importing this module imports no torch: the command line's error
handling uses it.)

A sharded run, in every command:
    1. process 0 plans the job (inputs, settings check, what is left to do, the batches) and sends the plan to the
       others (:meth:`Processes.on_main`); a refusal there stops every process with process 0's message;
    2. the batches are dealt to the processes by :func:`balanced_shards`, balanced by seconds of audio. Whole
       batches move, so every input is computed in the same batch as in a run of one process: on a CPU in fp32 the
       outputs are bitwise those of a single process with the same number of threads per process;
    3. each process writes its outputs (atomically) into the same folder; then process 0 gathers what the others
       report (:meth:`Processes.all_gather`) and writes the merged index.

When a process dies, the launcher stops the others with SIGTERM (:func:`stop_on_sigterm` turns that into
:class:`JobInterrupted`, naming the process); every finished output stays, and the same command run again finishes
the rest.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .errors import Emotion2VecError

if TYPE_CHECKING:
    import torch

__all__ = ["Processes", "JobInterrupted", "RefusedOnMain", "Stop", "join", "balanced_shards", "stop_on_sigterm",
           "TIMEOUT"]

#: how long a process waits for the others at a meeting point (the slowest shard's lead over the fastest)
TIMEOUT = datetime.timedelta(hours=24)


class JobInterrupted(Exception):
    """This process stopped before its job was merged (SIGTERM from the launcher, or another process of the job
    stopped); its finished outputs are kept. The message names the process and what to do."""


class RefusedOnMain(Emotion2VecError):
    """Process 0 refused the job (its message was printed there); the other processes stop with the same status
    without repeating it."""

    reported_elsewhere = True


@dataclass
class Processes:
    """The processes of one job and this one's place among them (a job of one when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    host: str = field(default_factory=socket.gethostname)

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def name(self) -> str:
        """``process 1 of 2 (local rank 1 on host h)`` -- how the launcher's report and the logs name it."""
        return f"process {self.rank} of {self.world_size} (local rank {self.local_rank} on {self.host})"

    def _lost(self, doing: str, error: Exception) -> JobInterrupted:
        return JobInterrupted(f"{self.name()}: another process of this job stopped while this one was {doing} "
                              f"({type(error).__name__}; the launcher's report names the process that failed). "
                              f"The outputs written so far are kept: run the same command again to finish the rest")

    def broadcast(self, obj: Any = None) -> Any:
        """Process 0's ``obj``, on every process."""
        if not self.sharded:
            return obj
        import torch.distributed as dist

        box = [obj]
        try:
            dist.broadcast_object_list(box, src=0)
        except RuntimeError as e:
            raise self._lost("waiting for the plan of process 0", e) from None
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        if not self.sharded:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        try:
            dist.all_gather_object(out, obj)
        except RuntimeError as e:
            raise self._lost("waiting for the others to finish their shards", e) from None
        return out

    def barrier(self) -> None:
        if self.sharded:
            self.all_gather(None)

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run by process 0 only, its result sent to every process. An error there is raised on process 0
        and ends the others with :class:`RefusedOnMain` (exit status 2, the message printed once)."""
        if not self.sharded:
            return fn()
        outcome: tuple[str, Any] = ("ok", None)
        error: BaseException | None = None
        if self.main:
            try:
                outcome = ("ok", fn())
            except BaseException as e:  # noqa: BLE001 - re-raised below, after the others are told
                error = e
                outcome = ("error", f"{type(e).__name__}: {e}")
        outcome = self.broadcast(outcome)
        if error is not None:
            raise error
        if outcome[0] == "error":
            raise RefusedOnMain(f"process 0 refused the job: {outcome[1]}")
        return outcome[1]

    def close(self) -> None:
        """Leave the process group (when this module made one)."""
        if self.sharded:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _environment() -> tuple[int, int, int]:
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise Emotion2VecError(f"WORLD_SIZE / RANK / LOCAL_RANK must be integers (as torchrun sets them): {e}") from None
    if world < 1 or not 0 <= rank < world:
        raise Emotion2VecError(f"RANK {rank} and WORLD_SIZE {world} do not describe a process of a job (torchrun "
                               f"sets them)")
    return rank, world, local


def join(device: str | torch.device = "cpu") -> tuple[Processes, torch.device]:
    """This process's place in the job and its device: a job of one unless torchrun's environment says otherwise.

    Under torchrun ``cuda`` means ``cuda:LOCAL_RANK`` (one GPU per process); ``cuda:N`` is taken as given. The
    process group is gloo for CPU processes and nccl for GPU ones.
    """
    import torch

    from .device import resolve_device

    rank, world, local = _environment()
    dev = resolve_device(device, local if world > 1 else 0)
    processes = Processes(rank, world, local)
    if world == 1:
        return processes, dev
    import torch.distributed as dist

    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            dist.init_process_group("nccl", timeout=TIMEOUT, device_id=dev)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
    return processes, dev


def balanced_shards(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Deal items with ``costs`` (seconds of audio) to ``world_size`` processes: largest first, each to the
    process with the least so far (ties: the lower rank). -> per process its item indices, ascending. Deterministic;
    the largest total exceeds the mean by at most the largest single cost."""
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    totals = [0.0] * world_size
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for i in order:
        r = min(range(world_size), key=lambda k: (totals[k], k))
        shards[r].append(i)
        totals[r] += costs[i]
    return [sorted(s) for s in shards]


class Stop:
    """Whether SIGTERM asked this process to stop (:func:`stop_on_sigterm`); :meth:`check` between batches."""

    def __init__(self, processes: Processes):
        self.processes, self.requested = processes, False

    def error(self) -> JobInterrupted:
        return JobInterrupted(f"{self.processes.name()}: stopped by SIGTERM (torchrun stops every process when one "
                              f"fails; its report names that one). The outputs written so far are kept: run the "
                              f"same command again to finish the rest")

    def check(self) -> None:
        if self.requested:
            raise self.error()


@contextmanager
def stop_on_sigterm(processes: Processes) -> Iterator[Stop]:
    """In a sharded run, SIGTERM (what torchrun sends every process when one of them fails) stops this process at
    the next :meth:`Stop.check` with :class:`JobInterrupted` naming it, instead of ending it without a word. The
    signal only sets a flag: the loop leaves at a safe point, so its decoding workers are shut down (an error the
    stop causes inside the block, such as a decoding worker ended by the same signal, becomes the same
    :class:`JobInterrupted`). A process waiting for the others at a meeting point inside the block learns from
    torch.distributed that one of them is gone (:meth:`Processes.all_gather` says so)."""
    stop = Stop(processes)
    if not processes.sharded:
        yield stop
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked helper (a DataLoader worker) ends as it would have without us
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stop.requested = True

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave the default
        yield stop
        return
    try:
        yield stop
    except JobInterrupted:
        raise
    except Exception:
        if stop.requested:
            raise stop.error() from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
