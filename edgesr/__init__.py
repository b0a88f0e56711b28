"""edgesr."""
