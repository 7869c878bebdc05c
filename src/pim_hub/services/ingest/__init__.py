"""Ingest from Akeneo: webhook receiver, enricher, REST client and REST sync."""
