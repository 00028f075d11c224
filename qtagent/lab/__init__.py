"""The emulated lab: an SR-IOV host in a QEMU guest."""
