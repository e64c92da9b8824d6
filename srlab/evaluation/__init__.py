"""Measuring SR as papers report it: PSNR/SSIM on Y with the border cropped (`metrics.py`),
LPIPS, the diversity of samples of stochastic nets, and the eval report (tables, per-image
CSV, W&B panels; `report.py`).

Belongs here: numbers about SR images and how they are reported. Does not: producing the SR
images (inference/) or training losses (losses/).
Imports `ops`, `losses` (the shared ImageNet-weight loader), `runs` (W&B groups) and `errors`.
"""
