"""What the evaluations app tells the apps above it (they subscribe; it imports none)."""

from django.dispatch import Signal

# Sent once a run is finalized and committed: run_id, purpose ("release", "drift", …).
# Scorecards compares a drift run with its certified run.
run_finalized = Signal()
