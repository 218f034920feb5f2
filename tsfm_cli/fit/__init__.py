"""`tsfm fit`: scaling laws with uncertainty, in distribution vs out of distribution."""

from tsfm_cli.fit.config import FitConfig
from tsfm_cli.fit.stage import run_fit

__all__ = ["FitConfig", "run_fit"]
