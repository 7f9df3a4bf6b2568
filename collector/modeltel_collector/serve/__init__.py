"""Serve: the ``--listen`` server, read-only views over the stores.

``api`` routes ``/metrics``, ``/healthz`` and the trace API; ``exposition`` renders the metric store as
Prometheus text or OpenMetrics. Nothing here writes state, so new read APIs (a Jaeger-compatible trace API,
a web console) sit here beside them and depend only on ``store``.
"""
