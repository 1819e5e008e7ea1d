"""Gathering concurrent calls into one statement: many callers share one round trip and one commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ...errors import StateBackendError

__all__ = ["Batcher", "copy_error"]

A = TypeVar("A")
R = TypeVar("R")


class Batcher(Generic[A, R]):
    """Runs calls directly while few are in flight; gathers the rest into one batched call.

    With nothing else in flight (concurrency 1) a call goes straight to ``single``: no extra latency.
    Once ``limit`` calls are in flight, new calls queue; the first queued call starts a task that waits
    for a free slot and then runs everything queued by then as one ``many`` call.

    While batches carry more than one call (``busy``), calls queue even with a slot free: the callers of a
    batch that just finished call again in the same tick, and the first of them going straight out alone would
    make every other round trip a single call. A batch of one means the crowd has gone: calls go straight again.
    """

    __slots__ = ("_limit", "_many", "_single", "_tasks", "busy", "in_flight", "pending", "waiter")

    def __init__(
        self,
        single: Callable[[A], Awaitable[R]],
        many: Callable[[list[A]], Awaitable[list[R | BaseException]]],
        limit: int,
    ) -> None:
        self._single = single
        self._many = many
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.busy = False
        self.pending: list[tuple[A, asyncio.Future[R]]] | None = None
        self.waiter: asyncio.Future[None] | None = None

    def release(self) -> None:
        """A statement finished: free its slot and wake the batch waiting for one."""
        self.in_flight -= 1
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def __call__(self, arg: A) -> R:
        if self.pending is None and self.in_flight < self._limit and not self.busy:
            self.in_flight += 1
            try:
                return await self._single(arg)
            finally:
                self.release()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if self.pending is None:
            self.pending = []
            # A task, not the caller: cancelling one caller must not strand the others of its batch.
            task = loop.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.pending.append((arg, future))
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self.in_flight >= self._limit:
            if self.waiter is None:
                self.waiter = loop.create_future()
            await self.waiter
        batch = self.pending or []
        self.pending = None
        batch = [(arg, fut) for arg, fut in batch if not fut.done()]
        self.busy = len(batch) > 1
        if not batch:
            return
        self.in_flight += 1
        try:
            results = await self._many([arg for arg, _ in batch])
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    if isinstance(exc, asyncio.CancelledError):
                        fut.cancel()
                    else:
                        fut.set_exception(copy_error(exc))
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
        finally:
            self.release()

    async def drain(self) -> None:
        """Wait for batches already started (used by close())."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def copy_error(exc: BaseException) -> BaseException:
    # One exception object raised in many tasks would share (and garble) one traceback.
    if isinstance(exc, StateBackendError):
        copy = StateBackendError.__new__(StateBackendError)
        copy.args, copy.backend, copy.url = exc.args, exc.backend, exc.url
        copy.__cause__ = exc.__cause__
        return copy
    return exc
