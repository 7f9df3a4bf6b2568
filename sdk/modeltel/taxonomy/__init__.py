"""The one source of truth for modeltel's telemetry contract.

Metric names, units, bucket boundaries, attribute keys, thresholds and SLO targets live here and only
here: the SDK's instruments and the collector's span-derived metrics are built from it, and so are to
be the alert rules and dashboards, so a rename is a one-line change every consumer sees. Use it as one
namespace (``from modeltel import taxonomy as tx``); the modules behind it only keep it readable:

* :mod:`.names`: attribute keys, buckets, the per-request instruments;
* :mod:`.quality`: the seed's metric list, severities, and the SLOs (objectives and their thresholds);
* :mod:`.genai`: generative models' ``gen_ai.*`` metrics (time to first token, time per output token,
  token usage, durations), their attributes and buckets;
* :mod:`.hardware`: GPU and host meter names;
* :mod:`.alerting`: the one table of thresholds that page (what the rules and the panels draw), ``for:``
  durations and the burn-rate window table;
* :mod:`.analytics`: the collector's degradation-detector gauges and check names.
"""

from .alerting import *  # noqa: F403
from .analytics import *  # noqa: F403
from .genai import *  # noqa: F403
from .hardware import *  # noqa: F403
from .names import *  # noqa: F403
from .quality import *  # noqa: F403
