"""Crash-safe multi-step changes: the journal runner, recovery, the host lock, failpoints."""
