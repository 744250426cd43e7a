"""Who a join token lets in: its signature and expiry (`TokenSigner`), and the roster
now: a pupil who left, moved class or whose link was revoked is refused, and so is a
revoked class link."""

from __future__ import annotations

from edge.access.tokens import Grant, TokenError, TokenSigner
from edge.school.roster import Pupil, RosterStore


class Gate:
    def __init__(self, signer: TokenSigner, roster: RosterStore) -> None:
        self.signer = signer
        self.roster = roster

    def admit(self, token: str) -> Grant:
        """The grant of a token that may be used now; raises `TokenError` (why, for logs)."""
        grant = self.signer.verify(token)
        if grant.pupil_id is None:
            if grant.generation != self.roster.class_generation(grant.class_name):
                raise TokenError("class link revoked")
            return grant
        pupil = self.roster.get(grant.pupil_id)
        if pupil is None:
            raise TokenError("pupil not on the roster")
        if pupil.class_name != grant.class_name:
            raise TokenError("pupil moved to another class")
        if pupil.generation != grant.generation:
            raise TokenError("link revoked")
        return grant

    def pupil(self, grant: Grant) -> Pupil | None:
        return self.roster.get(grant.pupil_id) if grant.pupil_id else None
