"""The write endpoint (``tsadmin serve``): InfluxDB's write API over the engine.

- :mod:`engine.server.batcher`: requests' line protocol committed together, one
  transaction (and at ``sync`` one fsync) per group of concurrent requests;
- :mod:`engine.server.http`: the aiohttp application, its endpoints and the error
  shapes InfluxDB's clients read;
- :mod:`engine.server.service`: which databases are served, the bind and token rules;
- :mod:`engine.server.metrics`: the counters behind ``/metrics`` and the stats log line;
- :mod:`engine.server.run`: listening, the periodic report, draining on stop.

Layer 9 of the engine: may import every layer below it.
"""

# Here, not in the modules that need aiohttp: the CLI reads it at every start.
DEFAULT_BIND = "127.0.0.1:8086"
