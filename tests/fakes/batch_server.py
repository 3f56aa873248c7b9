"""A fake OpenAI-compatible Files and Batches server on 127.0.0.1 for tests.

Speaks the part of the protocol a batch client uses: ``POST /v1/files`` (multipart,
``purpose=batch``), ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches/{id}`` and ``POST /v1/batches/{id}/cancel``. A batch job moves
``validating`` -> ``in_progress`` -> ``completed`` after ``delay_s``; each line of its
input file is answered by ``responder(body) -> str`` (a chat completion) unless
``fail(custom_id, attempt)`` says it fails (an error line with status 500) or the job
``expire``\\ s first (only the first ``expire_after`` lines are answered, the rest go
into the error file as ``batch_expired``). ``no_batch_api`` answers 404 to every
Files and Batches request, as a server without a batch API does. Runs aiohttp in a
daemon thread, like :mod:`tests.fakes.openai_server`.

So that a whole campaign can run against it, it also answers ``GET /v1/batches`` (the
list: the batch API probe), single ``POST /v1/chat/completions`` calls (by the same
responder; counted in ``single_calls``, with the custom-id-less bodies in ``singles``)
and ``POST /v1/embeddings`` (the fake OpenAI server's vectors). ``fail_status`` is the
status of a scripted line failure (500: retried in the next job; 400: failed for good);
``fail`` may also return the status itself.
``hold(custom_ids)`` keeps a job in progress (its id in ``held``) until ``released`` is set:
a test can kill its client while the job is known to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.app_thread import ServedApp
from tests.fakes.openai_server import fake_embedding

__all__ = ["FakeBatches"]


class FakeBatches(ServedApp):
    """The fake server (see the module docstring).

    Attributes:
        files: file id -> bytes; batches: batch id -> the batch object.
        created: how many batch jobs were created; attempts: custom id -> times it was in a job.
        delay_s: how long a job stays in progress; expire_after: lines answered by
            a job that expires (None: jobs do not expire); expire_jobs: how many jobs expire.
    """

    thread_name = "fake-batches"

    def __init__(
        self,
        responder: Callable[[dict[str, Any]], str] | None = None,
        *,
        delay_s: float = 0.05,
        fail: Callable[[str, int], bool | int] | None = None,
        expire_after: int | None = None,
        expire_jobs: int = 1,
        no_batch_api: bool = False,
        fail_status: int = 500,
        hold: Callable[[list[str]], bool] | None = None,
    ) -> None:
        self.responder = responder or (lambda body: "ok: " + str(body["messages"][-1]["content"]))
        self.delay_s = delay_s
        self.fail = fail or (lambda cid, attempt: False)
        self.expire_after = expire_after
        self.expire_jobs = expire_jobs
        self.no_batch_api = no_batch_api
        self.fail_status = fail_status
        self.hold = hold
        self.held: list[str] = []  # jobs held in progress (hold said so) until released
        self.released = threading.Event()
        self.single_calls = 0
        self.singles: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.created = 0
        self.attempts: dict[str, int] = {}
        self.port = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------ handlers
    def _missing(self) -> web.Response:
        body = {"error": {"message": "Not found", "type": "invalid_request_error", "param": None, "code": "404"}}
        return web.json_response(body, status=404)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if self.no_batch_api:
            return self._missing()
        form = await request.post()
        upload = form.get("file")
        if form.get("purpose") != "batch" or upload is None or isinstance(upload, str):
            return web.json_response({"error": {"message": "purpose=batch and a file are required"}}, status=400)
        data = upload.file.read()
        with self._lock:
            fid = f"file-{len(self.files)}"
            self.files[fid] = data
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": upload.filename, "purpose": "batch", "status": "processed"}  # fmt: skip
        return web.json_response(obj)

    async def _content(self, request: web.Request) -> web.StreamResponse:
        if self.no_batch_api:
            return self._missing()
        data = self.files.get(request.match_info["id"])
        if data is None:
            return self._missing()
        return web.Response(body=data, content_type="application/octet-stream")

    async def _create(self, request: web.Request) -> web.StreamResponse:
        if self.no_batch_api:
            return self._missing()
        body = await request.json()
        fid = body.get("input_file_id")
        if fid not in self.files or body.get("endpoint") != "/v1/chat/completions":
            return web.json_response({"error": {"message": "bad input_file_id or endpoint"}}, status=400)
        with self._lock:
            self.created += 1
            bid = f"batch-{self.created}"
            expires = self.expire_after is not None and self.expire_jobs >= self.created
        batch = {"id": bid, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": fid,
                 "completion_window": body.get("completion_window", "24h"), "status": "validating",
                 "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}}  # fmt: skip
        self.batches[bid] = batch
        assert self._loop is not None
        self._loop.create_task(self._process(bid, expires))
        return web.json_response(batch)

    async def _process(self, bid: str, expires: bool) -> None:
        batch = self.batches[bid]
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].decode().splitlines() if x.strip()]
        batch["status"] = "in_progress"
        batch["request_counts"]["total"] = len(lines)
        with contextlib.suppress(TimeoutError):
            assert self._stopping is not None
            await asyncio.wait_for(self._stopping.wait(), timeout=self.delay_s)
        if self.hold is not None and self.hold([str(x["custom_id"]) for x in lines]):
            self.held.append(bid)
            while not self.released.is_set() and not self._stopping.is_set():
                await asyncio.sleep(0.01)
        if batch["status"] == "cancelling":
            answered, final = 0, "cancelled"
        elif expires:
            answered, final = int(self.expire_after or 0), "expired"
        else:
            answered, final = len(lines), "completed"
        out, err = [], []
        for k, line in enumerate(lines):
            cid = line["custom_id"]
            with self._lock:
                self.attempts[cid] = attempt = self.attempts.get(cid, 0) + 1
            if k >= answered:
                code = "batch_expired" if final == "expired" else "batch_cancelled"
                err.append({"id": f"req-{k}", "custom_id": cid, "response": None,
                            "error": {"code": code, "message": f"this request was not run: the batch was {final}"}})  # fmt: skip
            elif failed := self.fail(cid, attempt):
                status = self.fail_status if failed is True else int(failed)
                err.append({"id": f"req-{k}", "custom_id": cid, "error": None,
                            "response": {"status_code": status, "request_id": f"r{k}",
                                         "body": {"error": {"message": "scripted failure"}}}})  # fmt: skip
            else:
                body = self._completion(line["body"], f"chatcmpl-{bid}-{k}")
                out.append({"id": f"req-{k}", "custom_id": cid, "error": None,
                            "response": {"status_code": 200, "request_id": f"r{k}", "body": body}})  # fmt: skip
        out.reverse()  # results come in any order: clients map them by custom_id
        with self._lock:
            for key, rows in (("output_file_id", out), ("error_file_id", err)):
                if rows:
                    fid = f"file-{len(self.files)}"
                    self.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                    batch[key] = fid
            batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
            batch["status"] = final

    def _completion(self, req: dict[str, Any], cid: str) -> dict[str, Any]:
        content = self.responder(req)
        words = sum(len(str(m.get("content", "")).split()) for m in req.get("messages", []))
        return {"id": cid, "object": "chat.completion", "created": int(time.time()),
                "model": req.get("model", "fake"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": words, "completion_tokens": len(content.split()),
                          "total_tokens": words + len(content.split())}}  # fmt: skip

    async def _list(self, request: web.Request) -> web.StreamResponse:
        if self.no_batch_api:
            return self._missing()
        return web.json_response({"object": "list", "data": list(self.batches.values())[-1:], "has_more": False})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.single_calls += 1
            self.singles.append(body)
        return web.json_response(self._completion(body, f"chatcmpl-single-{self.single_calls}"))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": fake_embedding(str(t))} for i, t in enumerate(inputs)]
        n = sum(len(str(t).split()) for t in inputs)
        return web.json_response({"object": "list", "data": data, "model": str(body.get("model") or "fake"),
                                  "usage": {"prompt_tokens": n, "total_tokens": n}})  # fmt: skip

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        if self.no_batch_api:
            return self._missing()
        batch = self.batches.get(request.match_info["id"])
        return web.json_response(batch) if batch is not None else self._missing()

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        batch = self.batches.get(request.match_info["id"])
        if batch is None or self.no_batch_api:
            return self._missing()
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "cancelling"
        return web.json_response(batch)

    # ------------------------------------------------------------------ lifecycle (ServedApp)
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/batches/{id}", self._retrieve)
        app.router.add_post("/v1/batches/{id}/cancel", self._cancel)
