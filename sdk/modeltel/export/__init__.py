"""Export plumbing: the OpenTelemetry pipeline ``init()`` builds, the readers that carry modeltel's fast
series, and the process events (fork, SIGTERM) a pipeline must survive.

It depends on the hot path (it hands the hot path a recorder and a span factory), never the other way
round. The distro and configurator that ``opentelemetry-instrument`` loads live here too: their one job is
to call ``init()`` at start-up.
"""

from .pipeline import Pipeline, get_pipeline, init, shutdown

__all__ = ["Pipeline", "get_pipeline", "init", "shutdown"]
