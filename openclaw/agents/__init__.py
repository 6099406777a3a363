"""Agents: their configuration, the model catalog, and the runs that drive model providers."""
