"""Domain logic that does not depend on HTTP: secrets, scopes, verification, usage, backends."""
