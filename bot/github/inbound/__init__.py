"""GitHub webhook events in: intake, deliveries, one module per event."""
