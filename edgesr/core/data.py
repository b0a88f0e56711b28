"""Datasets: the embedded photographs, folders of HR images, the standard benchmark sets,
and random training patches.

* Embedded default (no download): scikit-image's bundled photographs, split into the fixed
  lists :data:`EMBEDDED_TRAIN` and :data:`EMBEDDED_VAL`.
* A folder of HR images (PNG, JPEG, lossless WebP, ...): :func:`load_folder`.
* The standard benchmark sets under a root: ``ROOT/{Set5,Set14,B100,Urban100}/HR``
  (:func:`benchmark_set`); T91 (``ROOT/T91/HR``) is the usual training set.

Every evaluation image is an :class:`EvalImage`: the HR image (uint8), modcropped to the
scale, with its LR made by MATLAB-compatible bicubic (:func:`edgesr.core.imresize.make_lr`).
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.core.color import rgb_to_y, y_to_luma_full
from edgesr.core.errors import EdgesrError
from edgesr.core.imageio import list_images, read_image
from edgesr.core.imresize import make_lr, modcrop

EMBEDDED_TRAIN = (
    "astronaut", "rocket", "motorcycle_left", "motorcycle_right", "hubble_deep_field",
    "retina", "brick", "grass", "gravel", "moon", "page",
)
"""scikit-image photographs used for training by default."""

EMBEDDED_VAL = ("chelsea", "coffee", "camera")
"""scikit-image photographs used for validation and the default report (disjoint from training)."""

BENCHMARK_SETS = ("Set5", "Set14", "B100", "Urban100")

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
"""Where this workplace keeps the benchmark sets (``../shared/data`` beside the checkout)."""


@dataclass
class EvalImage:
    """One evaluation pair. ``hr``: uint8 (H, W[, 3]) modcropped; ``lr``: uint8 (H/s, W/s[, 3])."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


def embedded_image(name: str) -> np.ndarray:
    """A scikit-image photograph by name, as uint8 (H, W) gray or (H, W, 3) RGB."""
    import skimage.data

    path = Path(skimage.data.__file__).parent
    matches = sorted(path.glob(f"{name}.*"))
    if not matches:
        raise EdgesrError(f"unknown embedded image {name!r}")
    return read_image(matches[0])


def embedded_images(split: str = "val") -> list[tuple[str, np.ndarray]]:
    """``[(name, uint8 image)]`` for split ``"train"`` or ``"val"``."""
    names = {"train": EMBEDDED_TRAIN, "val": EMBEDDED_VAL}[split]
    return [(n, embedded_image(n)) for n in names]


def load_folder(folder: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """``[(stem, uint8 image)]`` for every image file in ``folder`` (sorted by name)."""
    return [(p.stem, read_image(p)) for p in list_images(folder)]


def benchmark_set(root: str | os.PathLike, name: str) -> list[tuple[str, np.ndarray]]:
    """HR images of a standard set: ``ROOT/NAME/HR``.

    Raises:
        EdgesrError: the set's folder is missing (the message names the path).
    """
    folder = Path(root) / name / "HR"
    if not folder.is_dir():
        raise EdgesrError(f"{folder}: benchmark set {name!r} not found under --data-root {root}")
    return load_folder(folder)


def eval_pairs(images: list[tuple[str, np.ndarray]], scale: int) -> list[EvalImage]:
    """Modcrop each HR image to ``scale`` and make its LR with MATLAB bicubic (uint8 rounding)."""
    pairs = []
    for name, hr in images:
        if hr.shape[0] < scale or hr.shape[1] < scale:
            raise EdgesrError(f"{name}: image {hr.shape[1]}x{hr.shape[0]} smaller than the scale {scale}")
        hr = modcrop(hr, scale)
        pairs.append(EvalImage(name, hr, make_lr(hr, scale)))
    return pairs


def resolve_eval_sets(data_root: str | None, sets: list[str] | None) -> dict[str, list[tuple[str, np.ndarray]]]:
    """The evaluation sets a command asked for: ``{set name: images}``.

    With no ``data_root`` the embedded validation photographs form one set, ``"embedded"``.
    ``sets`` may name benchmark sets under the root or be folders of images themselves.
    """
    if data_root is None and not sets:
        return {"embedded": embedded_images("val")}
    out = {}
    for s in sets or list(BENCHMARK_SETS):
        if s == "embedded":
            out[s] = embedded_images("val")
        elif data_root is not None and (Path(data_root) / s).is_dir():
            out[s] = benchmark_set(data_root, s)
        elif Path(s).is_dir():
            out[Path(s).name] = load_folder(s)
        else:
            where = f"under --data-root {data_root}" if data_root else "(give --data-root)"
            raise EdgesrError(f"evaluation set {s!r} not found {where}")
    return out


def to_luma(img: np.ndarray) -> np.ndarray:
    """uint8 gray or RGB -> float32 BT.601 Y / 255 (H, W), the Y models' training input."""

    return (rgb_to_y(img) / 255.0).astype(np.float32)


class PatchDataset:
    """Random HR training crops as tensors for the Y or RGB models.

    Each item is a float32 tensor (C, P, P) in [0, 1], C = 1 (BT.601 Y / 255) or 3 (RGB),
    with a random flip and 90-degree rotation. The LR is made on the fly by the trainer
    with :func:`edgesr.core.imresize.imresize_torch`, the same bicubic as evaluation.
    Images smaller than the crop are skipped with a warning.

    Raises:
        EdgesrError: no image is at least ``patch`` pixels on both sides.
    """

    def __init__(self, images: list[tuple[str, np.ndarray]], patch: int, color: str = "y", seed: int = 0):
        self.patch = patch
        self.arrays = []
        skipped = []
        for name, img in images:
            if img.shape[0] < patch or img.shape[1] < patch:
                skipped.append(name)
                continue
            if color == "rgb":
                arr = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img
                arr = arr.astype(np.float32).transpose(2, 0, 1) / 255.0
            elif color == "luma_full":
                arr = (y_to_luma_full(rgb_to_y(img)) / 255.0).astype(np.float32)[None]
            else:
                arr = (rgb_to_y(img) / 255.0).astype(np.float32)[None]
            self.arrays.append(np.ascontiguousarray(arr))
        if skipped:
            warnings.warn(f"skipped {len(skipped)} image(s) smaller than the {patch}px crop: {', '.join(skipped[:5])}", stacklevel=2)
        if not self.arrays:
            raise EdgesrError(f"no training image is at least {patch}x{patch} pixels (the crop size)")
        areas = np.array([a.shape[1] * a.shape[2] for a in self.arrays], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.rng = random.Random(seed)

    def sample(self, batch: int, rng: np.random.Generator):
        """A batch (N, C, P, P) float32 torch tensor drawn with ``rng`` (area-weighted images)."""
        import torch

        p = self.patch
        out = np.empty((batch, self.arrays[0].shape[0], p, p), dtype=np.float32)
        picks = rng.choice(len(self.arrays), size=batch, p=self.weights)
        for i, k in enumerate(picks):
            a = self.arrays[k]
            y = rng.integers(0, a.shape[1] - p + 1)
            x = rng.integers(0, a.shape[2] - p + 1)
            crop = a[:, y : y + p, x : x + p]
            if rng.random() < 0.5:
                crop = crop[:, :, ::-1]
            crop = np.rot90(crop, k=int(rng.integers(0, 4)), axes=(1, 2))
            out[i] = crop
        return torch.from_numpy(out)


def training_images(data: str | None) -> list[tuple[str, np.ndarray]]:
    """Training HR images: a folder given by ``--data``, or the embedded training photographs."""
    return embedded_images("train") if data is None else load_folder(data)
