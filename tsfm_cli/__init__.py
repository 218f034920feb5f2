"""tsfm: neural scaling laws for time-series foundation models on a plant's own sensors."""

__version__ = "0.1.0"
