"""The local OpenAI Batch API server (tests.servers.BatchServer), driven with the real ``openai`` SDK."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.servers import BatchServer

CHAT = "/v1/chat/completions"


@pytest.fixture
def srv() -> Iterator[BatchServer]:
    with BatchServer() as server:
        yield server


def client(srv: BatchServer, **kw: Any) -> Any:
    return openai.OpenAI(base_url=srv.url, api_key="x", **kw)


def chat_line(custom_id: str, prompt: str, url: str = CHAT, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": url,
        "body": {"model": "m", "messages": [{"role": "user", "content": prompt}], **body},
    }


def jsonl(lines: list[Any]) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def submit(c: Any, lines: list[Any], endpoint: str = CHAT, **kw: Any) -> Any:
    f = c.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    return c.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h", **kw)


def download(c: Any, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(line) for line in c.files.content(file_id).text.splitlines()]


def three() -> list[dict[str, Any]]:
    return [chat_line("a", "alpha", seed=1), chat_line("b", "beta", n=2), chat_line("c", "gamma", logprobs=True)]


def test_complete_batch_answers_what_the_chat_endpoint_answers(srv: BatchServer) -> None:
    c = client(srv)
    lines = three()
    f = c.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    assert (f.object, f.purpose, f.status, f.bytes, f.filename) == (
        "file",
        "batch",
        "processed",
        len(jsonl(lines)),
        "requests.jsonl",
    )
    assert c.files.content(f.id).content == jsonl(lines)
    batch = c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h", metadata={"run": "r1"})
    assert (batch.status, batch.object, batch.endpoint, batch.input_file_id) == ("validating", "batch", CHAT, f.id)
    assert batch.id.startswith("batch_") and batch.metadata == {"run": "r1"} and batch.expires_at is not None

    done = c.batches.retrieve(batch.id)
    assert done.status == "completed" and done.completed_at is not None and done.error_file_id is None
    assert done.request_counts.model_dump() == {"total": 3, "completed": 3, "failed": 0}
    out = download(c, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["a", "b", "c"]
    for o in out:
        assert o["id"].startswith("batch_req_") and o["error"] is None
        assert o["response"]["status_code"] == 200
        assert o["response"]["request_id"] == "req_" + o["id"].removeprefix("batch_req_")
    assert srv.chat_calls() == 0  # a batch never calls the endpoint itself

    for line, o in zip(lines, out):
        direct = c.chat.completions.with_raw_response.create(**line["body"]).http_response.json()
        got = o["response"]["body"]
        assert {**got, "created": 0} == {**direct, "created": 0}
    assert len(out[1]["response"]["body"]["choices"]) == 2 and "usage" in out[0]["response"]["body"]
    assert srv.chat_calls() == 3
    assert (srv.uploads, srv.batch_requests(), srv.custom_ids(), srv.retrieves) == (1, 3, ["a", "b", "c"], 1)


def test_completions_endpoint(srv: BatchServer) -> None:
    c = client(srv)
    line = {"custom_id": "x", "method": "POST", "url": "/v1/completions", "body": {"model": "m", "prompt": "hi"}}
    batch = c.batches.retrieve(submit(c, [line], endpoint="/v1/completions").id)
    (out,) = download(c, batch.output_file_id)
    direct = c.completions.with_raw_response.create(model="m", prompt="hi").http_response.json()
    assert {**out["response"]["body"], "created": 0} == {**direct, "created": 0}


def test_fail_marker_lines_go_to_the_error_file(srv: BatchServer) -> None:
    c = client(srv)
    lines = [chat_line("a", "ok"), chat_line("b", "please FAIL-LINE"), chat_line("c", "ok too")]
    batch = c.batches.retrieve(submit(c, lines).id)
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 2, "failed": 1}
    assert [o["custom_id"] for o in download(c, batch.output_file_id)] == ["a", "c"]
    (err,) = download(c, batch.error_file_id)
    assert err["custom_id"] == "b" and err["error"] is None
    assert err["response"]["status_code"] == 400
    assert err["response"]["body"] == {"error": {"message": "injected line error", "type": "invalid_request_error"}}
    srv.fail_marker = None
    assert c.batches.retrieve(submit(c, lines).id).request_counts.completed == 3


@pytest.mark.parametrize("outcome", ["expired", "cancelled"])
def test_expired_and_cancelled_keep_the_first_half(srv: BatchServer, outcome: str) -> None:
    c = client(srv)
    srv.outcome = outcome
    lines = [chat_line(f"r{i}", f"prompt {i}") for i in range(5)]
    batch = c.batches.retrieve(submit(c, lines).id)
    assert batch.status == outcome and batch.request_counts.model_dump() == {"total": 5, "completed": 2, "failed": 3}
    assert (batch.expired_at is not None) == (outcome == "expired")
    assert (batch.cancelled_at is not None) == (outcome == "cancelled")
    assert [o["custom_id"] for o in download(c, batch.output_file_id)] == ["r0", "r1"]
    errors = download(c, batch.error_file_id)
    assert [e["custom_id"] for e in errors] == ["r2", "r3", "r4"]
    code = "batch_expired" if outcome == "expired" else "batch_cancelled"
    assert all(e["response"] is None and e["error"]["code"] == code for e in errors)
    if outcome == "expired":
        assert (
            errors[0]["error"]["message"] == "This request could not be executed before the completion window expired."
        )

    srv.partial = 0  # nothing ran: no output file
    batch = c.batches.retrieve(submit(c, lines).id)
    assert batch.output_file_id is None and len(download(c, batch.error_file_id)) == 5


def test_cancel_an_in_progress_batch(srv: BatchServer) -> None:
    c = client(srv)
    srv.outcome = "in_progress"
    batch = submit(c, [chat_line(f"r{i}", "p") for i in range(4)])
    for _ in range(3):
        assert c.batches.retrieve(batch.id).status == "in_progress"
    cancelling = c.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    cancelled = c.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.request_counts.model_dump() == {
        "total": 4,
        "completed": 2,
        "failed": 2,
    }
    assert c.batches.cancel(batch.id).status == "cancelled"  # cancelling again changes nothing
    srv.outcome = "complete"
    finished = c.batches.retrieve(submit(c, [chat_line("z", "p")]).id)
    with pytest.raises(openai.BadRequestError):
        c.batches.cancel(finished.id)


def test_validation_failures(srv: BatchServer) -> None:
    c = client(srv)
    lines: list[Any] = [
        chat_line("a", "p"),
        chat_line("a", "p"),  # duplicate
        "not json",
        {**chat_line("d", "p"), "url": "/v1/completions"},
        {**chat_line("e", "p"), "method": "GET"},
        {"custom_id": "f", "method": "POST", "url": CHAT},
    ]
    batch = submit(c, lines)
    assert batch.status == "validating"
    failed = c.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.failed_at is not None and failed.output_file_id is None
    assert failed.errors.object == "list"
    assert [(e.code, e.line) for e in failed.errors.data] == [
        ("duplicate_custom_id", 2),
        ("invalid_json_line", 3),
        ("mismatched_endpoint", 4),
        ("invalid_method", 5),
        ("invalid_body", 6),
    ]
    assert srv.batch_requests() == 6  # a created batch counts, even a failed one
    with pytest.raises(openai.NotFoundError):
        c.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    assert len(srv.batches) == 1

    srv.outcome = "failed"
    scripted = c.batches.retrieve(submit(c, three()).id)
    assert scripted.status == "failed" and scripted.errors.data[0].message and scripted.output_file_id is None


def test_polls_until_done_and_outcome_per_batch(srv: BatchServer) -> None:
    c = client(srv)
    srv.polls_until_done = 2
    batch = submit(c, three())
    assert [c.batches.retrieve(batch.id).status for _ in range(4)] == [
        "in_progress",
        "in_progress",
        "completed",
        "completed",
    ]
    assert srv.retrieves == 4

    srv.polls_until_done = 0
    srv.outcome = lambda index: "expired" if index % 2 else "in_progress"
    first, second = submit(c, three()), submit(c, three())
    assert c.batches.retrieve(first.id).status == "expired"  # index 1
    assert c.batches.retrieve(second.id).status == "in_progress"  # index 2
    srv.outcome = "complete"  # changed between polls: the next retrieve finishes
    assert c.batches.retrieve(second.id).status == "completed"
    assert c.batches.retrieve(first.id).status == "expired"  # a finished batch stays as it ended


def test_list_pagination(srv: BatchServer) -> None:
    c = client(srv)
    ids = [submit(c, [chat_line("a", str(i))]).id for i in range(3)]
    first = c.batches.list(limit=2)
    assert [b.id for b in first.data] == [ids[2], ids[1]] and first.has_more
    raw = c.batches.with_raw_response.list(limit=2).http_response.json()
    assert (raw["first_id"], raw["last_id"], raw["has_more"]) == (ids[2], ids[1], True)
    before = sum(call == ("GET", "/v1/batches") for call in srv.calls)
    assert [b.id for b in c.batches.list(limit=2)] == ids[::-1]  # the SDK follows `after`
    assert sum(call == ("GET", "/v1/batches") for call in srv.calls) - before == 2

    c.batches.retrieve(ids[0])  # makes an output file (purpose batch_output)
    files = list(c.files.list(purpose="batch", limit=2))
    assert [f.filename for f in files] == ["requests.jsonl"] * 3 and srv.uploads == 3
    assert [f.id for f in files] == sorted((f.id for f in files), key=lambda i: -int(i.split("-")[1]))
    assert len(list(c.files.list())) == 4


def test_files_retrieve_delete_and_missing(srv: BatchServer) -> None:
    c = client(srv)
    f = c.files.create(file=("x.jsonl", b"{}\n"), purpose="batch")
    assert c.files.retrieve(f.id).bytes == 3
    deleted = c.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    for call in (c.files.retrieve, c.files.content, c.batches.retrieve):
        with pytest.raises(openai.NotFoundError):
            call("file-99")


def test_two_thousand_requests_in_one_upload(srv: BatchServer) -> None:
    c = client(srv)
    lines = [chat_line(f"row-{i}", "lorem ipsum " * 40 + str(i)) for i in range(2000)]
    assert len(jsonl(lines)) > 1024**2  # over aiohttp's default request size
    batch = c.batches.retrieve(submit(c, lines).id)
    out = download(c, batch.output_file_id)
    assert srv.batch_requests() == 2000 and len(set(srv.custom_ids())) == 2000
    assert [o["custom_id"] for o in out] == [f"row-{i}" for i in range(2000)]


def call_in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def test_hold_create_keeps_the_batch_but_never_answers(srv: BatchServer) -> None:
    f = client(srv).files.create(file=("r.jsonl", jsonl(three())), purpose="batch")
    srv.hold = {"create"}
    impatient = client(srv, timeout=0.3, max_retries=0)
    thread, result = call_in_thread(
        lambda: impatient.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    )
    assert srv.wait_held(timeout=5)
    assert list(srv.batches) == ["batch_1"] and srv.held == 1
    thread.join(timeout=5)
    assert isinstance(result.get("error"), openai.APITimeoutError)
    srv.release()
    assert srv.hold == set()
    assert client(srv).batches.retrieve("batch_1").status == "completed"


def test_hold_create_request_creates_nothing(srv: BatchServer) -> None:
    c = client(srv)
    f = c.files.create(file=("r.jsonl", jsonl(three())), purpose="batch")
    srv.hold = {"create_request"}
    impatient = client(srv, timeout=0.3, max_retries=0)
    thread, result = call_in_thread(
        lambda: impatient.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    )
    assert srv.wait_held(timeout=5) and srv.batches == {}
    thread.join(timeout=5)
    assert isinstance(result.get("error"), openai.APITimeoutError)
    time.sleep(0.05)  # the server sees the client's connection close
    srv.release()
    time.sleep(0.05)
    assert srv.batches == {} and srv.held == 0  # released after its client left: still nothing

    srv.hold = {"create_request"}  # a client still waiting goes on once released
    thread, result = call_in_thread(
        lambda: c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    )
    assert srv.wait_held(timeout=5, count=2) and srv.batches == {}
    srv.release()
    thread.join(timeout=5)
    assert result["value"].status == "validating" and list(srv.batches) == [result["value"].id]


def test_hold_upload_stores_the_file(srv: BatchServer) -> None:
    srv.hold = {"upload"}
    impatient = client(srv, timeout=0.3, max_retries=0)
    thread, result = call_in_thread(lambda: impatient.files.create(file=("r.jsonl", b"{}\n"), purpose="batch"))
    assert srv.wait_held(timeout=5)
    assert srv.uploads == 1 and [f.meta["filename"] for f in srv.files.values()] == ["r.jsonl"]
    thread.join(timeout=5)
    assert isinstance(result.get("error"), openai.APITimeoutError)
    srv.release()
    assert [f.id for f in client(srv).files.list(purpose="batch")] == ["file-1"]
