'use strict';
// A Node.js service sending what modeltel's Python SDK sends, so `modeltel collector`, its console, the
// generated alert rules and dashboards treat it like any other model server (docs/other-languages.md).
//
//   npm ci && OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 node predict.js --count 400
//
// It serves no HTTP: it records `--count` predictions of a stand-in model with known latencies (each a
// span tree and the model_* series), exports them over OTLP/HTTP (protobuf) and prints, as JSON, the exact
// quantiles of what it recorded, for comparison with what the collector computes from the histograms.
// `--default-buckets` leaves out the Views below: the JS SDK's default boundaries [0, 5, 10, 25, ...] are
// meant for milliseconds, and a latency in seconds then lands in the first bucket.

const { SpanKind, SpanStatusCode, context, metrics, trace } = require('@opentelemetry/api');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-proto');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { AggregationType, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { NodeSDK } = require('@opentelemetry/sdk-node');

// From modeltel.taxonomy (tests/test_other_languages.py fails if they drift apart).
const LATENCY_BUCKETS_SECONDS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
  0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];
const CONFIDENCE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99];
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
const HISTOGRAMS = {
  'model.prediction.latency': LATENCY_BUCKETS_SECONDS,
  'model.stage.latency': LATENCY_BUCKETS_SECONDS,
  'model.prediction.confidence': CONFIDENCE_BUCKETS,
  'model.batch.size': BATCH_SIZE_BUCKETS,
};
const STAGES = [['preprocess', 0.1], ['inference', 0.8], ['postprocess', 0.1]]; // share of each prediction

const MODEL = { 'model.name': process.env.MODEL_NAME || 'iris-node', 'model.version': process.env.MODEL_VERSION || '1' };

function views() {
  return Object.entries(HISTOGRAMS).map(([instrumentName, boundaries]) => ({
    instrumentName,
    aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries } },
  }));
}

function quantile(sorted, q) {
  // nearest rank: the value a perfect histogram would report
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function instruments() {
  const meter = metrics.getMeter('modeltel-node-example', '1.0.0');
  return {
    latency: meter.createHistogram('model.prediction.latency', { unit: 's', description: 'End-to-end time to serve one prediction request.' }),
    stage: meter.createHistogram('model.stage.latency', { unit: 's', description: 'Time spent in one serving stage.' }),
    predictions: meter.createCounter('model.predictions', { unit: '{prediction}', description: 'Prediction requests served, by outcome.' }),
    errors: meter.createCounter('model.errors', { unit: '{error}', description: 'Errors raised while serving, by exception type.' }),
    confidence: meter.createHistogram('model.prediction.confidence', { unit: '{score}', description: 'Confidence of each prediction.' }),
    batch: meter.createHistogram('model.batch.size', { unit: '{item}', description: 'Items per inference batch.' }),
  };
}

// One prediction that took `seconds`, ending at `endMs`: its span tree and its series.
function predict(tracer, m, seconds, endMs, failed, confidence) {
  const startMs = endMs - seconds * 1000;
  const root = tracer.startSpan('predict', {
    kind: SpanKind.SERVER, startTime: startMs, attributes: { 'modeltel.kind': 'prediction', ...MODEL },
  });
  const ctx = trace.setSpan(context.active(), root);
  let at = startMs;
  for (const [stage, share] of STAGES) {
    const span = tracer.startSpan(stage, {
      startTime: at, attributes: { 'modeltel.kind': 'stage', 'modeltel.stage': stage, ...MODEL },
    }, ctx);
    at += seconds * share * 1000;
    span.end(at);
    m.stage.record(seconds * share, { ...MODEL, 'stage': stage });
  }
  if (failed) {
    root.setStatus({ code: SpanStatusCode.ERROR, message: 'invalid input' });
    m.errors.add(1, { ...MODEL, 'error.type': 'ValueError' });
  } else {
    m.confidence.record(confidence, MODEL);
  }
  m.batch.record(1, MODEL);
  m.predictions.add(1, { ...MODEL, 'status': failed ? 'error' : 'success' });
  m.latency.record(seconds, MODEL);
  root.end(endMs);
}

async function main() {
  const args = process.argv.slice(2);
  const count = Number(args[args.indexOf('--count') + 1]) || 400;
  const defaultBuckets = args.includes('--default-buckets');
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME || 'iris-node', ...MODEL }),
    traceExporter: new OTLPTraceExporter(), // OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces
    metricReaders: [new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter(), exportIntervalMillis: 1000 })],
    views: defaultBuckets ? [] : views(),
    instrumentations: [],
  });
  sdk.start();
  const tracer = trace.getTracer('modeltel-node-example', '1.0.0');
  const m = instruments();
  const latencies = [];
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    const seconds = 0.005 + 0.02 * (i / count); // 5 to 25 ms, evenly spread
    latencies.push(seconds);
    predict(tracer, m, seconds, now - (count - i) * 30, i % 50 === 49, 0.6 + 0.39 * ((i * 7) % count) / count);
  }
  await sdk.shutdown(); // flushes the spans and a last metric export
  latencies.sort((a, b) => a - b);
  const recorded = Object.fromEntries([0.5, 0.95, 0.99].map((q) => [`p${Math.round(q * 100)}`, quantile(latencies, q)]));
  console.log(JSON.stringify({ count, errors: Math.floor(count / 50), model: MODEL, recorded }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
