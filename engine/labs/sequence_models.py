"""The sequence lab's models (D2L 8.1, and 8.6's RNN for the 8.1 model) and their three kinds of prediction.

A *window model* predicts ``x_{t+1}`` from the last ``span`` observations, read as
features (``Window``): τ plain observations (D2L's ``features[:, i] = x[i : T - τ + i]``),
or blocks of older observations merged into their mean, so that m features cover
more than m steps. Three window models:

* ``LinearWindow``: ``x̂ = w·f + b`` fitted by least squares (float64, ``numpy.linalg.lstsq``);
* ``MLPWindow``: D2L's ``Linear(τ, 10), ReLU, Linear(10, 1)``, Xavier-uniform weights, Adam, squared loss;
* ``RNNWindow``: a registered recurrent cell (``engine.models.RecurrentCore``) reads the
  features one per time step, oldest first; a linear layer maps its last state to ``x̂``.

``HistoryRNN`` is the same cell reading the whole history ``x_1 … x_t``, its state carried
along; it is trained on random subsequences of ``num_steps`` (D2L 8.3's random sampling, each
starting from a zero state) and predicts by reading the series from its start.

Predictions, for a series ``x`` of length T (arrays of length T, NaN where there is none):

* one-step: ``x̂_t`` from the observations up to ``t - 1``;
* k-step: ``x̂_t`` from the observations up to ``t - k``, the model's own outputs fed back for the
  k - 1 steps between (D2L 8.1.3; computed for every start at once, so every t gets one);
* multi-step: observations up to ``split - 1`` (the end of the training part), the model's own
  outputs from there on.

Training yields ``(epoch, loss)`` after each epoch, ``loss`` the MSE on the training targets (for
``HistoryRNN`` before its last epoch: on the epoch's subsequences, each read from a zero state).
Left out: the experiments and their tables (``engine.labs.sequence``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.models import RecurrentCore, State

Fit = Iterator[tuple[int, float]]  # (epoch, MSE on the training targets), after each epoch


@dataclass(frozen=True)
class Window:
    """Features of the past: blocks of consecutive observations, newest first, each feature a block's mean.

    ``Window((1, 1, 1, 1))`` is D2L's τ = 4; ``Window((1, 1, 2, 4))`` reads x_t, x_{t-1}, the mean of
    x_{t-2}, x_{t-3} and that of x_{t-4} … x_{t-7}: four features over eight steps.
    """

    blocks: tuple[int, ...]

    @classmethod
    def plain(cls, tau: int) -> Window:
        return cls((1,) * tau)

    @property
    def span(self) -> int:
        """Observations the features read."""
        return sum(self.blocks)

    @property
    def label(self) -> str:
        if set(self.blocks) == {1}:
            return f"τ={len(self.blocks)}"
        return "+".join(map(str, self.blocks))

    def matrix(self) -> np.ndarray:
        """(span, m): ``features = windows @ matrix``, windows oldest first, features oldest block first."""
        M = np.zeros((self.span, len(self.blocks)))
        end = self.span
        for j, size in enumerate(self.blocks):  # newest block first: it ends the window
            M[end - size:end, len(self.blocks) - 1 - j] = 1.0 / size
            end -= size
        return M


def windows(x: np.ndarray, span: int) -> np.ndarray:
    """Every run of ``span`` consecutive observations: row s is ``x[s : s + span]`` (its target: ``x[s + span]``)."""
    return np.lib.stride_tricks.sliding_window_view(x, span)


class WindowModel:
    """Predicts the next observation from a window's features."""

    name = ""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.M = window.matrix()

    def fit(self, W: np.ndarray, y: np.ndarray) -> Fit:
        """Train on raw windows ``W`` (N, span) and their targets ``y`` (N,)."""
        raise NotImplementedError

    def predict_features(self, F: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, W: np.ndarray) -> np.ndarray:
        """x̂ for raw windows (N, span), oldest first."""
        return self.predict_features(W @ self.M)

    def rollout(self, W: np.ndarray, steps: int) -> np.ndarray:
        """(N, steps): from each window, ``steps`` predictions, each fed back as the newest observation."""
        W, out = np.array(W, dtype=np.float64), np.empty((len(W), steps))
        for j in range(steps):
            out[:, j] = self.predict(W)
            W = np.concatenate([W[:, 1:], out[:, j:j + 1]], axis=1)
        return out

    def k_step(self, x: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
        """For each k, x̂_t from x up to t - k (NaN for t < span + k - 1)."""
        span, T = self.window.span, len(x)
        starts = windows(x, span)[: T - span]  # every window that has a target
        pred = self.rollout(starts, max(ks))  # pred[s, j] is x̂ at s + span + j
        out = {}
        for k in ks:
            full = np.full(T, np.nan)
            full[span + k - 1:] = pred[: T - span - k + 1, k - 1]
            out[k] = full
        return out

    def multi_step(self, x: np.ndarray, split: int) -> np.ndarray:
        """Observations before ``split``, own outputs from ``split`` on (NaN before it)."""
        span, out = self.window.span, np.full(len(x), np.nan)
        out[split:] = self.rollout(x[None, split - span:split], len(x) - split)[0]
        return out


class LinearWindow(WindowModel):
    """``x̂ = f·w + b`` by least squares."""

    name = "linear"

    def fit(self, W: np.ndarray, y: np.ndarray) -> Fit:
        A = np.c_[W @ self.M, np.ones(len(W))]
        coef = np.linalg.lstsq(A, y, rcond=None)[0]
        self.w, self.b = coef[:-1], float(coef[-1])
        yield 1, float(np.mean((A @ coef - y) ** 2))

    def predict_features(self, F: np.ndarray) -> np.ndarray:
        return F @ self.w + self.b  # type: ignore[no-any-return]


class _TorchWindow(WindowModel):
    """A torch model on the features, trained with Adam on shuffled minibatches (D2L 8.1.2's ``train``)."""

    net: nn.Module

    def __init__(self, window: Window, *, epochs: int, batch_size: int, lr: float, seed: int) -> None:
        super().__init__(window)
        self.epochs, self.batch_size, self.lr, self.seed = epochs, batch_size, lr, seed

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        """(N, m) features -> (N,) predictions."""
        raise NotImplementedError

    def fit(self, W: np.ndarray, y: np.ndarray) -> Fit:
        rng = np.random.default_rng(self.seed)
        F = torch.tensor(W @ self.M, dtype=torch.float32)
        Y = torch.tensor(y, dtype=torch.float32)
        optimizer = torch.optim.Adam(self.net.parameters(), self.lr)
        for epoch in range(1, self.epochs + 1):
            for idx in np.array_split(rng.permutation(len(F)), max(1, -(-len(F) // self.batch_size))):
                i = torch.from_numpy(idx)
                loss = ((self.forward(F[i]) - Y[i]) ** 2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():  # D2L's evaluate_loss: the squared error over all training examples
                yield epoch, float(((self.forward(F) - Y) ** 2).mean())

    def predict_features(self, F: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.forward(torch.tensor(F, dtype=torch.float32)).double().numpy()


class MLPWindow(_TorchWindow):
    """D2L's net: ``Linear(m, num_hiddens), ReLU, Linear(num_hiddens, 1)`` with Xavier-uniform weights."""

    name = "mlp"

    def __init__(self, window: Window, *, num_hiddens: int = 10, **train: float) -> None:
        super().__init__(window, **train)  # type: ignore[arg-type]
        torch.manual_seed(self.seed)
        m = len(window.blocks)
        self.net = nn.Sequential(nn.Linear(m, num_hiddens), nn.ReLU(), nn.Linear(num_hiddens, 1))
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        return self.net(F)[:, 0]  # type: ignore[no-any-return]


class RNNWindow(_TorchWindow):
    """A recurrent cell over the window's features (one per step, oldest first); x̂ from its last state."""

    def __init__(self, window: Window, *, kind: str, num_hiddens: int, **train: float) -> None:
        super().__init__(window, **train)  # type: ignore[arg-type]
        torch.manual_seed(self.seed)
        self.name = f"{kind} window"
        self.core = RecurrentCore(kind, 1, num_hiddens)
        self.head = nn.Linear(num_hiddens, 1)
        self.net = nn.ModuleList([self.core, self.head])

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        Hs, _ = self.core(F.T[:, :, None], self.core.begin_state(len(F)))
        return self.head(Hs[-1])[:, 0]  # type: ignore[no-any-return]


def _cat(states: list[State]) -> State:
    """States of batch 1 stacked into one batch: every cell keeps its batch in dimension -2."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, dim=-2) for parts in zip(*states))  # type: ignore[return-value]
    return torch.cat(states, dim=-2)  # type: ignore[arg-type]


class HistoryRNN:
    """A recurrent cell reading the whole history; x̂_{t+1} = head(H_t)."""

    def __init__(self, *, kind: str, num_hiddens: int, epochs: int, num_steps: int, batch_size: int, lr: float,
                 seed: int) -> None:
        torch.manual_seed(seed)
        self.name = f"{kind} history"
        self.core = RecurrentCore(kind, 1, num_hiddens)
        self.head = nn.Linear(num_hiddens, 1)
        self.epochs, self.num_steps, self.batch_size, self.lr, self.seed = epochs, num_steps, batch_size, lr, seed

    def _run(self, X: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """(L, B) inputs -> (L, B) predictions of the next value each, and the state after them."""
        if state is None:
            state = self.core.begin_state(X.shape[1])
        Hs, state = self.core(X[:, :, None], state)
        return self.head(Hs)[:, :, 0], state

    def fit(self, x_train: np.ndarray) -> Fit:
        """D2L's random sampling over ``x_train``: each epoch a random offset, non-overlapping subsequences of
        ``num_steps`` inputs (targets one step later) in shuffled minibatches, each from a zero state."""
        rng, L = np.random.default_rng(self.seed), min(self.num_steps, len(x_train) - 1)
        X = torch.tensor(x_train, dtype=torch.float32)
        optimizer = torch.optim.Adam([*self.core.parameters(), *self.head.parameters()], self.lr)
        for epoch in range(1, self.epochs + 1):
            offset = int(rng.integers(0, min(L, len(x_train) - L)))  # leaves at least one subsequence
            starts = rng.permutation(np.arange(offset, len(x_train) - L, L))
            total = 0.0
            for batch in np.array_split(starts, max(1, -(-len(starts) // self.batch_size))):
                rows = torch.from_numpy(batch[None, :] + np.arange(L)[:, None])
                pred, _ = self._run(X[rows])
                loss = ((pred - X[rows + 1]) ** 2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            if epoch < self.epochs:  # the epoch's subsequences (reading all of x_train costs a pass in time)
                yield epoch, total / len(starts)
        with torch.no_grad():  # the last epoch: every training target, read from the start
            pred, _ = self._run(X[:-1, None])
            yield self.epochs, float(((pred[:, 0] - X[1:]) ** 2).mean())

    def one_step(self, x: np.ndarray) -> np.ndarray:
        out = np.full(len(x), np.nan)
        with torch.no_grad():
            out[1:] = self._run(torch.tensor(x[:-1, None], dtype=torch.float32))[0][:, 0].double().numpy()
        return out

    def _free_run(self, y: torch.Tensor, state: State, steps: int) -> np.ndarray:
        """(B, steps): from predictions ``y`` (B,) made by ``state``, feed each back ``steps - 1`` times."""
        out = [y]
        for _ in range(steps - 1):
            y, state = self._run(y[None, :], state)
            y = y[0]
            out.append(y)
        return torch.stack(out, 1).double().numpy()

    def k_step(self, x: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
        T, K = len(x), max(ks)
        X = torch.tensor(x, dtype=torch.float32)
        with torch.no_grad():
            state, states, ys = self.core.begin_state(1), [], []
            for t in range(T - 1):  # the state after reading x[0..t], and its prediction of x[t+1]
                y, state = self._run(X[t:t + 1, None], state)
                states.append(state)
                ys.append(y[0])
            pred = self._free_run(torch.cat(ys), _cat(states), K)  # pred[s, j] is x̂ at s + 1 + j
        out = {}
        for k in ks:
            full = np.full(T, np.nan)
            full[k:] = pred[: T - k, k - 1]
            out[k] = full
        return out

    def multi_step(self, x: np.ndarray, split: int) -> np.ndarray:
        out = np.full(len(x), np.nan)
        with torch.no_grad():
            pred, state = self._run(torch.tensor(x[:split, None], dtype=torch.float32))
            out[split:] = self._free_run(pred[-1], state, len(x) - split)[0]
        return out

