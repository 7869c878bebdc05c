"""Akeneo PIM sandbox: a seeded catalogue served through a simulated REST API and webhooks."""

from pim_hub.sandbox.akeneo.app import FaultConfig, create_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue, CatalogueError, Change

__all__ = ["Catalogue", "CatalogueError", "Change", "FaultConfig", "create_app"]
