-- Index-backed look-ups for FerretDB v1.24 on a private PostgreSQL cluster (the test harness and
-- scripts/run-local.sh apply this file to the `ferretdb` database on every start; it is idempotent).
--
-- FerretDB pushes an equality filter down as `_jsonb->$1 @> $2` (e.g. $1 = '_id', $2 = '"o5"'). Its
-- own index on `_id` is a btree on (_jsonb->'_id'), which cannot serve `@>`, so every find, update and
-- delete by _id scans the whole collection. A GIN index with jsonb_path_ops on the same expression
-- serves it, provided PostgreSQL plans with the parameter values: pgx caches prepared statements, and
-- a generic plan of `_jsonb->$1` cannot match an expression index. The cluster therefore runs with
-- plan_cache_mode=force_custom_plan (set on the postgres command line, next to max_connections).
--
-- An event trigger (needs a superuser: the cluster's `postgres` user) gives every table FerretDB
-- creates for a collection, in any schema (one schema per MongoDB database), a GIN index on `_id`, one
-- on `status` (the orders' full sweep, the monitor and tests filter on it), one on `order_id` (the
-- executions) and one on `sweep_bucket` (the sweeper's look-up of the orders due in a bucket).
-- FerretDB's own metadata tables (`_ferretdb_*`) are left alone. The trigger fires only on CREATE
-- TABLE, so the CREATE INDEX it runs cannot fire it again. FerretDB does not know these indexes
-- (listIndexes does not show them); DROP of the collection drops them with the table.

SET client_min_messages = warning; -- no "already exists, skipping" notices on every start

CREATE OR REPLACE FUNCTION public.orders_ferretdb_add_gin_indexes(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  table_schema text;
  table_name text;
  field text;
  index_name text;
BEGIN
  SELECT n.nspname, c.relname INTO table_schema, table_name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = tbl AND c.relkind = 'r';
  IF table_name IS NULL OR table_name LIKE '\_ferretdb\_%' THEN
    RETURN;
  END IF;
  -- A FerretDB collection: a jsonb column _jsonb, in a schema holding FerretDB's metadata table.
  IF NOT EXISTS (
    SELECT 1 FROM pg_attribute
    WHERE attrelid = tbl AND attname = '_jsonb' AND atttypid = 'jsonb'::regtype AND NOT attisdropped
  ) OR to_regclass(format('%I._ferretdb_database_metadata', table_schema)) IS NULL THEN
    RETURN;
  END IF;
  FOREACH field IN ARRAY ARRAY['_id', 'status', 'order_id', 'sweep_bucket'] LOOP
    -- <table, at most 40 characters>_<hash of the table name>_<field>_gin: unique per table, within
    -- PostgreSQL's 63 characters, and unlike FerretDB's own index names (which end in _idx).
    index_name := left(table_name, 40) || '_' || left(md5(table_name), 8) || '_' || ltrim(field, '_') || '_gin';
    -- fastupdate off: with it on (PostgreSQL's default) new entries wait in the index's pending list,
    -- which every look-up reads through; under a steady insert load that list holds thousands of
    -- entries and made a look-up by _id cost 0.7-0.9 ms of PostgreSQL time instead of 0.03 ms
    -- (pg_stat_statements, 10,000 orders). The ALTER turns it off on indexes made before this file did.
    -- sweep_bucket: only documents that have one (waiting orders; a final write removes it), so that
    -- the update that finishes an order adds no entry here. PostgreSQL still picks the index for
    -- `_jsonb->'sweep_bucket' @> v`: the operator is strict, so it implies IS NOT NULL.
    EXECUTE format(
      'CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin ((_jsonb->%L) jsonb_path_ops) WITH (fastupdate = off)%s',
      index_name, table_schema, table_name, field,
      CASE WHEN field = 'sweep_bucket' THEN format(' WHERE (_jsonb->%L) IS NOT NULL', field) ELSE '' END
    );
    EXECUTE format('ALTER INDEX %I.%I SET (fastupdate = off)', table_schema, index_name);
  END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION public.orders_ferretdb_on_create_table() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  command record;
BEGIN
  -- Only the table a CREATE TABLE made (not, say, the index of a capped collection's primary key).
  FOR command IN
    SELECT objid FROM pg_event_trigger_ddl_commands()
    WHERE command_tag = 'CREATE TABLE' AND object_type = 'table'
  LOOP
    PERFORM public.orders_ferretdb_add_gin_indexes(command.objid::regclass);
  END LOOP;
END
$fn$;

DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'orders_ferretdb_gin_indexes') THEN
    CREATE EVENT TRIGGER orders_ferretdb_gin_indexes ON ddl_command_end
      WHEN TAG IN ('CREATE TABLE')
      EXECUTE FUNCTION public.orders_ferretdb_on_create_table();
  END IF;
  -- Collections created before the trigger existed (an older cluster in .local/): index them now.
  PERFORM public.orders_ferretdb_add_gin_indexes(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema';
END
$do$;
