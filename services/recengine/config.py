"""One settings object, built from ``RECENGINE_*`` environment variables and CLI flags.

Configuration flows one way: environment / CLI -> :class:`Settings` -> constructors. Settings are
declared here, once; :mod:`recengine.declare` reads them from the environment (``os.environ``
is read for settings there and nowhere else) and from flags, parses both the same way and keeps
secrets out of every ``repr``. Every field is validated here so a bad value stops the process at
start-up with one readable line (see :class:`recengine.errors.ConfigError`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from recengine.declare import URL, Declared, Secret, hide, password_of, redact_url
from recengine.errors import ConfigError

ENV_PREFIX = "RECENGINE_"

#: Schemes accepted per backend role; the first is the embedded default.
SCHEMES: dict[str, tuple[str, ...]] = {
    "events": ("file", "kafka"),
    "dlq": ("file", "kafka"),
    "users": ("sqlite", "mongodb"),
    "cache": ("memory", "redis"),
    "artifacts": ("file", "mongodb"),
    "metrics": ("off", "statsd"),
    "index": ("http",),
}


@dataclass(frozen=True)
class BackendURL:
    """A parsed backend URL: ``scheme://host:port/path?query``."""

    role: str
    raw: str = field(repr=False)
    """The URL as given, password included: for the client library, never for a message."""
    scheme: str
    host: str
    port: int | None
    path: str
    query: dict[str, str]

    @property
    def redacted(self) -> str:
        """The URL as given, without its password: for messages and logs."""
        return redact_url(self.raw)

    @property
    def file_path(self) -> Path:
        """The local path of a ``file://`` or ``sqlite:///`` URL."""
        return Path(self.path)


def parse_url(role: str, raw: str) -> BackendURL:
    """Parse and validate the URL of one backend role, raising ConfigError on anything odd.

    The messages show the URL without its password."""
    allowed = SCHEMES[role]
    if raw in ("", "off") and "off" in allowed:
        return BackendURL(role, raw, "off", "", None, "", {})
    shown = redact_url(raw)
    if "://" not in raw:
        raise ConfigError(
            f"{role} URL {shown!r} has no scheme; expected one of "
            + ", ".join(f"{s}://" for s in allowed)
        )
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{role} URL {shown!r} is malformed: "
                          f"{hide(str(exc), password_of(raw))}") from None
    scheme = parts.scheme.lower()
    if scheme == "mongodb+srv":
        scheme = "mongodb"
    if scheme == "https":
        scheme = "http"
    if scheme not in allowed:
        raise ConfigError(
            f"{role} URL {shown!r} has unknown scheme {parts.scheme!r}; expected one of "
            + ", ".join(f"{s}://" for s in allowed)
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = parts.hostname or ""
    path = parts.path
    if scheme == "file":
        # file://relative/path and file:///absolute/path are both accepted.
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path:
            raise ConfigError(f"{role} URL {shown!r} names no file")
    elif scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db
        path = raw.split("://", 1)[1].split("?", 1)[0]
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise ConfigError(f"{role} URL {shown!r} names no database file (sqlite:///path)")
    elif scheme in ("kafka", "redis", "mongodb", "statsd", "http") and not host:
        raise ConfigError(f"{role} URL {shown!r} names no host")
    return BackendURL(role, raw, scheme, host, port, path, query)


def _parse_weights(raw: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"event weights {raw!r} must look like 'view=1,click=2,purchase=4'"
            ) from None
    return out


class Settings(Declared, env_prefix=ENV_PREFIX):
    """Every knob of every recengine process. Field docs double as the configuration reference.

    Each field ``x`` is read from ``RECENGINE_X`` and from the CLI flag ``--x``. A field typed
    :data:`~recengine.declare.URL` is shown without its password, a
    :data:`~recengine.declare.Secret` not at all.
    """

    # --- where things live -------------------------------------------------------------------
    name: str = "recengine"
    """Engine name: prefix of Kafka topics (``<name>.events``), Mongo collections and Redis keys."""
    data_dir: str = "./recengine-data"
    """Base directory for the embedded defaults (events file, SQLite, artifacts)."""
    events_url: URL = ""
    """Event stream: ``file://path`` (default ``<data_dir>/events.jsonl``) or
    ``kafka://host:port[/topic]`` (topic default ``<name>.events``)."""
    events_format: str = "auto"
    """Format of a file stream: ``auto`` (by extension), ``jsonl``, ``csv`` or ``tsv``."""
    event_max_bytes: int = 65_536
    """Largest event record (one line, or one event of ``POST /events`` as JSON) accepted;
    a larger one is rejected before it is decoded."""
    event_max_depth: int = 32
    """Deepest nesting of arrays and objects in an event record (the event object is depth 1,
    its metadata 2); a deeper one is rejected before it is decoded."""
    event_max_future_s: float = 3600.0
    """Events whose time is further than this in the future of the validating process's wall
    clock are rejected (a broken producer clock). Decays run on the event count, not on
    time, so this guards against nonsense, not against drift."""
    dlq_url: URL = ""
    """Dead-letter sink for rejected events: ``file://path`` (default under data_dir) or
    ``kafka://host:port[/topic]`` (topic default ``<name>.events.dlq``)."""
    users_url: URL = ""
    """User store: ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (default under
    data_dir), or ``mongodb://host:port/db``."""
    cache_url: URL = "memory://"
    """Cache for item metadata, popular items, hot user vectors: ``memory://`` (in process)
    or ``redis://host:port/db``."""
    artifacts_url: URL = ""
    """Checkpoints and embedding versions: ``file:///dir`` (default ``<data_dir>/artifacts``)
    or ``mongodb://host:port/db`` (GridFS)."""
    metrics_url: URL = "off"
    """Metrics: ``off`` or ``statsd://host:8125``."""
    index_url: URL = "http://127.0.0.1:8081"
    """Where the API finds the index service."""
    index_version: str = "latest"
    """Embedding version the index service loads: a number or ``latest``."""
    index_threads: int = 1
    """OpenMP threads per index worker for one search. 1 is right for serving: parallelism
    comes from gunicorn workers, and OpenMP's spinning threads fight them for the cores
    (measured: 82 ms p50 with the default thread count vs about 2 ms with 1 on 2 cores)."""

    # --- model and learning --------------------------------------------------------------------
    dim: int = 16
    """Embedding dimension k of the GMF model (16 ranks as well as 32 or 64 on the generated
    stream, at a fraction of the cost)."""
    growth: float = 0.10
    """Relative growth of an embedding table when a new user or item overflows it."""
    initial_users: int = 1024
    """Initial rows of the user table."""
    initial_items: int = 1024
    """Initial rows of the item table."""
    lr: float = 0.05
    """SGD learning rate of incremental updates."""
    reg: float = 0.002
    """L2 regularisation (weight decay on the rows an update touches)."""
    negatives: int = 4
    """Uniform negatives sampled per micro-batch pass and shared by its events (BPR)."""
    passes: int = 1
    """SGD passes over each micro-batch."""
    optimizer: str = "sgd"
    """Optimizer of incremental updates: ``sgd`` or ``adagrad`` (both support sparse rows)."""
    event_weights: str = "view=1,click=1.5,add_to_cart=2,purchase=3,rating=1"
    """Weight per event type; unknown types get 1."""
    batch_size: int = 8192
    """Maximum events per micro-batch (larger ones amortise per-batch work; the item-to-item
    sketch also learns better from bigger rounds)."""
    batch_latency_s: float = 0.2
    """Maximum time a micro-batch waits to fill before it is learned."""
    recent_items: int = 20
    """How many of a user's most recent items are kept for the item-to-item signal (and paired
    with each new item for co-occurrence). Self-tuning chooses how many of them score."""
    neighbours: int = 200
    """Item-to-item neighbours kept per item (a Space-Saving sketch per item)."""
    pair_decay: float = 0.9
    """A new item is paired with the user's p-th most recent item (p = 0 the one just before)
    with weight pair_decay**p when co-occurrence is learned."""
    cooc_backward_weight: float = 0.5
    """Weight of a co-occurrence pair in the backward direction (the earlier item as a
    neighbour of the later one); the forward direction weighs 1."""
    neighbour_exponent: float = 0.4
    """Neighbour weights are read as ``C[i, j] / (n_i**(1 - e) * n_j**e)``: 0.5 is the cosine;
    smaller favours popular neighbours."""
    cooc_half_life_events: float = 20_000.0
    """Half-life of item-to-item co-occurrence weights, in events of the stream (not seconds:
    streams run at rates that differ by orders of magnitude)."""
    recency_decay: float = 0.8
    """Initial ranking: weight of the n-th most recent item is recency_decay**n when scoring
    item-to-item (self-tuning moves it)."""
    blend: float = 0.0
    """Initial ranking: weight of the model (MF) rank bonus next to the item-to-item score
    (self-tuning tries it from 0.01 up and keeps it where it helps)."""
    pop_blend: float = 0.3
    """Initial ranking: weight of the popularity rank bonus."""
    pop_source: str = "decayed"
    """Initial ranking: popularity of the bonus, ``all`` (all-time counts) or ``decayed``."""
    pop_depth: int = 1000
    """Initial ranking: how many of the most popular items get a popularity bonus."""
    candidates: int = 200
    """MF candidates (top by inner product) considered by the blend."""
    self_tuning: bool = True
    """Race a population of rankings on the evaluated events and serve the best
    (:mod:`recengine.tuning`); False serves the initial ranking."""
    tuning_population: int = 8
    """Rankings raced at once (the one in force included)."""
    tuning_min_evaluated: int = 2000
    """Evaluated events a challenger is compared on before it may replace the ranking in
    force."""
    tuning_z: float = 3.0
    """Standard errors by which a challenger must win the paired sign test to switch."""

    # --- popularity ----------------------------------------------------------------------------
    popularity_half_life_events: float = 2_000.0
    """Half-life of the decayed popularity (the "popular now" lists and the decayed baseline),
    in events of the stream."""
    popularity_capacity: int = 2000
    """Counters in the popularity heavy-hitters sketch (overall; per category a quarter)."""

    # --- evaluation ----------------------------------------------------------------------------
    eval_k: int = 10
    """k of the rolling recall@k."""
    eval_sample: float = 0.02
    """Fraction of events evaluated prequentially by the live trainer (1.0 = all; ``recengine
    eval`` evaluates all). 0.02 is about 4,000 evaluated events per 200k, a recall@10 near 0.2
    known to about +-0.006."""
    eval_batch_size: int = 32
    """Micro-batch of ``recengine eval``'s replay. A live trainer's micro-batches close on a
    latency bound, so at a real stream's rate they hold a handful of events; replaying a file
    in the trainer's largest batches would rank each batch with neighbours and counts a whole
    batch old (measured on MovieLens, one ranking: recall@10 0.096 at 512, 0.1205 at 64,
    0.1237 at 32)."""
    eval_window: int = 5000
    """Evaluated events in the rolling recall window (about the last 250k events at the default
    sample)."""

    # --- trainer cadence -------------------------------------------------------------------------
    flush_interval_s: float = 1.0
    """How often user vectors and recent items go to the user store and cache."""
    checkpoint_interval_s: float = 30.0
    """How often a checkpoint is written (also at every publish and at shutdown)."""
    checkpoint_every_events: int = 200_000
    """Write a checkpoint after this many events even if the interval has not passed."""
    checkpoints_kept: int = 3
    """Checkpoints retained in the artifact store."""
    publish_every_events: int = 100_000
    """Publish an embedding version after this many new events..."""
    publish_interval_s: float = 300.0
    """...or after this many seconds with new events, whichever comes first."""
    versions_kept: int = 10
    """Embedding versions retained (the newest ones; a pinned or served one is never pruned)."""
    index_type: str = "auto"
    """faiss index: ``auto`` (Flat up to 50k items, IVF above), ``flat``, ``ivf`` or ``hnsw``."""
    follow: bool = True
    """Trainer keeps reading a file stream as it grows (False: stop at its end)."""
    instance: str = ""
    """This trainer replica's name (default: the host name, which is the pod name): it holds
    the trainer lease under this name and is the Kafka group's static member of this name. A
    replica restarted under the same name takes both back at once."""
    lease_ttl_s: float = 30.0
    """Trainer replicas elect the one that learns through a lease in the artifact store; the
    active one renews it as it works, and a standby takes over once it has not been renewed
    for this long. Must exceed the longest publish or checkpoint."""

    # --- API -----------------------------------------------------------------------------------
    api_key: Secret = ""
    """If set, ``POST /events`` requires it in ``X-API-Key`` or ``Authorization: Bearer``."""
    api_key_file: str = ""
    """A file holding the API key (a mounted Secret); wins over ``api_key``."""
    api_max_body_bytes: int = 1_048_576
    """Largest POST /events body accepted."""
    api_max_batch: int = 1000
    """Most events accepted in one POST /events."""
    index_timeout_s: float = 0.5
    """Timeout of one API call to the index service."""

    def __post_init__(self) -> None:
        # The embedded backends live under data_dir unless their URL is given.
        for name, default in self.embedded_urls(self.data_dir).items():
            if not getattr(self, name):
                object.__setattr__(self, name, default)
        checks: list[tuple[bool, str]] = [
            (self.dim > 0, "dim must be positive"),
            (0 < self.growth <= 10, "growth must be in (0, 10]"),
            (self.lr > 0, "lr must be positive"),
            (self.reg >= 0, "reg must be >= 0"),
            (self.negatives > 0, "negatives must be positive"),
            (self.passes > 0, "passes must be positive"),
            (self.batch_size > 0, "batch_size must be positive"),
            (self.batch_latency_s >= 0, "batch_latency_s must be >= 0"),
            (0.0 <= self.eval_sample <= 1.0, "eval_sample must be in [0, 1]"),
            (self.eval_k > 0, "eval_k must be positive"),
            (self.eval_batch_size > 0, "eval_batch_size must be positive"),
            (self.optimizer in ("sgd", "adagrad"), "optimizer must be sgd or adagrad"),
            (
                self.index_type in ("auto", "flat", "ivf", "hnsw"),
                "index_type must be auto, flat, ivf or hnsw",
            ),
            (
                self.events_format in ("auto", "jsonl", "csv", "tsv"),
                "events_format must be auto, jsonl, csv or tsv",
            ),
            (self.recent_items > 0, "recent_items must be positive"),
            (self.neighbours > 0, "neighbours must be positive"),
            (0 < self.recency_decay <= 1, "recency_decay must be in (0, 1]"),
            (0 < self.pair_decay <= 1, "pair_decay must be in (0, 1]"),
            (0 <= self.cooc_backward_weight <= 1, "cooc_backward_weight must be in [0, 1]"),
            (0 <= self.neighbour_exponent <= 1, "neighbour_exponent must be in [0, 1]"),
            (self.cooc_half_life_events > 0, "cooc_half_life_events must be positive"),
            (self.popularity_half_life_events > 0,
             "popularity_half_life_events must be positive"),
            (self.pop_blend >= 0, "pop_blend must be >= 0"),
            (self.pop_source in ("all", "decayed"), "pop_source must be all or decayed"),
            (self.pop_depth >= 1, "pop_depth must be positive"),
            (self.tuning_population >= 1, "tuning_population must be >= 1"),
            (self.tuning_min_evaluated >= 1, "tuning_min_evaluated must be >= 1"),
            (self.tuning_z > 0, "tuning_z must be positive"),
            (self.blend >= 0, "blend must be >= 0"),
            (self.candidates >= 10, "candidates must be >= 10"),
            (self.lease_ttl_s >= 1, "lease_ttl_s must be >= 1"),
            (self.popularity_capacity >= 10, "popularity_capacity must be >= 10"),
            (self.versions_kept >= 1, "versions_kept must be >= 1"),
            (self.index_threads >= 1, "index_threads must be >= 1"),
            (self.checkpoints_kept >= 1, "checkpoints_kept must be >= 1"),
            (self.event_max_bytes >= 256, "event_max_bytes must be >= 256"),
            (self.event_max_depth >= 2, "event_max_depth must be >= 2"),
            (self.event_max_future_s >= 0, "event_max_future_s must be >= 0"),
            (self.index_version == "latest" or self.index_version.isdigit(),
             "index_version must be a number or 'latest'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        _parse_weights(self.event_weights)
        for role in ("events", "dlq", "users", "cache", "artifacts", "metrics", "index"):
            parse_url(role, getattr(self, f"{role}_url"))

    # --- derived -------------------------------------------------------------------------------
    def url(self, role: str) -> BackendURL:
        """The parsed URL of a backend role."""
        return parse_url(role, getattr(self, f"{role}_url"))

    @property
    def instance_name(self) -> str:
        """``instance``, or the host name (in Kubernetes, the pod name)."""
        return self.instance or socket.gethostname()

    def events_api_key(self) -> str:
        """The key ``POST /events`` requires ('' = none), read from ``api_key_file`` if set."""
        if not self.api_key_file:
            return self.api_key
        try:
            key = Path(self.api_key_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"api_key_file {self.api_key_file}: {exc.strerror}") from None
        if not key:
            raise ConfigError(f"api_key_file {self.api_key_file} is empty")
        return key

    @property
    def weights(self) -> dict[str, float]:
        """Event type -> weight."""
        return _parse_weights(self.event_weights)

    @property
    def events_topic(self) -> str:
        return f"{self.name}.events"

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}.events.dlq"

    @staticmethod
    def embedded_urls(data_dir: str) -> dict[str, str]:
        """The URLs of the embedded backends under ``data_dir``, for the ones not given."""
        return {
            "events_url": f"file://{Path(data_dir, 'events.jsonl').as_posix()}",
            "dlq_url": f"file://{Path(data_dir, 'events.dlq.jsonl').as_posix()}",
            "users_url": f"sqlite:///{Path(data_dir, 'users.db').as_posix()}",
            "artifacts_url": f"file://{Path(data_dir, 'artifacts').as_posix()}",
        }
