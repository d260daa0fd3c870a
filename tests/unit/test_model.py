"""GMF: growth, frozen output layer, learning a planted ranking, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recengine.model import GMF

GROUP = 10  # items per group, and users per group


def _planted(rng: np.random.Generator, per_user: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Users 0..9 consume only items 0..9, users 10..19 only items 10..19 (shuffled)."""
    users = np.repeat(np.arange(2 * GROUP), per_user)
    group = users // GROUP
    items = group * GROUP + rng.integers(0, GROUP, len(users))
    order = rng.permutation(len(users))
    return users[order], items[order]


def _assert_each_user_ranks_own_group_first(model: GMF) -> None:
    scores = model.scores(np.arange(2 * GROUP), 2 * GROUP)
    assert scores.shape == (2 * GROUP, 2 * GROUP)
    for u in range(2 * GROUP):
        own = slice(0, GROUP) if u < GROUP else slice(GROUP, 2 * GROUP)
        other = slice(GROUP, 2 * GROUP) if u < GROUP else slice(0, GROUP)
        assert scores[u, own].min() > scores[u, other].max(), f"user {u}"


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_growth_keeps_old_rows_bit_for_bit_and_grows_by_the_ratio(optimizer: str) -> None:
    model = GMF(dim=8, users=100, items=1000, growth=0.1, optimizer=optimizer)
    P, Q, bias = model.P.detach().clone(), model.Q.detach().clone(), model.bias.detach().clone()
    assert model.ensure_capacity(101, 1001)
    assert model.user_capacity == 110
    assert model.item_capacity == 1100
    assert model.growths == 1
    assert torch.equal(model.P[:100], P)
    assert torch.equal(model.Q[:1000], Q)
    assert torch.equal(model.bias[:1000], bias)
    assert not model.ensure_capacity(110, 1100)  # fits: nothing changes
    assert model.growths == 1


def test_growth_takes_as_many_rows_as_needed_when_more_than_the_ratio() -> None:
    model = GMF(dim=4, users=10, items=10, growth=0.1)
    model.ensure_capacity(50, 10)
    assert model.user_capacity == 50
    assert model.item_capacity == 10


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_growth_rebuilds_the_optimizer_over_the_new_tables(optimizer: str) -> None:
    model = GMF(dim=4, users=4, items=4, growth=0.5, optimizer=optimizer, negatives=4)
    model.partial_fit(np.array([0, 1]), np.array([0, 1]), np.ones(2), n_items=4)
    model.ensure_capacity(6, 6)
    params = model.optimizer.param_groups[0]["params"]
    assert params[0] is model.P and params[1] is model.Q and params[2] is model.bias
    before = model.P.detach().clone()
    model.partial_fit(np.array([5]), np.array([5]), np.ones(1), n_items=6)
    assert not torch.equal(model.P[5], before[5])  # a new row learns
    assert torch.equal(model.P[:5], before[:5])  # rows without events do not move


def test_adagrad_accumulators_of_old_rows_survive_growth() -> None:
    model = GMF(dim=4, users=4, items=4, growth=0.5, optimizer="adagrad", negatives=4)
    model.partial_fit(np.array([0, 1, 2]), np.array([0, 1, 2]), np.ones(3), n_items=4)
    old = {n: model.optimizer.state[p]["sum"].clone()
           for n, p in zip("PQb", model.optimizer.param_groups[0]["params"], strict=True)}
    assert old["P"][:3].abs().sum() > 0
    model.ensure_capacity(6, 6)
    new = {n: model.optimizer.state[p]["sum"]
           for n, p in zip("PQb", model.optimizer.param_groups[0]["params"], strict=True)}
    for name in "PQb":
        rows = len(old[name])
        assert torch.equal(new[name][:rows], old[name])
        assert not new[name][rows:].any()
    assert new["P"].shape[0] == model.user_capacity


def test_partial_fit_leaves_the_output_layer_unchanged() -> None:
    model = GMF(dim=8, users=20, items=20, negatives=8)
    w = model.w.detach().clone()
    b = model.b.detach().clone()
    rng = np.random.default_rng(0)
    users, items = _planted(rng, per_user=5)
    loss = model.partial_fit(users, items, np.ones(len(users)), n_items=20)
    assert loss > 0
    assert torch.equal(model.w, w)
    assert torch.equal(model.b, b)
    assert model.P.grad is None and model.Q.grad is None


def test_partial_fit_with_nothing_to_learn_is_a_no_op() -> None:
    model = GMF(dim=4, users=4, items=4)
    P = model.P.detach().clone()
    assert model.partial_fit(np.array([], dtype=np.int64), np.array([], dtype=np.int64),
                             np.array([]), n_items=4) == 0.0
    assert model.partial_fit(np.array([0]), np.array([0]), np.ones(1), n_items=1) == 0.0
    assert torch.equal(model.P, P)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_partial_fit_learns_a_planted_ranking(optimizer: str) -> None:
    rng = np.random.default_rng(1)
    lr = 0.1 if optimizer == "sgd" else 0.2
    model = GMF(dim=8, users=2 * GROUP, items=2 * GROUP, lr=lr, negatives=16,
                optimizer=optimizer, seed=1)
    losses = []
    for _ in range(15):
        users, items = _planted(rng)
        for start in range(0, len(users), 32):
            sl = slice(start, start + 32)
            losses.append(model.partial_fit(users[sl], items[sl], np.ones(32), 2 * GROUP))
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    _assert_each_user_ranks_own_group_first(model)


def test_fit_learns_a_planted_ranking() -> None:
    rng = np.random.default_rng(2)
    model = GMF(dim=8, users=4, items=4, seed=2)  # fit grows the tables itself
    users, items = _planted(rng)
    losses = model.fit(users, items, epochs=40, batch_size=64, lr=0.05)
    assert model.user_capacity >= 2 * GROUP and model.item_capacity >= 2 * GROUP
    assert losses[-1] < losses[0]
    _assert_each_user_ranks_own_group_first(model)
    # fit may train w; afterwards the incremental optimizer covers the embeddings only.
    assert all(p is not model.w for p in model.optimizer.param_groups[0]["params"])


def test_serving_vectors_fold_the_output_layer_into_the_user_side() -> None:
    model = GMF(dim=4, users=3, items=5)
    with torch.no_grad():
        model.w.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        model.bias.copy_(torch.arange(5, dtype=torch.float32))
    u = model.user_vectors(np.array([2]))
    q = model.item_vectors(5)
    assert u.shape == (1, 5) and q.shape == (5, 5)
    assert u.dtype == np.float32 and q.dtype == np.float32
    np.testing.assert_allclose(u[0, :4], (model.P[2] * model.w).detach().numpy(), rtol=1e-6)
    assert u[0, 4] == 1.0
    np.testing.assert_allclose(q[:, 4], np.arange(5))
    # <[p*w, 1], [q, b]> = w^T (p * q) + b_i: the GMF logit without the global bias.
    expected = ((model.P[2] * model.Q[:5]) @ model.w + model.bias[:5]).detach().numpy()
    np.testing.assert_allclose(model.scores(np.array([2]), 5)[0], expected, rtol=1e-5)
    np.testing.assert_array_equal(model.output_weights(), [1.0, 2.0, 0.5, -1.0])


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_state_round_trips_and_training_continues_identically(optimizer: str) -> None:
    rng = np.random.default_rng(3)
    model = GMF(dim=8, users=8, items=8, growth=0.25, optimizer=optimizer, negatives=4)
    users, items = _planted(rng, per_user=3)
    model.ensure_capacity(2 * GROUP, 2 * GROUP)
    model.partial_fit(users, items, np.ones(len(users)), 2 * GROUP)
    copy = GMF.from_state(model.state())
    for name in ("P", "Q", "bias", "w", "b"):
        assert torch.equal(getattr(copy, name), getattr(model, name)), name
    assert copy.growths == model.growths
    assert (copy.dim, copy.lr, copy.optimizer_name) == (model.dim, model.lr, optimizer)
    for m in (model, copy):
        m.partial_fit(users, items, np.ones(len(users)), 2 * GROUP)
    for name in ("P", "Q", "bias"):
        assert torch.equal(getattr(copy, name), getattr(model, name)), name
