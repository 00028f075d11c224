"""Readers and writers of /sys (under a configurable root)."""
