"""Compliance-owned rules: the rule language of rules/, its compilation for durable_rules, and decide()."""
