"""BridgeX services."""
