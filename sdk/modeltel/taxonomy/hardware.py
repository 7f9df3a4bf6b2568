"""GPU and host meter names (:mod:`modeltel.meters`): the OpenTelemetry hardware semantic conventions where
a name exists, ``modeltel.gpu.*`` where none does.
"""

from __future__ import annotations

from .names import ATTR_ERROR_TYPE, Instrument, InstrumentKind

__all__ = [
    "ATTR_GPU_FIELD",
    "ATTR_GPU_INDEX",
    "ATTR_GPU_MIG_INDEX",
    "ATTR_GPU_THROTTLE_REASON",
    "ATTR_HW_DRIVER_VERSION",
    "ATTR_HW_GPU_TASK",
    "ATTR_HW_ID",
    "ATTR_HW_NAME",
    "ATTR_HW_PARENT",
    "ATTR_HW_TYPE",
    "ECC_CORRECTED",
    "ECC_UNCORRECTED",
    "GPU_CLOCK_MEMORY",
    "GPU_CLOCK_SM",
    "GPU_COLLECTION_ERRORS",
    "GPU_ERRORS",
    "GPU_INSTRUMENTS",
    "GPU_MEMORY_CONTROLLER_UTILIZATION",
    "GPU_MEMORY_FREE",
    "GPU_MEMORY_LIMIT",
    "GPU_MEMORY_USAGE",
    "GPU_MEMORY_UTILIZATION",
    "GPU_POWER",
    "GPU_POWER_LIMIT",
    "GPU_PROCESS_MEMORY",
    "GPU_TEMPERATURE",
    "GPU_THROTTLE",
    "GPU_UTILIZATION",
    "HW_TYPE_GPU",
    "METER_NAME_GPU",
    "METER_NAME_HOST",
    "METER_NAME_RESOURCES",
    "RESOURCE_TYPE_CPU",
    "RESOURCE_TYPE_GPU",
    "RESOURCE_TYPE_MEMORY",
]

# --------------------------------------------------------------------------------------------------
# GPU and host meters (modeltel.meters). OpenTelemetry hardware semantic conventions where a name
# exists (hw.gpu.*, hw.power, hw.errors); modeltel.gpu.* for the rest. Prometheus names follow the OTel
# compatibility spec, as otelcol-contrib, Prometheus' OTLP receiver and modeltel's collector apply it: a
# unit-"1" gauge gets "_ratio". modeltel's own Prometheus endpoint adds it too (export/readers.py).
# --------------------------------------------------------------------------------------------------
METER_NAME_GPU = "modeltel.gpu"
METER_NAME_HOST = "modeltel.host"
# model.resource_usage (cpu, memory and gpu points) comes from ONE instrument in this scope: the Python
# Prometheus exporter merges same-named metrics of different scopes under the first one's label keys.
METER_NAME_RESOURCES = "modeltel.meters"

ATTR_HW_ID = "hw.id"  # hw_id: device UUID ("GPU-..." or "MIG-...")
ATTR_HW_NAME = "hw.name"  # hw_name: product name, e.g. "NVIDIA H100 80GB HBM3"
ATTR_HW_TYPE = "hw.type"  # hw_type: always "gpu"
ATTR_HW_DRIVER_VERSION = "hw.driver_version"  # hw_driver_version
ATTR_HW_PARENT = "hw.parent"  # hw_parent: UUID of the physical GPU of a MIG instance
ATTR_HW_GPU_TASK = "hw.gpu.task"  # hw_gpu_task: "general"
ATTR_GPU_INDEX = "modeltel.gpu.index"  # modeltel_gpu_index: NVML index of the (parent) GPU
ATTR_GPU_MIG_INDEX = "modeltel.gpu.mig.index"  # modeltel_gpu_mig_index: MIG instance index (MIG only)
ATTR_GPU_THROTTLE_REASON = "modeltel.gpu.throttle.reason"  # modeltel_gpu_throttle_reason
ATTR_GPU_FIELD = "field"  # field: which reading failed (collection errors)
HW_TYPE_GPU = "gpu"
RESOURCE_TYPE_CPU = "cpu"
RESOURCE_TYPE_MEMORY = "memory"
RESOURCE_TYPE_GPU = "gpu"
ECC_CORRECTED = "corrected"
ECC_UNCORRECTED = "uncorrected"

_GPU_DEVICE = (ATTR_HW_ID, ATTR_HW_NAME, ATTR_HW_TYPE, ATTR_HW_DRIVER_VERSION, ATTR_GPU_INDEX)


def _gpu(otel_name: str, prometheus_name: str, kind: InstrumentKind, unit: str, description: str, *extra: str):
    return Instrument(otel_name, prometheus_name, kind, unit, description, (*_GPU_DEVICE, *extra))


GPU_UTILIZATION = _gpu(
    "hw.gpu.utilization", "hw_gpu_utilization_ratio", InstrumentKind.GAUGE, "1",
    "Fraction of time the GPU was busy running kernels (0..1).", ATTR_HW_GPU_TASK,
)  # fmt: skip
GPU_MEMORY_USAGE = _gpu(
    "hw.gpu.memory.usage", "hw_gpu_memory_usage_bytes", InstrumentKind.GAUGE, "By", "GPU memory used."
)
GPU_MEMORY_LIMIT = _gpu(
    "hw.gpu.memory.limit", "hw_gpu_memory_limit_bytes", InstrumentKind.GAUGE, "By", "Size of the GPU memory."
)
GPU_MEMORY_UTILIZATION = _gpu(
    "hw.gpu.memory.utilization", "hw_gpu_memory_utilization_ratio", InstrumentKind.GAUGE, "1",
    "Fraction of GPU memory used (usage / limit, 0..1).",
)  # fmt: skip
GPU_MEMORY_FREE = _gpu(
    "modeltel.gpu.memory.free", "modeltel_gpu_memory_free_bytes", InstrumentKind.GAUGE, "By", "GPU memory free."
)
GPU_MEMORY_CONTROLLER_UTILIZATION = _gpu(
    "modeltel.gpu.memory_controller.utilization", "modeltel_gpu_memory_controller_utilization_ratio",
    InstrumentKind.GAUGE, "1", "Fraction of time GPU memory was being read or written (bandwidth busy, 0..1).",
)  # fmt: skip
GPU_TEMPERATURE = _gpu(
    "modeltel.gpu.temperature", "modeltel_gpu_temperature_celsius", InstrumentKind.GAUGE, "Cel",
    "GPU die temperature.",
)  # fmt: skip
GPU_POWER = _gpu("hw.power", "hw_power_watts", InstrumentKind.GAUGE, "W", "GPU instantaneous power draw.")
GPU_POWER_LIMIT = _gpu(
    "modeltel.gpu.power.limit", "modeltel_gpu_power_limit_watts", InstrumentKind.GAUGE, "W",
    "Power limit the GPU enforces.",
)  # fmt: skip
GPU_CLOCK_SM = _gpu(
    "modeltel.gpu.clock.sm", "modeltel_gpu_clock_sm_hertz", InstrumentKind.GAUGE, "Hz", "Current SM clock."
)
GPU_CLOCK_MEMORY = _gpu(
    "modeltel.gpu.clock.memory", "modeltel_gpu_clock_memory_hertz", InstrumentKind.GAUGE, "Hz",
    "Current memory clock.",
)  # fmt: skip
GPU_THROTTLE = _gpu(
    "modeltel.gpu.throttle", "modeltel_gpu_throttle", InstrumentKind.GAUGE, "{state}",
    "1 while the clocks are held down for this reason, else 0.", ATTR_GPU_THROTTLE_REASON,
)  # fmt: skip
GPU_ERRORS = _gpu(
    "hw.errors", "hw_errors", InstrumentKind.COUNTER, "{error}",
    "ECC memory errors since the driver loaded (volatile), by error.type corrected | uncorrected.", ATTR_ERROR_TYPE,
)  # fmt: skip
GPU_PROCESS_MEMORY = _gpu(
    "modeltel.gpu.process.memory.usage", "modeltel_gpu_process_memory_usage_bytes", InstrumentKind.GAUGE, "By",
    "GPU memory used by this process and its descendant (worker) processes.",
)  # fmt: skip
GPU_COLLECTION_ERRORS = Instrument(
    otel_name="modeltel.gpu.collection.errors",
    prometheus_name="modeltel_gpu_collection_errors",
    kind=InstrumentKind.COUNTER,
    unit="{error}",
    description="GPU readings that failed, by device, field and NVML error.",
    attributes=(ATTR_HW_ID, ATTR_GPU_FIELD, ATTR_ERROR_TYPE),
)

GPU_INSTRUMENTS: tuple[Instrument, ...] = (
    GPU_UTILIZATION,
    GPU_MEMORY_USAGE,
    GPU_MEMORY_LIMIT,
    GPU_MEMORY_UTILIZATION,
    GPU_MEMORY_FREE,
    GPU_MEMORY_CONTROLLER_UTILIZATION,
    GPU_TEMPERATURE,
    GPU_POWER,
    GPU_POWER_LIMIT,
    GPU_CLOCK_SM,
    GPU_CLOCK_MEMORY,
    GPU_THROTTLE,
    GPU_ERRORS,
    GPU_PROCESS_MEMORY,
    GPU_COLLECTION_ERRORS,
)
