"""How a replica queued audit rows before migration 0040: the data twice, as stored and inside
``hashed_mid`` (``'"data":<data>,"fingerprint":<fingerprint as JSON>'``), no ``hashed_print``.
What an old replica still sends during a rolling update, and what the seals of 0012 to 0039
read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from receiver.store.canonical import audit_data, canonical_json

__all__ = ["old_append_in_tx", "old_audit_insert_sql"]


async def old_append_in_tx(
    conn: asyncpg.Connection,
    kind: str,
    run_id: str | None,
    fingerprint: str | None,
    data: Mapping[str, Any],
) -> None:
    """``receiver.store.audit.append_in_tx`` as it was up to migration 0039."""
    normalised = audit_data(data)
    await conn.execute(
        """INSERT INTO audit_pending (kind, run_id, fingerprint, data, hashed_mid, hashed_end)
           VALUES ($1, $2::uuid, $3, $4, $5, $6)""",
        kind,
        run_id,
        fingerprint,
        normalised,
        f'"data":{normalised},"fingerprint":{canonical_json(fingerprint)}',
        f'"kind":{canonical_json(kind)},"run_id":{canonical_json(run_id)}',
    )


def old_audit_insert_sql(
    source: str, *, kind: str, run_id: str, fingerprint: str, data: str, order_by: str = ""
) -> str:
    """``receiver.store.audit.audit_insert_sql`` as it was up to migration 0039."""
    return f"""INSERT INTO audit_pending (kind, run_id, fingerprint, data, hashed_mid, hashed_end)
        SELECT {kind}, {run_id}, {fingerprint}, {data},
               '"data":' || {data} || ',"fingerprint":'
                   || coalesce(to_json(({fingerprint})::text)::text, 'null'),
               '"kind":' || to_json(({kind})::text)::text || ',"run_id":'
                   || coalesce(to_json(({run_id})::text)::text, 'null')
        FROM {source}{f" ORDER BY {order_by}" if order_by else ""}"""
