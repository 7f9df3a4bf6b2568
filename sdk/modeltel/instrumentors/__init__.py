"""Auto-instrumentation for serving frameworks and model libraries (one ``BaseInstrumentor`` per target).

Each is registered under the ``opentelemetry_instrumentor`` entry point, so ``opentelemetry-instrument``
turns it on when its package is installed; ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=modeltel_sklearn``
(etc.) turns it off. See the README (auto-instrumentation).
"""
