"""Model code shared by `train` and `embed-bench`: embeddings, backbone, heads, size presets.

Importing this package imports torch; only the training stages do that.
"""
