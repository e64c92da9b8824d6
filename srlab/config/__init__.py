"""Configuration: composing Hydra configs outside `@hydra.main` and the resolvers they use
(`compose.py`), and checking a composed config against the signatures it instantiates before
anything is built (`schema.py`).

Belongs here: where configs live, resolvers, early value checks. Does not: the YAML itself
(`configs/` at the repository root) or building objects (Hydra's `_target_` does that).
Imports only `runs` (its resolvers name W&B runs) and `errors`.
"""
