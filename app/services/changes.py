"""Announcing changes to keys and accounts to every worker's key cache, in commit order.

`announce` notes a change in the current transaction; when that transaction commits, the change is
written to the key change log (app/models/change.py) with the next sequence number, taken last,
under the counter row's lock, so numbers follow commit order. Workers read the log at most once
per KEY_CACHE_SECONDS (KeyCache.catch_up) and drop only the records that changed.
"""
from sqlalchemy import delete, event, update
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import KeyChange, KeyChangeCounter

PENDING = "latchkey_key_changes"
KEEP = 10_000  # log rows kept; a worker further behind than this drops its whole cache


def announce(key_id: int | None = None, user_id: int | None = None):
    """Note in the current transaction that a key (or every key of an account) changed."""
    session = db.session()
    if not session.in_transaction():  # so that a rollback, which then ends it, forgets the note
        session.begin()
    session.info.setdefault(PENDING, []).append((key_id, user_id))


@event.listens_for(Session, "before_commit")
def _write_pending(session):
    pending = session.info.pop(PENDING, None)
    if not pending:
        return
    last = session.execute(
        update(KeyChangeCounter).where(KeyChangeCounter.id == 1)
        .values(value=KeyChangeCounter.value + len(pending)).returning(KeyChangeCounter.value)).scalar()
    if last is None:  # a database made from the models, not the migrations: the row starts here
        session.add(KeyChangeCounter(id=1, value=len(pending)))
        last = len(pending)
    first = last - len(pending) + 1
    session.add_all(KeyChange(seq=first + index, key_id=key_id, user_id=user_id)
                    for index, (key_id, user_id) in enumerate(pending))
    session.execute(delete(KeyChange).where(KeyChange.seq <= last - KEEP))


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session, previous_transaction):
    session.info.pop(PENDING, None)
