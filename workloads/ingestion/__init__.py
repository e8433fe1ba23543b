"""Kafka -> Parquet lake ingestion (raw and curated), exactly-once in the lake. See consumer.py for the design."""
