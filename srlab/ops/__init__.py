"""Shared numeric ops used by data, metrics and nets alike: MATLAB-compatible bicubic
`imresize` (the SR papers' LR and their bicubic baseline).

Belongs here: pure tensor functions with no notion of configs, runs or models.
Imports nothing of srlab but `errors`.
"""
