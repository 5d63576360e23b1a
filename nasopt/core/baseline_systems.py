"""Systems derived from a study's system for its baselines: one device alone, the path from the
first to the last device as a plain chain, and every link at a scaled bandwidth."""

from __future__ import annotations

import itertools
from dataclasses import replace

from nasopt.core.system import System
from nasopt.errors import SpecError


def first_device(system: System) -> str:
    """Where the input is produced: the chain's (or mesh's) first device, a tree's first leaf."""
    return system.leaves[0] if system.kind == "tree" else system.chain[0]


def last_device(system: System) -> str:
    """Where the result is wanted: the chain's last device, a mesh's last `after` device, a tree's root."""
    if system.kind == "chain":
        return system.chain[-1]
    if system.kind == "mesh":
        return system.after[-1]
    assert system.root is not None  # build_system gives every tree a root
    return system.root


def single_device_system(system: System, device: str) -> System:
    """`device` alone as a one-device chain: nothing is sent, its compute and memory cap kept."""
    if device not in system.devices:
        raise SpecError("unknown device", field="device", value=device, allowed=sorted(system.devices))
    return System(f"{system.name}:{device}", "chain", {device: system.devices[device]}, {}, chain=[device])


def input_path_system(system: System) -> System:
    """The devices the raw input crosses from the first to the last device, as a chain with the
    same links (a mesh's path goes through its first branch device). Not defined for trees."""
    if system.kind == "chain":
        return system
    if system.kind == "mesh":
        path = [*system.chain, system.branches[0], *system.after]
        links = {}
        for src, dst in itertools.pairwise(path):
            link = system.link(src, dst)
            links[link.name] = link
        return System(f"{system.name}:path", "chain", {d: system.devices[d] for d in path}, links, chain=path)
    raise SpecError("a tree has no single input path", field="topology.kind", value=system.kind)


def scaled_bandwidth_system(system: System, scale: float) -> System:
    """The same system with every link's bandwidth multiplied by `scale`."""
    if not scale > 0:
        raise SpecError("a bandwidth scale must be positive", field="bandwidth_scales", value=scale)
    links = {
        name: replace(link, bandwidth_bps=link.bandwidth_bps * scale) for name, link in system.links.items()
    }
    return System(
        system.name,
        system.kind,
        system.devices,
        links,
        chain=list(system.chain),
        root=system.root,
        branches=list(system.branches),
        after=list(system.after),
        leaves=list(system.leaves),
        parent=dict(system.parent),
    )
