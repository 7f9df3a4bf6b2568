"""modeltel collector: an embedded OTLP collector that feeds Prometheus (with exemplars) and a trace store.

It is the single-machine default behind ``modeltel collector`` and the ML-analytics tier behind an
otelcol-contrib gateway at scale. The SDK package ``modeltel`` never imports this package.
"""

from modeltel_collector.collector import Collector
from modeltel_collector.config import Config

__all__ = ["Collector", "Config"]
