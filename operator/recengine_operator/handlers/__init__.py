"""Thin kopf handler bodies, one module per event: each does I/O and delegates the thinking to
the pure modules (spec, policy, rollout, status, reconcile)."""
