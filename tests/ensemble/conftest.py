"""Shared fixtures: a small synthetic panel and real trained members saved as checkpoints."""

from ensemble_cases import member_dirs, prepared  # noqa: F401  (fixtures)
