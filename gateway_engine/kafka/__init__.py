"""REST over Kafka: the ``kafka`` transport (request-reply, fire-and-forget, asynchronous results).

Only ``definitions`` and ``messages`` load with a config; the transport and its client import
``aiokafka`` and load when a config names ``transport: kafka``.
"""
