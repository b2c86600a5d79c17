"""Operator commands: `users create-admin`, `keys create|list|revoke|rotate`,
`tokens rotate-signing-key` and `llm providers|models`.

Secrets are printed once, to standard output, never logged. Every change leaves an audit event
with no actor (the operator's shell).
"""
import os
from contextlib import contextmanager
from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from app.api.helpers.audit import audit
from app.extensions import db
from app.models import ApiKey, SigningKey, User
from app.models.types import utcnow
from app.services import key_rules, lifecycle, signing
from app.services.passwords import hash_password

users_cli = AppGroup("users", help="Manage accounts.")


@users_cli.command("create-admin")
@click.option("--email", required=True)
def create_admin(email):
    """Create an admin, or make an existing account admin.

    The password comes from LATCHKEY_ADMIN_PASSWORD or a hidden prompt, never from an argument.
    """
    email = email.strip().lower()
    user = db.session.scalar(db.select(User).where(User.email == email))
    if user is not None:
        user.is_admin = True
        audit("user.promote", "user", user.id, user.id, ["is-admin"])
        db.session.commit()
        click.echo(f"User {user.id} ({email}) is now an admin.")
        return
    password = os.environ.get("LATCHKEY_ADMIN_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    if len(password) < current_app.config["PASSWORD_MIN_LENGTH"]:
        raise click.ClickException(
            f"The password must be at least {current_app.config['PASSWORD_MIN_LENGTH']} characters.")
    user = User(email=email, password_hash=hash_password(password), is_admin=True)
    db.session.add(user)
    db.session.flush()
    audit("user.create", "user", user.id, user.id)
    db.session.commit()
    click.echo(f"Admin {user.id} ({email}) created.")


keys_cli = AppGroup("keys", help="Manage API keys.")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(text: str) -> timedelta:
    if len(text) < 2 or text[-1] not in DURATION_UNITS or not text[:-1].isdigit():
        raise click.BadParameter("use a number and a unit: 90s, 15m, 12h, 30d")
    return timedelta(seconds=int(text[:-1]) * DURATION_UNITS[text[-1]])


@contextmanager
def _option(hint: str):
    """Report a shared key rule's ValueError (app/services/key_rules.py) as a bad `hint` option."""
    try:
        yield
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=hint) from None


def _user_by_email(email: str) -> User:
    user = db.session.scalar(db.select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"No user with email {email}.")
    return user


def _key(key_id: int) -> ApiKey:
    key = db.session.get(ApiKey, key_id)
    if key is None:
        raise click.ClickException(f"No API key {key_id}.")
    return key


@keys_cli.command("create")
@click.option("--user", "email", required=True, help="Owner's email.")
@click.option("--name", required=True)
@click.option("--scope", "scopes", multiple=True, help="Repeat for several scopes.")
@click.option("--expires-in", help="Lifetime, e.g. 30d or 12h.")
def create_key(email, name, scopes, expires_in):
    """Create a key and print its secret, once."""
    user = _user_by_email(email)
    now = utcnow()
    with _option("--name"):
        key_rules.key_name(name)
    with _option("--scope"):
        key_rules.key_scopes(list(scopes))
    with _option("--expires-in"):
        expires_at = key_rules.key_expiry(now + _parse_duration(expires_in) if expires_in else None,
                                          now, current_app.config["API_KEY_MAX_LIFETIME_DAYS"])
    try:
        lifecycle.reserve_key_slot(user.id, current_app.config["API_KEY_MAX_PER_USER"])
    except lifecycle.KeyLimitError as error:
        raise click.ClickException(str(error)) from None
    fields = lifecycle.new_secret_fields(current_app.config["API_KEY_PREFIX"])
    key = ApiKey(user_id=user.id, name=name, scopes=list(scopes), expires_at=expires_at, **fields)
    db.session.add(key)
    db.session.flush()
    audit("key.create", "key", key.id, user.id)
    db.session.commit()
    click.echo(f"Created key {key.id} ({key.start}...) for {user.email}. Its secret, shown only now:")
    click.echo(key.plaintext_secret)


@keys_cli.command("list")
@click.option("--user", "email", help="Only this owner's keys.")
def list_keys(email):
    """List keys: id, owner, name, start, status, scopes. Never a secret or a digest."""
    query = db.select(ApiKey, User.email).join(User).order_by(ApiKey.id)
    if email:
        query = query.where(ApiKey.user_id == _user_by_email(email).id)
    for key, owner in db.session.execute(query):
        click.echo(f"{key.id}\t{owner}\t{key.name}\t{key.start}...{key.last4}\t"
                   f"{key.effective_status()}\t{' '.join(key.scopes)}")


@keys_cli.command("revoke")
@click.argument("key_id", type=int)
def revoke_key(key_id):
    """Revoke a key for good."""
    key = _key(key_id)
    try:
        lifecycle.revoke(key)
    except lifecycle.KeyStateError as error:
        raise click.ClickException(str(error)) from None
    audit("key.revoke", "key", key.id, key.user_id, ["status", "revoked-at"])
    db.session.commit()
    click.echo(f"Key {key_id} revoked.")


@keys_cli.command("rotate")
@click.argument("key_id", type=int)
@click.option("--grace", default=0, type=int, help="Seconds the old secret stays valid.")
def rotate_key(key_id, grace):
    """Give a key a new secret and print it, once."""
    key = _key(key_id)
    with _option("--grace"):
        key_rules.grace_seconds(grace, current_app.config["API_KEY_MAX_GRACE_SECONDS"])
    try:
        secret = lifecycle.rotate(key, grace, current_app.config["API_KEY_PREFIX"])
    except lifecycle.KeyStateError as error:
        raise click.ClickException(str(error)) from None
    audit("key.rotate", "key", key.id, key.user_id, ["secret"])
    db.session.commit()
    click.echo(f"Key {key_id} rotated. Its new secret, shown only now:")
    click.echo(secret)


tokens_cli = AppGroup("tokens", help="Manage the signing keys of verification tokens.")


@tokens_cli.command("rotate-signing-key")
def rotate_signing_key():
    """Make a new signing key sign verification tokens; older keys stay in the JWKS until every
    token they signed has expired, and are then deleted (app/services/signing.py)."""
    signer = signing.signer()
    current = signer.make_key(db.session.connection())
    audit("signing-key.rotate")
    db.session.commit()
    click.echo(f"Signing key {current.kid} now signs verification tokens (every worker within "
               f"{signing.REFRESH_SECONDS:g} seconds).")
    signer.published()  # deletes the keys whose tokens have all expired
    retired = db.session.execute(db.select(SigningKey.kid, SigningKey.retired_at)
                                 .where(SigningKey.retired_at.is_not(None)).order_by(SigningKey.id)).all()
    for kid, retired_at in retired:
        click.echo(f"Key {kid} stays in /.well-known/jwks.json until {signer.listed_until(retired_at).isoformat()}.")


llm_cli = AppGroup("llm", help="The LLM gateway's providers and models (LLM_PROVIDERS_FILE).")


@llm_cli.command("providers")
def llm_providers():
    """Each provider, its base URL, whether its credential is set (never shown) and whether it
    answers `GET <base URL>/models` with that credential. Exits 1 when one does not."""
    from app.gateway import catalog, proxy

    providers = catalog().providers
    if not providers:
        click.echo("No providers (LLM_PROVIDERS_FILE is not set).")
        return
    failed = False
    for provider in providers:
        api_key = provider.api_key()
        try:
            status = proxy.send(provider, "GET", "models").status
            reachable = "reachable" if status == 200 else f"answers {status}"
        except Exception as error:  # any failure to reach it is the answer here
            status, reachable = None, f"unreachable ({type(error).__name__})"
        failed |= status != 200
        credential = f"${provider.api_key_env} set" if api_key else f"${provider.api_key_env} NOT SET"
        click.echo(f"{provider.name}\t{provider.base_url}\t{credential}\t{reachable}")
    if failed:
        raise SystemExit(1)


@llm_cli.command("models")
def llm_models():
    """Each model: its id, the scope it needs, its upstream name, prices and default max_tokens, and
    its aliases."""
    from app.gateway import catalog

    aliases: dict = {}
    for name, model in catalog().models.items():
        if name != model.id:
            aliases.setdefault(model.id, []).append(name)
    for model in catalog().listed():
        also = f"\taliases: {', '.join(sorted(aliases[model.id]))}" if model.id in aliases else ""
        click.echo(f"{model.id}\tscope {model.scope}\tupstream {model.upstream}\tper 1k tokens: "
                   f"{model.input_price} in, {model.output_price} out\tmax_tokens {model.max_tokens}{also}")


def init_app(app):
    app.cli.add_command(users_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(llm_cli)
