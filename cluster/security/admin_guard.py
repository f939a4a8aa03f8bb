"""The Admin service behind the admin permission, and the ACL's own Admin RPCs.

Rather than an interceptor that every Cache call would pay for, the Admin
servicer's methods are wrapped once, when the server registers them: each
wrapper asks :meth:`Access.admin` first. The servicer itself stays unaware
of users, and an RPC added to it later is guarded without anyone
remembering to (the wrapped set is the service descriptor's, not a list).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeAlias, TypeVar

import grpc

from slotcache.v1 import admin_pb2 as pb
from slotcache.v1 import admin_pb2_grpc as pb_grpc

from ..executor import CommandError
from ..services.status import abort
from .access import Access

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Method: TypeAlias = Callable[[Any, Context], Awaitable[Any]]
S = TypeVar("S", bound=pb_grpc.AdminServicer)
ADMIN_RPCS = tuple(m.name for m in pb.DESCRIPTOR.services_by_name["Admin"].methods)


def guard_admin(servicer: S, access: Access) -> S:
    """``servicer`` with each Admin RPC refused unless the caller has the admin permission.

    The bound methods are replaced on the instance, once, before the server
    registers them; without users (and outside protected mode) the wrapper
    costs one attribute read per Admin call.
    """
    for name in ADMIN_RPCS:
        setattr(servicer, name, _guard(access, name, getattr(servicer, name)))
    return servicer


def _guard(access: Access, name: str, method: Method) -> Method:
    async def guarded(request: Any, context: Context) -> Any:
        if access.active:
            try:
                access.admin(context, name)
            except CommandError as exc:
                await abort(context, exc)
        return await method(request, context)

    return guarded


class AclRpcs:
    """The Admin RPCs of the users: reload the ACL file, read the ACL log.

    Mixed into the Admin servicer, which sets ``access``.
    """

    access: Access

    async def AclReload(self, request: pb.AclReloadRequest, context: Context) -> pb.AclReloadReply:
        """Reload as SIGHUP does; a bad file fails the call and keeps the users in force."""
        ok, message = self.access.reload()
        if not ok:
            await abort(context, CommandError(grpc.StatusCode.FAILED_PRECONDITION, message))
        acl = self.access.acl
        return pb.AclReloadReply(message=message, users=len(acl.users) if acl else 0)

    async def AclLog(self, request: pb.AclLogRequest, context: Context) -> pb.AclLogReply:
        """The grouped refusals, newest first, and the totals by reason."""
        log = self.access.log
        reply = pb.AclLogReply(totals=log.totals, acl_enabled=self.access.acl is not None)
        for entry in log.latest(request.count):
            reply.entries.add(**asdict(entry))
        if request.reset:
            log.reset()
        return reply
