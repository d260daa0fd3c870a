"""The compiled JSON-lines decoder gives exactly what the string path gives."""

from __future__ import annotations

import random

import numpy as np
import pytest
from support.event_lines import MALFORMED_JSON, random_line, scanner_line

from recengine.config import Settings
from recengine.events import Event, EventBatch
from recengine.sources import decode
from recengine.trainer.id_index import IdIndex
from recengine.trainer.learner import Learner
from recengine.trainer.row_decoder import RowBatch
from recengine.vocab import Vocabulary


def _settings() -> Settings:
    return Settings.load({"event_weights": "view=1,click=2,buy=5"}, env={})


def _both(batches: list[list[bytes]]) -> tuple[Learner, Learner]:
    """Two learners fed the same batches, one through the scanner and one through the exact
    parser (line by line), checking every batch's rows, weights, times, descriptions and
    rejects."""
    fast, exact = Learner(_settings()), Learner(_settings())
    for raws in batches:
        got, got_rejected = fast.decode(raws)
        events, rejected = decode(raws, "jsonl")
        want = exact.rows(events)
        np.testing.assert_array_equal(got.users, want.users)
        np.testing.assert_array_equal(got.items, want.items)
        np.testing.assert_array_equal(got.weights, want.weights)
        assert got.weights.dtype == want.weights.dtype == np.float32
        np.testing.assert_array_equal(got.ts, want.ts)
        assert got.items_before == want.items_before
        assert [(r.raw, r.reason, r.index) for r in got_rejected] == \
            [(r.raw, r.reason, r.index) for r in rejected]
        # The scanner leaves out descriptions that cannot change what the learner knows.
        exact_changes = {row: doc for row, doc in want.item_info.items()
                         if not (row in exact.item_info
                                 and exact.item_info[row].items() >= doc.items())}
        assert [(r, d) for r, d in got.item_info.items() if r in exact_changes] == \
            list(exact_changes.items())
        fast.learn(got, eval_fraction=0.0)
        exact.learn(want, eval_fraction=0.0)
        assert fast.item_info == exact.item_info
        assert fast.categories.ids == exact.categories.ids
        np.testing.assert_array_equal(fast.item_category, exact.item_category)
    assert fast.users.ids == exact.users.ids
    assert fast.items.ids == exact.items.ids
    return fast, exact


def test_scanner_agrees_on_hand_written_lines() -> None:
    valid = [
        b'{"user_id": "u1", "item_id": "i1", "event": "click", "ts": 1700000000}',
        b'{"user_id": 7, "item_id": " i2 ", "ts": "2024-01-01T00:00:00"}',
        b'{"user_id": "u3", "item_id": "i3", "ts": 1700000000123, "category": "books",'
        b' "metadata": {"title": "Dune"}}',
        b'{"user_id": "u4", "item_id": "i4", "ts": "1700000000.5", "category": "",'
        b' "metadata": {}, "event": " view "}',
        b'{"user_id":"u5","item_id":"i5","ts":1208925819614629174706176}',  # after 9999
        b'{"\xffx": 1, "user_id": "u6", "item_id": "i6", "ts": 1700000000}',  # not UTF-8
    ]
    raws = [line for pair in zip(valid, [r for r, _ in MALFORMED_JSON], strict=False)
            for line in pair] + [r for r, _ in MALFORMED_JSON[len(valid):]]
    fast, _ = _both([raws])
    assert fast.users.ids == ["u1", "7", "u3", "u4"]


@pytest.mark.parametrize("seed", range(6))
def test_scanner_agrees_with_the_string_path_on_random_lines(seed: int) -> None:
    rng = random.Random(seed)
    lines = [scanner_line(rng, n) for n in range(6000)]
    sizes = [1, 7, 500, 2000, 3492]
    batches, at = [], 0
    for size in sizes:
        batches.append(lines[at:at + size])
        at += size
    fast, _ = _both(batches)
    assert len(fast.users) > 100


@pytest.mark.parametrize("seed", range(4))
def test_scanner_agrees_on_random_lines_that_are_mostly_invalid(seed: int) -> None:
    rng = random.Random(seed)
    lines = [random_line(rng, n) for n in range(3000)]
    _both([lines[:1000], lines[1000:]])


def test_most_lines_of_a_producers_stream_take_the_scanner() -> None:
    lines = [(f'{{"user_id":"u{n % 97}","item_id":"i{n % 31}","event":"click","ts":{1.7e9 + n},'
              f'"category":"c{n % 31 % 4}","metadata":{{"title":"T{n % 31}"}}}}').encode()
             for n in range(4000)]
    learner = Learner(_settings())
    batch, rejected = learner.decode(lines[:2000])
    assert not rejected and len(batch) == 2000
    assert len(batch.item_info) == 31  # every item's first description is new
    np.testing.assert_array_equal(batch.weights, np.full(2000, 2.0, dtype=np.float32))
    learner.learn(batch, eval_fraction=0.0)
    again, _ = learner.decode(lines[2000:])
    assert again.item_info == {}  # the same descriptions again change nothing
    assert again.items_before == 31


def test_a_description_changed_by_the_string_path_is_decoded_again() -> None:
    learner = Learner(_settings())
    line = b'{"user_id":"u","item_id":"i","ts":1700000000,"metadata":{"title":"A"}}'
    batch, _ = learner.decode([line])
    learner.learn(batch, eval_fraction=0.0)
    learner.learn(learner.decode([line.replace(b'"A"', b'"B"')]
                                 )[0], eval_fraction=0.0)
    assert learner.item_info[0] == {"title": "B"}
    learner.learn(EventBatch.from_events([Event("u", "i", "view", 1.7e9, None, {"title": "C"})]),
                  eval_fraction=0.0)
    again, _ = learner.decode([line.replace(b'"A"', b'"B"')])
    assert again.item_info == {0: {"title": "B"}}


def test_text_lines_and_other_formats_take_the_string_path() -> None:
    learner = Learner(_settings())
    batch, rejected = learner.decode(['{"user_id":"u","item_id":"i","ts":1700000000}', "nope"])
    assert isinstance(batch, RowBatch) and len(batch) == 1 and len(rejected) == 1
    batch, rejected = learner.decode([b"u1\ti1\t1700000000"], "tsv")
    assert len(batch) == 1 and learner.users.ids == ["u", "u1"]


def test_id_index_follows_its_vocabulary_through_resizes() -> None:
    vocab = Vocabulary()
    index = IdIndex(vocab)
    ids = [f"id-{n}" for n in range(5000)] + ["é", "\ud800"]
    for start in range(0, len(ids), 701):
        vocab.add(ids[start:start + 701])
        index.sync()
    assert all(index.lookup(x.encode("utf-8", "surrogatepass")) == n for n, x in enumerate(ids))
    assert index.lookup(b"id-5000") == -1
    assert index.lookup(b"") == -1


def test_lines_whose_metadata_only_the_exact_parser_decides_keep_first_appearance() -> None:
    # msgspec refuses NaN and a broken object; json.loads takes NaN and rejects the other. The
    # first line of "new" is the first, then the second, so the rows must follow.
    lines = [b'{"user_id":"old","item_id":"a","ts":1700000000}',
             b'{"user_id":"new1","item_id":"b","ts":1700000001,"metadata":{"x":NaN}}',
             b'{"user_id":"new2","item_id":"c","ts":1700000002,"metadata":{"x":]}',
             b'{"user_id":"new3","item_id":"c","ts":1700000003}',
             b'{"user_id":"new1","item_id":"d","ts":1700000004}',
             b'{"user_id":"new2","item_id":"b","ts":1700000005}']
    fast, _ = _both([lines[:1], lines[1:]])
    assert fast.users.ids == ["old", "new1", "new3", "new2"]
    assert np.isnan(fast.item_info[1]["x"])
