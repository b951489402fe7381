"""The outbox relay: events leave the database for a message broker, at least once, in order per
quiz (``qbank relay``; docs/relay.md).

- :mod:`service.relay.envelope`: the JSON envelope, subject/topic and ordering key of an event;
- :mod:`service.relay.outbox`: claiming, marking, pruning, lag and the SQLite lease;
- :mod:`service.relay.brokers`: NATS JetStream and Kafka behind one interface;
- :mod:`service.relay.relay`: the loop with backoff; the command is :mod:`service.cli.relay`.
"""
