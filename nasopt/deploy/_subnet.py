"""A candidate pulled out of its supernet: a stand-alone module with copies of the weights it
uses and its recalibrated BatchNorm statistics as buffers.

`Subnet` keeps only the supernet blocks and bottleneck modules the candidate runs, each
parameter replaced by a copy (not a view) of the slice the candidate uses, so the supernet can
be freed or trained on without changing it. Its forward pass is the supernet's own
(`Supernet.forward` run on these modules), so the two cannot differ in what they compute: the
copied slices are exactly what the supernet's elastic ops would cut from the widest weights (a
kernel centre crop of a kernel already that size is the whole kernel).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from nasopt.accuracy.supernet import RunContext, Supernet
from nasopt.accuracy.supernet._ops import bn_statistics
from nasopt.core.candidate import Candidate
from nasopt.core.macro import compile_space
from nasopt.errors import SpecError
from nasopt.spec import SearchSpaceSpec, parse_spec

FORMAT = "nasopt-subnet/1"


def _buffer_name(bn_key: str) -> str:
    return bn_key.replace(".", "__")


class Subnet(nn.Module):
    """One candidate as a plain `nn.Module`: `forward(x)` gives its logits, x (B, C, H, W) or,
    multi-view, (B, V, C, H, W). BatchNorm uses the stored statistics (evaluation); `train()`
    mode normalises with batch statistics like the supernet's training does."""

    def __init__(
        self,
        net: Supernet,
        candidate: Candidate,
        bn_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.spec = net.spec
        self.macro = net.macro
        self.views = net.views
        self.fusion_merge = net.fusion_merge  # the supernet's forward, which this runs, reads it
        self.candidate = candidate
        used = net.subnet_parameters(candidate)  # supernet name -> view of the slice used
        blocks: dict[str, nn.Module] = {}
        necks: dict[str, nn.Module] = {}
        for group, source in (("blocks", net.blocks), ("necks", net.necks)):
            out = blocks if group == "blocks" else necks
            for key, module in source.items():
                prefix = f"{group}.{key}."
                mine = {n[len(prefix) :]: v for n, v in used.items() if n.startswith(prefix)}
                if mine or group == "blocks":  # every layer runs; a gap or an identity has no weights
                    out[key] = _shrunk_copy(module, mine)
        self.blocks = nn.ModuleDict(blocks)
        self.necks = nn.ModuleDict(necks)
        self.bn_keys: list[str] = []
        if bn_stats is not None:
            keys = _bn_keys(self)
            missing = sorted(set(keys) - set(bn_stats))
            if missing:
                raise ValueError(f"no BatchNorm statistics for {missing[0]}")
            for key in keys:
                mean, var = bn_stats[key]
                self.register_buffer(f"bn_mean__{_buffer_name(key)}", mean.detach().clone())
                self.register_buffer(f"bn_var__{_buffer_name(key)}", var.detach().clone())
            self.bn_keys = keys

    def bn_fixed(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        """The stored BatchNorm statistics by BN key (None: none stored, batch statistics)."""
        if not self.bn_keys or self.training:
            return None
        return {
            key: (
                cast(torch.Tensor, getattr(self, f"bn_mean__{_buffer_name(key)}")),
                cast(torch.Tensor, getattr(self, f"bn_var__{_buffer_name(key)}")),
            )
            for key in self.bn_keys
        }

    def context(self) -> RunContext:
        return RunContext(bn_fixed=self.bn_fixed())

    def forward(self, x: torch.Tensor, ctx: RunContext | None = None) -> torch.Tensor:
        return Supernet.forward(cast(Supernet, self), x, self.candidate, ctx or self.context())


def _shrunk_copy(module: nn.Module, used: dict[str, torch.Tensor]) -> nn.Module:
    """A deep copy of `module` whose used parameters are copies of their used slices and whose
    submodules with no used parameter are removed."""
    clone = copy.deepcopy(module)
    for name, view in used.items():
        owner_name, _, attr = name.rpartition(".")
        owner = clone.get_submodule(owner_name) if owner_name else clone
        setattr(owner, attr, nn.Parameter(view.detach().clone().contiguous()))
    _prune(clone, "", set(used))
    return clone


def _prune(module: nn.Module, prefix: str, used: set[str]) -> bool:
    """Remove the children (recursively) that own no used parameter; True if `module` keeps one."""
    keep = any(f"{prefix}{n}" in used for n, _ in module.named_parameters(recurse=False))
    for name, child in list(module.named_children()):
        if _prune(child, f"{prefix}{name}.", used):
            keep = True
        else:
            delattr(module, name)
    for name, p in list(module.named_parameters(recurse=False)):
        if f"{prefix}{name}" not in used and p is not None:
            setattr(module, name, None)
    return keep


def _bn_keys(module: nn.Module) -> list[str]:
    from nasopt.accuracy.supernet._ops import ElasticBN

    return sorted(m.key for m in module.modules() if isinstance(m, ElasticBN))


def extract(estimator: Any, candidate: Candidate) -> Subnet:
    """The candidate of a trained `SupernetAccuracy` as a `Subnet`, with the BatchNorm
    statistics the estimator scores it with (recalibrated on the same batches)."""
    net = estimator._loaded()
    stats = estimator.bn_statistics(candidate)
    sub = Subnet(net, candidate, stats)
    sub.eval()
    return sub


def calibrated_subnet(
    net: Supernet, candidate: Candidate, batches: list[torch.Tensor], var_floor: float = 0.0
) -> Subnet:
    """`candidate` of `net` as a `Subnet` in evaluation mode, with the BatchNorm statistics of
    `batches` (for a supernet without an estimator: profiling, tests)."""
    collect: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for x in batches:
            net(x, candidate, RunContext(bn_collect=collect))
    return Subnet(net, candidate, bn_statistics(collect, var_floor)).eval()


def validation_accuracy(sub: Subnet, estimator: Any, loss_rate: float = 0.0) -> float:
    """Top-1 accuracy of `sub` on the estimator's validation split, the same samples and
    batches `SupernetAccuracy.evaluate` scores, with the same seeded packet loss at `loss_rate`."""
    config = estimator.config
    data = estimator.data
    n = config.val_samples or len(data.val_y)
    correct = seen = 0
    gen = torch.Generator().manual_seed(config.seed + 29)
    sub.eval()
    with torch.no_grad():
        for x, y in data.batches(config.eval_batch_size, gen, train=False):
            if seen >= n:
                break
            x, y = x[: n - seen], y[: n - seen]
            ctx = RunContext(loss_rate=loss_rate, generator=gen, bn_fixed=sub.bn_fixed())
            correct += int((sub(x, ctx).argmax(1) == y).sum())
            seen += len(y)
    return correct / max(seen, 1)


# ------------------------------------------------------------------ files


def state_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_subnet(sub: Subnet, path: Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `path` (weights, BN statistics, candidate and space as JSON text; loads with
    `torch.load(weights_only=True)`) and `path` with `.json`: the candidate and `meta`."""
    state = {k: v.detach().clone() for k, v in sub.state_dict().items()}
    doc = {
        "format": FORMAT,
        "state": state,
        "digest": state_digest(state),
        "candidate": json.dumps(sub.candidate.to_dict()),
        "space": json.dumps(sub.spec.model_dump(mode="json")),
        "bn_keys": json.dumps(sub.bn_keys),
        "meta": json.dumps(meta or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(doc, path)
    side = {"format": FORMAT, "candidate": sub.candidate.to_dict(), "space": sub.spec.name, **(meta or {})}
    path.with_suffix(".json").write_text(json.dumps(side, indent=2) + "\n", encoding="utf-8")
    return path


def load_subnet(path: Path) -> Subnet:
    """A `Subnet` saved by `save_subnet`; a file that is not one, or whose weights do not match
    their digest, is refused with a `SpecError`."""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpecError(f"cannot read subnet ({type(exc).__name__})", file=str(path)) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SpecError("not a nasopt subnet file", file=str(path), allowed=FORMAT)
    state = doc["state"]
    if state_digest(state) != doc.get("digest"):
        raise SpecError("corrupted subnet: weights do not match their digest", file=str(path))
    spec = parse_spec(SearchSpaceSpec, json.loads(doc["space"]), str(path))
    candidate = Candidate.from_dict(json.loads(doc["candidate"]))
    compile_space(spec)
    with torch.device("meta"):
        net = Supernet(spec)
    net.to_empty(device="cpu")
    keys = json.loads(doc["bn_keys"])
    stats = None
    if keys:
        stats = {k: (state[f"bn_mean__{_buffer_name(k)}"], state[f"bn_var__{_buffer_name(k)}"]) for k in keys}
    sub = Subnet(net, candidate, stats)
    sub.load_state_dict(state, strict=True)
    sub.eval()
    return sub
