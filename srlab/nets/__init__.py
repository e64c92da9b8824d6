"""nn.Modules that map LR to SR (and critics that judge SR), one architecture per file;
shared parts in `blocks.py` and `swin_blocks.py`; authors' released weights in
`official_weights.py`. Every net takes the LR image; it says its `scale` and whether it works
at HR size after a bicubic upscale (`upsampling = "pre"`, `blocks.PreUpsamplingNet`) or at LR
size (`"post"`); nothing else in srlab needs to know which net it is.

Imports only `ops` and `errors`: a net must load without Lightning or Hydra.
"""
