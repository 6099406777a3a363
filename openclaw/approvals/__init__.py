"""Exec approvals: the records operators decide, the policy file, and the system.run gate."""
