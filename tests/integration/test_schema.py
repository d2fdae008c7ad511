"""Each database's schema is declared once, in its component's tables.py, and its migrations
create exactly that. A scratch database migrated to head as the services migrate theirs
(tests/clients/database.py) is compared with the metadata twice over:

- by alembic's autogenerate, which must find nothing to write: tables, columns, types,
  nullability, server defaults, identities, primary, unique and foreign keys, index names,
  columns and expressions;
- by PostgreSQL's catalogs against a database made from the metadata alone (create_all), for
  what alembic does not compare: CHECK constraints, an index's predicate (whether it is partial)
  and its operator class, and a SERIAL's default, which alembic sets aside. Columns and indexes
  are compared there whole; the server prints both sides, so no SQL is normalized here.

The outbox's NOTIFY trigger is in neither comparison: it is the migration's alone
(shared/tables.py). No stack is started, so each test runs once, whatever the mode.
"""

import contextlib
import textwrap
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from alembic.operations.ops import UpgradeOps

from dashboard import tables as dashboard_tables
from services.inventory import tables as inventory_tables
from services.order import tables as order_tables
from services.payment import tables as payment_tables
from tests.clients.database import ADMIN_URL, scratch_database

METADATA = {
    "order": order_tables.metadata,
    "payment": payment_tables.metadata,
    "inventory": inventory_tables.metadata,
    "dashboard": dashboard_tables.metadata,
}

# Each row is (table, name, definition as PostgreSQL prints it).
CHECKS = """
    SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE contype = 'c' AND connamespace = 'public'::regnamespace
"""
INDEXES = """
    SELECT tablename, indexname, indexdef FROM pg_indexes
    WHERE schemaname = 'public' AND tablename <> 'alembic_version'
"""
COLUMNS = """
    SELECT attrelid::regclass::text, attname, concat_ws(' ',
        format_type(atttypid, atttypmod),
        CASE WHEN attnotnull THEN 'NOT NULL' END,
        'DEFAULT ' || pg_get_expr(adbin, adrelid),
        CASE attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END || ' AS IDENTITY')
    FROM pg_attribute
    JOIN pg_class ON pg_class.oid = attrelid
    LEFT JOIN pg_attrdef ON (adrelid, adnum) = (attrelid, attnum)
    WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace
      AND relname <> 'alembic_version' AND attnum > 0 AND NOT attisdropped
"""
CATALOGS = {"CHECK constraints": CHECKS, "indexes": INDEXES, "columns": COLUMNS}


@dataclass(frozen=True)
class Schema:
    component: str
    metadata: sa.MetaData
    migrated: sa.Engine  # a scratch database migrated to head
    declared: sa.Engine  # a scratch database given the metadata's tables by create_all


@pytest.fixture(scope="module", params=list(METADATA))
async def schema(request: pytest.FixtureRequest) -> AsyncIterator[Schema]:
    component: str = request.param
    metadata = METADATA[component]
    async with scratch_database(component, pool_size=1) as database:
        migrated = sa.create_engine(database.url, poolclass=sa.NullPool)
        with declared_database(metadata) as declared:
            yield Schema(component, metadata, migrated, declared)


@contextlib.contextmanager
def declared_database(metadata: sa.MetaData) -> Iterator[sa.Engine]:
    """An empty database of the test's own, given the metadata's tables: what the metadata alone
    would create. Dropped after the block."""
    name = f"sagatest_scratch_declared_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", poolclass=sa.NullPool
    )
    try:
        metadata.create_all(engine)
        yield engine
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_autogenerate_finds_nothing_to_migrate(schema: Schema) -> None:
    with schema.migrated.connect() as connection, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        # compare_metadata is `produce_migrations(...).upgrade_ops.as_diffs()`: the same
        # differences, and the migration autogenerate would write for them, to show.
        upgrade = produce_migrations(context, schema.metadata).upgrade_ops
        assert upgrade is not None
        differences = upgrade.as_diffs()
    assert not differences, (
        f"the {schema.component} database as its migrations create it differs from its "
        "metadata; autogenerate would write, to make the database match the metadata:\n"
        + migration(upgrade)
    )
    # Alembic warns of what it could not compare (an index expression with an operator
    # class, a computed default), SQLAlchemy of what it could not reflect: none is expected.
    assert not caught, "warned while comparing:\n" + "\n".join(str(w.message) for w in caught)


def test_the_catalogs_equal_a_database_made_from_the_metadata(schema: Schema) -> None:
    differences = []
    for kind, query in CATALOGS.items():
        migrated, declared = catalog(schema.migrated, query), catalog(schema.declared, query)
        if migrated != declared:
            differences.append(f"{kind}:\n" + difference(migrated, declared))
    assert not differences, (
        f"the {schema.component} database as its migrations create it differs from one made "
        "from its metadata, in\n" + "\n".join(differences)
    )


def migration(upgrade: UpgradeOps) -> str:
    """The operations as autogenerate would write them in a migration, without its banner."""
    lines = render_python_code(upgrade).splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("# ###"))
    return textwrap.indent(textwrap.dedent(code), "  ")


def catalog(engine: sa.Engine, query: str) -> set[tuple[str, str, str]]:
    with engine.connect() as connection:
        return {(table, name, text) for table, name, text in connection.execute(sa.text(query))}


def difference(migrated: set[tuple[str, str, str]], declared: set[tuple[str, str, str]]) -> str:
    """The rows on one side only, by table and name, so a changed definition shows as a pair."""
    rows = [("migrations", row) for row in migrated - declared]
    rows += [("metadata", row) for row in declared - migrated]
    return "\n".join(
        f"  {table}.{name}, {side} only: {text}"
        for side, (table, name, text) in sorted(rows, key=lambda pair: (pair[1][:2], pair[0]))
    )
