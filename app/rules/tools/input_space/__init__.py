"""The finite input space of a rule set and the plain-Python evaluator of its compiled clauses (for lint and diff)."""
