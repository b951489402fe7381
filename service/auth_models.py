"""Tables of sign-in security (``service.sign_in``).

``login_throttle``
    Failed logins per key (an account: tenant and username; or a client address) in the current
    window: shared by every worker and instance over the one database.
``revoked_tokens``
    Token ids (JWT ``jti``) signed out before they expire; kept until they would have expired.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models import Base

_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class LoginThrottle(Base):
    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[float] = mapped_column(Float)  # epoch seconds of the window's first failure


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[int] = mapped_column(BigInteger)  # epoch seconds: the token's exp
