"""Product images: Akeneo media files copied into Magento's media gallery once per content."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from pim_hub.drivers.base import EntityMappingService
from pim_hub.drivers.magento2.akeneo_media import AkeneoMedia
from pim_hub.drivers.magento2.builder import ImageRef
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.errors import MappingError, NotFound
from pim_hub.drivers.magento2.keys import M_MEDIA


async def sync_images(
    sku: str,
    images: list[ImageRef],
    media: AkeneoMedia | None,
    api: MagentoClient,
    mapping: EntityMappingService,
) -> None:
    """Put each image into the product's gallery unless its content is there already.

    The mapping remembers each image's content hash and gallery entry: new content adds an
    entry (named after its hash, so a lost mapping finds it again) and removes the old one.
    """
    if media is None:
        raise MappingError("image attributes are mapped but the `media` config is missing")
    keys = [f"{sku}|{img.attribute}" for img in images]
    known = await mapping.get_many(M_MEDIA, keys)
    listed: list[dict[str, Any]] | None = None
    for img, key in zip(images, keys, strict=True):
        content, mime = await media.download(img.file_code)
        digest = hashlib.sha256(content).hexdigest()
        old = known.get(key)
        if old is not None and old.split(":", 1)[0] == digest:
            continue  # this content is already in the gallery
        if listed is None:
            listed = await api.call("GET", f"/V1/products/{sku}/media", store="all") or []
        stem = digest[:16]
        entry_id = next((int(e["id"]) for e in listed if stem in str(e.get("file", ""))), None)
        if entry_id is None:
            ext = mime.split("/", 1)[1].replace("jpeg", "jpg")
            entry = {
                "media_type": "image",
                "label": "",
                "position": img.position,
                "disabled": False,
                "types": list(img.roles),
                "content": {
                    "base64_encoded_data": base64.b64encode(content).decode(),
                    "type": mime,
                    "name": f"{stem}.{ext}",
                },
            }
            created = await api.call(
                "POST", f"/V1/products/{sku}/media", {"entry": entry}, store="all"
            )
            entry_id = int(created)
        if old is not None:
            old_id = int(old.split(":", 1)[1])
            if old_id != entry_id:
                try:
                    await api.call("DELETE", f"/V1/products/{sku}/media/{old_id}", store="all")
                except NotFound:
                    pass  # removed by hand already
        await mapping.put(M_MEDIA, key, f"{digest}:{entry_id}")

    # ------------------------------------------------------------------ configurables
