"""Frames over pipes for the process runtime (:mod:`qdsearch.runtime.procs`): an
8-byte big-endian length, then the bytes; read and written by an event loop's pipe
transports (non-blocking), or read whole from a blocking pipe (a worker's set-up)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

__all__ = ["Frames", "frame", "read_frame", "reader", "writer"]

HEAD = 8  # frame header: the length, big-endian


def frame(data: bytes) -> bytes:
    """``data`` as one frame."""
    return len(data).to_bytes(HEAD, "big") + data


class Frames(asyncio.Protocol):
    """Splits a pipe's bytes into frames; ``on_frame(None)`` when the pipe closes."""

    def __init__(self, on_frame: Callable[[bytes | None], None]) -> None:
        self._buf = bytearray()
        self._on_frame = on_frame

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        start = 0
        while len(buf) - start >= HEAD:
            n = int.from_bytes(buf[start : start + HEAD], "big")
            if len(buf) - start - HEAD < n:
                break
            one = bytes(buf[start + HEAD : start + HEAD + n])
            start += HEAD + n
            self._on_frame(one)
        if start:
            del buf[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_frame(None)


async def writer(fd: int) -> asyncio.WriteTransport:
    """The running loop's transport over a pipe's write end (it owns the fd)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(fd, "wb", 0))
    return transport


async def reader(fd: int, on_frame: Callable[[bytes | None], None]) -> asyncio.ReadTransport:
    """The running loop's transport over a pipe's read end (it owns the fd): frames go
    to ``on_frame`` from now on, so open the writer that answers them first."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: Frames(on_frame), os.fdopen(fd, "rb", 0))
    return transport


def read_frame(fd: int) -> bytes:
    """One frame from a blocking pipe (the set-up payload); EOFError if it closes first."""

    def exactly(n: int) -> bytes:
        parts, left = [], n
        while left:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError("the driver closed the pipe")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    return exactly(int.from_bytes(exactly(HEAD), "big"))
