"""The qtagent command line."""
