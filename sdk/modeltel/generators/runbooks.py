"""One runbook per alert (``alerts/runbooks/<Alert>.md``): what it means, first checks, how to mitigate.

The facts a responder needs first (severity, threshold, ``for:``, the exact expression) are taken from
the generated rules, so a runbook never disagrees with the rule that links to it; the advice is here.
"""

from __future__ import annotations

from .. import taxonomy as tx

__all__ = ["ADVICE", "DETECTOR_ADVICE", "detector_runbook", "runbook"]

_LATENCY = (
    "The 95th percentile of end-to-end prediction latency of one model version is above the threshold.",
    [
        "Open the dashboard link: is it one stage (preprocess / inference / postprocess) or all of them?",
        "Compare with throughput: did traffic or batch size (`model_batch_size`) grow?",
        "Open an exemplar trace of a slow bucket from the latency panel and read its span tree.",
        "Check CPU / GPU utilisation and throttling (`modeltel_gpu_throttle`) on the serving instances.",
    ],
    [
        "Roll back a model version or config deployed just before the rise.",
        "Scale out replicas or reduce batch size / concurrency per replica.",
    ],
)
_ERRORS = (
    'The share of this model version\'s predictions that fail (status="error" over all statuses) is above'
    " the threshold.",
    [
        '`sum by (error_type) (rate(model_errors_total{model_name="..."}[5m]))`: which exception?',
        "Did input validation start rejecting requests (a client or schema change)?",
        "Find an error trace in the trace API (`/api/traces?status=error`).",
    ],
    ["Roll back the last deploy of the model or of its clients.", "Fail over to the previous model version."],
)
_STAGE = (
    "The p95 latency of one serving stage (label `stage`) is above the taxonomy's threshold for that stage.",
    [
        "preprocess: input sizes, feature-store lookups; inference: model, device, batch size; "
        "postprocess: serialisation.",
        "Compare the stage's share of end-to-end latency before and after the rise.",
    ],
    ["Roll back the change to that stage; scale the resource it waits on."],
)
_TTFT = (
    "The 95th percentile of time to first token (TTFT) of one generative model version is above the threshold:"
    " users of a streamed answer wait that long before anything appears.",
    [
        "Open the dashboard link (Generative row): did input tokens per request grow (long prompts prefill longer)?",
        "Is the server queueing? Compare the request rate"
        " (`rate(gen_ai_server_time_to_first_token_seconds_count[5m])`) with the day before.",
        "Open an exemplar trace of a slow TTFT bucket: is the time in the queue, in prefill, or before the model?",
        "Check GPU memory (KV cache full means requests wait) and GPU utilisation on the serving instances.",
    ],
    [
        "Scale out replicas; cap concurrent sequences or maximum prompt length per replica.",
        "Roll back a model version, quantisation or serving config deployed just before the rise.",
    ],
)
_TPOT = (
    "The 95th percentile of time per output token (TPOT, the gap between streamed tokens) of one generative"
    " model version is above the threshold: the stream falls behind reading speed.",
    [
        "Open the dashboard link (Generative row): did output tokens per second fall while requests grew"
        " (larger decode batches are slower per token)?",
        "Check GPU utilisation, clocks and throttling (`modeltel_gpu_throttle`) and GPU memory.",
        "Did the model, its precision or its maximum batch size change?",
    ],
    ["Scale out replicas or lower the maximum decode batch per replica.", "Roll back the last model or config."],
)
_GPU_TEMP = (
    "A GPU runs hot; above about 90 °C the driver throttles clocks and latency rises.",
    ['Check fans, airflow and `modeltel_gpu_throttle{modeltel_gpu_throttle_reason=~"hw.*"}`.'],
    ["Move load off the host; have the hardware checked."],
)

ADVICE: dict[str, tuple[str, list[str], list[str]]] = {
    "HighPredictionLatency": _LATENCY,
    "CriticalPredictionLatency": _LATENCY,
    "HighTimeToFirstToken": _TTFT,
    "CriticalTimeToFirstToken": _TTFT,
    "HighTimePerOutputToken": _TPOT,
    "CriticalTimePerOutputToken": _TPOT,
    "HighStageLatency": _STAGE,
    "CriticalStageLatency": _STAGE,
    "LowThroughput": (
        "A model version that is serving traffic serves fewer predictions per second than expected. An idle "
        "model (no traffic at all) does not fire this alert.",
        ["Did upstream traffic drop (load balancer, clients), or did replicas go away?", "Are requests queueing?"],
        ["Restore replicas or routing; if the drop is expected, lower the threshold in modeltel.taxonomy."],
    ),
    "HighErrorRate": _ERRORS,
    "CriticalErrorRate": _ERRORS,
    "AccuracyDegradation": (
        "Online accuracy, measured against delayed ground truth, is below the threshold.",
        [
            "Is ground truth arriving (a broken label pipeline looks like an accuracy drop)?",
            "Did the input distribution drift? Compare recent inputs with the training data.",
        ],
        ["Roll back to the previous model version; schedule retraining on recent data."],
    ),
    "LowPredictionConfidence": (
        "The mean top-class confidence of predictions is low: the model is unsure about recent inputs, "
        "often the first sign of input drift.",
        ["Compare the confidence histogram with last week's.", "Look for new input sources or a schema change."],
        ["Route low-confidence predictions to a fallback or human review; retrain."],
    ),
    "HighCPUUsage": (
        "A serving process uses more CPU than the threshold for a long time.",
        ["Is throughput up? Is a stage CPU-bound (preprocessing)?"],
        ["Scale out; move preprocessing off the request path."],
    ),
    "HighMemoryUsage": (
        "A serving process is close to its memory limit: next comes the OOM killer.",
        ["Is memory growing steadily (a leak) or with load?", "Check batch sizes and caches."],
        ["Restart the instance in a rolling way; lower batch size; raise the limit."],
    ),
    "ModelServerDown": (
        "cause=silent: an instance that used to push telemetry has sent nothing for longer than the "
        "collector's staleness time (`staleness_s`, 300 s by default) plus `for:`. cause=target_down: "
        "Prometheus cannot scrape a modeltel collector (or a directly scraped server), so nothing behind it is "
        "observed; it inhibits the silent-server alerts. A deliberate scale-down also looks silent for the "
        "lookback window.",
        [
            "Is the process running (`kubectl get pods`, systemd)? Did it crash or get OOM-killed?",
            "Can it reach the collector (OTLP endpoint, auth token, TLS)? Check the collector's "
            "`modeltel_collector_refused_requests_total`.",
            "For target_down: is the collector up, and is its /metrics reachable from Prometheus?",
        ],
        ["Restart the instance or the collector; fix the network path.", "If it was removed on purpose, silence it."],
    ),
    "GPUMemoryNearlyFull": (
        "GPU memory is almost fully used; the next allocation may fail with out-of-memory.",
        ["Which processes hold it (`modeltel_gpu_process_memory_usage_bytes`)?", "Did batch size or model grow?"],
        ["Lower batch size; move a model to another GPU; restart a leaking worker."],
    ),
    "GPUHighTemperature": _GPU_TEMP,
    "GPUCriticalTemperature": _GPU_TEMP,
    "GPUUncorrectableECCErrors": (
        "The GPU reported uncorrectable ECC memory errors: results computed on it may be wrong.",
        ["Check `nvidia-smi -q -d ECC` and the kernel log (Xid errors)."],
        ["Drain the GPU now; reset it or have it replaced."],
    ),
    "GPUMissing": (
        "A GPU that was reported in the last hour is gone while its server still reports: it fell off the "
        "bus, was reset, or the driver lost it.",
        ["`nvidia-smi`; kernel log for Xid 79 (fallen off the bus).", "Was the node changed on purpose?"],
        ["Drain the node and reset the GPU; replace it if it repeats."],
    ),
    "CollectorRefusingData": (
        "The modeltel collector refuses OTLP requests (label `reason`: overloaded, invalid, too_large, "
        "unauthorized); the senders lose that telemetry.",
        ["overloaded: is the ingest queue full? unauthorized: did a token rotate? invalid: which sender?"],
        ["Scale the collector pool; raise `max_queue_bytes`; fix the sender's configuration."],
    ),
    "CollectorDroppingData": (
        "The collector dropped data it had accepted (label `what`): a processing error, invalid ids, the "
        "series cap, or a full forwarding queue.",
        ["Read the collector's log; check `max_series` and the forwarding endpoint's health."],
        ["Raise the cap or fix the downstream; look for a label with unbounded values."],
    ),
    "ErrorBudgetBurn": (
        "An SLO (label `slo`) is spending its error budget faster than its period allows, over both a long "
        "and a short window (labels `long_window`, `short_window`). Critical (page): at this rate the budget "
        "is gone in days; warning (ticket): in weeks. The short window makes the alert resolve soon after "
        "the burn stops.",
        [
            "Run `modeltel slo report --prometheus <url>` for the budget left and the burn per window.",
            "Find the alert that explains it: latency, error rate, accuracy for that model.",
        ],
        ["Mitigate the cause; freeze risky deploys of that model until the budget recovers."],
    ),
}


def runbook(alert: str, rules: list[dict]) -> str:
    """The runbook of ``alert``; ``rules`` are its generated rule dicts."""
    meaning, checks, mitigations = ADVICE[alert]
    lines = [f"# {alert}", "", meaning, "", "## Rule", ""]
    for d in rules:
        extra = ", ".join(f"{k}={v}" for k, v in d["labels"].items() if k != "severity")
        lines += [f"- severity **{d['labels']['severity']}**, for: {d.get('for', '0s')} ({extra})"]
        lines += ["", "  ```promql", *("  " + x for x in d["expr"].splitlines()), "  ```", ""]
    lines += ["## First checks", "", *(f"1. {c}" for c in checks), "", "## Mitigation", ""]
    lines += [*(f"- {m}" for m in mitigations), ""]
    return "\n".join(lines)


# The collector's degradation detectors (docs/analytics.md) post one alert, labelled by ``check``; its
# runbook_url points at the check's section below (``#<check>``).
DETECTOR_ADVICE: dict[str, tuple[str, list[str], list[str]]] = {
    "latency_shift": (
        "The p95 latency of the last window is significantly above the learned (or fixed) baseline's; the"
        " effect size is the relative rise of p95.",
        ["Open the dashboard link: which stage grew?", "Did a deploy, batch size or traffic change just before?"],
        ["Roll back the change; scale out replicas."],
    ),
    "error_rate_rise": (
        "The share of failed predictions is significantly above the baseline's; the effect size is the"
        " absolute rise of the error ratio.",
        ["`model_errors_total` by `error_type`: which exception?", "Find an error trace (`/api/traces?status=error`)."],
        ["Roll back the last deploy of the model or of its clients."],
    ),
    "throughput_drop": (
        "The request rate is significantly below the baseline's; the effect size is the relative fall.",
        ["Did upstream traffic drop, or did replicas go away?", "Are requests queueing or timing out?"],
        ["Restore replicas or routing; a planned drop (a canary shift) can be silenced."],
    ),
    "accuracy_drop": (
        "Online accuracy from delayed labels fell below the baseline (CUSUM on labelled predictions); the"
        " effect size is the fall in accuracy.",
        ["Are labels arriving as usual (a broken label pipeline looks like a drop)?", "Did the inputs drift?"],
        ["Roll back to the previous model version; retrain on recent data."],
    ),
    "confidence_drift": (
        "The distribution of prediction confidence moved away from the baseline's; the effect size is the"
        " PSI (0.1: worth a look, 0.25: a real shift).",
        ["Compare the confidence histogram with the baseline's.", "Look for new input sources or a schema change."],
        ["Route low-confidence predictions to a fallback; retrain if the inputs changed for good."],
    ),
    "estimated_accuracy_drop": (
        "Accuracy estimated from confidence (calibrated on the baseline's labelled predictions) fell below the"
        " baseline's estimate, before any label arrived; the effect size is the estimated fall. It holds when"
        " the inputs moved (covariate shift); when what is right changed (concept shift) only labels tell.",
        ["Did `confidence_drift` fire too: which confidence buckets grew?", "Which inputs or sources are new?"],
        ["Route low-confidence predictions to review or a fallback; confirm with labels as they arrive."],
    ),
    "ttft_shift": (
        "A generative model's time to first token in the last window is significantly above the baseline's.",
        ["Did prompts get longer (input tokens per request)?", "Is the server queueing, or its KV cache full?"],
        ["Scale out replicas; roll back the change deployed before the shift."],
    ),
    "tpot_shift": (
        "A generative model's time per output token in the last window is significantly above the baseline's.",
        ["Did concurrency (decode batch size) grow?", "Check GPU clocks, throttling and memory."],
        ["Scale out replicas or lower the decode batch; roll back the last model or config change."],
    ),
    "output_length_drift": (
        "The distribution of output tokens per response moved away from the baseline's: the model answers"
        " much longer or shorter than it did (a prompt template, sampling setting or model change).",
        [
            "Compare the output-token histogram with the baseline's; read `gen_ai.response.finish_reasons` on"
            " recent traces (`length` means answers are cut at the maximum).",
            "Did the system prompt, max_tokens or stop sequences change?",
        ],
        ["Roll back the prompt or sampling change; retest the model on its evaluation set."],
    ),
}


def detector_runbook() -> str:
    """The runbook of the collector detectors' ``ModelDegradationDetected``: one section per check."""
    lines = [
        f"# {tx.DEGRADATION_ALERT}",
        "",
        "Posted to Alertmanager by the modeltel collector's degradation detectors (docs/analytics.md), not by a"
        " Prometheus rule. Labels: `check` (the section below), `severity`, `model_name`, `model_version`."
        " The description holds the test's effect size and p-value; `model_degradation_*` on the collector's"
        " /metrics has the latest values.",
        "",
    ]
    for check in tx.DEGRADATION_CHECKS:
        meaning, checks, mitigations = DETECTOR_ADVICE[check]
        lines += [f"## {check}", "", meaning, "", "First checks:", "", *(f"1. {c}" for c in checks), ""]
        lines += ["Mitigation:", "", *(f"- {m}" for m in mitigations), ""]
    return "\n".join(lines)
