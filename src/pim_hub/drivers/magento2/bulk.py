"""Magento's async bulk API: send items through `/async/bulk`, wait for their outcome."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.errors import MagentoError, PermanentError, RetryableError

# Async bulk operation status codes (Magento\AsynchronousOperations).
OP_COMPLETE, OP_RETRIABLE, OP_FAILED, OP_OPEN, OP_REJECTED = 1, 2, 3, 4, 5


async def run_bulk(
    api: MagentoClient, store: str, method: str, path: str, items: list[dict[str, Any]]
) -> list[tuple[int, str]]:
    """Send items through `/async/bulk<path>`; (status, message) per item.

    Items still open when `bulk_timeout_s` has passed come back as OP_OPEN.
    """
    accepted = await api.call(method, path, items, store=store, mode="bulk")
    requested = sorted(accepted.get("request_items") or [], key=lambda r: int(r["id"]))
    out: list[tuple[int, str]] = [(OP_OPEN, "")] * len(items)
    for item in requested:
        if item.get("status") == "rejected":
            out[int(item["id"])] = (OP_REJECTED, str(item.get("error_message") or "rejected"))
    uuid = accepted["bulk_uuid"]
    deadline = time.monotonic() + api.config.bulk_timeout_s
    while True:
        status = await api.call("GET", f"/V1/bulk/{uuid}/status")
        ops = sorted(status.get("operations_list") or [], key=lambda o: int(o["id"]))
        # Operations come back in request order (ids are allocated as items are read).
        for index, op in enumerate(ops[: len(items)]):
            if out[index][0] != OP_REJECTED:
                out[index] = (int(op["status"]), str(op.get("result_message") or ""))
        if all(s != OP_OPEN for s, _ in out) or time.monotonic() > deadline:
            return out
        await asyncio.sleep(api.config.bulk_poll_interval_s)


async def write_each(
    api: MagentoClient,
    method: str,
    template: str,
    calls: list[tuple[str, dict[str, Any]]],
    *,
    bulk: bool,
) -> list[MagentoError | None]:
    """One write of `template` (its `{sku}` filled in) per (sku, body), in the admin scope.

    With `bulk`, all of them go in one async bulk request (the SKU travels in each item).
    Returns the error of each call, None when it succeeded.
    """
    if not calls:
        return []
    if not bulk:

        async def one(sku: str, body: dict[str, Any]) -> MagentoError | None:
            try:
                await api.call(method, template.replace("{sku}", sku), body, store="all")
            except MagentoError as exc:
                return exc
            return None

        return list(await asyncio.gather(*(one(sku, body) for sku, body in calls)))
    path = template.replace("{sku}", "bySku")
    try:
        outcome = await run_bulk(
            api, "all", method, path, [{"sku": sku, **body} for sku, body in calls]
        )
    except MagentoError as exc:
        return [exc] * len(calls)
    errors: list[MagentoError | None] = []
    for status, message in outcome:
        if status == OP_COMPLETE:
            errors.append(None)
        elif status in (OP_OPEN, OP_RETRIABLE):
            reason = message or "the bulk operation did not finish in time"
            errors.append(RetryableError(f"bulk: {reason}", kind="bulk_retriable"))
        else:
            errors.append(PermanentError(message, kind="bulk_failed"))
    return errors
