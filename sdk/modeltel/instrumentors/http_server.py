"""HTTP servers: a prediction per model request, on the server span that opentelemetry-instrumentation makes.

The FastAPI and Flask instrumentors turn on the contrib instrumentor for the server span (not written
again here) and open a per-request ``modeltel.prediction(own_span=False)``: nested stage spans become
children of the server span, the server span gets ``model.name`` / ``model.version``, and the response
status feeds ``model.predictions{status}`` (``>= 400`` is an error) and ``model.prediction.latency``. A
prediction the application opens itself takes over, so a request is counted once.

Which requests are predictions: methods in ``prediction_methods`` (POST, PUT, PATCH by default) on paths
that are not health, metrics or docs endpoints (``excluded_paths``, a regex searched in the path).

:class:`HttpServerInstrumentor` is what both share: ``instrument()`` for every app, or
``instrument_app(app)`` / ``uninstrument_app(app)`` for one, as the contrib instrumentors offer.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

import modeltel
from modeltel import taxonomy as tx

from .base import Make, ModeltelInstrumentor, Patches, patch_hierarchy, telemetry_source

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

DEFAULT_METHODS = ("POST", "PUT", "PATCH")
DEFAULT_EXCLUDED = (
    r"(^|/)(health|healthz|ready|readyz|live|livez|metrics|docs|redoc|openapi\.json|favicon\.ico|v2/health)(/|$)"
)


class RequestFilter:
    __slots__ = ("_cache", "_excluded", "_methods")

    def __init__(self, methods: Collection[str] | None = None, excluded_paths: str | None = None) -> None:
        if isinstance(methods, str):  # "POST" would become the methods P, O, S and T
            raise TypeError(f"prediction_methods takes a list of HTTP methods, e.g. [{methods!r}], not a string")
        self._methods = frozenset(m.upper() for m in (methods or DEFAULT_METHODS))
        self._excluded = re.compile(excluded_paths if excluded_paths is not None else DEFAULT_EXCLUDED)
        self._cache: dict[tuple[str, str], bool] = {}

    def __call__(self, method: str, path: str) -> bool:
        key = (method, path)
        hit = self._cache.get(key)
        if hit is None:
            hit = method.upper() in self._methods and self._excluded.search(path) is None
            if len(self._cache) < 4096:  # bounded: paths with ids in them must not grow it forever
                self._cache[key] = hit
        return hit


def status_ok(status: int | None) -> bool:
    return status is not None and status < 400


_OWN_KWARGS = ("prediction_methods", "excluded_paths")


class Requests:
    """What one instrumentation of an HTTP server (global, or one app's) does with a request.

    ``on`` turns it off without rebuilding anything: an app whose middleware stack was built while it
    was on keeps a middleware that passes everything through.
    """

    __slots__ = ("_filter", "on", "telemetry")

    def __init__(
        self,
        telemetry: Callable[[], modeltel.Telemetry],
        *,
        prediction_methods: Collection[str] | None = None,
        excluded_paths: str | None = None,
    ) -> None:
        self._filter = RequestFilter(prediction_methods, excluded_paths)
        self.telemetry = telemetry
        self.on = True

    def is_prediction(self, method: str, path: str) -> bool:
        return self.on and self._filter(method, path)

    def prediction(self) -> modeltel.Prediction:
        return self.telemetry().prediction(own_span=False)

    @staticmethod
    def taken_over(prediction: modeltel.Prediction, span: trace.Span | None = None) -> None:
        """Where the application's own prediction took the request over, the server span (``span``, else the
        current one; still recording: call before the response ends it) stops calling itself a prediction,
        so that spans say what the metrics count: the request once, under the application's model."""
        if prediction.superseded is not None:
            span = span or trace.get_current_span()
            if span.is_recording():
                span.set_attribute(tx.SPAN_ATTR_KIND, tx.SPAN_KIND_REQUEST)


def contrib_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments meant for the contrib instrumentor (all but modeltel's own)."""
    return {k: v for k, v in kwargs.items() if k not in _OWN_KWARGS}


_APP_ATTR = "_modeltel_requests"  # the Requests of an app instrumented with instrument_app()


class HttpServerInstrumentor(ModeltelInstrumentor):
    """The contrib instrumentor's server span, and a modeltel prediction per model request inside it.

    A subclass names the app class, the app method that runs a request (``app_method``), the wrapper that
    opens the prediction there, and the contrib instrumentor. ``tracer_provider`` / ``meter_provider`` go
    to the contrib instrumentor, and modeltel records with the same providers.
    """

    app_method: str

    @staticmethod
    def _contrib() -> Any:
        """The contrib instrumentor class."""
        raise NotImplementedError

    @staticmethod
    def _app_class() -> type:
        raise NotImplementedError

    @staticmethod
    def _wrapper(requests: Requests) -> Make:
        """A ``make`` for ``app_method`` that opens the prediction of each model request."""
        raise NotImplementedError

    @staticmethod
    def _rebuild(app: Any) -> None:
        """Make ``app`` pick up a changed ``app_method`` on its next request (nothing to do by default)."""

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        contrib = self._contrib()()
        if not contrib.is_instrumented_by_opentelemetry:
            contrib.instrument(**contrib_kwargs(kwargs))
            patches.defer(contrib.uninstrument)
        requests = Requests(self._telemetry, **{k: kwargs[k] for k in _OWN_KWARGS if k in kwargs})
        patches.defer(lambda: setattr(requests, "on", False))
        patch_hierarchy(patches, self._app_class(), {self.app_method: self._wrapper(requests)})

    @classmethod
    def instrument_app(
        cls,
        app: Any,
        *,
        prediction_methods: Collection[str] | None = None,
        excluded_paths: str | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        **contrib_options: Any,
    ) -> None:
        """Instrument one app (again: nothing happens) as the contrib's ``instrument_app`` does, plus
        modeltel's predictions.

        ``prediction_methods`` (default POST, PUT, PATCH) and ``excluded_paths`` (a regex searched in the
        path; default health, metrics and docs endpoints) choose which requests are predictions. The
        app's server spans and modeltel's spans and metrics go to ``tracer_provider`` / ``meter_provider``
        when given (else the pipeline's). ``contrib_options`` go to the contrib's ``instrument_app`` as
        they are (FastAPI's ``server_request_hook``, ``excluded_urls``, ``exclude_spans``...; Flask's
        ``request_hook``, ``excluded_urls``...).
        """
        if getattr(app, _APP_ATTR, None) is not None:
            return
        providers = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
        requests = Requests(
            telemetry_source(providers), prediction_methods=prediction_methods, excluded_paths=excluded_paths
        )
        wrapped = cls._wrapper(requests)(getattr(type(app), cls.app_method), None)
        setattr(app, cls.app_method, types.MethodType(wrapped, app))  # before the contrib's, which may wrap it
        setattr(app, _APP_ATTR, requests)
        cls._contrib().instrument_app(app, **providers, **contrib_options)
        cls._rebuild(app)

    @classmethod
    def uninstrument_app(cls, app: Any) -> None:
        requests = getattr(app, _APP_ATTR, None)
        if requests is None:
            return
        cls._contrib().uninstrument_app(app)
        requests.on = False
        delattr(app, cls.app_method)  # the class's again
        delattr(app, _APP_ATTR)
        cls._rebuild(app)


__all__ = [
    "DEFAULT_EXCLUDED",
    "DEFAULT_METHODS",
    "HttpServerInstrumentor",
    "RequestFilter",
    "Requests",
    "contrib_kwargs",
    "status_ok",
]
