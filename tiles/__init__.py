"""Tile geometry, tile and region rendering, the Redis tile cache and render scheduling (no HTTP)."""
