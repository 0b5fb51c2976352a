"""Lint of a rules/ directory: each file as the language reads it, then static checks of the whole set
(static_checks.py) and semantic checks over its input space (semantic.py)."""
