"""Block-wise distillation (`accuracy.block_distill`): a layer whose op differs from the largest
subnet's is fed the largest subnet's input there and pulled towards its output; only that op's
weights get gradients from it; the option needs the sandwich, and leaving it off keeps the
content hash of every existing configuration."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch

from nasopt.accuracy.supernet import Supernet, SupernetAccuracy
from nasopt.accuracy.supernet import _train as train_mod
from nasopt.accuracy.supernet._config import SupernetConfig
from nasopt.accuracy.supernet._ops import RunContext
from nasopt.core.candidate import Candidate
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from tests.conftest import space_spec
from tests.test_supernet import _config

MIXED = {  # VGG-like: op types that share nothing and have no shortcut, as in vgg11-compress
    "ops": {
        "conv": {"type": "conv", "kernel": 3},
        "dwsep": {"type": "dwsep", "kernel": 3},
        "fire": {"type": "fire", "squeeze_ratio": 0.25},
    },
    "stages": [
        {"name": "stem", "widths": [8], "layers": [{"op": "conv3", "stride": 2}]},
        {"name": "body", "widths": [8, 16], "layers": [{"choices": ["conv", "dwsep", "fire"], "repeat": 2}]},
        {"name": "head", "widths": [16], "layers": [{"op": "gap"}, {"op": "classifier"}]},
    ],
}


def mixed_space() -> SearchSpace:
    return SearchSpace(space_spec(**MIXED), cuts=0)


def _blocks(net: Supernet, cand: Candidate, x: torch.Tensor) -> list:
    ctx = RunContext(blocks=[])
    net(x, cand, ctx)
    return ctx.blocks or []


def test_block_loss_is_zero_for_the_teacher_and_trains_only_the_differing_op() -> None:
    space = mixed_space()
    torch.manual_seed(0)
    net = Supernet(space.spec)
    x = torch.randn(8, 3, 16, 16)
    teacher = space.largest()
    assert [teacher.ops[i] for i in (1, 2)] == ["conv", "conv"]
    taught = [(layer, a.detach(), b.detach()) for layer, a, b in _blocks(net, teacher, x)]
    assert len(taught) == len(teacher.ops)
    # the teacher against itself: every layer is its own computation, nothing to learn
    assert train_mod.block_loss(net, teacher, teacher, taught, _blocks(net, teacher, x)).item() == 0.0
    # a narrower candidate with dwsep in the first body layer, conv (the teacher's op) in the second
    ops = list(teacher.ops)
    ops[1] = "dwsep"
    cand = dataclasses.replace(teacher, ops=tuple(ops), widths=(8, 8, 16))
    net.zero_grad(set_to_none=True)
    loss = train_mod.block_loss(net, teacher, cand, taught, _blocks(net, cand, x))
    assert loss.item() > 0
    loss.backward()
    first, second = net.blocks["layer01"], net.blocks["layer02"]
    assert first.dw.weight.grad is not None and first.dw.weight.grad.abs().sum() > 0
    assert first.pw.weight.grad is not None and first.pw.weight.grad.abs().sum() > 0
    assert first.conv.weight.grad is None  # the teacher's op in that layer: its own target
    # the second layer runs the teacher's op but on fewer channels than the teacher feeds it:
    # trained to give the teacher's first channels from the teacher's first input channels
    assert second.conv.weight.grad is not None and second.conv.weight.grad[:8, :8].abs().sum() > 0
    assert second.conv.weight.grad[8:].abs().sum() == 0  # channels the candidate does not use
    assert net.blocks["layer00"].conv.weight.grad is None  # the input never changes there


def test_training_with_block_distill_runs_and_lowers_the_block_loss(tmp_path: Path) -> None:
    space = mixed_space()
    opts = _config(tmp_path, epochs=4, sampling="sandwich", random_subnets=1, block_distill=1.0, lr=0.01)
    est = SupernetAccuracy(space, opts)
    net = est.build()
    x = est.data.train_x[:32]
    cand = space.sample(random.Random(3))

    def loss_now() -> float:
        net.train()
        with torch.no_grad():
            taught = _blocks(net, space.largest(), x)
            return train_mod.block_loss(net, space.largest(), cand, taught, _blocks(net, cand, x)).item()

    before = loss_now()
    est.ensure_trained(progress=False)
    assert loss_now() < 0.7 * before


def test_block_distill_needs_the_sandwich_and_off_keeps_the_hash(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        SupernetConfig.from_options({"sampling": "uniform", "block_distill": 0.5})
    assert err.value.field == "accuracy.block_distill"
    off = SupernetConfig.from_options({"sampling": "sandwich"})
    assert "block_distill" not in off.training_key()
    on = SupernetConfig.from_options({"sampling": "sandwich", "block_distill": 0.5})
    assert on.training_key()["block_distill"] == 0.5
    space = mixed_space()
    base = SupernetAccuracy(space, _config(tmp_path))
    assert SupernetAccuracy(space, _config(tmp_path, block_distill=0.0)).hash == base.hash
    assert SupernetAccuracy(space, _config(tmp_path, block_distill=0.5)).hash != base.hash
