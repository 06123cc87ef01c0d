"""Projects, datasets, tags, key-value pairs, comments, ROIs and their stats."""
