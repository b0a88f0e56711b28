"""PSNR and SSIM of the standard SR evaluation protocol (BasicSR ``psnr_ssim.py`` convention).

Both take images already converted to the evaluated channel (BT.601 Y in [0, 255], see
:mod:`edgesr.core.color`), crop ``border`` pixels (= the scale) from every side, and compute in
float64 with no epsilon. SSIM follows Wang et al., "Image quality assessment: from error
visibility to structural similarity", IEEE TIP 2004: 11 x 11 Gaussian window, sigma 1.5,
K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering (no padding), mean over the SSIM map.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    return img[border:-border, border:-border] if border > 0 else img


def psnr(a: np.ndarray, b: np.ndarray, border: int = 0, peak: float = 255.0) -> float:
    """PSNR in dB of two (H, W) images in [0, peak], after cropping ``border`` pixels.

    Returns ``inf`` for identical images. Raises ValueError on a shape mismatch.
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    diff = _crop(a, border) - _crop(b, border)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def gaussian_window_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalized 1-D Gaussian; the SSIM window is its outer product with itself."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(ax * ax) / (2.0 * sigma * sigma))
    return g / g.sum()


_G = gaussian_window_1d()
_R = len(_G) // 2


def _filter_valid(img: np.ndarray) -> np.ndarray:
    # The 11x11 Gaussian is separable: two 1-D passes, then keep the 'valid' region
    # (outputs whose window lies inside the image), as filter2(..., 'valid') does.
    out = correlate1d(correlate1d(img, _G, axis=0, mode="constant"), _G, axis=1, mode="constant")
    return out[_R:-_R, _R:-_R]


def ssim(a: np.ndarray, b: np.ndarray, border: int = 0, peak: float = 255.0) -> float:
    """Mean SSIM of two (H, W) images in [0, peak] (Wang et al. 2004), after the border crop."""
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    x, y = _crop(a, border), _crop(b, border)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    filt = _filter_valid
    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(ssim_map.mean())
