"""Who may do what: shared-secret auth, device identity, scopes, and failed-auth limiting."""
