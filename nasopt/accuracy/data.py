"""Datasets for supernet training that need no download, and loaders for data on disk.

Built in: scikit-learn's bundled `digits` (8x8 grey, upsampled to the space's input size,
augmented by random shifts), `shapes`, a deterministic synthetic multi-view set (10 classes of
3-D primitives rendered as silhouettes with depth shading from V cameras around the object), and
`textures`, a harder single-view one (5 shapes x 2 grating periods, shown only by their texture
over textured clutter and noise, so that small subnets fall behind large ones), and `glyphs`
(10 random 5x5 binary glyphs, rotated, scaled and placed at random over glyph-fragment clutter
and noise: capacity-limited, with steadier stand-alone retrainings than textures at 12 epochs).
On disk: CIFAR-10/100 in the official binary format, `.npz` arrays (`x`, `y`; optional `x_val`,
`y_val`) and image folders (`root/<class>/*.pgm|.ppm|.npy`, PNG/JPEG when Pillow is installed).
No torchvision. Every dataset becomes a `Dataset` of in-memory tensors with a train and a
held-out validation split that never overlap.

>>> data = load_dataset({"dataset": "digits"}, channels=3, height=32, width=32)
>>> tuple(data.train_x.shape[1:]), data.num_classes
((3, 32, 32), 10)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nasopt.errors import SpecError
from nasopt.spec import DATASET_NAMES

DATASETS = DATASET_NAMES


@dataclass
class Dataset:
    """Train and validation tensors, inputs scaled to [0, 1] (N, C, H, W) or (N, V, C, H, W)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    augment: bool = False

    def batches(
        self, batch_size: int, generator: torch.Generator, *, train: bool = True, start: int = 0
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled training batches (drop the ragged last one) or ordered validation batches,
        beginning at batch `start`; deterministic given the generator's state."""
        if not train:
            n = len(self.val_y)
            return [
                (self.val_x[i : i + batch_size], self.val_y[i : i + batch_size])
                for i in range(0, n, batch_size)
            ]
        n = len(self.train_y)
        order = torch.randperm(n, generator=generator)
        base = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        out = []
        for b in range(start, n // batch_size):
            idx = order[b * batch_size : (b + 1) * batch_size]
            x = self.train_x[idx]
            if self.augment:  # per-batch seed: a resumed epoch sees the same shifts
                x = random_shift(x, torch.Generator().manual_seed(base + b))
            out.append((x, self.train_y[idx]))
        return out


def random_shift(x: torch.Tensor, generator: torch.Generator, max_frac: float = 0.125) -> torch.Tensor:
    """Translate each image by up to `max_frac` of its size (zero padding), per sample."""
    h, w = x.shape[-2], x.shape[-1]
    p = max(1, round(h * max_frac))
    flat = x.reshape(-1, *x.shape[-3:]) if x.dim() == 5 else x
    padded = F.pad(flat, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (x.shape[0],), generator=generator)
    dx = torch.randint(0, 2 * p + 1, (x.shape[0],), generator=generator)
    per = flat.shape[0] // x.shape[0]
    out = torch.empty_like(flat)
    for i in range(flat.shape[0]):
        j = i // per
        out[i] = padded[i, :, dy[j] : dy[j] + h, dx[j] : dx[j] + w]
    return out.reshape(x.shape)


def _fit(x: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Resize (bilinear) and repeat or average channels to the space's input shape."""
    if x.shape[-3] != channels:
        if x.shape[-3] == 1:
            x = x.expand(*x.shape[:-3], channels, *x.shape[-2:])
        elif channels == 1:
            x = x.mean(dim=-3, keepdim=True)
        else:
            raise SpecError(
                f"dataset has {x.shape[-3]} channels, the space's input has {channels}",
                field="accuracy.dataset",
            )
    if x.shape[-2:] != (height, width):
        lead = x.shape[:-3]
        x = F.interpolate(
            x.reshape(-1, *x.shape[-3:]), size=(height, width), mode="bilinear", align_corners=False
        )
        x = x.reshape(*lead, *x.shape[-3:])
    return x.contiguous()


def _split(
    name: str, x: torch.Tensor, y: torch.Tensor, val_fraction: float, seed: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=g)
    n_val = max(1, round(len(y) * val_fraction))
    if n_val >= len(y):
        raise SpecError(f"dataset {name} has only {len(y)} samples", field="accuracy.val_fraction")
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def load_dataset(
    options: dict[str, Any], *, channels: int, height: int, width: int, views: int = 1
) -> Dataset:
    """The dataset `options["dataset"]` fitted to the space's input (and number of views)."""
    name = options.get("dataset", "digits")
    seed = int(options.get("seed", 0))
    val_fraction = float(options.get("val_fraction", 0.2))
    limit = options.get("limit")
    path = options.get("path")
    if name not in DATASETS:
        raise SpecError("unknown dataset", field="accuracy.dataset", value=name, allowed=list(DATASETS))
    if name in ("cifar10", "cifar100", "npz", "folder") and not path:
        raise SpecError(f"dataset {name!r} needs a path", field="accuracy.path")
    val_x = val_y = None
    if name == "digits":
        x, y, k = digits()
    elif name == "shapes":
        n = int(options.get("samples", 1200))
        x, y, k = shapes(n, views=max(views, 1), size=min(height, 64), seed=seed)
        if views <= 1:  # a single-view space takes plain images
            x = x[:, 0]
    elif name == "textures":
        x, y, k = textures(int(options.get("samples", 1200)), size=min(height, 64), seed=seed)
    elif name == "glyphs":
        x, y, k = glyphs(int(options.get("samples", 1200)), size=min(height, 64), seed=seed)
    elif name in ("cifar10", "cifar100"):
        x, y, val_x, val_y, k = cifar(Path(str(path)), name)
    elif name == "npz":
        x, y, val_x, val_y, k = npz(Path(str(path)))
    else:
        x, y, k = image_folder(Path(str(path)))
    if limit is not None:
        x, y = x[: int(limit)], y[: int(limit)]
        if val_x is not None and val_y is not None:
            val_x, val_y = val_x[: max(1, int(limit) // 4)], val_y[: max(1, int(limit) // 4)]
    if views > 1 and x.dim() == 4:
        raise SpecError(
            f"a {views}-view space needs a multi-view dataset (N, V, C, H, W)",
            field="accuracy.dataset",
            value=name,
            allowed="shapes, or npz with 5-D x",
        )
    if x.dim() == 5 and x.shape[1] != views:
        raise SpecError(f"dataset has {x.shape[1]} views, the space {views}", field="accuracy.dataset")
    x = _fit(x, channels, height, width)
    if val_x is None or val_y is None:
        tx, ty, vx, vy = _split(name, x, y, val_fraction, seed, k)
    else:
        tx, ty, vx, vy = x, y, _fit(val_x, channels, height, width), val_y
    return Dataset(name, tx, ty, vx, vy, k, augment=name in ("digits", "cifar10", "cifar100"))


# ------------------------------------------------------------------ built-in data


def digits() -> tuple[torch.Tensor, torch.Tensor, int]:
    """scikit-learn's bundled 1,797 handwritten digits, 8x8 grey in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    return x, torch.tensor(bunch.target, dtype=torch.long), 10


SHAPE_CLASSES = (
    "cube",
    "sphere",
    "cylinder",
    "cone",
    "torus",
    "pyramid",
    "box",
    "capsule",
    "octahedron",
    "prism",
)


def _inside(kind: int, p: np.ndarray) -> np.ndarray:
    """Whether points p (..., 3) lie inside primitive `kind` (unit scale, centred)."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    ax, ay, az = np.abs(x), np.abs(y), np.abs(z)
    r_xy = np.sqrt(x * x + y * y)
    if kind == 0:
        return np.maximum(np.maximum(ax, ay), az) <= 0.6
    if kind == 1:
        return x * x + y * y + z * z <= 0.6**2
    if kind == 2:
        return (r_xy <= 0.5) & (az <= 0.7)
    if kind == 3:
        return (az <= 0.7) & (r_xy <= 0.6 * (0.7 - z) / 1.4)
    if kind == 4:
        return (np.sqrt((r_xy - 0.5) ** 2 + z * z)) <= 0.2
    if kind == 5:
        return (z >= -0.6) & (np.maximum(ax, ay) <= 0.7 * (0.6 - z) / 1.2)
    if kind == 6:
        return (ax <= 0.8) & (ay <= 0.35) & (az <= 0.2)
    if kind == 7:
        zc = np.clip(z, -0.45, 0.45)
        return x * x + y * y + (z - zc) ** 2 <= 0.3**2
    if kind == 8:
        return ax + ay + az <= 0.8
    # triangular prism
    return (az <= 0.6) & (y >= -0.35) & (np.sqrt(3) * ax + y <= 0.7)


def shapes(
    n: int, *, views: int = 12, size: int = 32, seed: int = 0, depth_steps: int = 24
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A deterministic multi-view set: n objects (10 primitives, random rotation and scale)
    seen by `views` cameras on a ring around them; orthographic ray marching gives a depth-shaded
    silhouette per view. Returns x (n, views, 1, size, size) in [0, 1], labels and 10."""
    rng = np.random.default_rng(seed)
    k = len(SHAPE_CLASSES)
    y = np.arange(n) % k
    rng.shuffle(y)
    u = np.linspace(-1, 1, size)
    ts = np.linspace(-1, 1, depth_steps)
    gy, gx = np.meshgrid(u, u, indexing="ij")
    out = np.zeros((n, views, 1, size, size), dtype=np.float32)
    for i in range(n):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        a, b, c, d = q
        rot = np.array(
            [
                [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
            ]
        )
        scale = rng.uniform(0.75, 1.1)
        for v in range(views):
            th = 2 * math.pi * v / views
            elev = 0.35
            fwd = np.array([math.cos(th) * math.cos(elev), math.sin(th) * math.cos(elev), math.sin(elev)])
            right = np.array([-math.sin(th), math.cos(th), 0.0])
            up = np.cross(fwd, right)
            pts = gx[..., None, None] * right + gy[..., None, None] * up + ts[None, None, :, None] * fwd
            local = pts @ rot / scale  # world -> object (rot is orthonormal)
            hit = _inside(int(y[i]), local)
            first = np.where(hit.any(-1), hit.argmax(-1), depth_steps)
            out[i, v, 0] = np.where(first < depth_steps, 1.0 - 0.6 * first / depth_steps, 0.0)
    return torch.from_numpy(out), torch.from_numpy(y.astype(np.int64)), k


TEXTURE_SHAPES = ("disc", "square", "triangle", "cross", "ring")
TEXTURE_PERIODS_PX = (3.2, 4.4)  # the two grating periods (pixels at 32x32): fine vs coarse


def textures(
    n: int,
    *,
    size: int = 32,
    seed: int = 0,
    clutter: int = 4,
    clutter_contrast: float = 0.5,
    noise: float = 0.08,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A deterministic texture-and-shape set, harder than `shapes`: 10 classes = 5 shapes x 2
    grating periods (TEXTURE_PERIODS_PX, scaled with `size`). The shape, at random position, scale
    and rotation, is filled with a grating of random orientation, phase and colours over
    `clutter` distractor blobs (random shapes, gratings of random period spanning the classes',
    `clutter_contrast` times the contrast) and Gaussian pixel noise of std `noise`. The shape
    shows only by its texture, not by its brightness, so telling the classes apart takes fine
    spatial filters and a wide receptive field: small subnets fall behind large ones
    (benchmarks/textures_spread.md). Returns x (n, 3, size, size) in [0, 1], labels and 10."""
    rng = np.random.default_rng(seed)
    shapes_k, periods_k = len(TEXTURE_SHAPES), len(TEXTURE_PERIODS_PX)
    k = shapes_k * periods_k
    y = np.arange(n) % k
    rng.shuffle(y)
    u = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    gy, gx = np.meshgrid(u, u, indexing="ij")
    px = size / 2  # pixels per unit of u
    lo, hi = min(TEXTURE_PERIODS_PX) * size / 32, max(TEXTURE_PERIODS_PX) * size / 32
    out = np.empty((n, 3, size, size), dtype=np.float32)

    def grating(period_px: float, contrast: float = 1.0) -> np.ndarray:
        th = rng.uniform(0, math.pi)
        freq = 2 * math.pi * px / period_px
        wave = np.sin(freq * (gx * math.cos(th) + gy * math.sin(th)) + rng.uniform(0, 2 * math.pi))
        mid = rng.uniform(0.35, 0.65, 3)
        half = contrast * rng.uniform(0.15, 0.3, 3) * rng.choice([-1.0, 1.0], 3)
        c1, c2 = mid + half, mid - half
        w = (wave > 0).astype(np.float32) * 0.7 + 0.15 * (wave + 1)  # square-ish wave, soft edges
        return c1[:, None, None] * w + c2[:, None, None] * (1 - w)

    def mask(kind: int, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
        dx, dy = gx - cx, gy - cy
        c, s = math.cos(rot), math.sin(rot)
        x, yy = (c * dx + s * dy) / r, (-s * dx + c * dy) / r
        rad = np.sqrt(x * x + yy * yy)
        if kind == 0:
            return rad <= 1
        if kind == 1:
            return np.maximum(np.abs(x), np.abs(yy)) <= 0.8
        if kind == 2:
            return (yy >= -0.5) & (np.sqrt(3) * np.abs(x) + yy <= 1)
        if kind == 3:
            return (np.minimum(np.abs(x), np.abs(yy)) <= 0.33) & (np.maximum(np.abs(x), np.abs(yy)) <= 1)
        return (rad <= 1) & (rad >= 0.55)

    for i in range(n):
        shape, period = divmod(int(y[i]), periods_k)
        img = np.broadcast_to(rng.uniform(0.3, 0.7, 3)[:, None, None], (3, size, size)).copy()
        for _ in range(clutter):
            cx, cy = rng.uniform(-1, 1, 2)
            blob = mask(int(rng.integers(0, shapes_k)), cx, cy, rng.uniform(0.2, 0.45), rng.uniform(0, 6.3))
            img = np.where(blob, grating(rng.uniform(lo * 0.85, hi * 1.15), clutter_contrast), img)
        p = TEXTURE_PERIODS_PX[period] * size / 32 * rng.uniform(0.95, 1.05)
        fx, fy = rng.uniform(-0.3, 0.3, 2)
        fg = mask(shape, fx, fy, rng.uniform(0.5, 0.75), rng.uniform(0, 2 * math.pi))
        img = np.where(fg, grating(p), img)
        img = img + rng.normal(0, noise, img.shape)
        out[i] = np.clip(img, 0, 1)
    return torch.from_numpy(out), torch.from_numpy(y.astype(np.int64)), k


def glyph_templates(classes: int, grid: int, rng: np.random.Generator, min_distance: int) -> np.ndarray:
    """`classes` random binary grid x grid templates, 35-65 % filled, every two differing in at
    least `min_distance` cells: (classes, grid, grid) float32."""
    found: list[np.ndarray] = []
    while len(found) < classes:
        t = rng.random((grid, grid)) < 0.5
        if 0.35 <= t.mean() <= 0.65 and all((t != o).sum() >= min_distance for o in found):
            found.append(t)
    return np.stack(found).astype(np.float32)


def glyphs(
    n: int,
    *,
    size: int = 32,
    seed: int = 0,
    classes: int = 10,
    grid: int = 5,
    clutter: int = 3,
    noise: float = 0.1,
    rotation_deg: float = 30.0,
    cell_px: tuple[float, float] = (3.0, 4.4),
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A deterministic glyph set: each class is a random binary grid x grid template (drawn from
    `seed`), shown at a random position, rotation (+-`rotation_deg`) and cell size (`cell_px`
    pixels at 32x32, scaled with `size`) in a colour of guaranteed contrast, over `clutter`
    fragments of other glyphs at half contrast and Gaussian pixel noise of std `noise`, rendered
    at 2x and averaged down. The classes differ in the arrangement of cells, so recognising them
    takes the mid-resolution stages' capacity (the largest quickstart subnet beats the smallest by
    ~40 points at 6 epochs). At 12 epochs retrainings of one subnet differ by ~2 points (standard
    deviation), without textures' collapsed runs (benchmarks/supernet_ranking_glyphs_uniform.md).
    Returns x (n, 3, size, size) in [0, 1], labels and `classes`."""
    rng = np.random.default_rng(seed)
    templates = glyph_templates(classes, grid, rng, min_distance=6)
    y = np.arange(n) % classes
    rng.shuffle(y)
    fine = 2 * size
    u = (np.arange(fine) + 0.5) / 2.0  # sub-pixel centres, in output pixels
    gy, gx = np.meshgrid(u, u, indexing="ij")
    px_per_unit = size / 32

    def render(t: np.ndarray, cell: float, spread_px: float, rotation: float) -> np.ndarray:
        cx, cy = size / 2 + rng.uniform(-spread_px, spread_px, 2)
        th = math.radians(rng.uniform(-rotation, rotation))
        c, s = math.cos(th), math.sin(th)
        dx, dy = gx - cx, gy - cy
        lx = (c * dx + s * dy) / cell + grid / 2
        ly = (-s * dx + c * dy) / cell + grid / 2
        inside = (lx >= 0) & (lx < grid) & (ly >= 0) & (ly < grid)
        ix, iy = np.clip(lx.astype(int), 0, grid - 1), np.clip(ly.astype(int), 0, grid - 1)
        return np.where(inside, t[iy, ix], 0.0).astype(np.float32)

    def contrast(bg: np.ndarray, scale: float) -> np.ndarray:
        return bg + scale * rng.uniform(0.25, 0.45, 3) * rng.choice([-1.0, 1.0], 3)

    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        bg = rng.uniform(0.25, 0.75, 3)
        img = np.broadcast_to(bg[:, None, None], (3, fine, fine)).copy()
        for _ in range(clutter):  # fragments of random glyphs, anywhere, at any rotation
            k = int(rng.integers(classes))
            frag = render(templates[k], rng.uniform(*cell_px) * px_per_unit * 0.7, size / 2, rotation_deg * 3)
            img = img * (1 - frag) + contrast(bg, 0.5)[:, None, None] * frag
        cell = rng.uniform(*cell_px) * px_per_unit
        g = render(templates[int(y[i])], cell, 0.6 * max(0.0, size / 2 - grid * cell / 2), rotation_deg)
        img = img * (1 - g) + contrast(bg, 1.0)[:, None, None] * g
        img = img.reshape(3, size, 2, size, 2).mean((2, 4)) + rng.normal(0, noise, (3, size, size))
        out[i] = np.clip(img, 0, 1)
    return torch.from_numpy(out), torch.from_numpy(y.astype(np.int64)), classes


# ------------------------------------------------------------------ data on disk


def cifar(path: Path, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """CIFAR-10 (`data_batch_1..5.bin`, `test_batch.bin`; record = 1 label byte + 3,072 pixel
    bytes) or CIFAR-100 (`train.bin`, `test.bin`; coarse + fine label bytes, fine is used);
    `path` is the folder holding them. The test file is the validation split."""
    if name == "cifar10":
        train_files = sorted(path.glob("data_batch_*.bin"))
        val_files = [path / "test_batch.bin"]
        label_bytes, k = 1, 10
    else:
        train_files, val_files = [path / "train.bin"], [path / "test.bin"]
        label_bytes, k = 2, 100
    if not train_files or not all(f.is_file() for f in train_files + val_files):
        raise SpecError(
            f"no {name} binary files in {path}",
            field="accuracy.path",
            allowed="data_batch_*.bin + test_batch.bin" if name == "cifar10" else "train.bin + test.bin",
        )

    def read(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        raw = np.concatenate([np.fromfile(f, dtype=np.uint8) for f in files])
        rec = label_bytes + 3072
        if raw.size % rec:
            raise SpecError(f"{name} file size is not a multiple of {rec} bytes", field="accuracy.path")
        raw = raw.reshape(-1, rec)
        labels = torch.from_numpy(raw[:, label_bytes - 1].astype(np.int64))
        images = torch.from_numpy(raw[:, label_bytes:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
        return images, labels

    tx, ty = read(train_files)
    vx, vy = read(val_files)
    return tx, ty, vx, vy, k


def npz(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, int]:
    """Arrays `x` (N, C, H, W) or (N, V, C, H, W) — or (N, H, W, C) with C <= 4, transposed —
    and integer `y`; uint8 is scaled to [0, 1]; optional `x_val`, `y_val`."""
    if not path.is_file():
        raise SpecError("no such .npz file", field="accuracy.path", value=str(path))
    with np.load(path) as f:
        if "x" not in f or "y" not in f:
            raise SpecError("the .npz needs arrays 'x' and 'y'", field="accuracy.path", value=str(path))
        arrays = {key: f[key] for key in f.files}

    def conv(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0))
        if t.dim() == 3:
            t = t[:, None]
        if t.dim() == 4 and t.shape[-1] <= 4 < t.shape[1]:
            t = t.permute(0, 3, 1, 2)
        return t

    x, y = conv(arrays["x"]), torch.from_numpy(arrays["y"].astype(np.int64))
    vx = conv(arrays["x_val"]) if "x_val" in arrays else None
    vy = torch.from_numpy(arrays["y_val"].astype(np.int64)) if "y_val" in arrays else None
    k = int(max(y.max().item(), -1 if vy is None else vy.max().item())) + 1
    return x, y, vx, vy, k


def _read_netpbm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        tokens.append(data[pos:end])
        pos = end
    magic, w, h, maxval = tokens[0], int(tokens[1]), int(tokens[2]), int(tokens[3])
    channels = {b"P5": 1, b"P6": 3}.get(magic)
    if channels is None or maxval > 255:
        raise SpecError(
            "only binary 8-bit PGM (P5) / PPM (P6) are read", field="accuracy.path", value=str(path)
        )
    pix = np.frombuffer(data[pos + 1 : pos + 1 + w * h * channels], dtype=np.uint8)
    return pix.reshape(h, w, channels).transpose(2, 0, 1).astype(np.float32) / maxval


def _read_image(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in (".pgm", ".ppm"):
        return _read_netpbm(path)
    if suffix == ".npy":
        a = np.load(path).astype(np.float32)
        return a[None] if a.ndim == 2 else a
    try:
        from PIL import Image
    except ImportError:
        raise SpecError(
            f"reading {suffix} images needs Pillow", field="accuracy.path", value=str(path)
        ) from None
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return a.transpose(2, 0, 1)


IMAGE_SUFFIXES = (".pgm", ".ppm", ".npy", ".png", ".jpg", ".jpeg")


def image_folder(path: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`path/<class>/<image>`: classes are the sorted sub-folder names; images are resized to
    the first one's size (bilinear) so they stack."""
    if not path.is_dir():
        raise SpecError("no such image folder", field="accuracy.path", value=str(path))
    classes = sorted(d.name for d in path.iterdir() if d.is_dir())
    images: list[torch.Tensor] = []
    labels: list[int] = []
    for k, cls in enumerate(classes):
        for f in sorted((path / cls).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                t = torch.from_numpy(_read_image(f))
                if images and t.shape != images[0].shape:
                    t = _fit(t[None], images[0].shape[0], *images[0].shape[1:])[0]
                images.append(t)
                labels.append(k)
    if not images:
        raise SpecError(
            "no images found", field="accuracy.path", value=str(path), allowed=list(IMAGE_SUFFIXES)
        )
    return torch.stack(images), torch.tensor(labels), len(classes)
