"""The projectors on the command line: `hub projector`, `hub entities project` and
`python -m pim_hub.services.projections deliveries|entities`."""

from __future__ import annotations

import signal

from pim_hub.runtime.entry import load_settings as _settings
from pim_hub.runtime.entry import need_bootstrap as _need_bootstrap
from pim_hub.runtime.entry import need_db as _need_db


def deliveries() -> None:
    """Project delivery statuses into PostgreSQL (the `hub deliveries` view)."""
    from pim_hub.services.projections.deliveries import Projector

    settings = _settings()
    _need_bootstrap(settings)
    _need_db(settings)
    proj = Projector(settings)
    signal.signal(signal.SIGTERM, lambda *_: proj.stop())
    signal.signal(signal.SIGINT, lambda *_: proj.stop())
    proj.run()


def entities() -> None:
    """Run the consumer group hub.projector.entities (hub.mutations → entity tables)."""
    from pim_hub.services.projections.entities import EntityProjector

    settings = _settings()
    _need_bootstrap(settings)
    _need_db(settings)
    projector = EntityProjector(settings)
    signal.signal(signal.SIGTERM, lambda *_: projector.stop())
    signal.signal(signal.SIGINT, lambda *_: projector.stop())
    projector.run()
