"""The streaming scorer: Kafka frames in, scores, review items and dead letters out."""
