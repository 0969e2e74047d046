"""Optuna's side of a search: the persistent study, its RDB storage, the sampler registry and the warm start of a changed space."""
