"""The sandbox served on a real socket by uvicorn in a thread."""

from __future__ import annotations

import httpx

from pim_hub.sandbox.akeneo.app import create_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from pim_hub.sandbox.akeneo.server import serve_in_thread
from tests.unit.sandbox_akeneo.conftest import CREDENTIALS


def test_serve_in_thread_answers_over_http_and_stops() -> None:
    app = create_app(Catalogue(30, seed=1), **CREDENTIALS)
    with serve_in_thread(app) as base_url:
        token = httpx.post(
            f"{base_url}/api/oauth/v1/token",
            json={"grant_type": "password", "username": "api_user", "password": "api_pass"},
            auth=("client_abc", "s3cret"),
        ).json()["access_token"]
        page = httpx.get(
            f"{base_url}/api/rest/v1/products-uuid",
            params={"pagination_type": "search_after", "limit": 100},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert page.status_code == 200
    assert len(page.json()["_embedded"]["items"]) == 30
    assert page.json()["_links"]["self"]["href"].startswith(base_url)
    try:
        httpx.get(base_url, timeout=0.5)
        stopped = False
    except httpx.TransportError:
        stopped = True
    assert stopped
