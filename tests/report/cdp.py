"""A small Chrome DevTools Protocol client for the report's browser tests.

It starts Debian's headless Chromium with ``--remote-debugging-port=0``, reads the
browser's websocket address from its stderr and speaks the protocol over one
aiohttp websocket (flat sessions: each page is a target attached with
``flatten``). Clicks and hovers are real input events at an element's centre
(``Input.dispatchMouseEvent``), typing is ``Input.insertText``, screenshots are
``Page.captureScreenshot``. Everything is bounded in time; :meth:`Browser.close`
ends the browser process it started.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium and its DevTools connection."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[tuple[str | None, str, dict[str, Any]]] = []
        self._event_seen = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.stderr: list[str] = []

    async def start(self, profile: Path, timeout_s: float = 60.0) -> Browser:
        assert CHROMIUM, "the browser tests need Debian's chromium package"
        profile.mkdir(parents=True, exist_ok=True)
        env = {"HOME": str(profile), "PATH": "/usr/bin:/bin"}
        self.proc = await asyncio.create_subprocess_exec(
            CHROMIUM, *_FLAGS, f"--user-data-dir={profile / 'chrome'}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        assert self.proc.stderr is not None
        url = await asyncio.wait_for(self._address(self.proc.stderr), timeout_s)
        self._tasks.append(asyncio.ensure_future(self._drain(self.proc.stderr)))
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(url, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        self._tasks.append(asyncio.ensure_future(self._read()))
        return self

    async def _address(self, stream: asyncio.StreamReader) -> str:
        while True:
            line = (await stream.readline()).decode(errors="replace")
            if not line:
                raise CDPError("chromium exited before listening: " + "".join(self.stderr[-20:]))
            self.stderr.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                return m.group(1)

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr.append(line.decode(errors="replace"))
            del self.stderr[:-200]

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif "method" in data:
                self._events.append((data.get("sessionId"), data["method"], data.get("params", {})))
                self._event_seen.set()

    async def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
                   timeout_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
        assert self._ws is not None
        i = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[i] = fut
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self._ws.send_str(json.dumps(msg))
        reply = await asyncio.wait_for(fut, timeout_s)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def wait_event(self, method: str, session: str | None, timeout_s: float = 30.0) -> dict[str, Any]:
        """Waits for (and consumes) the first ``method`` event of ``session``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while True:
            for k, (sid, name, params) in enumerate(self._events):
                if name == method and sid == session:
                    del self._events[k]
                    return params
            self._event_seen.clear()
            left = end - loop.time()
            if left <= 0:
                raise CDPError(f"no {method} event within {timeout_s} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_seen.wait(), left)

    async def page(self, width: int = 1400, height: int = 900) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        for domain in ("Page", "Runtime"):
            await page.send(f"{domain}.enable")
        await page.resize(width, height)
        return page

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self.send("Browser.close", timeout_s=5)
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._http is not None:
            await self._http.close()
        for t in self._tasks:
            t.cancel()
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class Page:
    """One tab of the browser."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.console_errors: list[str] = []

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, session=self.session)

    async def resize(self, width: int, height: int) -> None:
        await self.send("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip

    async def goto(self, url: str, timeout_s: float = 30.0) -> None:
        reply = await self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise CDPError(f"navigate {url}: {reply['errorText']}")
        await self.browser.wait_event("Page.loadEventFired", self.session, timeout_s)

    async def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises are awaited)."""
        r = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise CDPError(f"{expression[:80]}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float = 20.0, interval_s: float = 0.1) -> Any:
        """Polls until ``expression`` is truthy; returns its value."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if loop.time() > end:
                raise CDPError(f"timed out waiting for {expression[:120]}")
            await asyncio.sleep(interval_s)

    async def centre(self, selector: str) -> tuple[float, float]:
        """Scrolls the element into view; returns its centre in viewport pixels."""
        js = (f"(function(){{var e=document.querySelector({json.dumps(selector)});if(!e)return null;"
              "e.scrollIntoView({block:'center'});var r=e.getBoundingClientRect();"
              "return [r.left+r.width/2, r.top+r.height/2];})()")  # fmt: skip
        xy = await self.eval(js)
        if not xy:
            raise CDPError(f"no element {selector}")
        return float(xy[0]), float(xy[1])

    async def _mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        await self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra})

    async def hover(self, selector: str) -> None:
        x, y = await self.centre(selector)
        await self._mouse("mouseMoved", x, y)

    async def click(self, selector: str) -> None:
        x, y = await self.centre(selector)
        await self._mouse("mouseMoved", x, y)
        await self._mouse("mousePressed", x, y, button="left", clickCount=1)
        await self._mouse("mouseReleased", x, y, button="left", clickCount=1)

    async def type(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.send("Input.insertText", {"text": text})

    async def screenshot(self, path: Path, width: int) -> Path:
        """A full-page PNG at ``width`` CSS pixels."""
        await self.resize(width, 900)
        height = await self.eval("Math.ceil(document.documentElement.scrollHeight)")
        await self.resize(width, min(int(height), 16000))
        await self.eval("new Promise(function(r){requestAnimationFrame(function(){requestAnimationFrame(r)})})")
        shot = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        await self.resize(width, 900)
        return path
