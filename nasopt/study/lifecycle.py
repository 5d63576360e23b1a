"""Study lifecycle: create or resume by name in any storage, local worker processes, budgets.

A study stores its fully resolved spec (study + search space + objective, compressed JSON) and
its fingerprint in study user attrs, so `nasopt worker` joins knowing only name and storage, and
resuming with a changed spec is refused unless the user names a new study.
"""

from __future__ import annotations

import base64
import contextlib
import multiprocessing
import os
import sys
import time
import zlib
from typing import Any

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from nasopt.errors import SpecError
from nasopt.spec import ResolvedStudy, SamplerSpec
from nasopt.study.objective import NasObjective
from nasopt.study.storage import creation_order, open_storage, study_names
from nasopt.study.tree_objective import TreeObjective

StudyObjective = NasObjective | TreeObjective

SPEC_ATTR = "nasopt:spec"
FINGERPRINT_ATTR = "nasopt:fingerprint"
SAMPLER_CHANGES_ATTR = "nasopt:sampler_changes"
OVER_BUDGET_ATTR = "nasopt:over_budget"
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# How long a run waits for a concurrent creator to finish writing a new study's spec before it
# takes the name over (the creator was killed).
CREATION_WAIT_S = float(os.environ.get("NASOPT_CREATION_WAIT_S", "10"))
OPTUNA_SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random")
NASOPT_SAMPLERS = {"asng": "ASNGSampler", "evolution": "EvolutionSampler", "reinforce": "ReinforceSampler"}


def _encode(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def _decode(blob: str) -> str:
    return zlib.decompress(base64.b64decode(blob)).decode()


def study_objective(resolved: ResolvedStudy) -> StudyObjective:
    """The study's Optuna objective: one network per trial, or with `[model_tree]` one model
    tree per trial."""
    if resolved.study.model_tree is not None:
        return TreeObjective(resolved.study, resolved.space, resolved.objective)
    return NasObjective(resolved.study, resolved.space, resolved.objective)


def make_sampler(
    spec: SamplerSpec, *, seed_offset: int = 0, objective: StudyObjective | None = None
) -> optuna.samplers.BaseSampler:
    """An Optuna sampler from a sampler spec; the seed is offset per worker and per resume so
    restarted or parallel workers never replay the same parameter sequence (optuna#3255).

    nasopt's samplers (asng, evolution, reinforce) derive per-trial randomness from (seed, trial
    number) and replay their state from the storage, so they take the seed unchanged; given the
    study's `objective` they get its search space and, unless `hard_constraints = false`, the
    analytic check (memory caps, latency and energy thresholds) that rejects candidates before
    evaluation."""
    if spec.name in NASOPT_SAMPLERS:
        return _make_nasopt_sampler(spec, objective)
    seed = None if spec.seed is None else spec.seed + seed_offset
    samplers: dict[str, Any] = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "nsga3": optuna.samplers.NSGAIIISampler,
        "gp": optuna.samplers.GPSampler,
        "random": optuna.samplers.RandomSampler,
    }
    if spec.name not in samplers:
        raise SpecError(
            "unknown sampler",
            field="sampler.name",
            value=spec.name,
            allowed=list(samplers) + list(NASOPT_SAMPLERS),
        )
    _check_options(spec, samplers[spec.name], fixed=("seed",))
    try:
        return samplers[spec.name](seed=seed, **spec.options)
    except TypeError as exc:
        raise SpecError(f"bad sampler option: {exc}", field="sampler.options", value=spec.options) from None
    except ImportError as exc:
        raise SpecError(f"sampler {spec.name!r} needs {exc.name}", field="sampler.name") from None


def _make_nasopt_sampler(spec: SamplerSpec, objective: StudyObjective | None) -> optuna.samplers.BaseSampler:
    from nasopt import samplers as nasopt_samplers
    from nasopt.study.feasibility import hard_constraint_check

    options = dict(spec.options)
    hard = options.pop("hard_constraints", True)
    kwargs: dict[str, Any] = {"seed": spec.seed, **options}
    if objective is not None:
        kwargs["search_space"] = objective.distributions()
        if hard and isinstance(objective, NasObjective):  # a model tree has no hard constraints
            kwargs["feasibility"] = hard_constraint_check(objective)
    cls = getattr(nasopt_samplers, NASOPT_SAMPLERS[spec.name])
    _check_options(spec, cls, fixed=("seed", "search_space", "feasibility"), extra=("hard_constraints",))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"bad sampler option: {exc}", field="sampler.options", value=spec.options) from None


def check_study(resolved: ResolvedStudy, sampler: SamplerSpec | None = None) -> StudyObjective:
    """Every check `nasopt run` makes before its first trial, without writing anything; `nasopt
    validate` runs the same. Returns the study's objective.

    The metrics, search space and system are checked by building the objective; the sampler
    (the spec's, or `sampler` given on the command line) by building it for that objective;
    the costs by evaluating the largest candidate, whose latency, energy and memory must be
    finite."""
    import math

    from nasopt.core.evaluation import evaluate

    objective = study_objective(resolved)
    make_sampler(resolved.study.sampler, objective=objective)
    if sampler is not None:
        make_sampler(sampler, objective=objective)
    # the largest candidate sends and computes the most: the first whose costs overflow
    ev = evaluate(objective.space.network(objective.space.largest()), objective.system)
    values = {"latency_ms": ev.latency_ms, "energy_mj": ev.energy_j * 1e3}
    values |= {f"memory_bytes:{d}": float(v) for d, v in ev.memory_bytes.items()}
    for key, value in values.items():
        if not math.isfinite(value):
            raise SpecError(
                f"the largest candidate's {key} is not finite ({value}); a rate, delay or energy "
                "in the objective is out of scale",
                file=f"objective {resolved.objective.name}",
            )
    return objective


def sampler_options(name: str) -> list[str]:
    """The options (`[sampler] options` keys) sampler `name` takes."""
    if name in NASOPT_SAMPLERS:
        from nasopt import samplers as nasopt_samplers

        cls = getattr(nasopt_samplers, NASOPT_SAMPLERS[name])
        return _keywords(cls, fixed=("seed", "search_space", "feasibility"), extra=("hard_constraints",))[0]
    cls = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "nsga3": optuna.samplers.NSGAIIISampler,
        "gp": optuna.samplers.GPSampler,
        "random": optuna.samplers.RandomSampler,
    }[name]
    return _keywords(cls, fixed=("seed",))[0]


def _check_options(
    spec: SamplerSpec, cls: Any, *, fixed: tuple[str, ...], extra: tuple[str, ...] = ()
) -> None:
    """An unknown sampler option is named with the options the sampler takes (its keyword
    arguments, less those nasopt sets itself)."""
    allowed, takes_any = _keywords(cls, fixed=fixed, extra=extra)
    unknown = sorted(set(spec.options) - set(allowed))
    if unknown and not takes_any:
        raise SpecError(
            f"unknown option of sampler {spec.name!r}",
            field=f"sampler.options.{unknown[0]}",
            allowed=allowed,
        )


def _keywords(cls: Any, *, fixed: tuple[str, ...], extra: tuple[str, ...] = ()) -> tuple[list[str], bool]:
    """Keyword arguments of `cls` (through **kwargs passed on to base classes), less `fixed`."""
    import inspect

    names: set[str] = set(extra)
    takes_any = True
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        params = inspect.signature(klass.__init__).parameters
        names |= {
            n for n, p in params.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
        }
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        if not takes_any:
            break
    return sorted(names - {"self", *fixed}), takes_any


def create_or_resume(
    resolved: ResolvedStudy, storage: BaseStorage, study_name: str | None = None
) -> optuna.Study:
    """The study named `study_name` (default: the spec's name), created if new.

    Creation is atomic as far as a user can tell: the fingerprint is written last, a creation
    that fails part way deletes the study again, and a study left without fingerprint and
    without trials (its creator was killed) is taken over. Refuses to resume a study whose
    stored spec differs from `resolved`."""
    name = study_name or resolved.study.name
    if name in study_names(storage):
        return _resume(resolved, storage, name)
    objective = check_study(resolved)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=objective.directions,
            load_if_exists=False,
        )
    except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
        return _resume(resolved, storage, name)
    try:
        study.set_metric_names(objective.metric_names)
        study.set_user_attr(SPEC_ATTR, _encode(resolved.to_json()))
        study.set_user_attr("nasopt:space", resolved.space.name)
        study.set_user_attr("nasopt:objective", resolved.objective.name)
        study.set_user_attr("nasopt:accuracy_estimator", objective.estimator.name)
        study.set_user_attr("nasopt:constraints", objective.constraint_names)
        study.set_user_attr(FINGERPRINT_ATTR, resolved.fingerprint)  # last: marks the study complete
    except BaseException:
        with contextlib.suppress(Exception):
            optuna.delete_study(study_name=name, storage=storage)
        raise
    return study


def _resume(
    resolved: ResolvedStudy, storage: BaseStorage, name: str, wait_s: float | None = None
) -> optuna.Study:
    """Load an existing study after checking its stored spec fingerprint against `resolved`."""
    study = optuna.load_study(study_name=name, storage=storage)
    deadline = time.monotonic() + (CREATION_WAIT_S if wait_s is None else wait_s)
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    while stored is None and time.monotonic() < deadline:
        time.sleep(0.2)  # a concurrent creator may not have written the spec yet
        stored = optuna.load_study(study_name=name, storage=storage).user_attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        if not study.get_trials(deepcopy=False) and all(k.startswith("nasopt:") for k in study.user_attrs):
            # its creator died before finishing (kill -9 during creation), or an empty study
            # that holds nothing to lose: take the name over
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=storage)
            return create_or_resume(resolved, storage, name)
        raise SpecError("study exists but was not created by nasopt", field="--study-name", value=name)
    if stored != resolved.fingerprint:
        raise SpecError(
            f"study exists with a different spec (stored fingerprint {stored}, "
            f"now {resolved.fingerprint}); resume it unchanged or start a new study",
            field="--study-name",
            value=name,
            allowed="the original spec, or --study-name NEW",
        )
    load(storage, name)  # the stored spec must match its fingerprint
    return study


def load(storage: BaseStorage, study_name: str) -> tuple[optuna.Study, ResolvedStudy]:
    """An existing nasopt study and its stored spec, verified against the stored fingerprint
    and validated like a preset file; clear errors for unknown names."""
    import hashlib

    names = study_names(storage)
    if study_name not in names:
        raise SpecError(
            "unknown study", field="--study-name", value=study_name, allowed=names or "(no studies)"
        )
    study = optuna.load_study(study_name=study_name, storage=storage)
    blob = study.user_attrs.get(SPEC_ATTR)
    fingerprint = study.user_attrs.get(FINGERPRINT_ATTR)
    if blob is None or fingerprint is None:
        raise SpecError("study was not created by nasopt", field="--study-name", value=study_name)
    try:
        text = _decode(blob)
    except (ValueError, TypeError, zlib.error):
        text = None
    if text is None or hashlib.sha256(text.encode()).hexdigest()[:16] != fingerprint:
        raise SpecError(
            "the study's stored spec does not match its fingerprint (edited or corrupted in the "
            "storage); refusing to run it",
            field="--study-name",
            value=study_name,
        )
    try:
        return study, ResolvedStudy.from_json(text, source=f"stored spec of study {study_name}")
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(
            f"the study's stored spec is not readable ({type(exc).__name__})",
            field="--study-name",
            value=study_name,
        ) from None


def _record_sampler(study: optuna.Study, spec: SamplerSpec, stored: SamplerSpec) -> None:
    """Study user attr `nasopt:sampler`: the sampler(s) that ran it (dashboards label lines by
    it); a sampler other than the stored spec's (`--sampler`) is also listed, with its options
    and from which trial on it ran, in `nasopt:sampler_changes`."""
    recorded = study.user_attrs.get("nasopt:sampler")
    if recorded is None:
        study.set_user_attr("nasopt:sampler", spec.name)
    elif spec.name not in str(recorded).split("+"):
        study.set_user_attr("nasopt:sampler", f"{recorded}+{spec.name}")
    if spec != stored:
        changes = list(study.user_attrs.get(SAMPLER_CHANGES_ATTR, []))
        entry = {"sampler": spec.name, "options": spec.options, "seed": spec.seed}
        if not changes or {k: changes[-1].get(k) for k in entry} != entry:
            changes.append({**entry, "from_trial": len(study.get_trials(deepcopy=False))})
            study.set_user_attr(SAMPLER_CHANGES_ATTR, changes)


def counted_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that use up a study's budget: every trial but a failed one that was queued
    again (its retry counts instead) and one refused for being over the budget."""
    retried: set[int] = set()
    for t in trials:
        if "failed_trial" in t.system_attrs:
            retried.update(RetryHeartbeatStaleTrialCallback.retry_history(t))
    return [
        t
        for t in trials
        if not (t.state == TrialState.FAIL and t.number in retried) and OVER_BUDGET_ATTR not in t.system_attrs
    ]


def finished_count(study: optuna.Study) -> int:
    return sum(1 for t in counted_trials(study.get_trials(deepcopy=False)) if t.state in FINISHED)


def _quotas(n_trials: int, workers: int) -> list[int]:
    base, extra = divmod(n_trials, workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


class _BudgetGuard:
    """The study budget held across processes and machines: at the start of every trial, a trial
    preceded (in creation order) by `budget` counted trials is refused (PRUNED, marked over
    budget, not counted) and stops this worker; after every trial, a worker stops once the
    finished and running trials fill the budget, so it does not start one more."""

    def __init__(self, objective: StudyObjective, budget: int) -> None:
        self.objective = objective
        self.budget = budget

    def __call__(self, trial: optuna.trial.Trial) -> tuple[float, ...]:
        every = trial.study.get_trials(deepcopy=False)
        mine = creation_order(trial)
        before = sum(1 for t in counted_trials(every) if creation_order(t) < mine)
        is_retry = any("failed_trial" in t.system_attrs for t in every if creation_order(t) == mine)
        if before >= self.budget and not is_retry:
            trial.study._storage.set_trial_system_attr(trial._trial_id, OVER_BUDGET_ATTR, True)
            trial.study.stop()
            raise optuna.TrialPruned(f"study budget of {self.budget} trials reached")
        return self.objective(trial)

    def after_trial(self, study: optuna.Study, _trial: FrozenTrial) -> None:
        live = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
        used = sum(1 for t in counted_trials(study.get_trials(deepcopy=False)) if t.state in live)
        if used >= self.budget:
            study.stop()


def optimize(
    storage_url: str | None,
    study_name: str,
    n_trials: int,
    *,
    timeout_s: float | None = None,
    sampler: SamplerSpec | None = None,
    worker_index: int = 0,
    progress: Any = None,
    budget: int | None = None,
) -> int:
    """Run up to `n_trials` trials of a stored study in this process; returns how many finished.

    With `budget`, stop once the study (all its workers together) has that many trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, must_exist=True)
    study, resolved = load(storage, study_name)
    sampler_spec = sampler or resolved.study.sampler
    offset = 7919 * worker_index + len(study.get_trials(deepcopy=False))
    objective = study_objective(resolved)
    study.sampler = make_sampler(sampler_spec, seed_offset=offset, objective=objective)
    _record_sampler(study, sampler_spec, resolved.study.sampler)
    before = finished_count(study)
    callbacks: list[Any] = [] if progress is None else [lambda _s, _t: progress.update(1)]
    func: Any = objective
    if budget is not None:
        guard = _BudgetGuard(objective, budget)
        if not remaining_budget(study, resolved, budget):
            return 0
        func = guard
        callbacks.append(guard.after_trial)
    study.optimize(func, n_trials=n_trials, timeout=timeout_s, catch=trial_failures(), callbacks=callbacks)
    return finished_count(study) - before


def trial_failures() -> tuple[type[Exception], ...]:
    """What a trial may raise that fails only that trial: running out of memory on one large
    candidate. Anything else is a bug or a broken setup and stops the worker, so it is seen."""
    failures: list[type[Exception]] = [MemoryError]
    torch = sys.modules.get("torch")
    if torch is not None:
        failures.append(torch.OutOfMemoryError)
    return tuple(failures)


def _worker_entry(args: tuple) -> None:
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    from nasopt.study.interrupts import drop_interrupt_tracebacks

    drop_interrupt_tracebacks()
    storage_url, study_name, n_trials, timeout_s, sampler_json, index, workers, budget = args
    os.environ.setdefault("NASOPT_LOCAL_WORKERS", str(workers))  # the supernet shares the cores
    sampler = None if sampler_json is None else SamplerSpec.model_validate_json(sampler_json)
    with contextlib.suppress(KeyboardInterrupt):  # the trial is already marked FAIL by Optuna
        optimize(
            storage_url,
            study_name,
            n_trials,
            timeout_s=timeout_s,
            sampler=sampler,
            worker_index=index,
            budget=budget,
        )


def run_workers(
    storage_url: str | None,
    study_name: str,
    n_trials: int,
    workers: int,
    *,
    timeout_s: float | None = None,
    sampler: SamplerSpec | None = None,
    show_progress: bool = True,
    budget: int | None = None,
) -> None:
    """Run `n_trials` new trials split over `workers` processes sharing the storage; with
    `budget`, every process runs until the study has that many trials (across all processes
    and machines), at most `n_trials` of them here."""
    from tqdm import tqdm

    storage = open_storage(storage_url, must_exist=True)
    study = optuna.load_study(study_name=study_name, storage=storage)
    bar = tqdm(total=n_trials, desc=f"{study_name}", unit="trial", disable=not show_progress, leave=True)
    if workers <= 1:
        try:
            optimize(
                storage_url,
                study_name,
                n_trials,
                timeout_s=timeout_s,
                sampler=sampler,
                progress=bar,
                budget=budget,
            )
        finally:
            bar.close()
        return
    start = finished_count(study)
    ctx = multiprocessing.get_context("spawn")
    sampler_json = None if sampler is None else sampler.model_dump_json()
    procs = [
        ctx.Process(
            target=_worker_entry,
            args=((storage_url, study_name, quota, timeout_s, sampler_json, i, workers, budget),),
            daemon=False,
        )
        for i, quota in enumerate([n_trials] * workers if budget else _quotas(n_trials, workers))
        if quota > 0
    ]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            bar.n = min(n_trials, finished_count(study) - start)
            bar.refresh()
        bar.n = min(n_trials, finished_count(study) - start)
        bar.refresh()
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)
        raise
    finally:
        bar.close()
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise RuntimeError(f"{len(failed)} worker process(es) exited with codes {failed}")


def remaining_budget(study: optuna.Study, resolved: ResolvedStudy, budget: int | None = None) -> int:
    """Trials still needed to reach `budget` (default: the spec's `n_trials`).

    Stale trials of dead workers are failed (and queued for retry) first; a failed trial that
    has been queued again does not count, its retry does; nor does a trial refused as over the
    budget."""
    optuna.storages.fail_stale_trials(study)
    done = finished_count(study)
    return max(0, (resolved.study.n_trials if budget is None else budget) - done)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))
