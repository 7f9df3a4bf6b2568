// Small SVG charts for the modeltel console: time-series lines with clickable exemplar points, bars
// for a distribution, and sparklines. No dependency; every label is set as text, never parsed as markup.

const NS = "http://www.w3.org/2000/svg";
const W = 640, H = 200, M = { top: 10, right: 12, bottom: 26, left: 64 };

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

export function clock(t) {
  const d = new Date(t * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

const missing = (v) => v === null || v === undefined;

// Path data for values over x positions; a null value breaks the line, and a point with no neighbour
// becomes a dot (a zero-length segment drawn with round caps).
function pathData(xs, values, y) {
  let d = "";
  values.forEach((v, i) => {
    if (missing(v)) return;
    const start = i === 0 || missing(values[i - 1]);
    d += `${start ? "M" : "L"}${xs[i].toFixed(1)},${y(v).toFixed(1)}`;
    if (start && (i === values.length - 1 || missing(values[i + 1]))) d += "h0.01";
  });
  return d;
}

// Five grid lines from 0 to ymax, labelled on the left.
function yAxis(ymax, y, format) {
  const axis = svgEl("g", { class: "axis" });
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    axis.append(svgEl("line", { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: "grid" }));
    axis.append(svgEl("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  return axis;
}

// The time span a chart draws: from the first to the last time any series has a value, not the
// whole history (a ring that has sampled for an hour holds a minute of traffic as 1/60 of its width).
// A single point gets a step either side, so it sits in the middle.
function dataSpan(times, series) {
  const present = times.filter((_, i) => series.some((s) => !missing(s.values[i])));
  const used = present.length ? present : times;
  if (!used.length) return [0, 1];
  const t0 = used[0], t1 = used[used.length - 1];
  if (t1 > t0) return [t0, t1];
  const step = times.length > 1 ? times[1] - times[0] : 1;
  return [t0 - step, t1 + step];
}

// How far exemplars may reach above the highest line and still set the scale: further up, one slow
// request would flatten every quantile line against the axis, so it is drawn as an outlier instead.
const OUTLIER_FACTOR = 2;

// The y scale's top: the lines' maximum, raised to exemplars within OUTLIER_FACTOR of it (all of them
// when there is no line to protect), with a tenth of headroom so the top line and an outlier's label
// do not share the edge.
function scaleMax(series, exemplars) {
  const lineMax = Math.max(0, ...series.flatMap((s) => s.values).filter((v) => !missing(v)));
  const values = exemplars.map((e) => e.value);
  const near = lineMax > 0 ? values.filter((v) => v <= lineMax * OUTLIER_FACTOR) : values;
  return niceMax(1.1 * Math.max(lineMax, ...near));
}

// A line chart. series: [{name, values}] aligned with times (unix seconds); format(v) labels the y
// axis; exemplars: [{t, value, href, label}] drawn as points that link to their trace, their time
// clamped into the span drawn (an exemplar carries its request's end, up to a step before the sample
// that holds it). An exemplar above the scale is drawn on the top edge as an outlier (class "outlier"), its value in its title.
// The svg carries data-ymax and data-t0/data-t1: the scale and the time span drawn.
export function lineChart({ title, times, series, format = String, exemplars = [] }) {
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart" });
  svg.append(svgEl("title", {}, title));
  const [t0, t1] = dataSpan(times, series);
  const ymax = scaleMax(series, exemplars);
  Object.assign(svg.dataset, { ymax, t0, t1 });
  const x = (t) => M.left + ((t - t0) / (t1 - t0)) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - (Math.min(v, ymax) / ymax) * (H - M.top - M.bottom);
  const axis = yAxis(ymax, y, format);
  if (times.length) {
    for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
      axis.append(svgEl("text", { x: x(t), y: H - 6, "text-anchor": anchor }, clock(t)));
    }
  }
  svg.append(axis);
  const xs = times.map(x);
  series.forEach((s, i) => {
    svg.append(svgEl("path", { d: pathData(xs, s.values, y), class: `line s${i}`, "data-series": s.name }));
  });
  const points = svgEl("g", { class: "exemplars" });
  for (const e of exemplars) {
    const outlier = e.value > ymax;
    const label = outlier ? `outlier above the ${format(ymax)} scale: ${e.label}` : e.label;
    const link = svgEl("a", { href: e.href, class: outlier ? "exemplar outlier" : "exemplar", "aria-label": label,
      "data-trace-id": e.traceId, "data-value": e.value });
    link.append(svgEl("title", {}, label));
    const cx = x(Math.min(Math.max(e.t, t0), t1)), cy = y(e.value);
    if (outlier) {
      link.append(svgEl("path", { d: `M${(cx - 6).toFixed(1)},${(cy + 2).toFixed(1)}l6,-11l6,11z`, class: "arrow" }));
      const right = cx > W - M.right - 80;  // near the right edge the value goes on the left
      link.append(svgEl("text", { x: (right ? cx - 9 : cx + 9).toFixed(1), y: (cy + 4).toFixed(1), class: "outlier-value",
        "text-anchor": right ? "end" : "start" }, `↑ ${format(e.value)}`));
    }
    link.append(svgEl("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: 5 }));
    points.append(link);
  }
  svg.append(points);
  return svg;
}

// A bar per bucket: [{label, value}].
export function barChart({ title, bars, format = String }) {
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart" });
  svg.append(svgEl("title", {}, title));
  const ymax = niceMax(Math.max(0, ...bars.map((b) => b.value || 0)));
  const bw = (W - M.left - M.right) / Math.max(bars.length, 1);
  const y = (v) => H - M.bottom - (v / ymax) * (H - M.top - M.bottom);
  svg.append(yAxis(ymax, y, format));
  bars.forEach((b, i) => {
    const v = b.value || 0;
    const rect = svgEl("rect", { x: M.left + i * bw + 1, y: y(v), width: Math.max(bw - 2, 1), height: y(0) - y(v), class: "bar" });
    rect.append(svgEl("title", {}, `${b.label}: ${format(v)}`));
    svg.append(rect);
    svg.append(svgEl("text", { x: M.left + (i + 0.5) * bw, y: H - 6, "text-anchor": "middle", class: "axis" }, b.label));
  });
  return svg;
}

// A tiny line without axes, for table rows.
export function sparkline(values, label) {
  const w = 120, h = 28;
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, class: "spark", role: "img", "aria-label": label });
  const max = Math.max(0, ...values.filter((v) => v !== null)) || 1;
  const xs = values.map((_, i) => (values.length > 1 ? (i / (values.length - 1)) * (w - 2) + 1 : w / 2));
  svg.append(svgEl("path", { d: pathData(xs, values, (v) => h - 2 - (v / max) * (h - 4)), class: "line s0" }));
  return svg;
}
