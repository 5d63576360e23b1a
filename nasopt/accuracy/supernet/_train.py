"""Supernet training (sandwich rule with in-place distillation, or uniform single path) and its
checkpoints: resumable, atomic, content-addressed, verified on load.

A checkpoint holds tensors and JSON text only, so it loads with `torch.load(weights_only=True)`;
it records the content hash of (search space, cut domains, dataset, training settings) and a
SHA-256 digest of its weights. A file that does not load, has another hash, or whose weights do
not match their digest raises `CheckpointError`; it is never used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from nasopt.accuracy.data import Dataset
from nasopt.accuracy.supernet import _dist
from nasopt.accuracy.supernet._config import FORMAT, SupernetConfig
from nasopt.accuracy.supernet._net import Supernet
from nasopt.accuracy.supernet._ops import RunContext
from nasopt.accuracy.supernet._threads import use_free_cores
from nasopt.core.candidate import Candidate
from nasopt.errors import SpecError
from nasopt.space import SearchSpace


class CheckpointError(SpecError):
    """A checkpoint that cannot be used: corrupted, for another configuration, or missing."""


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, expected_hash: str, net: Supernet) -> dict[str, Any]:
    """Load `path` into `net` after checking format, content hash and weight digest."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage bytes, pickled objects, ...
        raise CheckpointError(
            f"corrupted checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            "delete it or run `nasopt train-supernet STUDY --retrain`",
            file=str(path),
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("not a nasopt supernet checkpoint", file=str(path), allowed=FORMAT)
    if payload.get("hash") != expected_hash:
        raise CheckpointError(
            "checkpoint was trained for another search space, dataset or training config "
            f"(hash {str(payload.get('hash'))[:16]}, expected {expected_hash[:16]})",
            file=str(path),
        )
    state = payload.get("model")
    if not isinstance(state, dict) or weights_digest(state) != payload.get("digest"):
        raise CheckpointError(
            "corrupted checkpoint: weights do not match their digest; delete it or retrain", file=str(path)
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint does not fit the supernet: {str(exc).splitlines()[0][:160]}", file=str(path)
        ) from None
    return payload


@dataclass
class TrainResult:
    path: Path
    trained: bool  # False: an existing checkpoint was reused
    seconds: float
    epochs: int
    history: list[dict[str, float]]


ESTIMATE_AFTER_STEPS = 5  # the up-front time estimate is measured over this many steps


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _step_seed(seed: int, epoch: int, step: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**31)


Phase = Literal["largest", "ops", "depth", "all"]


def phase_of(config: SupernetConfig, global_step: int, steps_per_epoch: int) -> Phase:
    """What the sandwich varies at `global_step`: the largest subnet alone (`largest_epochs`),
    then once-for-all's progressive shrinking (`shrink_epochs` each): the layers' ops other than
    `skip` at the widest widths, then depth (`skip` allowed), then everything."""
    alone = round(config.largest_epochs * steps_per_epoch)
    shrink = round(config.shrink_epochs * steps_per_epoch)
    if global_step < alone:
        return "largest"
    if global_step < alone + shrink:
        return "ops"
    if global_step < alone + 2 * shrink:
        return "depth"
    return "all"


def _within(
    space: SearchSpace, cand: Candidate, phase: Phase, widest: tuple[int, ...], rng: random.Random | None
) -> Candidate:
    """`cand` restricted to what `phase` varies: the `widest` widths before "all", and in the
    "ops" phase every `skip` replaced by one of the layer's other choices (drawn with `rng`, or
    its first listed one)."""
    if phase == "all":
        return cand
    ops = list(cand.ops)
    if phase == "ops":
        for layer in space.macro.layers:
            if space.macro.ops[ops[layer.index]].type != "skip":
                continue
            kept = [c for c in layer.choices if space.macro.ops[c].type != "skip"]
            if kept:
                ops[layer.index] = kept[int(rng.random() * len(kept))] if rng else kept[0]
    return replace(cand, ops=tuple(ops), widths=widest)


def _sample_subnets(
    space: SearchSpace, config: SupernetConfig, rng: random.Random, phase: Phase = "all"
) -> list[Candidate]:
    if config.sampling == "uniform":
        return [space.sample(rng)]
    largest = space.largest()
    if phase == "largest":
        return [largest]
    w = largest.widths
    n = config.random_subnets + (not config.train_smallest)
    randoms = [_within(space, space.sample(rng), phase, w, rng) for _ in range(n)]
    if not config.train_smallest:
        return [largest, *randoms]
    return [largest, _within(space, space.smallest(), phase, w, None), *randoms]


def lr_schedule(
    opt: torch.optim.Optimizer, config: SupernetConfig, steps_per_epoch: int, epochs: int | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `config.warmup_epochs`, then cosine decay to zero at the last step."""
    total = steps_per_epoch * (epochs or config.epochs)
    warm = min(round(config.warmup_epochs * steps_per_epoch), total - 1)

    def lr_factor(s: int) -> float:
        if s < warm:
            return (s + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * min(s - warm, total - warm) / (total - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)


def train_step(
    net: Supernet,
    space: SearchSpace,
    config: SupernetConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    packet_loss: bool,
    opt: torch.optim.Optimizer,
    phase: Phase = "all",
) -> tuple[float, int]:
    """One optimiser step on one global batch (seeded): the sandwich's subnets (as far as
    `phase` lets them vary, `phase_of`), or one uniform subnet, each forward + backward, then
    `opt.step()`. Returns (summed loss, correct predictions of the first subnet), over the
    global batch.

    Distributed (`nasopt.accuracy.supernet._dist`): every rank draws the same subnets and loss
    rates, runs its own rows of `x`, BatchNorm statistics are summed over the ranks and the
    gradients averaged before the step, so every rank takes the single-process step."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt.zero_grad(set_to_none=True)
    ranks = _dist.world_size()
    if ranks > 1:
        x, y = _dist.shard(x), _dist.shard(y)
    shard = (_dist.rank(), ranks) if ranks > 1 else None
    teacher: torch.Tensor | None = None
    teacher_blocks: list[tuple[Any, torch.Tensor, torch.Tensor]] = []
    step_loss = 0.0
    correct = 0
    subnets = _sample_subnets(space, config, rng, phase)
    distil_blocks = config.block_distill > 0 and config.sampling == "sandwich"
    for k, cand in enumerate(subnets):
        rate = rng.choice(config.loss_rates)
        ctx = RunContext(
            loss_rate=rate if packet_loss else 0.0,
            sync_bn=ranks > 1,
            shard=shard,
            blocks=[] if distil_blocks else None,
        )
        logits = net(x, cand, ctx)
        if teacher is None or config.sampling == "uniform":
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            if k == 0:
                teacher = logits.detach()
                teacher_blocks = [(layer, a.detach(), b.detach()) for layer, a, b in ctx.blocks or []]
                correct = int((logits.argmax(1) == y).sum().item())
        else:  # in-place distillation from the largest subnet (BigNAS / OFA)
            loss = F.kl_div(F.log_softmax(logits, 1), F.softmax(teacher, 1), reduction="batchmean")
            if config.kd_weight < 1:
                labels = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                loss = config.kd_weight * loss + (1 - config.kd_weight) * labels
            if distil_blocks:
                blocks = block_loss(net, subnets[0], cand, teacher_blocks, ctx.blocks or [], ranks > 1, shard)
                loss = loss + config.block_distill * blocks
        loss.backward()
        step_loss += loss.item()
    if ranks > 1:
        _dist.average_gradients(net.parameters())
        loss_sum, correct_sum = _dist.reduce_sum([step_loss, float(correct)])
        step_loss, correct = loss_sum / ranks, round(correct_sum)
    opt.step()
    return step_loss, correct


def block_loss(
    net: Supernet,
    teacher: Candidate,
    cand: Candidate,
    teacher_blocks: list[tuple[Any, torch.Tensor, torch.Tensor]],
    cand_blocks: list[tuple[Any, torch.Tensor, torch.Tensor]],
    sync_bn: bool = False,
    shard: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Block-wise distillation (DNA, Li et al. CVPR 2020): every layer where `cand` differs from
    the largest subnet `teacher` runs on the teacher's input to that layer (its first channels,
    as many as `cand` feeds it) and is pulled towards the teacher's output there (its first
    channels); the mean over those layers of the squared error over the target's variance.
    Each op thereby learns what the layer computes whatever came before it, which is what a
    layer mixing op types without a shortcut lacks when trained only end to end."""
    ops = net.macro.ops
    taught = {layer.index: (a, b) for layer, a, b in teacher_blocks}
    terms = []
    for layer, c_in, c_out in cand_blocks:
        i = layer.index
        if i not in taught:
            continue
        t_in, t_out = taught[i]
        same = cand.ops[i] == teacher.ops[i] and c_in.shape == t_in.shape and c_out.shape == t_out.shape
        identity = ops[cand.ops[i]].type == "skip" and c_in.shape == c_out.shape
        fits = (
            c_in.shape[2:] == t_in.shape[2:]
            and c_out.shape[2:] == t_out.shape[2:]
            and c_in.shape[1] <= t_in.shape[1]
            and c_out.shape[1] <= t_out.shape[1]
        )
        if same or identity or not fits:  # the teacher's own computation, no weights, or a reshaped input
            continue
        ctx = RunContext(sync_bn=sync_bn, shard=shard)
        y = net.blocks[layer.name](t_in[:, : c_in.shape[1]], ctx, ops[cand.ops[i]], cand.widths[layer.stage])
        target = t_out[:, : y.shape[1]]
        terms.append(F.mse_loss(y, target) / _variance(target, sync_bn).clamp_min(1e-6))
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).mean()


def _variance(t: torch.Tensor, synced: bool) -> torch.Tensor:
    """The variance of all of `t`'s values; `synced`: over the global batch of a distributed run
    (each rank holds equally many rows), so every rank divides by the single process's value."""
    if not synced:
        return t.var()
    n = t.numel() * _dist.world_size()
    sums = _dist.sync_sums(torch.stack([t.sum(), (t * t).sum()]))
    mean = sums[0] / n
    return (sums[1] / n - mean * mean) * n / (n - 1)


class WeightAverage:
    """An exponential moving average of a net's floating-point state, its decay ramped up as
    min(decay, (1 + n) / (10 + n)) after n updates so that early weights fade fast (TF's EMA)."""

    def __init__(self, net: Supernet, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def update(self, net: Supernet) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        with torch.no_grad():
            for name, value in net.state_dict().items():
                if value.is_floating_point():
                    self.state[name].lerp_(value, 1 - d)
                else:
                    self.state[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state, "updates": self.updates}

    def load_state_dict(self, doc: dict[str, Any]) -> None:
        self.state = {k: v.clone() for k, v in doc["state"].items()}
        self.updates = int(doc["updates"])


def train_supernet(
    net: Supernet,
    space: SearchSpace,
    data: Dataset,
    config: SupernetConfig,
    path: Path,
    content_hash: str,
    *,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train `net` (resuming from `path`'s partial checkpoint if one exists) and write the final
    checkpoint to `path`. `stop_after_steps` interrupts training (tests of resumption).

    In a distributed run every rank calls this with the same arguments: all load the same
    partial checkpoint, each trains on its rows of every global batch, and rank 0 alone writes
    checkpoints and shows progress."""
    from tqdm import tqdm

    ranks = _dist.world_size()
    if ranks > 1:
        _dist.check_world(config.batch_size, ranks, "WORLD_SIZE (--nproc, torchrun --nproc-per-node)")
    main = _dist.is_main()
    progress = progress and main

    t0 = time.perf_counter()
    partial = path.with_name(path.name.replace(".pt", ".partial.pt"))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(data.train_y) // config.batch_size
    if steps_per_epoch == 0:
        raise SpecError(
            f"batch size {config.batch_size} exceeds the {len(data.train_y)} training samples",
            field="accuracy.batch_size",
        )
    quiet = round(config.loss_warmup_epochs * steps_per_epoch)  # steps without packet loss
    average = WeightAverage(net, config.ema_decay) if config.ema_decay > 0 else None
    sched = lr_schedule(opt, config, steps_per_epoch)
    epoch = step = 0
    history: list[dict[str, float]] = []
    elapsed = 0.0
    if _dist.agree(partial.exists()):  # rank 0's view: every rank resumes, or none
        payload = load_checkpoint(partial, content_hash, net)
        opt.load_state_dict(payload["optimizer"])
        sched.load_state_dict(payload["scheduler"])
        epoch, step = int(payload["epoch"]), int(payload["step"])
        history = json.loads(payload["history"])
        elapsed = float(payload["seconds"])
        if average is not None:
            average.load_state_dict(payload["average"])

    def snapshot(done: bool) -> dict[str, Any]:
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        doc: dict[str, Any] = {
            "format": FORMAT,
            "hash": content_hash,
            "model": state,
            "digest": weights_digest(state),
            "epoch": epoch,
            "step": step,
            "complete": done,
            "seconds": elapsed + time.perf_counter() - t0,
            "history": json.dumps(history),
            "meta": json.dumps({"space": space.spec.name, "config": config.training_key()}),
        }
        if not done:
            doc["optimizer"] = opt.state_dict()
            doc["scheduler"] = sched.state_dict()
            if average is not None:
                doc["average"] = average.state_dict()
        return doc

    net.train()
    steps_done = 0
    # the up-front estimate times the first steps with every subnet, not largest-only ones
    mixed_steps = 0
    t_mixed = t0
    total_steps = config.epochs * steps_per_epoch
    # one bar over the whole training, so its ETA is the time left to the last epoch
    bar = tqdm(
        desc="supernet training",
        unit="step",
        initial=epoch * steps_per_epoch + step,
        total=total_steps,
        disable=not progress,
        leave=True,
    )
    while epoch < config.epochs:
        gen = torch.Generator().manual_seed(_step_seed(config.train_seed, epoch, -1))
        batches = data.batches(config.batch_size, gen, start=step)
        if epoch > 0 or step > 0:  # a process started meanwhile (or ended): rebalance
            use_free_cores(running=steps_done > 0)
        threads = torch.get_num_threads()
        bar.set_description(
            f"supernet epoch {epoch + 1}/{config.epochs} ({threads} thread{'s' * (threads > 1)})"
        )
        loss_sum = correct = seen = 0.0
        epoch_steps = 0
        for x, y in batches:
            seed = _step_seed(config.train_seed, epoch, step)
            global_step = epoch * steps_per_epoch + step
            phase = phase_of(config, global_step, steps_per_epoch)
            mixed = phase != "largest"
            if mixed and mixed_steps == 0 and steps_done > 0:
                t_mixed = time.perf_counter()
            step_loss, step_correct = train_step(
                net, space, config, x, y, seed, global_step >= quiet, opt, phase
            )
            if mixed:
                mixed_steps += 1
            if average is not None:
                average.update(net)
            correct += step_correct
            seen += len(y)
            sched.step()
            step += 1
            steps_done += 1
            epoch_steps += 1
            loss_sum += step_loss
            bar.update(1)
            if mixed_steps == ESTIMATE_AFTER_STEPS and progress:
                left = total_steps - (epoch * steps_per_epoch + step)
                per_step = (time.perf_counter() - t_mixed) / mixed_steps
                bar.write(
                    f"supernet: {per_step:.2f} s per step measured over the first {mixed_steps} steps; "
                    f"about {_duration(per_step * left)} for the remaining {left} "
                    f"({torch.get_num_threads()} intra-op thread(s)); Ctrl-C stops, and the same "
                    "command resumes from the last checkpoint"
                )
            bar.set_postfix(loss=f"{step_loss:.3f}", acc=f"{correct / max(seen, 1):.3f}")
            if step % config.checkpoint_every == 0 and main:
                save_checkpoint(partial, snapshot(False))
            if stop_after_steps is not None and steps_done >= stop_after_steps:
                bar.close()
                if main:
                    save_checkpoint(partial, snapshot(False))
                _dist.barrier()
                return TrainResult(partial, True, time.perf_counter() - t0, epoch, history)
        n = max(epoch_steps, 1)
        history.append({"epoch": epoch + 1, "loss": loss_sum / n, "train_acc": correct / max(seen, 1)})
        epoch += 1
        step = 0
        if epoch < config.epochs and main:
            save_checkpoint(partial, snapshot(False))
    bar.close()
    if average is not None:  # the final weights, checkpointed and left in the net, are the average
        net.load_state_dict(average.state)
    if main:
        save_checkpoint(path, snapshot(True))
        partial.unlink(missing_ok=True)
    _dist.barrier()  # every rank returns once the checkpoint exists
    return TrainResult(path, True, elapsed + time.perf_counter() - t0, config.epochs, history)
