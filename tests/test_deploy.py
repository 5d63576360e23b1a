"""Deployment: a candidate extracted from its supernet scores what the supernet scores, and its
per-device export composes back to the whole model under onnxruntime and TorchScript for chain,
mesh and multi-view tree placements (with and without bottleneck, 8-bit features), multi-view
fused by View-Fuse (concat) or View-Pool (max, mean), cut on the sensors or all on the aggregator."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from nasopt.accuracy.supernet import Supernet
from nasopt.core.candidate import Candidate
from nasopt.core.system import System, build_system
from nasopt.deploy import Subnet, extract, load_subnet, save_subnet, validation_accuracy
from nasopt.deploy.export import ExportError, check_export, export_parts, run_export
from nasopt.deploy.manifest import Manifest, read_manifest
from nasopt.errors import SpecError
from nasopt.presets import load_objective
from nasopt.space import SearchSpace
from tests.conftest import (
    FIXTURES,
    calibrated,
    chain_system,
    fixture_space,
    neck_space_spec,
    trained_estimator,
    tree_subnet,
)

# ------------------------------------------------------------------ extract


def test_extracted_subnet_scores_what_the_supernet_scores(tmp_path: Path) -> None:
    est = trained_estimator(neck_space_spec(), 2, tmp_path / "ck")
    space = est.space
    net = est._loaded()
    supernet_params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    rng = random.Random(3)
    scores = []
    for cand in [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(3))]:
        sub = extract(est, cand)
        scores.append(est.evaluate(cand))
        assert validation_accuracy(sub, est) == pytest.approx(scores[-1], abs=1e-5)
        # copies, not views, and only what the candidate uses
        assert all(p.untyped_storage().data_ptr() not in supernet_params for p in sub.parameters())
        assert sum(p.numel() for p in sub.parameters()) == sum(
            v.numel() for v in net.subnet_parameters(cand).values()
        )
    assert len(set(scores)) > 1  # the candidates differ, so the equality above means something
    # changing the supernet leaves an extracted subnet alone
    sub = extract(est, space.largest())
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        before = sub(x)
        for p in net.parameters():
            p.add_(1.0)
        assert torch.equal(sub(x), before)
    # file round trip, weights-only
    path = save_subnet(sub, tmp_path / "sub.pt", {"trial": 3})
    assert torch.load(path, weights_only=True)["format"] == "nasopt-subnet/1"
    with torch.no_grad():
        assert torch.equal(load_subnet(path)(x), before)
    data = bytearray(path.read_bytes())
    payload = torch.load(path, weights_only=True)
    next(iter(payload["state"].values())).view(-1)[0] += 1.0
    torch.save(payload, path)
    with pytest.raises(SpecError, match="digest"):
        load_subnet(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(SpecError, match="cannot read"):
        load_subnet(path)


# ------------------------------------------------------------------ export


def _check_composes(manifest: Manifest, out: Path, sub: Subnet, x: torch.Tensor) -> None:
    assert manifest.verification.passed
    assert manifest.verification.max_abs_error <= manifest.verification.tolerance
    assert read_manifest(out / "manifest.json") == manifest  # the file validates against the schema
    # another batch size than the one exported with: the batch axis is free
    y = torch.from_numpy(run_export(out, x))
    with torch.no_grad():
        ref = sub(x)
    assert float(ref.abs().max()) > 1e-3  # logits that are not all zero, or the check is empty
    assert torch.allclose(y, ref, atol=1e-3 * max(1.0, float(ref.abs().max())))


@pytest.fixture(scope="module")
def chain_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Subnet, System, Path, Manifest]:
    spec = neck_space_spec()
    system = chain_system([1e9, 2e9, 1e10], [1e6, 5e6])
    torch.manual_seed(0)
    net = Supernet(spec)
    cand = Candidate(
        ops=("conv3", "k3", "k5", "k3", "conv1", "gap", "classifier"),
        widths=(8, 16, 24, 32),
        cuts=(1, 4),
        bits=8,
    )
    sub = calibrated(net, cand, torch.randn(16, 3, 16, 16))
    out = tmp_path_factory.mktemp("chain")
    return sub, system, out, export_parts(sub, system, out, torch.randn(4, 3, 16, 16))


def test_chain_export_composes_and_its_manifest_says_what_travels(
    chain_export: tuple[Subnet, System, Path, Manifest],
) -> None:
    sub, _, out, manifest = chain_export
    _check_composes(manifest, out, sub, torch.randn(3, 3, 16, 16))
    assert manifest.execution_order == ["d0", "d1", "d2"]
    assert [p.role for p in manifest.parts] == ["compute"] * 3
    assert [link.name for link in manifest.links] == ["l0", "l1"]
    d1 = manifest.parts[1]
    assert [(t.name, t.dtype, t.source) for t in d1.inputs] == [
        ("d0.q", "uint8", "d0"),
        ("d0.lo", "float32", "d0"),
        ("d0.scale", "float32", "d0"),
    ]
    assert d1.inputs[0].shape == ["batch", 16, 8, 8]
    for link in manifest.links:  # 8-bit levels packed as the cost model counts them, + lo and scale
        assert link.bits == 8
        assert link.bytes_per_sample == link.predicted_bytes + 8.0
    assert manifest.parts[2].outputs[0].name == "logits" and manifest.output_device == "d2"
    assert sum(p.predicted_macs for p in manifest.parts) == sum(layer.macs for layer in _network(sub).layers)
    assert manifest.predicted_latency_ms > 0
    assert Manifest.model_json_schema()["title"] == "Manifest"


def _network(sub: Subnet):  # type: ignore[no-untyped-def]
    from nasopt.core.network import build_network

    return build_network(sub.macro, sub.candidate)


def test_a_changed_exported_file_is_refused(chain_export: tuple[Subnet, System, Path, Manifest]) -> None:
    _, _, out, manifest = chain_export
    path = out / manifest.parts[1].onnx.path  # type: ignore[union-attr]
    good = path.read_bytes()
    try:
        path.write_bytes(good[:-10] + bytes(10))
        with pytest.raises(ExportError, match="SHA-256"):
            check_export(out)
        with pytest.raises(ExportError, match="SHA-256"):
            run_export(out, torch.randn(1, 3, 16, 16))
    finally:
        path.write_bytes(good)
    check_export(out)


def test_bottleneck_at_a_depthwise_tap_with_relay(tmp_path: Path) -> None:
    """Two equal cuts at an MBConv's depthwise tap with a bottleneck: d0 runs the head and the
    Conv-Reduce, d1 relays the 8-bit payload unchanged, d2 recovers and runs the tail."""
    spec = neck_space_spec()
    system = chain_system([1e9, 2e9, 1e10], [1e6, 5e6])
    torch.manual_seed(1)
    net = Supernet(spec)
    cand = Candidate(
        ops=("conv3", "k5", "skip", "tap", "conv1", "gap", "classifier"),
        widths=(8, 8, 24, 32),
        cuts=(3, 3),
        bottleneck_width=4,
        bits=8,
    )
    sub = calibrated(net, cand, torch.randn(16, 3, 16, 16))
    manifest = export_parts(sub, system, tmp_path, torch.randn(4, 3, 16, 16))
    _check_composes(manifest, tmp_path, sub, torch.randn(2, 3, 16, 16))
    assert [p.role for p in manifest.parts] == ["compute", "relay", "compute"]
    assert manifest.parts[1].onnx is None
    assert manifest.links[0].tensors == manifest.links[1].tensors == ["d0.q", "d0.lo", "d0.scale"]
    assert manifest.parts[0].outputs[0].shape == ["batch", 4, 4, 4]  # the reduced width travels
    for link in manifest.links:
        assert link.bytes_per_sample == link.predicted_bytes + 8.0


def test_export_refuses_to_finish_when_parts_do_not_reproduce_the_model(tmp_path: Path) -> None:
    spec = neck_space_spec()
    system = chain_system([1e9, 1e10], [1e6])
    net = Supernet(spec)
    cand = Candidate(
        ops=("conv3", "k3", "k3", "k3", "conv1", "gap", "classifier"),
        widths=(8, 8, 24, 32),
        cuts=(2,),
        bits=8,
    )
    sub = calibrated(net, cand, torch.randn(8, 3, 16, 16))
    with pytest.raises(ExportError, match="do not reproduce"):
        export_parts(sub, system, tmp_path, torch.randn(2, 3, 16, 16), tolerance=0.0)
    assert not (tmp_path / "manifest.json").exists()


def test_mesh_export_composes(tmp_path: Path) -> None:
    """ue -> sbs (root) -> three branch devices -> cloud: the root sends the stage input to
    every branch, the cloud merges the branch outputs."""
    spec = fixture_space("mesh_space.toml")
    system = build_system(load_objective(str(FIXTURES / "mesh_obj.toml")))
    torch.manual_seed(2)
    net = Supernet(spec)
    space = SearchSpace(spec, system)
    cand = space.sample(random.Random(4))
    cand = Candidate(cand.ops, cand.widths, cuts=(1,), bits=8)
    sub = calibrated(net, cand, torch.randn(16, 3, 16, 16))
    manifest = export_parts(sub, system, tmp_path, torch.randn(4, 3, 16, 16))
    _check_composes(manifest, tmp_path, sub, torch.randn(2, 3, 16, 16))
    assert manifest.execution_order == ["ue", "sbs", "mbs0", "mbs1", "mbs2", "cloud"]
    cloud = manifest.parts[-1]
    assert [t.source for t in cloud.inputs] == ["mbs0", "mbs1", "mbs2"]
    ue_sbs = manifest.links[0]
    assert (ue_sbs.src, ue_sbs.dst, ue_sbs.bits) == ("ue", "sbs", 8)
    assert ue_sbs.bytes_per_sample == ue_sbs.predicted_bytes + 8.0
    assert {(link.src, link.dst) for link in manifest.links[1:4]} == {("sbs", f"mbs{i}") for i in range(3)}


def test_multiview_tree_export_with_hub_composes(tmp_path: Path) -> None:
    """Four cameras each run the per-view head on their own view and send 8-bit reduced
    features; the hub forwards all four; the root fuses the views and runs the tail."""
    sub, system = tree_subnet()
    manifest = export_parts(sub, system, tmp_path, torch.randn(3, 4, 3, 16, 16))
    _check_composes(manifest, tmp_path, sub, torch.randn(2, 4, 3, 16, 16))
    assert manifest.execution_order == ["cam0", "cam1", "cam2", "cam3", "hub", "root"]
    assert [p.inputs[0].name for p in manifest.parts[:4]] == [f"input.view{v}" for v in range(4)]
    assert manifest.parts[4].role == "relay"
    hub_root = manifest.links[-1]
    assert len(hub_root.tensors) == 12
    assert hub_root.bytes_per_sample == hub_root.predicted_bytes + 4 * 8.0
    for link in manifest.links[:4]:
        assert link.bytes_per_sample == link.predicted_bytes + 8.0


@pytest.mark.parametrize(("merge", "bottleneck_width"), [("max", 4), ("max", 0), ("mean", 4), ("mean", 0)])
def test_view_pool_tree_export_composes(merge: str, bottleneck_width: int, tmp_path: Path) -> None:
    """View-Pool: the root takes the views' element-wise max or mean (reduced or not) where
    View-Fuse would concatenate them; the sensors' payloads are the same 8-bit features."""
    sub, system = tree_subnet(merge, (2,), bottleneck_width)
    manifest = export_parts(sub, system, tmp_path, torch.randn(3, 4, 3, 16, 16))
    _check_composes(manifest, tmp_path, sub, torch.randn(2, 4, 3, 16, 16))
    channels = bottleneck_width or 24
    assert [p.outputs[0].shape for p in manifest.parts[:4]] == [["batch", channels, 8, 8]] * 4
    for link in manifest.links[:4]:
        assert link.bits == 8 and link.bytes_per_sample == link.predicted_bytes + 8.0
    # the pooled views differ from the concatenated ones: the merge is really exported
    concat, _ = tree_subnet("concat", (2,), bottleneck_width)
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(concat(x), sub(x))


@pytest.mark.parametrize(("merge", "bottleneck_width"), [("concat", 0), ("max", 4)])
def test_all_on_aggregator_export_composes(merge: str, bottleneck_width: int, tmp_path: Path) -> None:
    """Every camera sends its raw view (float32); the hub relays them; the root runs the per-view
    trunks on all four, the Conv-Reduce if there is one, fuses and runs the tail. The raw views
    are 32 bits on the wire where the cost model counts the input at `input_bits` (8)."""
    sub, system = tree_subnet(merge, (-1,), bottleneck_width)
    manifest = export_parts(sub, system, tmp_path, torch.randn(3, 4, 3, 16, 16))
    _check_composes(manifest, tmp_path, sub, torch.randn(2, 4, 3, 16, 16))
    assert [p.role for p in manifest.parts] == ["compute"] * 4 + ["relay", "compute"]
    assert all(p.layers == [] for p in manifest.parts[:4])  # the cameras only send
    assert [p.outputs[0].shape for p in manifest.parts[:4]] == [["batch", 3, 16, 16]] * 4
    assert sub.spec.input_bits == 8
    views = [f"cam{v}.feature" for v in range(4)]
    assert [link.tensors for link in manifest.links] == [[v] for v in views] + [views]
    for link in manifest.links:
        assert link.bits == 32 and link.bytes_per_sample == 4 * link.predicted_bytes
    assert manifest.links[-1].bytes_per_sample == 4 * 3 * 16 * 16 * 4.0
