"""A Kafka protocol listener over the broker: Kafka clients (kcat, librdkafka, kafka-python,
aiokafka) read and write the same topics, offsets and groups as the native gRPC API.

An edge layer: it may import broker, coordinator, storage and codec, never protocol,
client or cli. See docs/kafka-protocol.md for the APIs and versions it speaks.
"""

from logstream.kafka.listener import KafkaListener

__all__ = ["KafkaListener"]
