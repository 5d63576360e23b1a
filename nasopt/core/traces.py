"""Bandwidth traces: reading a recorded CSV (time_s, bandwidth_bps) with row-exact errors, the
bundled synthetic traces (`nasopt/core/traces/*.csv`) and the generator that wrote them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nasopt.errors import SpecError

TRACES_DIR = Path(__file__).parent / "traces"
HEADER = ("time_s", "bandwidth_bps")

# Levels (median uplink bandwidth) and mobility patterns of the bundled traces. Every number is
# an ASSUMPTION: Wang et al. (seed 002, Fig. 1) record 4G and WiFi traces on a Xiaomi MI 6X but
# print no figures, only that "the bandwidth changes drastically even within a small time window
# like 1s" when moving. 4G: 8 Mb/s, the LTE uplink objectives/edge-cloud-4g already assumes;
# 4g-weak: 1 Mb/s, an ASSUMED weak-signal indoor LTE uplink (Wang's "4G (weak) indoor" rows);
# WiFi: 30 Mb/s, an ASSUMED 802.11n indoor uplink (a few times the LTE one). The log-bandwidth is
# an Ornstein-Uhlenbeck process around the level: coherence time tau_s and spread sigma (of the
# natural log) per mobility; static = a phone on a desk, slow = walking, fast = in a vehicle.
LEVELS_BPS = {"4g": 8e6, "4g-weak": 1e6, "wifi": 30e6}
MOBILITY = {"static": (10.0, 0.15), "slow": (2.0, 0.45), "fast": (0.3, 0.8)}  # (tau_s, sigma)
FLOOR_BPS = 1e5  # a connected link keeps at least 100 kb/s (ASSUMPTION)


@dataclass(frozen=True)
class Trace:
    """A piecewise-constant bandwidth: `bandwidth_bps[i]` holds from `time_s[i]` to the next
    time; the last row holds for the median step, and the trace then repeats."""

    time_s: np.ndarray
    bandwidth_bps: np.ndarray
    source: str

    @property
    def duration_s(self) -> float:
        return float(self.edges_s[-1] - self.edges_s[0])

    @property
    def edges_s(self) -> np.ndarray:
        t = self.time_s
        last = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
        return np.append(t, t[-1] + last)


def trace_names() -> list[str]:
    return sorted(p.stem for p in TRACES_DIR.glob("*.csv"))


def resolve_trace(ref: str, *, field: str) -> Path:
    """A bundled trace by name (`4g-fast`), else a CSV path."""
    if "/" not in ref and not ref.endswith(".csv"):
        path = TRACES_DIR / f"{ref}.csv"
        if not path.is_file():
            raise SpecError("unknown bundled trace", field=field, value=ref, allowed=trace_names())
        return path
    return Path(ref)


def load_trace(ref: str, *, field: str = "trace") -> Trace:
    """Read a trace CSV: a `time_s,bandwidth_bps` header, then rows of two numbers with times
    strictly increasing and bandwidths in [1, 1e18] b/s; `#` lines are comments."""
    path = resolve_trace(ref, field=field)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("trace file not found", file=str(path), field=field) from None
    except OSError as exc:
        raise SpecError(f"cannot read trace file: {exc.strerror}", file=str(path), field=field) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"trace file is not UTF-8 text (byte {exc.start})", file=str(path)) from None
    times: list[float] = []
    rates: list[float] = []
    header_seen = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if not header_seen:
            if tuple(cells) != HEADER:
                raise SpecError(
                    f"line {lineno}: the first row must be the header",
                    file=str(path),
                    value=line[:80],
                    allowed=",".join(HEADER),
                )
            header_seen = True
            continue
        if len(cells) != 2:
            raise SpecError(
                f"line {lineno}: a row has 2 values",
                file=str(path),
                value=line[:80],
                allowed=",".join(HEADER),
            )
        values = []
        for name, cell in zip(HEADER, cells, strict=True):
            try:
                v = float(cell)
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                raise SpecError(
                    f"line {lineno}: not a finite number", file=str(path), field=name, value=cell[:40]
                )
            values.append(v)
        t, bw = values
        if not 1 <= bw <= 1e18:
            raise SpecError(
                f"line {lineno}: bandwidth out of range",
                file=str(path),
                field="bandwidth_bps",
                value=bw,
                allowed="1 <= x <= 1e18 bit/s",
            )
        if t < 0 or (times and t <= times[-1]):
            raise SpecError(
                f"line {lineno}: times must start at >= 0 and strictly increase",
                file=str(path),
                field="time_s",
                value=t,
                allowed=f"> {times[-1]:g}" if times else ">= 0",
            )
        times.append(t)
        rates.append(bw)
    if not header_seen or len(times) < 2:
        raise SpecError(
            "a trace needs the header and at least 2 rows", file=str(path), allowed=",".join(HEADER)
        )
    return Trace(np.array(times), np.array(rates), str(path))


def synthetic_trace(
    level: str, mobility: str, *, duration_s: float = 120.0, step_s: float = 0.05, seed: int = 0
) -> Trace:
    """A seeded log-normal Ornstein-Uhlenbeck bandwidth trace around a 4G or WiFi level."""
    median = LEVELS_BPS[level]
    tau_s, sigma = MOBILITY[mobility]
    n = round(duration_s / step_s)
    rng = np.random.default_rng(seed)
    a = math.exp(-step_s / tau_s)
    noise = rng.standard_normal(n) * sigma * math.sqrt(1 - a * a)
    x = np.empty(n)
    x[0] = rng.standard_normal() * sigma
    for i in range(1, n):
        x[i] = a * x[i - 1] + noise[i]
    bandwidth = np.maximum(median * np.exp(x), FLOOR_BPS)
    return Trace(np.arange(n) * step_s, bandwidth, f"synthetic {level} {mobility}")


def write_trace(trace: Trace, path: Path, comment: str) -> None:
    lines = [f"# {c}" for c in comment.splitlines()]
    lines.append(",".join(HEADER))
    lines += [f"{t:.3f},{bw:.0f}" for t, bw in zip(trace.time_s, trace.bandwidth_bps, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_bundled_traces() -> list[Path]:
    """(Re)write the bundled traces: 4G and WiFi, static / slow / fast, seed 0 each."""
    out = []
    for level in LEVELS_BPS:
        for mobility, (tau_s, sigma) in MOBILITY.items():
            trace = synthetic_trace(level, mobility, seed=0)
            path = TRACES_DIR / f"{level}-{mobility}.csv"
            write_trace(
                trace,
                path,
                f"nasopt synthetic trace {level}-{mobility}, written by "
                "nasopt.core.traces.write_bundled_traces()\n"
                f"median {LEVELS_BPS[level] / 1e6:g} Mb/s (ASSUMPTION, see nasopt/core/traces.py), "
                f"log-normal Ornstein-Uhlenbeck, tau = {tau_s:g} s, sigma = {sigma:g}, "
                "50 ms steps, 120 s, seed 0",
            )
            out.append(path)
    return out
