"""Kafka clients against the Kafka listener (named so that it does not shadow kafka-python)."""
