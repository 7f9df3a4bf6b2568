"""Forward: optional relay of every accepted request to a downstream OTLP/HTTP endpoint.

It has its own bounded retry queue and thread, and drops (and counts) its oldest requests rather than
block, so a slow downstream never back-pressures ingestion. Only the ingest worker and the wiring use it.
"""
