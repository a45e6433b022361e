"""What the registry tells the apps above it (they subscribe; the registry imports none)."""

from django.dispatch import Signal

# Sent after an endpoint's status changed and the change committed:
# endpoint, previous (status), actor, reason.
endpoint_status_changed = Signal()
