"""Settings of the mutator, read from HUB_MUTATOR_* environment variables.

Read once by the mutator's entry point (`hub mutator`, `python -m pim_hub.services.mutator`)
and passed down; `hub doctor` reads them too, to check the mutator's changelog and groups.
What the mutator shares with other services (Kafka, the Schema Registry, HUB_SOURCES,
HUB_VERSION_MAX_FUTURE_S, ...) stays in `pim_hub.runtime.settings.Settings`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The Faust app id when HUB_MUTATOR_APP_ID is not set.
DEFAULT_APP_ID = "hub-mutator"


class MutatorSettings(BaseSettings):
    """Where the mutator keeps its table and which consumer groups it forms."""

    model_config = SettingsConfigDict(env_prefix="HUB_MUTATOR_", extra="ignore", frozen=True)

    app_id: str = Field(
        default=DEFAULT_APP_ID,
        description="Faust app id: the consumer group and the prefix of the changelog topic "
        "(HUB_MUTATOR_APP_ID); fan-out workers use `<app id>-fanout`",
    )
    data_dir: str = Field(
        default=".hub/mutator",
        description="Faust's data directory, created with its parents (HUB_MUTATOR_DATA_DIR)",
    )
    # memory keeps every entity's last state in RAM (about 20 KB a product) and replays the
    # changelog at start; rocksdb keeps it on disk under data_dir (extra `rocksdb`).
    store: Literal["memory", "rocksdb"] = Field(
        default="memory", description="where the table lives (HUB_MUTATOR_STORE)"
    )

    def group(self, role: str) -> str:
        """The consumer group (Faust app id) of a role: fan-out workers form a group of their own."""
        return f"{self.app_id}-fanout" if role == "fanout" else self.app_id

    @property
    def changelog_topic(self) -> str:
        """The changelog topic of the mutator's table, which Faust creates at the first start."""
        return f"{self.app_id}-{STATE_TABLE}-changelog"


#: The name of the mutator's Faust table (entity key -> last indexed state).
STATE_TABLE = "entity-state"


def default_mutator_settings() -> MutatorSettings:
    """The defaults, whatever the environment says (generated deployment files, tools)."""
    return MutatorSettings.model_construct()
