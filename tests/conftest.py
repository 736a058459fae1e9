import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def rgb_image() -> np.ndarray:
    """A 40x40 random RGB image with no black pixel (so the black baseline is distinguishable)."""
    rng = np.random.default_rng(0)
    return rng.integers(1, 255, size=(40, 40, 3), dtype=np.uint8)


@pytest.fixture
def quadrant_weights() -> np.ndarray:
    """Weights constant on the 2x2 grid cells of a 40x40 image: 3, 1, 0, 0 (cells 0..3 in raster order)."""
    w = np.zeros((40, 40))
    w[:20, :20] = 3.0
    w[:20, 20:] = 1.0
    return w


def load_eval_script(name: str):
    """``eval/<name>.py`` (a script, not a package) imported as a module, for the benchmark-script tests."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "eval" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod
