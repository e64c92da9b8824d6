"""Run directories: reading what a finished, failed or unfinished run left behind
(`directories.py`, used by srlab-compare) and naming runs for W&B after what they vary
(`names.py`, registered as the `${srlab.run_name:}` / `${srlab.run_group:}` resolvers).

Belongs here: the run directory contract of docs/architecture.md, read or named.
Does not: writing runs (training/ and cli/ do). Imports only `errors`.
"""
