"""Deciding a request: compile a RuleSet for durable_rules, give the engine its facts, memoize verdicts, decide()."""
