"""The task pipeline: accepting, screening, staging, running steps, finishing, control,
reconciliation, and the lifecycle and repository they share."""
