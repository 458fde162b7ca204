"""The Batch API through the openai SDK: upload, create, poll, and collect results into the cache.

Every step is written to the :class:`~fnlabel.batches.ledger.Ledger` before and after it runs.
A step whose "before" is written but not its "after" (the run was killed in between) first looks
for what it may have made: the uploaded file by its name (unique to the ledger), the batch by its
input file. Only when there is none is it done again; so a request is never submitted twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from fnlabel.backends.http import MalformedResponse, read_secret, require
from fnlabel.backends.openai import PLACEHOLDER_KEY
from fnlabel.backends.openai_wire import generations
from fnlabel.batches.ledger import FINAL, Entry, Ledger
from fnlabel.batches.requests import Account, parse_custom_id
from fnlabel.combinators.store import SQLiteStore, storable
from fnlabel.errors import BackendError
from fnlabel.redact import scrub
from fnlabel.types import Generation

__all__ = ["Results", "client_for", "submit", "poll", "collect", "read_results"]

#: how far back (seconds) a listing is searched for what a killed run may have made (clock skew included)
_SKEW = 3600.0
#: top logprobs kept from a result (a request asks at most 20)
_TOP = 20


def client_for(account: Account) -> Any:
    """A sync ``openai.OpenAI`` client for ``account`` (its key read from the environment, and masked)."""
    require("openai", "openai")
    from openai import OpenAI

    key = read_secret(
        account.api_key_env,
        what="batch mode",
        fix=f"export {account.api_key_env}=sk-..., or set api_key_env in [backend]",
        optional=account.base_url is not None,
    )
    return OpenAI(
        api_key=key or PLACEHOLDER_KEY, base_url=account.base_url, organization=account.organization, max_retries=5
    )


def _sdk_error(step: str, entry: Entry, exc: Exception) -> BackendError:
    return BackendError(f"batch {entry.name}: {step} failed: {scrub(f'{type(exc).__name__}: {exc}')}")


def submit(ledger: Ledger, entry: Entry, client: Any) -> None:
    """Upload ``entry``'s request file and create its batch, unless (or as far as) that was done already."""
    try:
        if entry.file_id is None:
            found = _find_file(client, entry) if entry.upload_started is not None else None
            if found is None:
                ledger.stamp(entry, upload_started=time.time())
                with open(entry.path, "rb") as handle:
                    found = client.files.create(file=(entry.filename, handle), purpose="batch").id
            ledger.stamp(entry, file_id=found)
        if entry.batch_id is None:
            batch = _find_batch(client, entry) if entry.create_started is not None else None
            if batch is None:
                ledger.stamp(entry, create_started=time.time())
                batch = _create(client, entry, ledger.token)
            ledger.stamp(entry, batch_id=batch.id, status=batch.status)
    except Exception as exc:
        if isinstance(exc, BackendError):
            raise
        raise _sdk_error("submitting", entry, exc) from exc


def _create(client: Any, entry: Entry, token: str) -> Any:
    """Create the batch, never retried blindly: the API takes no idempotency key, so a create that
    failed in transit may have made the batch; it is looked for before the error is raised."""
    try:
        return client.with_options(max_retries=0).batches.create(
            input_file_id=entry.file_id,
            endpoint=entry.url,
            completion_window="24h",
            metadata={"fnlabel": f"{token}-{entry.name}"},
        )
    except Exception:
        found = _find_batch(client, entry)
        if found is None:
            raise
        return found


def _find_file(client: Any, entry: Entry) -> str | None:
    since = (entry.upload_started or 0) - _SKEW
    for f in client.files.list(purpose="batch", order="desc"):
        if f.filename == entry.filename:
            return str(f.id)
        if f.created_at < since:
            break
    return None


def _find_batch(client: Any, entry: Entry) -> Any:
    since = (entry.create_started or 0) - _SKEW
    for b in client.batches.list():
        if b.input_file_id == entry.file_id:
            return b
        if b.created_at < since:
            break
    return None


def poll(ledger: Ledger, entry: Entry, client: Any) -> None:
    """Read the batch's status and request counts into the ledger."""
    try:
        batch = client.batches.retrieve(entry.batch_id)
    except Exception as exc:
        raise _sdk_error("polling", entry, exc) from exc
    counts = batch.request_counts
    data = getattr(getattr(batch, "errors", None), "data", None) or []
    ledger.stamp(
        entry,
        status=batch.status,
        completed=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        error="; ".join(scrub(str(getattr(e, "message", e))) for e in data) or None,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
    )


@attrs.define
class Results:
    """What a batch output (or error) file held: generations stored, lines failed, lines fnlabel did not write."""

    stored: int = 0
    failed: dict[str, str] = attrs.Factory(dict)
    foreign: int = 0
    seen: set[str] = attrs.Factory(set)


def read_results(lines: Iterable[bytes | str], store: SQLiteStore, results: Results, where: str) -> Results:
    """Put each successful result line into ``store`` (a write error raises: nothing is thought stored
    that is not); record each failed one in ``results.failed``. Lines that are not fnlabel's results
    (not JSON, another ``custom_id``) are counted in ``results.foreign``."""
    puts: dict[bytes, list[tuple[bytes, int, Generation]]] = {}
    for raw in lines:
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            cid = record.get("custom_id")
        except (ValueError, AttributeError):
            cid = None
        slot = parse_custom_id(cid)
        if slot is None:
            results.foreign += 1
            continue
        results.seen.add(cid)
        gen, error = _result(record)
        if gen is None or not storable(gen.text):
            results.failed[cid] = error or "batch result: the text cannot be stored (it holds a lone surrogate)"
            continue
        results.failed.pop(cid, None)
        ident, key, index, count = slot
        batch = puts.setdefault(ident, [])
        batch.extend((key, i, gen) for i in range(index, index + count))
        results.stored += count
        if len(batch) >= 500:
            store.put(puts.pop(ident), ident, strict=True)
    for ident, batch in puts.items():
        store.put(batch, ident, strict=True)
    return results


def _result(record: dict[str, Any]) -> tuple[Generation | None, str]:
    response = record.get("response") if isinstance(record.get("response"), dict) else None
    body = response.get("body") if response is not None else None
    if response is not None and response.get("status_code") == 200 and isinstance(body, dict):
        choices = body.get("choices")
        chat = isinstance(choices, list) and bool(choices) and isinstance(choices[0], dict) and "message" in choices[0]
        try:
            return generations(body, chat=chat, top=_TOP)[0], ""
        except (MalformedResponse, AttributeError, KeyError, TypeError, ValueError) as exc:
            return None, scrub(f"batch result: {type(exc).__name__}: {exc}"[:500])
    error = record.get("error")
    if isinstance(error, dict):
        return None, scrub(f"batch request failed: {error.get('code')}: {error.get('message')}")
    status = response.get("status_code") if response is not None else None
    message = (
        body.get("error", {}).get("message") if isinstance(body, dict) and isinstance(body.get("error"), dict) else body
    )
    return None, scrub(f"batch request failed: HTTP {status}: {str(message)[:300]}")


def collect(ledger: Ledger, entry: Entry, client: Any, store: SQLiteStore) -> Results:
    """Download a finished batch's output and error files into ``store``; lines with no result (an expired,
    cancelled or failed batch) are failures too. The ledger then records the failures and the entry collected."""
    results = Results()
    for file_id in (entry.output_file_id, entry.error_file_id):
        if file_id:
            try:
                with client.files.with_streaming_response.content(file_id) as response:
                    read_results(response.iter_lines(), store, results, f"batch {entry.batch_id} file {file_id}")
            except BackendError:
                raise
            except Exception as exc:
                raise _sdk_error("downloading results", entry, exc) from exc
    why = {
        "expired": "the batch expired (24 h) before this request ran",
        "cancelled": "the batch was cancelled before this request ran",
        "failed": f"the batch failed: {entry.error or 'no reason given'}",
    }.get(entry.status, f"no result for this request in batch {entry.batch_id} ({entry.status})")
    for cid in entry.custom_ids():
        if cid not in results.seen:
            results.failed[cid] = f"batch {entry.batch_id}: {why}"
    ledger.failed.update(results.failed)
    entry.collected = True
    ledger.save()  # (the results were committed to the cache before)
    Path(entry.path).unlink(missing_ok=True)
    return results


def advance(ledger: Ledger, store: SQLiteStore, log: Callable[[str], None]) -> None:
    """One round over the ledger's open entries: submit what is built, poll what runs, collect what is done."""
    clients: dict[Account, Any] = {}
    for entry in ledger.open_entries():
        try:
            client = clients.get(entry.account)
            if client is None:
                client = clients[entry.account] = client_for(entry.account)
            _advance(ledger, entry, client, store, log)
        except BackendError as exc:  # one batch the provider cannot answer for does not hold up the others
            ledger.stamp(entry, error=str(exc))
            log(f"batch {entry.name}: {exc} (tried again on the next run)")


def _advance(ledger: Ledger, entry: Entry, client: Any, store: SQLiteStore, log: Callable[[str], None]) -> None:
    if entry.batch_id is None:
        submit(ledger, entry, client)
        log(f"batch {entry.name}: submitted {entry.requests} requests as {entry.batch_id}")
    if entry.status not in FINAL or (entry.output_file_id is None and entry.error_file_id is None):
        poll(ledger, entry, client)  # (a batch found after a kill may be done already: its files are read here)
    if entry.status in FINAL:
        got = collect(ledger, entry, client, store)
        log(
            f"batch {entry.name} ({entry.batch_id}) {entry.status}: {got.stored} generations collected"
            + (f", {len(got.failed)} requests failed" if got.failed else "")
        )
