"""Credentials as request metadata: what the clients and clusterctl send with every call.

A node with users (an ACL file) authenticates each unary call and each
stream from its ``authorization`` metadata: ``Bearer <token>``, or
``Basic`` with ``user:password`` when the same token is given with its
user's name (which lets the node check it against that user only). The
metadata is built once per client, so a call pays nothing extra to carry it.
"""

from __future__ import annotations

import base64

__all__ = ["AUTHORIZATION_KEY", "Metadata", "credentials_metadata"]

#: The request metadata key the node reads credentials from.
AUTHORIZATION_KEY = "authorization"
Metadata = tuple[tuple[str, str], ...]


def credentials_metadata(
    token: str | None = None, user: str | None = None, password: str | None = None
) -> Metadata:
    """The metadata for ``token``, or for ``user`` with ``password``; ``()`` for none.

    ValueError for a combination that cannot be meant, naming no secret.
    """
    if token is not None and password is not None:
        raise ValueError("give token= or password= (with user=), not both")
    if user is not None and password is None:
        raise ValueError("user= needs password=")
    if password is not None:
        if not user or ":" in user:
            raise ValueError("user= must be a non-empty name without ':'")
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return ((AUTHORIZATION_KEY, f"Basic {pair}"),)
    if token is not None:
        if not token or token != token.strip() or any(c in token for c in "\r\n"):
            raise ValueError("token= must be non-empty, without surrounding spaces or newlines")
        return ((AUTHORIZATION_KEY, f"Bearer {token}"),)
    return ()
