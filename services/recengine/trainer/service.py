"""The trainer process: stream -> micro-batches -> learner -> user vectors, checkpoints, versions.

Exactly-once with respect to the model state: a checkpoint holds the learner *and* the source
position (and dead-letter position) it covers; on start the trainer loads the newest checkpoint
and seeks the source there, so events after it are applied again from the same state, and
nothing before it is applied twice. ``source.commit`` is only called for covered positions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recengine.artifacts import ArtifactStore
from recengine.config import Settings
from recengine.errors import ArtifactError, BackendUnavailable
from recengine.lease import TrainerLease, checkpoint_seq
from recengine.metrics import Metrics
from recengine.sources import DeadLetterSink, EventSource
from recengine.statecodec import decode, encode
from recengine.stores import Cache, UserRecord, UserStore
from recengine.trainer.learner import Learner
from recengine.trainer.userwriter import UserWriter
from recengine.versions import build_blobs

log = logging.getLogger("recengine.trainer")


@dataclass
class TrainerCounters:
    consumed: int = 0
    rejected: int = 0
    applied: int = 0
    versions_published: int = 0
    checkpoints: int = 0
    last_version: int = 0
    seq: int = 0
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Runs the learning loop with its side effects on the stores."""

    def __init__(self, settings: Settings, source: EventSource, dlq: DeadLetterSink,
                 artifacts: ArtifactStore, users: UserStore, cache: Cache, metrics: Metrics,
                 *, seed: int = 0, lease: TrainerLease | None = None) -> None:
        self.s = settings
        self.lease = lease
        self.source = source
        self.dlq = dlq
        self.artifacts = artifacts
        self.users = users
        self.cache = cache
        self.metrics = metrics
        self.learner = Learner(settings, seed=seed)
        self.writer = UserWriter(users, metrics)
        self.c = TrainerCounters()
        self.stop = threading.Event()
        self._outage: str | None = None
        self._cache_down = False
        self._since_publish = 0
        self._since_checkpoint = 0
        self._neighbour_pairs = 0
        now = time.monotonic()
        self._last_flush = self._last_checkpoint = self._last_publish = now

    # --- restart -------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Continue from the newest readable checkpoint, if any; True when one was loaded.

        A checkpoint whose checksum fails (torn by a crash of the store, corrupt on disk) or
        which this version cannot read is skipped with a warning, and the one before it is
        used: the stream is re-read from that older position, so nothing is lost or applied
        twice. When checkpoints exist but none is readable, the trainer stops (ArtifactError):
        starting over would apply the whole stream again on top of what was published."""
        seqs = self.artifacts.checkpoints()
        if not seqs:
            # Nothing is covered yet: rejects written by a run that died before its first
            # checkpoint will be written again when their events are read again.
            self.dlq.truncate({})
            return False
        for seq in reversed(seqs):
            try:
                state = decode(self.artifacts.get_checkpoint(seq))
                learner = Learner.from_state(self.s, state["learner"])
                source, dlq, counters = state["source"], state["dlq"], state["counters"]
            except (ArtifactError, KeyError, TypeError, ValueError) as exc:
                log.warning("checkpoint %d is not usable, trying the one before it: %s", seq, exc)
                self.metrics.incr("checkpoints_unusable")
                continue
            break
        else:
            raise ArtifactError(f"none of the {len(seqs)} checkpoints in the artifact store "
                                "is readable (checkpoints written before format RECSTATE1 "
                                "are not read); move them away to start over")
        self.learner = learner
        self.source.seek(source)
        self.dlq.truncate(dlq)
        self.c = TrainerCounters(**counters)
        self.c.seq = max(seqs)  # the next checkpoint is numbered above every stored one
        # Rewrite every user once: a crash may have cut a flush short (see MongoUserStore).
        self.learner.dirty_users = set(range(len(self.learner.users)))
        log.info("resumed from checkpoint %d at %s (%d events applied)", seq, source,
                 self.c.applied)
        return True

    # --- the loop ------------------------------------------------------------------------------
    def step(self) -> int:
        """Poll, validate, learn one micro-batch and run what is due; returns records read."""
        raws = self.source.poll(self.s.batch_size, self.s.batch_latency_s)
        if raws:
            with self.metrics.timer("batch_ms"):
                batch, rejected = self.learner.decode(raws, self.source.fmt)
                self.dlq.write(rejected)
                stats = self.learner.learn(batch)
            self.c.consumed += len(raws)
            self.c.rejected += len(rejected)
            self.c.applied += len(batch)
            self._since_publish += len(batch)
            self._since_checkpoint += len(batch)
            self.metrics.incr("events_consumed", len(raws))
            self.metrics.incr("events_applied", len(batch))
            if rejected:
                self.metrics.incr("events_rejected", len(rejected))
            if stats.seconds > 0:
                self.metrics.gauge("events_per_second", len(batch) / stats.seconds)
        self._periodic()
        return len(raws)

    def run(self, stop: threading.Event | None = None,
            on_progress: Callable[[Trainer], None] | None = None) -> None:
        """Learn until ``stop`` is set or a non-following source is exhausted, then finish."""
        stop = self.stop = stop or self.stop
        while not stop.is_set():
            n = self.step()
            if on_progress is not None and n:
                on_progress(self)
            if self.source.exhausted():
                break
        self.finish()

    def finish(self) -> None:
        """Flush, publish what is new and checkpoint (a clean stop loses no work)."""
        self.stop = threading.Event()  # finishing waits out an outage even after a stop
        self.retrying(self.flush_users, "flush user vectors")
        if self._since_publish:
            self.retrying(self.publish, "publish a version")
        if self._since_checkpoint or not self.artifacts.checkpoints():
            self.retrying(self.checkpoint, "checkpoint")
        if not self.writer.drain(120):
            log.warning("user store writes still pending at stop; they are redone at restart")

    def close(self) -> None:
        """Release every backend connection (after ``run`` or ``finish``)."""
        self.writer.close(10)
        for part in (self.source, self.dlq, self.users, self.cache, self.artifacts):
            try:
                part.close()
            except Exception as exc:  # closing must not hide the outcome of the run
                log.warning("closing %s: %s", type(part).__name__, exc)

    def _periodic(self) -> None:
        if self.lease is not None:
            self.retrying(self.lease.check, "renew the trainer lease")
        now = time.monotonic()
        s = self.s
        if now - self._last_flush >= s.flush_interval_s:
            self.retrying(self.flush_users, "flush user vectors")
        if self._since_publish and (self._since_publish >= s.publish_every_events
                                    or now - self._last_publish >= s.publish_interval_s):
            self.retrying(self.publish, "publish a version")
            # A version's offsets are then covered by a checkpoint.
            self.retrying(self.checkpoint, "checkpoint")
        if self._since_checkpoint and (self._since_checkpoint >= s.checkpoint_every_events
                                       or now - self._last_checkpoint >= s.checkpoint_interval_s):
            self.retrying(self.checkpoint, "checkpoint")

    def retrying(self, action: Callable[[], object], what: str) -> None:
        """Run ``action`` until it succeeds, waiting with backoff while a backend is down.

        One log line when an outage starts and one when it ends, not one per attempt. Events
        keep their place in the stream meanwhile (nothing is committed), so nothing is lost.
        A stop request ends the wait; the work is then redone from the last checkpoint.
        """
        delay = 0.2
        while True:
            try:
                action()
            except (BackendUnavailable, OSError) as exc:
                if self._outage is None:
                    log.warning("cannot %s, retrying with backoff: %s", what, exc)
                    self.metrics.incr("backend_errors")
                self._outage = what
                if self.stop.wait(delay):
                    raise
                delay = min(delay * 2, 10.0)
                continue
            if self._outage is not None:
                log.warning("recovered: %s succeeded again", what)
                self._outage = None
            return

    # --- side effects --------------------------------------------------------------------------
    def flush_users(self) -> int:
        """Write the folded vectors and recent items of users touched since the last flush."""
        self._last_flush = time.monotonic()
        lr = self.learner
        dirty = np.fromiter(lr.dirty_users, dtype=np.int64, count=len(lr.dirty_users))
        lr.dirty_users = set()
        if len(dirty):
            with self.metrics.timer("flush_ms"):
                vectors = lr.model.user_vectors(dirty)
                now = time.time()
                records = [UserRecord(lr.users.id(r), vectors[n], int(lr.user_events[r]),
                                      lr.user_recent(r), now, r)
                           for n, r in enumerate(dirty.tolist())]
                # The cache first: it is what the API reads, so it decides freshness.
                self._cache_write(lambda: self.cache.put_users(records))
                self.writer.submit(records)
        self._cache_write(lambda: self.cache.set_popular(self._popular_lists()))
        new_meta = {lr.items.id(r): doc for r, doc in lr.new_item_info().items()}
        if new_meta:
            self._cache_write(lambda: self.cache.put_items(new_meta))
        self._gauges()
        return len(dirty)

    def _gauges(self) -> None:
        """The trainer's state as gauges, sent at every flush (so they never go idle)."""
        lr = self.learner
        rolling, plain, decayed = lr.tracker.rolling_all()
        self.metrics.gauge("recall_at_k", rolling)
        self.metrics.gauge("popularity_recall_at_k", max(plain, decayed))
        self.metrics.gauge("plain_popularity_recall_at_k", plain)
        self.metrics.gauge("decayed_popularity_recall_at_k", decayed)
        tuner = lr.tuner
        current = tuner.current
        self.metrics.gauge("ranking_blend", current.blend)
        self.metrics.gauge("ranking_pop_blend", current.pop_blend)
        self.metrics.gauge("ranking_recency_decay", current.recency_decay)
        self.metrics.gauge("ranking_recent_used", current.recent_used)
        self.metrics.gauge("ranking_switches", len(tuner.switches))
        for slot in range(len(tuner.population)):  # 0 until a ranking has been compared
            self.metrics.gauge(f"tuning_recall_{slot}", tuner.recall(slot))
        self.metrics.gauge("users", len(lr.users))
        self.metrics.gauge("items", len(lr.items))
        self.metrics.gauge("sketch_size", len(lr.popularity.overall))
        self.metrics.gauge("sketch_categories", len(lr.popularity.by_category))
        if lr.last_ts > 0:
            self.metrics.gauge("freshness_s", max(0.0, time.time() - lr.last_ts))
        if self.c.last_version:
            self.metrics.gauge("version", self.c.last_version)
        if self._neighbour_pairs:  # known once this run published
            self.metrics.gauge("neighbour_pairs", self._neighbour_pairs)
        if self.lease is not None:
            self.metrics.gauge("lease_epoch", self.lease.epoch)

    def _cache_write(self, action: Callable[[], object]) -> None:
        """The cache is losable (the user store is the durable copy): a cache outage is
        logged once and skipped, never a reason to stop learning."""
        try:
            action()
        except BackendUnavailable as exc:
            self.metrics.incr("cache_errors")
            if not self._cache_down:
                log.warning("cache unavailable, skipping cache writes: %s", exc)
                self._cache_down = True
            return
        if self._cache_down:
            log.warning("cache available again")
            self._cache_down = False

    def _popular_lists(self, n: int = 100) -> dict[str, list[tuple[str, float]]]:
        lr = self.learner
        lists = {"": lr.popular(n)}
        for cat in lr.popularity.by_category:
            lists[cat] = lr.popular(n, cat)
        return lists

    def checkpoint(self) -> int:
        """Persist the learner with the positions it covers; then commit those positions."""
        t0 = time.perf_counter()
        if self.lease is not None:  # only the lease holder writes, under its epoch
            self.lease.check(force=True)
        position = self.source.position()
        self.c.seq = checkpoint_seq(self.c.seq, self.lease.epoch if self.lease else 0)
        self.c.checkpoints += 1
        counters = {k: v for k, v in vars(self.c).items()}
        state = {"learner": self.learner.state(), "source": position,
                 "dlq": self.dlq.position(), "counters": counters}
        self.artifacts.put_checkpoint(self.c.seq, encode(state))
        self.artifacts.prune_checkpoints(self.s.checkpoints_kept)
        self.source.commit(position)
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self.metrics.timing("checkpoint_ms", (time.perf_counter() - t0) * 1000)
        self.metrics.incr("checkpoints")
        return self.c.seq

    def sweep(self) -> int:
        """Remove what crashed writers left in the artifact store (see
        :meth:`ArtifactStore.sweep`): anything older than a lease TTL, which is longer than
        any publish, so no live writer's files go."""
        removed = self.artifacts.sweep(self.s.lease_ttl_s)
        if removed:
            log.info("swept %d orphaned artifacts from the artifact store", removed)
        return removed

    def publish(self) -> int:
        """Publish an embedding version of the current state; returns its number."""
        t0 = time.perf_counter()
        if self.lease is not None:
            self.lease.check(force=True)
        lr = self.learner
        n = len(lr.items)
        nb_ids, nb_w = lr.neighbours.table(n)
        self._neighbour_pairs = int(np.count_nonzero(nb_ids >= 0))
        k = lr.tracker.k
        rolling, plain, decayed = lr.tracker.rolling_all()
        pop = max(plain, decayed)
        quality = {f"recall_at_{k}": rolling, f"popularity_recall_at_{k}": pop,
                   f"plain_popularity_recall_at_{k}": plain,
                   f"decayed_popularity_recall_at_{k}": decayed,
                   "evaluated": lr.tracker.evaluated, "events": lr.events}
        popular = self._popular_lists()
        # The overall list doubles as the popularity ranking of the index service's blend:
        # deep enough for ``pop_depth`` items after the (recent) items a query excludes.
        popular[""] = lr.popular(max(100, lr.tuner.current.pop_depth + self.s.recent_items))
        blobs, manifest = build_blobs(
            item_ids=list(lr.items.ids), vectors=lr.model.item_vectors(n),
            output_weights=lr.model.output_weights(), neighbour_ids=nb_ids,
            neighbour_weights=nb_w, popular=popular,
            items_meta={lr.items.id(r): doc for r, doc in lr.item_info.items()},
            index_type=self.s.index_type, quality=quality,
            offsets=self.source.position(),
            extra={"name": self.s.name, "users": len(lr.users),
                   "recent_items": self.s.recent_items, "candidates": self.s.candidates,
                   "ranking": lr.tuner.current.as_dict(),
                   "tuning": {"population": lr.tuner.report(),
                              "switches": lr.tuner.switches[-5:]}})
        number = self.artifacts.publish(blobs, manifest)
        self.c.versions_published += 1
        self.c.last_version = number
        self.artifacts.prune_versions(self.s.versions_kept, protect={number})
        self.sweep()
        self._since_publish = 0
        self._last_publish = time.monotonic()
        self.metrics.timing("publish_ms", (time.perf_counter() - t0) * 1000)
        self.metrics.incr("versions_published")
        self.metrics.gauge("version", number)
        self.metrics.gauge("neighbour_pairs", self._neighbour_pairs)
        log.info("published embedding version %d (%d items, recall@%d %.4f vs popularity %.4f)",
                 number, n, lr.tracker.k, rolling, pop)
        return number
