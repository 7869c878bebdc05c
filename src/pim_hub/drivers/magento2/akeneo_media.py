"""Downloads Akeneo media files (product images) for the Magento media gallery."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import quote

import httpx

from pim_hub.drivers.magento2.config import AkeneoMediaConfig
from pim_hub.drivers.magento2.errors import MappingError, NotFound, PermanentError, RetryableError

API = "/api/rest/v1"


class AkeneoMedia:
    """Fetches `media-files/{code}/download`, with a password-grant token when configured."""

    def __init__(self, config: AkeneoMediaConfig, http: httpx.AsyncClient, timeout: float) -> None:
        self.config = config
        self.http = http
        self.timeout = timeout
        self.base = str(config.base_url).rstrip("/")
        self._token: str | None = None
        self._lock = asyncio.Lock()

    async def _login(self, stale: str | None) -> str | None:
        cfg = self.config
        if not (cfg.client_id and cfg.secret and cfg.username and cfg.password):
            return None
        async with self._lock:
            if self._token is not None and self._token != stale:
                return self._token
            basic = base64.b64encode(f"{cfg.client_id}:{cfg.secret.get_secret_value()}".encode())
            resp = await self.http.post(
                f"{self.base}/api/oauth/v1/token",
                json={
                    "grant_type": "password",
                    "username": cfg.username,
                    "password": cfg.password.get_secret_value(),
                },
                headers={"Authorization": f"Basic {basic.decode()}"},
                timeout=self.timeout,
            )
            if resp.status_code != 200:
                raise PermanentError(
                    f"Akeneo refused the media download login ({resp.status_code})",
                    status=resp.status_code,
                )
            self._token = str(resp.json()["access_token"])
            return self._token

    async def download(self, code: str) -> tuple[bytes, str]:
        """The file's bytes and MIME type.

        Raises:
            RetryableError: network trouble or a 5xx/429 from Akeneo.
            NotFound: Akeneo does not know the file.
        """
        url = f"{self.base}{API}/media-files/{quote(code, safe='/')}/download"
        token = self._token or await self._login(None)
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                resp = await self.http.get(url, headers=headers, timeout=self.timeout)
            except httpx.HTTPError as exc:
                raise RetryableError(f"cannot download Akeneo media {code}: {exc}") from exc
            if resp.status_code == 401 and attempt == 1:
                token = await self._login(token)
                continue
            break
        if resp.status_code == 404:
            raise NotFound(f"Akeneo media file {code} does not exist", status=404)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableError(f"Akeneo answered {resp.status_code} for media {code}")
        if resp.status_code != 200:
            raise PermanentError(f"Akeneo answered {resp.status_code} for media {code}")
        mime = resp.headers.get("content-type", "").split(";")[0].strip() or "image/png"
        if not mime.startswith("image/"):
            raise MappingError(f"Akeneo media {code} is {mime}, not an image")
        return resp.content, mime
