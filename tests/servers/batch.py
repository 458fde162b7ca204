"""A local OpenAI Batch API (``/v1/files``, ``/v1/batches``) on top of :class:`FaultServer` (see :mod:`tests.servers`)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.servers.base import Script, prompt_text
from tests.servers.openai_fault import FaultServer

#: what a batch ends as: a name, or a function of the batch's index (0 for the first batch created) -> a name
Outcome = str | Callable[[int], str]

OUTCOMES = ("complete", "in_progress", "expired", "cancelled", "failed")
ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
HOLDS = ("upload", "create", "create_request")
TERMINAL = ("completed", "failed", "expired", "cancelled")
DAY = 24 * 3600
MAX_UPLOAD = 512 * 1024**2  # the request size the upload route accepts (aiohttp's default is 1 MiB)


@dataclass
class StoredFile:
    """One file: ``meta`` is the file object the API answers, ``content`` its bytes."""

    meta: dict[str, Any]
    content: bytes
    seq: int

    @property
    def id(self) -> str:
        return str(self.meta["id"])


@dataclass
class BatchRecord:
    """One created batch, as the server keeps it.

    ``data`` is the batch object the API answers; ``lines`` the input file's non-empty lines,
    parsed (``None`` for a line that is not JSON); ``problems`` the validation errors found at
    create (the batch fails on its first retrieve when there are any); ``polls`` the retrieves
    seen while it was not finished.
    """

    index: int
    seq: int
    data: dict[str, Any]
    lines: list[Any]
    problems: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def custom_ids(self) -> list[str]:
        return [line["custom_id"] for line in self.lines if isinstance(line, dict) and "custom_id" in line]


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": None}}


def validate(lines: list[Any], endpoint: str) -> list[dict[str, Any]]:
    """The problems of a batch's request lines (``line`` counts from 1), like OpenAI's validation reports them."""
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()

    def problem(code: str, message: str, line: int | None, param: str | None = None) -> None:
        problems.append({"code": code, "message": message, "param": param, "line": line})

    if not lines:
        problem("empty_file", "The batch input file is empty.", None)
    for number, line in enumerate(lines, 1):
        if not isinstance(line, dict):
            problem("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            problem("missing_required_parameter", "Missing required parameter: 'custom_id'.", number, "custom_id")
        elif custom_id in seen:
            problem(
                "duplicate_custom_id", f"The custom_id {custom_id!r} is not unique in the file.", number, "custom_id"
            )
        else:
            seen.add(custom_id)
        if line.get("method") != "POST":
            problem("invalid_method", "The method must be 'POST'.", number, "method")
        if line.get("url") != endpoint:
            problem("mismatched_endpoint", f"The url must be the batch's endpoint {endpoint!r}.", number, "url")
        if not isinstance(line.get("body"), dict):
            problem("invalid_body", "The body must be a JSON object.", number, "body")
    return problems


def page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """One page of a cursor-paginated list (``items`` already in the order served)."""
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    data = items[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(items),
    }


class BatchServer(FaultServer):
    """FaultServer plus OpenAI's Batch API: ``/v1/files`` and ``/v1/batches``, for the real ``openai`` SDK.

    ``/v1/chat/completions`` and ``/v1/completions`` still answer (and are recorded in
    ``requests``); a batch line's result body is exactly what those would answer to the same body
    (:meth:`FaultServer.chat_payload` / :meth:`FaultServer.completion_payload`; the ``script`` does
    not apply to batch lines). A batch is created ``"validating"``; each retrieve
    (``GET /v1/batches/{id}``) of an unfinished batch moves it on; listing shows it as it is.

    Scripted outcomes (attributes; change them between polls, they are read at each retrieve):

    - ``outcome``: ``"complete"`` (default), ``"in_progress"`` (stays in progress until changed),
      ``"expired"``, ``"cancelled"``, ``"failed"``; or a function ``(batch_index) -> outcome``
      (``batch_index`` counts created batches from 0).
    - ``polls_until_done`` (0): retrieves that answer ``"in_progress"`` before the outcome applies
      (0: the first retrieve after create shows the final state).
    - ``fail_marker`` (``"FAIL-LINE"``; ``None``: off): lines whose prompt contains it go to the
      error file with a 400 response and count in ``request_counts.failed``.
    - ``partial`` (``None``: half the lines, rounded down): how many lines of an expired or
      cancelled batch ran; the rest go to the error file as ``batch_expired`` / ``batch_cancelled``.
    - ``reverse_output`` (False): write the output and error files in reverse input order (OpenAI
      does not promise the input order).

    A batch whose lines fail validation (not JSON, ``custom_id`` missing or repeated, method not
    POST, url not the batch's endpoint, no ``body`` object) answers ``"failed"`` with ``errors`` on
    its first retrieve. ``POST /v1/batches/{id}/cancel`` on an unfinished batch answers
    ``"cancelling"``; the next retrieve shows it ``"cancelled"`` with its partial results.

    Output file line: ``{"id": "batch_req_<n>", "custom_id": ..., "response": {"status_code": 200,
    "request_id": "req_<n>", "body": <payload>}, "error": null}``; error file lines: the same with
    ``status_code`` 400 and an ``{"error": ...}`` body (``fail_marker``), or ``"response": null,
    "error": {"code": "batch_expired" | "batch_cancelled", "message": ...}``.

    Holding requests, to stop a client at an exact point (e.g. to SIGKILL it there):

    - ``hold``: a set of ``"upload"`` (store the file, then do not answer), ``"create"`` (create
      and store the batch, then do not answer), ``"create_request"`` (do not answer and do not
      create the batch).
    - :meth:`wait_held` waits until a request is held; :meth:`release` lets every held request go
      (and empties ``hold``). A released request whose client has gone answers nothing and, for
      ``"create_request"``, creates nothing; otherwise it goes on as if never held.
    - ``held``: requests held now; ``held_total``: requests held so far.

    For assertions: ``uploads`` (files uploaded with purpose ``batch``), ``files`` (id ->
    :class:`StoredFile`), ``batches`` (id -> :class:`BatchRecord`), ``retrieves`` (batch
    retrieves), ``calls`` (``(method, path)`` of every files/batches request),
    :meth:`batch_requests`, :meth:`custom_ids`, :meth:`chat_calls`.
    """

    def __init__(
        self,
        script: Script | None = None,
        latency: float = 0.0,
        ignore_n: bool = False,
        *,
        outcome: Outcome = "complete",
        polls_until_done: int = 0,
        fail_marker: str | None = "FAIL-LINE",
        partial: int | None = None,
        hold: Iterable[str] = (),
    ) -> None:
        super().__init__(script, latency, ignore_n)
        self.outcome: Outcome = outcome
        self.polls_until_done = polls_until_done
        self.fail_marker = fail_marker
        self.partial = partial
        self.reverse_output = False
        self.hold: set[str] = set(hold)
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, BatchRecord] = {}
        self.uploads = 0
        self.retrieves = 0
        self.calls: list[tuple[str, str]] = []
        self.held = 0
        self.held_total = 0
        self._held_changed = threading.Condition()
        self._gate = asyncio.Event()
        self._seq = 0
        self._file_n = 0
        self._batch_n = 0
        self._req_n = 0

    # --- for tests ------------------------------------------------------------------
    def batch_requests(self) -> int:
        """Request lines across every created batch (failed ones included)."""
        with self._lock:
            return sum(len(b.lines) for b in self.batches.values())

    def custom_ids(self) -> list[str]:
        """The ``custom_id`` of every line of every created batch, in creation order."""
        with self._lock:
            return [cid for b in self.batches.values() for cid in b.custom_ids]

    def chat_calls(self) -> int:
        """Requests to ``/v1/chat/completions`` or ``/v1/completions`` (outside any batch)."""
        with self._lock:
            return sum(s.path in ENDPOINTS for s in self.requests)

    def wait_held(self, timeout: float = 5.0, count: int = 1) -> bool:
        """Wait until ``count`` requests have been held (since the start); False on timeout."""
        with self._held_changed:
            return self._held_changed.wait_for(lambda: self.held_total >= count, timeout)

    def release(self, clear: bool = True) -> None:
        """Let every held request go; with ``clear`` also empty ``hold`` (later requests pass)."""
        if clear:
            self.hold.clear()
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._open_gate(), self._loop).result(timeout=10)

    async def _open_gate(self) -> None:
        gate, self._gate = self._gate, asyncio.Event()
        gate.set()

    async def _held(self, kind: str, request: web.Request) -> bool:
        """Hold the request if ``kind`` is in ``hold``; True when its client is still there to answer."""
        if kind not in self.hold:
            return True
        gate = self._gate
        with self._held_changed:
            self.held += 1
            self.held_total += 1
            self._held_changed.notify_all()
        try:
            await gate.wait()
        finally:
            with self._held_changed:
                self.held -= 1
                self._held_changed.notify_all()
        transport = request.transport
        return transport is not None and not transport.is_closing()

    # --- routes ---------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [
            *super().routes(),
            web.post("/v1/files", self._upload),
            web.get("/v1/files", self._list_files),
            web.get("/v1/files/{file_id}", self._get_file),
            web.get("/v1/files/{file_id}/content", self._file_content),
            web.delete("/v1/files/{file_id}", self._delete_file),
            web.post("/v1/batches", self._create),
            web.get("/v1/batches", self._list_batches),
            web.get("/v1/batches/{batch_id}", self._retrieve),
            web.post("/v1/batches/{batch_id}/cancel", self._cancel),
        ]

    def _call(self, request: web.Request) -> None:
        with self._lock:
            self.calls.append((request.method, request.path))

    # --- files ----------------------------------------------------------------------
    def _store(self, content: bytes, filename: str, purpose: str) -> StoredFile:
        with self._lock:
            self._file_n += 1
            self._seq += 1
            meta = {
                "id": f"file-{self._file_n}",
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
                "status_details": None,
                "expires_at": None,
            }
            stored = StoredFile(meta, content, self._seq)
            self.files[stored.id] = stored
            if purpose == "batch":
                self.uploads += 1
        return stored

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        self._call(request)
        fields: dict[str, str] = {}
        content: bytes | None = None
        filename = "upload.jsonl"
        try:
            reader = await request.clone(client_max_size=MAX_UPLOAD).multipart()
            while (part := await reader.next()) is not None:
                if part.name == "file":
                    content = bytes(await part.read())
                    filename = part.filename or filename
                elif part.name:
                    fields[part.name] = await part.text()
        except (ValueError, AssertionError, KeyError) as exc:
            return web.json_response(error_body(f"not a multipart upload: {exc}"), status=400)
        if content is None:
            return web.json_response(error_body("Missing required parameter: 'file'.", param="file"), status=400)
        if "purpose" not in fields:
            return web.json_response(error_body("Missing required parameter: 'purpose'.", param="purpose"), status=400)
        stored = self._store(content, filename, fields["purpose"])
        if not await self._held("upload", request):
            return web.Response(status=499)
        return web.json_response(stored.meta)

    def _file(self, request: web.Request) -> StoredFile | web.Response:
        file_id = request.match_info["file_id"]
        with self._lock:
            stored = self.files.get(file_id)
        if stored is None:
            return web.json_response(error_body(f"No such File object: {file_id}", param="id"), status=404)
        return stored

    async def _list_files(self, request: web.Request) -> web.StreamResponse:
        self._call(request)
        purpose = request.query.get("purpose")
        with self._lock:
            stored = sorted(self.files.values(), key=lambda f: f.seq, reverse=request.query.get("order") != "asc")
        items = [f.meta for f in stored if purpose is None or f.meta["purpose"] == purpose]
        return web.json_response(page(items, request.query.get("after"), int(request.query.get("limit", 10000))))

    async def _get_file(self, request: web.Request) -> web.StreamResponse:
        self._call(request)
        stored = self._file(request)
        return stored if isinstance(stored, web.Response) else web.json_response(stored.meta)

    async def _file_content(self, request: web.Request) -> web.StreamResponse:
        self._call(request)
        stored = self._file(request)
        if isinstance(stored, web.Response):
            return stored
        return web.Response(body=stored.content, content_type="application/octet-stream")

    async def _delete_file(self, request: web.Request) -> web.StreamResponse:
        self._call(request)
        stored = self._file(request)
        if isinstance(stored, web.Response):
            return stored
        with self._lock:
            self.files.pop(stored.id, None)
        return web.json_response({"id": stored.id, "object": "file", "deleted": True})

    # --- batches --------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.StreamResponse:
        self._call(request)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(error_body("request body is not JSON"), status=400)
        if not isinstance(body, dict):
            return web.json_response(error_body("request body is not a JSON object"), status=400)
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not body.get(name):
                return web.json_response(error_body(f"Missing required parameter: {name!r}.", param=name), status=400)
        endpoint = body["endpoint"]
        if endpoint not in ENDPOINTS:
            return web.json_response(error_body(f"Unsupported endpoint {endpoint!r}.", param="endpoint"), status=400)
        if not await self._held("create_request", request):
            return web.Response(status=499)  # its client is gone: the batch is never created
        with self._lock:
            stored = self.files.get(body["input_file_id"])
        if stored is None:
            message = f"No such File object: {body['input_file_id']}"
            return web.json_response(error_body(message, param="input_file_id"), status=404)
        if stored.meta["purpose"] != "batch":
            message = "The input file must be uploaded with purpose 'batch'."
            return web.json_response(error_body(message, param="input_file_id"), status=400)
        lines: list[Any] = []
        for text in stored.content.decode("utf-8", errors="replace").splitlines():
            if text.strip():
                try:
                    lines.append(json.loads(text))
                except ValueError:
                    lines.append(None)
        record = self._new_batch(body, lines)
        if not await self._held("create", request):
            return web.Response(status=499)
        return web.json_response(record.data)

    def _new_batch(self, body: dict[str, Any], lines: list[Any]) -> BatchRecord:
        now = int(time.time())
        first = next((line for line in lines if isinstance(line, dict) and isinstance(line.get("body"), dict)), None)
        with self._lock:
            self._batch_n += 1
            self._seq += 1
            data: dict[str, Any] = {
                "id": f"batch_{self._batch_n}",
                "object": "batch",
                "endpoint": body["endpoint"],
                "model": first["body"].get("model") if first else None,
                "errors": None,
                "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"],
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": now,
                "in_progress_at": None,
                "expires_at": now + DAY,
                "finalizing_at": None,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
            }
            record = BatchRecord(len(self.batches), self._seq, data, lines, validate(lines, body["endpoint"]))
            self.batches[record.id] = record
        return record

    def _batch(self, request: web.Request) -> BatchRecord | web.Response:
        batch_id = request.match_info["batch_id"]
        with self._lock:
            record = self.batches.get(batch_id)
        if record is None:
            return web.json_response(error_body(f"No such Batch object: {batch_id}", param="id"), status=404)
        return record

    async def _list_batches(self, request: web.Request) -> web.StreamResponse:
        self._call(request)
        with self._lock:
            items = [b.data for b in sorted(self.batches.values(), key=lambda b: b.seq, reverse=True)]
        return web.json_response(page(items, request.query.get("after"), int(request.query.get("limit", 20))))

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        self._call(request)
        record = self._batch(request)
        if isinstance(record, web.Response):
            return record
        with self._lock:
            self.retrieves += 1
        self._advance(record)
        return web.json_response(record.data)

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        self._call(request)
        record = self._batch(request)
        if isinstance(record, web.Response):
            return record
        if record.status in ("validating", "in_progress"):
            record.data["status"] = "cancelling"
            record.data["cancelling_at"] = int(time.time())
        elif record.status not in ("cancelling", "cancelled"):
            message = f"Cannot cancel a batch with status {record.status!r}."
            return web.json_response(error_body(message), status=400)  # 409 would make the SDK retry
        return web.json_response(record.data)

    # --- the state machine ------------------------------------------------------------
    def _advance(self, record: BatchRecord) -> None:
        """One retrieve of ``record``: validate, stay in progress, or finish with the scripted outcome."""
        data, now = record.data, int(time.time())
        if record.status in TERMINAL:
            return
        if record.status == "cancelling":
            self._finish(record, "cancelled")
            return
        if record.problems:
            data.update(status="failed", failed_at=now, errors={"object": "list", "data": record.problems})
            return
        data["request_counts"]["total"] = len(record.lines)
        record.polls += 1
        outcome = self.outcome(record.index) if callable(self.outcome) else self.outcome
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown batch outcome {outcome!r}; one of {OUTCOMES}")
        if record.polls <= self.polls_until_done or outcome == "in_progress":
            data["status"] = "in_progress"
            data["in_progress_at"] = data["in_progress_at"] or now
            return
        self._finish(record, outcome)

    def _finish(self, record: BatchRecord, outcome: str) -> None:
        data, now = record.data, int(time.time())
        lines = [] if record.problems else record.lines  # cancelled while validating: nothing ran
        data["in_progress_at"] = data["in_progress_at"] or now
        if outcome == "failed":
            failure = {"code": "batch_failed", "message": "injected batch failure", "param": None, "line": None}
            data.update(status="failed", failed_at=now, errors={"object": "list", "data": [failure]})
            return
        ran = len(lines)
        if outcome in ("expired", "cancelled"):
            ran = min(len(lines), len(lines) // 2 if self.partial is None else max(0, self.partial))
        outputs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for line in lines[:ran]:
            result = self._run_line(data["endpoint"], line)
            (outputs if result["response"]["status_code"] == 200 else errors).append(result)
        code = "batch_expired" if outcome == "expired" else "batch_cancelled"
        message = (
            "This request could not be executed before the completion window expired."
            if outcome == "expired"
            else "This request was not executed because the batch was cancelled."
        )
        for line in lines[ran:]:
            errors.append(
                {
                    "id": self._next_id("batch_req"),
                    "custom_id": line["custom_id"],
                    "response": None,
                    "error": {"code": code, "message": message},
                }
            )
        if self.reverse_output:
            outputs.reverse()
            errors.reverse()
        if outputs:
            data["output_file_id"] = self._store(jsonl(outputs), f"{record.id}_output.jsonl", "batch_output").id
        if errors:
            data["error_file_id"] = self._store(jsonl(errors), f"{record.id}_error.jsonl", "batch_output").id
        data["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}
        if outcome == "complete":
            data.update(status="completed", finalizing_at=now, completed_at=now)
        elif outcome == "expired":
            data.update(status="expired", finalizing_at=now, expired_at=now)
        else:
            data.update(status="cancelled", cancelling_at=data["cancelling_at"] or now, cancelled_at=now)

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._req_n += 1
            return f"{prefix}_{self._req_n}"

    def _run_line(self, endpoint: str, line: dict[str, Any]) -> dict[str, Any]:
        """The result line of one request: FaultServer's answer, or an injected 400 (``fail_marker``)."""
        body = line["body"]
        if self.fail_marker is not None and self.fail_marker in prompt_text(body):
            status = 400
            payload: dict[str, Any] = {"error": {"message": "injected line error", "type": "invalid_request_error"}}
        else:
            status = 200
            payload = self.chat_payload(body) if endpoint == "/v1/chat/completions" else self.completion_payload(body)
        number = self._next_id("batch_req").removeprefix("batch_req_")
        return {
            "id": f"batch_req_{number}",
            "custom_id": line["custom_id"],
            "response": {"status_code": status, "request_id": f"req_{number}", "body": payload},
            "error": None,
        }


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()
