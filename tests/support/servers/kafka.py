"""Apache Kafka in KRaft mode (one combined broker + controller)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..net import HOST
from .base import CACHE_DIR, ManagedProcess, Server, ServerError, tail

# Must match the default in tools/infra/install.sh.
KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "3.9.2")


class KafkaServer(Server):
    """Apache Kafka (KRaft, one node acting as broker and controller).

    ``url`` is ``kafka://127.0.0.1:19092``; ``bootstrap_servers`` is ``127.0.0.1:19092``.
    """

    name = "kafka"
    component = "kafka"
    default_ports = {"broker": 19092, "controller": 19093}
    startup_timeout = 90.0

    def __init__(self, data_dir: Path | str | None = None, *, heap: str = "512m",
                 auto_create_topics: bool = False,
                 extra_properties: Mapping[str, str] | None = None, **options: Any) -> None:
        """``data_dir`` and ``options`` as for :class:`Server`; ``extra_properties`` are
        appended to server.properties."""
        super().__init__(data_dir, **options)
        self.heap = heap
        self.auto_create_topics = auto_create_topics
        self.extra_properties = dict(extra_properties or {})
        self.home = CACHE_DIR / f"kafka-{KAFKA_VERSION}"

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of the PLAINTEXT listener, for client configs."""
        return f"{HOST}:{self.ports['broker']}"

    @property
    def url(self) -> str:
        """``kafka://127.0.0.1:PORT``."""
        return f"kafka://{self.bootstrap_servers}"

    @property
    def properties_path(self) -> Path:
        """The broker's server.properties."""
        return self.data_dir / "server.properties"

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        java = shutil.which("java") or "java"
        opts = [f"-Xmx{heap}"] if heap else []
        return [
            java,
            *opts,
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            str(self.home / "libs" / "*"),
            main,
            *args,
        ]

    def _prepare(self) -> None:
        b, c = self.ports["broker"], self.ports["controller"]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{c}",
            "listeners": f"PLAINTEXT://{HOST}:{b},CONTROLLER://{HOST}:{c}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{b}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "kraft"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            "delete.topic.enable": "true",
            **self.extra_properties,
        }
        self.properties_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j.properties").write_text(
            textwrap.dedent(
                """\
                log4j.rootLogger=INFO, stdout
                log4j.appender.stdout=org.apache.log4j.ConsoleAppender
                log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
                log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
                log4j.logger.kafka.request.logger=WARN
                log4j.logger.org.apache.kafka.clients=WARN
                log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
                log4j.logger.kafka.log.LogCleaner=WARN
                """
            )
        )
        if (self.data_dir / "kraft" / "meta.properties").exists():
            return  # formatted by an earlier start with this data dir
        # A cluster id is a Kafka Uuid: 16 random bytes, base64url without padding.
        cluster_id = ""
        while not cluster_id or cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        log = self.data_dir / "format.log"
        with log.open("ab") as out:
            proc = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    "-t",
                    cluster_id,
                    "-c",
                    str(self.properties_path),
                    heap="256m",
                ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=120,
            )
        if proc.returncode != 0:
            raise ServerError(f"kafka: StorageTool format failed\n{tail(log)}")

    def _processes(self) -> list[ManagedProcess]:
        return [
            ManagedProcess(
                name="broker",
                argv=self._java("kafka.Kafka", str(self.properties_path), heap=self.heap),
                log_path=self.data_dir / "kafka.log",
                cwd=self.data_dir,
                stop_timeout=30.0,
            )
        ]

    def _probe(self, proc: ManagedProcess) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        metadata = admin.list_topics(timeout=2)
        return bool(metadata.brokers)

