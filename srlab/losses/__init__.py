"""Loss terms for SR training: each is an nn.Module with forward(sr, hr) -> scalar, one idea per file.

Configs pick them by `_target_` (configs/loss/terms/*.yaml) and `mix.LossMix` weights and sums
them. Imports `config` (where configs/loss/terms lives) and `errors` only. Nothing is imported here so that using one term does not load torchvision/torchmetrics.
"""
