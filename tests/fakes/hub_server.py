"""A local stand-in for the Hugging Face Hub's upload endpoints, on 127.0.0.1.

Just enough of the API that ``huggingface_hub.HfApi.create_repo`` and
``create_commit`` use: ``POST /api/repos/create``, ``POST /api/validate-yaml``,
``POST /api/{type}s/{repo}/preupload/{rev}`` (every file "regular": its bytes come
inline with the commit) and ``POST /api/{type}s/{repo}/commit/{rev}`` (NDJSON).
Point ``HF_ENDPOINT`` at :attr:`FakeHub.url`. Everything received is kept for the
test to check: the repos created, the files committed and every request's headers.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

_REPO = r"(?P<type>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}  # repo id -> the create payload
        self.files: dict[str, dict[str, bytes]] = {}  # repo id -> path -> content
        self.commits: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self.fail_create: int | None = None  # answer /api/repos/create with this status
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                hub.requests.append(("POST", path, dict(self.headers)))
                if path == "/api/repos/create":
                    if hub.fail_create:
                        self._send(hub.fail_create, {"error": "You don't have the rights to create this dataset"})
                        return
                    body = json.loads(raw)
                    repo = f"{body['organization']}/{body['name']}"
                    if repo in hub.repos:
                        self._send(409, {"error": "You already created this dataset repo", "url": repo})
                        return
                    hub.repos[repo] = body
                    hub.files[repo] = {}
                    self._send(200, {"url": f"{hub.url}/datasets/{repo}"})
                elif path == "/api/validate-yaml":
                    content = json.loads(raw)["content"]
                    try:
                        meta = yaml.safe_load(content.split("---\n")[1]) if content.startswith("---\n") else None
                    except yaml.YAMLError as e:
                        self._send(400, {"errors": [{"message": f"invalid YAML: {e}"}]})
                        return
                    if not isinstance(meta, dict):
                        self._send(200, {"warnings": [{"message": "empty or missing yaml metadata"}]})
                        return
                    self._send(200, {})
                elif m := re.fullmatch(rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)", path):
                    if m["repo"] not in hub.repos:
                        self._send(404, {"error": "Repository not found"})
                        return
                    files = json.loads(raw)["files"]
                    self._send(
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                for f in files
                            ]
                        },
                    )
                elif m := re.fullmatch(rf"/api/{_REPO}/commit/(?P<rev>[^/]+)", path):
                    repo = m["repo"]
                    if repo not in hub.repos:
                        self._send(404, {"error": "Repository not found"})
                        return
                    lines = [json.loads(x) for x in raw.decode().splitlines() if x.strip()]
                    hub.commits.append({"repo": repo, "revision": m["rev"], "lines": lines})
                    for item in lines:
                        if item["key"] == "file":
                            v = item["value"]
                            assert v["encoding"] == "base64"
                            hub.files[repo][v["path"]] = base64.b64decode(v["content"])
                    oid = f"{len(hub.commits):040x}"
                    self._send(200, {"commitUrl": f"{hub.url}/datasets/{repo}/commit/{oid}", "commitOid": oid})
                else:
                    self._send(404, {"error": f"no such endpoint in the fake hub: {path}"})

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path, dict(self.headers)))
                self._send(404, {"error": f"no such endpoint in the fake hub: {self.path}"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
