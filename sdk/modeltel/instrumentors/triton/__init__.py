"""NVIDIA Triton: client spans for ``tritonclient`` inference calls, and the Python backend's ``execute``.

**Client** (``TritonInstrumentor``): ``infer`` and ``async_infer`` of the HTTP and gRPC
``InferenceServerClient`` (``tritonclient.http`` / ``tritonclient.grpc``) and ``infer`` of their asyncio
clients (``tritonclient.http.aio`` / ``tritonclient.grpc.aio``). Each call gets

* a CLIENT-kind span ``triton.infer <model>`` from the ``modeltel.triton`` tracer, with ``model.name`` /
  ``model.version`` from the call's ``model_name`` / ``model_version`` arguments and the batch size (first
  input's ``shape()[0]``) as ``modeltel.batch.size``; an error sets its status and is recorded on it;
* that span current while the call runs, and its W3C trace context injected into the request ``headers``
  (a copy of the caller's dict, or a new one), so a traced Triton server continues the trace (HTTP
  headers; gRPC metadata);
* when no modeltel stage is active, the ``inference`` stage of that model around it (stage latency,
  batch size histogram; errors by type when a prediction is around it, see docs/metrics.md); inside an
  active stage, only the client span, as its child, so the request is counted once.

``async_infer`` (HTTP: a gevent greenlet; gRPC: a callback) is timed until the response arrives: the
stage and span are entered in a copy of the caller's context and closed from the completion callback,
so the caller's context never sees them. Exceptions go through unchanged.

What is wrapped is one table (module -> class -> {method: make}) walked by the shared mechanism
(:func:`~.patching.patch_hierarchy` when the module is imported, not when the instrumentor loads), so
client subclasses are wrapped too; ``infer`` goes through :func:`modeltel.hotpath.wrap` like every
instrumentor's calls, and the re-entrancy rule of :mod:`..base` makes an override calling ``super()`` one call.

**Python backend**: Triton loads ``model.py`` by path inside its stub process, so no import hook can
find the ``TritonPythonModel`` class; one line does it: decorate the class with
:func:`instrument_python_model`. ``execute(requests)`` becomes a prediction (batch size =
``len(requests)``), named by the ``model_name`` / ``model_version`` Triton passes to ``initialize``.
"""

from .backend import instrument_python_model
from .client import TritonInstrumentor

__all__ = ["TritonInstrumentor", "instrument_python_model"]
