"""Planning: the plan model (a DAG of steps), the rule and LLM planners, and plan reuse."""
