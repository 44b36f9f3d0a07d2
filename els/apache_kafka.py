"""Apache Kafka itself, for tests, benches and development on a machine without Docker.

Apache Kafka's broker (`org.apache.kafka:kafka_2.13`) is fetched from Maven Central with `mvn` into a cache
outside the repository (ELS_KAFKA_CACHE, default ~/.cache/els-kafka; no jar is committed) and run with `java`
in KRaft mode: one node, or a cluster of several on loopback ports, each node a combined controller and broker.
Its storage lives in a work directory, so a node stopped (or SIGKILLed) and started again keeps its data, as a
broker restart in production does; each new ApacheKafka formats a new cluster there.

Besides the plaintext listener every node has, a cluster can also offer SASL_SSL with SCRAM-SHA-512 (users made
with Kafka's own kafka-configs tool, `add_scram_user`) and SSL that requires client certificates (mutual TLS).
`els kafka` runs one in the foreground; the test fixtures (tests/conftest.py) and `make bench` use this class.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from els.broker import BrokerError, free_port, port_is_free, terminate, wait_for_port

# The Apache Kafka version the project is tested with: docker-compose.yml's image and the README name the same
# (tests/deploy/test_compose.py keeps them equal).
KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"
JAVA_MIN = 17
STARTED = "Kafka Server started"  # KafkaRaftServer's INFO line once the node serves (broker unfenced)


class KafkaDistError(BrokerError):
    """Apache Kafka could not be fetched or started; the message says why and what to do."""


def cache_dir() -> Path:
    """ELS_KAFKA_CACHE (common/config.py), else ~/.cache/els-kafka."""
    return Path(os.environ.get("ELS_KAFKA_CACHE") or Path.home() / ".cache" / "els-kafka")


@functools.cache
def _java() -> str:
    """The `java` to run, checked once per process (`java -version` starts a JVM: not once per command)."""
    java = shutil.which("java")
    if java is None:
        raise KafkaDistError(f"Apache Kafka needs Java {JAVA_MIN} or newer, and `java` is not on PATH: install "
                             "OpenJDK (Debian: apt-get install openjdk-17-jdk-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0": Java 8
        major = int(found.group(2))
    if major < JAVA_MIN:
        raise KafkaDistError(f"Apache Kafka {KAFKA_VERSION} needs Java {JAVA_MIN} or newer; `java -version` says "
                             f"{out.splitlines()[0] if out else 'nothing'}")
    return java


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>els</groupId><artifactId>apache-kafka</artifactId><version>{version}</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId><version>{version}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def distribution(version: str = KAFKA_VERSION) -> Path:
    """The folder of Apache Kafka's jars (fetched with Maven on first use; later calls only look)."""
    java_ok = _java()  # checked first: without Java the jars are of no use
    root = cache_dir() / version
    lib = root / "lib"
    if (root / ".complete").exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaDistError(f"fetching Apache Kafka {version} needs Maven, and `mvn` is not on PATH: install it "
                             f"(Debian: apt-get install maven), or put the jars of kafka_{SCALA_VERSION}:{version} "
                             f"and their dependencies in {lib} and create {root / '.complete'}")
    root.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{version}.lock", "w") as lock:  # two test runs fetching at once: one fetches
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".complete").exists():
            return lib
        (root / "pom.xml").write_text(_POM.format(version=version, scala=SCALA_VERSION, log4j=LOG4J_VERSION))
        print(f"els: fetching Apache Kafka {version} with Maven into {root} (once)", file=sys.stderr, flush=True)
        done = subprocess.run([mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={lib}",
                               "-DincludeScope=runtime"], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise KafkaDistError(f"Maven could not fetch Apache Kafka {version} (Maven Central reachable?):\n{tail}")
        (root / ".complete").write_text(java_ok + "\n")
    return lib


@dataclass
class BrokerTls:
    """TLS listeners: `keystore_pem` holds the broker's private key and certificate chain; with `client_ca_pem`
    the SSL listener requires client certificates signed by it (mutual TLS). SASL_SSL is offered beside it."""

    keystore_pem: Path
    client_ca_pem: Path


@dataclass
class Node:
    node_id: int
    port: int              # PLAINTEXT: clients, and brokers among themselves
    controller_port: int
    sasl_ssl_port: int | None = None
    ssl_port: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ApacheKafka:
    """`with ApacheKafka(workdir, brokers=3) as kafka:` kafka.bootstrap lists every node's plaintext address.

    `config`: broker settings added to (or replacing) the defaults below; `tls`: also offer SASL_SSL
    (SCRAM-SHA-512) and SSL with client certificates."""

    def __init__(self, workdir: Path | None = None, brokers: int = 1, host: str = "127.0.0.1",
                 tls: BrokerTls | None = None, config: dict[str, str] | None = None, heap_mb: int = 512,
                 version: str = KAFKA_VERSION):
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="els-kafka-")
        self.dir = Path(workdir or self._tmp.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host, self.tls, self.heap_mb, self.version = host, tls, heap_mb, version
        self.extra_config = config or {}
        self.cluster_id = uuid.uuid4().hex[:22]
        self.nodes = [Node(i + 1, free_port(host), free_port(host),
                           free_port(host) if tls else None, free_port(host) if tls else None)
                      for i in range(brokers)]
        self._classpath: str | None = None
        self._formatted = False

    # -- addresses ---------------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.port}" for n in self.nodes)

    @property
    def sasl_ssl_bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.sasl_ssl_port}" for n in self.nodes)

    @property
    def ssl_bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.ssl_port}" for n in self.nodes)

    def log_path(self, node: Node) -> Path:
        return self.dir / f"node-{node.node_id}" / "server.log"

    # -- configuration -----------------------------------------------------------------------------------
    def _properties(self, node: Node) -> dict[str, str]:
        n = len(self.nodes)
        voters = ",".join(f"{x.node_id}@{self.host}:{x.controller_port}" for x in self.nodes)
        listeners = {"PLAINTEXT": node.port, "CONTROLLER": node.controller_port}
        if self.tls:
            listeners |= {"SASL_SSL": node.sasl_ssl_port, "SSL": node.ssl_port}
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": ",".join(f"{name}://{self.host}:{port}" for name, port in listeners.items()),
            "advertised.listeners": ",".join(f"{name}://{self.host}:{port}" for name, port in listeners.items()
                                             if name != "CONTROLLER"),
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL",
            "log.dirs": str(self.dir / f"node-{node.node_id}" / "data"),
            # Kafka's defaults (auto-created topics get 1 partition) stay: a topic the pipeline forgets to create
            # shows up as the wrong partition count. What differs from production is for test speed only.
            "offsets.topic.num.partitions": "10",
            "offsets.topic.replication.factor": str(min(3, n)),
            "transaction.state.log.replication.factor": str(min(3, n)),
            "transaction.state.log.min.isr": str(min(2, n)),
            "share.coordinator.state.topic.replication.factor": str(min(3, n)),
            "share.coordinator.state.topic.min.isr": str(min(2, n)),
            "default.replication.factor": str(min(3, n)),
            "min.insync.replicas": str(min(2, n)),
            "group.initial.rebalance.delay.ms": "0",
            "controlled.shutdown.enable": "true",
        }
        if self.tls:
            props |= {
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls.keystore_pem),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls.client_ca_pem),
                "listener.name.ssl.ssl.client.auth": "required",
            }
        return props | self.extra_config

    def _write_config(self, node: Node) -> Path:
        d = self.dir / f"node-{node.node_id}"
        d.mkdir(parents=True, exist_ok=True)
        path = d / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self._properties(node).items()))
        (self.dir / "log4j2.properties").write_text(
            "rootLogger.level = WARN\nrootLogger.appenderRef.out.ref = OUT\n"
            "appender.out.type = Console\nappender.out.name = OUT\nappender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "logger.raft.name = kafka.server.KafkaRaftServer\nlogger.raft.level = INFO\n")
        return path

    def _java_cmd(self, main: str, *args: str, heap_mb: int = 256) -> list[str]:
        if self._classpath is None:
            self._classpath = f"{distribution(self.version)}/*"
        return [_java(), f"-Xmx{heap_mb}m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}", "-cp", self._classpath, main, *args]

    def _format(self) -> None:
        """A new cluster in every ApacheKafka: data a former one left in the work directory is removed first (its
        cluster id and ports are not this one's)."""
        for node in self.nodes:
            shutil.rmtree(self.dir / f"node-{node.node_id}" / "data", ignore_errors=True)
            config = self._write_config(node)
            done = subprocess.run(self._java_cmd("kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                                                 "-c", str(config), "--ignore-formatted"),
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise KafkaDistError(f"formatting node {node.node_id}'s storage failed: {done.stdout}{done.stderr}")
        self._formatted = True

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> ApacheKafka:
        for node in self.nodes:
            for port in (node.port, node.controller_port, node.sasl_ssl_port, node.ssl_port):
                if port is not None and not port_is_free(self.host, port):
                    raise KafkaDistError(f"port {self.host}:{port} is already in use")
        if not self._formatted:
            self._format()
        marks = {n.node_id: self._spawn(n) for n in self.nodes}
        for node in self.nodes:
            self._wait_started(node, marks[node.node_id], timeout)
        return self

    def _spawn(self, node: Node) -> int:
        """Start one node; returns where its log stood, to find this start's STARTED line."""
        log = self.log_path(node)
        log.parent.mkdir(parents=True, exist_ok=True)
        mark = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as out:
            node.proc = subprocess.Popen(
                self._java_cmd("kafka.Kafka", str(self.dir / f"node-{node.node_id}" / "server.properties"),
                               heap_mb=self.heap_mb),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return mark

    def _wait_started(self, node: Node, mark: int, timeout: float) -> None:
        log = self.log_path(node)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise KafkaDistError(f"Apache Kafka node {node.node_id} exited ({node.proc.returncode}); "
                                     f"see {log}:\n{self._tail(log, mark)}")
            with open(log, "rb") as f:
                f.seek(mark)
                if STARTED.encode() in f.read() and wait_for_port(self.host, node.port, 10):
                    return
            time.sleep(0.1)
        terminate(node.proc)
        raise KafkaDistError(f"Apache Kafka node {node.node_id} did not start within {timeout:.0f}s; see {log}")

    @staticmethod
    def _tail(log: Path, mark: int) -> str:
        with open(log, "rb") as f:
            f.seek(mark)
            return "\n".join(f.read().decode(errors="replace").strip().splitlines()[-8:])

    def stop_node(self, node: Node, kill: bool = False, grace_s: float = 60.0) -> None:
        """SIGTERM (a controlled shutdown: leadership moves first) or SIGKILL one node; wait until it is gone."""
        if not node.running:
            return
        os.killpg(node.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            node.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait()

    def start_node(self, node: Node, timeout: float = 90.0) -> None:
        self._wait_started(node, self._spawn(node), timeout)

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(ProcessLookupError):
                self.stop_node(node, grace_s=30)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> ApacheKafka:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- Kafka's own tools -------------------------------------------------------------------------------
    def add_scram_user(self, name: str, password: str) -> None:
        """A SCRAM-SHA-512 user, made the way operators do: kafka-configs (ConfigCommand) over the plaintext
        listener. (Its --add-config-file form refuses SCRAM credentials, so the password is on its command line:
        for test users only.)"""
        done = subprocess.run(
            self._java_cmd("kafka.admin.ConfigCommand", "--bootstrap-server", self.bootstrap, "--alter",
                           "--add-config", f"SCRAM-SHA-512=[iterations=4096,password={password}]",
                           "--entity-type", "users", "--entity-name", name),
            capture_output=True, text=True)
        if done.returncode != 0:
            raise KafkaDistError(f"kafka-configs could not add the SCRAM user {name}: "
                                 f"{(done.stdout + done.stderr).replace(password, '***')}")


def run_foreground(brokers: int, data_dir: str | None) -> int:
    """`els kafka`: Apache Kafka in the foreground until Ctrl-C (or SIGTERM); exit 2 when it cannot start."""
    kafka = ApacheKafka(Path(data_dir) if data_dir else None, brokers=brokers)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        kafka.start()
    except KafkaDistError as exc:
        print(f"els kafka: {exc}", file=sys.stderr)
        kafka.stop()
        return 2
    except KeyboardInterrupt:
        kafka.stop()
        return 130
    try:
        kept = f"data and logs in {kafka.dir}, kept" if data_dir else "data in a temporary folder, deleted when it stops"
        print(f"els kafka: Apache Kafka {kafka.version}, {brokers} node{'s' if brokers > 1 else ''} (KRaft), on "
              f"{kafka.bootstrap}; {kept}; logs in {kafka.dir}/node-*/server.log. Ctrl-C stops it.\n"
              f"export KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}" + (" ELS_REPLICATION_FACTOR=3" if brokers >= 3 else ""),
              flush=True)
        while all(n.running for n in kafka.nodes):
            time.sleep(0.5)
        gone = [n.node_id for n in kafka.nodes if not n.running]
        print(f"els kafka: node {gone} exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # a second Ctrl-C or SIGTERM while the nodes shut down does not turn a clean stop into a traceback
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        kafka.stop()
