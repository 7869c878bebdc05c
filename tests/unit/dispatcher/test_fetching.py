"""What the consumers ask the broker for: fetch waits by role, and idle retry tiers resting."""

from __future__ import annotations

from pim_hub.runtime.kafka import consumer_config
from pim_hub.runtime.settings import Settings
from pim_hub.services.dispatcher.app import Dispatcher
from pim_hub.services.dispatcher.flow import RETRY_REST_MAX_S, RETRY_REST_MIN_S, retry_rest_s
from tests.integration.test_dispatcher_helpers import catalogue_with, recording_driver


def _settings(**kafka: object) -> Settings:
    # Only the address is set: every other value is the default a user gets.
    return Settings.model_validate({"kafka": {"bootstrap": "127.0.0.1:9092", **kafka}})


def test_background_consumers_fetch_with_the_longer_wait_by_default() -> None:
    settings = _settings()
    assert consumer_config(settings, "g")["fetch.wait.max.ms"] == 50
    assert consumer_config(settings, "g", background=True)["fetch.wait.max.ms"] == 500


def test_only_the_bulk_lanes_dispatcher_is_a_background_consumer() -> None:
    driver = recording_driver("fetching")
    waits = {
        priority: Dispatcher(
            _settings(), driver.key, priority, catalogue_with(driver)
        ).consumer_conf()["fetch.wait.max.ms"]
        for priority in ("immediate", "normal", "low")
    }
    assert waits == {"immediate": 50, "normal": 50, "low": 500}


def test_a_user_property_still_wins_over_both_waits() -> None:
    settings = _settings(properties={"fetch.wait.max.ms": "200"})
    assert consumer_config(settings, "g")["fetch.wait.max.ms"] == "200"
    assert consumer_config(settings, "g", background=True)["fetch.wait.max.ms"] == "200"


def test_an_idle_retry_tier_rests_a_sixth_of_the_shortest_tier_within_bounds() -> None:
    assert retry_rest_s((30, 300, 1800)) == RETRY_REST_MAX_S == 5.0
    assert retry_rest_s((12, 60)) == 2.0
    assert retry_rest_s((1, 2, 3)) == RETRY_REST_MIN_S == 0.5
    assert retry_rest_s(()) == 0.0  # no tiers: no retry topics to rest
