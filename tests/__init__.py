"""Trial tests for the gateway; ``python -m twisted.trial tests`` from the project root."""
