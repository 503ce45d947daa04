"""A tiny Hugging Face Hub on 127.0.0.1, written with the standard library only, for offline tests.

The real `huggingface_hub` client (2.4.0) talks to it unchanged when `HF_ENDPOINT` points at `hub.url`, so
`push_to_hub`, `from_pretrained(repo_id, revision=...)`, `snapshot_download` and the Trainer's push run end to end
without the internet and without mocking. It keeps what a test needs to trust those round trips:

- real commits: every commit gets a sha and keeps its own snapshot, so a pinned `revision` loads old files;
- the headers the download cache depends on (`X-Repo-Commit`, `ETag`, `Content-Length`, ranges) and the
  `X-Error-Code` 404s (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) the client turns into typed errors;
- optionally a required token: a write without `Authorization: Bearer <token>` answers 401 before anything is
  stored, so a refused push leaves no partial commit;
- a log of requests it does not know (`unknown_requests`), so a test notices when the client asks for more.

Only model repos and the "regular" upload mode exist (file bytes travel base64-encoded inside the commit):
no LFS, no xet, no pull requests, no branches besides "main".
"""

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

USER = "user"
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
REV = r"(?P<rev>[^/]+)"
# The .gitattributes the real Hub puts in the initial commit of every new repo.
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha(data: bytes) -> str:
    """The git object id of a file (`git hash-object`): the client compares it with its local files' ids."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    """An error reply: status, `X-Error-Code` (what the client dispatches on) and a human message."""

    def __init__(self, status: int, message: str, code: str | None = None, **body):
        super().__init__(message)
        self.status, self.message, self.code, self.body = status, message, code, body

    def reply(self):
        headers = {"X-Error-Message": self.message, **({"X-Error-Code": self.code} if self.code else {})}
        return self.status, headers, {"error": self.message, **self.body}


class LocalHub:
    """Repos in a temporary folder behind a `ThreadingHTTPServer`; `start()` / `stop()` around a test.

    On disk, each repo `ns/name` is a folder with `blobs/<git sha>` (file contents), `commits/<sha>.json`
    (parent, message, and the full `{path: blob}` snapshot) and `refs.json` (`{"main": <head sha>}`).
    """

    def __init__(self, token: str | None = None):
        self.token = token  # None: anyone may write; otherwise writes need this bearer token
        self.root = Path(tempfile.mkdtemp(prefix="wave-test-hub-"))
        self.requests: list[str] = []  # "METHOD /path -> status", for debugging a failing test
        self.unknown_requests: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> "LocalHub":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- inspection, for tests -------------------------------------------------------------------------------

    def repo_exists(self, repo_id: str) -> bool:
        return (self.root / repo_id / "refs.json").exists()

    def head(self, repo_id: str) -> str:
        return json.loads((self.root / repo_id / "refs.json").read_text())["main"]

    def commits(self, repo_id: str) -> list[dict]:
        """Commits of "main", newest first, each with its `sha`, `parent`, `summary` and `files`."""
        history, sha = [], self.head(repo_id)
        while sha is not None:
            commit = self._commit(repo_id, sha)
            history.append(commit)
            sha = commit["parent"]
        return history

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """`{path: content}` of a repo at a revision."""
        commit = self._commit(repo_id, self._resolve(repo_id, revision))
        return {path: self._blob(repo_id, oid) for path, oid in commit["files"].items()}

    # -- storage ---------------------------------------------------------------------------------------------

    def _check_repo(self, repo_id: str):
        if not self.repo_exists(repo_id):
            raise HubError(404, f"Repository {repo_id} not found.", "RepoNotFound")

    def _resolve(self, repo_id: str, revision: str) -> str:
        """Commit sha of a branch name or of a (full) commit sha."""
        self._check_repo(repo_id)
        refs = json.loads((self.root / repo_id / "refs.json").read_text())
        if revision in refs:
            return refs[revision]
        if (self.root / repo_id / "commits" / f"{revision}.json").exists():
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _commit(self, repo_id: str, sha: str) -> dict:
        return json.loads((self.root / repo_id / "commits" / f"{sha}.json").read_text())

    def _blob(self, repo_id: str, oid: str) -> bytes:
        return (self.root / repo_id / "blobs" / oid).read_bytes()

    def _write_commit(self, repo_id: str, parent: str | None, summary: str, files: dict[str, str]) -> str:
        """Store a commit and move "main" to it; the caller holds the lock and has stored the blobs."""
        commit = {"parent": parent, "summary": summary, "files": files, "date": time.time()}
        sha = hashlib.sha1(json.dumps(commit, sort_keys=True).encode()).hexdigest()
        folder = self.root / repo_id
        (folder / "commits").mkdir(parents=True, exist_ok=True)
        (folder / "commits" / f"{sha}.json").write_text(json.dumps({"sha": sha, **commit}))
        # The commit becomes visible with this one atomic rename, never half-written to a concurrent reader.
        (folder / "refs.json.new").write_text(json.dumps({"main": sha}))
        os.replace(folder / "refs.json.new", folder / "refs.json")
        return sha

    def _store_blob(self, repo_id: str, data: bytes) -> str:
        oid = git_blob_sha(data)
        (self.root / repo_id / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / repo_id / "blobs" / oid).write_bytes(data)
        return oid

    # -- API: each returns (status, headers, body); body is bytes or JSON-able ---------------------------------

    def whoami(self, request):
        user = self._user(request)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        token = {"displayName": "test", "role": "write"}
        return 200, {}, {"type": "user", "name": user, "auth": {"accessToken": token}}

    def agent_harnesses(self, request):
        """The client's telemetry asks which AI coding agents exist; an empty registry means none."""
        return 200, {}, {"standardEnvVars": [], "harnesses": {}}

    def create_repo(self, request):
        self._require_write(request)
        payload = request.json()
        if payload.get("type", "model") != "model":
            raise HubError(400, "The test Hub only has model repos.")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        url = f"{self.url}/{repo_id}"
        with self._lock:
            if self.repo_exists(repo_id):
                raise HubError(409, "You already created this model repo", url=url)
            oid = self._store_blob(repo_id, GITATTRIBUTES)
            self._write_commit(repo_id, None, "initial commit", {".gitattributes": oid})
        return 200, {}, {"url": url, "name": repo_id}

    def validate_yaml(self, request):
        return 200, {}, {"errors": [], "warnings": []}

    def preupload(self, request, repo, rev):
        self._require_write(request)
        sha = self._resolve(repo, rev)
        files = self._commit(repo, sha)["files"]
        # "regular": the client sends the bytes inside the commit. `oid` lets it skip files that did not change.
        answers = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": files.get(f["path"])}
            for f in request.json()["files"]
        ]
        return 200, {}, {"files": answers, "commitOid": sha}

    def commit(self, request, repo, rev):
        """Apply an NDJSON commit: a header line, then `file` / `deletedFile` / `deletedFolder` lines.

        Everything is decoded and checked before the first byte is stored, so a refused commit leaves no trace.
        """
        self._require_write(request)
        if rev != "main" or request.query.get("create_pr"):
            raise HubError(400, "The test Hub commits to the branch 'main' only (no pull requests).")
        lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            raise HubError(400, "A commit starts with a header line.")
        header = lines[0]["value"]
        with self._lock:
            parent = self._resolve(repo, "main")
            if header.get("parentCommit") not in (None, parent):
                raise HubError(412, f"Parent commit {header['parentCommit']} is not the head of main.")
            files = dict(self._commit(repo, parent)["files"])
            new_blobs = {}
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = _clean_path(value["path"])
                if key == "file" and value.get("encoding") == "base64":
                    new_blobs[path] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    files = {p: o for p, o in files.items() if not p.startswith(path.rstrip("/") + "/")}
                else:
                    raise HubError(400, f"The test Hub does not support commit operation {key!r} (no LFS/xet).")
            files.update({path: self._store_blob(repo, data) for path, data in new_blobs.items()})
            sha = self._write_commit(repo, parent, header.get("summary", ""), files)
        return 200, {}, {"commitOid": sha, "commitUrl": f"{self.url}/{repo}/commit/{sha}", "pullRequestUrl": None}

    def repo_info(self, request, repo, rev="main"):
        sha = self._resolve(repo, rev)
        commit = self._commit(repo, sha)
        siblings = [
            {"rfilename": path, "blobId": oid, "size": len(self._blob(repo, oid))}
            for path, oid in commit["files"].items()
        ]
        date = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit["date"]))
        info = {"id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": sha, "private": False}
        return 200, {}, {**info, "lastModified": date, "siblings": siblings, "tags": [], "downloads": 0, "likes": 0}

    def tree(self, request, repo, rev, path=""):
        """Files and folders under `path` (all depths with `recursive=true`), as `list_repo_tree` expects."""
        files = self._commit(repo, self._resolve(repo, rev))["files"]
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        under = {p[len(prefix) :]: oid for p, oid in files.items() if p.startswith(prefix)}
        if prefix and not under:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        recursive = request.query.get("recursive", "false").lower() in ("1", "true")
        entries, folders = [], set()
        for rest, oid in sorted(under.items()):
            parts = rest.split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add("/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                size = len(self._blob(repo, oid))
                entries.append({"type": "file", "oid": oid, "size": size, "path": prefix + rest})
        folder_oid = "0" * 40  # no git tree objects here; the client only displays this id
        entries += [{"type": "directory", "oid": folder_oid, "size": 0, "path": prefix + f} for f in sorted(folders)]
        return 200, {}, entries

    def resolve(self, request, repo, rev, path):
        """A file's bytes (GET, with `Range`) or only its headers (HEAD); the headers feed the download cache."""
        sha = self._resolve(repo, rev)
        oid = self._commit(repo, sha)["files"].get(path)
        if oid is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = self._blob(repo, oid)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{oid}"', "Accept-Ranges": "bytes"}
        status, start, end = _byte_range(request.headers.get("Range"), len(data))
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        return status, headers, data[start:end]

    # -- authentication --------------------------------------------------------------------------------------

    def _user(self, request) -> str | None:
        """The user a request acts as: anyone when no token is required, else only the bearer of `self.token`."""
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return USER if self.token is None or given == self.token else None

    def _require_write(self, request):
        if self._user(request) is None:
            given = request.headers.get("Authorization")
            message = (
                "Invalid credentials in Authorization header"
                if given
                else "You must be authenticated to write to this Hub: pass a token (HF_TOKEN)."
            )
            raise HubError(401, message)


# Routes: (method, regex over the unquoted path, LocalHub method name). The first match wins.
ROUTES = [
    ("GET", r"/api/whoami-v2", "whoami"),
    ("GET", r"/api/agent-harnesses", "agent_harnesses"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", rf"/api/models/{REPO}/preupload/{REV}", "preupload"),
    ("POST", rf"/api/models/{REPO}/commit/{REV}", "commit"),
    ("GET", rf"/api/models/{REPO}/tree/{REV}(?:/(?P<path>.*))?", "tree"),
    ("GET", rf"/api/models/{REPO}(?:/revision/{REV})?", "repo_info"),
    ("GET", rf"/{REPO}/resolve/{REV}/(?P<path>.+)", "resolve"),
    ("HEAD", rf"/{REPO}/resolve/{REV}/(?P<path>.+)", "resolve"),
]


class _Request:
    """What a route needs from an HTTP request: headers, query parameters and the raw body."""

    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes):
        self.headers = handler.headers
        self.query = {k: v[-1] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        self.body = body

    def json(self):
        return json.loads(self.body or b"{}")


def _handler_for(hub: LocalHub):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self._dispatch()

        do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

        def _dispatch(self):
            # Read the whole body first, even for a request about to be refused, so the client is never cut off.
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path
            try:
                status, headers, payload = self._route(path, _Request(self, body))
            except HubError as error:
                status, headers, payload = error.reply()
            except (ValueError, KeyError, TypeError) as error:  # a body the route could not parse
                status, headers, payload = HubError(400, f"Malformed request: {error!r}").reply()
            self._reply(status, headers, payload)
            hub.requests.append(f"{self.command} {self.path} -> {status}")

        def _route(self, path, request):
            for method, pattern, name in ROUTES:
                match = re.fullmatch(pattern, path)
                if method == self.command and match:
                    arguments = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    return getattr(hub, name)(request, **arguments)
            hub.unknown_requests.append(f"{self.command} {self.path}")
            raise HubError(404, f"The test Hub does not know {self.command} {path}")

        def _reply(self, status, headers, payload):
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            if not isinstance(payload, bytes):
                self.send_header("Content-Type", "application/json")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def log_message(self, *args):  # keep pytest's output clean; `hub.requests` has the log
            pass

    return Handler


def _clean_path(path: str) -> str:
    path = path.lstrip("/")
    if not path or any(part in ("", ".", "..") for part in path.split("/")):
        raise HubError(400, f"Invalid path in commit: {path!r}")
    return path


def _byte_range(header: str | None, size: int) -> tuple[int, int, int]:
    """(status, start, end) for a `Range: bytes=a-b` / `bytes=a-` header; the whole file without one."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
    if match is None:
        return 200, 0, size
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    if start >= size:
        raise HubError(416, f"Range {header} is outside a file of {size} bytes.")
    return 206, start, end
