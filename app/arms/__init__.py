"""The arms: one module per arm, each exposing run(ctx: ArmContext) -> dict."""
