"""Review sessions signed out before they expired (migration 0045): a signed cookie stays
valid until it expires, so signing out records it, and a page refuses it from then on
(``receiver.http.login``). Sessions are keyed by the SHA-256 of their cookie
(``receiver.review.sessions.session_digest``): the table holds no cookie a reader could use."""

from __future__ import annotations

from receiver.store.database import Database
from receiver.store.errors import translate

__all__ = ["SignOuts"]


class SignOuts(Database):
    """Record a sign-out, and ask whether a session was signed out. StoreUnavailable when
    PostgreSQL cannot answer: a page then refuses (fails closed), a sign-out says so."""

    async def sign_out_session(self, digest: bytes, for_s: float) -> None:
        """Refuse the session of ``digest`` for the next ``for_s`` seconds (the longest it
        could still be valid), and forget the sign-outs whose time is over. Idempotent."""
        with translate():
            await self._pool.execute(
                """WITH over AS (DELETE FROM review_signouts WHERE until <= remediator_now())
                   INSERT INTO review_signouts (digest, until)
                   VALUES ($1, remediator_now() + make_interval(secs => $2))
                   ON CONFLICT (digest) DO UPDATE SET until = greatest(
                       review_signouts.until, excluded.until)""",
                digest,
                float(for_s),
            )

    async def session_signed_out(self, digest: bytes) -> bool:
        """Whether the session of ``digest`` was signed out (and could still be valid)."""
        with translate():
            found = await self._pool.fetchval(
                """SELECT EXISTS (SELECT 1 FROM review_signouts
                                  WHERE digest = $1 AND until > remediator_now())""",
                digest,
            )
        return bool(found)
