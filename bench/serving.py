"""Serving benchmark: ``GET /recommend`` through the real gunicorn API and index service,
beside raw in-process faiss search on the same index, measured in one run.

    python bench/serving.py --items 1000000
    python bench/serving.py            # 100k and 1M items

The catalogue is synthetic (clustered item vectors, co-occurrence neighbours, popular lists)
but goes through the real publishing path (``versions.build_blobs`` + the file artifact
store), and users are real records in the SQLite user store, each with recent items, so every
request takes the full path: user store -> index /search (faiss + item-to-item blend) ->
metadata. The load is closed-loop: ``--clients`` processes each keep one keep-alive
connection busy for ``--seconds``. The load generator runs on the same 2 cores as the
services, as the target demands. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recengine import serve
from recengine.artifacts import FileArtifactStore
from recengine.config import Settings
from recengine.stores import SQLiteUserStore, UserRecord
from recengine.versions import build_blobs, load_version


def build_catalogue(data_dir: Path, items: int, users: int, dim: int, k_nb: int,
                    seed: int = 0) -> Settings:
    rng = np.random.default_rng(seed)
    clusters = rng.normal(size=(64, dim)).astype(np.float32)
    assign = rng.integers(0, 64, size=items)
    vectors = np.empty((items, dim + 1), dtype=np.float32)
    for start in range(0, items, 100_000):
        sl = slice(start, min(items, start + 100_000))
        n = sl.stop - sl.start
        vectors[sl, :dim] = clusters[assign[sl]] + 0.5 * rng.normal(size=(n, dim))
        vectors[sl, dim] = rng.normal(scale=0.1, size=n)
    item_ids = [f"i{n}" for n in range(items)]
    nb_ids = rng.integers(0, items, size=(items, k_nb), dtype=np.int64).astype(np.int32)
    nb_w = np.sort(rng.random((items, k_nb), dtype=np.float32), axis=1)[:, ::-1].copy()
    popular = {"": [(f"i{n}", float(1000 - n)) for n in range(100)]}
    meta = {f"i{n}": {"title": f"Item {n}", "category": f"c{assign[n] % 16}"}
            for n in range(min(items, 200_000))}
    settings = Settings.load({"data_dir": str(data_dir)}, env={})
    blobs, manifest = build_blobs(item_ids=item_ids, vectors=vectors,
                                  output_weights=np.ones(dim, np.float32),
                                  neighbour_ids=nb_ids, neighbour_weights=nb_w,
                                  popular=popular, items_meta=meta,
                                  index_type=settings.index_type,
                                  extra={"blend": settings.blend,
                                         "candidates": settings.candidates,
                                         "recent_items": settings.recent_items,
                                         "recency_decay": settings.recency_decay})
    FileArtifactStore(data_dir / "artifacts").publish(blobs, manifest)
    store = SQLiteUserStore(data_dir / "users.db")
    records = []
    for u in range(users):
        vec = np.concatenate([clusters[rng.integers(64)] + 0.3 * rng.normal(size=dim),
                              [1.0]]).astype(np.float32)
        recent = [(f"i{int(x)}", 1.7e9) for x in rng.integers(0, items, size=10)]
        records.append(UserRecord(f"u{u}", vec, 10, recent, time.time()))
    store.upsert(records)
    (data_dir / "events.jsonl").touch()
    return settings


def _client(port: int, users: int, seconds: float, seed: int, out: mp.Queue) -> None:
    rng = np.random.default_rng(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    lat = []
    errors = 0
    deadline = time.perf_counter() + seconds
    while (t0 := time.perf_counter()) < deadline:
        conn.request("GET", f"/recommend?user_id=u{int(rng.integers(users))}&k=10")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or b'"based_on": "user"' not in body.replace(b'":"', b'": "'):
            errors += 1
        lat.append(time.perf_counter() - t0)
    out.put((lat, errors))


def load(port: int, users: int, clients: int, seconds: float) -> dict:
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_client, args=(port, users, seconds, n, q)) for n in range(clients)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    lat = np.concatenate([np.asarray(r[0]) for r in results]) * 1000
    return {"requests": len(lat), "errors": sum(r[1] for r in results),
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "rps": len(lat) / elapsed}


def faiss_baseline(settings: Settings, users: int, queries: int = 3000) -> dict:
    import faiss

    faiss.omp_set_num_threads(settings.index_threads)  # as the index service does
    v = load_version(FileArtifactStore(Path(settings.data_dir) / "artifacts"), "latest")
    store = SQLiteUserStore(Path(settings.data_dir) / "users.db")
    recs = store.get_many([f"u{n}" for n in range(min(users, queries))])
    vecs = [r.vector.reshape(1, -1) for r in recs.values()]
    m = settings.candidates
    for x in vecs[:50]:
        v.index.search(x, m)
    lat = []
    for n in range(queries):
        x = vecs[n % len(vecs)]
        t0 = time.perf_counter()
        v.index.search(x, m)
        lat.append(time.perf_counter() - t0)
    a = np.asarray(lat) * 1000
    return {"faiss_p50_ms": float(np.percentile(a, 50)),
            "faiss_p99_ms": float(np.percentile(a, 99)), "index_type": v.manifest["index_type"]}


def run(items: int, users: int, clients: int, seconds: float, api_workers: int,
        index_workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="recengine-bench-") as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        settings = build_catalogue(data_dir, items, users, 64,
                                   Settings.load({}, env={}).neighbours)
        build_s = time.perf_counter() - t0
        base = faiss_baseline(settings, users)
        index_port, api_port = serve.free_port(), serve.free_port()
        settings = settings.replace(index_url=f"http://127.0.0.1:{index_port}")
        procs = [serve.start("index", settings, index_port, workers=index_workers,
                             log_path=str(data_dir / "index.log")),
                 serve.start("api", settings, api_port, workers=api_workers,
                             log_path=str(data_dir / "api.log"))]
        try:
            serve.wait_ready(f"http://127.0.0.1:{index_port}/readyz", procs[0], 600)
            serve.wait_ready(f"http://127.0.0.1:{api_port}/readyz", procs[1], 60)
            load(api_port, users, clients, 3.0)  # warm-up
            res = load(api_port, users, clients, seconds)
        finally:
            for p in procs:
                serve.stop(p)
    out = {"items": items, **{k: round(v, 3) if isinstance(v, float) else v
                              for k, v in {**res, **base}.items()},
           "overhead_p50_ms": round(res["p50_ms"] - base["faiss_p50_ms"], 3),
           "clients": clients, "api_workers": api_workers, "index_workers": index_workers,
           "build_seconds": round(build_s, 1),
           "targets": {"p99_ms_max": 10, "overhead_p50_ms_max": 2, "rps_min": 500}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--api-workers", type=int, default=2)
    ap.add_argument("--index-workers", type=int, default=2)
    args = ap.parse_args()
    sizes = [args.items] if args.items else [100_000, 1_000_000]
    results = []
    for n in sizes:
        r = run(n, args.users, args.clients, args.seconds, args.api_workers, args.index_workers)
        print(json.dumps(r), file=sys.stderr)
        results.append(r)
    print(json.dumps(results[0] if len(results) == 1 else {"runs": results, **results[-1]}))


if __name__ == "__main__":
    main()
