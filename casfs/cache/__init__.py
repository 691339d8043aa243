"""Keeping the store under its quota: eviction policies, access model, the evictor."""
