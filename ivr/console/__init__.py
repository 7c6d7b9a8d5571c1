"""The web console: the pages agents, supervisors/admins and reviewers work in (ko/en)."""
