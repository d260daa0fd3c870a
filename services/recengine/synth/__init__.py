"""Deterministic synthetic interaction stream for the demo, the tests and the benchmarks.

The generator simulates a catalogue and a user base that both grow over time and emits
implicit-feedback events in time order, at any clock (``time_scale``). It is calibrated so
that rankers do on it what they do on real data replayed in time order (test, then learn;
recall@10 over all items seen so far minus the user's own items): plain all-time popularity
is a strong baseline, a naive pointwise GMF hardly beats it, and a simple item-kNN over the
user's recent items beats it by 2-3.5x, as on real streams. Measured with
``tests/support/knn_reference.py`` (``bench/synth_realism.py``; docs/generator.md has the
full table):

============================  =======  =====  =====  ==========  ======  =====
stream                        events   users  items  popularity  kNN     ratio
============================  =======  =====  =====  ==========  ======  =====
default, any time scale       200,000  4,569  2,989  0.0550      0.1369  2.49
MovieLens latest-small (>=4)  48,580   609    6,298  0.0554      0.1151  2.08
============================  =======  =====  =====  ==========  ======  =====

Structure of the simulated world (everything is a pure function of ``SynthConfig``):

* **Taste clusters.** Every item belongs to one of ``clusters`` latent clusters and has a
  position in its cluster's latent sequence (think series, sequels, "more like this"
  shelves). Cluster sizes and item popularity are Zipf-like (``zipf_exponent``), so the
  most popular items draw a large share of every user's events. Every user has a sparse
  mixture over the clusters. Only that mixture is a user-by-item dot product: global
  popularity and the sequences are not, so a pointwise factorisation captures a part of
  what a user does next.
* **Categories.** ``categories`` named categories ("action", "drama", ...) are tied to the
  clusters: an item's category is mostly its cluster's main category.
* **Sessions.** Users act in sessions. A session starts with a popular item of a cluster
  drawn from the user's mixture (or a globally popular item, or the next item in the
  sequence where the user's previous session ended); each next item is a neighbour of
  the previous one in the latent sequence (forward more often than backward), a popular
  item of the same cluster, a popular item of another cluster of the user, a globally
  popular item, or a step back to the item before. So item-to-item co-occurrence carries
  real signal. Users rarely re-consume an item (their last 64 items are avoided, except
  for going back and for the view that precedes a purchase). Sessions are separated by
  hours to days of the world's clock; within a session items are tens of its seconds
  apart. Session starts follow its day/night cycle.
* **Growth and drift.** Users arrive over time (each newcomer starts a session when it
  arrives) and their activity is log-normal (``activity_sigma``), so some histories are
  long and many short; items are released over time and get a popularity burst on
  release, cluster popularity oscillates slowly and each user's mixture drifts towards a
  second mixture over the stream.
* **Clock.** The world runs on its own clock, ``events_per_day`` events per world day: session
  gaps, release bursts, the diurnal cycle and drift are all defined on it. ``time_scale``
  (``seconds``, ``minutes``, ``hours``, ``days`` or a number: the mean seconds between
  consecutive events) maps it onto timestamps and does nothing else, so the same seed at two
  time scales gives the same sequence of events, with ``ts - start_ts`` scaled by the
  ratio of the scales (at ``days`` a world "day" lasts years of timestamps).
* **Event types.** Each step is a ``view`` (most), ``click``, ``add_to_cart`` or
  ``purchase``; most carts and purchases are preceded by a view of the same item.
* **Malformed lines.** About ``malformed_rate`` of the lines are broken in one of several
  ways (see ``MALFORMED_KINDS``); each of them is invalid per the event schema.

A valid event is a dict ``{"user_id": "u123", "item_id": "i456", "event": "view",
"ts": 1700000123.25}``; on an item's first appearance in the stream, and on a random
``metadata_rate`` share of its later events, it also carries ``"category"`` and
``"metadata": {"title": ..., "price": ...}``. Timestamps are epoch seconds (float, two
decimals), non-decreasing, starting at ``start_ts`` (or earlier, so that a long stream at a
slow clock still ends before ``LATEST_END_TS``, in the past: the trainer refuses events from
the future), on average ``time_scale`` apart.

Typical use::

    from recengine.synth import SynthConfig, generate, write_stream

    for rec in generate(SynthConfig(events=10_000, seed=1)):
        if isinstance(rec, str):
            ...  # a malformed line, as the raw text a producer would have sent
        else:
            ...  # a valid event dict

    write_stream("demo-data/events.jsonl", SynthConfig())

The package, by what each module does: ``config`` (``SynthConfig``), ``world`` (the static
structure and its time-dependent weights, ``catalog``), ``simulator`` (sessions, in time
order), ``malformed`` (the broken lines) and ``writers`` (``generate``, ``write_stream``).
"""

from recengine.synth.config import (
    CATEGORY_NAMES,
    EVENT_TYPES,
    LATEST_END_TS,
    TIME_SCALES,
    SynthConfig,
    parse_time_scale,
)
from recengine.synth.malformed import MALFORMED_KINDS, MAX_ID_LENGTH
from recengine.synth.world import catalog
from recengine.synth.writers import SynthSummary, generate, write_stream

__all__ = [
    "CATEGORY_NAMES",
    "EVENT_TYPES",
    "LATEST_END_TS",
    "MALFORMED_KINDS",
    "MAX_ID_LENGTH",
    "TIME_SCALES",
    "SynthConfig",
    "SynthSummary",
    "catalog",
    "generate",
    "parse_time_scale",
    "write_stream",
]
