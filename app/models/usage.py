"""Aggregated usage: one row per key, UTC hour, outcome and model (the LLM gateway's; "" for other
requests); never a row per request."""
from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime


class KeyUsage(db.Model):
    __tablename__ = "key_usage"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    hour = mapped_column(UTCDateTime, primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True, default="", server_default="")
    count: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), nullable=False, default=0)
    cost: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), nullable=False, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), nullable=False,
                                              default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), nullable=False,
                                               default=0, server_default="0")
