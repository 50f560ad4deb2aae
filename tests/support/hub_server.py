"""A loopback stand-in for the Hugging Face Hub, serving model repositories from directories.

It speaks the part of the hub's HTTP layout that `huggingface_hub` downloads use: repository
info at `/api/models/{repo}/revision/{rev}`, files at `/{repo}/resolve/{rev}/{file}` with the
hub's headers and byte ranges. `cut_first_download` drops the connection halfway through the
first download of a file, as a flaky network would, to exercise resuming.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubStandIn:
    def __init__(self, repos: dict[str, Path], *, cut_first_download: str | None = None) -> None:
        self.repos = repos
        self.cut_first_download = cut_first_download
        self.ranges: list[tuple[str, str]] = []  # (file, Range header) of ranged downloads
        self.downloads: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(body=True)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def _answer(self, *, body: bool) -> None:
                path = unquote(self.path.split("?")[0])
                if path.startswith("/api/models/") and "/tree/" in path:
                    return self._tree(path.removeprefix("/api/models/").split("/tree/")[0])
                if path.startswith("/api/models/"):
                    return self._info(path.removeprefix("/api/models/").split("/revision/")[0])
                parts = path.lstrip("/").split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self._file("/".join(parts[:2]), "/".join(parts[4:]), body=body)
                self.send_error(404)

            def _info(self, repo: str) -> None:
                files = self._files(repo)
                if files is not None:
                    self._json({"id": repo, "sha": COMMIT,
                                "siblings": [{"rfilename": f} for f in files]})  # fmt: skip

            def _tree(self, repo: str) -> None:
                files = self._files(repo)
                if files is not None:
                    root = hub.repos[repo]
                    self._json([{"type": "file", "path": f, "size": (root / f).stat().st_size,
                                 "oid": _digest(root / f, "sha1")}
                                for f in files])  # fmt: skip

            def _files(self, repo: str) -> list[str] | None:
                root = hub.repos.get(repo)
                if root is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.end_headers()
                    return None
                return [
                    p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()
                ]

            def _json(self, value: object) -> None:
                payload = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _file(self, repo: str, name: str, *, body: bool) -> None:
                root = hub.repos.get(repo)
                file = root / name if root else None
                if file is None or not file.is_file():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                size = file.stat().st_size
                start = 0
                header = self.headers.get("Range")
                if header and body:
                    hub.ranges.append((name, header))
                    start = int(header.removeprefix("bytes=").split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{_digest(file, "sha256")}"')
                self.send_header("Content-Length", str(size - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.end_headers()
                if not body:
                    return
                first = name == hub.cut_first_download and name not in hub.downloads
                hub.downloads.append(name)
                with file.open("rb") as data:
                    data.seek(start)
                    if first:  # half of it, then the connection drops
                        self.wfile.write(data.read(size // 2 - start))
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    shutil.copyfileobj(data, self.wfile, 1 << 20)

        return Handler


@functools.cache
def _digest(path: Path, algorithm: str) -> str:
    """A file's digest, read in chunks once (the real models are hundreds of MB)."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
