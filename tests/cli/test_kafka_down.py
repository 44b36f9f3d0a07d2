"""`els process` and `els replay` with no broker at KAFKA_BOOTSTRAP_SERVERS: one line naming the setting and
exit 1 (retryable: a supervisor restarts it), not a traceback."""

import os
import subprocess
import sys

import pytest

from els.broker import free_port
from tests.helpers.paths import ROOT


@pytest.mark.parametrize("cmd", [["process"], ["replay", "--since", "2h"]])
def test_no_broker_is_one_clear_line_and_exit_1(cmd, tmp_path):
    where = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ELS_", "DD_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=where, ELS_DATA_DIR=str(tmp_path),
               ELS_DRY_RUN_FILE=str(tmp_path / "dry-run.ndjson"))
    proc = subprocess.run([sys.executable, "-m", "els.cli", *cmd], env=env, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"els {cmd[0]}: cannot reach Kafka at {where}" in proc.stderr
    assert "connection refused" in proc.stderr and "KAFKA_BOOTSTRAP_SERVERS" in proc.stderr
