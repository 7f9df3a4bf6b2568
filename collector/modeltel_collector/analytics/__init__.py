"""ML analytics: statistical degradation detectors, the streaming engine that runs them, log replay.

Detectors (``detectors``) are pure functions of windows of data, the engine (``engine``) cuts a stream of
timestamped predictions into those windows per model and version, so the collector and ``modeltel detect
replay`` run the very same code. scipy is imported lazily (the ``analytics`` extra): a collector that never
runs a detector does not need it.
"""
