"""Files shipped with the package: the small trained default model and an example image."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL_NAME = "shapes-llava"


def default_model_path() -> Path:
    """Directory of the shipped shapes-world LLaVA checkpoint (a normal transformers directory)."""
    path = ASSETS / DEFAULT_MODEL_NAME
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the embedded default model is missing at {str(path)!r}; reinstall mllm-attr")
    return path


def example_image_path() -> Path:
    """A held-out shapes-world scene shipped for the quick start."""
    path = ASSETS / "example.png"
    if not path.is_file():
        raise FileNotFoundError(f"the example image is missing at {str(path)!r}; reinstall mllm-attr")
    return path
