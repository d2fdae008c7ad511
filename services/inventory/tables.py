import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import TIMESTAMPTZ

metadata = sa.MetaData()

products = sa.Table(
    "products",
    metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

restocks = sa.Table(
    "restocks",
    metadata,
    sa.Column("restock_id", sa.Uuid, primary_key=True),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("reservation_id", sa.Uuid, primary_key=True),
    sa.Column("order_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("items", JSONB, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

releases = sa.Table(
    "releases",
    metadata,
    sa.Column("release_id", sa.Uuid, primary_key=True),
    sa.Column("reservation_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("order_id", sa.Uuid, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)
