"""Settings of the patch service, built from the hub's settings."""

from __future__ import annotations

from dataclasses import dataclass

from pim_hub.runtime.settings import Settings
from pim_hub.schemas.ownership import Ownership

GROUP = "hub.patches"


@dataclass(frozen=True)
class PatchSettings:
    """What `hub patches` needs besides the Kafka and database settings."""

    group: str
    wait_s: float  # HUB_PATCHES_WAIT_S: how long a patch for an unseen entity waits
    ownership: Ownership  # HUB_SOURCES

    @classmethod
    def from_settings(cls, settings: Settings, group: str = GROUP) -> PatchSettings:
        """The patch service's view of the settings."""
        return cls(group, settings.patches_wait_s, settings.ownership())
