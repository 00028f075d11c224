"""Durable records: allocations and original VF settings (SQLite)."""
