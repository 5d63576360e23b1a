"""Supernet: every preset builds and runs, subnet MACs equal the analytic MACs, weights are
shared, checkpoints round-trip and broken ones are refused, training learns, packet loss and
quantisation act on the sent feature, and the data loaders read their formats."""

from __future__ import annotations

import dataclasses
import itertools
import random
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from nasopt.accuracy.supernet import (
    CheckpointError,
    RunContext,
    Supernet,
    SupernetAccuracy,
    SupernetConfig,
    packet_loss,
    quantise,
)
from nasopt.core.network import Network
from nasopt.core.system import build_system
from nasopt.errors import SpecError
from nasopt.presets import load_objective
from nasopt.space import SearchSpace
from nasopt.spec import SearchSpaceSpec, parse_spec, preset_dirs
from tests.conftest import space_spec

ROOT = Path(__file__).resolve().parent.parent
PRESETS = sorted(p.stem for p in (ROOT / "search_spaces").glob("*.toml"))


def small_variant(name: str) -> SearchSpaceSpec:
    """The preset on a 16x16 input (MACs are compared at that size) with multi-view fusion restricted
    to late points (early fusion multiplies the aggregator's input by the views: 580 M params)."""
    data = tomllib.loads((ROOT / "search_spaces" / f"{name}.toml").read_text())
    data["input"] = {**data["input"], "height": 16, "width": 16}
    if "fusion" in data:
        points = data["fusion"].get("points", "all")
        late = points if isinstance(points, list) and len(points) <= 2 else [27, 37]
        data["fusion"] = {**data["fusion"], "views": 2, "points": late}
    return parse_spec(SearchSpaceSpec, data, name)


def _input(spec: SearchSpaceSpec, cand: object, n: int = 2) -> torch.Tensor:
    shape = (n, spec.input.channels, spec.input.height, spec.input.width)
    if cand.fuse_after is not None:  # type: ignore[attr-defined]
        shape = (n, spec.fusion.views, *shape[1:])  # type: ignore[union-attr]
    return torch.randn(shape)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds_runs_and_macs_match(name: str) -> None:
    spec = small_variant(name)
    torch.manual_seed(0)
    net = Supernet(spec)
    cuts = 1 if spec.fusion is not None else 2
    space = SearchSpace(spec, cuts=cuts)
    rng = random.Random(1)
    for cand in [space.largest(), space.smallest(), space.sample(rng)]:
        x = _input(spec, cand, n=1)
        ctx = RunContext()
        with torch.no_grad():
            logits = net(x, cand, ctx)
        assert logits.shape == (1, spec.num_classes)
        assert torch.isfinite(logits).all()
        assert ctx.macs == space.network(cand).macs


def _analytic_blocks(network: Network) -> list[tuple[str, tuple[int, ...], int]]:
    """(macro layer, output shape, MACs) per supernet block, from the cost model's flat layers:
    a layer cut at its depthwise tap is its head, the bottleneck between and its tail."""
    out = []
    group: list = []
    for layer in network.layers:
        if group or layer.name.endswith(".head"):
            group.append(layer)
            if layer.name.endswith(".tail"):
                name = layer.name.removesuffix(".tail")
                out.append((name, layer.out_shape, sum(g.macs for g in group)))
                group = []
        elif layer.name.startswith("layer"):
            out.append((layer.name, layer.out_shape, layer.macs))
    return out


def _executed_blocks(net: Supernet, x: torch.Tensor, cand: object) -> list[tuple[str, tuple[int, ...], int]]:
    """(macro layer, output shape, MACs per sample) of every supernet block the forward ran."""
    record: list[tuple[str, tuple[int, ...], int]] = []
    before: list[int] = []

    def pre(module: torch.nn.Module, args: tuple) -> None:
        before.append(args[1].macs)

    def post(module: torch.nn.Module, args: tuple, y: torch.Tensor) -> None:
        x_in, ctx = args[0], args[1]
        macs = ctx.macs - before.pop()
        record.append((module.layer.name, tuple(y.shape[1:]), macs // x_in.shape[0]))

    handles = []
    for block in net.blocks.values():
        handles.append(block.register_forward_pre_hook(pre))
        handles.append(block.register_forward_hook(post))
    try:
        with torch.no_grad():
            net(x, cand, RunContext())  # type: ignore[arg-type]
    finally:
        for h in handles:
            h.remove()
    return record


@pytest.mark.parametrize("name", PRESETS)
def test_supernet_and_cost_model_walk_the_same_layers(name: str) -> None:
    """The supernet and the cost model consume one walk: for random candidates, every block
    the supernet runs is the cost model's layer in the same place, same output shape and MACs."""
    spec = small_variant(name)
    torch.manual_seed(0)
    net = Supernet(spec)
    space = SearchSpace(spec, cuts=1 if spec.fusion is not None else 2)
    rng = random.Random(5)
    for cand in [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(4))]:
        expected = _analytic_blocks(space.network(cand))
        assert [n for n, _, _ in expected] == [layer.name for layer in space.macro.layers]
        assert _executed_blocks(net, _input(spec, cand, n=2), cand) == expected


def assert_random_subnet_macs_match(space: SearchSpace, seed: int, n: int) -> None:
    """The supernet's executed MACs equal the analytic model's for `n` random candidates."""
    net = Supernet(space.spec)
    rng = random.Random(seed)
    for _ in range(n):
        cand = space.sample(rng)
        assert net.subnet_macs(cand) == space.network(cand).macs


def test_mesh_space_parallel_stage_with_mesh_system() -> None:
    spec = parse_spec(
        SearchSpaceSpec, tomllib.loads((ROOT / "tests/fixtures/mesh_space.toml").read_text()), "m"
    )
    system = build_system(load_objective(str(ROOT / "tests/fixtures/mesh_obj.toml")))
    space = SearchSpace(spec, system)
    assert_random_subnet_macs_match(space, seed=2, n=6)


def test_split_tap_and_bottleneck_macs() -> None:
    spec = space_spec(bottleneck={"widths": ["none", 4, 8], "bits": [4, 8]})
    space = SearchSpace(spec, cuts=2)
    assert_random_subnet_macs_match(space, seed=3, n=30)


def test_subnet_parameters_are_views_of_the_supernet() -> None:
    spec = space_spec()
    net = Supernet(spec)
    space = SearchSpace(spec, cuts=1)
    cand = space.sample(random.Random(4))
    params = dict(net.named_parameters())
    used = net.subnet_parameters(cand)
    assert used
    for name, view in used.items():
        base = params[name]
        assert view.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
        assert view.numel() <= base.numel()
    name, view = next(iter(used.items()))
    with torch.no_grad():
        params[name].add_(1.0)
    assert torch.equal(view, net.subnet_parameters(cand)[name])


def test_residual_blocks_start_as_the_identity() -> None:
    """A fresh supernet's residual MBConvs add nothing (zero last-BN scale, BigNAS), so skipping
    them leaves the logits unchanged; a non-residual layer's choice still changes them."""
    spec = small_variant("mbconv-quick")
    torch.manual_seed(0)
    net = Supernet(spec)
    space = SearchSpace(spec, cuts=1)
    big = space.largest()
    residual = [i for i, layer in enumerate(space.macro.layers) if "skip" in layer.choices]
    assert residual
    shallow = dataclasses.replace(
        big, ops=tuple("skip" if i in residual else op for i, op in enumerate(big.ops))
    )
    first = next(
        i for i, layer in enumerate(space.macro.layers) if "k3_e3" in layer.choices and i not in residual
    )
    other = dataclasses.replace(big, ops=tuple("k3_e3" if i == first else op for i, op in enumerate(big.ops)))
    x = _input(spec, big, n=4)
    with torch.no_grad():
        logits = net(x, big, RunContext())
        assert torch.allclose(net(x, shallow, RunContext()), logits, atol=1e-5)
        assert not torch.allclose(net(x, other, RunContext()), logits, atol=1e-3)
        for name, p in net.named_parameters():
            if name.endswith("project.bn.weight") and not p.any():
                p.fill_(1.0)
        assert not torch.allclose(net(x, shallow, RunContext()), net(x, big, RunContext()), atol=1e-3)


def test_packet_loss_and_quantisation_of_the_sent_feature() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 8, 6, 6) + 0.1
    g = torch.Generator().manual_seed(0)
    y = packet_loss(x, 0.3, g)
    lost = (y == 0).float().mean().item()
    assert 0.22 < lost < 0.38
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.7)
    assert torch.equal(packet_loss(x, 0.0, g), x)
    q = quantise(x, 2)
    for i in range(4):
        assert len(torch.unique(q[i].round(decimals=4))) <= 4
    assert torch.equal(quantise(x, 32), x)
    assert (quantise(x, 8) - x).abs().max() <= (x.max() - x.min()) / 255
    # at the split of a real subnet: the sent feature is quantised to the candidate's bits
    spec = space_spec(bottleneck={"widths": [4], "bits": [2]})
    space = SearchSpace(spec, cuts=1)
    net = Supernet(spec)
    cand = space.candidate({**{p.name: p.choices[0] for p in space.params()}, "split.after": 2})
    ctx = RunContext(keep_sent=True, loss_rate=0.5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net(torch.randn(3, 3, 16, 16), cand, ctx)
    (sent,) = ctx.sent
    assert sent.shape[1] == 4
    assert (sent == 0).float().mean() > 0.3
    for i in range(3):
        assert len(torch.unique(sent[i].round(decimals=4))) <= 4 + 1  # 2-bit levels, plus the lost zeros


def test_cut_inside_a_residual_block_sends_the_skip_tensor() -> None:
    """A cut after the depthwise conv of a residual MBConv: the supernet sends the depthwise
    output and the block input (both quantised, both lossy), as many elements as the cost model
    counts, and the MACs still match."""
    ops = {"mb": {"type": "mbconv", "expansion": 2, "split_tap": "depthwise"}}
    stages = [
        {"name": "stem", "widths": [8], "layers": [{"op": "conv3"}]},
        {"name": "body", "widths": [8], "layers": [{"op": "mb"}]},
        {"name": "head", "widths": [8], "layers": [{"op": "gap"}, {"op": "classifier"}]},
    ]
    spec = space_spec(ops=ops, stages=stages, bottleneck={"bits": [2]})
    space = SearchSpace(spec, cuts=1)
    cand = space.candidate({"split.after": 1})
    network = space.network(cand)
    assert network.sent_elems == ((16 + 8) * 16 * 16,)
    net = Supernet(spec)
    ctx = RunContext(keep_sent=True, loss_rate=0.5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net(torch.randn(2, 3, 16, 16), cand, ctx)
    feature, skip = ctx.sent
    assert (tuple(feature.shape[1:]), tuple(skip.shape[1:])) == ((16, 16, 16), (8, 16, 16))
    assert sum(t[0].numel() for t in ctx.sent) == network.sent_elems[0]
    for t in (feature, skip):
        assert (t == 0).float().mean() > 0.3  # packet loss
        assert len(torch.unique(t[0].round(decimals=4))) <= 4 + 1  # 2-bit levels, plus zeros
    assert net.subnet_macs(cand) == network.macs


@pytest.mark.parametrize("merge", ["concat", "max", "mean"])
def test_multi_view_placements_and_fusions_walk_the_same_layers(merge: str) -> None:
    """Both placements (the per-view layers on the sensors, or all on the aggregator) with a
    Conv-Reduce before every fusion kind: same blocks, shapes and MACs as the cost model, and
    all on the aggregator nothing is reduced at the input."""
    fusion = {"views": 2, "points": [1, 2], "merge": merge, "placement": ["sensors", "aggregator"]}
    spec = space_spec(fusion=fusion, bottleneck={"widths": [4], "bits": [8]})
    space = SearchSpace(spec)
    net = Supernet(spec)
    for placement, fuse in itertools.product(["sensors", "aggregator"], [1, 2]):
        base = {p.name: p.choices[0] for p in space.params()}
        cand = space.candidate({**base, "fuse.placement": placement, "fuse.after": fuse})
        network = space.network(cand)
        types = [layer.op_type for layer in network.layers]
        assert types.index("conv_reduce") == network.fuse_after  # the last per-view layer
        assert network.cut_after == ((-1,) if placement == "aggregator" else (network.fuse_after,))
        x = _input(spec, cand, n=2)
        assert _executed_blocks(net, x, cand) == _analytic_blocks(network)
        assert net.subnet_macs(cand) == network.macs


def _config(tmp_path: Path, **kw: object) -> dict:
    base = {
        "estimator": "supernet",
        "dataset": "digits",
        "limit": 320,
        "epochs": 1,
        "batch_size": 32,
        "checkpoint_dir": str(tmp_path / "ck"),
        "checkpoint_every": 3,
        "val_samples": 64,
    }
    return {**base, **kw}


def tiny_space() -> SearchSpace:
    spec = space_spec(input={"channels": 3, "height": 16, "width": 16})
    return SearchSpace(spec, cuts=1)


def test_training_reduces_loss_and_checkpoint_round_trip(tmp_path: Path) -> None:
    space = tiny_space()
    est = SupernetAccuracy(space, _config(tmp_path, epochs=3, sampling="sandwich", random_subnets=1))
    result = est.ensure_trained(progress=False)
    assert result.trained and result.path.is_file()
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    payload = torch.load(result.path, weights_only=True)
    assert payload["hash"] == est.hash
    cand = space.sample(random.Random(5))
    acc = est.evaluate(cand)
    assert 0.0 <= acc <= 1.0
    again = SupernetAccuracy(space, _config(tmp_path, epochs=3, sampling="sandwich", random_subnets=1))
    reuse = again.ensure_trained(progress=False)
    assert not reuse.trained
    assert again.evaluate(cand) == acc  # same weights, same calibration, same split


def test_interrupted_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    space = tiny_space()
    full = SupernetAccuracy(space, _config(tmp_path / "a", sampling="uniform"))
    full.ensure_trained(progress=False)
    from nasopt.accuracy.supernet._train import train_supernet

    part = SupernetAccuracy(space, _config(tmp_path / "b", sampling="uniform"))
    net = part.build()
    r = train_supernet(
        net, space, part.data, part.config, part.path, part.hash, progress=False, stop_after_steps=4
    )
    assert r.path.name.endswith(".partial.pt") and not part.path.exists()
    resumed = SupernetAccuracy(space, _config(tmp_path / "b", sampling="uniform"))
    resumed.ensure_trained(progress=False)
    a = torch.load(full.path, weights_only=True)["model"]
    b = torch.load(resumed.path, weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_corrupted_or_mismatched_checkpoint_is_refused(tmp_path: Path) -> None:
    space = tiny_space()
    est = SupernetAccuracy(space, _config(tmp_path, limit=96))
    est.ensure_trained(progress=False)
    good = est.path.read_bytes()
    est.path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CheckpointError, match="corrupted"):
        SupernetAccuracy(space, _config(tmp_path, limit=96)).ensure_trained(progress=False)
    # a flipped weight: loads, but the digest no longer matches
    payload = torch.load(io_bytes(good), weights_only=True)
    key = next(iter(payload["model"]))
    payload["model"][key].view(-1)[0] += 1.0
    torch.save(payload, est.path)
    with pytest.raises(CheckpointError, match="digest"):
        SupernetAccuracy(space, _config(tmp_path, limit=96)).evaluate(space.smallest())
    # another configuration's checkpoint under this name
    payload["hash"] = "0" * 64
    torch.save(payload, est.path)
    with pytest.raises(CheckpointError, match="another"):
        SupernetAccuracy(space, _config(tmp_path, limit=96)).ensure_trained(progress=False)


def io_bytes(data: bytes) -> object:
    import io

    return io.BytesIO(data)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(SpecError, match=r"accuracy\.sampling"):
        SupernetConfig.from_options({"sampling": "greedy"})
    with pytest.raises(SpecError, match=r"accuracy\.epoch"):
        SupernetConfig.from_options({"epoch": 3})
    with pytest.raises(SpecError, match=r"accuracy\.loss_rates"):
        SupernetConfig.from_options({"loss_rates": [0.2, 1.5]})


def test_quickstart_study_uses_the_supernet() -> None:
    from nasopt.presets import resolve
    from nasopt.study.objective import NasObjective

    r = resolve(str(ROOT / "studies/quickstart.toml"))
    obj = NasObjective(r.study, r.space, r.objective)  # lazy: nothing is trained or loaded here
    assert obj.estimator.name == "supernet"
    assert preset_dirs("space")


def test_run_trains_first_then_workers_score_with_the_shared_checkpoint(tmp_path: Path) -> None:
    """`nasopt run --workers 2` trains the supernet once, both workers score trials with it (the
    stored accuracy equals an in-process evaluation of the same candidate), a later run reuses it."""
    import optuna

    from nasopt.presets import resolve
    from tests.services import check_ok, nasopt, write_tiny_study

    accuracy = 'estimator = "supernet"\nepochs = 1\nlimit = 240\nbatch_size = 16\ncalibration_batches = 1'
    study_file = write_tiny_study(tmp_path, n_trials=6, accuracy=accuracy)
    url = f"sqlite:///{tmp_path / 's.db'}"
    run = ["run", "study.toml", "--storage", url, "--no-progress"]
    first = check_ok(nasopt(*run, "--n-trials", "4", "--workers", "2", cwd=tmp_path, timeout_s=300))
    assert "supernet: trained" in first.stderr
    assert len(list((tmp_path / ".nasopt" / "checkpoints").glob("*.pt"))) == 1  # no partial left
    study = optuna.load_study(study_name="tiny", storage=url)
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(trials) == 4
    assert {t.user_attrs["accuracy_estimator"] for t in trials} == {"supernet"}
    r = resolve(str(study_file))
    space = SearchSpace(r.space, build_system(r.objective))
    est = SupernetAccuracy(space, r.study.accuracy, base_dir=tmp_path)
    for t in trials:
        assert est.evaluate(space.candidate(t.params), 0.0) == pytest.approx(t.user_attrs["accuracy"])
    second = check_ok(nasopt(*run, "--n-trials", "1", cwd=tmp_path, timeout_s=300))
    assert "supernet: reusing" in second.stderr


def test_local_workers_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from nasopt.accuracy.supernet import _threads
    from nasopt.accuracy.supernet._estimator import use_available_cores

    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("NASOPT_THREADS", raising=False)
    monkeypatch.setattr(_threads, "busy_elsewhere", lambda own: 0.0)  # an idle machine
    try:
        monkeypatch.setenv("NASOPT_LOCAL_WORKERS", "1")
        use_available_cores()
        assert torch.get_num_threads() == cores
        monkeypatch.setenv("NASOPT_LOCAL_WORKERS", str(2 * cores))  # more workers than cores
        use_available_cores()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_leave_busy_cores_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core another process keeps busy gets no intra-op thread (benchmarks/threads.md: on 2
    cores beside one busy loop, 2 threads spin-waited at every operator's barrier)."""
    from nasopt.accuracy.supernet import _threads

    assert _threads.choose_threads(2, 1, 0.0) == 2
    assert _threads.choose_threads(2, 1, 1.0) == 1
    assert _threads.choose_threads(2, 1, 5.0) == 1  # never fewer than one
    assert _threads.choose_threads(8, 2, 2.0) == 3
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("NASOPT_THREADS", raising=False)
    monkeypatch.setenv("NASOPT_LOCAL_WORKERS", "1")
    monkeypatch.setattr(_threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    try:
        # starting: all of the load is someone else's; running with 1 thread: 1 core is ours
        assert _threads.use_free_cores() == 1
        assert _threads.use_free_cores(running=True) == 1
        monkeypatch.setattr(_threads.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
        assert _threads.use_free_cores(running=True) == 2  # the other process ended
        monkeypatch.setenv("NASOPT_THREADS", "3")  # the user's setting wins
        assert _threads.use_free_cores() == 3
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ data


def test_digits_and_shapes() -> None:
    from nasopt.accuracy.data import load_dataset, shapes

    d = load_dataset({"dataset": "digits"}, channels=3, height=32, width=32)
    assert d.train_x.shape[1:] == (3, 32, 32) and len(d.val_y) > 300
    assert d.augment
    x, y, k = shapes(20, views=3, size=16, seed=0)
    x2, _, _ = shapes(20, views=3, size=16, seed=0)
    assert k >= 10 and x.shape == (20, 3, 1, 16, 16) and torch.equal(x, x2)
    assert set(y.tolist()) == set(range(10))
    assert (x.flatten(1).amax(1) > 0).all()  # every object is visible
    mv = load_dataset({"dataset": "shapes", "samples": 40}, channels=3, height=16, width=16, views=3)
    assert mv.train_x.shape[1:] == (3, 3, 16, 16)
    sv = load_dataset({"dataset": "shapes", "samples": 40}, channels=3, height=16, width=16)
    assert sv.train_x.shape[1:] == (3, 16, 16)  # a single-view space gets plain images


def nearest_centroid(feat: torch.Tensor, labels: torch.Tensor, classes: int, n_train: int) -> float:
    """Accuracy on rows n_train.. of the class centroids of rows ..n_train: a linear probe of
    whether a feature names the class."""
    train, test = slice(0, n_train), slice(n_train, None)
    centroids = torch.stack([feat[train][labels[train] == c].mean(0) for c in range(classes)])
    return float((torch.cdist(feat[test], centroids).argmin(1) == labels[test]).float().mean())


MakeDataset = Callable[..., tuple[torch.Tensor, torch.Tensor, int]]


def assert_deterministic_and_balanced(
    make: MakeDataset, n: int, classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`make(n, size=32, seed=3)` gives the same balanced set twice, another with another seed,
    pixels in [0, 1]: (x, y)."""
    x, y, k = make(n, size=32, seed=3)
    x2, y2, _ = make(n, size=32, seed=3)
    assert k == classes and x.shape == (n, 3, 32, 32) and torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(make(20, seed=4)[0], x[:20])  # the seed matters
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.bincount(y, minlength=classes).tolist() == [n // classes] * classes
    return x, y


def test_textures_deterministic_balanced_and_not_trivial() -> None:
    from nasopt.accuracy.data import TEXTURE_PERIODS_PX, load_dataset, textures

    x, y = assert_deterministic_and_balanced(textures, 400, 10)
    # not trivial: the mean image of a class says nothing (the shape shows only by its texture)
    assert nearest_centroid(x.flatten(1), y, 10, 300) < 0.25
    # learnable: the grating period shows in the radially averaged power spectrum
    grey = x.mean(1)
    power = torch.fft.fftshift(torch.fft.fft2(grey - grey.mean((1, 2), keepdim=True)).abs() ** 2, dim=(1, 2))
    u = torch.arange(32) - 16
    radius = torch.sqrt(u[:, None] ** 2 + u[None, :] ** 2).round().long().clamp(max=16)
    profile = torch.stack([power[:, radius == r].mean(1) for r in range(17)], 1)
    period = y % len(TEXTURE_PERIODS_PX)
    assert nearest_centroid(torch.log(profile), period, 2, 300) > 0.7
    d = load_dataset({"dataset": "textures", "samples": 60}, channels=3, height=16, width=16)
    assert d.train_x.shape[1:] == (3, 16, 16) and d.num_classes == 10 and len(d.val_y) == 12
    with pytest.raises(SpecError, match="multi-view"):
        load_dataset({"dataset": "textures", "samples": 60}, channels=3, height=16, width=16, views=3)


def test_glyphs_deterministic_balanced_and_not_trivial() -> None:
    from nasopt.accuracy.data import glyph_templates, glyphs, load_dataset

    x, y = assert_deterministic_and_balanced(glyphs, 600, 10)
    t = glyph_templates(10, 5, np.random.default_rng(0), min_distance=6)
    assert t.shape == (10, 5, 5) and set(np.unique(t)) <= {0.0, 1.0}
    assert min((t[i] != t[j]).sum() for i in range(10) for j in range(i)) >= 6  # distinct classes

    def power(images: torch.Tensor) -> torch.Tensor:  # translation-invariant, sign-invariant
        grey = images.mean(1)
        p = torch.fft.fft2(grey - grey.mean((1, 2), keepdim=True)).abs() ** 2
        return torch.log((p / p.sum((1, 2), keepdim=True)).flatten(1) + 1e-6)

    # not trivial: random position and colours leave no class in the mean image
    assert nearest_centroid(x.flatten(1), y, 10, 450) < 0.2
    # the class is the glyph: without rotation, clutter and noise its power spectrum names it
    clean, cy, _ = glyphs(600, size=32, seed=3, rotation_deg=0.0, clutter=0, noise=0.0)
    assert torch.equal(cy, y) and nearest_centroid(power(clean), cy, 10, 450) > 0.6
    d = load_dataset({"dataset": "glyphs", "samples": 60}, channels=3, height=16, width=16)
    assert d.train_x.shape[1:] == (3, 16, 16) and d.num_classes == 10 and len(d.val_y) == 12


def test_cifar_binary(tmp_path: Path) -> None:
    from nasopt.accuracy.data import load_dataset

    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1.bin", 5), ("data_batch_2.bin", 3), ("test_batch.bin", 4)):
        rec = np.zeros((n, 3073), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, n)
        rec[:, 1:] = rng.integers(0, 256, (n, 3072))
        rec.tofile(tmp_path / name)
    d = load_dataset({"dataset": "cifar10", "path": str(tmp_path)}, channels=3, height=32, width=32)
    assert d.train_x.shape == (8, 3, 32, 32) and d.val_x.shape == (4, 3, 32, 32)
    raw = np.fromfile(tmp_path / "data_batch_1.bin", dtype=np.uint8).reshape(5, 3073)
    assert d.train_y[0] == raw[0, 0]
    assert torch.allclose(d.train_x[0, 0, 0, :3], torch.tensor(raw[0, 1:4] / 255.0, dtype=torch.float32))
    c100 = tmp_path / "c100"
    c100.mkdir()
    for name, n in (("train.bin", 6), ("test.bin", 2)):
        rec = np.zeros((n, 3074), dtype=np.uint8)
        rec[:, 0], rec[:, 1] = 3, 77
        rec.tofile(c100 / name)
    d = load_dataset({"dataset": "cifar100", "path": str(c100)}, channels=3, height=32, width=32)
    assert d.num_classes == 100 and (d.train_y == 77).all()


def test_npz_and_image_folder(tmp_path: Path) -> None:
    from nasopt.accuracy.data import load_dataset

    x = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10) % 3)
    d = load_dataset({"dataset": "npz", "path": str(tmp_path / "d.npz")}, channels=3, height=8, width=8)
    assert d.num_classes == 3 and len(d.train_y) + len(d.val_y) == 10
    root = tmp_path / "imgs"
    for k, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pix = np.full((4, 5), 40 * k + i, dtype=np.uint8)
            (root / cls / f"{i}.pgm").write_bytes(b"P5\n# c\n5 4\n255\n" + pix.tobytes())
        rgb = np.full((4, 5, 3), 200, dtype=np.uint8)
        (root / cls / "c.ppm").write_bytes(b"P6 5 4 255\n" + rgb.tobytes())
    from nasopt.accuracy.data import image_folder

    xs, ys, k = image_folder(root)
    assert k == 2 and xs.shape == (8, 1, 4, 5) and ys.tolist() == [0] * 4 + [1] * 4
    assert xs[1, 0, 0, 0] == pytest.approx(1 / 255)
    with pytest.raises(SpecError, match=r"accuracy\.path"):
        load_dataset({"dataset": "folder", "path": str(tmp_path / "none")}, channels=3, height=8, width=8)


def test_two_concurrent_runs_train_the_supernet_once(tmp_path: Path) -> None:
    """Two `nasopt train-supernet` on the same fresh study at once: one trains, the other waits
    on the training lock and reuses the checkpoint (both used to train)."""
    from tests.services import check_ok, nasopt_concurrently, write_tiny_study

    accuracy = 'estimator = "supernet"\nepochs = 1\nlimit = 240\nbatch_size = 16\ncalibration_batches = 1'
    write_tiny_study(tmp_path, n_trials=2, accuracy=accuracy)
    first, second = nasopt_concurrently(
        ["train-supernet", "study.toml"], ["train-supernet", "study.toml"], cwd=tmp_path
    )
    outcomes = sorted(
        "trained"
        if "supernet: trained" in p.stderr
        else "reusing"
        if "supernet: reusing" in p.stderr
        else p.stderr
        for p in (check_ok(first), check_ok(second))
    )
    assert outcomes == ["reusing", "trained"], (first.stderr, second.stderr)
    waited = [p for p in (first, second) if "another process is training" in p.stderr]
    assert len(waited) == 1 and "supernet: reusing" in waited[0].stderr  # they did overlap
    assert len(list((tmp_path / ".nasopt" / "checkpoints").glob("*.pt"))) == 1
