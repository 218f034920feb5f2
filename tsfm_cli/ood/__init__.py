"""`tsfm ood-split`: training data plus in-distribution, natural and synthetic-drift scenarios."""

from tsfm_cli.ood.config import OodConfig
from tsfm_cli.ood.run import run_ood_split

__all__ = ["OodConfig", "run_ood_split"]
