"""Vocabulary: ids map to dense, stable, never-reused rows."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.vocab import Vocabulary


def test_new_ids_get_rows_in_order_of_first_appearance() -> None:
    v = Vocabulary()
    rows = v.add(["b", "a", "b", "c", "a"])
    np.testing.assert_array_equal(rows, [0, 1, 0, 2, 1])
    assert v.ids == ["b", "a", "c"]
    assert len(v) == 3
    assert rows.dtype == np.int64


def test_known_ids_keep_their_rows_when_more_are_added() -> None:
    v = Vocabulary(["x", "y"])
    np.testing.assert_array_equal(v.add(["z", "x"]), [2, 0])
    assert v.get("y") == 1
    assert v.id(2) == "z"


def test_lookup_marks_unknown_ids_without_adding_them() -> None:
    v = Vocabulary(["x", "y"])
    np.testing.assert_array_equal(v.lookup(["y", "nope", "x"]), [1, -1, 0])
    assert "nope" not in v
    assert v.get("nope") is None
    assert len(v) == 2


def test_lookup_and_add_of_nothing_are_empty() -> None:
    v = Vocabulary()
    assert v.lookup([]).shape == (0,)
    assert v.add([]).shape == (0,)


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])


def test_state_round_trips_and_is_a_copy() -> None:
    v = Vocabulary()
    v.add(["a", "b", "c"])
    state = v.state()
    w = Vocabulary.from_state(state)
    assert w.ids == v.ids
    np.testing.assert_array_equal(w.lookup(["c", "a"]), [2, 0])
    v.add(["d"])
    assert state == ["a", "b", "c"]
    assert "d" not in w
