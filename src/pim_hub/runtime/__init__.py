"""The shared runtime: Kafka, PostgreSQL and its migrations, HTTP, logs, metrics, settings."""
