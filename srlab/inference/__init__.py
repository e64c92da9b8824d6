"""Running a trained net on images: loading it from a checkpoint or an exported file
(`checkpoint.py`), tiled upscaling on the device (`tiling.py`, `tile_size.py`), streaming
image writers, drawing samples of stochastic nets, per-stage profiling and ONNX export.

Belongs here: what srlab-upscale, srlab-export and srlab-eval share to turn LR into SR.
Does not: metrics (evaluation/) or the commands themselves (cli/).
Imports only `errors`: a net is rebuilt from its `_target_`, so an exported file loads without
Hydra, Lightning or any srlab package but this one.
"""
