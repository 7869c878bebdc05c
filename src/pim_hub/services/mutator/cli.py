"""`hub mutator` and `python -m pim_hub.services.mutator`: run a mutator worker."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from pim_hub.runtime.entry import fail as _fail
from pim_hub.runtime.entry import load_settings as _settings
from pim_hub.runtime.entry import need_bootstrap as _need_bootstrap
from pim_hub.services.mutator.settings import MutatorSettings


def mutator(
    role: Annotated[
        str,
        typer.Option(
            help="all: both agents in one worker; mutate: snapshots → mutations; "
            "fanout: mutations → jobs, in a consumer group of its own. Under a full load run "
            "mutate and fanout workers: in one worker, fan-out waits behind the snapshots."
        ),
    ] = "all",
) -> None:
    """Run the mutator (snapshots → mutations → jobs); scale by starting more."""
    from pim_hub.services.mutator.app import ROLES, run

    if role not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}", param_hint="--role")
    settings = _settings()
    _need_bootstrap(settings)
    mutator_settings = _mutator_settings()
    sys.argv = [sys.argv[0], "worker", "--without-web"]
    run(settings, mutator_settings, role)  # one of ROLES, checked above


def _mutator_settings() -> MutatorSettings:
    """The mutator's own settings (HUB_MUTATOR_*), or stop with a clear message."""
    try:
        return MutatorSettings()
    except ValidationError as exc:
        # One line per variable, named as the user set it.
        problems = "; ".join(
            f"HUB_MUTATOR_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise _fail(f"invalid mutator settings: {problems}") from exc
