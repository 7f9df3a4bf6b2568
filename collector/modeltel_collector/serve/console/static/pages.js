// The console's pages. Each entry of PAGES: title, nav (listed in the top navigation), poll (refreshed
// every few seconds) and render(view, {arg, query}), which builds the page's frame in `view` and returns
// an async refresh() that fetches and redraws its data.

import { barChart, clock, lineChart, sparkline } from "./chart.js";
import { api, el, route } from "./util.js";

const ms = (s) => (s === null || s === undefined ? "–" : `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`);
const msAxis = (s) => `${+(s * 1000).toPrecision(3)} ms`;
const perS = (v) => (v === null || v === undefined ? "–" : `${v < 10 ? v.toFixed(2) : v.toFixed(0)}/s`);
const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(v < 0.01 && v > 0 ? 2 : 1)}%`);
const num = (v) => (v === null || v === undefined ? "–" : `${+v.toPrecision(4)}`);
const tokens = (v) => (v === null || v === undefined ? "–" : `${+v.toPrecision(4)} tokens`);
const tokensPerS = (v) => (v === null || v === undefined ? "–" : `${+v.toPrecision(3)} tok/s`);
const modelLink = (m, v) => route("model", { name: m, version: v });

// legend: the lines' names, keyed by their order (k0, k1...), or [name, key] for a key of its own
function figure(title, svg, legend = []) {
  const item = (entry, i) => (Array.isArray(entry) ? el("li", { class: entry[1] }, entry[0]) : el("li", { class: `k${i}` }, entry));
  return el("figure", { class: "panel" },
    el("figcaption", {}, title),
    svg,
    legend.length ? el("ul", { class: "legend" }, legend.map(item)) : null);
}
const EXEMPLAR_KEY = ["exemplar: click for its trace", "k3"], OUTLIER_KEY = ["outlier: above the scale, at the top edge", "k4"];

function table(caption, headers, rows) {
  return el("table", {},
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows));
}

// ------------------------------------------------------------------------------------------ Models
const WINDOWS = [["60", "last minute"], ["300", "last 5 minutes"], ["900", "last 15 minutes"], ["3600", "last hour"]];

function renderModels(view, { query }) {
  const windowS = query.get("window_s") || "300";
  const choice = select("window_s", "Rates and quantiles over the", WINDOWS, windowS);
  choice.querySelector("select").addEventListener("change", (ev) => {
    location.hash = route("models", { window_s: ev.target.value });
  });
  view.append(el("h1", {}, "Models"), el("form", { class: "search", "aria-label": "Time window" }, choice));
  const body = el("div");
  view.append(body);
  return async () => {
    const doc = await api(`/api/v1/console/models?window_s=${encodeURIComponent(windowS)}`);
    if (!doc.models.length) {
      body.replaceChildren(el("p", {}, "No model has reported yet. Point a modeltel SDK's OTLP exporter at this collector."));
      return;
    }
    const rows = doc.models.map((m) => el("tr", { "data-model": m.model, "data-version": m.version },
      el("th", { scope: "row" }, el("a", { href: modelLink(m.model, m.version) }, m.model)),
      el("td", {}, m.version),
      el("td", { class: "num", "data-field": "requests_per_s" }, perS(m.requests_per_s)),
      el("td", { class: "num" }, pct(m.error_ratio)),
      el("td", { class: "num" }, ms(m.p50)), el("td", { class: "num" }, ms(m.p95)), el("td", { class: "num" }, ms(m.p99)),
      el("td", {}, sparkline(m.sparkline, `requests per second of ${m.model} over the last hour`))));
    body.replaceChildren(table(`Over the last ${doc.window_s} s; the trend covers the whole history`,
      ["Model", "Version", "Requests", "Errors", "p50", "p95", "p99", "Trend"], rows));
  };
}

// ------------------------------------------------------------------------------------------ Model
function exemplarPoints(exemplars, format = ms) {
  return exemplars.filter((e) => e.value !== null).map((e) => ({
    t: e.t, value: e.value, traceId: e.trace_id, href: route(`trace/${e.trace_id}`),
    label: `exemplar ${format(e.value)}: open trace ${e.trace_id}`,
  }));
}

// A chart of quantile lines with exemplar points (a latency, TTFT, TPOT or tokens per request), in a
// figure whose legend names the lines, the exemplars and, when one is drawn, the outliers.
function quantileFigure(title, times, lines, exemplars, format, axis) {
  const chart = lineChart({ title, times, format: axis, exemplars: exemplarPoints(exemplars, format), series: lines });
  const legend = [...lines.map((l) => l.name), EXEMPLAR_KEY];
  if (chart.querySelector(".outlier")) legend.push(OUTLIER_KEY);
  return figure(title, chart, legend);
}

const quantileLines = (doc, names) => names.map((name) => ({ name, values: doc[name] }));

// A generative model's charts: time to first token, time per output token, output tokens per second
// and tokens per request (output and input means), exemplars opening their generation's trace.
function generationSection(gen, t) {
  const figures = [];
  const add = (key, fig) => { fig.dataset.generation = key; figures.push(fig); };
  if (gen.ttft) add("ttft", quantileFigure("Time to first token", t, quantileLines(gen.ttft, ["p50", "p95", "p99"]), gen.ttft.exemplars, ms, msAxis));
  if (gen.tpot) add("tpot", quantileFigure("Time per output token", t, quantileLines(gen.tpot, ["p50", "p95"]), gen.tpot.exemplars, ms, msAxis));
  if (gen.output_tokens) {
    add("tokens_per_s", figure("Output tokens per second", lineChart({ title: "Output tokens per second", times: t, format: tokensPerS,
      series: [{ name: "output tokens/s", values: gen.output_tokens_per_s }] }), ["output tokens/s"]));
    // the mean, as the Generative dashboard row shows it: the token buckets are powers of 4, too coarse
    // for a quantile to say 5 from 12
    const lines = [{ name: "output (mean)", values: gen.output_tokens.mean }];
    if (gen.input_tokens) lines.push({ name: "input (mean)", values: gen.input_tokens.mean });
    add("tokens_per_request", quantileFigure("Tokens per request", t, lines, gen.output_tokens.exemplars, tokens, num));
  }
  return el("section", { class: "grid", "aria-labelledby": "h-generation" }, figures);
}

function counterChart(title, times, groups) {
  return figure(title, lineChart({ title, times, format: perS, series: groups.map((g) => ({ name: g.label, values: g.rate })) }),
    groups.map((g) => g.label));
}

function renderModel(view, { query }) {
  const name = query.get("name") || "", version = query.get("version") || "";
  view.append(el("h1", {}, "Model ", el("span", { class: "mono" }, name), version ? ` ${version}` : ""),
    el("p", {}, el("a", { href: route("traces", { model: name }) }, "Traces of this model"), " · ",
      el("a", { href: route("models") }, "All models")));
  const body = el("div");
  view.append(body);
  return async () => {
    const doc = await api(`/api/v1/console/model?${new URLSearchParams({ name, version })}`);
    const t = doc.times;
    const latency = el("section", { class: "grid", "aria-labelledby": "h-latency" });
    for (const s of doc.stages) {
      const title = s.stage === "prediction" ? "End to end (prediction)" : `Stage: ${s.stage}`;
      const fig = quantileFigure(title, t, quantileLines(s, ["p50", "p95", "p99"]), s.exemplars, ms, msAxis);
      fig.dataset.stage = s.stage;
      if (s.bounds_warning) fig.append(el("p", { class: "bounds-warning", role: "note" }, `⚠ ${s.bounds_warning}`));
      latency.append(fig);
    }
    const other = el("section", { class: "grid", "aria-labelledby": "h-traffic" },
      counterChart("Throughput by status", t, doc.throughput),
      counterChart("Errors by type", t, doc.errors));
    if (doc.batch_size) {
      other.append(figure("Batch size", lineChart({ title: "Batch size", times: t, format: num,
        series: [{ name: "mean", values: doc.batch_size.mean }, { name: "p95", values: doc.batch_size.p95 }] }), ["mean", "p95"]));
    }
    if (doc.confidence) {
      other.append(figure("Confidence over time", lineChart({ title: "Confidence", times: t, format: num,
        series: [{ name: "p50", values: doc.confidence.p50 }, { name: "p95", values: doc.confidence.p95 }] }), ["p50", "p95"]));
      other.append(figure("Confidence distribution", barChart({ title: "Predictions per confidence bucket", format: num,
        bars: doc.confidence_distribution.map((b) => ({ label: b.le === null ? "+Inf" : `≤${b.le}`, value: b.count })) })));
    }
    body.replaceChildren(
      el("h2", { id: "h-latency" }, "Latency"),
      doc.stages.length ? latency : el("p", {}, "No latency recorded for this model in the history yet."),
      ...(doc.generation ? [el("h2", { id: "h-generation" }, "Generation"), generationSection(doc.generation, t)] : []),
      el("h2", { id: "h-traffic" }, "Traffic, errors, batches and confidence"), other);
  };
}

// ------------------------------------------------------------------------------------------ Traces
const SEARCH_FIELDS = [
  ["model", "Model", "text"], ["stage", "Stage", "text"], ["min_duration_ms", "Minimum duration (ms)", "number"],
];

// Form controls get ids of their own ("q-model"), so they never collide with the shell's ids.
function field(name, label, control) {
  control.setAttribute("id", `q-${name}`);
  control.setAttribute("name", name);
  return el("div", { class: "field" }, el("label", { for: `q-${name}` }, label), control);
}

function select(name, label, options, value) {
  return field(name, label, el("select", {}, options.map(([v, text]) => el("option", { value: v, selected: v === value }, text))));
}

function renderTraces(view, { query }) {
  const form = el("form", { class: "search", role: "search", "aria-label": "Trace search" },
    SEARCH_FIELDS.map(([name, label, type]) => field(name, label,
      el("input", { type, value: query.get(name) || "", min: type === "number" ? "0" : null, step: type === "number" ? "any" : null }))),
    select("status", "Status", [["", "any"], ["ok", "ok"], ["error", "error"]], query.get("status") || ""),
    select("sort", "Sort by", [["recent", "most recent"], ["duration", "slowest"]], query.get("sort") || "recent"),
    el("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = Object.fromEntries([...new FormData(form)].filter(([, v]) => v !== ""));
    location.hash = route("traces", q);
  });
  const results = el("div", { "aria-live": "polite" });
  view.append(el("h1", {}, "Traces"), form, results);
  return async () => {
    const q = new URLSearchParams([...query].filter(([k, v]) => v !== "" && k !== "limit"));
    q.set("limit", "100");
    const doc = await api(`/api/traces?${q}`);
    const rows = doc.traces.map((tr) => el("tr", { "data-trace-id": tr.trace_id, "data-duration-ms": tr.duration_ms },
      el("td", {}, clock(tr.start_time_unix_nano / 1e9)),
      el("th", { scope: "row" }, el("a", { href: route(`trace/${tr.trace_id}`), class: "mono" }, tr.trace_id.slice(0, 16))),
      el("td", {}, tr.model ? el("a", { href: modelLink(tr.model, tr.version) }, tr.model) : "–"),
      el("td", { "data-field": "version" }, tr.version || "–"),
      el("td", {}, tr.name), el("td", { "data-field": "stages" }, tr.stages.join(", ")),
      // OTel's unset is no error: the reader wants ok or error
      el("td", { "data-field": "status", class: tr.status === "error" ? "error" : "" }, tr.status === "error" ? "error" : "ok"),
      el("td", { class: "num" }, `${tr.duration_ms.toFixed(2)} ms`)));
    const order = q.get("sort") === "duration" ? "slowest" : "most recent";
    results.replaceChildren(...(rows.length
      ? [doc.capped ? el("p", { class: "capped", role: "note" },
        `Showing the ${order} ${doc.limit} traces only: more match. Narrow the search to see the others.`) : null,
      table(`${rows.length} traces, ${order} first`,
        ["Start", "Trace", "Model", "Version", "Root span", "Stages", "Status", "Duration"], rows)].filter(Boolean)
      : [el("p", {}, "No trace matches.")]));
  };
}

// ------------------------------------------------------------------------------------------ Trace
// The spans in tree order: {span, depth, children} (children: the span's child spans, in start order).
function spanTree(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  for (const s of spans) {
    const parent = ids.has(s.parent_span_id) ? s.parent_span_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(s);
  }
  const out = [];
  const walk = (parent, depth) => {
    for (const s of children.get(parent) || []) {
      out.push({ span: s, depth, children: children.get(s.span_id) || [] });
      walk(s.span_id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

// The parts of a span's time that none of its children covers: [[start, end], ...] in ns, from the
// union of the children's intervals (overlapping children count once, so this is not duration - sum).
function untracked(span, children) {
  const gaps = [];
  let at = span.start_time_unix_nano;
  const spans = children.map((c) => [Math.max(c.start_time_unix_nano, at), Math.min(c.end_time_unix_nano, span.end_time_unix_nano)])
    .filter(([a, b]) => a < b).sort((a, b) => a[0] - b[0]);
  for (const [start, end] of spans) {
    if (start > at) gaps.push([at, start]);
    at = Math.max(at, end);
  }
  if (span.end_time_unix_nano > at) gaps.push([at, span.end_time_unix_nano]);
  return gaps;
}

// A row under a span with children: how long, and where, the span ran with no child span running
// (its own code, a queue, an uninstrumented call): where to look when a request is slow. From
// NOTABLE_UNTRACKED_PCT of the span on it is drawn in the error colour; below, muted.
const NOTABLE_UNTRACKED_PCT = 10;
function untrackedRow(span, children, depth, t0, total) {
  const gaps = untracked(span, children);
  const gapNs = gaps.reduce((sum, [a, b]) => sum + (b - a), 0);
  const track = el("span", { class: "track" }, gaps.map(([a, b]) => {
    const bar = el("span", { class: "bar gap" });
    bar.style.left = `${((a - t0) / total) * 100}%`;
    bar.style.width = `${Math.max(((b - a) / total) * 100, 0.3)}%`;
    return bar;
  }));
  const name = el("span", { class: "span-name untracked-name" }, `untracked ${ms(gapNs / 1e9)}`);
  name.style.paddingLeft = `${depth * 1.2}em`;
  const share = span.duration_ms > 0 ? (gapNs / 1e6 / span.duration_ms) * 100 : 0;
  const shareText = share > 0 && share < 1 ? "<1" : share.toFixed(0);
  return el("div", { class: `untracked${share >= NOTABLE_UNTRACKED_PCT ? " notable" : ""}`, role: "listitem", "data-untracked-ms": gapNs / 1e6, "data-parent-span-id": span.span_id,
    title: `time in ${span.name} that no child span covers` }, name, track, el("span", { class: "num" }, `${shareText}% of span`));
}

function kvTable(caption, obj) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return null;
  return el("table", { class: "kv" }, el("caption", {}, caption),
    el("tbody", {}, entries.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k),
      el("td", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v))))));
}

// A tick on a generation's bar where its first token came (the gen_ai.first_token event), labelled with
// the time from the span's start; null for any other span.
const FIRST_TOKEN = "gen_ai.first_token";
function firstTokenMark(span, t0, total) {
  const event = span.events.find((e) => e.name === FIRST_TOKEN);
  if (!event) return null;
  const afterMs = (event.time_unix_nano - span.start_time_unix_nano) / 1e6;
  const text = `first token ${afterMs < 10 ? afterMs.toFixed(2) : afterMs.toFixed(0)} ms`;
  const mark = el("span", { class: "first-token", title: text, "data-first-token-ms": afterMs }, el("span", { class: "label" }, text));
  mark.style.left = `${((event.time_unix_nano - t0) / total) * 100}%`;
  return mark;
}

function spanRow(span, depth, t0, total) {
  const bar = el("span", { class: `bar${span.status.code === "error" ? " error" : ""}` });
  bar.style.marginLeft = `${((span.start_time_unix_nano - t0) / total) * 100}%`;
  bar.style.width = `${Math.max((span.duration_ms * 1e6 / total) * 100, 0.3)}%`;
  const name = el("span", { class: "span-name" }, span.name);
  name.style.paddingLeft = `${depth * 1.2}em`;
  const details = el("details", { class: "span", "data-span-id": span.span_id },
    el("summary", {}, name, el("span", { class: "track" }, bar, firstTokenMark(span, t0, total)),
      el("span", { class: "num" }, `${span.duration_ms.toFixed(2)} ms`)),
    el("dl", {}, el("dt", {}, "Service"), el("dd", {}, span.service), el("dt", {}, "Kind"), el("dd", {}, span.kind),
      el("dt", {}, "Span id"), el("dd", { class: "mono" }, span.span_id)),
    span.status.code === "error" ? el("p", { class: "error", role: "note" }, `Error: ${span.status.message || "(no message)"}`) : null,
    kvTable("Attributes", span.attributes),
    span.events.length ? el("ul", { class: "events", "aria-label": "Events" }, span.events.map((e) =>
      el("li", {}, el("strong", {}, e.name), ` at +${((e.time_unix_nano - t0) / 1e6).toFixed(2)} ms`, kvTable("Event attributes", e.attributes)))) : null);
  return details;
}

function renderTrace(view, { arg }) {
  const traceId = arg;
  view.dataset.traceId = traceId;
  view.append(el("h1", {}, "Trace ", el("span", { class: "mono", id: "trace-id" }, traceId)));
  const body = el("div");
  view.append(body);
  return async () => {
    const doc = await api(`/api/traces/${encodeURIComponent(traceId)}`);
    const spans = doc.spans;
    const t0 = Math.min(...spans.map((s) => s.start_time_unix_nano));
    const t1 = Math.max(...spans.map((s) => s.end_time_unix_nano));
    const models = new Map();
    for (const s of spans) {
      const m = s.attributes["model.name"];
      if (typeof m === "string") models.set(`${m}\u0000${s.attributes["model.version"] ?? ""}`, [m, String(s.attributes["model.version"] ?? "")]);
    }
    body.replaceChildren(
      ...(doc.truncated ? [el("p", { class: "capped", role: "note" }, `Showing the first ${spans.length} of the trace's ${doc.span_count} spans `
        + "(the collector's trace_fetch_max_spans): untracked times count only the spans shown.")] : []),
      el("p", {}, `${spans.length} spans, ${((t1 - t0) / 1e6).toFixed(2)} ms`,
        [...models.values()].map(([m, v]) => [" · model ", el("a", { href: modelLink(m, v) }, `${m} ${v}`.trim())])),
      el("div", { class: "waterfall", role: "list", "aria-label": "Spans" },
        spanTree(spans).map(({ span, depth, children }) => {
          const row = spanRow(span, depth, t0, Math.max(t1 - t0, 1));
          row.setAttribute("role", "listitem");
          return children.length ? [row, untrackedRow(span, children, depth + 1, t0, Math.max(t1 - t0, 1))] : row;
        })));
  };
}

// ------------------------------------------------------------------------------------------ Resources
function renderResources(view) {
  view.append(el("h1", {}, "Resources"));
  const body = el("div");
  view.append(body);
  return async () => {
    const doc = await api("/api/v1/console/resources");
    if (!doc.meters.length) {
      body.replaceChildren(el("p", {}, "No host or GPU meter has reported yet (modeltel.init() starts them; GPUs need NVML)."));
      return;
    }
    const source = (labels) => Object.entries(labels).filter(([k]) => k !== "model_name").map(([k, v]) => `${k}=${v}`).join(", ");
    body.replaceChildren(table("Latest values", ["Meter", "Source", "Latest", "Last hour"], doc.meters.map((m) =>
      el("tr", {}, el("th", { scope: "row" }, el("abbr", { title: m.description }, m.name)),
        el("td", { class: "mono" }, source(m.labels)),
        el("td", { class: "num" }, `${num(m.latest)} ${m.unit.replace(/[{}]/g, "")}`),
        el("td", {}, sparkline(m.values, `${m.name} over the last hour`))))));
  };
}

// ------------------------------------------------------------------------------------------ Alerts
const safeUrl = (u) => (typeof u === "string" && /^https?:\/\//.test(u) ? u : null); // no javascript: links

function detectionsPart(detections) {
  if (detections === null) {
    return el("p", {}, "Degradation detectors are off: install them with pip install 'modeltel[analytics]'.");
  }
  if (!detections.length) return el("p", {}, "No degradation detected.");
  return table("Degradation detections (the latest per model and check)",
    ["Model", "Check", "State", "Severity", "Since", "Effect", "p-value"],
    detections.map((d) => el("tr", { "data-check": d.check, "data-state": d.state },
      el("td", {}, el("a", { href: modelLink(d.model, d.version) }, `${d.model} ${d.version}`.trim())),
      el("td", {}, d.check), el("td", {}, d.state), el("td", {}, d.severity),
      el("td", { class: "num" }, clock(d.time)), el("td", { class: "num" }, num(d.effect_size)),
      el("td", { class: "num" }, num(d.p_value)))));
}

function alertmanagerPart(am) {
  if (am === null) {
    return el("p", {}, "Alertmanager: not configured (set the collector's alertmanager_url to list its alerts here).");
  }
  if (am.error) return el("p", { role: "alert" }, `Alertmanager at ${am.url}: ${am.error}`);
  if (!am.alerts.length) return el("p", {}, `Nothing fires in Alertmanager (${am.url}).`);
  return table(`Firing in Alertmanager (${am.url})`, ["Alert", "Severity", "Model", "Summary", "Since", "Runbook"],
    am.alerts.map((a) => {
      const runbook = safeUrl(a.annotations.runbook_url);
      return el("tr", { "data-alertname": a.labels.alertname },
        el("td", {}, a.labels.alertname), el("td", {}, a.labels.severity ?? ""),
        el("td", {}, `${a.labels.model_name ?? ""} ${a.labels.model_version ?? ""}`.trim()),
        el("td", {}, a.annotations.summary ?? ""),
        el("td", { class: "num" }, clock(Date.parse(a.startsAt) / 1000)),
        el("td", {}, runbook ? el("a", { href: runbook, rel: "noopener noreferrer" }, "runbook") : ""));
    }));
}

function renderAlerts(view) {
  view.append(el("h1", {}, "Alerts and detections"));
  const body = el("div");
  view.append(body);
  return async () => {
    const doc = await api("/api/v1/console/alerts");
    body.replaceChildren(el("h2", {}, "Detections"), detectionsPart(doc.detections),
      el("h2", {}, "Alertmanager"), alertmanagerPart(doc.alertmanager));
  };
}

export const PAGES = {
  models: { title: "Models", nav: true, poll: true, render: renderModels },
  model: { title: "Model", poll: true, render: renderModel },
  traces: { title: "Traces", nav: true, render: renderTraces },
  trace: { title: "Trace", render: renderTrace },
  resources: { title: "Resources", nav: true, poll: true, render: renderResources },
  alerts: { title: "Alerts", nav: true, poll: true, render: renderAlerts },
};
