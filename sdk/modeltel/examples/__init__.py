"""What ``modeltel demo`` runs, shipped inside the package so the demo works from any install.

``iris_server``: a FastAPI + scikit-learn model server with its three stages wrapped by modeltel
(``modeltel run -- uvicorn modeltel.examples.iris_server:app``). ``loadgen``: a closed-loop load
generator for it (``python -m modeltel.examples.loadgen --url http://127.0.0.1:8000/predict``). Both
need the ``examples`` extra: ``pip install 'modeltel[examples]'``. ``tinylm``: a tiny causal language
model and tokenizer built in code, saved and loaded with ``from_pretrained`` (the ``transformers`` extra),
for generative tests, examples and benchmarks on machines that cannot download weights. ``openai_server``:
an OpenAI-compatible streaming server on it (``uvicorn modeltel.examples.openai_server:app``; the
``examples`` and ``transformers`` extras), which ``modeltel demo --generative`` serves.
"""
