"""The Optuna objective of a model-tree study (`[model_tree]` in a study spec): each trial is one
of Wang et al.'s context-aware model trees (`nasopt.study.model_tree.TreeProblem`), scored on
the objective's replayed link contexts and stored like any nasopt trial.

Parameters read `block03.ctx2.action` and `layer04.ctx2.op`; the one objective value is Wang's
reward (eq. 7, maximised) or, with `accuracy_floor`, minus the mean latency less a penalty under
the floor (`goal`). Each trial's tree is in its user attr `model_tree`; the study's best trial
holds the best tree (`best_tree_trial`, what the sharing figure draws)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.study import StudyDirection

from nasopt.accuracy import make_estimator
from nasopt.core.model_tree import ModelTree, TreeLayout, sharing_figure
from nasopt.core.system import System, build_system
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from nasopt.spec import ModelTreeSpec, ObjectiveSpec, SearchSpaceSpec, StudySpec
from nasopt.study.model_tree import TreeProblem

TREE_ATTR = "model_tree"  # a trial's tree


def tree_to_dict(layout: TreeLayout, tree: ModelTree) -> dict[str, Any]:
    """A tree as JSON: block and context names, offload[block][context], ops[context][layer]."""
    return {
        "blocks": [b.name for b in layout.blocks],
        "contexts": list(layout.contexts),
        "offload": [list(row) for row in tree.offload],
        "ops": [list(row) for row in tree.ops],
        "cloud_base": tree.cloud_base,
    }


def tree_from_dict(layout: TreeLayout, doc: dict[str, Any]) -> ModelTree:
    """The stored tree back, checked against the study's layout (same blocks and contexts)."""
    blocks = [b.name for b in layout.blocks]
    if doc.get("blocks") != blocks or doc.get("contexts") != list(layout.contexts):
        raise SpecError(
            "the stored model tree does not match the study's blocks and contexts",
            field=TREE_ATTR,
            value={"blocks": doc.get("blocks"), "contexts": doc.get("contexts")},
            allowed={"blocks": blocks, "contexts": list(layout.contexts)},
        )
    offload = tuple(tuple(bool(x) for x in row) for row in doc["offload"])
    ops = tuple(tuple(str(x) for x in row) for row in doc["ops"])
    return ModelTree(offload, ops, bool(doc.get("cloud_base", False)))


def tree_problem(study: StudySpec, space: SearchSpaceSpec, objective: ObjectiveSpec) -> TreeProblem:
    """The TreeProblem a model-tree study searches (its spec's `[model_tree]`, the objective's
    `[robust]` replay); SpecError when the study has no `[model_tree]` or the system is not an
    edge -> cloud chain."""
    spec = study.model_tree
    if spec is None:
        raise SpecError("the study has no [model_tree] table", field="model_tree")
    system = build_system(objective)
    search_space = SearchSpace(space, system)
    estimator = make_estimator(study, search_space)
    robust = objective.robust
    return TreeProblem(
        search_space,
        system,
        estimator,
        samples=robust.samples,
        seed=robust.seed,
        deadline_ms=spec.deadline_ms if spec.deadline_ms is not None else robust.deadline_ms,
        accuracy_floor=spec.accuracy_floor,
        cloud_base=spec.cloud_base,
    )


class TreeObjective:
    """Callable Optuna objective of a model-tree study; the lifecycle uses it where a network
    study uses `NasObjective` (same attributes: directions, metric names, distributions)."""

    def __init__(self, study: StudySpec, space: SearchSpaceSpec, objective: ObjectiveSpec) -> None:
        self.study_spec = study
        self.objective_spec = objective
        self.tree_spec: ModelTreeSpec | None = study.model_tree
        self.problem = tree_problem(study, space, objective)
        self.space: SearchSpace = self.problem.space
        self.system: System = self.problem.system
        self.estimator = self.problem.estimator
        self.layout = self.problem.layout
        self.metric_names = ["reward" if self.problem.accuracy_floor is None else "goal"]
        self.directions = [StudyDirection.MAXIMIZE]
        self.constraint_names: list[str] = []
        self.optimal_split = False

    def distributions(self) -> dict[str, Any]:
        return dict(self.problem.distributions())

    def __call__(self, trial: optuna.trial.Trial) -> tuple[float, ...]:
        tree = self.problem.suggest(trial)
        score = self.problem.score(tree)
        value = self.problem.goal(score)
        doc = tree_to_dict(self.layout, tree)
        contexts = self.layout.contexts
        attrs: dict[str, Any] = {
            "accuracy": score.accuracy,
            "accuracy_estimator": self.estimator.name,
            **score.latency,
            "reward": score.reward,
            "feasible": True,
            "branches": {
                " > ".join(contexts[k] for k in path): share for path, share in score.replay.branches
            },
            "sharing": sharing_figure(self.layout, tree),
            TREE_ATTR: doc,
        }
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        return (value,)


def best_tree_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best completed trial of a model-tree study (None: not one, or none completed), read
    from the trials themselves so parallel workers cannot leave it stale."""
    if len(study.directions) != 1:
        return None
    try:
        trial = study.best_trial
    except ValueError:  # no completed trial
        return None
    return trial if TREE_ATTR in trial.user_attrs else None


def best_tree_summary(study: optuna.Study) -> str | None:
    """The best tree of a model-tree study in a few lines (None: not a model-tree study or no
    trial yet): its trial, latency, accuracy, branches taken and the text sharing figure."""
    trial = best_tree_trial(study)
    if trial is None:
        return None
    a = trial.user_attrs
    branches = sorted(a.get("branches", {}).items(), key=lambda kv: -kv[1])
    lines = [
        f"Best model tree: trial {trial.number} of {len(study.trials)} "
        f"({study.metric_names[0] if study.metric_names else 'value'} {trial.value:.4g})",
        f"latency mean {a['latency_mean_ms']:.4g} ms | p95 {a['latency_p95_ms']:.4g} ms | "
        f"worst {a['latency_worst_ms']:.4g} ms"
        + (f" | deadline misses {a['deadline_miss']:.2%}" if "deadline_miss" in a else "")
        + f"; accuracy {a['accuracy']:.4f} (branch-weighted)",
        "branches (contexts seen before each block, share of inferences): "
        + ", ".join(f"{path} {share:.1%}" for path, share in branches[:6])
        + (" ..." if len(branches) > 6 else ""),
        "sharing (one row per block, one column per context; same label: a shared node; ^: offloads):",
        str(a.get("sharing", "")),
    ]
    return "\n".join(lines)
