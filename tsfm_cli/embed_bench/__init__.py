"""`tsfm embed-bench`: which input embedding holds up on our sensors, in distribution and under
drift. A sweep over the embedding (and normalisation) axis built on `train`'s sweep."""

from tsfm_cli.embed_bench.config import EmbedBenchConfig
from tsfm_cli.embed_bench.run import run_embed_bench

__all__ = ["EmbedBenchConfig", "run_embed_bench"]
