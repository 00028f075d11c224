"""Netlink: the typed VF interface; qtagent's own rtnetlink socket (default) and pyroute2."""
