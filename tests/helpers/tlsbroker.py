"""The embedded broker behind a TLS terminator, for tests of the Kafka security settings.

Tansu's own TLS does not work in this build, so Debian's stunnel4 terminates TLS in front of it. Tansu listens on a
port that only stunnel connects to and advertises stunnel's port, so every client connection, the ones to the
partition leaders included, goes through TLS. Certificates come from `trustme` CAs made in the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trustme

from common.kafka import KafkaSecurity
from els.broker import BrokerError, EmbeddedBroker, free_port, start_listening, terminate


def stunnel_binary() -> str:
    found = shutil.which("stunnel4") or shutil.which("stunnel")
    if found is None and os.environ.get("CI"):
        pytest.fail("stunnel4 is missing in CI: .ci/run installs Debian's stunnel4 package")
    if found is None:
        pytest.skip("stunnel is not installed: apt-get install stunnel4 (.ci/run installs it)")
    return found


class TlsBroker:
    """`with TlsBroker(tmp_path) as b:` b.bootstrap is the TLS address, b.security how to reach it.

    `client_ca`: require client certificates signed by it (mutual TLS); `names`: the host names and addresses
    the broker's certificate carries."""

    def __init__(self, workdir: Path, client_ca: trustme.CA | None = None, host: str = "127.0.0.1",
                 names: tuple[str, ...] = ("127.0.0.1", "localhost")):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.ca = trustme.CA()
        self.client_ca = client_ca
        self.names = names
        self.tls_port = free_port(host)
        self.plain_port = free_port(host)
        self.broker = EmbeddedBroker(host, self.plain_port, log_path=str(self.dir / "tansu.log"),
                                     advertised=f"{host}:{self.tls_port}")
        self.stunnel: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.tls_port}"

    @property
    def ca_file(self) -> str:
        return str(self.dir / "broker-ca.pem")

    @property
    def security(self) -> KafkaSecurity:
        return KafkaSecurity.from_values("SSL", "PLAIN", ca_file=self.ca_file)

    def env(self) -> dict[str, str]:
        """The settings a process needs to use this broker."""
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CA_FILE": self.ca_file}

    def _config(self) -> Path:
        server = self.ca.issue_cert(*self.names)
        server.private_key_and_cert_chain_pem.write_to_path(str(self.dir / "broker.pem"))
        self.ca.cert_pem.write_to_path(self.ca_file)
        lines = ["foreground = yes", f"output = {self.dir / 'stunnel.log'}", "debug = 5", "[kafka]",
                 f"accept = {self.host}:{self.tls_port}", f"connect = {self.host}:{self.plain_port}",
                 f"cert = {self.dir / 'broker.pem'}"]
        if self.client_ca is not None:
            self.client_ca.cert_pem.write_to_path(str(self.dir / "client-ca.pem"))
            lines += [f"CAfile = {self.dir / 'client-ca.pem'}", "verifyChain = yes", "requireCert = yes"]
        path = self.dir / "stunnel.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> TlsBroker:
        conf = self._config()
        self.broker.start()
        try:
            self.stunnel = start_listening([stunnel_binary(), str(conf)], self.host, self.tls_port, 15, "stunnel")
        except BrokerError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; see {self.dir / 'stunnel.log'}") from None
        return self

    def stop(self) -> None:
        terminate(self.stunnel)
        self.stunnel = None
        self.broker.stop()

    def __enter__(self) -> TlsBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
