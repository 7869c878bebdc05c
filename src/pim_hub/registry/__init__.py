"""The integration registry: model, validation, secrets, files, PostgreSQL, change topic."""
