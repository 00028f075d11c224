"""qtagent: host agent for SR-IOV servers."""

__version__ = "0.1.0"
