"""Alembic plumbing shared by the three services' migrations, and the messaging tables."""

from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy.dialects.postgresql import JSONB

from shared.outbox import NOTIFY_CHANNEL

ROOT = Path(__file__).resolve().parent.parent


def upgrade(component: str, database_url: str) -> None:
    """Migrate one component's database to head (`python -m services.<name> migrate`, `python
    -m dashboard migrate`): a service's migrations are in services/<name>/, others' in
    <name>/."""
    service_dir = ROOT / "services" / component / "migrations"
    migrations = service_dir if service_dir.exists() else ROOT / component / "migrations"
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "head")


def run_env(target_metadata: sa.MetaData) -> None:
    """The body of every component's migrations/env.py: online migrations, each in a
    transaction of its own. `target_metadata` is the component's schema at head (its
    tables.py), which autogenerate compares the database against."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "upgrade() sets sqlalchemy.url"
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            transaction_per_migration=True,
            compare_type=True,
            compare_server_default=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def create_messaging_tables() -> None:
    """The outbox and inbox every service database has (shared/outbox.py, shared/inbox.py)."""
    op.create_table(
        "outbox",
        # Identity order is the relay's publishing order and its claim key.
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        # The event's message_id, unique so an event is never written twice.
        sa.Column("message_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("routing_key", sa.Text, nullable=False),
        # The whole envelope as JSON, queryable with ->> when debugging.
        sa.Column("body", JSONB, nullable=False),
        sa.Column(
            "created_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        # NULL until the broker confirmed the publish; then the row is history, pruned by age.
        sa.Column("published_at", sa.TIMESTAMP(timezone=True)),
    )
    # Partial index: the relay's claim reads only pending rows, so it stays an index scan
    # however many published rows accumulate.
    op.create_index(
        "outbox_pending", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )
    # Pruning published rows by age (shared/housekeeping.py).
    op.create_index(
        "outbox_published_at",
        "outbox",
        ["published_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    # A statement-level trigger: one NOTIFY per insert statement, delivered at commit, so the
    # relay wakes the moment an event becomes visible instead of at its next poll.
    op.execute(
        f"""
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )

    op.create_table(
        "inbox",
        # The primary key is the deduplication: a second insert of one id conflicts.
        sa.Column("message_id", sa.Uuid, primary_key=True),
        sa.Column("message_type", sa.Text, nullable=False),
        sa.Column(
            "received_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    # Pruning old inbox rows scans by age.
    op.create_index("inbox_received_at", "inbox", ["received_at"])


def add_trace_context(table: str = "outbox") -> None:
    """The W3C trace context of the work that wrote a row (shared/tracing.py): on the outbox,
    for the relay to publish; on the order, for the commands that act on its saga later. NULL
    for rows written before it existed, which are published without one."""
    op.add_column(table, sa.Column("trace_context", JSONB))


def create_cancellations_table() -> None:
    """Orders whose OrderCancelled was seen (shared/cancellations.py): a late OrderCreated or
    PaymentSucceeded for one is never acted on. Kept for good, like the inbox's purpose."""
    op.create_table(
        "cancelled_orders",
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
