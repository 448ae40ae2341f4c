"""Where a tenant's objects lie in the audience bucket, and whose an object is.

Every tenant's objects live under its own prefixes::

    audiences/<tenant>/...            a drop here is sent (its header must name <tenant>)
    audiences/<tenant>/requests/<id>.json     approved ad-hoc audiences (written once)
    audiences/<tenant>/scheduled/<day>/<definition>.json   scheduled campaigns
    drafts/<tenant>/...               ad-hoc drafts, sent only through an approved request

The tenant of an object comes from where it lies, never from what it says: a file whose
header names another tenant than its prefix is rejected, and a request may name only
drafts under its own tenant's prefix.
"""

from __future__ import annotations

import re

from pushpipe import topology as t

_TENANT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def tenant_of(key: str, prefix: str) -> str | None:
    """The tenant whose prefix ``key`` lies under (``<prefix><tenant>/<name>``), or None
    when it lies directly under ``prefix`` or outside it."""
    if not key.startswith(prefix):
        return None
    tenant, sep, rest = key[len(prefix) :].partition("/")
    if not sep or not rest or not _TENANT.match(tenant) or tenant in (".", ".."):
        return None
    return tenant


def tenant_prefix(prefix: str, tenant: str) -> str:
    if not _TENANT.match(tenant) or tenant in (".", ".."):
        raise ValueError(f"{tenant!r} is not a tenant id")
    return f"{prefix}{tenant}/"


def audience_key(prefix: str, tenant: str, name: str) -> str:
    """Where a drop of ``name`` for ``tenant`` lies (``prefix`` is the audience prefix)."""
    return tenant_prefix(prefix, tenant) + name.lstrip("/")


def draft_key(tenant: str, name: str) -> str:
    return tenant_prefix(t.DRAFTS_PREFIX, tenant) + name.lstrip("/")
