#!/usr/bin/env bash
# Runs once, when the postgres image initialises an empty data directory
# (/docker-entrypoint-initdb.d): creates the service's login role and its database, owned by that
# role, and shuts the role out of every other database.
#
#   SERVICE_DB_USER      the role, e.g. order
#   SERVICE_DB_PASSWORD  its password
#   SERVICE_DB_NAME      its database, e.g. saga_order
#
# The image executes this file, or sources it when it is not executable, so it sets no shell
# options beyond the ones the image's entry point already has.
set -eo pipefail

service_db_user=${SERVICE_DB_USER:?SERVICE_DB_USER must be set}
service_db_password=${SERVICE_DB_PASSWORD:?SERVICE_DB_PASSWORD must be set}
service_db_name=${SERVICE_DB_NAME:?SERVICE_DB_NAME must be set}

# psql quotes the values itself (:"identifier", :'literal'): "order" is a reserved word, and a
# password may hold any character.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v role="$service_db_user" \
    -v password="$service_db_password" \
    -v database="$service_db_name" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
-- The owner has every privilege on its database, including CONNECT; as the owner of its schema
-- `public` (pg_database_owner, PostgreSQL 15) it can also create the tables its migrations make.
CREATE DATABASE :"database" OWNER :"role";
-- PUBLIC may connect to a new database by default: take that away everywhere, so the role
-- reaches only its own database and nobody else's role (if one is ever added) reaches that one.
REVOKE CONNECT, TEMPORARY ON DATABASE :"database" FROM PUBLIC;
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
SQL
