"""The README, followed word for word: its shell blocks run in a fresh virtualenv that installs modeltel
from a wheel of this checkout, and every block says whether and where it is tested.

The only liberties taken: ``pip`` finds ``modeltel`` in a folder holding that wheel (and is held to
its version), the README's ports (4317, 4318, 9464, 8000) become free ones, and after a
line that starts a server in the background the harness waits for its ports, as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from modeltel import config
from modeltel.cli.alertstack import missing_binaries

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- (?P<marker>[^>]*) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)
PORTS = ("4317", "4318", "9464", "8000")


def blocks(lang: str) -> list[tuple[str, str]]:
    return [(m["marker"] or "", m["code"]) for m in BLOCK.finditer(README) if m["lang"] == lang]


def _tested(lang: str, what: str) -> str:
    (code,) = [code for marker, code in blocks(lang) if marker.startswith("tested") and what in marker]
    return code


def test_every_shell_block_says_whether_it_is_tested() -> None:
    for marker, code in blocks("sh"):
        assert marker.startswith(("tested:", "not run here:")), code


def test_the_configuration_table_lists_every_variable_modeltel_reads() -> None:
    read = set(re.findall(r'"(MODELTEL_[A-Z_]+)"', Path(config.__file__).read_text()))
    documented = set(re.findall(r"^\| `(MODELTEL_[A-Z_]+)`", README, re.M))
    assert read == documented


def test_the_kubernetes_snippet_sets_only_variables_modeltel_reads() -> None:
    spec = yaml.safe_load(_tested("yaml", "parses"))
    assert spec["kind"] == "InferenceService"
    (container,) = spec["spec"]["predictor"]["containers"]
    assert container["command"][:3] == ["modeltel", "run", "--"]
    known = set(re.findall(r'"((?:MODELTEL|OTEL)_[A-Z_]+)"', Path(config.__file__).read_text()))
    known |= {"OTEL_EXPORTER_OTLP_ENDPOINT"}  # read by the exporters themselves
    assert {e["name"] for e in container["env"]} <= known


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A directory with the quick start's app.py, a wheel of this checkout, and the environment a new user
    has: no modeltel on PATH, no OTEL_/MODELTEL_ variables."""
    tmp = tmp_path_factory.mktemp("quickstart")
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("modeltel-*.whl")
    version = wheel.name.split("-")[1]
    (tmp / "constraints.txt").write_text(f"modeltel=={version}\n")
    (tmp / "app.py").write_text(_tested("python", "app.py"))
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_", "VIRTUAL_ENV"))}
    env.update(PATH=path, PIP_CONSTRAINT=str(tmp / "constraints.txt"), PIP_FIND_LINKS=str(wheels))
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run(["python3", "-m", "venv", "venv"], cwd=tmp, env=env, check=True)
    return {"dir": tmp, "env": env, "ports": {p: _free_port() for p in PORTS}}


def _sh(workdir: dict, script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-ec", script], cwd=workdir["dir"], env=workdir["env"], capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_a_framework_without_its_extra_says_what_to_install(workdir: dict) -> None:
    """Before following the README: FastAPI installed, modeltel without its ``fastapi`` extra."""
    proc = _sh(workdir, "venv/bin/pip install -q modeltel fastapi uvicorn scikit-learn")
    assert proc.returncode == 0, proc.stderr
    quiet = "OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none"
    proc = _sh(workdir, f'{quiet} venv/bin/modeltel run -- venv/bin/python -c "import fastapi"')
    lines = [line for line in proc.stderr.splitlines() if line.startswith("modeltel:")]
    assert len(lines) == 1 and "pip install 'modeltel[fastapi]'" in lines[0], proc.stderr
    proc = _sh(workdir, "venv/bin/opentelemetry-bootstrap -a requirements")
    assert "opentelemetry-instrumentation-fastapi" in proc.stdout


def _with_ports(workdir: dict, code: str) -> str:
    for readme_port, port in workdir["ports"].items():
        code = code.replace(f":{readme_port}", f":{port}").replace(f"--port {readme_port}", f"--port {port}")
    if "modeltel collector" in code:  # the README relies on the collector's default addresses
        p = workdir["ports"]
        code = code.replace(
            "modeltel collector &",
            f"modeltel collector --otlp-http 127.0.0.1:{p['4318']} --otlp-grpc 127.0.0.1:{p['4317']} "
            f"--listen 127.0.0.1:{p['9464']} &",
        )
    return code


def _as_script(workdir: dict, code: str) -> str:
    """The block's lines, each background start followed by a wait for the ports it opens."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        out.append(line)
        if line.rstrip().endswith("&") or ("#" in line and line.split("#")[0].rstrip().endswith("&")):
            ports = [p for p in workdir["ports"].values() if f":{p}" in line or f"--port {p}" in line]
            waits = " ".join(f"/dev/tcp/127.0.0.1/{p}" for p in ports)
            out.append(f"for f in {waits}; do until (exec 3<>$f) 2>/dev/null; do sleep 0.2; done; done")
    return "\n".join(out)


def test_the_fastapi_quick_start_word_for_word(workdir: dict) -> None:
    start = _as_script(workdir, _with_ports(workdir, _tested("sh", "fresh venv")))
    (workdir["dir"] / "look.sh").write_text(_with_ports(workdir, _tested("sh", "after the one above")))
    script = f"""{start}
for i in $(seq 60); do  # metrics arrive within the export interval (10 s)
  if out=$(bash -e look.sh); then break; fi
  sleep 0.5
done
echo "$out"
"""
    out, err = workdir["dir"] / "quickstart.out", workdir["dir"] / "quickstart.err"
    with out.open("w") as stdout_file, err.open("w") as stderr_file:  # files: the servers keep them open
        proc = subprocess.Popen(
            ["bash", "-ec", script], cwd=workdir["dir"], env=workdir["env"], stdout=stdout_file,
            stderr=stderr_file, start_new_session=True,
        )  # fmt: skip
    try:
        proc.wait(timeout=300)
        stdout, stderr = out.read_text(), err.read_text()
        assert proc.returncode == 0, stderr
        assert re.search(r'model_predictions_total\{[^}]*model_name="iris"[^}]*status="success"', stdout), stdout
        assert re.search(r'model_stage_latency_seconds_count\{[^}]*stage="inference"', stdout), stdout
        trace_id = json.loads(stdout.strip().splitlines()[-1])["traces"][0]["trace_id"]
        listen = f"http://127.0.0.1:{workdir['ports']['9464']}"
        with urllib.request.urlopen(f"{listen}/api/traces/{trace_id}", timeout=10) as response:
            names = {span["name"] for span in json.load(response)["spans"]}
        assert {"POST /predict", "inference"} <= names, names
        assert "Traceback" not in stderr, stderr
    finally:
        with contextlib.suppress(ProcessLookupError):  # the servers it started in the background
            os.killpg(proc.pid, signal.SIGTERM)


def test_the_demo_runs_from_an_installed_package(workdir: dict) -> None:
    proc = _sh(workdir, "venv/bin/pip install -q 'modeltel[examples]'")
    assert proc.returncode == 0, proc.stderr
    proc = _sh(workdir, "venv/bin/modeltel demo --duration 2 --concurrency 2", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "prediction (end to end)" in proc.stdout and "slowest request: trace" in proc.stdout
    # no checkout, yet every scene: the alert rules are rendered from the package, the detectors run
    if not missing_binaries():
        assert "Alertmanager notified receiver 'pager'" in proc.stdout, proc.stdout[-3000:]
    assert "the collector detected confidence_drift" in proc.stdout, proc.stdout[-3000:]
