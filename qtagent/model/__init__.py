"""Pure values describing the host: no I/O happens in this package."""
