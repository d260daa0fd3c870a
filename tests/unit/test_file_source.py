"""The file event source: block reads hand out exactly the lines a line-by-line reader would."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from recengine.backends.files import FileEventSource
from recengine.events import is_csv_header


def line_by_line(data: bytes, fmt: str, follow: bool) -> tuple[list[bytes], int]:
    """The contract, one line at a time: complete lines without their line ending, blank lines
    and CSV headers skipped; a last line without newline only once the file is finished."""
    out: list[bytes] = []
    offset = 0
    for line in [part + b"\n" for part in data.split(b"\n")[:-1]] + [data.rsplit(b"\n", 1)[-1]]:
        if not line.endswith(b"\n"):
            if follow or not line:
                break
            offset += len(line)
            if line.strip():
                out.append(line)
            break
        offset += len(line)
        if not line.strip() or (fmt == "csv" and is_csv_header(line)):
            continue
        out.append(line.rstrip(b"\r\n"))
    return out, offset


def random_stream(rng: random.Random, lines: int, messy: bool = True) -> bytes:
    """Event lines; ``messy``: with blank lines of every kind and CRLF endings, else only the
    odd empty line (the common shapes, which take the block path without per-line work)."""
    parts = []
    for n in range(lines):
        kind = rng.random()
        if kind < 0.05:
            blanks = [b"", b"   ", b"\t", b" \r", b"\x0b", b" x"] if messy else [b""]
            parts.append(rng.choice(blanks))
        elif kind < 0.07:
            parts.append(b"user_id,item_id,event,ts")
        elif kind < 0.08:
            parts.append(b'{"user_id":"u","pad":"' + b"x" * rng.randint(70_000, 200_000) + b'"}')
        else:
            parts.append(b'{"user_id":"u%d","item_id":"i%d","ts":%d}' % (n, rng.randint(0, 99), n))
    ending = [b"\n", b"\r\n", b"\r\r\n"] if messy else [b"\n"]
    return b"".join(p + rng.choice(ending) for p in parts)


@pytest.mark.parametrize("messy", [True, False])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_polls_hand_out_every_line_once_in_order(tmp_path: Path, seed: int, fmt: str,
                                                 messy: bool) -> None:
    rng = random.Random(seed)
    data = random_stream(rng, 600, messy)
    if seed % 2:
        data += b'{"user_id":"tail","item_id":"t","ts":1}'  # no final newline
    path = tmp_path / f"events.{fmt}"
    path.write_bytes(data)
    for follow in (False, True):
        expected, end = line_by_line(data, fmt, follow)
        src = FileEventSource(path, fmt, follow=follow)
        got: list[bytes] = []
        while raws := src.poll(rng.choice([1, 3, 7, 50, 1000]), 0.0):
            got += raws
            # Every position is a line boundary another source can resume from.
            resumed = FileEventSource(path, fmt, follow=follow)
            resumed.seek(src.position())
            rest = []
            while more := resumed.poll(10_000, 0.0):
                rest += more
            assert got + rest == expected
            resumed.close()
        assert got == expected
        assert src.position()["offset"] == end
        src.close()


def test_a_line_being_written_is_handed_out_once_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":')
    src = FileEventSource(path, follow=True)
    assert src.poll(10, 0.0) == [b'{"a":1}']
    assert src.poll(10, 0.0) == []
    with path.open("ab") as fh:
        fh.write(b'2}\n{"c":3}\n')
    assert src.poll(10, 0.0) == [b'{"b":2}', b'{"c":3}']
    assert src.position()["offset"] == path.stat().st_size


def test_a_max_records_cut_leaves_the_rest_for_the_next_poll(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(b'{"n":%d}\n' % n for n in range(10_000)))
    src = FileEventSource(path, follow=False)
    first = src.poll(4_000, 0.0)
    assert first[-1] == b'{"n":3999}' and len(first) == 4_000
    assert src.position()["offset"] == sum(len(line) + 1 for line in first)
    assert src.poll(100_000, 0.0)[0] == b'{"n":4000}'
    assert src.exhausted()
