"""Compliance tools over a rule set: lint, the input space, diff, impact, explain, regression cases and coverage."""
