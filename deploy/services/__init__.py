"""Local Apache Kafka and Redis processes for development, tests and the demo."""
