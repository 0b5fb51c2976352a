"""The state audit (SPEC §7c): existing accounts judged against a rule set's holding policies, through decide().

judge    one account state's open permissions, each judged as if it were opened now in a request of its own
         (StateJudge; distinct states judged once)
report   the findings of every account, in a deterministic order, as the JSON document (StateAudit)
render   that document as text, markdown or CSV (cells escaped against formula injection)
"""
