"""libvirt: domain XML and the one module that imports the libvirt binding."""
