"""Durable records: allocations and original VF settings (SQLite)."""

from qtagent.model.desired import VfDefaults
from qtagent.store.errors import StoreError
from qtagent.store.records import (
    Allocation,
    AllocationState,
    OriginalVf,
    PfDesired,
    VmRef,
)
from qtagent.store.sqlite import DEFAULT_PATH
from qtagent.store.store import Store

__all__ = [
    "DEFAULT_PATH",
    "Allocation",
    "AllocationState",
    "OriginalVf",
    "PfDesired",
    "Store",
    "StoreError",
    "VfDefaults",
    "VmRef",
]
