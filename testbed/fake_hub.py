"""A loopback stand-in for the Hugging Face Hub: the few routes huggingface_hub uses to download.

This fakes only what cannot exist here (the Hub is unreachable from these machines). It serves
one model repository from a local directory with the Hub's own contract: model info with file
metadata at a commit, HEAD for file metadata (X-Repo-Commit, X-Linked-Etag, X-Linked-Size),
GET with Range for resumable downloads, and X-Error-Code on 404s. Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", "tokenizer.json")


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    range: str | None


@dataclass
class FakeHub:
    repo_id: str
    directory: Path
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    wrong_sha256: set[str] = field(default_factory=set)  # files whose advertised sha256 is wrong
    drop_once: set[str] = field(default_factory=set)  # files whose first GET breaks off halfway
    requests: list[Request] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.directory.iterdir()) if p.is_file()}

    def sha256(self, name: str, data: bytes) -> str:
        return "0" * 64 if name in self.wrong_sha256 else hashlib.sha256(data).hexdigest()

    def file_gets(self, name: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(f"/{name}")]

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:  # quiet
                return

            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_HEAD(self) -> None:
                hub._handle(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append(Request(method, path, handler.headers.get("Authorization"), handler.headers.get("Range")))
        info_prefix = f"/api/models/{self.repo_id}/revision/"
        file_prefix = f"/{self.repo_id}/resolve/"
        if path.startswith(info_prefix):
            revision = path[len(info_prefix) :]
            if revision not in ("main", self.commit):
                return _error(handler, "RevisionNotFound", "Invalid rev id")
            return _json(handler, self._info())
        if path.startswith(file_prefix):
            revision, _, name = path[len(file_prefix) :].partition("/")
            files = self.files()
            if revision not in ("main", self.commit):
                return _error(handler, "RevisionNotFound", "Invalid rev id")
            if name not in files:
                return _error(handler, "EntryNotFound", "Entry not found")
            return self._file(handler, method, name, files[name])
        return _error(handler, "RepoNotFound", "Repository not found")

    def _info(self) -> dict[str, object]:
        siblings = []
        for name, data in self.files().items():
            sibling: dict[str, object] = {"rfilename": name, "size": len(data), "blobId": _git_sha1(data)}
            if name.endswith(LFS_SUFFIXES):
                sibling["lfs"] = {"sha256": self.sha256(name, data), "size": len(data), "pointerSize": 134}
            siblings.append(sibling)
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": self.commit, "private": False, "siblings": siblings}

    def _file(self, handler: BaseHTTPRequestHandler, method: str, name: str, data: bytes) -> None:
        lfs = name.endswith(LFS_SUFFIXES)
        etag = self.sha256(name, data) if lfs else _git_sha1(data)
        start = 0
        requested = handler.headers.get("Range")
        if method == "GET" and requested and requested.startswith("bytes="):
            start = int(requested[6:].split("-")[0] or 0)
        handler.send_response(206 if start else 200)
        handler.send_header("X-Repo-Commit", self.commit)
        handler.send_header("ETag", f'"{etag}"')
        if lfs:
            handler.send_header("X-Linked-Etag", f'"{etag}"')
            handler.send_header("X-Linked-Size", str(len(data)))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        if method == "GET" and name in self.drop_once:
            self.drop_once.discard(name)
            handler.wfile.write(data[start : start + (len(data) - start) // 2])
            handler.wfile.flush()
            handler.close_connection = True  # the client sees a body cut short, as on a dropped link
            return
        if method == "GET":
            handler.wfile.write(data[start:])


def _json(handler: BaseHTTPRequestHandler, data: object) -> None:
    body = json.dumps(data).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _error(handler: BaseHTTPRequestHandler, code: str, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    handler.send_response(404)
    handler.send_header("X-Error-Code", code)
    handler.send_header("X-Error-Message", message)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
