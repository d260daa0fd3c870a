"""Tests of the reference rankers in tests/support/knn_reference.py."""

from __future__ import annotations

from support.knn_reference import knn_recall, read_tsv, shared_data

MOVIELENS = shared_data("movielens-latest-small_pos.tsv")


def hits(events: list[tuple[str, str, float]]) -> tuple[int, int]:
    """(kNN hits, popularity hits) of a stream."""
    r = knn_recall(events)
    n = int(r["evaluated"])
    return round(r["recall_at_10"] * n), round(r["popularity_recall_at_10"] * n)


def background() -> list[tuple[str, str, float]]:
    """30 users who all consume p0..p14 in order, then 5 who consume x then y."""
    ev = [(f"f{u}", f"p{k}", 0.0) for u in range(30) for k in range(15)]
    ev += [e for u in range(5) for e in ((f"s{u}", "x", 0.0), (f"s{u}", "y", 0.0))]
    return ev


def test_knn_finds_what_follows_the_users_last_item_where_popularity_cannot() -> None:
    base = [*background(), ("t", "p0", 0.0), ("t", "x", 0.0)]
    knn_before, pop_before = hits(base)
    knn_after, pop_after = hits([*base, ("t", "y", 0.0)])
    # y follows x for every user who had x, so it leads t's kNN list; 14 items are more popular.
    assert knn_after == knn_before + 1
    assert pop_after == pop_before


def test_new_items_repeats_and_first_events_are_not_hits() -> None:
    r = knn_recall([("a", "i1", 0.0), ("b", "i1", 1.0), ("a", "i1", 2.0), ("a", "i2", 3.0)])
    # b's first event is not evaluated; a's repeat of i1 and a's never-seen i2 are misses.
    assert r == {"recall_at_10": 0.0, "popularity_recall_at_10": 0.0, "evaluated": 2}


def test_popularity_ranks_by_all_time_count() -> None:
    # Item k is consumed by 12 - k new users (not evaluated); then one of item 11's users
    # takes item 10 (10 candidates are more popular: a miss), then item 9 (9 are: a hit).
    ev = [(f"n{k}_{m}", f"i{k}", 0.0) for k in range(12) for m in range(12 - k)]
    ev += [("n11_0", "i10", 0.0), ("n11_0", "i9", 0.0)]
    r = knn_recall(ev)
    assert r["evaluated"] == 2 and r["popularity_recall_at_10"] == 0.5


def test_reproduces_the_published_movielens_figures() -> None:
    assert MOVIELENS is not None, "../shared/data/movielens-latest-small_pos.tsv is missing"
    r = knn_recall(read_tsv(MOVIELENS))
    assert r["evaluated"] == 47_971
    assert round(r["popularity_recall_at_10"], 4) == 0.0554
    assert round(r["recall_at_10"], 4) == 0.1151
