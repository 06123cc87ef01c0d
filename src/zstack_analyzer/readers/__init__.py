"""Format readers; each module holds one format and its quirks (see DESIGN.md 3)."""
