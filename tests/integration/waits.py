"""Waits the integration tests share, built on pim_hub.devstack.stack.wait_for."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor

T = TypeVar("T")


def wait_at_least(
    items: Callable[[], list[T]],
    n: int,
    timeout: float,
    what: str,
    supervisor: Supervisor | None = None,
) -> list[T]:
    """Poll items() until it holds at least n of them; return them all, in its order."""

    def enough() -> list[T]:
        got = items()
        return got if len(got) >= n else []

    return wait_for(enough, timeout=timeout, what=what, supervisor=supervisor)
