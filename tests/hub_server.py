"""A local stand-in for the Hugging Face Hub on 127.0.0.1, answering the routes huggingface_hub
2.4.0 calls (`model_info` with `blobs=true`, the tree listing, HEAD and ranged GET of
`/{repo}/resolve/{rev}/{file}`) the way the Hub does (206 + Content-Range, ETag, X-Repo-Commit,
X-Error-Code), and counting every byte it serves, per file."""

import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

TOKEN = "hf_testtoken"


@dataclass
class Repo:
    files: dict[str, Path]  # path in the repo -> local file
    sha: str
    gated: bool = False
    card: dict[str, object] = field(default_factory=dict)

    def etag(self, path: str) -> str:
        return hashlib.sha256(f"{self.sha}/{path}/{self.files[path].stat().st_size}".encode()).hexdigest()


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.served: Counter[str] = Counter()  # "repo/path" -> body bytes served by resolve GETs
        self.ranges: Counter[str] = Counter()  # "repo/path" -> resolve GETs
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, repo_id: str, files: dict[str, Path], gated: bool = False, **card: object) -> None:
        sha = hashlib.sha1(repo_id.encode()).hexdigest()
        self.repos[repo_id] = Repo(files, sha, gated, dict(card))

    def start(self) -> "HubServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def reset_counts(self) -> None:
        with self.lock:
            self.served.clear()
            self.ranges.clear()
            self.requests.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str) -> None:
                body = json.dumps({"error": message}).encode()
                self._send(
                    status,
                    body,
                    {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message},
                )

            def _authorized(self, repo: Repo) -> bool:
                return not repo.gated or self.headers.get("authorization") == f"Bearer {TOKEN}"

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path)
                with hub.lock:
                    hub.requests.append(f"{self.command} {path}")
                m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+)|/tree/([^/]+)(/.*)?)?$", path)
                if m:
                    return self._api(m.group(1), m.group(3) is not None)
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if m:
                    return self._resolve(m.group(1), m.group(3))
                self._error(404, "RepoNotFound", "Repository not found")

            def _api(self, repo_id: str, tree: bool) -> None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(401, "RepoNotFound", "Repository not found")
                entries = []
                for p, f in sorted(repo.files.items()):
                    size = f.stat().st_size
                    lfs = {"size": size, "sha256": repo.etag(p), "pointerSize": 134}
                    entries.append((p, size, lfs))
                if tree:
                    body = [
                        {"type": "file", "oid": lfs["sha256"], "size": size, "path": p, "lfs": lfs}
                        for p, size, lfs in entries
                    ]
                    return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
                info = {
                    "_id": repo.sha[:24],
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": repo.sha,
                    "private": False,
                    "gated": "manual" if repo.gated else False,
                    "tags": ["gguf"],
                    "siblings": [
                        {"rfilename": p, "size": size, "blobId": repo.sha[:40], "lfs": lfs}
                        for p, size, lfs in entries
                    ],
                }
                if repo.card:
                    info["cardData"] = repo.card
                self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})

            def _resolve(self, repo_id: str, file: str) -> None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(401, "RepoNotFound", "Repository not found")
                if not self._authorized(repo):
                    return self._error(401, "GatedRepo", "Access to this model is restricted")
                if file not in repo.files:
                    return self._error(404, "EntryNotFound", "Entry not found")
                local = repo.files[file]
                size = local.stat().st_size
                headers = {
                    "ETag": f'"{repo.etag(file)}"',
                    "X-Repo-Commit": repo.sha,
                    "Accept-Ranges": "bytes",
                    "Content-Type": "application/octet-stream",
                }
                start, end, status = 0, size - 1, 200
                rng = self.headers.get("range")
                if rng:
                    m = re.match(r"^bytes=(\d+)-(\d*)$", rng.strip())
                    if not m or int(m.group(1)) >= size:
                        return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                    start = int(m.group(1))
                    end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
                if self.command == "HEAD":
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(end - start + 1))
                    self.end_headers()
                    return
                with local.open("rb") as f:
                    f.seek(start)
                    body = f.read(end - start + 1)
                with hub.lock:
                    hub.served[f"{repo_id}/{file}"] += len(body)
                    hub.ranges[f"{repo_id}/{file}"] += 1
                self._send(status, body, headers)

        return Handler
