"""`hub patches`: producers' patches by identifier, resolved for the mutator."""

from __future__ import annotations

import signal

import typer

from pim_hub.runtime.entry import load_settings, need_bootstrap, need_db


def patches() -> None:
    """Resolve producers' patches (pim.patches, pim.patches.json) to entity snapshots.

    Needs the local model (`hub entities project`) for product identifiers, and HUB_SOURCES
    for who owns which field. A refused patch goes to pim.snapshots.invalid with its reason.
    """
    from pim_hub.services.patches.service import PatchService

    settings = load_settings()
    need_bootstrap(settings)
    need_db(settings)
    service = PatchService(settings)
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    signal.signal(signal.SIGINT, lambda *_: service.stop())
    typer.echo("hub patches: reading pim.patches and pim.patches.json", err=True)
    service.run()
