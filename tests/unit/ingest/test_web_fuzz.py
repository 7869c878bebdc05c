"""Fuzzing the webhook receiver (hypothesis): no input, signed or not, gets a 5xx or a crash.

`make test` runs a bounded number of examples; `make fuzz` runs many more
(HUB_FUZZ_EXAMPLES). Every request must be answered below 500 and counted.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from pim_hub.sandbox.akeneo.webhooks import sign_event_platform, sign_legacy
from pim_hub.services.ingest.web import EVENT_PLATFORM_PATH, EVENTS_API_PATH, create_app
from tests.unit.ingest.test_web import EP_PRIMARY, LEGACY_SECRET, FakePublisher
from tests.unit.ingest.test_web import settings as ingest_settings

EXAMPLES = int(os.environ.get("HUB_FUZZ_EXAMPLES", "150"))

_publisher = FakePublisher()
_client = TestClient(create_app(ingest_settings(), _publisher), raise_server_exceptions=False)

# Text that reaches the hard places: control characters, NUL, non-ASCII, huge numbers.
_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "a\x00b", "\r\n", "\x1b[2J", "é", "9" * 400, "-1", "1e400"]),
    st.just("0c6a5a1e-0000-4000-8000-000000000001"),
)
_json: Any = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False),
        _text,
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=30,
)


def _legacy_event() -> Any:
    return st.fixed_dictionaries(
        {
            "event_id": _text,
            "action": st.sampled_from(
                ["product.created", "product.updated", "product.removed", "product_model.updated"]
            )
            | _text,
            "author": _json,
            "event_datetime": _text,
            "data": st.fixed_dictionaries(
                {
                    "resource": st.fixed_dictionaries(
                        {"uuid": _text, "identifier": _text, "code": _text, "values": _json}
                    )
                    | _json
                }
            )
            | _json,
        }
    )


def _cloud_event() -> Any:
    nouns = ["product", "product-model", "category", "family-variant", "attribute-option"]
    verbs = ["created", "updated", "deleted", "updated.delta"]
    return st.fixed_dictionaries(
        {
            "specversion": st.just("1.0") | _text,
            "id": _text,
            "type": st.builds(
                lambda n, v: f"com.akeneo.pim.v1.{n}.{v}",
                st.sampled_from(nouns),
                st.sampled_from(verbs),
            )
            | _text,
            "source": _text,
            "time": _text,
            "data": st.dictionaries(
                st.sampled_from(
                    ["product", "product_model", "category", "attribute_option", "author"]
                ),
                st.fixed_dictionaries(
                    {
                        "uuid": _text,
                        "code": _text,
                        "attribute": _json,
                        "family": _json,
                        "changes": _json,
                        "updated_at": _json,
                    }
                )
                | _json,
                max_size=3,
            )
            | _json,
        }
    )


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


_bodies = st.one_of(
    st.binary(max_size=300),
    _json.map(orjson.dumps),
    st.lists(_legacy_event(), min_size=0, max_size=11).map(lambda e: orjson.dumps({"events": e})),
    _cloud_event().map(orjson.dumps),
    st.lists(_cloud_event(), max_size=3).map(orjson.dumps),
    st.integers(min_value=200, max_value=1100).map(_deep),
    # Numbers orjson reads but Python types disagree on: huge, negative zero, exponents.
    st.sampled_from([b'{"events": [{"event_id": 1e400}]}', b'{"id": -0, "specversion": 1.0}']),
)
_header_value = st.one_of(_text, st.binary(max_size=80))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    body=_bodies,
    legacy=st.booleans(),
    signed=st.sampled_from(["valid", "junk", "none"]),
    junk=_header_value,
    stamp=st.one_of(st.just("now"), _text),
)
def test_no_input_gets_a_5xx(body: bytes, legacy: bool, signed: str, junk: Any, stamp: str) -> None:
    path = EVENTS_API_PATH if legacy else EVENT_PLATFORM_PATH
    endpoint = "events-api" if legacy else "event-platform"
    headers: dict[str, Any] = {}
    when = str(int(time.time())) if stamp == "now" else stamp
    if legacy:
        if signed != "none":
            try:
                sig: Any = sign_legacy(LEGACY_SECRET, when, body) if signed == "valid" else junk
            except UnicodeEncodeError:
                sig = junk
            headers["X-Akeneo-Request-Signature"] = sig
            headers["X-Akeneo-Request-Timestamp"] = when.encode("utf-8", "surrogatepass")
    elif signed == "valid":
        headers["X-Akeneo-Signature-Primary"] = junk
        headers["X-Akeneo-Signature-Secondary"] = sign_event_platform(EP_PRIMARY, body)
    elif signed == "junk":
        headers["X-Akeneo-Signature-Primary"] = junk
    headers = {
        k: (v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v)
        for k, v in headers.items()
    }
    metrics = _client.app.state.metrics  # type: ignore[attr-defined]
    before = _answered(metrics, endpoint)
    resp = _client.post(path, content=body, headers=headers)
    assert resp.status_code < 500, (resp.status_code, resp.text)
    assert _answered(metrics, endpoint) == before + 1  # every response is counted
    _publisher.records.clear()


def _answered(metrics: Any, endpoint: str) -> float:
    total = 0.0
    for metric in metrics.registry.collect():
        if metric.name == "pimhub_ingest_webhook_requests":
            total += sum(
                s.value
                for s in metric.samples
                if s.name.endswith("_total") and s.labels.get("endpoint") == endpoint
            )
    return total
