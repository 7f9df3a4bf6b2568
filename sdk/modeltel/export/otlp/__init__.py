"""modeltel's OTLP encoder and the exporters that use it: the pipeline's default for OTLP.

``wire`` holds the protobuf primitives, ``spans`` and ``metrics`` the encoders, ``http_exporters`` and
``grpc_exporters`` the upstream exporters with only their encoding replaced. ``MODELTEL_OTLP_ENCODER=
upstream`` (setting ``otlp_encoder``) selects the unchanged upstream classes instead. The exporter
modules are imported on demand, so an HTTP-only process does not import grpc.
"""

from __future__ import annotations


def span_exporter_class(protocol: str, encoder: str = "modeltel") -> type:
    """The span exporter class for ``protocol`` ("grpc" or "http/protobuf") and ``encoder``."""
    if protocol == "grpc":
        if encoder == "upstream":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter
        from .grpc_exporters import GrpcSpanExporter

        return GrpcSpanExporter
    if encoder == "upstream":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter
    from .http_exporters import HttpSpanExporter

    return HttpSpanExporter


def metric_exporter_class(protocol: str, encoder: str = "modeltel") -> type:
    """The metric exporter class for ``protocol`` and ``encoder``."""
    if protocol == "grpc":
        if encoder == "upstream":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            return OTLPMetricExporter
        from .grpc_exporters import GrpcMetricExporter

        return GrpcMetricExporter
    if encoder == "upstream":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter
    from .http_exporters import HttpMetricExporter

    return HttpMetricExporter
