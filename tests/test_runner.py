"""Running an exported split for real: one `serve-part` process per device over loopback TCP.

The bytes each link carries equal the manifest's, the composed logits equal the whole model's
within the export tolerance (an 8-bit chain, a 4-bit chain whose levels travel packed two to a
byte, a multi-view tree with a relaying hub, the same tree all on the aggregator with View-Pool),
a changed part file is refused, the rate limiter holds a transfer to the set bandwidth, and no
part process outlives a failed, interrupted or killed runner."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nasopt.core.candidate import Candidate
from nasopt.deploy.export import export_parts
from nasopt.deploy.manifest import Manifest
from nasopt.deploy.runner import LinkPace, SplitRunner, link_paces, run_split
from nasopt.deploy.serve_pacing import PacedSender
from nasopt.deploy.serve_protocol import (
    RunSplitError,
    WireError,
    decode_tensors,
    encode_tensors,
    frame,
    pack_levels,
    packed_size,
    recv_frame,
    unpack_levels,
)
from tests.conftest import calibrated, chain_system, neck_space_spec, space_spec, tree_subnet
from tests.services import cli_env, nasopt

Export = tuple[torch.nn.Module, Path, Manifest]


@pytest.fixture(scope="module")
def chain_export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    system = chain_system([1e9, 2e9, 1e10], [1e6, 5e6], latency_s=0.002)
    torch.manual_seed(0)
    from nasopt.accuracy.supernet import Supernet

    net = Supernet(neck_space_spec())
    cand = Candidate(
        ops=("conv3", "k3", "k5", "k3", "conv1", "gap", "classifier"),
        widths=(8, 16, 24, 32),
        cuts=(1, 4),
        bits=8,
    )
    sub = calibrated(net, cand, torch.randn(16, 3, 16, 16))
    out = tmp_path_factory.mktemp("chain")
    return sub, out, export_parts(sub, system, out, torch.randn(2, 3, 16, 16))


@pytest.fixture(scope="module")
def bits4_export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    """4-bit levels: exported as uint8, sent packed two to a byte, as the manifest counts them."""
    from nasopt.accuracy.supernet import Supernet

    torch.manual_seed(0)
    net = Supernet(space_spec(bottleneck={"widths": ["none", 4], "bits": [4]}))
    ops = ("conv3", "k3", "k5", "k3", "conv1", "gap", "classifier")
    cand = Candidate(ops=ops, widths=(8, 16, 24, 32), cuts=(2,), bits=4)
    sub = calibrated(net, cand, torch.randn(16, 3, 16, 16))
    out = tmp_path_factory.mktemp("bits4")
    return sub, out, export_parts(sub, chain_system([1e9, 1e10], [1e6]), out, torch.randn(2, 3, 16, 16))


@pytest.fixture(scope="module")
def tree_export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    """Four cameras, a hub that relays, a root that fuses: 12 tensors on the hub's link."""
    sub, system = tree_subnet()
    out = tmp_path_factory.mktemp("tree")
    return sub, out, export_parts(sub, system, out, torch.randn(2, 4, 3, 16, 16))


@pytest.fixture(scope="module")
def aggregator_export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    """All on the aggregator, View-Pool mean with a bottleneck: raw float32 views on every link."""
    sub, system = tree_subnet("mean", (-1,), 4)
    out = tmp_path_factory.mktemp("aggregator")
    return sub, out, export_parts(sub, system, out, torch.randn(2, 4, 3, 16, 16))


def _tolerance(ref: torch.Tensor) -> float:
    return 1e-3 * max(1.0, float(ref.abs().max()))  # the export's TOLERANCE rule


@pytest.mark.parametrize("which", ["chain_export", "bits4_export", "tree_export", "aggregator_export"])
def test_loopback_split_sends_the_manifests_bytes_and_reproduces_the_model(
    which: str, request: pytest.FixtureRequest
) -> None:
    sub, out, manifest = request.getfixturevalue(which)
    if which == "bits4_export":
        assert manifest.links[0].bits == 4 and manifest.parts[0].outputs[0].dtype == "uint8"
    if which == "aggregator_export":
        assert all(link.bits == 32 for link in manifest.links)
    x = np.random.default_rng(1).standard_normal((3, *manifest.input.shape[1:])).astype(np.float32)
    with torch.no_grad():
        ref = sub(torch.from_numpy(x))
    with SplitRunner(out) as runner:
        assert len(runner.processes) == len(manifest.execution_order)
        y = runner.infer(x)
        runner.infer(x[:1])
        stats = runner.stats()
    assert np.abs(y - ref.numpy()).max() <= _tolerance(ref)
    for link in manifest.links:
        sent = stats[link.src]["links"][link.name]["payload_bytes"]
        assert sent["0"] == 3 * link.bytes_per_sample  # batch of 3: as the manifest says, per sample
        assert sent["1"] == link.bytes_per_sample
    rep = run_split(out, runs=2, warmup=1)
    assert [r["measured_bytes_per_sample"] for r in rep.bytes] == [
        link.bytes_per_sample for link in manifest.links
    ]
    kinds = [r["kind"] for r in rep.timing]
    assert kinds.count("compute") == sum(p.role == "compute" for p in manifest.parts)
    assert kinds.count("transfer") == len(manifest.links) and kinds[-1] == "latency"
    assert rep.timing[-1]["predicted_ms"] == manifest.predicted_latency_ms
    assert all(r["measured_ms"] > 0 for r in rep.timing)
    assert "end to end" in rep.format() and rep.to_dict()["median_latency_ms"] == rep.median_latency_ms


def test_links_paced_at_the_objectives_bandwidth_take_at_least_their_transfer_time(
    chain_export: Export,
) -> None:
    _, out, manifest = chain_export
    paces = link_paces(manifest, from_objective=True)
    assert paces["l0"] == LinkPace(1e6, 2.0) and paces["l1"] == LinkPace(5e6, 2.0)
    rep = run_split(out, runs=1, warmup=0, paces=paces)
    for row, link in zip([r for r in rep.timing if r["kind"] == "transfer"], manifest.links, strict=True):
        wire_s = link.bytes_per_sample * 8 / (link.bandwidth_bps or 1)
        assert row["measured_ms"] >= 0.8 * (wire_s * 1e3 + 2.0)
    with pytest.raises(RunSplitError, match="no such link"):
        link_paces(manifest, bandwidth_bps={"nope": 1e6})


def test_rate_limiter_holds_a_transfer_to_the_set_bandwidth() -> None:
    a, b = socket.socketpair()
    got = bytearray()

    def drain() -> None:
        while chunk := b.recv(65536):
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    data = bytes(range(256)) * 200  # 51,200 bytes: 410 ms at 1 Mbit/s
    seconds = PacedSender(a, bandwidth_bps=1e6).send([data[:1000], data[1000:]])
    lat = PacedSender(a, latency_s=0.05).send([b"x"])
    a.close()
    reader.join()
    b.close()
    assert bytes(got) == data + b"x"
    assert seconds >= 0.8 * len(data) * 8 / 1e6  # no upper bound: the machine is shared
    assert lat >= 0.05


def test_frames_are_checksummed_and_levels_travel_packed_at_their_bits() -> None:
    levels = np.random.default_rng(0).integers(0, 16, (2, 3, 5), dtype=np.uint8)
    packed = pack_levels(levels, 4)
    assert len(packed) == packed_size(levels.size, 4) == 15
    assert np.array_equal(unpack_levels(packed, 4, levels.size, "uint8").reshape(levels.shape), levels)
    wide = np.array([0, 1023, 512], dtype=np.int32)
    assert np.array_equal(unpack_levels(pack_levels(wide, 10), 10, 3, "int32"), wide)
    with pytest.raises(WireError, match="outside"):
        pack_levels(np.array([16], dtype=np.uint8), 4)
    values = {"d0.q": levels, "d0.scale": np.ones(2, np.float32)}
    specs, pieces = encode_tensors(values, ["d0.q", "d0.scale"], 4)
    assert sum(len(p) for p in pieces) == 15 + 8
    a, b = socket.socketpair()
    for piece in frame({"kind": "data", "tensors": specs}, pieces):
        a.sendall(piece)
    header, payload = recv_frame(b) or ({}, b"")
    decoded = decode_tensors(header["tensors"], payload)
    assert np.array_equal(decoded["d0.q"], levels) and np.array_equal(decoded["d0.scale"], values["d0.scale"])
    bad = b"".join(frame({"kind": "data"}, [b"abc"]))
    a.sendall(bad[:-1] + b"x")  # one payload byte changed in transit
    with pytest.raises(WireError, match="checksum"):
        recv_frame(b)
    a.close()
    b.close()


def test_a_part_served_by_hand_on_a_given_address_joins_the_run(chain_export: Export, tmp_path: Path) -> None:
    """`nasopt serve-part --listen HOST:PORT` started by the user, `--device d1=HOST:PORT` to the runner."""
    sub, out, _ = chain_export
    cmd = [sys.executable, "-m", "nasopt", "serve-part", str(out), "--device", "d1"]
    cmd += ["--listen", "127.0.0.1:0"]
    server = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("nasopt serve-part: d1 listening on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
        with SplitRunner(out, remote={"d1": ("127.0.0.1", port)}) as runner:
            assert sorted(runner.processes) == ["d0", "d2"]
            y = runner.infer(x)
        with torch.no_grad():
            ref = sub(torch.from_numpy(x))
        assert np.abs(y - ref.numpy()).max() <= _tolerance(ref)
        assert server.wait(timeout=30) == 0  # one run, then it exits
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _corrupted_copy(src: Path, dst: Path, device: str) -> Path:
    shutil.copytree(src, dst)
    path = dst / f"{device}.onnx"
    data = path.read_bytes()
    path.write_bytes(data[:-10] + bytes(10))
    return dst


def test_a_corrupted_part_file_is_refused(chain_export: Export, tmp_path: Path) -> None:
    _, out, _ = chain_export
    bad = _corrupted_copy(out, tmp_path / "bad", "d1")
    with pytest.raises(RunSplitError, match="SHA-256"):
        SplitRunner(bad).start()
    for args in (["serve-part", str(bad), "--device", "d1"], ["run-split", str(bad), "--runs", "1"]):
        proc = nasopt(*args, cwd=tmp_path, timeout_s=60)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "d1.onnx" in lines[0] and "SHA-256" in lines[0], proc.stderr
    proc = nasopt("serve-part", str(out), "--device", "nope", cwd=tmp_path, timeout_s=60)
    assert proc.returncode == 2 and "allowed: d0, d1, d2" in proc.stderr


def _serve_part_pids(export_dir: Path) -> list[int]:
    """Live `serve-part` processes of this export folder (found by their command lines)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"serve-part" in cmd and str(export_dir).encode() in cmd and state != "Z":
            pids.append(int(entry.name))
    return pids


def _wait_for(predicate, timeout_s: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_part_process_outlives_an_error_ctrl_c_or_a_killed_runner(
    chain_export: Export, tmp_path: Path
) -> None:
    _, out, manifest = chain_export
    export = tmp_path / "export"
    shutil.copytree(out, export)
    x = np.zeros((1, *manifest.input.shape[1:]), np.float32)
    # a part dies mid-run: the runner says which, and stops the others
    with pytest.raises(RunSplitError, match="serve-part d1 went away"), SplitRunner(export) as runner:
        runner.infer(x)
        runner.processes["d1"].kill()
        runner.infer(x)
    assert all(p.poll() is not None for p in runner.processes.values())
    assert _serve_part_pids(export) == []
    # Ctrl-C (SIGINT to the runner's process group, as a terminal sends it) and SIGKILL
    for sig in (signal.SIGINT, signal.SIGKILL):
        cmd = [sys.executable, "-m", "nasopt", "run-split", str(export), "--runs", "100000"]
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert _wait_for(lambda: len(_serve_part_pids(export)) == 3)
            time.sleep(0.5)  # inferences running
            if sig == signal.SIGINT:
                os.killpg(proc.pid, sig)
                _, err = proc.communicate(timeout=180)
                assert proc.returncode == 130 and "every part process it started was stopped" in err, err
            else:
                proc.kill()
                proc.wait(timeout=180)
            assert _wait_for(lambda: _serve_part_pids(export) == [], 30), _serve_part_pids(export)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
