"""Settings package: `base` is the embedded default, `production` hardens it."""
