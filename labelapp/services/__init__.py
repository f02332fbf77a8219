"""Writes. One module per area (``<entity>_<action>(*, ...)``); import from the submodules."""
