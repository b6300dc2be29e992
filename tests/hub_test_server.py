"""
TEST DOUBLE: a tiny Hugging Face Hub API server for the tests of ``sb3_sac_ext.hub`` (not a Hub implementation).

No installable server accepts pushes offline (olah, used for the pull tests, is a read-only mirror), so this module
implements, on a temporary folder and on 127.0.0.1 only, the endpoints that ``huggingface_hub``'s ``HfApi.model_info``
/ ``repo_info``, ``create_repo``, ``delete_repo``, ``create_commit`` (``validate-yaml``, ``preupload``, ``commit``)
and ``hf_hub_download`` (``HEAD``/``GET`` ``resolve``) call, with the headers and error codes (``X-Error-Code``) the
client reads. Every file is uploaded as a "regular" (base64, in-commit) file: no LFS, no Xet (run the client with
``HF_HUB_DISABLE_XET=1``).

Fault injection for the tests: ``faults`` maps an endpoint name (``info``, ``create``, ``delete``, ``preupload``,
``commit``, ``resolve``, ``validate``) to an HTTP status, or ``(status, X-Error-Code)``, returned instead of the
normal answer; ``tamper`` changes
the bytes served for a file without changing the commit; ``requests`` records ``(method, endpoint name, path)``.
Writes need ``Authorization: Bearer <token>`` with ``token`` in ``tokens``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Repo:
    def __init__(self, private: bool):
        self.private = private
        self.commits: dict[str, dict[str, bytes]] = {}
        self.order: list[str] = []
        self.branches: dict[str, str] = {}

    def commit(self, files: dict[str, bytes], parent: str | None, message: str) -> str:
        digest = hashlib.sha1(
            json.dumps([parent, message, sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())]).encode()
        )
        digest.update(str(len(self.order)).encode())
        sha = digest.hexdigest()
        self.commits[sha] = files
        self.order.append(sha)
        self.branches["main"] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class HubTestServer:
    """
    Start with :meth:`start` (returns the endpoint URL ``http://127.0.0.1:<port>``), stop with :meth:`stop`.

    :param tokens: Tokens accepted for writes
    """

    def __init__(self, tokens: tuple[str, ...] = ("hf_test_token",)):
        self.tokens = set(tokens)
        self.repos: dict[str, _Repo] = {}
        self.faults: dict[str, int] = {}
        self.tampered: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------------- control

    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.endpoint

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None

    def tamper(self, repo_id: str, path: str, data: bytes) -> None:
        """Serve ``data`` for ``path`` of ``repo_id`` from now on, without changing any commit."""
        self.tampered[(repo_id, path)] = data

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """:return: The files of a revision (to inspect what was pushed)."""
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.resolve(revision)])  # type: ignore[index]


class _Handler(BaseHTTPRequestHandler):
    hub: HubTestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr logging
        pass

    # -------------------------------------------------------------------------------- plumbing

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, code: str | None, message: str, head: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, b"" if head else json.dumps({"error": message}).encode(), headers, head=head)

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[len("Bearer ") :] in self.hub.tokens

    def _fault(self, name: str, head: bool = False) -> bool:
        fault = self.hub.faults.get(name)
        if fault is None:
            return False
        status, code = fault if isinstance(fault, tuple) else (fault, None)
        self._error(status, code, f"injected fault on {name}", head=head)
        return True

    def _record(self, name: str) -> None:
        with self.hub.lock:
            self.hub.requests.append((self.command, name, self.path))

    # -------------------------------------------------------------------------------- routes

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_POST(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        body = self._body()
        if path == "/api/validate-yaml":
            self._record("validate")
            if not self._fault("validate"):
                self._json(200, {"errors": [], "warnings": []})
            return
        if path == "/api/repos/create":
            self._record("create")
            if self._fault("create"):
                return
            if not self._authorized():
                self._error(401, None, "Invalid credentials in Authorization header")
                return
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            with self.hub.lock:
                if repo_id in self.hub.repos:
                    self._error(409, None, "You already created this model repo")
                    return
                repo = _Repo(private=payload.get("visibility") == "private" or bool(payload.get("private")))
                repo.commit({".gitattributes": b"*.zip filter=lfs diff=lfs merge=lfs -text\n"}, None, "initial commit")
                self.hub.repos[repo_id] = repo
            self._json(200, {"url": f"{self.hub.endpoint}/{repo_id}", "name": repo_id})
            return
        parts = path.split("/")
        # /api/models/<org>/<name>/(preupload|commit)/<revision>
        if len(parts) == 7 and parts[:3] == ["", "api", "models"] and parts[5] in ("preupload", "commit"):
            repo_id, action, revision = f"{parts[3]}/{parts[4]}", parts[5], urllib.parse.unquote(parts[6])
            self._record(action)
            if self._fault(action):
                return
            if not self._authorized():
                self._error(401, None, "Invalid credentials in Authorization header")
                return
            repo = self.hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
                return
            if repo.resolve(revision) is None:
                self._error(404, "RevisionNotFound", "Revision not found")
                return
            if action == "preupload":
                files = json.loads(body)["files"]
                answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]
                self._json(200, {"files": answer, "commitOid": repo.resolve(revision)})
                return
            self._commit(repo_id, repo, revision, body)
            return
        self._error(404, None, f"no route for POST {path}")

    def do_DELETE(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        body = self._body()
        if path != "/api/repos/delete":
            self._error(404, None, f"no route for DELETE {path}")
            return
        self._record("delete")
        if self._fault("delete"):
            return
        if not self._authorized():
            self._error(401, None, "Invalid credentials in Authorization header")
            return
        payload = json.loads(body)
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        with self.hub.lock:
            if self.hub.repos.pop(repo_id, None) is None:
                self._error(404, "RepoNotFound", "Repository not found")
                return
        self._json(200, {})

    def _commit(self, repo_id: str, repo: _Repo, revision: str, body: bytes) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        with self.hub.lock:
            parent = repo.resolve(revision)
            files = dict(repo.commits[parent])  # type: ignore[index]
            for line in lines:
                if line["key"] == "file":
                    files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                elif line["key"] in ("deletedFile", "deletedFolder"):
                    prefix = line["value"]["path"]
                    files = {k: v for k, v in files.items() if k != prefix and not k.startswith(prefix.rstrip("/") + "/")}
                elif line["key"] == "lfsFile":
                    self._error(400, None, "this test server accepts regular files only")
                    return
            sha = repo.commit(files, parent, header.get("summary", ""))
        self._json(200, {"commitUrl": f"{self.hub.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha, "success": True})

    def _route(self, head: bool) -> None:
        path = urllib.parse.urlparse(self.path).path
        parts = [urllib.parse.unquote(part) for part in path.split("/")]
        # /api/models/<org>/<name>[/revision/<rev>]
        if parts[:3] == ["", "api", "models"] and len(parts) in (5, 7):
            self._record("info")
            if self._fault("info", head):
                return
            repo_id = f"{parts[3]}/{parts[4]}"
            revision = parts[6] if len(parts) == 7 else "main"
            repo = self.hub.repos.get(repo_id)
            if repo is None or (repo.private and not self._authorized()):
                self._error(404 if repo is None else 401, "RepoNotFound", "Repository not found", head)
                return
            sha = repo.resolve(revision)
            if sha is None:
                self._error(404, "RevisionNotFound", "Invalid rev id", head)
                return
            siblings = [{"rfilename": name} for name in sorted(repo.commits[sha])]
            self._json(
                200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private, "siblings": siblings, "tags": []}
            )
            return
        # /<org>/<name>/resolve/<rev>/<path...>
        if len(parts) >= 6 and parts[3] == "resolve":
            self._record("resolve")
            if self._fault("resolve", head):
                return
            repo_id, revision, file_path = f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:])
            repo = self.hub.repos.get(repo_id)
            if repo is None or (repo.private and not self._authorized()):
                self._error(404 if repo is None else 401, "RepoNotFound", "Repository not found", head)
                return
            sha = repo.resolve(revision)
            if sha is None:
                self._error(404, "RevisionNotFound", "Invalid rev id", head)
                return
            files = repo.commits[sha]
            if file_path not in files:
                self._send(
                    404,
                    b"",
                    {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found", "X-Repo-Commit": sha},
                    head,
                )
                return
            data = self.hub.tampered.get((repo_id, file_path), files[file_path])
            etag = hashlib.sha256(data).hexdigest()
            headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": sha, "ETag": f'"{etag}"'}
            self._send(200, data, headers, head=head)
            return
        self._error(404, None, f"no route for {self.command} {path}", head)
