"""Micro-batching: concurrent requests share one model call, run off the event loop.

One worker thread owns the model. Requests wait in a queue; the worker takes the first, keeps taking
more until it holds `max_batch` or `max_wait_ms` have passed since the first, runs them as one batch
and hands each caller its own answer through an asyncio future. One thread means one model in memory
and no two forward passes fighting over the cores.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Job(Generic[Item]):
    item: Item
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


_STOP = object()


class Batcher(Generic[Item, Result]):
    """`await submit(item)` -> `run([item, ...])[i]`, with concurrent items grouped into one `run` call.

    When a batch fails, its items are run again one by one, so a bad item fails only its own request.
    """

    def __init__(self, run: Callable[[Sequence[Item]], Sequence[Result]], max_batch: int = 8,
                 max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    @property
    def pending(self) -> int:
        """Requests waiting for the model (the batch being run not counted)."""
        return self._queue.qsize()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="mqspn-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the queued jobs, then end the worker."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def submit(self, item: Item) -> Result:
        if self._thread is None:
            raise RuntimeError("the batcher is not running (start() it first)")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(item, future, loop))
        return await future

    def _next_batch(self) -> tuple[list[_Job], bool]:
        """-> (jobs, stop): blocks for the first job, then gathers until full or the wait is over."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        jobs = [first]
        deadline = time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _work(self) -> None:
        stop = False
        while not stop:
            jobs, stop = self._next_batch()
            if jobs:
                self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        try:
            results = self.run([job.item for job in jobs])
        except Exception as err:  # noqa: BLE001 - handed to the callers, who decide what it means
            if len(jobs) > 1:
                for job in jobs:
                    self._run([job])
                return
            _settle(jobs[0], error=err)
            return
        for job, result in zip(jobs, results):
            _settle(job, result=result)


def _settle(job: _Job, result: Any = None, error: Optional[BaseException] = None) -> None:
    def done() -> None:
        if job.future.cancelled():  # the client went away
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    job.loop.call_soon_threadsafe(done)
