"""Live, in-memory gateway state: connected clients, presence, health and their versions."""
