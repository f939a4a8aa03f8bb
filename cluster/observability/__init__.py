"""Telemetry: hot-path counting in plain ints, and its export at collection time.

The request path only increments lists and dicts (``calls``); the access
log is written by its own thread (``access_log``); OpenTelemetry reads a
snapshot of everything when a scraper or the OTLP exporter asks
(``export``), so serving never pays for an SDK call.
"""
