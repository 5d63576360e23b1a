"""ASNG: adaptive stochastic natural gradient over categorical distributions.

Akimoto, Shirakawa, Yoshinari, Uchida, Saito, Nishida, "Adaptive Stochastic Natural Gradient
Method for One-Shot Neural Architecture Search", ICML 2019; as used for split computing by NASC
(Shimizu et al., seed 003, Algorithm 1 and eq. 6-7).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.study import StudyDirection

from nasopt.core.pareto import hypervolume_improvement
from nasopt.samplers._base import LearningSampler, Space, candidate_key, genes, redraw_repeats
from nasopt.samplers._ranking import losses, pareto_front, violation

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

RECORD_ATTR = "nasopt:asng"  # per trial, written once: {"t": θ-version (updates) it was drawn
# from, "reused": trials whose stored values stood in for re-drawn repeats, "z": numeric draws}
UTILITIES = ("pareto", "scalar")


@dataclass
class ASNGState:
    """θ and the step-size adaptation of Algorithm 1, with the paper's symbols as names.

    θ is a product of one categorical distribution per categorical parameter (`K`) and one
    Gaussian N(m_j, σ_j²) per numeric parameter (`grids`: the spacing of its values in unit
    coordinates, 0.0 for a continuous one), as in Akimoto et al. (ICML 2019), which cover
    categorical, continuous and integer variables with one natural gradient: the Gaussian part
    moves by the natural gradient of the ranking utility in (m, σ²), E[u (z - m)] and
    E[u ((z - m)² - σ²)], with the same trust-region step ε_θ, its Fisher norm counted in
    ||G||_F. An integer parameter's draw is rounded to its grid; its σ keeps a margin so that
    a draw leaves the mean's grid cell with probability at least 1/D (D parameters), the
    counterpart of the categorical margin θ_min; a continuous σ stays in [1e-3, 1].
    """

    K: list[int]  # categories K_d of each categorical dimension d
    alpha: float = 1.5  # α
    delta0: float = 1.0  # δ_θ^0
    Delta_max: float = math.inf  # Δ_max
    theta: list[np.ndarray] = field(default_factory=list)  # θ_d, each on the simplex
    s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # accumulation s
    gamma: float = 0.0  # γ
    Delta: float = 1.0  # Δ
    t: int = 0  # number of updates applied
    grids: list[float] = field(default_factory=list)  # numeric dimensions' grid spacing (unit)
    sigma0: float = 0.25  # initial σ of a numeric dimension (unit coordinates)

    def __post_init__(self) -> None:
        if not self.theta:
            self.theta = [np.full(k, 1.0 / k) for k in self.K]
        N = len(self.grids)
        self.n_theta = sum(k - 1 for k in self.K) + 2 * N  # n_θ (the last category is implied)
        self.s = np.zeros(self.n_theta)
        D = len(self.K) + N
        # margin: θ_{d,k} >= θ_min = 1 / (D (K_d - 1)) (Akimoto et al. 2019), at most 1 / (2 K_d)
        self.theta_min = [min(1.0 / (D * (k - 1)), 0.5 / k) for k in self.K]
        self.m = np.full(N, 0.5)  # Gaussian means m_j (unit coordinates)
        self.var = np.full(N, self.sigma0**2)  # σ_j²
        q = NormalDist().inv_cdf(1.0 - 1.0 / (2.0 * max(2, D)))
        self.var_min = np.array([(0.5 * h / q) ** 2 if h > 0 else 1e-6 for h in self.grids])
        self.var_max = np.ones(N)

    def update(self, a: list[list[int]], u: np.ndarray, z: np.ndarray | None = None) -> bool:
        """One step of Algorithm 1 (lines 7-12) from λ samples: `a` (choice indices), `z`
        (λ × numeric dimensions, unit coordinates) and utilities `u`; returns False when the
        natural gradient vanishes (no update)."""
        if (
            self.n_theta == 0
        ):  # nothing modelled (e.g. the space of a study whose only trial has no parameters)
            return False
        lam = len(u)
        delta_theta = self.delta0 / self.Delta  # line 7: δ_θ = δ_θ^0 / Δ
        beta = delta_theta / math.sqrt(self.n_theta)  # β = δ_θ / n_θ^{1/2}
        # eq. 6: G(θ) = 1/λ Σ_i u_i (T(a_i) - θ), T one-hot for a categorical, (z, z²) for a Gaussian
        G = []
        for d, k in enumerate(self.K):
            onehot = np.zeros((lam, k))
            onehot[np.arange(lam), [ai[d] for ai in a]] = 1.0
            G.append(np.mean(u[:, None] * (onehot - self.theta[d]), axis=0))
        N = len(self.grids)
        zz = np.zeros((lam, N)) if z is None else np.asarray(z, dtype=float).reshape(lam, N)
        Gm = np.mean(u[:, None] * (zz - self.m), axis=0)
        Gv = np.mean(u[:, None] * ((zz - self.m) ** 2 - self.var), axis=0)
        if all(np.all(np.abs(g) < 1e-18) for g in [*G, Gm, Gv]):
            return False
        # F(θ)^{1/2} G in the (K_d - 1)-parameterisation; ||G||_F = ||F^{1/2} G||
        F_half_G = []
        for d, k in enumerate(self.K):
            th, thK = self.theta[d][: k - 1], self.theta[d][k - 1]
            g = G[d][: k - 1]
            F_half_G.append(g / np.sqrt(th) + np.sqrt(th) * g.sum() / (thK + math.sqrt(thK)))
        # Gaussian in (m, σ²): F = diag(1/σ², 1/(2σ⁴))
        F_half_G += [Gm / np.sqrt(self.var), Gv / (math.sqrt(2.0) * self.var)]
        F_half_G_vec = np.concatenate(F_half_G)
        G_norm_F = float(np.linalg.norm(F_half_G_vec)) + 1e-12  # ||G(θ^t)||_F(θ^t)
        epsilon_theta = delta_theta / G_norm_F  # line 9: ε_θ = δ_θ / ||G||_F
        for d in range(len(self.K)):
            self.theta[d] = self.theta[d] + epsilon_theta * G[d]  # eq. 7: θ ← θ + ε_θ G
        self.m = self.m + epsilon_theta * Gm
        self.var = self.var + epsilon_theta * Gv
        # line 10: s ← (1-β) s + sqrt(β(2-β)) F^{1/2} G / ||G||_F
        self.s = (1 - beta) * self.s + math.sqrt(beta * (2 - beta)) * F_half_G_vec / G_norm_F
        self.gamma = (1 - beta) ** 2 * self.gamma + beta * (2 - beta)  # line 11
        # line 12: Δ ← min(Δ_max, Δ exp(β (γ - ||s||² / α)))
        self.Delta = min(
            self.Delta_max, self.Delta * math.exp(beta * (self.gamma - self.s @ self.s / self.alpha))
        )
        self._project()  # line 8: force θ ∈ Θ (margin)
        self.t += 1
        return True

    def _project(self) -> None:
        for d, k in enumerate(self.K):
            th_min = self.theta_min[d]
            th = np.maximum(self.theta[d], th_min)
            excess = th.sum() - 1.0
            room = th.sum() - th_min * k
            if room > 0:
                th = th - excess * (th - th_min) / room
            self.theta[d] = th / th.sum()
        self.m = np.clip(self.m, 0.0, 1.0)
        self.var = np.clip(self.var, self.var_min, self.var_max)

    def draw(self, rng: np.random.Generator) -> tuple[list[int], np.ndarray]:
        """One sample: choice indices, then the numeric dimensions' unit coordinates."""
        a = [int(rng.choice(len(th), p=th)) for th in self.theta]
        z = self.m + np.sqrt(self.var) * rng.standard_normal(len(self.m)) if len(self.m) else np.zeros(0)
        return a, z

    def draw_many(self, rng: np.random.Generator, n: int) -> list[tuple[list[int], np.ndarray]]:
        """`n` samples as `draw` gives them, drawn with one random call per kind."""
        u = rng.random((n, len(self.theta)))
        columns = []
        for d, th in enumerate(self.theta):
            edges = np.cumsum(th)
            columns.append(np.minimum(np.searchsorted(edges, u[:, d], side="right"), len(th) - 1))
        a = np.stack(columns, axis=1) if columns else np.zeros((n, 0), dtype=np.intp)
        N = len(self.m)
        z = self.m + np.sqrt(self.var) * rng.standard_normal((n, N)) if N else np.zeros((n, 0))
        return [([int(x) for x in a[i]], z[i]) for i in range(n)]

    def argmax(self) -> list[int]:
        return [int(np.argmax(th)) for th in self.theta]

    def convergence(self) -> float:
        """Mean over categorical dimensions of max_k θ_{d,k}: 1.0 when every θ_d is one-hot."""
        return float(np.mean([th.max() for th in self.theta])) if self.theta else 1.0

    def converged(self) -> bool:
        """Every θ_d has reached its margin's cap 1 - (K_d - 1)·θ_min, and every σ its margin:
        ASNG-NAS's stopping point."""
        return all(
            th.max() >= 1.0 - (k - 1) * m - 1e-6
            for th, k, m in zip(self.theta, self.K, self.theta_min, strict=True)
        ) and bool(np.all(self.var <= self.var_min * (1 + 1e-6)))


def ranking_utility(keys: list[tuple]) -> np.ndarray:
    """ASNG's ranking utility: best ⌈λ/4⌉ get +1, worst ⌈λ/4⌉ get -1 (ties share the mean);
    for λ = 2 the better sample gets +1, the worse -1, a tie 0."""
    lam = len(keys)
    mu = math.ceil(lam / 4)
    base = np.zeros(lam)
    base[:mu] = 1.0
    base[lam - mu :] -= 1.0
    order = sorted(range(lam), key=lambda i: keys[i])
    u = np.zeros(lam)
    pos = 0
    while pos < lam:
        end = pos
        while end + 1 < lam and keys[order[end + 1]] == keys[order[pos]]:
            end += 1
        u[[order[j] for j in range(pos, end + 1)]] = base[pos : end + 1].mean()
        pos = end + 1
    return u


def utility_schedule(t: int, m: int, sweep: int, focus: int) -> tuple[np.ndarray, bool] | None:
    """Chebyshev weights of generation `t` (θ-version) for `m` objectives, and whether the
    generation is a focus generation (that weight alone ranks); None when rotation is off.

    The weights walk a closed path through the unit vectors: `sweep` generations moving linearly
    from e_{k-1} to e_k, then `focus` generations on e_k alone, for k = 0, 1, ..., m-1, repeat.
    """
    if m < 2 or sweep + focus <= 0:
        return None
    k, r = divmod(t % (m * (sweep + focus)), sweep + focus)
    eye = np.eye(m)
    if r < sweep:
        x = (r + 0.5) / sweep
        return (1.0 - x) * eye[(k - 1) % m] + x * eye[k], False
    return eye[k].copy(), True


Sample = tuple[list[int], np.ndarray]  # choice indices, numeric unit coordinates


class _Replay:
    """What a process knows after replaying the learning order: θ with its step-size
    adaptation, the samples of the open generation, the archive's Pareto front, and every
    evaluated candidate (for re-draws)."""

    def __init__(self, asng: ASNGState) -> None:
        self.asng = asng
        self.pending: list[tuple[Sample, np.ndarray, float]] = []  # (sample, losses, violation)
        self.archive: np.ndarray | None = None  # feasible Pareto front so far (losses)
        self.seen: dict[tuple[Any, ...], int] = {}  # candidate -> first trial that evaluated it
        self.values: dict[int, tuple[Sample, np.ndarray, float]] = {}  # trial -> (sample, losses, violation)

    def fork(self) -> _Replay:
        """A copy whose θ, open generation and archive can move without touching this one."""
        other = copy.copy(self)
        other.asng = copy.deepcopy(self.asng)
        other.pending = list(self.pending)
        return other


class ASNGSampler(LearningSampler):
    """Adaptive stochastic natural gradient (ASNG) over categorical, integer and float parameters.

    θ is a categorical distribution per categorical parameter and a Gaussian per integer or
    float parameter (in unit coordinates, log-scaled for log distributions; integer and
    stepped draws rounded to their grid): see `ASNGState`. Every λ (= 2) samples update θ by
    the natural gradient of the ranking utility with the adaptive step size of Akimoto et al.
    (ICML 2019) — NASC's Algorithm 1 lines 7-12 — and θ is projected back into its margin.

    Updates are replayed from the study in its learning order (see `nasopt.samplers._base`):
    COMPLETE trials as they were listed by the trials that started after them, so workers
    sharing a storage, threads sharing this instance, or a resumed study follow one θ sequence,
    and a trial left RUNNING or WAITING does not stop learning. Policy for trials that never
    finish: they are never learned from; a sample that finishes late enters the generation open
    when it is listed, though it was drawn from an older θ (with W workers, at most about W/λ
    versions old). Each trial records once, under `nasopt:asng`, the θ-version it was drawn
    from, its re-draws and its numeric draws before rounding.

    Utilities compare samples: feasible beats infeasible, smaller violation wins; then
    * one objective: the value;
    * several, `utility="pareto"` (default): domination count by the archive's Pareto front,
      then larger hypervolume improvement of that front, then a Chebyshev scalarisation
      (objectives normalised by the front's range) whose weights rotate across generations:
      `sweep_generations` generations moving from one objective's unit weight to the next,
      then `focus_generations` generations in which that objective's weight alone ranks the
      samples (augmented by 1e-3 of the others). A single distribution θ sits at one place of
      the front at a time; the rotation moves it along the front and to each extreme, which
      the archive then keeps. `sweep_generations=0, focus_generations=0` turns it off;
    * `scalarization={"weights": [...], "thresholds": [...]}`: NASC's
      Σ_i w_i·v_i, or w_i·max(0, v_i - T_i) where a threshold is given
      (loss + ε·max(0, T - T_th) is weights [1, ε], thresholds [None, T_th]).

    Re-draws: a candidate drawn from θ that a learned trial already evaluated is not
    evaluated again; its stored values enter the generation as that sample's (it is a genuine
    draw from θ, so the update stays ASNG's) and θ is drawn again, at most `redraw` times per
    trial and not once θ has converged (every θ_d at its margin's cap, where ASNG-NAS stops:
    past it, free updates from an exhausted neighbourhood would only shake θ). The re-drawn
    trials are recorded on the trial (`nasopt:asng` "reused") and replayed.

    Example:
        .. testcode::

            import optuna
            from nasopt.samplers import ASNGSampler

            def objective(trial):
                return sum(trial.suggest_categorical(f"x{i}", [0, 1, 2]) for i in range(4))

            sampler = ASNGSampler(seed=0)
            study = optuna.create_study(sampler=sampler)
            study.optimize(objective, n_trials=200)
            print(sampler.argmax(study))  # {'x0': 0, 'x1': 0, 'x2': 0, 'x3': 0}

    Args:
        seed: seed of the per-trial random streams.
        lam: λ, samples per update (2 in NASC).
        alpha: α of the step-size adaptation (1.5).
        delta0: δ_θ^0, the initial trust-region radius (1.0).
        Delta_max: upper bound of Δ.
        utility: "pareto" or "scalar" (then `scalarization` is required for several objectives).
        scalarization: {"weights": list[float], "thresholds": list[float | None]}.
        redraw: re-draws per trial of candidates already evaluated (20; 0: evaluate repeats).
        sweep_generations: generations per leg of the weight rotation (100).
        focus_generations: generations on each objective alone after its leg (100).
        search_space, feasibility, max_retries, independent_sampler: see LearningSampler.
    """

    _salt = 1
    numeric = True
    record_attr = RECORD_ATTR

    def __init__(
        self,
        *,
        seed: int | None = None,
        lam: int = 2,
        alpha: float = 1.5,
        delta0: float = 1.0,
        Delta_max: float = math.inf,
        utility: str = "pareto",
        scalarization: dict[str, Any] | None = None,
        redraw: int = 20,
        sweep_generations: int = 100,
        focus_generations: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, **kwargs)
        if lam < 2:
            raise ValueError("lam must be at least 2")
        if utility not in UTILITIES:
            raise ValueError(f"utility must be one of {UTILITIES}, got {utility!r}")
        if redraw < 0 or sweep_generations < 0 or focus_generations < 0:
            raise ValueError("redraw, sweep_generations and focus_generations must be >= 0")
        self.lam, self.alpha, self.delta0, self.Delta_max = lam, alpha, delta0, Delta_max
        self.utility = "scalar" if scalarization is not None else utility
        self.scalarization = scalarization
        self.redraw = int(redraw)
        self.sweep_generations = int(sweep_generations)
        self.focus_generations = int(focus_generations)

    # ------------------------------------------------------------------ replay

    def _initial(self, study: Study, space: Space) -> _Replay:
        return _Replay(
            ASNGState(
                [len(d.choices) for d in space.cats if d.choices is not None],
                self.alpha,
                self.delta0,
                self.Delta_max,
                grids=[d.grid() for d in space.nums],
            )
        )

    def _observe(self, rs: _Replay, trial: FrozenTrial, study: Study, space: Space) -> None:
        sample = sample_of(trial, space)
        if sample is None:
            return
        directions = study.directions
        for n in trial.system_attrs.get(RECORD_ATTR, {}).get("reused", ()):  # re-drawn repeats
            if int(n) in rs.values:
                self._feed(rs, *rs.values[int(n)], directions)
        f, v = losses(trial, directions), violation(trial)
        rs.seen.setdefault(candidate_key(trial.params, space), trial.number)
        rs.values[trial.number] = (sample, f, v)
        self._feed(rs, sample, f, v, directions)

    def _fork(self, rs: _Replay) -> _Replay:
        other = rs.fork()
        other.seen, other.values = dict(rs.seen), dict(rs.values)
        return other

    def state(self, study: Study, space: Space | None = None) -> ASNGState:
        """θ after replaying every update the study's learning order defines."""
        return self.replayed(study, space if space is not None else self.space(study)).asng

    def _feed(
        self, rs: _Replay, a: Sample, f: np.ndarray, v: float, directions: list[StudyDirection]
    ) -> None:
        rs.pending.append((a, f, v))
        if len(rs.pending) == self.lam:
            pending, rs.pending = rs.pending, []
            self._update(rs, pending, directions)

    def _update(
        self,
        rs: _Replay,
        pending: list[tuple[Sample, np.ndarray, float]],
        directions: list[StudyDirection],
    ) -> None:
        keys: list[tuple] = []
        if len(directions) == 1 or self.utility == "scalar":
            for _, f, v in pending:
                keys.append((v > 0, v, self._scalar(f)))
        else:
            m = len(directions)
            front = rs.archive if rs.archive is not None else np.zeros((0, m))
            feasible = [f for _, f, v in pending if v <= 0]
            pool = np.vstack([front] + [f[None] for f in feasible])
            if len(pool):
                lo, hi = pool.min(axis=0), pool.max(axis=0)
                span = np.maximum(hi - lo, 1e-12)
                ref = hi + 0.1 * span
            schedule = utility_schedule(rs.asng.t, m, self.sweep_generations, self.focus_generations)
            for _, f, v in pending:
                if v > 0:
                    keys.append((True, v, 0, 0.0, 0.0))
                    continue
                cheb = 0.0
                if schedule is not None:  # augmented Chebyshev on the front-normalised losses
                    z = (f - lo) / span
                    cheb = float(np.max((schedule[0] + 1e-3) * z))
                    if schedule[1]:  # a focus generation: the weight alone ranks
                        keys.append((False, 0.0, 0, 0.0, cheb))
                        continue
                dominated_by = int(np.sum(np.all(front <= f, axis=1) & np.any(front < f, axis=1)))
                hvi = hypervolume_improvement(front, f, ref) if dominated_by == 0 else 0.0
                keys.append((False, 0.0, dominated_by, -hvi, cheb))
            if feasible:
                rs.archive = pareto_front(pool)
        u = ranking_utility(keys)
        rs.asng.update([a for (a, _), _, _ in pending], u, np.array([z for (_, z), _, _ in pending]))

    def _scalar(self, f: np.ndarray) -> float:
        if self.scalarization is None:
            if len(f) != 1:
                raise ValueError("utility='scalar' with several objectives needs scalarization weights")
            return float(f[0])
        w = self.scalarization.get("weights") or [1.0] * len(f)
        th = self.scalarization.get("thresholds") or [None] * len(f)
        return float(
            sum(wi * (fi if ti is None else max(0.0, fi - ti)) for wi, fi, ti in zip(w, f, th, strict=True))
        )

    # ------------------------------------------------------------------ sampling

    def _propose(
        self, study: Study, trial: FrozenTrial, space: Space, rs: _Replay, rng: np.random.Generator
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        directions = study.directions
        sim = [rs]  # re-drawn repeats update a copy (made at the first repeat), replayed later

        def feed(_: Sample, n: int) -> None:
            if sim[0] is rs:
                sim[0] = rs.fork()
            self._feed(sim[0], *rs.values[n], directions)

        sample, reused = redraw_repeats(
            lambda: sim[0].asng.draw(rng),
            rs.seen,
            self.redraw,
            feed,
            lambda: sim[0].asng.converged(),
            key=lambda s: candidate_key(params_from(s, space), space),
        )
        return params_from(sample, space), self._record(sim[0].asng.t, reused, sample, space)

    scalar_retries = 0  # retries are drawn as populations (`_propose_many`): screened batched
    screen_chunk = 32

    def _propose_many(
        self, study: Study, trial: FrozenTrial, space: Space, rs: _Replay, rng: np.random.Generator, n: int
    ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """`n` draws from θ at once (the screening's retries); repeats of evaluated candidates
        are dropped rather than re-drawn (and so not fed), unless θ has converged."""
        skip_repeats = self.redraw > 0 and not rs.asng.converged()
        out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for sample in rs.asng.draw_many(rng, n):
            params = params_from(sample, space)
            if skip_repeats and candidate_key(params, space) in rs.seen:
                continue
            out.append((params, self._record(rs.asng.t, [], sample, space)))
        return out

    @staticmethod
    def _record(t: int, reused: list[int], sample: Sample, space: Space) -> dict[str, Any]:
        record: dict[str, Any] = {"t": t, "reused": reused}
        if space.nums:
            record["z"] = {d.name: float(z) for d, z in zip(space.nums, sample[1], strict=True)}
        return record

    def theta(self, study: Study) -> dict[str, dict[Any, float]]:
        """θ per categorical parameter: {name: {choice: probability}} after replaying the study."""
        space = self.space(study)
        state = self.state(study, space)
        return {
            d.name: dict(zip(d.choices, th.tolist(), strict=True))
            for d, th in zip(space.cats, state.theta, strict=True)
            if d.choices is not None
        }

    def gaussian(self, study: Study) -> dict[str, tuple[Any, float]]:
        """Per numeric parameter: (the value at the mean m, σ in unit coordinates)."""
        space = self.space(study)
        state = self.state(study, space)
        return {
            d.name: (d.value(m), float(math.sqrt(v)))
            for d, m, v in zip(space.nums, state.m, state.var, strict=True)
        }

    def argmax(self, study: Study) -> dict[str, Any]:
        """The most likely candidate argmax_a P_θ(a) (NASC Algorithm 1, line 14); a numeric
        parameter at its mean."""
        space = self.space(study)
        state = self.state(study, space)
        return params_from((state.argmax(), state.m), space)


def params_from(sample: Sample, space: Space) -> dict[str, Any]:
    cats, z = iter(sample[0]), iter(sample[1])
    return {
        d.name: (d.choices[next(cats)] if d.choices is not None else d.value(next(z))) for d in space.dims
    }


def sample_of(trial: FrozenTrial, space: Space) -> Sample | None:
    """The sample a trial was: its choice indices and, for numeric parameters, the unit
    coordinates it recorded (the draw before rounding/clipping), else those of its values."""
    g = genes(trial, space)
    if g is None:
        return None
    recorded = trial.system_attrs.get(RECORD_ATTR, {}).get("z", {})
    cats = [int(x) for d, x in zip(space.dims, g, strict=True) if d.choices is not None]
    z = [float(recorded.get(d.name, x)) for d, x in zip(space.dims, g, strict=True) if d.choices is None]
    return cats, np.array(z)
