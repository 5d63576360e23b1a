"""REINFORCE with an exponential-moving-average baseline, as in Wang et al. (seed 002).

Wang, Zhang, Wang, Sun, Zhang, "Context-Aware Deep Model Compression for Edge Cloud Computing",
ICDCS 2020: softmax controllers, reward R = N1(A) + N2(T) (accuracy and latency normalised to
[0, 1], weighted 100 and 300 in the paper), policy gradient with an EMA baseline, and
"exploration with fair chances" for the partition controller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.study import StudyDirection

from nasopt.samplers._base import LearningSampler, Space, genes, params_of, redraw_repeats
from nasopt.samplers._ranking import violation

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

RECORD_ATTR = "nasopt:reinforce"  # per trial, written once: {"episode": episodes it was drawn
# after, "reused": trials whose stored rewards stood in for re-drawn repeats}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _is_split(name: str) -> bool:
    return (name.startswith("split") and name.endswith(".after")) or name == "fuse.after"


class ReinforceSampler(LearningSampler):
    """Monte-Carlo policy gradient over an independent softmax policy per parameter.

    After every finished trial (replayed from the study in its learning order):
    R = Σ_i w_i N_i(v_i) with N_i(v) = (v - min_i) / (max_i - min_i) for maximised objectives
    (Wang's N1(A)) and (max_i - v) / (max_i - min_i) for minimised ones (N2(T)); min/max are
    the given `bounds` or the range seen so far. An infeasible trial gets R = -Σw·(1 + violation).
    The logits move by lr·(R - b)/Σw·(onehot - softmax) and the baseline b is an EMA of R
    (`baseline_decay`). `learning_rate` defaults to 0.1: at 0.5 the policy collapsed onto one
    candidate within a few hundred episodes on benchmarks/search_quality.py's fbnet-nasc-4.

    Fair exploration (Wang Sec. VI): with a uniform initial policy the deepest partition points
    are rarely explored; here the split parameters (`split*.after`, `fuse.after`, or `split_params`)
    are drawn from (1 - α_t)·π + α_t·uniform, α_t = `fair_alpha`·(1 - t/`fair_episodes`), so every
    split position keeps a fair chance during the first episodes.

    Re-draws: a candidate drawn from the policy that a learned trial already evaluated is not
    evaluated again; it is an episode all the same (its stored values give the reward, the
    baseline and the logits update as usual) and the policy is drawn again, at most `redraw`
    times per trial, so trials go to new candidates once the policy concentrates. The re-drawn
    trials are recorded on the trial (`nasopt:reinforce` "reused") and replayed.

    Episodes are replayed from the study in its learning order (see `nasopt.samplers._base`), so
    workers, threads sharing this instance and resumed studies agree, and a trial left RUNNING or
    WAITING holds nothing up; a trial that never finishes is never an episode. Integer and float
    parameters with more than 1,000 values (or log-scaled) are left to the independent sampler.

    Example:
        .. testcode::

            import optuna
            from nasopt.samplers import ReinforceSampler

            def objective(trial):
                acc = trial.suggest_categorical("width", [8, 16, 32]) / 32
                lat = trial.suggest_categorical("split.after", [0, 1, 2, 3]) + acc
                return acc, lat

            sampler = ReinforceSampler(weights=[100, 300], seed=0)
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            study.optimize(objective, n_trials=60)

    Args:
        seed: seed of the per-trial random streams.
        weights: w_i of the reward (default 1 each; [100, 300] is Wang's).
        bounds: (min, max) per objective for N_i, or None to use the range seen so far.
        learning_rate: lr of the logits update (0.1).
        baseline_decay: EMA factor of the baseline (0.9).
        fair_alpha, fair_episodes, split_params: fair exploration of split positions.
        redraw: re-draws per trial of candidates already evaluated (20; 0: evaluate repeats).
        search_space, feasibility, max_retries, independent_sampler: see LearningSampler.
    """

    _salt = 3
    record_attr = RECORD_ATTR

    def __init__(
        self,
        *,
        seed: int | None = None,
        weights: Sequence[float] | None = None,
        bounds: Sequence[Sequence[float] | None] | None = None,
        learning_rate: float = 0.1,
        baseline_decay: float = 0.9,
        fair_alpha: float = 0.5,
        fair_episodes: int = 100,
        split_params: Sequence[str] | None = None,
        redraw: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, **kwargs)
        if redraw < 0:
            raise ValueError("redraw must be >= 0")
        self.redraw = int(redraw)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.bounds = None if bounds is None else list(bounds)
        self.learning_rate = learning_rate
        self.baseline_decay = baseline_decay
        self.fair_alpha = fair_alpha
        self.fair_episodes = fair_episodes
        self.split_params = None if split_params is None else set(split_params)

    def _initial(self, study: Study, space: Space) -> dict[str, Any]:
        m = len(study.directions)
        return {
            "logits": [np.zeros(len(d.choices or ())) for d in space.dims],
            "b": None,
            "lo": np.full(m, np.inf),
            "hi": np.full(m, -np.inf),
            "t": 0,
            "seen": {},  # candidate -> first trial that evaluated it
            "values": {},  # trial -> (a, values, violation)
        }

    def _observe(self, st: dict[str, Any], trial: FrozenTrial, study: Study, space: Space) -> None:
        a = genes(trial, space)
        if a is None:
            return
        directions = study.directions
        w = self._weights(len(directions))
        for n in trial.system_attrs.get(RECORD_ATTR, {}).get("reused", ()):  # re-drawn repeats
            if int(n) in st["values"]:
                prev_a, prev_values, prev_v = st["values"][int(n)]
                self._episode(st, prev_a, prev_values, prev_v, directions, w)
        values = None if trial.values is None else np.asarray(trial.values, dtype=float)
        v = violation(trial)
        st["seen"].setdefault(tuple(a), trial.number)
        st["values"][trial.number] = (a, values, v)
        self._episode(st, a, values, v, directions, w)

    def _fork(self, st: dict[str, Any]) -> dict[str, Any]:
        return {
            **st,
            "logits": [z.copy() for z in st["logits"]],
            "lo": st["lo"].copy(),
            "hi": st["hi"].copy(),
            "seen": dict(st["seen"]),
            "values": dict(st["values"]),
        }

    def _weights(self, m: int) -> np.ndarray:
        w = np.array(self.weights if self.weights is not None else [1.0] * m)
        if len(w) != m:
            raise ValueError(f"weights has {len(w)} entries for {m} objectives")
        return w

    def _episode(
        self,
        st: dict[str, Any],
        a: list[int],
        values: np.ndarray | None,
        v: float,
        directions: list[StudyDirection],
        w: np.ndarray,
    ) -> None:
        """One REINFORCE step: reward, advantage over the EMA baseline, logits, baseline."""
        R = self._reward(st, values, v, directions, w)
        if st["b"] is None:
            st["b"] = R
        advantage = (R - st["b"]) / w.sum()
        for d, k in enumerate(a):
            pi = _softmax(st["logits"][d])
            onehot = np.zeros_like(pi)
            onehot[k] = 1.0
            st["logits"][d] = st["logits"][d] + self.learning_rate * advantage * (onehot - pi)
        st["b"] = self.baseline_decay * st["b"] + (1 - self.baseline_decay) * R
        st["t"] += 1

    def _reward(
        self,
        st: dict[str, Any],
        values: np.ndarray | None,
        v: float,
        directions: list[StudyDirection],
        w: np.ndarray,
    ) -> float:
        if v > 0 or values is None:
            return -float(w.sum()) * (1.0 + v)
        st["lo"] = np.minimum(st["lo"], values)
        st["hi"] = np.maximum(st["hi"], values)
        R = 0.0
        for i, d in enumerate(directions):
            b = self.bounds[i] if self.bounds is not None and self.bounds[i] is not None else None
            lo, hi = (b[0], b[1]) if b is not None else (st["lo"][i], st["hi"][i])
            span = hi - lo
            x = 0.5 if span <= 0 else (values[i] - lo) / span
            x = min(1.0, max(0.0, x))
            R += w[i] * (x if d == StudyDirection.MAXIMIZE else 1.0 - x)
        return R

    def _propose(
        self, study: Study, trial: FrozenTrial, space: Space, st: dict[str, Any], rng: np.random.Generator
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        directions = study.directions
        w = self._weights(len(directions))
        sim = [st]  # re-drawn repeats update a copy (made at the first repeat); the replay applies them again

        def replay(a: list[int], n: int) -> None:
            if sim[0] is st:
                sim[0] = {
                    **st,
                    "logits": [z.copy() for z in st["logits"]],
                    "lo": st["lo"].copy(),
                    "hi": st["hi"].copy(),
                }
            _, values, v = st["values"][n]
            self._episode(sim[0], a, values, v, directions, w)

        a, reused = redraw_repeats(lambda: self._draw(sim[0], space, rng), st["seen"], self.redraw, replay)
        return params_of(a, space), {"episode": sim[0]["t"], "reused": reused}

    scalar_retries = 0  # retries are drawn as populations (`_propose_many`): screened batched
    screen_chunk = 32

    def _propose_many(
        self,
        study: Study,
        trial: FrozenTrial,
        space: Space,
        st: dict[str, Any],
        rng: np.random.Generator,
        n: int,
    ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """`n` draws from π at once (the screening's retries); repeats of evaluated candidates
        are dropped rather than re-drawn (and so not replayed)."""
        u = rng.random((n, len(space.dims)))
        columns = [
            np.minimum(np.searchsorted(np.cumsum(pi), u[:, d], side="right"), len(pi) - 1)
            for d, pi in enumerate(self._policy_now(st, space))
        ]
        out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for i in range(n):
            a = [int(c[i]) for c in columns]
            if self.redraw and tuple(a) in st["seen"]:
                continue
            out.append((params_of(a, space), {"episode": st["t"], "reused": []}))
        return out

    def _draw(self, st: dict[str, Any], space: Space, rng: np.random.Generator) -> list[int]:
        return [int(rng.choice(len(pi), p=pi)) for pi in self._policy_now(st, space)]

    def _policy_now(self, st: dict[str, Any], space: Space) -> list[np.ndarray]:
        """π per dimension with the fair exploration of split parameters mixed in."""
        alpha = self.fair_alpha * max(0.0, 1.0 - st["t"] / max(1, self.fair_episodes))
        out = []
        for d, logits in zip(space.dims, st["logits"], strict=True):
            pi = _softmax(logits)
            split = d.name in self.split_params if self.split_params is not None else _is_split(d.name)
            if split and alpha > 0:
                pi = (1 - alpha) * pi + alpha / len(pi)
            out.append(pi)
        return out

    def policy(self, study: Study) -> dict[str, dict[Any, float]]:
        """π per parameter after replaying the study: {name: {choice: probability}}."""
        space = self.space(study)
        st = self.replayed(study, space)
        return {
            d.name: dict(zip(d.choices or (), _softmax(z).tolist(), strict=True))
            for d, z in zip(space.dims, st["logits"], strict=True)
        }
