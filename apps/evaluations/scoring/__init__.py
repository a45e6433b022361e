"""Scoring: pure functions from (output, expected, contexts) to metric values. No database."""
