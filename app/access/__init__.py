"""Who may do what: API keys, capability tokens, rate limits and the audit log."""
