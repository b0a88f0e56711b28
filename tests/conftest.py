"""Shared fixtures: real photographs always, the benchmark sets when this machine has them."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from edgesr.core.data import SHARED_DATA, embedded_image

SHARED_ROOT = Path(os.environ.get("EDGESR_SHARED_DATA", SHARED_DATA))
SHARED_WEIGHTS = SHARED_ROOT.parent / "peer_weights"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (Set5, Set14, B100, Urban100, T91); skips where absent."""
    if not (SHARED_ROOT / "Set5" / "HR").is_dir():
        pytest.skip(f"benchmark sets not present at {SHARED_ROOT} (a fresh machine has none; CI has them)")
    return SHARED_ROOT


@pytest.fixture(scope="session")
def peer_weights() -> Path:
    """``../shared/peer_weights`` (the authors' sample files); skips where absent."""
    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"authors' sample weights not present at {SHARED_WEIGHTS}")
    return SHARED_WEIGHTS


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real RGB photograph (scikit-image 'chelsea', 300x451, uint8)."""
    return embedded_image("chelsea")


@pytest.fixture(scope="session")
def gray_photo() -> np.ndarray:
    """A real grayscale photograph (scikit-image 'camera', 512x512, uint8)."""
    return embedded_image("camera")


def crop(img: np.ndarray, h: int, w: int, y: int = 0, x: int = 0) -> np.ndarray:
    """A (h, w) window of a real image (tests use odd sizes to catch layout bugs)."""
    return np.ascontiguousarray(img[y : y + h, x : x + w])


def load_bench(name: str):
    """``bench/NAME.py`` imported as a module (the benchmarks are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
