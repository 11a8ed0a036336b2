"""Core types, configuration, registries and random streams (stdlib + numpy only)."""
