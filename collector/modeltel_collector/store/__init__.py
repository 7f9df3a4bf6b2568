"""Store: the collector's state, written by ``process`` and read by ``serve``.

``metrics`` is the merged, cumulative metric state behind ``/metrics`` (its series types and their
arithmetic in ``series``); ``spans`` is the SQLite trace store. Stores know nothing about receivers, the
ingest queue or the HTTP API, so new readers (a Jaeger-compatible API, a console) go in ``serve`` and
history storage goes here, beside them.
"""
