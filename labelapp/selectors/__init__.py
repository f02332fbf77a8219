"""Reads. One module per area; import from the submodules."""
