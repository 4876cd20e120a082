"""agad-stream: real-time anomaly detection for industrial vision with AGAD over Kafka and Redis."""

__version__ = "0.1.0"
