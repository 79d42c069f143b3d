"""Who may do what: ``users`` (dashboard users from the secrets file or ``ABCORE_USERS``, password hashes,
roles, sign-in throttling), ``sessions`` (signed session cookies) and ``api_keys`` (the HTTP API's keys, stored
hashed, with roles and rate limits)."""
