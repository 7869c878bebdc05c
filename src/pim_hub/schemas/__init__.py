"""The contracts and the shared domain: Avro schemas, topics, entities, versions, errors."""
