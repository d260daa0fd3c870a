"""GMF (the NCF paper's generalized matrix factorisation) in PyTorch, trainable event by event.

``score(u, i) = sigmoid(w^T (p_u * q_i) + b_i + b)``. The sigmoid is monotonic and ``b`` is the
same for every item, so serving ranks by the inner product of the folded vectors
``[p_u * w, 1]`` and ``[q_i, b_i]`` — exact with respect to the model.

Training is a ranking problem on implicit, positive-only feedback: a BPR loss against sampled
negatives. (Fitting every positive towards 1 with MSE has a trivial solution — predict 1 for
everything — and learns no ranking.) Incremental updates freeze the output layer ``w`` and move
only the embedding rows and item biases an event touches, with L2 regularisation applied as
weight decay on those rows; gradients are computed in closed form for a whole micro-batch and
applied through a real torch optimizer as sparse gradients, so one step costs a few matrix
products whatever the table sizes. Negatives are drawn uniformly from the items seen so far and
shared by the events of one step (one ``b x N`` matrix product instead of ``b x N`` gathers).

Only the trainer imports this module (and torch).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from threadpoolctl import threadpool_limits

# The trainer is one process on one core by design: its matrix products are small (a chunk of
# users against the catalogue), and a BLAS or torch thread pool costs more than it gives —
# OpenBLAS with two threads made the evaluation's 64 x 17 x 3000 product 8x slower here.
torch.set_num_threads(1)
threadpool_limits(1, user_api="blas")


class GMF:
    """A growable GMF model with an incremental (``partial_fit``) and a bulk (``fit``) path."""

    def __init__(self, dim: int = 64, users: int = 1024, items: int = 1024, *,
                 growth: float = 0.10, lr: float = 0.05, reg: float = 0.002,
                 negatives: int = 64, passes: int = 2, optimizer: str = "sgd",
                 seed: int = 0) -> None:
        self.dim = dim
        self.growth = growth
        self.lr = lr
        self.reg = reg
        self.negatives = negatives
        self.passes = passes
        self.optimizer_name = optimizer
        self.gen = torch.Generator().manual_seed(seed)
        std = 0.1
        self.P = torch.nn.Parameter(torch.randn(users, dim, generator=self.gen) * std)
        self.Q = torch.nn.Parameter(torch.randn(items, dim, generator=self.gen) * std)
        self.bias = torch.nn.Parameter(torch.zeros(items))
        self.w = torch.nn.Parameter(torch.ones(dim))  # the output neuron's weights
        self.b = torch.nn.Parameter(torch.zeros(()))  # its bias: constant per user, ranking-free
        self.optimizer = self._build_optimizer()
        self.growths = 0

    # --- capacity ------------------------------------------------------------------------------
    @property
    def user_capacity(self) -> int:
        return self.P.shape[0]

    @property
    def item_capacity(self) -> int:
        return self.Q.shape[0]

    def _build_optimizer(self) -> torch.optim.Optimizer:
        params = [self.P, self.Q, self.bias]
        if self.optimizer_name == "adagrad":
            return torch.optim.Adagrad(params, lr=self.lr)
        return torch.optim.SGD(params, lr=self.lr)

    def _grow(self, param: torch.nn.Parameter, rows: int) -> torch.nn.Parameter:
        extra = rows - param.shape[0]
        if param.dim() == 2:
            fresh = torch.randn(extra, param.shape[1], generator=self.gen) * 0.1
        else:
            fresh = torch.zeros(extra)
        return torch.nn.Parameter(torch.cat([param.detach(), fresh]))

    def _grown_rows(self, rows: int) -> int:
        # Rounded first: 100 * 1.1 is 110.00000000000001 in floating point, not a reason for 111.
        return math.ceil(round(rows * (1 + self.growth), 6))

    def ensure_capacity(self, users: int, items: int) -> bool:
        """Grow a table by ``growth`` (or more, if needed) when rows overflow it.

        Existing rows are kept bit for bit; the optimizer is rebuilt to cover the new rows (its
        per-row state, for Adagrad, is carried over).
        """
        if users <= self.user_capacity and items <= self.item_capacity:
            return False
        grew = False
        old_state = self.optimizer.state_dict()
        if users > self.user_capacity:
            rows = max(users, self._grown_rows(self.user_capacity))
            self.P = self._grow(self.P, rows)
            grew = True
        if items > self.item_capacity:
            rows = max(items, self._grown_rows(self.item_capacity))
            self.Q = self._grow(self.Q, rows)
            self.bias = self._grow(self.bias, rows)
            grew = True
        if grew:
            self.growths += 1
            self.optimizer = self._build_optimizer()
            if self.optimizer_name == "adagrad":
                self._carry_adagrad_state(old_state)
        return grew

    def _carry_adagrad_state(self, old: dict) -> None:
        for param, (_, st) in zip(self.optimizer.param_groups[0]["params"],
                                  sorted(old["state"].items()), strict=False):
            new = self.optimizer.state[param]
            if "sum" in st and "sum" in new:
                new["sum"][: st["sum"].shape[0]] = st["sum"]
                new["step"] = st["step"]

    # --- incremental learning ------------------------------------------------------------------
    def partial_fit(self, users: np.ndarray, items: np.ndarray, weights: np.ndarray,
                    n_items: int) -> float:
        """Learn one micro-batch (rows must fit the tables); ``w`` is frozen. Returns the BPR
        loss (estimated on up to 256 events)."""
        if len(users) == 0 or n_items < 2:
            return 0.0
        u = torch.from_numpy(np.ascontiguousarray(users, dtype=np.int64))
        i = torch.from_numpy(np.ascontiguousarray(items, dtype=np.int64))
        ew = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)).unsqueeze(1)
        n_neg = self.negatives
        reg = self.reg
        sgd = isinstance(self.optimizer, torch.optim.SGD)
        loss = 0.0
        with torch.no_grad():
            w = self.w.detach()
            P, Q, bias = self.P, self.Q, self.bias
            ew_n = ew / n_neg
            for _ in range(self.passes):
                j = torch.randint(0, n_items, (n_neg,), generator=self.gen)
                pu, qi, qj = P.index_select(0, u), Q.index_select(0, i), Q.index_select(0, j)
                puw = pu * w
                pos = (puw * qi).sum(1, keepdim=True) + bias.index_select(0, i).unsqueeze(1)
                neg = torch.addmm(bias.index_select(0, j).unsqueeze(0), puw, qj.T)
                # d(-log sigmoid(x))/dx = -sigmoid(-x) for x = pos - neg, averaged over the
                # shared negatives.
                sig = torch.sigmoid(neg - pos)
                g = sig * ew_n
                gsum = g.sum(1, keepdim=True)
                gcol = g.sum(0)
                grad_u = torch.addmm(gsum * qi, g, qj, alpha=-1.0).mul_(w).neg_().add_(pu,
                                                                                      alpha=reg)
                grad_i = (gsum * puw).neg_().add_(qi, alpha=reg)
                grad_j = torch.addmm(qj * (reg * (gcol > 0)).unsqueeze(1), g.T, puw)
                if sgd:
                    # Plain SGD on the touched rows, exactly what torch.optim.SGD does with
                    # these sparse gradients (duplicate rows add up), without building them.
                    step = -self.lr
                    P.index_put_((u,), grad_u.mul_(step), accumulate=True)
                    Q.index_put_((i,), grad_i.mul_(step), accumulate=True)
                    Q.index_put_((j,), grad_j.mul_(step), accumulate=True)
                    bias.index_put_((i,), gsum.squeeze(1) * -step, accumulate=True)
                    bias.index_put_((j,), gcol * step, accumulate=True)
                else:
                    P.grad = torch.sparse_coo_tensor(u.unsqueeze(0), grad_u, P.shape,
                                                     check_invariants=False)
                    rows = torch.cat([i, j]).unsqueeze(0)
                    Q.grad = torch.sparse_coo_tensor(rows, torch.cat([grad_i, grad_j]), Q.shape,
                                                     check_invariants=False)
                    bias.grad = torch.sparse_coo_tensor(
                        rows, torch.cat([-gsum.squeeze(1), gcol]), bias.shape,
                        check_invariants=False)
                    self.optimizer.step()
            # Mean BPR loss of the last pass, -log sigmoid(x) = -log(1 - sigmoid(-x)), estimated
            # on (at most) its first 256 events.
            loss = float(-torch.log1p(-sig[:256].clamp(max=1 - 1e-7)).mean())
        P.grad = Q.grad = bias.grad = None
        return loss

    # --- bulk learning -------------------------------------------------------------------------
    def fit(self, users: np.ndarray, items: np.ndarray, weights: np.ndarray | None = None, *,
            epochs: int = 5, batch_size: int = 1024, lr: float = 0.01) -> list[float]:
        """Initial (bulk) training: every parameter, output layer included, by autograd + Adam."""
        n_items = int(items.max()) + 1
        self.ensure_capacity(int(users.max()) + 1, n_items)
        ew = np.ones(len(users), np.float32) if weights is None else weights.astype(np.float32)
        u_all = torch.from_numpy(users.astype(np.int64))
        i_all = torch.from_numpy(items.astype(np.int64))
        w_all = torch.from_numpy(ew)
        opt = torch.optim.Adam([self.P, self.Q, self.bias, self.w], lr=lr)
        losses = []
        for _ in range(epochs):
            perm = torch.randperm(len(u_all), generator=self.gen)
            total = 0.0
            for start in range(0, len(perm), batch_size):
                idx = perm[start:start + batch_size]
                u, i, ew_b = u_all[idx], i_all[idx], w_all[idx]
                j = torch.randint(0, n_items, (len(idx), 8), generator=self.gen)
                puw = self.P[u] * self.w
                pos = (puw * self.Q[i]).sum(1, keepdim=True) + self.bias[i].unsqueeze(1)
                neg = torch.einsum("bk,bnk->bn", puw, self.Q[j]) + self.bias[j]
                loss = (torch.nn.functional.softplus(neg - pos).mean(1) * ew_b).mean()
                loss = loss + self.reg * (self.P[u].pow(2).sum(1).mean()
                                          + self.Q[i].pow(2).sum(1).mean())
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss) * len(idx)
            losses.append(total / len(perm))
        for p in (self.P, self.Q, self.bias, self.w):
            p.grad = None
        self.optimizer = self._build_optimizer()
        return losses

    # --- serving views -------------------------------------------------------------------------
    def user_vectors(self, rows: np.ndarray) -> np.ndarray:
        """Folded query vectors ``[p_u * w, 1]`` for user rows, float32 (b, dim + 1)."""
        with torch.no_grad():
            pu = self.P[torch.from_numpy(np.asarray(rows, dtype=np.int64))] * self.w
            return torch.cat([pu, torch.ones(len(rows), 1)], 1).numpy().astype(np.float32)

    def item_vectors(self, n_items: int) -> np.ndarray:
        """Item vectors ``[q_i, b_i]`` for the first n item rows, float32 (n, dim + 1)."""
        with torch.no_grad():
            return torch.cat([self.Q[:n_items], self.bias[:n_items].unsqueeze(1)], 1).numpy().copy()

    def output_weights(self) -> np.ndarray:
        """The frozen output layer ``w`` (already folded into user vectors)."""
        return self.w.detach().numpy().copy()

    def scores(self, user_rows: np.ndarray, n_items: int) -> np.ndarray:
        """Inner-product scores of the first n items for each user (b, n)."""
        return self.user_vectors(user_rows) @ self.item_vectors(n_items).T

    # --- persistence ---------------------------------------------------------------------------
    def state(self) -> dict:
        """The model as numpy arrays and plain values (no tensor): a checkpoint holds it
        without pickle (:mod:`recengine.statecodec`), and reading one needs no torch."""
        return {
            "dim": self.dim, "growth": self.growth, "lr": self.lr, "reg": self.reg,
            "negatives": self.negatives, "passes": self.passes,
            "optimizer_name": self.optimizer_name,
            "P": _arrays(self.P), "Q": _arrays(self.Q), "bias": _arrays(self.bias),
            "w": _arrays(self.w), "b": _arrays(self.b),
            # A snapshot (copies): state_dict() holds the live Adagrad accumulators, which
            # later steps (and a model restored from the same dict) would otherwise change.
            "optimizer": _arrays(self.optimizer.state_dict()),
            "rng": _arrays(self.gen.get_state()), "growths": self.growths,
        }

    @classmethod
    def from_state(cls, state: dict) -> GMF:
        m = cls(state["dim"], 1, 1, growth=state["growth"], lr=state["lr"], reg=state["reg"],
                negatives=state["negatives"], passes=state["passes"],
                optimizer=state["optimizer_name"])
        m.P = torch.nn.Parameter(_tensors(state["P"]))
        m.Q = torch.nn.Parameter(_tensors(state["Q"]))
        m.bias = torch.nn.Parameter(_tensors(state["bias"]))
        m.w = torch.nn.Parameter(_tensors(state["w"]))
        m.b = torch.nn.Parameter(_tensors(state["b"]))
        m.optimizer = m._build_optimizer()
        m.optimizer.load_state_dict(_tensors(state["optimizer"]))
        m.gen.set_state(_tensors(state["rng"]))
        m.growths = int(state["growths"])
        return m


def _arrays(value: object) -> object:
    """``value`` with every tensor replaced by a numpy copy (dicts, lists, tuples walked)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_arrays(v) for v in value)
    return value


def _tensors(value: object) -> object:
    """The inverse of :func:`_arrays`: every numpy array or scalar a tensor of its dtype."""
    if isinstance(value, np.ndarray | np.generic):
        return torch.from_numpy(np.array(value))
    if isinstance(value, dict):
        return {k: _tensors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_tensors(v) for v in value)
    return value
