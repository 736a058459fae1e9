"""The :class:`Explanation` result: arrays, curves, metrics, settings; save and load.

On disk (a directory):

- ``explanation.json``: everything human-readable (text, tokens, positions, AUCs,
  forwards, seconds, settings, versions, curves as lists);
- ``saliency.npy``: ``float32[H, W]`` in ``[0, 1]``, the size of the explained image;
- ``arrays.npz``: image, label map, ordering, per-token curves (loaded with
  ``allow_pickle=False``);
- ``heatmap.png``: the saliency overlaid on the image, titled with the explained words.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .types import Generation

SCHEMA_VERSION = 1


def versions() -> dict[str, str]:
    """Versions of the packages that determine a result."""
    from . import __version__

    out = {"mllm_attr": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "transformers", "skimage", "PIL"):
        try:
            m = __import__(mod)
            out["scikit-image" if mod == "skimage" else ("pillow" if mod == "PIL" else mod)] = str(m.__version__)
        except Exception:  # noqa: BLE001 - a missing optional package is just not reported
            pass
    return out


def region_values(ordering: np.ndarray, value: np.ndarray, f0: float) -> np.ndarray:
    """Per-region attribution in ``[0, 1]`` from the ordering and the objective of each prefix.

    Walking the ordering, the value drops by the marginal change ``|F_t − F_{t−1}|``
    (the reference rule) plus a tiny step, so that it strictly decreases with rank and
    the map keeps the ordering even where a step changed nothing. Min-max normalised.
    """
    n = len(ordering)
    gains = np.abs(np.diff(np.concatenate([[f0], value])))
    eps = max(float(gains.sum()), 1.0) * 1e-6
    v = -np.cumsum(gains + eps)
    v = (v - v.min()) / (v.max() - v.min()) if n > 1 else np.ones(1)
    out = np.empty(n)
    out[np.asarray(ordering, dtype=np.int64)] = v
    return out


@dataclass
class Explanation:
    """What a generated token relied on: an ordering of image regions and its curves.

    Attributes:
        image: ``uint8[H, W, 3]`` RGB image that was explained.
        labels: ``int32[H, W]`` region label map.
        ordering: ``int64[n]`` regions, most important first.
        areas: ``float64[n]`` revealed area fraction after each step (last = 1).
        ins: ``float64[n, K]`` per-token insertion scores of each prefix.
        dele: ``float64[n, K]`` per-token deletion scores of each prefix.
        value: ``float64[n]`` objective of each prefix.
        p_full: ``float64[K]`` per-token probability with the full image.
        p_blank: ``float64[K]`` per-token probability with every region removed.
        generation: the answer whose tokens are explained.
        positions: explained token positions (0-based, into ``generation``).
        forwards: images scored; seconds: wall time.
        settings: every option used; versions: package versions.
        saliency_map: for map-based methods, the map itself (else derived from the ordering).

    Example:
        >>> expl = Explainer(adapter, n_regions=64)(image, gen, target="cat")   # doctest: +SKIP
        >>> expl.saliency().shape, expl.insertion_auc(), expl.deletion_auc()     # doctest: +SKIP
    """

    image: np.ndarray
    labels: np.ndarray
    ordering: np.ndarray
    areas: np.ndarray
    ins: np.ndarray
    dele: np.ndarray
    value: np.ndarray
    p_full: np.ndarray
    p_blank: np.ndarray
    generation: Generation
    positions: list[int]
    forwards: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)
    saliency_map: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ordering)
        k = len(self.positions)
        h, w = self.labels.shape
        checks = {
            "image": (self.image.shape, (h, w, 3)),
            "areas": (self.areas.shape, (n,)),
            "ins": (self.ins.shape, (n, k)),
            "dele": (self.dele.shape, (n, k)),
            "value": (self.value.shape, (n,)),
            "p_full": (self.p_full.shape, (k,)),
            "p_blank": (self.p_blank.shape, (k,)),
        }
        for name, (got, want) in checks.items():
            if tuple(got) != tuple(want):
                raise ValueError(f"Explanation.{name} has shape {tuple(got)}; expected {want}")
        if n != int(self.labels.max()) + 1:
            raise ValueError(f"ordering has {n} regions but the label map has {int(self.labels.max()) + 1}")

    # -- selection -----------------------------------------------------------------------------
    @property
    def n_regions(self) -> int:
        return len(self.ordering)

    @property
    def target_tokens(self) -> list[str]:
        return [self.generation.tokens[p] for p in self.positions]

    @property
    def target_text(self) -> str:
        """The explained words as they appear in the answer."""
        spans = [self.generation.spans[p] for p in self.positions if self.generation.spans[p][1] > self.generation.spans[p][0]]
        if not spans:
            return "".join(self.target_tokens)
        return self.generation.text[min(s for s, _ in spans) : max(e for _, e in spans)].strip()

    def _tok(self, arr: np.ndarray, token: int | None) -> np.ndarray:
        if token is None:
            return arr.mean(axis=-1)
        if not -len(self.positions) <= token < len(self.positions):
            raise IndexError(f"token {token} out of range for {len(self.positions)} explained tokens")
        return arr[..., token]

    # -- curves and metrics --------------------------------------------------------------------
    def insertion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: revealed area vs probability; ``token`` picks one explained token (default: mean)."""
        return metrics.insertion_curve(self.areas, self._tok(self.ins, token), float(self._tok(self.p_blank, token)))

    def deletion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: removed area vs probability."""
        return metrics.deletion_curve(self.areas, self._tok(self.dele, token), float(self._tok(self.p_full, token)))

    def insertion_auc(self, token: int | None = None) -> float:
        """Area under the insertion curve (higher is better)."""
        return metrics.auc(*self.insertion_curve(token))

    def deletion_auc(self, token: int | None = None) -> float:
        """Area under the deletion curve (lower is better)."""
        return metrics.auc(*self.deletion_curve(token))

    def highest_confidence(self, token: int | None = None) -> float:
        """Maximum of the insertion curve."""
        return float(self.insertion_curve(token)[1].max())

    def region_scores(self) -> np.ndarray:
        """``float64[n]``: per-region attribution in ``[0, 1]`` (decreasing with rank)."""
        f0 = float(self.value_empty())
        return region_values(self.ordering, self.value, f0)

    def value_empty(self) -> float:
        lam1 = float(self.settings.get("lambda1", 1.0))
        lam2 = float(self.settings.get("lambda2", 1.0))
        return lam1 * float(self.p_blank.mean()) + lam2 * (1.0 - float(self.p_full.mean()))

    def saliency(self) -> np.ndarray:
        """``float32[H, W]`` in ``[0, 1]``, the size of the explained image."""
        if self.saliency_map is not None:
            return self.saliency_map.astype(np.float32)
        return self.region_scores()[self.labels].astype(np.float32)

    def summary(self) -> dict[str, Any]:
        """The headline numbers (what the CLI prints and ``explanation.json`` starts with)."""
        return {
            "generated_text": self.generation.text,
            "target_text": self.target_text,
            "tokens": list(self.generation.tokens),
            "target_positions": list(self.positions),
            "target_tokens": self.target_tokens,
            "insertion_auc": self.insertion_auc(),
            "deletion_auc": self.deletion_auc(),
            "highest_confidence": self.highest_confidence(),
            "p_full": self.p_full.tolist(),
            "p_blank": self.p_blank.tolist(),
            "n_regions": self.n_regions,
            "forwards": int(self.forwards),
            "seconds": float(self.seconds),
        }

    def to_json(self) -> dict[str, Any]:
        d = self.summary()
        d.update(
            {
                "schema_version": SCHEMA_VERSION,
                "per_token": [
                    {
                        "position": p,
                        "token": self.generation.tokens[p],
                        "insertion_auc": self.insertion_auc(i),
                        "deletion_auc": self.deletion_auc(i),
                        "highest_confidence": self.highest_confidence(i),
                        "p_full": float(self.p_full[i]),
                        "p_blank": float(self.p_blank[i]),
                    }
                    for i, p in enumerate(self.positions)
                ],
                "ordering": self.ordering.tolist(),
                "areas": self.areas.tolist(),
                "insertion_curve": self.insertion_curve()[1].tolist(),
                "deletion_curve": self.deletion_curve()[1].tolist(),
                "generation": self.generation.to_dict(),
                "settings": self.settings,
                "versions": self.versions,
            }
        )
        return d

    # -- persistence ---------------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike, *, overwrite: bool = False, heatmap: bool = True) -> Path:
        """Write the result into ``out_dir`` atomically (a temp dir renamed into place).

        Raises:
            FileExistsError: ``out_dir`` exists and is not empty, and ``overwrite`` is False.
        """
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"output path {str(out)!r} exists and is a file; expected a directory")
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"output directory {str(out)!r} exists and is not empty; pass overwrite=True")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            (tmp / "explanation.json").write_text(json.dumps(self.to_json(), indent=2, allow_nan=True))
            np.save(tmp / "saliency.npy", self.saliency())
            arrays = {
                "image": self.image,
                "labels": self.labels.astype(np.int32),
                "ordering": self.ordering.astype(np.int64),
                "areas": self.areas,
                "ins": self.ins,
                "dele": self.dele,
                "value": self.value,
                "p_full": self.p_full,
                "p_blank": self.p_blank,
            }
            if self.saliency_map is not None:
                arrays["saliency_map"] = self.saliency_map.astype(np.float32)
            np.savez_compressed(tmp / "arrays.npz", **arrays)
            if heatmap:
                from .viz import save_heatmap

                save_heatmap(self, tmp / "heatmap.png")
            if out.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.replace(out, trash / "old")
                os.replace(tmp, out)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    @classmethod
    def load(cls, in_dir: str | os.PathLike) -> "Explanation":
        """Read a result written by :meth:`save` (no pickle is ever loaded)."""
        d = Path(in_dir)
        meta_path, arr_path = d / "explanation.json", d / "arrays.npz"
        for p in (meta_path, arr_path):
            if not p.is_file():
                raise FileNotFoundError(f"{str(p)!r} not found; expected a directory written by Explanation.save")
        meta = json.loads(meta_path.read_text())
        with np.load(arr_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(
            image=arrays["image"],
            labels=arrays["labels"],
            ordering=arrays["ordering"],
            areas=arrays["areas"],
            ins=arrays["ins"],
            dele=arrays["dele"],
            value=arrays["value"],
            p_full=arrays["p_full"],
            p_blank=arrays["p_blank"],
            generation=Generation.from_dict(meta["generation"]),
            positions=[int(p) for p in meta["target_positions"]],
            forwards=int(meta["forwards"]),
            seconds=float(meta["seconds"]),
            settings=meta.get("settings", {}),
            versions=meta.get("versions", {}),
            saliency_map=arrays.get("saliency_map"),
        )
