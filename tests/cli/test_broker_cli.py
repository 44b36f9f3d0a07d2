"""`els broker`: the embedded broker's command, and its clear refusal when the port is taken."""

import subprocess
import sys

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
