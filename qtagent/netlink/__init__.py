"""Netlink: the typed VF interface and its pyroute2 implementation."""
