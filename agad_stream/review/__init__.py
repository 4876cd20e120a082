"""The operators' review queue in Redis."""
