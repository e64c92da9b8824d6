"""What a training run is made of besides the LightningModule: callbacks (sample panels,
progress, val history), the EMA of the weights, the NaN/Inf guard, speed settings
(channels_last, compile), and faults (atomic checkpoints, pre-emption signals).

Belongs here: anything that runs during `fit` around the approach's step. Does not: how a
model learns (approaches/), or what runs after training (inference/, evaluation/).
Imports `data` (image writing), `ops` and `errors`; never approaches or cli.
"""
