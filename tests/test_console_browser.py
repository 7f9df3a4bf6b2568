"""The console in a real browser (Debian's Chromium, headless, through Selenium and chromium-driver).

One browser and one collector per module; the collector holds demo-shaped traffic sent through the
modeltel SDK over OTLP, plus one trace whose names and attributes carry markup. Every test ends by
checking the browser's console: the page must log no error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace

from modeltel import taxonomy as tx
from modeltel.cli.loopback import MODEL_NAME, MODEL_VERSION
from modeltel_collector import Collector
from modeltel_collector.httpbase import Handler
from tests.collector_helpers import http_get, running_collector, tracer_provider
from tests.console_helpers import (
    GEN_MODEL,
    GEN_TTFT_S,
    GEN_VERSION,
    HOSTILE,
    SLOW_S,
    add_detection,
    chromium,
    fire_in_alertmanager,
    send_demo_traffic,
    send_generations,
    send_hostile_trace,
)

REQUESTS = 30  # every fifth one is slow (SLOW_S)
WAIT_S = 10


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with chromium() as drv:
        yield drv


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[Collector, str]]:
    with running_collector(console_step_s=0.25, console_history_s=120) as c:
        send_demo_traffic(c, requests=REQUESTS)
        yield c, send_hostile_trace(c)


@pytest.fixture(autouse=True)
def no_console_errors(browser) -> Iterator[None]:
    browser.get_log("browser")  # what earlier tests left
    yield
    assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def wait(browser, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(condition, message)


def open_page(browser, c: Collector, page: str, query: str = "refresh=0"):
    """Load the console fresh at ``#/page`` and wait until the page has drawn its data."""
    browser.get("about:blank")
    browser.get(f"{c.urls['listen']}/?{query}#/{page}")
    return wait(browser, lambda d: d.find_elements("css selector", "main[data-ready] > .page"), f"{page} never loaded")


def _gone(element) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    return False


def css(browser, selector: str) -> list:
    return browser.find_elements("css selector", selector)


def test_models_page_lists_the_demo_model_with_throughput(browser, demo):
    open_page(browser, demo[0], "models")
    (row,) = css(browser, f'tr[data-model="{MODEL_NAME}"][data-version="{MODEL_VERSION}"]')
    requests = row.find_element("css selector", '[data-field="requests_per_s"]').text
    assert float(requests.removesuffix("/s")) > 0
    assert row.find_element("css selector", "svg.spark path").get_attribute("d")


def test_model_page_draws_a_chart_per_stage(browser, demo):
    open_page(browser, demo[0], f"model?name={MODEL_NAME}&version={MODEL_VERSION}")
    for stage in ("prediction", *tx.CANONICAL_STAGES):
        (figure,) = css(browser, f'figure[data-stage="{stage}"]')
        paths = [p.get_attribute("d") for p in figure.find_elements("css selector", "path.line")]
        assert len(paths) == 3 and all(d.startswith("M") for d in paths), stage
    assert css(browser, "svg rect.bar")  # the confidence distribution


TOPMOST = """
const circle = arguments[0].querySelector("circle");
circle.scrollIntoView({block: "center"});
const r = circle.getBoundingClientRect();
return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2).closest("a.exemplar");
"""


def test_two_clicks_from_the_models_page_reach_an_exemplars_trace(browser, demo):
    open_page(browser, demo[0], "models")
    css(browser, f'tr[data-model="{MODEL_NAME}"] a')[0].click()
    exemplars = wait(browser, lambda d: css(d, 'figure[data-stage="inference"] a.exemplar'), "no exemplar drawn")
    slowest = max(exemplars, key=lambda e: -float(e.find_element("css selector", "circle").get_attribute("cy")))
    on_top = browser.execute_script(TOPMOST, slowest)  # points can overlap: the click goes to the top one
    trace_id = on_top.get_attribute("data-trace-id")
    on_top.click()
    wait(browser, lambda d: d.current_url.endswith(f"#/trace/{trace_id}"), "the click did not open the trace")
    wait(browser, lambda d: css(d, "main[data-ready] details.span"), "the trace did not draw")
    assert browser.find_element("id", "trace-id").text == trace_id
    names = [s.text.split("\n")[0] for s in css(browser, "details.span > summary .span-name")]
    assert set(tx.CANONICAL_STAGES) <= set(names)
    assert css(browser, f'main a[href*="#/model?name={MODEL_NAME}"]')  # and back to the model


def test_search_by_minimum_duration_returns_only_slower_traces(browser, demo):
    open_page(browser, demo[0], "traces")
    everything = len(css(browser, "tr[data-trace-id]"))
    field = browser.find_element("id", "q-min_duration_ms")
    field.send_keys(str(SLOW_S * 1000 * 0.8))
    before = css(browser, "main > .page")[0]
    browser.find_element("css selector", "form.search button").click()
    # the search re-renders the page: wait for the old one to go, or its rows would be read
    wait(browser, lambda d: _gone(before), "no search ran")
    wait(browser, lambda d: "min_duration_ms" in d.current_url and css(d, "main[data-ready]"), "no search ran")
    durations = [float(r.get_attribute("data-duration-ms")) for r in css(browser, "tr[data-trace-id]")]
    assert len(durations) == REQUESTS // 5 < everything
    assert min(durations) >= SLOW_S * 1000 * 0.8


def test_resources_page_lists_the_host_meters(browser, demo):
    open_page(browser, demo[0], "resources")
    rows = [r.text for r in css(browser, "main tbody tr")]
    assert any("model_resource_usage" in r and "resource_type=memory" in r for r in rows), rows
    assert css(browser, "main tbody svg.spark path")


def test_alerts_page_shows_detections_and_alertmanager_alerts_as_text(browser, alertmanager):
    with running_collector(alertmanager_url=alertmanager) as c:
        fire_in_alertmanager(alertmanager)
        add_detection(c)
        open_page(browser, c, "alerts")
        (alert,) = css(browser, "tr[data-alertname=HighErrorRate]")
        assert HOSTILE in alert.text  # the summary, as text
        assert not alert.find_elements("css selector", "a")  # a javascript: runbook URL is not made a link
        (detection,) = css(browser, "tr[data-check=latency_shift][data-state=firing]")
        assert "critical" in detection.text and HOSTILE in detection.text
        assert browser.execute_script("return window.__xss === undefined")


def test_untrusted_names_and_attributes_render_as_text(browser, demo):
    c, hostile_trace = demo
    open_page(browser, c, f"trace/{hostile_trace}")
    css(browser, "details.span > summary")[0].click()  # open the span: attributes, events, error
    text = browser.find_element("tag name", "main").text
    assert text.count(HOSTILE) >= 4  # span name, attribute, event name and attribute, status message
    open_page(browser, c, "models")
    assert HOSTILE in browser.find_element("tag name", "main").text  # the model name, from span metrics
    assert browser.execute_script("return window.__xss === undefined && document.querySelectorAll('img').length") == 0


CONTRAST = """
function rgb(s) { return s.match(/[\\d.]+/g).map(Number); }
function lum(c) {
  const [r, g, b] = c.slice(0, 3).map((v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function background(node) {
  for (; node; node = node.parentElement) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c;
  }
  return [255, 255, 255];
}
return [...document.querySelectorAll(arguments[0])].filter((n) => n.textContent.trim()).map((n) => {
  const a = lum(rgb(getComputedStyle(n).color)), b = lum(background(n));
  return [n.tagName + ' ' + n.textContent.trim().slice(0, 20), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
});
"""


def test_accessibility_smoke_labels_contrast_and_keyboard(browser, demo):
    from selenium.webdriver.common.keys import Keys

    c = demo[0]
    open_page(browser, c, "traces")
    controls = css(browser, "main input, main select")
    assert controls
    for control in controls:
        label = css(browser, f'label[for="{control.get_attribute("id")}"]')
        assert (label and label[0].text.strip()) or control.get_attribute("aria-label"), control.get_attribute("id")
    texts = "header a, #console-status, h1, h2, label, caption, th, td, a, button, figcaption, .legend li, p"
    for page in ("traces", "models", "resources", f"model?name={MODEL_NAME}&version={MODEL_VERSION}"):
        open_page(browser, c, page)
        low = [(what, ratio) for what, ratio in browser.execute_script(CONTRAST, texts) if ratio < 4.5]
        assert low == [], page
    open_page(browser, c, "models")
    browser.find_element("tag name", "body").send_keys(Keys.TAB)
    focused = []
    for _ in range(4):
        focused.append(browser.switch_to.active_element.text)
        browser.switch_to.active_element.send_keys(Keys.TAB)
    assert focused == ["modeltel", "Models", "Traces", "Resources"]
    nav = browser.find_element("css selector", '#nav a[data-page="traces"]')
    nav.send_keys(Keys.ENTER)
    wait(browser, lambda d: d.current_url.endswith("#/traces"), "Enter on a nav link did not navigate")
    # The address changes before the hashchange handler runs: wait for the handler, not the address.
    wait(browser, lambda d: nav.get_attribute("aria-current") == "page", "the nav link was not marked current")
    open_page(browser, c, f"model?name={MODEL_NAME}&version={MODEL_VERSION}")
    exemplar = css(browser, "a.exemplar")[0]
    assert exemplar.get_attribute("aria-label").startswith("exemplar")
    browser.execute_script("arguments[0].focus()", exemplar)
    browser.switch_to.active_element.send_keys(Keys.ENTER)  # exemplars are links: keyboard users follow them too
    wait(browser, lambda d: "#/trace/" in d.current_url, "Enter on an exemplar did not open its trace")


TOKEN = "s3cret-7f41c9d2-console"  # distinctive: anywhere in a profile file, it is this token
PROBE = "probe-0b6e5a13-session"  # stored in sessionStorage: shows the scan sees what the tab stores


def sign_in(browser, token: str) -> None:
    field = wait(browser, lambda d: css(d, "form.login input#token"), "no sign-in form without a token")[0]
    field.send_keys(token)
    browser.find_element("css selector", "form.login button").click()


def test_the_token_is_in_no_url_no_profile_file_and_no_request_line(tmp_path, monkeypatch):
    """Signed in through the form, the token travels in headers only: the browser's profile (history,
    favicons, HTTP cache, session and storage files, read after it quits) and every request line the
    collector answered (what an access log or a TLS proxy's log writes) hold no trace of it."""
    lines: list[str] = []
    monkeypatch.setattr(Handler, "log_request", lambda self, *_: lines.append(self.requestline))
    profile = tmp_path / "profile"
    with running_collector(auth_token=TOKEN, console_step_s=0.25, console_history_s=60) as c:
        send_demo_traffic(c, requests=5, token=TOKEN)
        with chromium(profile=profile) as browser:
            browser.get(f"{c.urls['listen']}/?refresh=0#/models")
            sign_in(browser, TOKEN)
            wait(browser, lambda d: css(d, f'tr[data-model="{MODEL_NAME}"] a'), "signing in did not show the models")
            css(browser, f'tr[data-model="{MODEL_NAME}"] a')[0].click()
            wait(browser, lambda d: css(d, 'main[data-ready] figure[data-stage="inference"]'), "no model page")
            browser.execute_script("sessionStorage.setItem('probe', arguments[0])", PROBE)
            browser.refresh()  # the token lived in the page only: a reload asks again
            sign_in(browser, TOKEN)
            wait(browser, lambda d: css(d, 'main[data-ready] figure[data-stage="inference"]'), "no model page")
            errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert errors and all("401" in m for m in errors)  # only the refused requests before signing in
    files = {p: p.read_bytes() for p in profile.rglob("*") if p.is_file()}
    assert any(PROBE.encode("utf-16-le") in b or PROBE.encode() in b for b in files.values()), "storage not on disk"
    needles = (TOKEN.encode(), TOKEN.encode("utf-16-le"))
    assert [str(p.relative_to(profile)) for p, b in files.items() if any(n in b for n in needles)] == []
    assert any("/api/v1/console/" in line for line in lines)
    assert [line for line in lines if TOKEN in line or "token=" in line] == []


def test_a_malformed_route_says_so_instead_of_loading_forever(browser, demo):
    browser.get("about:blank")
    browser.get(f"{demo[0].urls['listen']}/?refresh=0#/trace/%E0%A4%A")
    alert = wait(browser, lambda d: css(d, 'main [role="alert"]'), "a malformed route stayed on Loading…")[0]
    assert "malformed" in alert.text and "Loading" not in browser.find_element("tag name", "main").text


# ---------------------------------------------------------------------------- real data reads well
SKEW_MODEL, SKEW_VERSION = "skew-model", "2.1.0"
STEP_S = 10.0  # the synthetic samples' spacing
GAP_MS = 1650.0  # the slow trace's time that no stage covers: 2000 ms - the union [0, 300] + [1900, 1950]
PLOT_TOP, PLOT_BOTTOM, PLOT_WIDTH = 10, 174, 640 - 64 - 12  # chart.js's plot area, in viewBox units


def _spans_ending_at(c: Collector, end_s: float, durations_ms: list[float], *, error: bool = False) -> None:
    """Prediction spans (each its own trace) of the given durations, ending at ``end_s``."""
    tp = tracer_provider(c, "http", service="skew")
    tracer = tp.get_tracer("skew")
    attrs = {
        tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION,
        tx.ATTR_MODEL_NAME: SKEW_MODEL,
        tx.ATTR_MODEL_VERSION: SKEW_VERSION,
    }
    end = int(end_s * 1e9)
    for d in durations_ms:
        span = tracer.start_span("predict", start_time=end - int(d * 1e6), attributes=attrs)
        if error:
            span.set_status(trace.Status(trace.StatusCode.ERROR, "boom"))
        span.end(end_time=end)
    tp.shutdown()


def _slow_trace(c: Collector, end_s: float) -> str:
    """One 2000 ms prediction whose stages overlap and leave GAP_MS uncovered; returns its trace id."""
    tp = tracer_provider(c, "http", service="skew")
    tracer = tp.get_tracer("skew")
    attrs = {tx.ATTR_MODEL_NAME: SKEW_MODEL, tx.ATTR_MODEL_VERSION: SKEW_VERSION}
    t0 = int(end_s * 1e9) - 2_000_000_000
    root = tracer.start_span("predict", start_time=t0, attributes={tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION, **attrs})
    ctx = trace.set_span_in_context(root)
    # stages overlap (preprocess 0-100 ms, inference 50-300 ms): the union, not the sum, is covered
    for stage, start_ms, end_ms in (("postprocess", 1900, 1950), ("inference", 50, 300), ("preprocess", 0, 100)):
        stage_attrs = {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_STAGE, tx.SPAN_ATTR_STAGE: stage, **attrs}
        span = tracer.start_span(stage, context=ctx, start_time=t0 + start_ms * 1_000_000, attributes=stage_attrs)
        span.end(end_time=t0 + end_ms * 1_000_000)
    root.end(end_time=t0 + 2_000_000_000)
    trace_id = format(root.get_span_context().trace_id, "032x")
    tp.shutdown()
    return trace_id


@pytest.fixture(scope="module")
def skewed() -> Iterator[tuple[Collector, str]]:
    """A history of 20 samples with traffic in three of them (8, 9, 10): 200 fast predictions each
    (2, 4, 3 ms), plus, in sample 9, one 2000 ms trace (an outlier exemplar) and, in 10, a failed one.
    The sampler never runs on its own (a one-hour step); the test takes the samples, at synthetic times."""
    with running_collector(console_step_s=3600, console_history_s=3600 * 100) as c:
        base = time.time()
        slow = ""
        for i in range(1, 21):
            at = base + i * STEP_S
            if i in (8, 9, 10):
                _spans_ending_at(c, at - 1, [{8: 2.0, 9: 4.0, 10: 3.0}[i]] * 200)
            if i == 9:
                slow = _slow_trace(c, at - 1)
            if i == 10:
                _spans_ending_at(c, at - 1, [3.0], error=True)
            c.flush()
            c.history.sample(now=at)
        yield c, slow


def _box(browser, element) -> dict:
    return browser.execute_script("const b = arguments[0].getBBox(); return {y: b.y, w: b.width}", element)


def test_an_outlier_exemplar_does_not_flatten_the_quantile_lines(browser, skewed):
    c, slow = skewed
    open_page(browser, c, f"model?name={SKEW_MODEL}&version={SKEW_VERSION}")
    (figure,) = css(browser, 'figure[data-stage="prediction"]')
    p99 = figure.find_element("css selector", 'path.line[data-series="p99"]')
    top = _box(browser, p99)["y"]  # the line's highest point
    assert (PLOT_BOTTOM - top) / (PLOT_BOTTOM - PLOT_TOP) > 0.5  # p99 (~5 ms) fills the plot, not 0.25% of it
    (outlier,) = figure.find_elements("css selector", "a.exemplar.outlier")
    assert outlier.get_attribute("data-trace-id") == slow
    assert outlier.get_dom_attribute("href").endswith(f"#/trace/{slow}")  # still a link to its trace
    label = outlier.find_element("css selector", "title").get_attribute("textContent")
    assert "outlier" in label and "2000.0 ms" in label
    assert float(outlier.find_element("css selector", "circle").get_attribute("cy")) <= PLOT_TOP + 1  # on the top edge
    others = figure.find_elements("css selector", "a.exemplar:not(.outlier) circle")
    assert len(others) == 2 and all(PLOT_TOP <= float(o.get_attribute("cy")) <= PLOT_BOTTOM for o in others)
    assert "outlier" in figure.find_element("css selector", ".legend").text


def test_the_time_axis_spans_the_data_not_the_empty_history(browser, skewed):
    c = skewed[0]
    open_page(browser, c, f"model?name={SKEW_MODEL}&version={SKEW_VERSION}")
    (figure,) = css(browser, 'figure[data-stage="prediction"]')
    p50 = _box(browser, figure.find_element("css selector", 'path.line[data-series="p50"]'))
    assert p50["w"] > 0.95 * PLOT_WIDTH  # 3 of 20 samples hold data: they fill the axis, not 15% of it


def field(row, name: str) -> str:
    return row.find_element("css selector", f'[data-field="{name}"]').text


def test_traces_table_shows_version_status_stage_order_and_the_cap(browser, skewed):
    c, slow = skewed
    open_page(browser, c, "traces?sort=duration")
    (row,) = css(browser, f'tr[data-trace-id="{slow}"]')
    assert field(row, "version") == SKEW_VERSION
    assert field(row, "stages") == ", ".join(tx.CANONICAL_STAGES)  # pipeline order, not alphabetical
    assert field(row, "status") == "ok"  # OTel's "unset": no error
    (note,) = css(browser, "p.capped")  # 602 traces match, the page asks for 100
    assert "100" in note.text and "more match" in note.text
    open_page(browser, c, "traces?status=error")
    rows = css(browser, "tr[data-trace-id]")
    assert len(rows) == 1 and field(rows[0], "status") == "error"
    assert not css(browser, "p.capped")


def test_the_waterfall_shows_time_no_child_span_covers(browser, skewed):
    c, slow = skewed
    open_page(browser, c, f"trace/{slow}")
    (gap,) = css(browser, ".waterfall .untracked.notable")  # the stages have no children: only the root has one
    assert float(gap.get_attribute("data-untracked-ms")) == pytest.approx(GAP_MS, abs=0.01)
    assert f"untracked {GAP_MS:.1f} ms" in gap.text
    assert len(gap.find_elements("css selector", ".bar.gap")) == 2  # 300-1900 ms and 1950-2000 ms


def test_a_trace_over_the_fetch_cap_says_it_shows_only_part(browser):
    with running_collector(trace_fetch_max_spans=2) as c:
        slow = _slow_trace(c, time.time())
        c.flush()
        open_page(browser, c, f"trace/{slow}")
        (note,) = css(browser, "p.capped")
        assert "first 2 of the trace's 4 spans" in note.text
        assert len(css(browser, "details.span")) == 2


@pytest.fixture(scope="module")
def generative() -> Iterator[Collector]:
    with running_collector(console_step_s=0.25, console_history_s=120) as c:
        send_generations(c)
        yield c


def test_a_generative_model_shows_ttft_tpot_and_token_charts_and_an_exemplar_opens_its_first_token(browser, generative):
    open_page(browser, generative, f"model?name={GEN_MODEL}&version={GEN_VERSION}")
    lines = {"ttft": 3, "tpot": 2, "tokens_per_s": 1, "tokens_per_request": 2}
    for chart, n in lines.items():
        (figure,) = css(browser, f'figure[data-generation="{chart}"]')
        paths = [p.get_attribute("d") for p in figure.find_elements("css selector", "path.line")]
        assert len(paths) == n and all(d.startswith("M") for d in paths), chart
    tokens = css(browser, 'figure[data-generation="tokens_per_request"] a.exemplar title')
    assert tokens and all("5 tokens" in t.get_attribute("textContent") for t in tokens)
    exemplar = browser.execute_script(TOPMOST, css(browser, 'figure[data-generation="ttft"] a.exemplar')[0])
    trace_id = exemplar.get_attribute("data-trace-id")
    exemplar.click()
    wait(browser, lambda d: d.current_url.endswith(f"#/trace/{trace_id}"), "the click did not open the trace")
    (mark,) = wait(browser, lambda d: css(d, "main[data-ready] .waterfall .first-token"), "no first-token mark")
    # at the first-token event's time after the span's start, as the trace API gives them
    _, _, body = http_get(f"{generative.urls['listen']}/api/traces/{trace_id}")
    (span,) = json.loads(body)["spans"]
    (event,) = [e for e in span["events"] if e["name"] == tx.SPAN_EVENT_GEN_AI_FIRST_TOKEN]
    after_ms = (event["time_unix_nano"] - span["start_time_unix_nano"]) / 1e6
    assert after_ms >= GEN_TTFT_S * 1000
    # (the page reads nanosecond times as doubles: exact to a microsecond at today's epoch)
    assert float(mark.get_attribute("data-first-token-ms")) == pytest.approx(after_ms, abs=1e-3)
    label = mark.get_attribute("title")
    assert label.startswith("first token ") and label.endswith(" ms") and mark.text == label
    assert abs(int(label.split()[2]) - after_ms) <= 0.5 + 1e-3  # rounded to the ms from 10 ms on
    # and where it is drawn: that share of the bar's width from the bar's start
    bar = css(browser, ".waterfall details.span .track .bar")[0]
    left, width, tick = browser.execute_script(
        "const b = arguments[0].getBoundingClientRect(), m = arguments[1].getBoundingClientRect();"
        "return [b.left, b.width, m.left + m.width / 2];", bar, mark)  # fmt: skip
    assert tick - left == pytest.approx(width * after_ms / span["duration_ms"], abs=2)
