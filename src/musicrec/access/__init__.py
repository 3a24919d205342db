"""Who may use the API: the API keys file (hashed keys, scopes, quotas)."""
