"""Process: the single ingest thread between the receivers and the stores.

``ingest`` holds the bounded queue of accepted requests and its worker; ``spanmetrics`` makes one pass over
received spans that yields the trace store's rows and the span-derived metrics. One thread does all of it
so the metric store's cumulative state is merged in arrival order without finer locking. Future analytics
(degradation detection over the merged series) belong here, fed by the same worker.
"""
