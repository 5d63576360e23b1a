"""`kernel_transform`: once-for-all's learned elastic-kernel transform. It starts as the plain
centre crop, extracted subnets hold the transformed kernels (and no transform), and off it keeps
every existing content hash."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from nasopt.accuracy.supernet import RunContext, Supernet, SupernetAccuracy
from nasopt.core.candidate import Candidate
from nasopt.deploy._subnet import load_subnet, save_subnet
from nasopt.space import SearchSpace
from tests.conftest import calibrated
from tests.test_supernet import _config, tiny_space


def _transforms(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in net.named_parameters() if "kernel_transform" in n}


def _with_small_kernels(space: SearchSpace, n: int) -> list[Candidate]:
    """`n` random candidates of the tiny space with a 3x3 MBConv in the body, where it is cut
    from the 5x5 (the later layer's choices are all 3x3)."""
    rng = random.Random(0)
    out: list[Candidate] = []
    while len(out) < n:
        cand = space.sample(rng)
        if "k3" in cand.ops[1:3]:
            out.append(cand)
    return out


def test_transform_starts_as_the_centre_crop_and_keeps_the_macs() -> None:
    space = tiny_space()
    torch.manual_seed(0)
    plain = Supernet(space.spec).eval()
    torch.manual_seed(0)
    net = Supernet(space.spec, kernel_transform=True).eval()
    transforms = _transforms(net)
    # the body's MBConvs have 5x5 and 3x3 kernels: one 9x9 matrix each, at identity
    assert transforms and all(p.shape == (9, 9) for p in transforms.values())
    assert all(torch.equal(p, torch.eye(9)) for p in transforms.values())
    base = plain.state_dict()
    assert all(torch.equal(base[k], v) for k, v in net.state_dict().items() if k in base)
    x = torch.randn(4, 3, 16, 16)
    for cand in _with_small_kernels(space, 3):
        a, b = RunContext(), RunContext()
        assert torch.allclose(plain(x, cand, a), net(x, cand, b), atol=1e-6)
        assert a.macs == b.macs


def test_extracted_subnet_holds_the_transformed_kernel_and_reloads(tmp_path: Path) -> None:
    space = tiny_space()
    net = Supernet(space.spec, kernel_transform=True)
    with torch.no_grad():
        for p in _transforms(net).values():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.randn(8, 3, 16, 16)
    for cand in _with_small_kernels(space, 2):
        sub = calibrated(net, cand, x)
        assert not _transforms(sub)
        expected = net(x, cand, RunContext(bn_fixed=sub.bn_fixed()))
        assert torch.allclose(sub(x), expected, atol=1e-5)
        crop = Supernet(space.spec)
        crop.load_state_dict({k: v for k, v in net.state_dict().items() if "kernel_transform" not in k})
        # the transform changed what the 3x3 kernels compute
        assert not torch.allclose(crop(x, cand, RunContext(bn_fixed=sub.bn_fixed())), expected, atol=1e-4)
        again = load_subnet(save_subnet(sub, tmp_path / "sub.pt"))
        assert torch.allclose(again(x), sub(x), atol=1e-6)


def test_training_learns_the_transforms_and_off_keeps_the_hash(tmp_path: Path) -> None:
    space = tiny_space()
    base = SupernetAccuracy(space, _config(tmp_path, sampling="sandwich"))
    off = SupernetAccuracy(space, _config(tmp_path, sampling="sandwich", kernel_transform=False))
    est = SupernetAccuracy(space, _config(tmp_path, sampling="sandwich", kernel_transform=True))
    assert off.hash == base.hash and "kernel_transform" not in base.config.training_key()
    assert est.hash != base.hash
    est.ensure_trained(progress=False)
    trained = torch.load(est.path, weights_only=True)["model"]
    learned = {k: v for k, v in trained.items() if "kernel_transform" in k}
    assert learned and any(not torch.allclose(v, torch.eye(9)) for v in learned.values())
    cand = _with_small_kernels(space, 1)[0]
    assert 0.0 <= est.evaluate(cand) <= 1.0
