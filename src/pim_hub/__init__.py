"""pim-hub: Akeneo PIM to commerce targets over Kafka.

The package is layered (see docs/architecture.md): cli | devstack, ops, services, registry,
drivers, runtime, schemas; each imports only the layers below it.
"""
