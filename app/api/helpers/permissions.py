"""The one place that decides what an actor may touch: its own rows, or every row as an admin.

Every list query, detail lookup, action and relationship goes through `owner_filter`, so another
user's key or account is a 404, identical to a missing one.
"""
from app.api.helpers.auth import Actor
from app.api.helpers.errors import not_found
from app.extensions import db
from app.models import ApiKey, User


def owner_filter(query, owner_column, actor: Actor):
    """Return `query` narrowed to rows owned by the actor, unless the actor is an admin."""
    if actor.is_admin:
        return query
    return query.filter(owner_column == actor.user_id)


def get_owned_key(key_id: int, actor: Actor) -> ApiKey:
    """Return the key if the actor may touch it; raise 404 otherwise."""
    key = owner_filter(db.session.query(ApiKey), ApiKey.user_id, actor).filter(ApiKey.id == key_id).first()
    if key is None:
        raise not_found("API key")
    return key


def get_visible_user(user_id: int, actor: Actor) -> User:
    """Return the user if it is the actor or the actor is an admin; raise 404 otherwise."""
    user = owner_filter(db.session.query(User), User.id, actor).filter(User.id == user_id).first()
    if user is None:
        raise not_found("User")
    return user
