"""`hub dispatcher` and `python -m pim_hub.services.dispatcher`: run a dispatcher group."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from pim_hub.runtime.entry import fail as _fail
from pim_hub.runtime.entry import load_settings as _settings
from pim_hub.runtime.entry import need_bootstrap as _need_bootstrap
from pim_hub.runtime.entry import need_db as _need_db


def dispatcher(
    driver: Annotated[str, typer.Option(help="driver key, e.g. webhook or magento2")],
    priority: Annotated[str, typer.Option(help="immediate, normal or low")] = "normal",
) -> None:
    """Run the consumer group hub.dispatch.<driver>.<priority>."""
    from pim_hub.services.dispatcher.app import Dispatcher

    settings = _settings()
    _need_bootstrap(settings)
    _need_db(settings)
    try:
        disp = Dispatcher(settings, driver, priority)
    except (LookupError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    from pim_hub.runtime.tuning import DISPATCHER_FULL_GC_EVERY, quiet_gc

    # Jobs are thousands of small objects: full collections skip the start-up heap, and come
    # a tenth as often (see quiet_gc).
    quiet_gc(full_every=DISPATCHER_FULL_GC_EVERY)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, disp.stop)
        await disp.run()

    asyncio.run(main())
