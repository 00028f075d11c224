"""`qtagent serve`: the daemon's plumbing. Event sources (udev, rtnetlink link
events, signals) feed a pure debouncer; the loop hands debounced batches to a
:class:`qtagent.daemon.api.DaemonHandler` and reports to systemd (sd_notify)."""
