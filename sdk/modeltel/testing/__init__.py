"""Test helpers: capture what modeltel records in memory, or receive real OTLP in-process.

* :func:`capture`: an isolated in-memory pipeline, for asserting on spans and metric points.
* :class:`OtlpSink`: an OTLP receiver (HTTP and gRPC) that keeps what exporters send over the wire.
"""

from .capture import Capture, capture
from .sink import OtlpSink, attributes

__all__ = ["Capture", "OtlpSink", "attributes", "capture"]
