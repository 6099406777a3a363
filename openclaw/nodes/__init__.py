"""Node policy: which commands a node may ask for and run."""
