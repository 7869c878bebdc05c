"""The console's pages with producers' patches: the entity timeline and the set-aside records."""

from __future__ import annotations

from datetime import UTC, datetime

from pim_hub.console.app import NAV, _environment
from pim_hub.console.data import InvalidSnapshot
from pim_hub.ops.trace import Trace, TraceEvent

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _render(template: str, **context: object) -> str:
    page = _environment().get_template(template)
    return page.render(request_path="/", who=None, csrf="t", open_access=True, nav=NAV, **context)


def test_the_entity_page_traces_a_sku_through_its_patches_alone() -> None:
    patch = TraceEvent(
        AT,
        "patch",
        "pim.patches.json",
        0,
        4,
        "patch e-1 from source erp by ERP-1 (patch, version None): values.stock → refused",
        {"outcome": "refused", "payload": {"values": {"stock": [{"data": 3}]}}},
    )
    trace = Trace("ERP-1", [], events=[patch], notes=["no entity has identifier 'ERP-1' yet"])
    html = _render("entities.html", query="ERP-1", trace=trace, error=None, states={})
    assert "<h2>ERP-1</h2>" in html and 'class="stage-patch"' in html
    assert "Patch values (refused)" in html and "&#34;stock&#34;" in html


def test_the_invalid_page_names_a_refused_patch_its_source_and_topic() -> None:
    row = InvalidSnapshot(
        AT,
        0,
        7,
        "product:ERP-1",
        "product",
        "invalid_patch",
        "source erp may not change values.name (owned by akeneo)",
        "not_owner",
        "patch",
        "pim.patches",
        "erp",
    )
    html = _render("invalid.html", rows=[row])
    cells = html.split('class="record-patch"')[1]
    assert "patch from erp" in cells and "invalid_patch/not_owner" in cells
    assert "pim.patches" in cells and "0:7" in cells
