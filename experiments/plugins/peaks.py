"""data=peaks: a 1 x 32 signal with one noisy bump; the class is the quarter the bump is in."""

import numpy as np

from dlrun.data import DATASETS
from dlrun.data.bundled import split_and_standardize
from dlrun.options import DataConfig, opt, option


@option("data", "peaks", input_kind="signal", shape=(1, 32), classes=4)
class PeaksConfig(DataConfig):
    """One Gaussian bump in a 1 x 32 noisy signal; 4 classes, the quarter it is in"""

    n_samples: int = opt(2000, ge=20)
    noise: float = opt(0.3, ge=0.0)  # Gaussian noise std around the bump
    standardize: str = "global"


@DATASETS.register("peaks")
def peaks(cfg: PeaksConfig):
    rng = np.random.default_rng(cfg.seed)
    centre = rng.uniform(0, 32, cfg.n_samples)
    t = np.arange(32)
    bump = np.exp(-0.5 * ((t[None, :] - centre[:, None]) / 1.5) ** 2)
    x = bump + cfg.noise * rng.standard_normal((cfg.n_samples, 32))
    y = (centre // 8).astype(np.int64)
    return split_and_standardize("peaks", x, y, "multiclass", cfg, (1, 32), input_kind="signal")
