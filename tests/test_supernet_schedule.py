"""The sandwich's weight-sharing options: `kd_weight` (in-place distillation vs labels),
`largest_epochs` (the largest subnet trained alone first), `shrink_epochs` (progressive
shrinking), `train_smallest` (the smallest subnet or one more random one) and `ema_decay` (the
checkpoint holds a moving average of the weights). Each off keeps every existing content hash."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

from nasopt.accuracy.supernet import Supernet, SupernetAccuracy
from nasopt.accuracy.supernet import _train as train_mod
from nasopt.accuracy.supernet._config import SupernetConfig
from nasopt.accuracy.supernet._train import WeightAverage, train_supernet
from nasopt.core.candidate import Candidate
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from tests.test_supernet import _config, tiny_space


def _step_loss(net: Supernet, est: SupernetAccuracy, **options: object) -> float:
    """The summed loss of one sandwich step from `net`'s weights (on a copy), with `options`."""
    config = SupernetConfig.from_options({**_config(Path("ck"), sampling="sandwich"), **options})
    net = copy.deepcopy(net)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr)
    x, y = est.data.train_x[:16], est.data.train_y[:16]
    return train_mod.train_step(net, est.space, config, x, y, 7, False, opt)[0]


def _record_draws(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Candidate]]]:
    """Every training step's (phase, subnets), in order, from here on."""
    drawn: list[tuple[str, list[Candidate]]] = []
    sample = train_mod._sample_subnets

    def recording(
        space: SearchSpace, config: SupernetConfig, rng: random.Random, phase: train_mod.Phase = "all"
    ) -> list[Candidate]:
        subnets = sample(space, config, rng, phase)
        drawn.append((phase, subnets))
        return subnets

    monkeypatch.setattr(train_mod, "_sample_subnets", recording)
    return drawn


def test_kd_weight_mixes_distillation_and_labels_linearly(tmp_path: Path) -> None:
    est = SupernetAccuracy(tiny_space(), _config(tmp_path, sampling="sandwich"))
    net = est.build()
    kd, labels, half = (_step_loss(net, est, kd_weight=w) for w in (1.0, 0.0, 0.5))
    assert abs(kd - labels) > 1e-3  # the labels' cross-entropy is not the distillation loss
    # the largest's loss is the same in all three; the others' is w * KD + (1 - w) * CE
    assert half == pytest.approx((kd + labels) / 2, rel=1e-5)


def test_largest_epochs_trains_the_largest_subnet_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tiny_space()
    draws = _record_draws(monkeypatch)
    est = SupernetAccuracy(
        space, _config(tmp_path, epochs=2, sampling="sandwich", random_subnets=1, largest_epochs=0.5)
    )
    est.ensure_trained(progress=True)
    steps = len(est.data.train_y) // 32
    alone = round(0.5 * steps)
    assert all(len(subnets) > 1 or subnets[0] == space.largest() for _, subnets in draws)
    assert [len(subnets) for _, subnets in draws] == [1] * alone + [3] * (2 * steps - alone)
    # the up-front time estimate is printed once, timed on steps that train every subnet
    estimates = [line for line in capsys.readouterr().out.splitlines() if "per step measured" in line]
    assert len(estimates) == 1
    assert f"for the remaining {2 * steps - alone - 5} " in estimates[0]


def test_phase_of_follows_largest_then_ops_then_depth_then_all() -> None:
    config = SupernetConfig.from_options(
        {"sampling": "sandwich", "epochs": 6, "largest_epochs": 1, "shrink_epochs": 1.5}
    )
    phases = [train_mod.phase_of(config, step, 10) for step in range(60)]
    assert phases == ["largest"] * 10 + ["ops"] * 15 + ["depth"] * 15 + ["all"] * 20
    plain = SupernetConfig.from_options({"sampling": "sandwich", "epochs": 6})
    assert {train_mod.phase_of(plain, step, 10) for step in range(60)} == {"all"}


def test_shrink_epochs_vary_ops_then_depth_then_widths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = tiny_space()
    widest = space.largest().widths
    ops = space.macro.ops
    layers = space.macro.layers
    skippable = [layer.index for layer in layers if "skip" in layer.choices]
    drawn = _record_draws(monkeypatch)
    est = SupernetAccuracy(
        space, _config(tmp_path, epochs=4, sampling="sandwich", random_subnets=2, shrink_epochs=1)
    )
    est.ensure_trained(progress=False)
    steps = len(est.data.train_y) // 32
    assert [p for p, _ in drawn] == ["ops"] * steps + ["depth"] * steps + ["all"] * (2 * steps)
    by_phase: dict[str, list] = {"ops": [], "depth": [], "all": []}
    for phase, subnets in drawn:
        assert subnets[0] == space.largest()
        by_phase[phase] += subnets[1:]
    for cand in by_phase["ops"] + by_phase["depth"]:
        assert cand.widths == widest
        space.validate(cand)
    assert not any(ops[c.ops[i]].type == "skip" for c in by_phase["ops"] for i in skippable)
    assert any(ops[c.ops[i]].type == "skip" for c in by_phase["depth"] for i in skippable)
    assert len({c.ops for c in by_phase["ops"]}) > 1  # the ops still vary
    assert any(c.widths != widest for c in by_phase["all"])


def test_train_smallest_false_draws_one_more_random_subnet_instead() -> None:
    space = tiny_space()
    smallest, largest = space.smallest(), space.largest()
    with_it = SupernetConfig.from_options({"sampling": "sandwich", "random_subnets": 2})
    without = SupernetConfig.from_options(
        {"sampling": "sandwich", "random_subnets": 2, "train_smallest": False}
    )
    a = train_mod._sample_subnets(space, with_it, random.Random(1))
    b = train_mod._sample_subnets(space, without, random.Random(1))
    assert a[:2] == [largest, smallest] and len(a) == 4
    assert b[0] == largest and len(b) == 4
    assert b[1:3] == a[2:]  # the same random draws, then one more
    draws = [train_mod._sample_subnets(space, without, random.Random(seed))[1:] for seed in range(20)]
    assert smallest not in [c for d in draws for c in d]


def test_ema_checkpoint_holds_the_average_and_resumes_to_the_same_weights(tmp_path: Path) -> None:
    space = tiny_space()
    opts = {"epochs": 2, "sampling": "sandwich", "random_subnets": 1, "ema_decay": 0.9}
    full = SupernetAccuracy(space, _config(tmp_path / "a", **opts))
    full.ensure_trained(progress=False)
    plain = SupernetAccuracy(space, _config(tmp_path / "c", **{**opts, "ema_decay": 0.0}))
    plain.ensure_trained(progress=False)
    averaged = torch.load(full.path, weights_only=True)["model"]
    last = torch.load(plain.path, weights_only=True)["model"]
    # the same training, so the checkpoints differ only by the average
    assert any(not torch.allclose(averaged[k], last[k], atol=1e-4) for k in last)

    part = SupernetAccuracy(space, _config(tmp_path / "b", **opts))
    r = train_supernet(
        part.build(), space, part.data, part.config, part.path, part.hash, progress=False, stop_after_steps=7
    )
    assert "average" in torch.load(r.path, weights_only=True)
    resumed = SupernetAccuracy(space, _config(tmp_path / "b", **opts))
    resumed.ensure_trained(progress=False)
    again = torch.load(resumed.path, weights_only=True)["model"]
    assert all(torch.allclose(averaged[k], again[k], atol=1e-5) for k in averaged)


def test_weight_average_ramps_its_decay_then_follows_it() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    avg = WeightAverage(net, 0.5)  # type: ignore[arg-type]
    avg.state["weight"].fill_(0.0)
    expected = 0.0
    for n in range(12):  # decay min(0.5, (1 + n) / (10 + n)): 0.1, 0.18, ... then 0.5 from n = 8
        with torch.no_grad():
            net.weight.fill_(float(n))
        avg.update(net)  # type: ignore[arg-type]
        d = 0.5 if n >= 8 else (1 + n) / (10 + n)
        expected = d * expected + (1 - d) * n
        assert avg.state["weight"].item() == pytest.approx(expected, rel=1e-6)


def test_options_need_the_sandwich_and_off_keeps_the_hash(tmp_path: Path) -> None:
    enabled = (("kd_weight", 0.5), ("largest_epochs", 1.0), ("shrink_epochs", 1.0), ("train_smallest", False))
    for key, value in enabled:
        with pytest.raises(SpecError) as err:
            SupernetConfig.from_options({"sampling": "uniform", key: value})
        assert err.value.field == f"accuracy.{key}"
        assert "sandwich" in str(err.value)
    with pytest.raises(SpecError) as err:
        SupernetConfig.from_options({"sampling": "sandwich", "epochs": 2, "largest_epochs": 2})
    assert err.value.field == "accuracy.largest_epochs"
    with pytest.raises(SpecError) as err:
        SupernetConfig.from_options(
            {"sampling": "sandwich", "epochs": 4, "largest_epochs": 1, "shrink_epochs": 1.5}
        )
    assert err.value.field == "accuracy.shrink_epochs"
    assert "largest_epochs + 2 * shrink_epochs < epochs (4)" in str(err.value)
    ema = SupernetConfig.from_options({"sampling": "uniform", "ema_decay": 0.99})
    assert ema.training_key()["ema_decay"] == 0.99
    space = tiny_space()

    def hash_of(**options: object) -> str:
        return SupernetAccuracy(space, _config(tmp_path, sampling="sandwich", **options)).hash

    base = hash_of()
    options = (("kd_weight", 1.0, 0.5), ("largest_epochs", 0.0, 0.5), ("shrink_epochs", 0.0, 0.25))
    for key, off, on in (*options, ("train_smallest", True, False), ("ema_decay", 0.0, 0.9)):
        assert hash_of(**{key: off}) == base
        assert hash_of(**{key: on}) != base


def test_init_seed_trains_another_supernet_on_the_same_data(tmp_path: Path) -> None:
    space = tiny_space()
    base = SupernetAccuracy(space, _config(tmp_path, sampling="sandwich", seed=3))
    same = SupernetAccuracy(space, _config(tmp_path, sampling="sandwich", seed=3, init_seed=3))
    other = SupernetAccuracy(space, _config(tmp_path, sampling="sandwich", seed=3, init_seed=4))
    assert same.config.train_seed == base.config.train_seed == 3
    assert "init_seed" not in base.config.training_key()
    assert same.hash == base.hash
    assert other.hash != base.hash
    assert torch.equal(other.data.train_x, base.data.train_x)  # the data follow `seed` alone
    assert torch.equal(other.data.val_y, base.data.val_y)
    a, b = base.build().state_dict(), other.build().state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # other initial weights
    c = same.build().state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)
