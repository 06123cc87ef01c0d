"""Rendering: projections, colour, thumbnails, encoding (see DESIGN.md 6)."""
