"""deltanet-hw: design, verify and measure hardware for DeltaNet (delta-rule linear attention)."""

from . import golden  # noqa: F401  (deltanet_hw.golden)
from .config import PRESETS, CoreConfig, load_config, preset

__all__ = ["PRESETS", "CoreConfig", "load_config", "preset"]
__version__ = "0.1.0"
