"""Code shared by every workload image: schema, Kafka/S3 config, metrics, env parsing."""
