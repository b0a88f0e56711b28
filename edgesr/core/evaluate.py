"""The one evaluation path, shared by every runtime (PyTorch, ONNX, TFLite, Core ML, LUTs).

A runtime is wrapped as an :class:`Upscaler`: a callable taking the model-space input
``x`` (float32 NumPy array (N, C, h, w), values in the contract's colour space and range)
and returning float32 (N, C, s*h, s*w). Everything else, the pre-processing (colour
conversion per the model's :class:`~edgesr.core.registry.IOContract`), post-processing
(clip to [0, 1], rounding to 8 bits) and the metric, lives here once, so two runtimes can
only differ by what they compute.

Scoring protocol (BasicSR / published SR tables):

1. HR modcropped to s; LR = MATLAB bicubic(HR, 1/s) on uint8 with MATLAB rounding.
2. The model sees its contract's input: ``y``: BT.601 Y(LR)/255; ``luma_full``: full-range
   luma (Y - 16) * 255/219 / 255; ``rgb``: RGB/255 (per channel when the contract says so).
   A grayscale image is its own Y (and its own luma): its gray values / 255 are fed as is.
3. The output is clipped to [0, 1] and rounded to 8 bits (``round(v * 255)``, half to even,
   as NumPy rounds): the pixels a phone would display.
4. Y of the output (BT.601, float64; for ``luma_full`` models, Y = 16 + L * 219/255) is
   compared with Y of the HR image (float64, unrounded): PSNR and SSIM after cropping
   ``s`` pixels from each border (:mod:`edgesr.core.metrics`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from edgesr.core.color import (
    luma_full_to_y,
    rgb_to_cbcr,
    rgb_to_y,
    y_to_luma_full,
    ycbcr_to_rgb,
)
from edgesr.core.contract import IOContract
from edgesr.core.data import EvalImage, embedded_images, eval_pairs, load_folder
from edgesr.core.errors import EdgesrError
from edgesr.core.imresize import make_lr, upscale_bicubic, upscale_bicubic_uint8
from edgesr.core.metrics import psnr, ssim


class Upscaler(Protocol):
    """Anything that upscales model-space tensors: ``contract`` plus ``__call__``.

    ``__call__(x)``: x float32 (N, C, h, w) in [0, 1] -> float32 (N, C, s*h, s*w); C is
    ``contract.channels``. Implementations: :class:`TorchUpscaler` here; the converters'
    ONNX/TFLite/Core ML runners and the LUT engines elsewhere.
    """

    contract: IOContract

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchUpscaler:
    """Run an ``nn.Module`` (float32, CPU by default) as an :class:`Upscaler`."""

    def __init__(self, module, device: str = "cpu"):
        import torch

        self.module = module.eval().to(device)
        self.device = device
        self.contract: IOContract = module.contract
        self._torch = torch

    @property
    def receptive_field(self) -> int | None:
        """The module's declared receptive field (LR pixels, side), None if it declares none."""
        return getattr(self.module, "receptive_field", None)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        return out.float().cpu().numpy()


class FunctionUpscaler:
    """Wrap a plain function ``f(x) -> y`` with a contract as an :class:`Upscaler`."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], contract: IOContract):
        self.fn, self.contract = fn, contract

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)


# --------------------------------------------------------------------------- pre/post


def _to_8bit(v: np.ndarray) -> np.ndarray:
    return np.round(np.clip(v, 0.0, 1.0) * 255.0)


def model_input(lr: np.ndarray, contract: IOContract) -> np.ndarray:
    """LR uint8 image (h, w) or (h, w, 3) -> model input float32 (1, C, h, w) per ``contract``.

    For per-channel RGB models the channels go into the batch: (C, 1, h, w).
    """
    if contract.color == "rgb":
        planes = lr[None] if lr.ndim == 2 else lr.transpose(2, 0, 1)
        x = planes.astype(np.float32) / 255.0
        return x[:, None] if contract.per_channel or contract.channels == 1 else x[None]
    y = rgb_to_y(lr)
    if contract.color == "luma_full" and lr.ndim == 3:
        y = y_to_luma_full(y)
    return (y / 255.0).astype(np.float32)[None, None]


def calibration_patches(images, contract: IOContract, patch: int = 64, count: int = 64, seed: int = 0,
                        degrade: bool = False) -> np.ndarray:
    """Random crops of real photos, as the model sees them (:func:`edgesr.core.evaluate.model_input`).

    The one source of calibration data: TFLite's representative dataset, Core ML W8A8,
    observers and QAT all draw their patches here.

    Args:
        images: uint8 images (H, W) or (H, W, 3), or ``(name, image)`` pairs (as
            :func:`edgesr.core.data.load_folder` returns); or a folder of photos (str or
            PathLike); or None for the embedded training photographs.
        contract: the model's :class:`~edgesr.core.registry.IOContract` (colour space, channels).
        patch: crop side P in pixels; images smaller than P on a side are skipped.
        count: number of crops N, drawn from the images in proportion to their area.
        seed: crops are a deterministic function of (images, patch, count, seed, degrade).
        degrade: first reduce each photo to its benchmark LR (:func:`edgesr.core.imresize.make_lr`,
            MATLAB bicubic 1/scale), the statistics of the evaluation inputs; default: the
            photos as a phone would feed them (sharper, so wider ranges).
    Returns:
        float32 (N, C, P, P), C = ``contract.channels``, values in [0, 1].

    Raises:
        EdgesrError: no image is at least P x P, count < 1, or an unreadable folder.
    """
    if images is None:
        images = embedded_images("train")
    elif isinstance(images, (str, os.PathLike)):
        images = load_folder(images)
    if count < 1 or patch < 1:
        raise EdgesrError(f"need count >= 1 and patch >= 1, got count={count}, patch={patch}")

    planes = []
    for item in images:
        img = item[1] if isinstance(item, tuple) else item
        if degrade and min(img.shape[:2]) >= contract.scale:
            img = make_lr(img, contract.scale)
        if img.shape[0] >= patch and img.shape[1] >= patch:
            planes.extend(model_input(img, contract))  # (B, C, h, w) -> B planes (C, h, w)
    if not planes:
        raise EdgesrError(f"no calibration image is at least {patch}x{patch} pixels")
    rng = np.random.default_rng(seed)
    areas = np.array([p.shape[1] * p.shape[2] for p in planes], dtype=np.float64)
    picks = rng.choice(len(planes), size=count, p=areas / areas.sum())
    out = np.empty((count, planes[0].shape[0], patch, patch), dtype=np.float32)
    for i, k in enumerate(picks):
        _, h, w = planes[k].shape
        y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        out[i] = planes[k][:, y : y + patch, x : x + patch]
    return out


def run_upscaler(upscaler: Upscaler, lr: np.ndarray) -> np.ndarray:
    """Upscale one LR uint8 image; returns the model's channels as float64 in [0, 255], rounded.

    Shape (s*h, s*w) for luma models and gray images, (s*h, s*w, 3) for RGB models on
    colour images. Raises ValueError if the runtime returns the wrong shape.
    """
    s = upscaler.contract.scale
    x = model_input(lr, upscaler.contract)
    out = np.asarray(upscaler(x))
    expected = (x.shape[0], x.shape[1], x.shape[2] * s, x.shape[3] * s)
    if out.shape != expected:
        raise ValueError(f"upscaler returned shape {out.shape}, expected {expected}")
    out = _to_8bit(out.astype(np.float64))
    if upscaler.contract.color == "rgb":
        planes = out[:, 0] if out.shape[1] == 1 else out[0]
        return planes[0] if lr.ndim == 2 else planes.transpose(1, 2, 0)
    return out[0, 0]


def output_y(out: np.ndarray, contract: IOContract, gray: bool) -> np.ndarray:
    """BT.601 Y (float64, [0, 255] scale) of a :func:`run_upscaler` result."""
    if contract.color == "rgb":
        return rgb_to_y(out)
    if contract.color == "luma_full" and not gray:
        return luma_full_to_y(out)
    return out


@dataclass
class ImageScore:
    name: str
    psnr_y: float
    ssim_y: float


def score_image(upscaler: Upscaler, pair: EvalImage) -> ImageScore:
    """PSNR/SSIM on Y of one evaluation pair (protocol in the module doc)."""
    s = upscaler.contract.scale
    out = run_upscaler(upscaler, pair.lr)
    sr_y = output_y(out, upscaler.contract, pair.lr.ndim == 2)
    hr_y = rgb_to_y(pair.hr)
    return ImageScore(pair.name, psnr(sr_y, hr_y, border=s), ssim(sr_y, hr_y, border=s))


def evaluate(upscaler: Upscaler, pairs: list[EvalImage], progress: bool = False) -> dict:
    """Mean PSNR/SSIM on Y over ``pairs``: ``{"psnr_y", "ssim_y", "images": {name: {...}}}``."""
    from tqdm.auto import tqdm

    scores = [score_image(upscaler, p) for p in tqdm(pairs, disable=not progress, leave=False, desc="eval")]
    return {
        "psnr_y": float(np.mean([sc.psnr_y for sc in scores])),
        "ssim_y": float(np.mean([sc.ssim_y for sc in scores])),
        "images": {sc.name: {"psnr_y": sc.psnr_y, "ssim_y": sc.ssim_y} for sc in scores},
    }


def evaluate_sets(upscaler: Upscaler, sets: dict[str, list], progress: bool = False) -> dict:
    """:func:`evaluate` per set: ``{set: {"psnr_y", "ssim_y"}}`` (per-image scores dropped)."""

    out = {}
    for name, images in sets.items():
        res = evaluate(upscaler, eval_pairs(images, upscaler.contract.scale), progress)
        out[name] = {"psnr_y": res["psnr_y"], "ssim_y": res["ssim_y"]}
    return out


def upscale_photo(upscaler: Upscaler, img: np.ndarray) -> np.ndarray:
    """Upscale a real photo (uint8 (H, W), (H, W, 2), (H, W, 3) or (H, W, 4)), in one piece.

    Luma models run on Y (or full-range luma); chroma (Cb, Cr, BT.601) is upscaled by
    MATLAB bicubic in float32 (:func:`edgesr.core.imresize.upscale_bicubic`); Y, Cb, Cr go
    back to RGB in float64, clipped and rounded half to even to uint8. Against an all-float64
    chroma path, a pixel can differ by one level only where its value lies within about 1e-4
    of a rounding boundary. RGB models run on the colour channels. An alpha channel is
    upscaled by MATLAB's uint8 bicubic. Returns uint8 with the input's channel layout and s
    times its height and width. Memory grows with the image: big photos go through
    :func:`edgesr.core.tiling.upscale_tiled`, which gives the same pixels.
    """
    s = upscaler.contract.scale
    alpha = None
    if img.ndim == 3 and img.shape[2] in (2, 4):
        img, alpha = img[..., :-1], img[..., -1]
        if img.shape[2] == 1:
            img = img[..., 0]
    out = run_upscaler(upscaler, img)
    if upscaler.contract.color != "rgb" and img.ndim == 3:
        cbcr = upscale_bicubic(rgb_to_cbcr(img), s, np.float32)
        y = output_y(out, upscaler.contract, gray=False)
        out = ycbcr_to_rgb(np.concatenate([y[..., None], cbcr], axis=2))
    result = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if alpha is not None:
        a = upscale_bicubic_uint8(alpha, s)
        result = np.concatenate([result if result.ndim == 3 else result[..., None], a[..., None]], axis=2)
    return result
