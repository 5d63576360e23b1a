"""Distributed supernet training (2 gloo processes on CPU): the gradients of one step and the
weights after a few steps equal a single process's with the same global batch, only rank 0
writes checkpoints, a run killed under DDP resumes to the uninterrupted weights, and
`nasopt train-supernet --nproc` checks its value and trains."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from nasopt.accuracy.supernet import SupernetAccuracy, _dist
from nasopt.accuracy.supernet import _train as train_mod
from nasopt.accuracy.supernet._launch import free_port
from tests.test_supernet import _config, tiny_space

RANKS = 2


def config(folder: Path) -> dict[str, Any]:
    """4 steps of a global batch of 32 (128 training samples), sandwich of 3 subnets with
    packet loss from the first step, a partial checkpoint every 2 steps."""
    return _config(folder, limit=160, random_subnets=1, checkpoint_every=2)


def first_step_grads(est: SupernetAccuracy) -> dict[str, torch.Tensor]:
    """The gradients of the first training step of `est`'s fresh supernet."""
    net = est.build()
    cfg = est.config
    gen = torch.Generator().manual_seed(train_mod._step_seed(cfg.seed, 0, -1))
    x, y = est.data.batches(cfg.batch_size, gen)[0]
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    train_mod.train_step(net, est.space, cfg, x, y, train_mod._step_seed(cfg.seed, 0, 0), True, opt)
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def _rank(rank: int, port: int, job: str, folder: str) -> None:
    """One rank of a spawned group: `job` is "grads+train", "crash" (rank 1 killed during its
    third step) or "train" (resume whatever partial checkpoint exists)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(RANKS),
        LOCAL_WORLD_SIZE=str(RANKS),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    out = Path(folder)
    assert _dist.init_from_env()
    saves = out / f"saves-rank{rank}.txt"
    real_save = train_mod.save_checkpoint

    def counted_save(path: Path, payload: dict[str, Any]) -> None:
        with saves.open("a") as fh:
            fh.write(f"{path.name}\n")
        real_save(path, payload)

    train_mod.save_checkpoint = counted_save  # type: ignore[assignment]
    try:
        if job == "grads+train":
            grads = first_step_grads(SupernetAccuracy(tiny_space(), config(out)))
            torch.save(grads, out / f"grads-rank{rank}.pt")
        if job == "distill-grads":  # the first step's gradients with block-wise distillation only
            grads = first_step_grads(SupernetAccuracy(tiny_space(), {**config(out), "block_distill": 1.0}))
            torch.save(grads, out / f"grads-rank{rank}.pt")
            return
        if job == "crash" and rank == 1:
            real_step = train_mod.train_step
            calls = [0]

            def dying_step(*args: Any, **kw: Any) -> tuple[float, int]:
                calls[0] += 1
                if calls[0] == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real_step(*args, **kw)

            train_mod.train_step = dying_step  # type: ignore[assignment]
        SupernetAccuracy(tiny_space(), config(out)).ensure_trained(progress=False)
    finally:
        _dist.shutdown()


def spawn(job: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mp.spawn(_rank, args=(free_port(), job, str(folder)), nprocs=RANKS, join=True)


def weights(est: SupernetAccuracy) -> dict[str, torch.Tensor]:
    return torch.load(est.path, weights_only=True)["model"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A single-process run and a 2-rank run of the same config (one spawn for both checks)."""
    root = tmp_path_factory.mktemp("ddp")
    torch.set_num_threads(1)
    single = SupernetAccuracy(tiny_space(), config(root / "single"))
    torch.save(first_step_grads(single), root / "single-grads.pt")
    SupernetAccuracy(tiny_space(), config(root / "single")).ensure_trained(progress=False)
    spawn("grads+train", root / "ddp")
    return {"single": root / "single", "ddp": root / "ddp"}


def test_one_step_gradients_equal_the_single_process(runs: dict[str, Path]) -> None:
    single = torch.load(runs["single"].parent / "single-grads.pt", weights_only=True)
    for rank in range(RANKS):
        dist_grads = torch.load(runs["ddp"] / f"grads-rank{rank}.pt", weights_only=True)
        assert dist_grads.keys() == single.keys()
        for name, g in single.items():
            torch.testing.assert_close(dist_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_block_distill_gradients_equal_the_single_process(tmp_path: Path) -> None:
    """The block-wise loss divides by the global batch's variance on every rank, so its
    gradients, averaged over the ranks, are the single process's."""
    torch.set_num_threads(1)
    single = first_step_grads(SupernetAccuracy(tiny_space(), {**config(tmp_path), "block_distill": 1.0}))
    plain = first_step_grads(SupernetAccuracy(tiny_space(), config(tmp_path)))
    assert any(name not in plain or not torch.equal(plain[name], g) for name, g in single.items())
    spawn("distill-grads", tmp_path / "ddp")
    for rank in range(RANKS):
        dist_grads = torch.load(tmp_path / "ddp" / f"grads-rank{rank}.pt", weights_only=True)
        assert dist_grads.keys() == single.keys()
        for name, g in single.items():
            torch.testing.assert_close(dist_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_weights_after_a_few_steps_match_the_single_process(runs: dict[str, Path]) -> None:
    cfg = config(runs["single"])
    start = SupernetAccuracy(tiny_space(), cfg).build().state_dict()
    a = weights(SupernetAccuracy(tiny_space(), cfg))
    b = weights(SupernetAccuracy(tiny_space(), config(runs["ddp"])))
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    moved = torch.cat([(a[k] - start[k]).abs().flatten() for k in a])
    # AdamW normalises each step by the gradient's size, so float rounding in a near-zero
    # gradient can move a weight by up to about lr per step: bound the worst case by that and
    # require the typical difference to be far below the typical movement
    assert diff.max() < 4 * 3e-3
    assert diff.mean() < 0.03 * moved.mean()  # measured: 0.0045


def test_only_rank_0_writes_checkpoints(runs: dict[str, Path]) -> None:
    written = (runs["ddp"] / "saves-rank0.txt").read_text().split()
    assert written[-1].endswith(".pt") and not written[-1].endswith(".partial.pt")
    assert any(name.endswith(".partial.pt") for name in written)
    assert not (runs["ddp"] / "saves-rank1.txt").exists()


def test_run_killed_under_ddp_resumes_to_the_uninterrupted_weights(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(mp.ProcessExitedException):
        spawn("crash", tmp_path)
    est = SupernetAccuracy(tiny_space(), config(tmp_path))
    partial = est.path.with_name(est.path.name.replace(".pt", ".partial.pt"))
    assert partial.is_file() and not est.path.exists()
    assert torch.load(partial, weights_only=True)["step"] == 2
    spawn("train", tmp_path)
    assert not partial.exists()
    a = weights(SupernetAccuracy(tiny_space(), config(runs["ddp"])))
    b = weights(est)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.parametrize("nproc", ["0", "3", "64"])
def test_bad_nproc_is_refused_naming_the_option(
    nproc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nasopt.cli import main
    from tests.services import write_tiny_study

    write_tiny_study(tmp_path, accuracy='estimator = "supernet"\nbatch_size = 32')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["train-supernet", "study.toml", "--nproc", nproc]) != 0
    err = capsys.readouterr().err
    assert "--nproc" in err and "allowed: 1, 2, 4, 8, 16, 32" in err, err


def test_cli_nproc_2_trains_one_checkpoint(tmp_path: Path) -> None:
    from tests.services import check_ok, nasopt, write_tiny_study

    accuracy = 'estimator = "supernet"\nepochs = 1\nlimit = 120\nbatch_size = 16\ncalibration_batches = 1'
    write_tiny_study(tmp_path, accuracy=accuracy)
    done = check_ok(nasopt("train-supernet", "study.toml", "--nproc", "2", cwd=tmp_path, timeout_s=300))
    assert done.stderr.count("supernet: trained") == 1  # rank 0 alone reports
    assert len(list((tmp_path / ".nasopt" / "checkpoints").glob("*.pt"))) == 1
