"""Pages and htmx fragments. One module per area."""
