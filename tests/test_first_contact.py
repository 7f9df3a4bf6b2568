"""What a new user meets in the first minutes: a silent start, a bounded exit, one clear line per mistake."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from modeltel.export.distro import requirements_met
from modeltel.testing import OtlpSink

BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(MODELTEL_GPU_METRICS="false", MODELTEL_HOST_METRICS="false", **extra)
    return env


def test_start_up_and_exit_are_silent_when_nothing_is_wrong() -> None:
    # opentelemetry-instrumentation-fastapi is installed here, so modeltel_fastapi turns it on; its own
    # entry point used to say "Attempting to instrument while already instrumented" on every start.
    with OtlpSink() as sink:
        proc = subprocess.run(
            [str(BIN / "modeltel"), "run", "--", "python", "-c", "import fastapi"],
            env=_env(OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout == ""


@pytest.fixture
def blackhole():
    """A port that accepts connections and never answers: the slowest way for a collector to be down."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(64)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


SHORT_SCRIPT = """
import modeltel, sys
with modeltel.prediction():
    pass
print("done", flush=True)
"""


def _run_script(script: str, endpoint: str, *, timeout: str, exit_timeout: str) -> subprocess.Popen:
    """``script`` under ``modeltel run``, exporting to ``endpoint``, its output piped."""
    env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_TIMEOUT=timeout,
               MODELTEL_EXIT_TIMEOUT=exit_timeout)  # fmt: skip
    command = [str(BIN / "modeltel"), "run", "--", "python", "-c", script]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_exit_with_the_collector_down_is_bounded_and_says_what_was_lost(blackhole: str) -> None:
    proc = _run_script(SHORT_SCRIPT, blackhole, timeout="30", exit_timeout="1")
    assert proc.stdout.readline().strip() == "done"
    done_at = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    # Unbounded, the exporters each wait out OTEL_EXPORTER_OTLP_TIMEOUT (30 s) at exit.
    assert time.monotonic() - done_at < 15
    lines = [line for line in stderr.splitlines() if line.startswith("modeltel:")]
    assert lines == [lines[0]] and "gave up flushing after 1 s" in lines[0], stderr
    assert "not sent: 1 spans" in lines[0]


SERVING_SCRIPT = """
import time, modeltel
pipeline = modeltel.get_pipeline()
for _ in range(3):  # three export rounds that fail: the first says so, the others are only counted
    with modeltel.prediction():
        pass
    pipeline.force_flush()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


@pytest.fixture
def refused() -> str:
    """An address nothing listens on: connections are refused at once."""
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("collector", "reason"), [("refused", "connection refused"), ("blackhole", "no answer within 1 s")]
)
def test_a_collector_that_is_down_is_said_once_at_start_and_the_exit_keeps_its_time(
    collector: str, reason: str, request
) -> None:
    endpoint = request.getfixturevalue(collector)
    proc = _run_script(SERVING_SCRIPT, endpoint, timeout="1", exit_timeout="2")
    try:
        first = proc.stderr.readline()  # said while serving, not only at exit
        assert first.startswith("modeltel: ") and f"{endpoint}/v1/" in first and reason in first, first
        assert "modeltel collector" in first and "OTEL_EXPORTER_OTLP_ENDPOINT" in first
        assert proc.stdout.readline().strip() == "ready"
        signalled = time.monotonic()
        proc.terminate()
        _, rest = proc.communicate(timeout=60)
        exited = time.monotonic() - signalled
    finally:
        proc.kill()
    # Each round failed twice (spans, metrics) and the upstream exporter logged each retry: none of it shows.
    lines = rest.splitlines()
    assert len(lines) == 1 and lines[0].startswith("modeltel: ") and "not sent" in lines[0], rest
    assert exited < 2.0, f"exit took {exited:.2f} s after SIGTERM, MODELTEL_EXIT_TIMEOUT is 2 s"


class _Instrumentor:
    def __init__(self, *requirements: str) -> None:
        self.requirements = requirements

    def instrumentation_dependencies(self) -> tuple[str, ...]:
        return self.requirements


def test_a_framework_without_its_contrib_instrumentation_says_what_to_install(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="modeltel")
    assert requirements_met("modeltel_fastapi", _Instrumentor("pytest >= 1", "pytest >= 1"))
    assert not requirements_met("modeltel_fastapi", _Instrumentor("pytest >= 1", "no-such-contrib-package >= 1"))
    assert not requirements_met("modeltel_torch", _Instrumentor("no-such-framework >= 1"))  # absent: no line
    assert not requirements_met("modeltel_flask", _Instrumentor("pytest < 1"))  # present, unsupported version
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "pytest is installed but no-such-contrib-package >= 1 is not" in lines[0]
    assert "pip install 'modeltel[fastapi]'" in lines[0]
    assert "modeltel_flask is not monitored" in lines[1] and "pytest < 1" in lines[1]


@pytest.fixture
def busy_port():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        yield taken.getsockname()[1]


def _collector(capsys, *args: str) -> str:
    from modeltel_collector.cli import main

    assert main(["--otlp-http", "127.0.0.1:0", "--otlp-grpc", "", "--listen", "127.0.0.1:0", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_collector_port_in_use_names_the_address(capsys, busy_port: int) -> None:
    err = _collector(capsys, "--listen", f"127.0.0.1:{busy_port}")
    assert f"cannot listen on 127.0.0.1:{busy_port} (--listen): Address already in use" in err
    err = _collector(capsys, "--otlp-grpc", f"127.0.0.1:{busy_port}")
    assert f"cannot listen on 127.0.0.1:{busy_port} (--otlp-grpc)" in err


def test_collector_bad_address_is_one_line(capsys) -> None:
    err = _collector(capsys, "--listen", "localhost:abc")
    assert "--listen: expected HOST:PORT with a port 0-65535, got 'localhost:abc'" in err


@pytest.mark.parametrize("flag", ["--otlp-http", "--otlp-grpc", "--listen"])
def test_collector_address_with_a_scheme_says_to_drop_it(capsys, flag: str) -> None:
    err = _collector(capsys, flag, "http://localhost:4318")
    assert f"{flag}: expected HOST:PORT without a scheme, got 'http://localhost:4318'" in err
    assert "drop 'http://', e.g. 'localhost:4318'" in err


def test_an_otlp_http_endpoint_without_scheme_is_completed_with_one_warning(caplog) -> None:
    from modeltel import config

    settings = config.load(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    assert settings.traces_endpoint == "http://collector:4318/v1/traces"
    assert settings.metrics_endpoint == "http://collector:4318/v1/metrics"
    assert [r.getMessage() for r in caplog.records] == [
        "modeltel: ignoring OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318' (no scheme); using "
        "'http://collector:4318' instead"
    ]
    assert config.load(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}).traces_endpoint is None
    grpc = {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert config.load(env=grpc).traces_endpoint is None  # HOST:PORT is a valid gRPC target


def test_repeated_export_failures_log_once_and_http_to_the_grpc_port_gets_a_hint(caplog) -> None:
    from modeltel.export import exportlog

    once = exportlog.OncePerReason()
    exporter = types.SimpleNamespace(_endpoint="http://localhost:4317/v1/traces")

    def passes(message: str) -> bool:
        return once.filter(logging.LogRecord("otlp", logging.WARNING, __file__, 1, message, None, None))

    def failed_export(*lines: str) -> None:
        exportlog.export_started()
        assert not any([passes(line) for line in lines])  # the exporter's failure lines never pass
        exportlog.export_failed("spans", exporter)

    junk = "Transient error ('Connection aborted.', BadStatusLine('\\x00\\x00\\x18\\x04')) encountered while exporting"
    failed_export(junk + " spans batch, retrying in 1.06s.", "Failed to export spans batch due to timeout.")
    failed_export(junk + " spans batch, retrying in 2.35s.")
    hints = [r.getMessage() for r in caplog.records if r.name == "modeltel"]
    assert len(hints) == 1 and "collector's gRPC port (4317)" in hints[0] and "localhost:4317" in hints[0]
    # the exporters' other lines pass once each, whatever the numbers and object addresses in them
    assert passes("Dropping span batch: serialized size 70000001 bytes exceeds max_request_size")
    assert not passes("Dropping span batch: serialized size 80000002 bytes exceeds max_request_size")
    assert passes("Exporter <object at 0x7f3a2b1c> already shutdown")
    assert not passes("Exporter <object at 0x7e00ff> already shutdown")


def test_prometheus_port_in_use_names_the_address(caplog, busy_port: int) -> None:
    from modeltel import config
    from modeltel.export import Pipeline

    settings = config.load(env={"MODELTEL_PROMETHEUS_PORT": str(busy_port)}, traces_exporter="none",
                           metrics_exporter="none", gpu_metrics=False, host_metrics=False)  # fmt: skip
    Pipeline(settings, set_global=False).shutdown()
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"cannot listen on 127.0.0.1:{busy_port} (MODELTEL_PROMETHEUS_PORT)" in line


def test_run_with_a_missing_command_says_so() -> None:
    proc = subprocess.run([str(BIN / "modeltel"), "run", "--", "nonexistent-cmd"], capture_output=True, text=True)
    assert proc.returncode == 127
    assert proc.stderr == "modeltel run: command not found: nonexistent-cmd\n"


@pytest.mark.parametrize("through", ["interpreter", "script"])
def test_run_with_another_environments_python_says_so_and_runs_it_uninstrumented(tmp_path, through: str) -> None:
    # It used to print Python's own "Error in sitecustomize ... No module named 'opentelemetry'".
    venv = tmp_path / "other"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    command = [str(python), "-c", "print('served')"]
    if through == "script":  # a console script whose shebang names that environment's Python
        script = venv / "bin" / "serve"
        script.write_text(f"#!{python}\nprint('served')\n")
        script.chmod(0o755)
        command = [str(script)]
    proc = subprocess.run(
        [str(BIN / "modeltel"), "run", "--", *command], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout) == (0, "served\n")
    assert proc.stderr == (
        f"modeltel run: {python} is another environment's Python, without modeltel; running the command"
        " uninstrumented (activate modeltel's environment, or pip install modeltel into that one)\n"
    )


def _options(parser) -> list:
    return [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]


def _commands(parser, path: str = "modeltel") -> list:
    """(command path, one-line help, parser) for every command below ``parser``, depth first."""
    import argparse

    out = []
    for action in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
        helps = {c.dest: c.help for c in action._choices_actions}
        for name, sub in action.choices.items():
            out.append((f"{path} {name}", helps.get(name), sub))
            out.extend(_commands(sub, f"{path} {name}"))
    return out


def test_every_command_and_option_says_what_it_does_and_its_default() -> None:
    from modeltel.cli import _plugins, build_parser
    from modeltel_collector.cli import build_parser as collector_parser

    commands = _commands(build_parser(_plugins()))
    assert {"modeltel run", "modeltel demo", "modeltel collector"} <= {c for c, _, _ in commands}
    for command, summary, _ in commands:
        assert summary and not summary.startswith("("), command
    parsers = [p for _, _, p in commands] + [collector_parser()]
    for option in (o for p in parsers for o in _options(p)):
        assert option.choices or option.required or "default" in (option.help or ""), option.option_strings
    assert {"--auth-token", "--tls-cert", "--tls-key"} <= {s for o in _options(parsers[-1]) for s in o.option_strings}

    out = subprocess.run([str(BIN / "modeltel"), "--help"], capture_output=True, text=True).stdout
    assert "(from " not in out and "Receive OTLP" in out
    version = subprocess.run([str(BIN / "modeltel"), "--version"], capture_output=True, text=True).stdout
    assert version.startswith("modeltel ")


def test_collector_takes_token_and_tls_by_flag(capsys) -> None:
    from modeltel_collector.cli import build_parser, config_from

    args = build_parser().parse_args(["--auth-token", "s3cret", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
    cfg = config_from(args, env={})
    assert (cfg.auth_token, cfg.tls_cert, cfg.tls_key) == ("s3cret", "c.pem", "k.pem")
