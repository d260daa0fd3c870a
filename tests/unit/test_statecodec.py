"""Checkpoints without pickle: exact round trips, checksums, and the trainer's fallback to the
previous checkpoint when the newest is corrupt."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recengine.backends.files import FileArtifactStore
from recengine.config import Settings
from recengine.errors import ArtifactError
from recengine.statecodec import MAGIC, CorruptState, decode, encode
from recengine.trainer.learner import Learner
from recengine.trainer.run import build_trainer

T0 = 1_700_000_000


def lines(n: int, seed: int, start: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for k in range(start, start + n):
        u = rng.randrange(40)
        item = (u * 5 + rng.choice((0, 1, 2, 4))) % 90
        doc: dict = {"user_id": f"u{u}", "item_id": f"i{item}", "ts": T0 + k,
                     "event": rng.choice(("view", "click", "purchase"))}
        if rng.random() < 0.2:
            doc["category"] = f"c{item % 3}"
            doc["metadata"] = {"title": f"t{item}", "$odd": [1, None, 2.5]}
        out.append(json.dumps(doc).encode())
    return out


def assert_same(a: object, b: object, path: str = "") -> None:
    """Equal values of equal types, arrays bit for bit (NaN included)."""
    assert type(a) is type(b), path
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path  # type: ignore[union-attr]
        assert a.tobytes() == b.tobytes(), path  # type: ignore[union-attr]
    elif isinstance(a, dict):
        assert list(a) == list(b), path  # type: ignore[arg-type]
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")  # type: ignore[index]
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path  # type: ignore[arg-type]
        for n, (x, y) in enumerate(zip(a, b, strict=True)):  # type: ignore[call-overload]
            assert_same(x, y, f"{path}[{n}]")
    elif isinstance(a, float) and a != a:
        assert b != b, path
    else:
        assert a == b, path


def test_every_kind_of_value_round_trips_exactly() -> None:
    state = {
        "none": None, "flags": [True, False], "big": 2**130 + 1, "neg": -7,
        "floats": [0.1, -0.0, 1e308, 5e-324, float("inf"), float("-inf"), float("nan")],
        "text": "é\u2603\x00", "tuple": (1, "a", (2.5,)),
        "int_keys": {3: "c", 1: {"x": np.arange(3, dtype=np.int8)}},
        "tuple_keys": {(1, "a"): 2}, "$dollar": {"$a": 1, "$t": [1]},
        "arrays": [np.zeros((0, 4), dtype=np.float32), np.array([np.nan, 1.5]),
                   np.array(["ab", "c"]), np.arange(12, dtype=np.uint8).reshape(3, 4)[:, ::2],
                   np.array(3.25, dtype=np.float32)],
        "scalars": [np.float32(0.1), np.int64(-3), np.uint64(2**64 - 1), np.bool_(True)],
    }
    assert_same(decode(encode(state)), state)


def test_object_arrays_and_foreign_objects_are_refused_when_written() -> None:
    with pytest.raises(TypeError, match="object arrays"):
        encode({"a": np.array([{}], dtype=object)})
    with pytest.raises(TypeError, match="cannot hold a set"):
        encode({"a": {1, 2}})


def test_a_learner_restored_from_its_checkpoint_bytes_continues_bit_identically() -> None:
    """Restored from the bytes, a learner is the one restored from the state in memory (whose
    neighbour lists ``from_state`` re-sorts by id), and both go on bit for bit; the
    original's model, counts and recall go on identically too."""
    settings = Settings(eval_sample=0.5, tuning_min_evaluated=20)
    original = Learner(settings, seed=3)
    stream = lines(3000, seed=11)
    for start in range(0, 1500, 64):
        batch, _ = original.decode(stream[start:start + 64])
        original.learn(batch)
    state = original.state()
    copy = Learner.from_state(settings, decode(encode(state)))
    in_memory = Learner.from_state(settings, state)
    assert_same(copy.state(), in_memory.state())
    for learner in (original, copy, in_memory):
        for start in range(1500, 3000, 64):
            batch, _ = learner.decode(stream[start:start + 64])
            learner.learn(batch)
    assert_same(copy.state(), in_memory.state())
    after, ours = original.state(), copy.state()
    for part in ("model", "counts", "tracker", "tuner", "popularity", "users", "items", "rng",
                 "recent", "seen", "item_info", "user_events", "events", "last_ts"):
        assert_same(ours[part], after[part], part)
    assert copy.tracker.evaluated > 500


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "pickle", "magic only"])
def test_damaged_bytes_are_corrupt_state_before_anything_is_read(damage: str) -> None:
    data = encode({"a": np.arange(1000.0), "b": "x"})
    broken = {"truncate": data[: len(data) // 2],
              "flip": data[:-10] + bytes([data[-10] ^ 1]) + data[-9:],
              "empty": b"", "pickle": b"\x80\x04\x95" + data[3:],
              "magic only": MAGIC}[damage]
    with pytest.raises(CorruptState):
        decode(broken)


def test_a_checkpoint_reads_without_torch(tmp_path: Path) -> None:
    learner = Learner(Settings())
    batch, _ = learner.decode(lines(200, seed=1))
    learner.learn(batch)
    path = tmp_path / "ckpt.bin"
    path.write_bytes(encode({"learner": learner.state()}))
    code = ("import sys; sys.modules['torch'] = None\n"
            "from recengine.statecodec import decode\n"
            f"s = decode(open({str(path)!r}, 'rb').read())\n"
            "assert 'torch' not in {type(v).__module__.split('.')[0] "
            "for v in s['learner']['model'].values()}\n"
            "print(s['learner']['model']['P'].shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("(")


# --- the trainer falls back to the previous checkpoint ---------------------------------------
def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=str(data_dir), follow=False, batch_size=100, metrics_url="off",
                    checkpoints_kept=5, checkpoint_every_events=500,
                    publish_every_events=10**9, checkpoint_interval_s=10**6)


def test_a_truncated_newest_checkpoint_resumes_from_the_previous_one_with_exact_counts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stream = lines(2000, seed=5)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(x + b"\n" for x in stream[:1200]))
    first = build_trainer(_settings(tmp_path))
    first.run()
    first.close()
    store = FileArtifactStore(tmp_path / "artifacts")
    seqs = store.checkpoints()
    assert len(seqs) >= 2
    newest = store.ckpt_dir / f"checkpoint-{seqs[-1]:012d}.bin"
    newest.write_bytes(newest.read_bytes()[:-100])  # torn
    previous = decode(store.get_checkpoint(seqs[-2]))["counters"]

    with events.open("ab") as fh:
        fh.write(b"".join(x + b"\n" for x in stream[1200:]))
    second = build_trainer(_settings(tmp_path))
    assert f"checkpoint {seqs[-1]} is not usable" in caplog.text
    assert second.c.applied == previous["applied"] < 1200
    second.run()
    second.close()
    assert second.c.applied == 2000 and second.c.rejected == 0
    final = decode(store.latest_checkpoint()[1])  # type: ignore[index]
    assert final["counters"]["applied"] == 2000
    assert store.checkpoints()[-1] > seqs[-1]

    # The same stream in one clean run gives the same model.
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "events.jsonl").write_bytes(events.read_bytes())
    one = build_trainer(_settings(clean))
    one.run()
    one.close()
    assert one.learner.events == second.learner.events == 2000
    assert list(one.learner.items.ids) == list(second.learner.items.ids)


def test_when_no_checkpoint_is_readable_the_trainer_stops_with_one_line(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    store.put_checkpoint(1, b"\x80\x04 a pickle from an older release")
    (tmp_path / "events.jsonl").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"none of the 1 checkpoints .* is readable"):
        build_trainer(_settings(tmp_path))
