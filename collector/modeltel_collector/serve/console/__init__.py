"""The web console: static pages at ``/`` and their read-only JSON API under ``/api/v1/console/``.

The pages are plain files shipped as package data (no build step, no CDN); they fetch the JSON below and
the trace API, and draw with a small SVG chart module of their own. The static files hold no data, so
they are served to anyone who can reach ``--listen``; every JSON request needs the bearer token when one
is set (the page's sign-in form asks for it and keeps it in the page's memory only: a URL carrying it
would stay in the browser's history, caches and session files and in a proxy's log, so a credential in
a console URL gets a 400; see docs/console.md). The Content-Security-Policy allows this origin's scripts
only, so a value that slipped past the page's escaping still could not run. Nothing here writes: every
route is a GET.
"""

from __future__ import annotations

import json
import urllib.request
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs

from modeltel_collector.httpbase import Handler, credential_param, token_ok
from modeltel_collector.serve.console.views import CONSOLE_FAMILIES, Views
from modeltel_collector.serve.deps import ServeDeps
from modeltel_collector.serve.params import number

__all__ = ["CONSOLE_FAMILIES", "serve_console"]

API_PREFIX = "/api/v1/console/"
_STATIC = files(__package__) / "static"
_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/console/pages.js": ("pages.js", "text/javascript; charset=utf-8"),
    "/console/util.js": ("util.js", "text/javascript; charset=utf-8"),
    "/console/chart.js": ("chart.js", "text/javascript; charset=utf-8"),
    "/console/console.css": ("console.css", "text/css; charset=utf-8"),
    "/console/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL (a model name, a trace id) never leaves in a Referer
    "Cache-Control": "no-cache",
}

_URL_TOKEN = (
    "the console takes its token from its sign-in form, never from the URL (browser history, caches and proxy "
    "logs keep URLs): open this address without the token and sign in; API clients send Authorization: Bearer"
)


def _float(query: dict[str, str], key: str, default: float | None) -> float | None:
    value = query.get(key)
    if not value:
        return default
    return number(value, key, lo=1e-3, hi=1e9)  # ValueError -> 400


def _alerts(deps: ServeDeps) -> dict[str, Any]:
    """What fires now: the collector's degradation detections (None when the detectors are off) and, when
    ``alertmanager_url`` is set, Alertmanager's active alerts (the rule alerts and the detectors' alike)."""
    detections = deps.detections()
    url = deps.config.alertmanager_url
    if not url:
        return {"detections": detections, "alertmanager": None}
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/v2/alerts?active=true", timeout=2) as response:
            return {"detections": detections, "alertmanager": {"url": url, "alerts": json.load(response)}}
    except (OSError, ValueError) as e:  # Alertmanager down or not Alertmanager: the page says so
        return {"detections": detections, "alertmanager": {"url": url, "error": str(e)}}


def _api(views: Views, route: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    if route == "models":
        return 200, views.models(window_s=_float(query, "window_s", 300.0))
    if route == "model":
        if not query.get("name"):
            return 400, {"error": "name is required (and version, if the model has one)"}
        return 200, views.model(query["name"], query.get("version", ""), _float(query, "range_s", None))
    if route == "resources":
        return 200, views.resources()
    if route == "history":
        return 200, views.history.describe()
    return 404, {
        "error": "not found",
        "endpoints": [API_PREFIX + r for r in ("models", "model", "resources", "history", "alerts")],
    }


def serve_console(handler: Handler, path: str, query_string: str) -> bool:
    """Answer ``path`` if it is the console's (a page, an asset or its API); False leaves it to the caller."""
    deps: ServeDeps = handler.server.deps
    history = deps.history
    if history is None:
        return False  # console disabled: the listen address serves what it did before
    if path not in _ASSETS and not path.startswith(API_PREFIX):
        return False
    if any(credential_param(p.partition("=")[0]) for p in query_string.split("&")):
        handler.send_json(400, {"error": _URL_TOKEN}, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        return True
    if path in _ASSETS:
        name, content_type = _ASSETS[path]
        handler.send_body(200, (_STATIC / name).read_bytes(), content_type, _PAGE_HEADERS)
        return True
    if not token_ok(handler.headers.get("Authorization"), deps.config.auth_token):
        handler.send_json(401, {"error": "missing or invalid bearer token"}, {"WWW-Authenticate": "Bearer"})
        return True
    query = {k: v[-1] for k, v in parse_qs(query_string).items()}
    route = path[len(API_PREFIX) :]
    try:
        if route == "alerts":  # not from the history: no need to hold its sampler
            status, doc = 200, _alerts(deps)
        else:
            with history.paused():  # one document, one set of samples
                status, doc = _api(Views(history), route, query)
    except ValueError as e:
        status, doc = 400, {"error": str(e)}
    handler.send_json(status, doc, {"Cache-Control": "no-store"})
    return True
