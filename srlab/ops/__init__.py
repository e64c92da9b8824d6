"""Shared low-level ops used by data, metrics, nets and the commands alike: MATLAB-compatible
bicubic `imresize` (the SR papers' LR and their bicubic baseline), and the file handling that
keeps a stranger's file data: `untrusted_files` (opening a model file without running code or
inflating bombs), `weight_checks` (what a file declares against what it holds) and `files`
(writing outputs to a temporary name renamed into place, never through a symlink).

Belongs here: functions with no notion of configs, runs, approaches or a particular net.
Imports nothing of srlab but `errors`.
"""
