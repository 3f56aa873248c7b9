"""Process runtime: worker processes on this machine, without Ray.

``runtime.kind = "process"`` runs ``runtime.workers`` child processes (fresh
interpreters on the driver's import path: nothing of the driver's threads, locks,
model state or ``__main__`` script is inherited or run again), each
with its own event loop and :class:`~qdsearch.pipeline.Worker`, that is its own HTTP
clients, whose concurrency is ``endpoint.concurrency / workers`` (at least 1) and which
pace to ``1 / workers`` of each endpoint's ``rpm`` and ``tpm``, as Ray actors do. The
driver keeps the campaign (archive, descriptors, event log, snapshots); a worker makes
a child's calls and screens, parses and judges its texts.

POSIX only (pipes passed to the child by descriptor, the loop's pipe transports).

Why it exists beside Ray: on one machine a Ray actor call costs more CPU than a
child's own pipeline work at low endpoint latency (``experiments/results/bench.md``),
so against a fast local endpoint the Ray runtime is slower than the in-process one,
which is held to one core. Here a job is one pickled frame down a pipe and its
candidate one frame back, both read and written by each side's event loop
(non-blocking, so neither side can stall the other).

Protocol (frames: an 8-byte big-endian length, then the bytes): the driver first sends
the pickled set-up (config, endpoint, operators, domain: by pipe, never by file), then the
pickle of ``(job_id, job)``, of ``(job_id, None)`` to cancel a job, or of ``None`` to
stop; a worker first sends the pickle of ``("ready", pid)``, or of ``("fail", text)``
when its set-up raised, then per job ``job_id`` (8 bytes), ``ok`` (1 byte) and the
pickle of the candidate or of the exception, so a result that does not unpickle fails
that job alone.

Faults: a worker that dies (its result pipe closes) is replaced by a new process, and
the jobs it was running are sent again to the least-loaded live worker, up to
:data:`RESUBMITS` times; a job that still cannot finish raises
:class:`~qdsearch.runtime.JobLost`. Workers that die before they are ready
:data:`START_FAILURES` times in a row, or whose set-up raises, end the campaign with a
:class:`WorkerStartError` carrying the cause. A worker exits when its job pipe closes,
so none outlives its driver, also after ``kill -9``. An exception raised by the job
itself (a worker bug) is raised again in the driver, as in the other runtimes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.domains import Domain
from qdsearch.operators import PromptOperator
from qdsearch.pipeline import Job
from qdsearch.runtime import frames
from qdsearch.runtime.errors import JobLost
from qdsearch.types import Candidate

__all__ = ["RESUBMITS", "START_FAILURES", "ProcessRuntime", "WorkerStartError", "make_runtime"]

RESUBMITS = 2  # more tries of a job whose worker died, each on a live worker
START_FAILURES = 3  # workers in a row that die before they are ready: the campaign stops
_STOP_S = 10.0  # how long a worker may take to close its clients before it is terminated
_PROTO = pickle.HIGHEST_PROTOCOL


class WorkerStartError(RuntimeError):
    """The worker processes cannot set themselves up (the cause is in the message)."""


# --------------------------------------------------------------------------- the worker process


_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from qdsearch.runtime.procs import _serve; _serve(int(sys.argv[2]), int(sys.argv[3]))"
)  # a fresh interpreter on the driver's import path: nothing of the driver's __main__ is run


def _serve(read_fd: int, write_fd: int) -> None:
    """A worker process's main function (module doc, "Protocol"): the first frame it
    reads is its set-up (the pickled config, endpoint, operators and domain)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    try:
        from qdsearch.collector import freeze_worker
        from qdsearch.llm.limits import share_among
        from qdsearch.pipeline import Worker

        cfg, endpoint, operators, domain, n = pickle.loads(frames.read_frame(read_fd))
        worker = Worker(cfg, endpoint, operators, domain)
        share_among((c.limits for c in (worker.client, worker.target, worker.grader)), n)
        freeze_worker(cfg.runtime.gc_freeze)  # this process lives for the campaign
    except EOFError:  # the driver went away before it sent the set-up
        return
    except BaseException:
        with contextlib.suppress(OSError):
            os.write(write_fd, frames.frame(pickle.dumps(("fail", traceback.format_exc()))))
        return
    try:
        os.write(write_fd, frames.frame(pickle.dumps(("ready", os.getpid()))))
    except OSError:  # the driver is gone
        return
    asyncio.run(_work(worker, read_fd, write_fd))


async def _work(worker: Any, read_fd: int, write_fd: int) -> None:
    loop = asyncio.get_running_loop()
    tasks: dict[int, asyncio.Task[None]] = {}
    done = asyncio.Event()
    writer = await frames.writer(write_fd)

    def reply(jid: int, ok: bool, value: Any) -> None:
        try:
            blob = pickle.dumps(value, protocol=_PROTO)
        except Exception as e:
            ok, blob = False, pickle.dumps(RuntimeError(f"the worker's result could not be pickled: {e!r}"))
        if not writer.is_closing():
            writer.write(frames.frame(jid.to_bytes(8, "big") + (b"\1" if ok else b"\0") + blob))

    async def run(jid: int, job: Job) -> None:
        try:
            cand = await worker.run(job)
        except asyncio.CancelledError:
            return
        except Exception as e:  # a worker bug: the driver raises it again
            reply(jid, False, _portable(e))
        else:
            reply(jid, True, cand)
        finally:
            tasks.pop(jid, None)

    def on_frame(frame: bytes | None) -> None:
        msg = None if frame is None else pickle.loads(frame)
        if msg is None:  # stop, or the driver is gone
            done.set()
        elif msg[1] is None:
            task = tasks.get(msg[0])
            if task is not None:
                task.cancel()
        else:
            tasks[msg[0]] = loop.create_task(run(*msg))

    reader = await frames.reader(read_fd, on_frame)
    await done.wait()
    for task in list(tasks.values()):
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(worker.aclose(), _STOP_S / 2)
    reader.close()
    writer.close()


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives a pickle round trip, else a RuntimeError with its traceback."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        return RuntimeError(f"{type(e).__name__} in a worker process: {e}\n{text}")


# --------------------------------------------------------------------------- the driver side


@dataclasses.dataclass
class _Pending:
    fut: asyncio.Future[Candidate]
    job: Job
    tries: int = 0  # how many workers it was sent to


class _Slot:
    """One worker process, its two pipe ends and the jobs it is running."""

    def __init__(self, payload: bytes) -> None:
        job_r, self._jobs = os.pipe()
        self._results, result_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps([str(p) for p in sys.path]), str(job_r), str(result_w)],
                pass_fds=(job_r, result_w),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (self._jobs, self._results):
                os.close(fd)
            raise
        finally:  # the child holds these ends now: EOF reaches each side when the other goes
            os.close(job_r)
            os.close(result_w)
        # The set-up goes down the pipe while the worker imports (it may not fit in
        # the pipe's buffer, and the driver must not wait for the reader).
        self._feeder = threading.Thread(target=self._feed, args=(frames.frame(payload),), daemon=True)
        self._feeder.start()
        self.pending: dict[int, _Pending] = {}
        self.ready = False  # its set-up finished
        self.dead = False
        self._io: tuple[asyncio.ReadTransport, asyncio.WriteTransport] | None = None

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        with contextlib.suppress(OSError):  # the worker died: its result pipe says so
            while view:
                view = view[os.write(self._jobs, view) :]

    async def open(self, on_frame: Callable[[_Slot, bytes | None], None]) -> None:
        """Reads and writes its pipes on the running loop, once the set-up is sent
        (what the worker sent before waits in the pipe)."""
        await asyncio.to_thread(self._feeder.join)
        writer = await frames.writer(self._jobs)
        self._io = (await frames.reader(self._results, lambda f: on_frame(self, f)), writer)

    @property
    def usable(self) -> bool:
        return self._io is not None and not self.dead

    @property
    def usable_io(self) -> bool:
        return self._io is not None

    def send(self, msg: Any) -> None:
        if self._io is not None and not self._io[1].is_closing():
            self._io[1].write(frames.frame(pickle.dumps(msg, protocol=_PROTO)))

    def stop(self) -> None:
        """Blocking: waits for the worker asked to stop (terminated if it hangs)."""
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(OSError):
                    self.proc.send_signal(sig)
            try:
                self.proc.wait(_STOP_S if sig is None else 5)
                return
            except subprocess.TimeoutExpired:
                continue

    def close_io(self) -> None:
        """Closes its pipe ends (the transports own them once open). From another event
        loop than the one they were opened on (a CLI closes the runtime after its run's
        loop has ended), the pipes are closed directly: the worker reads EOF and stops."""
        if self._io is not None:
            for t in self._io:
                try:
                    t.close()
                except RuntimeError:  # its loop is closed
                    pipe = t.get_extra_info("pipe")
                    with contextlib.suppress(OSError, AttributeError):
                        pipe.close()
        else:
            self._feeder.join()  # the worker read its set-up, or died (then the write failed)
            for fd in (self._jobs, self._results):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._io = None


class ProcessRuntime:
    """Runs jobs on ``cfg.runtime.workers`` worker processes (module doc).

    Args:
        cfg: the campaign config.
        endpoint: the ready endpoint (reachable from this machine's processes).
        operators: the resolved operators (None: each worker resolves them from ``cfg``).
        domain: the campaign's domain, built once on the driver; pickled to each worker
            (None: each worker builds its own from ``cfg``).

    Attributes:
        replaced: how many dead workers were replaced.
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        endpoint: EndpointConfig,
        operators: Mapping[str, PromptOperator] | None = None,
        domain: Domain | None = None,
    ) -> None:
        n = cfg.runtime.workers
        per_worker = dataclasses.replace(endpoint, concurrency=max(1, math.ceil(endpoint.concurrency / n)))
        self._payload = pickle.dumps((cfg, per_worker, operators, domain, n), protocol=_PROTO)
        self._ids = itertools.count()
        self._waiting: list[_Pending] = []  # jobs with no open worker to go to yet
        self._opening: set[asyncio.Task[None]] = set()
        self._start_deaths = 0  # workers in a row that died before they were ready
        self._error: WorkerStartError | None = None
        self._loop: asyncio.AbstractEventLoop | None = (
            None  # the loop the workers' pipes are read on (from the first job)
        )
        self.replaced = 0
        self._slots: list[_Slot] = []
        try:
            for _ in range(n):
                self._slots.append(_Slot(self._payload))
        except BaseException:
            for slot in self._slots:
                slot.proc.kill()
                slot.proc.wait()
                slot.close_io()
            raise

    # ----------------------------------------------------------------- messages

    def _on_frame(self, slot: _Slot, frame: bytes | None) -> None:
        if frame is None:
            self._died(slot)
            return
        if not slot.ready:
            head, detail = pickle.loads(frame)
            if head == "fail":  # its set-up raised: a new process would fail alike
                self._fail(WorkerStartError(f"a worker process could not set itself up:\n{detail}"))
            else:
                slot.ready = True
                self._start_deaths = 0
            return
        jid = int.from_bytes(frame[:8], "big")
        p = slot.pending.pop(jid, None)
        if p is None or p.fut.done():
            return
        try:
            value = pickle.loads(frame[9:])
        except Exception as e:  # e.g. a class the driver cannot import: that job fails
            p.fut.set_exception(RuntimeError(f"{p.job.child_id}: its result could not be read here: {e!r}"))
            return
        if frame[8]:
            p.fut.set_result(value)
        else:
            p.fut.set_exception(value)

    def _fail(self, err: WorkerStartError) -> None:
        """Nothing can run: every job waiting or running fails with ``err``."""
        self._error = err
        for p in [*self._waiting, *(p for s in self._slots for p in s.pending.values())]:
            if not p.fut.done():
                p.fut.set_exception(err)
        self._waiting.clear()
        for s in self._slots:
            s.pending.clear()

    def _died(self, slot: _Slot) -> None:
        """A worker's result pipe closed: replace it, and send its jobs elsewhere."""
        if slot.dead:
            return
        slot.dead = True
        orphans = list(slot.pending.values())
        slot.pending.clear()
        slot.close_io()
        if slot not in self._slots or self._error is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            slot.proc.wait(1)
        code = slot.proc.returncode
        if not slot.ready:
            self._start_deaths += 1
            if self._start_deaths >= START_FAILURES:
                self._waiting.extend(orphans)
                self._fail(
                    WorkerStartError(
                        f"{self._start_deaths} worker processes in a row exited before they were ready "
                        f"(last exit code {code})"
                    )
                )
                return
        new = _Slot(self._payload)
        self._slots[self._slots.index(slot)] = new
        self.replaced += 1
        self._open(new)
        for p in orphans:
            if p.fut.done():
                continue
            if p.tries > RESUBMITS:
                msg = f"{p.job.child_id}: its worker process died on all {p.tries} tries (last exit code {code})"
                p.fut.set_exception(JobLost(msg))
            else:
                self._dispatch(p)

    def _open(self, slot: _Slot) -> None:
        async def go() -> None:
            await slot.open(self._on_frame)
            waiting, self._waiting = self._waiting, []
            for p in waiting:
                self._dispatch(p)

        task = asyncio.get_running_loop().create_task(go())
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    # ----------------------------------------------------------------- jobs

    def _dispatch(self, p: _Pending) -> None:
        if p.fut.done():
            return
        if self._error is not None:
            p.fut.set_exception(self._error)
            return
        live = [s for s in self._slots if s.usable]
        if not live:
            self._waiting.append(p)
            return
        slot = min(live, key=lambda s: len(s.pending))
        jid = next(self._ids)
        p.tries += 1
        slot.pending[jid] = p
        slot.send((jid, p.job))

        def cancelled(fut: asyncio.Future[Candidate], jid: int = jid, slot: _Slot = slot) -> None:
            if fut.cancelled() and jid in slot.pending:
                del slot.pending[jid]
                slot.send((jid, None))

        p.fut.add_done_callback(cancelled)

    async def submit(self, job: Job) -> Candidate:
        """Runs ``job`` on the least-loaded worker; again elsewhere if that worker dies.

        Raises:
            JobLost: the job's worker died on each of its ``1 + RESUBMITS`` tries.
            WorkerStartError: the worker processes cannot set themselves up.
            Exception: what the job itself raised (a worker bug), as in the other runtimes.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            for slot in self._slots:
                self._open(slot)
        p = _Pending(asyncio.get_running_loop().create_future(), job)
        self._dispatch(p)
        return await p.fut

    def worker_pids(self) -> list[int]:
        """The process ids of the current workers (for fault tests and diagnostics)."""
        return [s.proc.pid for s in self._slots]

    async def close(self) -> None:
        """Stops the workers (each closes its clients first) and waits for them; also
        from another event loop than the one the jobs ran on."""
        slots, self._slots = self._slots, []
        same_loop = self._loop is asyncio.get_running_loop()
        for task in list(self._opening):
            if not task.get_loop().is_closed():
                task.cancel()
        for p in [*self._waiting, *(p for s in slots for p in s.pending.values())]:
            if not p.fut.get_loop().is_closed():
                p.fut.cancel()
        self._waiting.clear()
        for slot in slots:
            slot.dead = True
            slot.pending.clear()
            if slot.usable_io and same_loop:
                slot.send(None)
            elif slot.usable_io:  # its loop is gone: EOF on its job pipe stops it
                slot.close_io()
            else:  # never opened (no job was sent to it): nothing to finish
                with contextlib.suppress(OSError):
                    slot.proc.terminate()
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in slots))
        for slot in slots:
            slot.close_io()


def make_runtime(
    cfg: CampaignConfig,
    endpoint: EndpointConfig,
    operators: Mapping[str, PromptOperator] | None,
    domain: Domain | None,
    ray_address: str | None,
) -> ProcessRuntime:
    """``runtime.kind = "process"`` (see :data:`qdsearch.runtime.RUNTIMES`): checks on the
    driver, before any worker starts, that the judge's injection check can load its model."""
    from qdsearch.judge.screening import require

    require(cfg)
    return ProcessRuntime(cfg, endpoint, operators, domain)
