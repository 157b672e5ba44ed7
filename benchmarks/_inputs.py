"""Inputs and probes more than one benchmark uses: the Lite0 export, JPEG photos, a fortunes
sample, and a record of extract's spinning choice. Benchmarks import this, not each other.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def get_model(work: Path) -> tuple[Path, str]:
    """The EfficientNet-Lite0 export, through the CLI."""
    out = work / "lite0.onnx"
    export = [sys.executable, "-m", "embedkit", "export", "efficientnet_lite0", "--out", str(out)]
    subprocess.run(export, cwd=REPO, check=True, capture_output=True)
    return out, "EfficientNet-Lite0 (embedkit export, fp32)"


def write_jpegs(root: Path, n: int) -> Path:
    """``n`` JPEG photos of 500x375, random crops of scikit-image's samples, 2 classes."""
    from PIL import Image
    from skimage import data as samples

    rng = np.random.default_rng(0)
    photos = [samples.astronaut(), samples.coffee(), samples.chelsea(), samples.rocket()]
    for i in range(n):
        photo = photos[i % len(photos)]
        big = Image.fromarray(photo).resize((700, 525))
        left, top = int(rng.integers(0, 200)), int(rng.integers(0, 150))
        folder = root / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        big.crop((left, top, left + 500, top + 375)).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def sample_fortunes(n: int) -> list[str]:
    from embedkit.datasets import load_fortunes

    texts, _ = load_fortunes(REPO / "data" / "fortunes")
    order = np.random.default_rng(0).permutation(len(texts))[:n]
    return [texts[i] for i in order]


SPUN: list[bool] = []  # per extract session: did its idle threads spin


def record_spinning() -> None:
    """Note each session's spinning choice (no other process running as it started)."""
    import embedkit.extract.providers as providers

    look = providers.others_running

    def recorded(*args, **kwargs):
        others = look(*args, **kwargs)
        SPUN.append(others == 0)
        return others

    providers.others_running = recorded


def spinning_line() -> str:
    return (
        f"Sessions whose threads spun (no other process running as they started): "
        f"{sum(SPUN)} of {len(SPUN)}."
    )
