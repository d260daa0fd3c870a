"""Kafka backends (confluent-kafka): the event source, the dead-letter topic, the producer.

Exactly-once with respect to the model: the consumer never auto-commits. The trainer's
checkpoint stores the next offset of every partition it has read; on (re)assignment a
partition starts at the checkpoint's offset when the checkpoint has one, else at the group's
committed offset (``commit`` is only called for positions a durable checkpoint covers), else
at the beginning. Before partitions are revoked in a rebalance the trainer is asked to
checkpoint (``on_revoke``), so the next owner starts exactly after what this one applied.

The dead-letter topic has as many partitions as the events topic and a reject from partition p
goes to DLQ partition p, keyed ``"<p>:<offset>"``, with the original bytes as value and the
reason in a header. After a crash the trainer reads the last record of each DLQ partition and
does not write again a reject at or below the offset found there, so the DLQ holds every
rejected event exactly once.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from typing import Self

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from recengine.config import BackendURL, Settings
from recengine.errors import BackendUnavailable
from recengine.events import Event, Rejected
from recengine.sources import DeadLetterSink, EventSource

log = logging.getLogger("recengine.kafka")


def bootstrap(url: BackendURL) -> str:
    return f"{url.host}:{url.port or 9092}"


def topic_of(url: BackendURL, default: str) -> str:
    """``kafka://host:port/<topic>`` names the topic; without a path the default is used."""
    return url.path.strip("/") or default


class _Offsets(Sequence[tuple[int, int]]):
    """A lazy view of (partition, offset) by index over the messages of one poll."""

    def __init__(self, msgs: list) -> None:
        self.msgs = msgs

    def __len__(self) -> int:
        return len(self.msgs)

    def __getitem__(self, n: int) -> tuple[int, int]:
        m = self.msgs[n]
        return m.partition(), m.offset()


class KafkaEventSource(EventSource):
    """A consumer-group member reading the events topic in batches."""

    fmt = "jsonl"

    def __init__(self, url: BackendURL, topic: str, group: str, *, instance: str | None = None,
                 extra: dict | None = None) -> None:
        self.topic = topic
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap(url),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.min.bytes": 1,
            "max.partition.fetch.bytes": 4 * 1024 * 1024,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "client.id": f"{group}-trainer",
            # Static membership: a trainer restarted under the same instance name (a
            # crash-looping container, a restarted process) takes its partitions back at once
            # instead of waiting out the session timeout of its previous incarnation.
            "group.instance.id": f"{group}-{instance or socket.gethostname()}",
            **(extra or {}),
        })
        self._next: dict[int, int] = {}  # partition -> next offset to apply
        self._polled: list = []  # the messages of the last poll
        self._restored: dict[int, int] = {}
        self.consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)
        self._last_error_log = 0.0

    @classmethod
    def from_url(cls, url: BackendURL, settings: Settings) -> Self:
        """The engine's trainer group (``<name>-trainer``), this replica its static member."""
        return cls(url, topic_of(url, settings.events_topic), group=f"{settings.name}-trainer",
                   instance=settings.instance_name)

    # --- rebalance -----------------------------------------------------------------------------
    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        for tp in partitions:
            p = tp.partition
            if p in self._restored:
                tp.offset = self._restored[p]
            elif committed.get(p, -1) >= 0:
                tp.offset = committed[p]
            else:
                tp.offset = OFFSET_BEGINNING
            if tp.offset >= 0:
                self._next[p] = tp.offset
        consumer.assign(partitions)
        log.info("assigned %s", {tp.partition: tp.offset for tp in partitions})

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.on_revoke is not None:
            self.on_revoke()  # checkpoint + commit what was applied, before giving it up
        for tp in partitions:
            self._next.pop(tp.partition, None)
            self._restored.pop(tp.partition, None)
        log.info("revoked %s", [tp.partition for tp in partitions])

    # --- EventSource ---------------------------------------------------------------------------
    def poll(self, max_records: int, timeout_s: float) -> list[bytes]:
        msgs = self.consumer.consume(num_messages=max_records, timeout=timeout_s)
        if any(m.error() is not None for m in msgs):
            for m in msgs:
                err = m.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    self._log_error(err)
            msgs = [m for m in msgs if m.error() is None]
        self._polled = msgs
        # The next offset of each partition: its last message in this batch, plus one (the
        # dict keeps the last offset seen per partition).
        last = {m.partition(): m.offset() for m in msgs}
        for p, o in last.items():
            self._next[p] = o + 1
        return [m.value() or b"" for m in msgs]

    @property
    def last_offsets(self) -> _Offsets:
        return _Offsets(self._polled)

    def _log_error(self, err: KafkaError) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 30:
            log.warning("kafka: %s", err)
            self._last_error_log = now

    def position(self) -> dict:
        return {"topic": self.topic, "offsets": {str(p): o for p, o in self._next.items()}}

    def seek(self, position: dict) -> None:
        offsets = {int(p): int(o) for p, o in position.get("offsets", {}).items()}
        self._restored = dict(offsets)
        self._next.update(offsets)
        assigned = self.consumer.assignment()
        for tp in assigned:
            if tp.partition in offsets:
                self.consumer.seek(TopicPartition(self.topic, tp.partition, offsets[tp.partition]))

    def commit(self, position: dict) -> None:
        assigned = {tp.partition for tp in self.consumer.assignment()}
        offsets = [TopicPartition(self.topic, int(p), int(o))
                   for p, o in position.get("offsets", {}).items() if int(p) in assigned]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Not fatal: the checkpoint holds these offsets; the commit is only for others.
            log.warning("offset commit failed (the checkpoint still covers them): %s", exc)

    def exhausted(self) -> bool:
        return False

    def close(self) -> None:
        self.consumer.close()


#: The most of a rejected record's bytes a dead letter carries (Kafka's default message limit
#: is about 1 MB, headers included); a longer one keeps its head and a ``truncated-from``
#: header with its size.
DLQ_MAX_VALUE_BYTES = 512 * 1024


class KafkaDeadLetter(DeadLetterSink):
    """Rejects to ``<name>.events.dlq``, partition for partition, deduplicated after crashes."""

    def __init__(self, url: BackendURL, topic: str, source: EventSource | None) -> None:
        self.topic = topic
        self.source = source
        self.url = url
        self.producer = Producer({"bootstrap.servers": bootstrap(url),
                                  "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5})
        self._done: dict[int, int] | None = None

    @classmethod
    def from_url(cls, url: BackendURL, settings: Settings,
                 source: EventSource | None = None) -> Self:
        return cls(url, topic_of(url, settings.dlq_topic), source)

    def _written(self) -> dict[int, int]:
        """Highest source offset already in each DLQ partition (read once, after a restart)."""
        if self._done is not None:
            return self._done
        done: dict[int, int] = {}
        consumer = Consumer({"bootstrap.servers": bootstrap(self.url),
                             "group.id": f"{self.topic}-reader", "enable.auto.commit": False})
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                           timeout=10)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(self.topic, p, high - 1)])
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    m = consumer.poll(0.5)
                    if m is not None and m.error() is None:
                        key = (m.key() or b"").decode()
                        part, _, off = key.partition(":")
                        if part and off:
                            done[int(part)] = max(done.get(int(part), -1), int(off))
                        break
        finally:
            consumer.close()
        self._done = done
        return done

    def write(self, rejected: Sequence[Rejected]) -> None:
        """Produce rejects of the batch the source just polled (``Rejected.index`` is each
        one's index in that batch, which maps it to its partition and offset)."""
        if not rejected:
            return
        done = self._written()
        polled = self.source.last_offsets if self.source is not None else ()
        for r in rejected:
            part, off = polled[r.index] if 0 <= r.index < len(polled) else (-1, -1)
            if part >= 0 and off <= done.get(part, -1):
                continue  # already dead-lettered by a run that crashed before checkpointing
            headers = [("reason", r.reason.encode()), ("source-partition", str(part).encode()),
                       ("source-offset", str(off).encode())]
            value = r.raw
            if len(value) > DLQ_MAX_VALUE_BYTES:
                # A record near the broker's size limit would not fit with its headers, and a
                # reject the DLQ refuses would stop the trainer: its head, and its true size.
                headers.append(("truncated-from", str(len(value)).encode()))
                value = value[:DLQ_MAX_VALUE_BYTES]
            self.producer.produce(self.topic, value=value, key=f"{part}:{off}".encode(),
                                  partition=part if part >= 0 else -1, headers=headers)
        self.producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self.producer.flush(timeout_s)
        if remaining:
            raise KafkaException(f"{remaining} dead-letter records not acknowledged")

    def position(self) -> dict:
        self.flush()
        return {}

    def truncate(self, position: dict) -> None:
        self._done = None  # re-read what the DLQ already holds

    def close(self) -> None:
        self.producer.flush(10)


class KafkaEventSink:
    """``POST /events``: idempotent producer, ``acks=all``, keyed by user id (one user's
    events stay in one partition, in order). ``append`` returns only once the broker has
    acknowledged every event, and raises :class:`BackendUnavailable` when it could not."""

    def __init__(self, url: BackendURL, topic: str, timeout_s: float = 5.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self.producer = Producer({"bootstrap.servers": bootstrap(url),
                                  "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 1, "message.timeout.ms": int(timeout_s * 1000)})

    @classmethod
    def from_url(cls, url: BackendURL, settings: Settings) -> Self:
        return cls(url, topic_of(url, settings.events_topic))

    def append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        errors: list[str] = []

        def delivered(err: KafkaError | None, msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        try:
            for e in events:
                self.producer.produce(self.topic, value=e.to_json().encode(),
                                      key=e.user_id.encode(), on_delivery=delivered)
            remaining = self.producer.flush(self.timeout_s)
        except KafkaException as exc:
            raise BackendUnavailable(str(exc)) from None
        if remaining or errors:
            raise BackendUnavailable(f"broker did not acknowledge {remaining or len(errors)} "
                                     "events" + (f": {errors[0]}" if errors else ""))


def create_topics(settings: Settings, partitions: int, replication: int = 1,
                  timeout_s: float = 30.0) -> dict[str, str]:
    """Create the events and dead-letter topics if missing; returns topic -> outcome."""
    url = settings.url("events")
    events = topic_of(url, settings.events_topic)
    dlq = topic_of(settings.url("dlq"), settings.dlq_topic) if settings.url("dlq").scheme == \
        "kafka" else settings.dlq_topic
    admin = AdminClient({"bootstrap.servers": bootstrap(url)})
    existing = admin.list_topics(timeout=timeout_s).topics
    out: dict[str, str] = {}
    wanted = [NewTopic(t, num_partitions=partitions, replication_factor=replication)
              for t in (events, dlq) if t not in existing]
    for t in (events, dlq):
        if t in existing:
            out[t] = f"exists ({len(existing[t].partitions)} partitions)"
    if wanted:
        for topic, fut in admin.create_topics(wanted, operation_timeout=timeout_s).items():
            try:
                fut.result()
                out[topic] = f"created ({partitions} partitions)"
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    out[topic] = "exists"
                else:
                    raise
    return out
