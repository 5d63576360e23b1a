"""Retrain a chosen candidate as a stand-alone `Subnet`: fine-tuned from the supernet's weights
or trained from scratch (the study's `[retrain]` table, `RetrainSpec`), resumable, then scored
on the validation split the supernet score used.

Checkpoints are content-addressed: the file name holds a hash of (supernet checkpoint hash for
fine-tuning, candidate, training settings), so a changed setting never resumes a stale run;
they hold tensors and JSON text only and load with `torch.load(weights_only=True)`, their
weights checked against a SHA-256 digest. A partial checkpoint is written every
`checkpoint_every` steps and at every epoch's end; training resumes from it at the next step
with the same batches and the same random draws, so an interrupted run ends with the weights
an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nasopt.accuracy.supernet import RunContext, Supernet, SupernetAccuracy
from nasopt.accuracy.supernet._ops import bn_statistics
from nasopt.core.candidate import Candidate
from nasopt.deploy._subnet import Subnet, extract, state_digest, validation_accuracy
from nasopt.errors import SpecError
from nasopt.spec import RetrainSpec

FORMAT = "nasopt-retrain/1"


@dataclass
class RetrainResult:
    candidate: Candidate
    accuracy: float
    supernet_accuracy: float
    loss_rate: float
    path: Path
    trained: bool  # False: a finished checkpoint was reused
    seconds: float
    history: list[dict[str, float]]

    def record(self, config: RetrainSpec) -> dict[str, Any]:
        """What is stored for the trial: the accuracy and the config that produced it."""
        return {
            "accuracy": self.accuracy,
            "supernet_accuracy": self.supernet_accuracy,
            "config": {**config.model_dump(mode="json"), "loss_rate": self.loss_rate},
            "checkpoint": str(self.path),
            "seconds": round(self.seconds, 2),
            "history": self.history,
        }


def retrain_hash(
    estimator: SupernetAccuracy, candidate: Candidate, config: RetrainSpec, loss_rate: float
) -> str:
    doc = {
        "format": FORMAT,
        "supernet": estimator.hash if config.mode == "fine-tune" else None,
        "data": estimator.config.data_options(),
        "candidate": candidate.to_dict(),
        "config": config.model_dump(mode="json", exclude={"checkpoint_dir", "checkpoint_every"}),
        "loss_rate": loss_rate,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _initial(estimator: SupernetAccuracy, candidate: Candidate, config: RetrainSpec) -> Subnet:
    sub = extract(estimator, candidate)
    if config.mode == "scratch":
        torch.manual_seed(config.seed)
        fresh = Subnet(Supernet(estimator.space.spec), candidate, _stats_of(sub))
        sub = fresh
    return sub


def _stats_of(sub: Subnet) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    stats = sub.bn_fixed() if not sub.training else None
    if stats is None:
        sub.eval()
        stats = sub.bn_fixed()
    assert stats is not None
    return stats


def _save(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load(path: Path, expected_hash: str) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpecError(
            f"corrupted retrain checkpoint ({type(exc).__name__}); delete it to start over", file=str(path)
        ) from None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != FORMAT
        or payload.get("hash") != expected_hash
    ):
        raise SpecError("not this run's retrain checkpoint (format or hash differs)", file=str(path))
    if state_digest(payload["state"]) != payload.get("digest"):
        raise SpecError("corrupted retrain checkpoint: weights do not match their digest", file=str(path))
    return payload


def _recalibrate(sub: Subnet, batches: list[torch.Tensor]) -> None:
    """Set the BatchNorm buffers to the statistics of the trained weights on `batches`."""
    collect: dict[str, list[torch.Tensor]] = {}
    sub.train()
    with torch.no_grad():
        for x in batches:
            sub(x, RunContext(bn_collect=collect))
    sub.eval()
    for key, (mean, var) in bn_statistics(collect).items():
        name = key.replace(".", "__")
        getattr(sub, f"bn_mean__{name}").copy_(mean)
        getattr(sub, f"bn_var__{name}").copy_(var)


def retrain(
    estimator: SupernetAccuracy,
    candidate: Candidate,
    config: RetrainSpec,
    *,
    loss_rate: float = 0.0,
    base_dir: Path | None = None,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> RetrainResult:
    """Train `candidate` per `config` (resuming a partial checkpoint of the same run), score
    it, and return the result; `stop_after_steps` interrupts (tests of resumption)."""
    from tqdm import tqdm

    rate = config.loss_rate if config.loss_rate is not None else loss_rate
    digest = retrain_hash(estimator, candidate, config, rate)
    root = Path(config.checkpoint_dir)
    if not root.is_absolute():
        root = (base_dir or Path.cwd()) / root
    path = root / f"{estimator.space.spec.name}-{digest[:16]}.pt"
    partial = path.with_name(path.name.replace(".pt", ".partial.pt"))
    supernet_acc = estimator.evaluate(candidate, rate)
    sub = _initial(estimator, candidate, config)
    if path.is_file():
        payload = _load(path, digest)
        sub.load_state_dict(payload["state"])
        sub.eval()
        done = json.loads(payload["history"])
        return RetrainResult(
            candidate,
            float(payload["accuracy"]),
            supernet_acc,
            rate,
            path,
            False,
            float(payload["seconds"]),
            done,
        )
    data = estimator.data
    opt = torch.optim.AdamW(sub.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(data.train_y) // config.batch_size
    if steps_per_epoch == 0:
        raise SpecError(
            f"batch size {config.batch_size} exceeds the {len(data.train_y)} training samples",
            field="retrain.batch_size",
        )
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    epoch = step = 0
    history: list[dict[str, float]] = []
    elapsed = 0.0
    if partial.is_file():
        payload = _load(partial, digest)
        sub.load_state_dict(payload["state"])
        opt.load_state_dict(payload["optimizer"])
        sched.load_state_dict(payload["scheduler"])
        epoch, step = int(payload["epoch"]), int(payload["step"])
        history = json.loads(payload["history"])
        elapsed = float(payload["seconds"])
    t0 = time.perf_counter()

    def snapshot(extra: dict[str, Any]) -> dict[str, Any]:
        state = {k: v.detach().clone() for k, v in sub.state_dict().items()}
        return {
            "format": FORMAT,
            "hash": digest,
            "state": state,
            "digest": state_digest(state),
            "epoch": epoch,
            "step": step,
            "seconds": elapsed + time.perf_counter() - t0,
            "history": json.dumps(history),
            "candidate": json.dumps(candidate.to_dict()),
            **extra,
        }

    def resumable() -> dict[str, Any]:
        return snapshot({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})

    steps_done = 0
    while epoch < config.epochs:
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        batches = data.batches(config.batch_size, gen, start=step)
        bar = tqdm(
            batches,
            desc=f"retrain epoch {epoch + 1}/{config.epochs}",
            unit="step",
            initial=step,
            total=steps_per_epoch,
            disable=not progress,
        )
        loss_sum = 0.0
        n = 0
        sub.train()
        for x, y in bar:
            g = torch.Generator().manual_seed(config.seed * 7919 + epoch * 100_003 + step)
            opt.zero_grad(set_to_none=True)
            logits = sub(x, RunContext(loss_rate=rate, generator=g))
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            steps_done += 1
            loss_sum += loss.item()
            n += 1
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % config.checkpoint_every == 0:
                _save(partial, resumable())
            if stop_after_steps is not None and steps_done >= stop_after_steps:
                bar.close()
                _save(partial, resumable())
                return RetrainResult(candidate, float("nan"), supernet_acc, rate, partial, True, 0.0, history)
        bar.close()
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(n, 1)})
        epoch += 1
        step = 0
        _save(partial, resumable())
    calib = torch.Generator().manual_seed(config.seed + 17)
    _recalibrate(sub, [x for x, _ in data.batches(config.batch_size, calib)[: config.calibration_batches]])
    acc = validation_accuracy(sub, estimator, rate)
    _save(path, snapshot({"accuracy": acc, "complete": True}))
    partial.unlink(missing_ok=True)
    seconds = elapsed + time.perf_counter() - t0
    return RetrainResult(candidate, acc, supernet_acc, rate, path, True, seconds, history)


RETRAINED_ATTR = "retrained:{trial}"  # study user attr: a finished trial's attrs are read-only


def store_result(study: Any, trial_number: int, result: RetrainResult, config: RetrainSpec) -> None:
    """Record `result` on the study as user attr `retrained:<trial>` (Optuna refuses to change a
    finished trial's user attrs); `study.pareto.rows` shows it as `accuracy:retrained`."""
    study.set_user_attr(RETRAINED_ATTR.format(trial=trial_number), result.record(config))
