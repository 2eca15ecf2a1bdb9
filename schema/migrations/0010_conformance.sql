-- Conformance with pg_durable 0.2.6 (issue 17): behaviour that differed from
-- the reference's, found by running its end-to-end suite against ours.
--
--   * pg_durable.enable_superuser_instances is read from the configuration
--     files (pg_settings does not list a placeholder setting that no loaded
--     module defines, so the old check could never be true).
--   * df.start validates the config of IF/LOOP/JOIN nodes as the reference
--     does (`query in IF must be valid JSON config: …`).
--   * df.signal delivers at once, outside the sender's transaction, as the
--     reference's engine client does; pending and consumed signals are
--     bounded.
--   * Parameter names and STRICT match the reference's declarations.
--   * The worker heartbeat into df._worker_epoch.

-- ---------------------------------------------------------------------------
-- Superuser instances: the server-level value of the setting
-- ---------------------------------------------------------------------------

-- A boolean setting's text read as PostgreSQL reads booleans (on, true,
-- yes, 1 and their prefixes); NULL, empty or anything else is false.
CREATE FUNCTION pgdurable.setting_is_on(value text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN coalesce(trim(value)::boolean, false);
EXCEPTION WHEN invalid_text_representation THEN
    RETURN false;
END;
$$;

-- True only when an administrator switched the setting on at server level:
-- postgresql.conf, a file it includes, or ALTER SYSTEM (postgresql.auto.conf),
-- read through pg_file_settings, and the configuration is loaded (the
-- session's value is on too, so a file edited but not yet reloaded does not
-- count, nor does a session that turned it off). A SET, PGOPTIONS or
-- ALTER ROLE/DATABASE … SET changes only the session's value, never the
-- files, so none of them can enable it; a SECURITY DEFINER function owned by
-- a superuser cannot be tricked into starting superuser instances either.
-- When a loaded module defines the setting (pg_settings lists it), its
-- server-level value rules, as before.
--
-- SECURITY DEFINER: pg_file_settings is readable by superusers only, and the
-- worker may connect as a role with BYPASSRLS instead. Installed by a
-- non-superuser, the files cannot be read and the answer is false.
CREATE OR REPLACE FUNCTION pgdurable.superuser_instances_enabled() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    from_module boolean;
    in_files text;
BEGIN
    SELECT lower(s.reset_val) IN ('on', 'true', 'yes', '1')
           AND s.source IN ('configuration file', 'command line', 'environment variable')
    INTO from_module
    FROM pg_catalog.pg_settings s
    WHERE s.name = 'pg_durable.enable_superuser_instances';
    IF FOUND THEN
        RETURN from_module;
    END IF;
    -- The effective line (the last one the server applies) of all the files.
    SELECT f.setting INTO in_files
    FROM pg_catalog.pg_file_settings f
    WHERE f.name = 'pg_durable.enable_superuser_instances' AND f.applied AND f.error IS NULL
    ORDER BY f.seqno DESC LIMIT 1;
    RETURN pgdurable.setting_is_on(in_files)
           AND pgdurable.setting_is_on(current_setting('pg_durable.enable_superuser_instances', true));
EXCEPTION WHEN insufficient_privilege THEN
    RETURN false;
END;
$$;

-- ---------------------------------------------------------------------------
-- df.start: the reference's config rules for IF, LOOP and JOIN
-- ---------------------------------------------------------------------------

-- 0007's flattening with the rules of the reference's materialized_query:
-- a condition_node only on IF/LOOP, extra_nodes only on JOIN, and where
-- either is present the query (when given) must be a JSON object.
CREATE OR REPLACE FUNCTION pgdurable.flatten_graph(graph jsonb, root_id text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    root_type text := graph ->> 'node_type';
    node_count bigint;
    walked jsonb;
    problem record;
BEGIN
    -- Count before walking so a huge graph is refused cheaply.
    SELECT count(*) INTO node_count
    FROM jsonb_path_query(graph, 'strict $.** ? (@.type() == "object" && exists(@.node_type))');
    IF node_count > 10000 THEN
        RAISE EXCEPTION 'Invalid durable function graph: root: graph has % nodes, more than the maximum of 10000 nodes', node_count;
    END IF;

    FOR attempt IN 1..10 LOOP
        WITH RECURSIVE walk(node, id, parent_id, slot, path, ord, depth) AS (
            -- COLLATE: a caller's argument of collation "C" (df.start(…,
            -- database => current_database()) passes a name) would otherwise
            -- give the id columns a collation the recursive term does not have.
            SELECT graph, root_id COLLATE "default", NULL::text, NULL::text, 'root'::text,
                   ARRAY[]::int[], 1
            UNION ALL
            SELECT c.child, pgdurable.new_id(), w.id, c.slot, w.path || '.' || c.label,
                   w.ord || c.position, w.depth + 1
            FROM walk w
            CROSS JOIN LATERAL (
                SELECT w.node -> 'left_node', 'left', 'left_node', 1
                UNION ALL SELECT w.node -> 'right_node', 'right', 'right_node', 2
                UNION ALL SELECT w.node -> 'condition_node', 'condition', 'condition_node', 3
                UNION ALL
                SELECT e.value, 'extra', 'extra_nodes[' || (e.ordinality - 1) || ']',
                       3 + e.ordinality::int
                FROM jsonb_array_elements(
                         CASE WHEN jsonb_typeof(w.node -> 'extra_nodes') = 'array'
                              THEN w.node -> 'extra_nodes' ELSE '[]'::jsonb END)
                     WITH ORDINALITY e
            ) AS c(child, slot, label, position)
            -- Descend only into objects within the depth limit; the others'
            -- problems are reported below.
            WHERE jsonb_typeof(w.node) = 'object' AND w.depth <= 256
              AND c.child IS NOT NULL AND jsonb_typeof(c.child) <> 'null'
        )
        SELECT jsonb_agg(to_jsonb(walk) ORDER BY walk.ord) INTO walked FROM walk;
        -- Random 8-hex ids can collide within a big graph: draw again.
        EXIT WHEN (SELECT count(DISTINCT x) = count(*)
                   FROM jsonb_array_elements(walked) e, LATERAL (SELECT e.value ->> 'id') AS i(x));
        IF attempt = 10 THEN
            RAISE EXCEPTION 'Invalid durable function graph: root: could not allocate unique node ids';
        END IF;
    END LOOP;

    -- Shape errors first: the reference fails these while deserializing.
    SELECT f.path, f.slot, jsonb_typeof(f.node) <> 'object' AS not_object INTO problem
    FROM jsonb_to_recordset(walked) AS f(node jsonb, slot text, path text, ord int[])
    WHERE jsonb_typeof(f.node) <> 'object'
       OR jsonb_typeof(f.node -> 'node_type') IS DISTINCT FROM 'string'
       OR jsonb_typeof(f.node -> 'extra_nodes') NOT IN ('array', 'null')
       OR jsonb_typeof(f.node -> 'query') NOT IN ('string', 'null')
       OR jsonb_typeof(f.node -> 'result_name') NOT IN ('string', 'null')
    ORDER BY f.ord LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'Invalid durable function: Malformed Durofut JSON with node_type ''%'': %', root_type,
            CASE WHEN problem.not_object AND problem.slot = 'extra'
                     THEN 'extra_nodes entries must be Durofut JSON objects'
                 WHEN problem.not_object THEN problem.slot || '_node must be a Durofut JSON object'
                 ELSE format('node at %s needs a string node_type, string query and string '
                             'result_name, and extra_nodes must be an array', problem.path) END;
    END IF;

    -- Then the graph rules, reported with the path of the first offending node.
    WITH f AS MATERIALIZED (
        SELECT * FROM jsonb_to_recordset(walked)
            AS f(node jsonb, id text, parent_id text, slot text, path text, ord int[], depth int)
    ),
    children AS (
        SELECT p.id,
               max(c.id) FILTER (WHERE c.slot = 'left') AS left_id,
               max(c.id) FILTER (WHERE c.slot = 'right') AS right_id,
               max(c.id) FILTER (WHERE c.slot = 'condition') AS cond_id,
               jsonb_agg(c.id ORDER BY c.ord) FILTER (WHERE c.slot = 'extra') AS extra_ids
        FROM f p LEFT JOIN f c ON c.parent_id = p.id
        GROUP BY p.id
    ),
    checked AS (
        SELECT f.*, ch.left_id, ch.right_id, ch.cond_id, ch.extra_ids,
               f.node ->> 'node_type' AS node_type,
               f.node ->> 'query' AS query,
               CASE
                   WHEN f.depth > 256 THEN 'exceeds the maximum nesting depth of 256'
                   WHEN NOT (f.node ->> 'node_type') = ANY (pgdurable.dsl_valid_node_types()) THEN
                       format('Unknown node_type ''%s''. Valid types: %s', f.node ->> 'node_type',
                              array_to_string(pgdurable.dsl_reference_node_types(), ', '))
                   WHEN f.node ->> 'result_name' !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
                       format('''%s'' is not a valid identifier (use letters, digits and '
                              'underscores, not starting with a digit)', f.node ->> 'result_name')
                   WHEN f.node ->> 'node_type' IN ('THEN', 'JOIN', 'RACE', 'IF')
                        AND (ch.left_id IS NULL OR ch.right_id IS NULL) THEN
                       format('%s node requires both left_node and right_node', f.node ->> 'node_type')
                   WHEN f.node ->> 'node_type' = 'LOOP' AND ch.left_id IS NULL THEN
                       'LOOP node requires a body (left_node)'
                   WHEN f.node ->> 'node_type' = 'LOOP' AND ch.right_id IS NOT NULL THEN
                       'LOOP node must not have a right_node'
                   -- pgdurable's extension nodes (SPEC A.4)
                   WHEN f.node ->> 'node_type' IN ('RETRY', 'TIMEOUT', 'TRY')
                        AND (ch.cond_id IS NOT NULL OR ch.extra_ids IS NOT NULL) THEN
                       format('%s node must not have a condition_node or extra_nodes', f.node ->> 'node_type')
                   WHEN f.node ->> 'node_type' IN ('RETRY', 'TIMEOUT') AND ch.left_id IS NULL THEN
                       format('%s node requires a child step (left_node)', f.node ->> 'node_type')
                   WHEN f.node ->> 'node_type' IN ('RETRY', 'TIMEOUT') AND ch.right_id IS NOT NULL THEN
                       format('%s node must not have a right_node', f.node ->> 'node_type')
                   WHEN f.node ->> 'node_type' = 'TRY' AND (ch.left_id IS NULL OR ch.right_id IS NULL) THEN
                       'TRY node requires both left_node (the step) and right_node (run on failure)'
                   WHEN f.node ->> 'node_type' IN ('RETRY', 'TIMEOUT')
                        AND pgdurable.extension_config_error(f.node ->> 'node_type', f.node ->> 'query') IS NOT NULL THEN
                       format('query in %s must be its JSON config: %s', f.node ->> 'node_type',
                              pgdurable.extension_config_error(f.node ->> 'node_type', f.node ->> 'query'))
                   -- The reference's config rules (0010): a condition node only
                   -- on IF and LOOP, extra nodes only on JOIN, and where either
                   -- is present the query must be a JSON object, into which
                   -- their ids are merged.
                   WHEN ch.cond_id IS NOT NULL AND f.node ->> 'node_type' NOT IN ('IF', 'LOOP') THEN
                       format('condition_node is not valid for %s nodes', f.node ->> 'node_type')
                   WHEN ch.extra_ids IS NOT NULL AND f.node ->> 'node_type' <> 'JOIN' THEN
                       format('extra_nodes is not valid for %s nodes', f.node ->> 'node_type')
                   WHEN (ch.cond_id IS NOT NULL OR ch.extra_ids IS NOT NULL)
                        AND pgdurable.json_error(f.node ->> 'query') IS NOT NULL THEN
                       format('query in %s must be valid JSON config: %s', f.node ->> 'node_type',
                              pgdurable.json_error(f.node ->> 'query'))
                   WHEN (ch.cond_id IS NOT NULL OR ch.extra_ids IS NOT NULL)
                        AND f.node ->> 'query' IS NOT NULL
                        AND pgdurable.json_object_or_null(f.node ->> 'query') IS NULL THEN
                       format('query in %s must be a JSON config object', f.node ->> 'node_type')
                   WHEN f.node ->> 'node_type' NOT IN ('THEN', 'JOIN', 'RACE', 'IF', 'LOOP', 'RETRY', 'TIMEOUT', 'TRY')
                        AND (ch.left_id IS NOT NULL OR ch.right_id IS NOT NULL OR ch.cond_id IS NOT NULL) THEN
                       format('%s node must not have child nodes', f.node ->> 'node_type')
                   WHEN f.node ->> 'node_type' NOT IN ('THEN', 'JOIN', 'RACE', 'IF', 'LOOP', 'TRY')
                        AND f.node ->> 'query' IS NULL THEN
                       format('%s node requires a query', f.node ->> 'node_type')
                   WHEN f.node ->> 'node_type' = 'IF'
                        AND pgdurable.json_object_or_null(f.node ->> 'query') ? 'condition_node' THEN
                       'condition_node in IF must be a first-class Durofut field, not embedded in query'
                   WHEN f.node ->> 'node_type' = 'IF' AND ch.cond_id IS NULL AND f.node ->> 'query' IS NULL THEN
                       'IF node requires a condition_node or a query config'
                   WHEN f.node ->> 'node_type' = 'IF' AND ch.cond_id IS NULL
                        AND pgdurable.json_error(f.node ->> 'query') IS NOT NULL THEN
                       'query in IF must be valid JSON config: ' || pgdurable.json_error(f.node ->> 'query')
               END AS message
        FROM f JOIN children ch USING (id)
    ),
    first_problem AS (
        SELECT path, message FROM checked WHERE message IS NOT NULL ORDER BY ord LIMIT 1
    )
    SELECT (SELECT path FROM first_problem) AS failure_path,
           (SELECT message FROM first_problem) AS failure_message,
           jsonb_agg(jsonb_build_object(
               'id', c.id,
               'node_type', c.node_type,
               -- Children are stored by id; IF, conditional LOOP and JOIN keep
               -- the extra links in query (B §1.4).
               'query', CASE
                   WHEN c.cond_id IS NOT NULL THEN
                       (coalesce(pgdurable.json_object_or_null(c.query), '{}'::jsonb)
                        || jsonb_build_object('condition_node', c.cond_id))::text
                   WHEN c.node_type = 'JOIN' AND c.extra_ids IS NOT NULL THEN
                       jsonb_build_object('extra_nodes', c.extra_ids)::text
                   WHEN c.node_type IN ('THEN', 'RACE', 'LOOP', 'JOIN', 'TRY') THEN NULL
                   ELSE c.query END,
               'result_name', c.node ->> 'result_name',
               'left_node', c.left_id,
               'right_node', c.right_id) ORDER BY c.ord) AS node_rows
    INTO problem
    FROM checked c;
    IF problem.failure_message IS NOT NULL THEN
        RAISE EXCEPTION 'Invalid durable function graph: %: %',
            problem.failure_path, problem.failure_message;
    END IF;
    RETURN problem.node_rows;
END;
$$;

-- ---------------------------------------------------------------------------
-- Signals: delivered at once, bounded
-- ---------------------------------------------------------------------------

-- pg_durable's df.signal hands the event to its engine through a connection
-- of its own, so the signal is delivered at once and survives a rollback of
-- the sender: a DO block that signals an instance and then waits for it with
-- df.await_instance works. We do the same with a loopback session (dblink,
-- logged in as the same role, like df.start's 'new' mode), kept open for the
-- rest of the sender's session as the reference keeps its client. The signal
-- is written in the sender's own transaction instead (delivered when it
-- commits, discarded when it rolls back) when:
--   * it is sent from a workflow step, whose effects commit with its
--     completion record, exactly once (SPEC A.2.1);
--   * the instance is not committed yet (started in the same transaction);
--   * the loopback is unavailable: no dblink, no password-less login for
--     the role, or the instance row is locked by the sender itself.

-- At most this many signals wait per instance (never-consumed signals must
-- not grow without bound while the instance runs); a terminal instance
-- keeps none.
CREATE FUNCTION pgdurable.max_pending_signals() RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 10000
$$;

-- Store one signal for a visible instance, as the calling role. Returns
-- false when the instance is not visible to this session (e.g. not
-- committed yet, seen from the loopback). A terminal instance can never
-- consume it, so nothing is stored (the reference's engine drops it too).
CREATE FUNCTION pgdurable.enqueue_signal(p_instance text, p_name text, p_data jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current_status text;
BEGIN
    SELECT i.status INTO current_status FROM df.instances i WHERE i.id = p_instance;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF current_status IN ('completed', 'failed', 'cancelled') THEN
        RETURN true;
    END IF;
    IF (SELECT count(*) FROM pgdurable.signals s WHERE s.instance_id = p_instance)
       >= pgdurable.max_pending_signals() THEN
        RAISE EXCEPTION 'instance % already has % signals that no wait has consumed',
            p_instance, pgdurable.max_pending_signals()
            USING HINT = 'The workflow is not waiting for these signals (df.wait_for_signal consumes them one at a time); check the signal name.';
    END IF;
    INSERT INTO pgdurable.signals (instance_id, name, data) VALUES (p_instance, p_name, p_data);
    PERFORM pg_catalog.pg_notify('pgdurable_wake', 'signal:' || p_instance);
    RETURN true;
END;
$$;

-- A value quoted for a libpq connection string (quotes and backslashes
-- escaped with a backslash; quote_literal's doubled quotes mean something
-- else there).
CREATE FUNCTION pgdurable.conninfo_value(value text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT '''' || replace(replace(value, '\', '\\'), '''', '\''') || ''''
$$;

-- Deliver through the loopback session of role as_role; true when it did.
-- SECURITY DEFINER for the same reason as start_in_new_transaction (dblink
-- opens password-less connections only for superusers), with the same
-- guard: the session must be able to become as_role anyway.
CREATE FUNCTION pgdurable.enqueue_signal_now(p_instance text, p_name text, p_data jsonb,
                                             as_role text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dblink text;  -- schema prefix of the dblink functions
    connection_name text := 'pgdurable_signal_' || md5(as_role);
    reused boolean;
    delivered boolean;
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, as_role, 'MEMBER') THEN
        RETURN false;  -- e.g. inside another owner's SECURITY DEFINER function
    END IF;
    SELECT quote_ident(n.nspname) || '.' INTO dblink
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'dblink';
    IF dblink IS NULL THEN
        RETURN false;
    END IF;
    LOOP
        EXECUTE format('SELECT $1 = ANY (coalesce(%sdblink_get_connections(), ''{}''))', dblink)
            INTO reused USING connection_name;
        BEGIN
            IF NOT reused THEN
                EXECUTE format('SELECT %sdblink_connect_u($1, $2)', dblink)
                    USING connection_name,
                          format('dbname=%s user=%s application_name=pgdurable:signal %s',
                                 pgdurable.conninfo_value(current_database()),
                                 pgdurable.conninfo_value(as_role),
                                 pgdurable.loopback_address());
                -- A lock the sender holds must not block the loopback for long.
                EXECUTE format('SELECT %sdblink_exec($1, $2)', dblink)
                    USING connection_name, 'SET lock_timeout = 2000; SET statement_timeout = 30000';
            END IF;
            EXECUTE format('SELECT r.delivered FROM %sdblink($1, $2) AS r(delivered boolean)', dblink)
                INTO delivered
                USING connection_name,
                      format('SELECT pgdurable.enqueue_signal(%L, %L, %L::jsonb)',
                             p_instance, p_name, p_data::text);
            RETURN delivered;
        EXCEPTION WHEN others THEN
            -- The limit the loopback reached is the caller's error. Anything
            -- else (a refused or broken connection, a lock) means the loopback
            -- cannot deliver: drop the connection; a kept one that broke is
            -- opened once more, a fresh one that failed gives up.
            IF SQLERRM LIKE '%signals that no wait has consumed%' THEN
                RAISE;
            END IF;
            EXECUTE format('SELECT %1$sdblink_disconnect($1) WHERE $1 = ANY (coalesce(%1$sdblink_get_connections(), ''{}''))', dblink)
                USING connection_name;
            IF NOT reused THEN
                RETURN false;
            END IF;
        END;
    END LOOP;
END;
$$;

-- The reference's parameter names (signal_data) and STRICT: a NULL argument
-- gives NULL and sends nothing.
DROP FUNCTION df.signal(text, text, text);
CREATE FUNCTION df.signal(instance_id text, signal_name text, signal_data text DEFAULT '{}')
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    payload jsonb;
BEGIN
    IF instance_id = '' THEN
        RAISE EXCEPTION 'Instance ID cannot be empty';
    END IF;
    IF signal_name = '' THEN
        RAISE EXCEPTION 'Signal name cannot be empty';
    END IF;
    PERFORM pgdurable.require_visible_instance(instance_id);
    -- Text that is not JSON travels as a JSON string.
    payload := coalesce(pgdurable.json_value_or_null(signal_data), to_jsonb(signal_data));
    IF pgdurable.in_workflow()
       OR NOT pgdurable.enqueue_signal_now(instance_id, signal_name, payload, current_user) THEN
        PERFORM pgdurable.enqueue_signal(instance_id, signal_name, payload);
    END IF;
    RETURN 'OK';
END;
$$;

-- Consumed signals are kept with the journal row of the wait that took
-- them, and go with it (a loop's next generation deletes the old rows).
CREATE FUNCTION pgdurable.forget_consumed_signals() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM pgdurable.consumed_signals c
    USING gone g
    WHERE c.instance_id = g.instance_id AND c.scope = g.scope AND c.gen = g.gen
      AND c.node_id = g.node_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER journal_forget_consumed_signals AFTER DELETE ON pgdurable.journal
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION pgdurable.forget_consumed_signals();

-- A terminal instance consumes nothing more: its signals go when it ends.
-- A cancelled one's run is made claimable at once, so a worker removes it
-- even when it waited only for a signal that will now never be stored.
CREATE FUNCTION pgdurable.forget_signals_of_finished() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM pgdurable.signals s WHERE s.instance_id = NEW.id;
    DELETE FROM pgdurable.consumed_signals c WHERE c.instance_id = NEW.id;
    IF NEW.status = 'cancelled' THEN
        UPDATE pgdurable.runs r SET wake_at = clock_timestamp()
        WHERE r.instance_id = NEW.id AND r.wake_at > clock_timestamp();
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER instances_forget_signals AFTER UPDATE OF status ON df.instances
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
                       AND OLD.status NOT IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION pgdurable.forget_signals_of_finished();
REVOKE EXECUTE ON FUNCTION pgdurable.forget_consumed_signals(),
    pgdurable.forget_signals_of_finished() FROM PUBLIC;

-- Instances that ended before this migration.
DELETE FROM pgdurable.signals s USING df.instances i
WHERE i.id = s.instance_id AND i.status IN ('completed', 'failed', 'cancelled');
DELETE FROM pgdurable.consumed_signals c
WHERE NOT EXISTS (SELECT 1 FROM pgdurable.journal j
                  WHERE j.instance_id = c.instance_id AND j.scope = c.scope AND j.gen = c.gen
                    AND j.node_id = c.node_id);

-- ---------------------------------------------------------------------------
-- Signatures: the reference's parameter names and STRICT
-- ---------------------------------------------------------------------------

-- pgrx declares a function STRICT when none of its arguments is optional;
-- these are the control, monitoring and variable functions it so declares
-- (a NULL argument gives NULL instead of an error). ALTER, not CREATE OR
-- REPLACE: the bodies stay whatever the latest migration made them.
ALTER FUNCTION df.await_instance(text, integer) STRICT;
ALTER FUNCTION df.wait_for_completion(text, integer) STRICT;
ALTER FUNCTION df.cancel(text, text) STRICT;
ALTER FUNCTION df.clearvars() STRICT;
ALTER FUNCTION df.explain(text) STRICT;
ALTER FUNCTION df.getvar(text) STRICT;
ALTER FUNCTION df.setvar(text, text) STRICT;
ALTER FUNCTION df.unsetvar(text) STRICT;
ALTER FUNCTION df.instance_executions(text, integer) STRICT;
ALTER FUNCTION df.instance_info(text) STRICT;
ALTER FUNCTION df.instance_nodes(text) STRICT;
ALTER FUNCTION df.metrics() STRICT;
ALTER FUNCTION df.result(text) STRICT;
ALTER FUNCTION df.status(text) STRICT;
ALTER FUNCTION df.target_database() STRICT;
ALTER FUNCTION df.version() STRICT;

-- The legacy form's second parameter is named _last_n_executions in the
-- reference (named-argument calls use it); a parameter cannot be renamed in
-- place, so the function is made again with 0004's body.
DROP FUNCTION df.instance_nodes(text, integer);
CREATE FUNCTION df.instance_nodes(instance_id_param text, _last_n_executions integer)
RETURNS TABLE (execution_id bigint, node_id text, node_type text, query text, result_name text,
               left_node text, right_node text, status text, result text, updated_at timestamptz)
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT 1::bigint, n.id::text, n.node_type, n.query, n.result_name, n.left_node::text,
           n.right_node::text, n.status, n.result::text, n.updated_at
    FROM df.nodes n
    WHERE n.instance_id = $1
    ORDER BY n.id
$$;

-- ---------------------------------------------------------------------------
-- Worker heartbeat (df._worker_epoch)
-- ---------------------------------------------------------------------------

-- Every worker process keeps one row, refreshed about every 5 s (the
-- reference's single worker keeps exactly one). Tools read last_seen_at to
-- know a worker is alive. Rows of workers that died without removing theirs
-- are deleted once they are a minute old, so the table holds the live
-- workers plus at most a minute of dead ones.
CREATE FUNCTION pgdurable.worker_alive_v1(p_epoch uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO df._worker_epoch AS w (epoch_id, started_at, last_seen_at)
    VALUES (p_epoch, now(), now())
    ON CONFLICT (epoch_id) DO UPDATE SET last_seen_at = now();
    DELETE FROM df._worker_epoch w
    WHERE w.epoch_id <> p_epoch AND w.last_seen_at < now() - interval '1 minute';
END;
$$;

-- A worker that stops removes its row.
CREATE FUNCTION pgdurable.worker_gone_v1(p_epoch uuid) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM df._worker_epoch w WHERE w.epoch_id = p_epoch
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.worker_alive_v1(uuid), pgdurable.worker_gone_v1(uuid)
    FROM PUBLIC;
