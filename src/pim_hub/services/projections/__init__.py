"""The read-model projectors: entities (the local model) and deliveries."""
