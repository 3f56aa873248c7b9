"""An aiohttp app served on 127.0.0.1 by its own event loop in a daemon thread.

What the fake endpoints (:mod:`tests.fakes.openai_server`,
:mod:`tests.fakes.batch_server`) share: the port is picked by the OS (port 0),
:meth:`ServedApp.start` returns once it listens (or raises with why not),
:meth:`ServedApp.stop` releases anything waiting on :attr:`ServedApp._stopping`
at once, and both are safe to call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Self

from aiohttp import web


class ServedApp:
    """Base of a fake server: subclasses add their routes in :meth:`routes`."""

    thread_name = "fake-server"
    port: int
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None
    _stopping: asyncio.Event | None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        if getattr(self, "_thread", None) is not None:
            return self
        ready = threading.Event()
        self._stopping = None
        self._start_error: BaseException | None = None

        async def serve() -> None:
            app = web.Application()
            self.routes(app)
            runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                server = site._server
                assert server is not None
                self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                self._loop = asyncio.get_running_loop()
                self._stopping = asyncio.Event()
                ready.set()
                await self._stopping.wait()
            finally:
                await runner.cleanup()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(serve())
            except BaseException as e:  # surfaced by start() if it failed before ready
                self._start_error = e
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=main, daemon=True, name=self.thread_name)
        self._thread.start()
        if not ready.wait(10) or self._stopping is None:
            self._thread = None
            raise RuntimeError(f"{type(self).__name__} did not start: {self._start_error!r}")
        return self

    def stop(self) -> None:
        """Stops the server; requests waiting on ``_stopping`` are released at once."""
        thread, loop, stopping = getattr(self, "_thread", None), self._loop, self._stopping
        self._thread = None
        if thread is None or loop is None or stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
