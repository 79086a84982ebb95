"""The rotation engine: keep the app on valid values and act once when they change."""
