"""logstream side by side with Redis Streams and NATS JetStream (``make bench-peers``).

``run.py`` is the driver; ``redis_streams``, ``nats_jetstream`` and ``logstream_adapter``
expose the same workload functions (see ``workload``); ``servers`` installs, starts and stops
the servers.
"""
