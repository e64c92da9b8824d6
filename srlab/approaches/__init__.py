"""LightningModules, one per way of learning SR: `regression` (auto-encoder, U-Net, U-Net +
perceptual, the paper nets), `gan` (generator + critic), `vae` (conditional VAE), all sharing
`base.SRApproach` (validation metrics, panels, EMA, checkpoint contents).

Belongs here: the training step, the optimizers, what is validated. Does not: the nets
(nets/), the loss terms (losses/), the data (data/).
Imports nets, losses, evaluation, inference (a GAN starts from a checkpoint), training, ops.
"""
