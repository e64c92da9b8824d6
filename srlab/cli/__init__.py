"""The console scripts, one file each: train, eval, upscale, export, compare, prepare
(`srlab-<name>`, `python -m srlab.cli.<name>`), and `entry.py`, what every script does around
its work (one line for an unknown key or a user error, never a traceback).

Belongs here: parsing, composing and printing for a command. Does not: anything a second
command or a test would want to call without the command line (that goes into the role
folder it belongs to). cli may import every other srlab package; nothing imports cli.
"""
