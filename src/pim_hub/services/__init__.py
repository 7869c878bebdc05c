"""The services: ingest, mutator, dispatcher and projections, independent of each other."""
