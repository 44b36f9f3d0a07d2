"""`els broker`: the embedded broker's command, and its clear refusal when the port is taken."""

import subprocess
import sys

import pytest

from els.broker import EmbeddedBroker, free_port, split_host_port


def test_split_host_port():
    assert split_host_port("10.0.0.1:19092,b:1") == ("10.0.0.1", 19092)
    assert split_host_port("localhost") == ("localhost", 9092)
    assert split_host_port("[::1]:9093") == ("::1", 9093)


def test_port_taken_is_a_clear_error_and_exit_2():
    with EmbeddedBroker(port=free_port()) as broker:
        proc = subprocess.run([sys.executable, "-m", "els.cli", "broker", "--kafka-bootstrap-servers",
                               broker.bootstrap], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "already in use" in proc.stderr and broker.bootstrap in proc.stderr


def test_broker_runs_in_the_foreground_and_says_it_is_memory_only():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "els.cli", "broker", "--kafka-bootstrap-servers",
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        from els.broker import wait_for_port

        assert wait_for_port("127.0.0.1", port, 15)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "MEMORY STORAGE" in err


def _els_kafka(env_path: str, *args: str, **kw) -> subprocess.Popen:
    import os

    return subprocess.Popen([sys.executable, "-m", "els.cli", "kafka", *args], env={**os.environ, "PATH": env_path},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_els_kafka_without_java_says_what_to_install(tmp_path):
    proc = _els_kafka(str(tmp_path))  # a PATH with neither java nor mvn
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, out + err
    assert "needs Java 17 or newer, and `java` is not on PATH" in err and "Traceback" not in err


def test_els_kafka_without_maven_says_so_before_fetching(tmp_path):
    import os
    import shutil

    (tmp_path / "bin").mkdir()
    os.symlink(shutil.which("java") or "/usr/bin/java", tmp_path / "bin" / "java")
    proc = subprocess.Popen([sys.executable, "-m", "els.cli", "kafka"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PATH": str(tmp_path / "bin"), "ELS_KAFKA_CACHE": str(tmp_path / "c")})
    out, err = proc.communicate(timeout=30)
    if shutil.which("java") is None:
        assert "`java` is not on PATH" in err
    else:
        assert proc.returncode == 2 and "needs Maven, and `mvn` is not on PATH" in err, out + err


@pytest.mark.apache_kafka
def test_els_kafka_runs_in_the_foreground_and_stops_on_sigterm():
    import os
    import signal

    proc = _els_kafka(os.environ["PATH"], "--brokers", "1", start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert "els kafka: Apache Kafka" in line and "Ctrl-C stops it" in line, line + proc.stderr.read()
        bootstrap = proc.stdout.readline().strip().split("=", 1)[1]
        host, port = split_host_port(bootstrap)
        from els.broker import wait_for_port

        assert wait_for_port(host, port, 5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
    assert not wait_for_port(host, port, 1), "a node still listens after els kafka stopped"


@pytest.mark.parametrize("cmd,setting", [("ingest", "ELS_INGEST_PORT"), ("process", "ELS_WEB_PORT")])
def test_a_busy_port_is_one_line_naming_the_setting_and_exit_2(cmd, setting):
    import os
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "els.cli", cmd], capture_output=True, text=True, timeout=60,
                              env={**os.environ, setting: str(port), "ELS_AUTH_TOKENS": "tok-busy-port-test",
                                   "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and f"0.0.0.0:{port} is already in use" in lines[0] and setting in lines[0], lines
