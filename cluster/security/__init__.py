"""Transport security, users and permissions, node authentication and input limits."""
