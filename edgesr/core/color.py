"""Colour conversions of the SR evaluation protocol (ITU-R BT.601, MATLAB ``rgb2ycbcr``).

MATLAB's ``rgb2ycbcr`` on [0, 255] RGB gives studio-range YCbCr::

    Y  = 16  + ( 65.481 R + 128.553 G +  24.966 B) / 255
    Cb = 128 + (-37.797 R -  74.203 G + 112.0   B) / 255
    Cr = 128 + (112.0   R -  93.786 G -  18.214 B) / 255

edgesr computes these in float64 and does not round Y (BasicSR's ``to_y_channel``
convention). Grayscale images are their own Y: a 2-D image is returned unchanged as its
gray values (the convention of the published Set14 tables for 'bridge').
"""

from __future__ import annotations

import numpy as np

_RGB_TO_YCBCR = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
) / 255.0
_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 255] (uint8 or float) -> float64 YCbCr, studio range."""
    return rgb.astype(np.float64) @ _RGB_TO_YCBCR.T + _OFFSET


def rgb_to_cbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 255] -> float32 (H, W, 2) Cb, Cr (studio range, the rows of :func:`rgb_to_ycbcr`)."""
    return rgb.astype(np.float32) @ _RGB_TO_YCBCR[1:].T.astype(np.float32) + _OFFSET[1:].astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`: float64 (H, W, 3) YCbCr -> float64 RGB in [0, 255] (unclipped)."""
    return (ycbcr.astype(np.float64) - _OFFSET) @ np.linalg.inv(_RGB_TO_YCBCR).T


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 Y in [16, 235] (float64) of an (H, W, 3) RGB image; (H, W) gray is returned as float64 as is."""
    if img.ndim == 2:
        return img.astype(np.float64)
    return img.astype(np.float64) @ _RGB_TO_YCBCR[0] + 16.0


def y_to_luma_full(y: np.ndarray) -> np.ndarray:
    """Studio-range Y (16-235) -> full-range luma (0-255), both float64: ``(Y - 16) * 255 / 219``.

    Full-range luma is PIL's ``convert('L')`` without its rounding: 0.299 R + 0.587 G + 0.114 B.
    """
    return (y - 16.0) * (255.0 / 219.0)


def luma_full_to_y(luma: np.ndarray) -> np.ndarray:
    """Full-range luma (0-255) -> studio-range Y (16-235), float64."""
    return luma * (219.0 / 255.0) + 16.0
