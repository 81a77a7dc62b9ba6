"""Pipeline stages: plan, implement, verify, review."""
