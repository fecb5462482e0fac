"""The Runway-compatible surface under `/runway`: Runway's own SDKs work against it unchanged."""
