"""Compliance-owned rules: the rule language of rules/, deciding a request with durable_rules, the tools
compliance uses on a rule set, and the live set a running service uses.

Four packages, each importing only the ones above it in this list (tests/rules/test_layout.py checks it):

  language/   rules/ as data: reading each YAML file with line and column (source), the account attributes
              declared (attributes), the catalog, validation and policy files (loader, parser), the declared
              shape of a rule entry (schema) and the reading of its condition (conditions), the model,
              conditions as alternatives of literals (clauses) and the rule-set version. Imports nothing else.
  runtime/    deciding a request: compile a RuleSet for durable_rules (compiler), the facts the engine is given
              (facts), the engine adapter (engine) and its memo keys (memo), the request as the rules see it
              (decision_input, built by DecisionInput.of), decide() and its tracer (decision), the caller's
              message (messages), the caller's answer (answer: answer_of) and the decision record (record:
              DecisionRecord, to a row of the decisions table and back). Imports language only.
  tools/      what compliance runs on a set: lint (lint/: the directory, static checks, semantic checks over the
              input space), the input space (input_space/: the requests that stand for every input), diff,
              impact (impact/), explain (explain/), the state audit (audit_state/), regression cases and their
              coverage. Each judges through runtime's decide(): there is no other evaluator. Imports language
              and runtime, never lifecycle.
  lifecycle/  the set a running service uses: the live set following the published version (live), the port it
              reads the publications through (published), the watch thread reading the live pointer (watch),
              the sets found clean in this process (clean_sets), the go-live gate (gate: lints clean and every
              case passes), stored versions written to disk (stored) and the last good copy on disk (last_good).
              May import everything above.

No module of app.rules imports one that imports it back (no cycles).
"""
