-- The df catalog (SPEC B §2), df.start (B §1.4) and the control and variable
-- functions (B §3) of pg_durable 0.2.6, in SQL and PL/pgSQL.
--
-- Split of responsibilities, as in the reference: constructors only build a
-- value (0002); df.start only validates, persists and wakes the workers; the
-- worker executes. Everything pgdurable adds lives in schema pgdurable (SPEC
-- A.1): the vars snapshot, the signal buffer (A.2.2), the loopback start.
--
-- Functions pin search_path and schema-qualify what they call, so a caller's
-- objects can never shadow ours (CVE-2018-1058).
--
-- Settings (read with current_setting(name, true); defaults in brackets):
--   pg_durable.enable_superuser_instances [off]  honoured only when set by the
--       administrator (postgresql.conf, ALTER SYSTEM, server command line),
--       never from SET or ALTER ROLE/DATABASE, matching the reference's
--       postmaster-only setting
--   pg_durable.max_new_transaction_starts [2]     concurrent 'new'-mode starts
--   pg_durable.new_transaction_start_timeout [5]  seconds to wait for a slot
--   pgdurable.loopback_conninfo ['']              extra libpq settings for the
--       'new'-mode loopback session (e.g. 'host=/run/postgresql port=5433');
--       by default the server's own socket directory and port are used

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

CREATE TABLE df.instances (
    id           varchar(8)  PRIMARY KEY,
    label        text,
    root_node    varchar(8)  NOT NULL,
    status       text        NOT NULL DEFAULT 'pending',
    submitted_by regrole     NOT NULL,
    database     text,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    completed_at timestamptz,
    CONSTRAINT instances_id_format_chk CHECK (id ~ '^[0-9a-f]{8}$'),
    CONSTRAINT instances_root_node_format_chk CHECK (root_node ~ '^[0-9a-f]{8}$'),
    CONSTRAINT instances_status_chk
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    -- Target of the composite FK that ties every node to its instance's identity.
    CONSTRAINT instances_identity_key UNIQUE (id, submitted_by)
);
COMMENT ON COLUMN df.instances.submitted_by IS
    'Effective role (current_user) at df.start() time: the worker logs in as this role';

CREATE INDEX instances_status_created_idx ON df.instances (status, created_at DESC, id);
CREATE INDEX instances_created_idx ON df.instances (created_at DESC, id);
CREATE INDEX instances_label_created_idx ON df.instances (label, created_at DESC, id)
    WHERE label IS NOT NULL;

CREATE TABLE df.nodes (
    id             varchar(8)  NOT NULL,
    instance_id    varchar(8)  NOT NULL,
    node_type      text        NOT NULL,
    query          text,
    result_name    text,
    left_node      varchar(8),
    right_node     varchar(8),
    status         text        NOT NULL DEFAULT 'pending',
    result         jsonb,
    error          text,  -- kept for compatibility; the reference never writes it
    submitted_by   regrole     NOT NULL,
    database       text,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    status_details jsonb,
    PRIMARY KEY (instance_id, id),
    CONSTRAINT nodes_id_format_chk CHECK (id ~ '^[0-9a-f]{8}$'),
    CONSTRAINT nodes_instance_id_format_chk CHECK (instance_id ~ '^[0-9a-f]{8}$'),
    CONSTRAINT nodes_left_node_format_chk CHECK (left_node IS NULL OR left_node ~ '^[0-9a-f]{8}$'),
    CONSTRAINT nodes_right_node_format_chk CHECK (right_node IS NULL OR right_node ~ '^[0-9a-f]{8}$'),
    CONSTRAINT nodes_node_type_chk CHECK (node_type IN ('SQL', 'THEN', 'IF', 'JOIN', 'LOOP', 'BREAK',
        'RACE', 'SLEEP', 'WAIT_SCHEDULE', 'HTTP', 'HTTP_MULTIPART', 'SIGNAL')),
    CONSTRAINT nodes_result_name_chk
        CHECK (result_name IS NULL OR result_name ~ '^[A-Za-z_][A-Za-z0-9_]*$'),
    -- 'skipped' is never stored: it is inferred (df.instance_nodes, df.explain).
    CONSTRAINT nodes_status_chk CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    CONSTRAINT nodes_result_status_chk CHECK (result IS NULL OR status IN ('completed', 'failed')),
    CONSTRAINT nodes_structure_chk CHECK (
        CASE
            WHEN node_type IN ('SQL', 'SLEEP', 'WAIT_SCHEDULE', 'BREAK', 'HTTP', 'HTTP_MULTIPART', 'SIGNAL')
                THEN left_node IS NULL AND right_node IS NULL AND query IS NOT NULL
            WHEN node_type = 'THEN'
                THEN left_node IS NOT NULL AND right_node IS NOT NULL AND query IS NULL
            WHEN node_type = 'IF'
                THEN left_node IS NOT NULL AND right_node IS NOT NULL AND query IS NOT NULL
            WHEN node_type = 'LOOP'
                THEN left_node IS NOT NULL AND right_node IS NULL
            WHEN node_type = 'JOIN'
                THEN left_node IS NOT NULL AND right_node IS NOT NULL
            WHEN node_type = 'RACE'
                THEN left_node IS NOT NULL AND right_node IS NOT NULL AND query IS NULL
            ELSE false
        END),
    -- Deferred, so df.start can insert a graph's rows in any order.
    CONSTRAINT nodes_instance_identity_fkey FOREIGN KEY (instance_id, submitted_by)
        REFERENCES df.instances (id, submitted_by) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT nodes_left_node_same_instance_fkey FOREIGN KEY (instance_id, left_node)
        REFERENCES df.nodes (instance_id, id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT nodes_right_node_same_instance_fkey FOREIGN KEY (instance_id, right_node)
        REFERENCES df.nodes (instance_id, id) DEFERRABLE INITIALLY DEFERRED
);
COMMENT ON COLUMN df.nodes.status_details IS
    'Worker stamp {"execution_id":"<scope>::<gen>"} of the last status write';

ALTER TABLE df.instances
    ADD CONSTRAINT instances_root_node_same_instance_fkey FOREIGN KEY (id, root_node)
        REFERENCES df.nodes (instance_id, id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE df.vars (
    name  text    NOT NULL,
    value text,
    owner regrole NOT NULL DEFAULT pg_catalog.quote_ident(current_user)::pg_catalog.regrole,
    PRIMARY KEY (owner, name)
);

-- Kept for compatibility with tools that read it; pgdurable's workers record
-- their liveness in their own lease rows instead.
CREATE TABLE df._worker_epoch (
    epoch_id     uuid PRIMARY KEY,
    started_at   timestamptz DEFAULT pg_catalog.now(),
    last_seen_at timestamptz DEFAULT pg_catalog.now()
);

-- The caller's df.vars as they were at df.start (B §4.3: a snapshot that never changes).
CREATE TABLE pgdurable.instance_vars (
    instance_id varchar(8) PRIMARY KEY REFERENCES df.instances (id) ON DELETE CASCADE,
    vars        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(vars) = 'object')
);

-- Signals wait here until a matching wait consumes them, first in, first out
-- (SPEC A.2.2: the reference drops a signal sent before its wait exists).
CREATE TABLE pgdurable.signals (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id varchar(8) NOT NULL REFERENCES df.instances (id) ON DELETE CASCADE,
    name        text NOT NULL,
    data        jsonb,
    sent_by     regrole NOT NULL DEFAULT pg_catalog.quote_ident(current_user)::pg_catalog.regrole,
    sent_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX signals_instance_name_seq_idx ON pgdurable.signals (instance_id, name, seq);

-- ---------------------------------------------------------------------------
-- Row-level security (enabled, not forced: owners and the worker bypass it)
-- ---------------------------------------------------------------------------

ALTER TABLE df.instances ENABLE ROW LEVEL SECURITY;
CREATE POLICY instances_user_isolation ON df.instances FOR ALL
    USING (submitted_by = pg_catalog.quote_ident(current_user)::pg_catalog.regrole)
    WITH CHECK (submitted_by = pg_catalog.quote_ident(current_user)::pg_catalog.regrole);

ALTER TABLE df.nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY nodes_user_isolation ON df.nodes FOR ALL
    USING (submitted_by = pg_catalog.quote_ident(current_user)::pg_catalog.regrole)
    WITH CHECK (submitted_by = pg_catalog.quote_ident(current_user)::pg_catalog.regrole);

ALTER TABLE df.vars ENABLE ROW LEVEL SECURITY;
CREATE POLICY vars_user_isolation ON df.vars FOR ALL
    USING (owner = pg_catalog.quote_ident(current_user)::pg_catalog.regrole)
    WITH CHECK (owner = pg_catalog.quote_ident(current_user)::pg_catalog.regrole);

-- Our tables follow the instance: a row is visible and writable exactly when
-- its instance is (the subquery applies df.instances' own policy).
ALTER TABLE pgdurable.instance_vars ENABLE ROW LEVEL SECURITY;
CREATE POLICY instance_vars_follow_instance ON pgdurable.instance_vars FOR ALL
    USING (EXISTS (SELECT 1 FROM df.instances i WHERE i.id = instance_id))
    WITH CHECK (EXISTS (SELECT 1 FROM df.instances i WHERE i.id = instance_id));

ALTER TABLE pgdurable.signals ENABLE ROW LEVEL SECURITY;
CREATE POLICY signals_follow_instance ON pgdurable.signals FOR ALL
    USING (EXISTS (SELECT 1 FROM df.instances i WHERE i.id = instance_id))
    WITH CHECK (EXISTS (SELECT 1 FROM df.instances i WHERE i.id = instance_id)
                AND sent_by = pg_catalog.quote_ident(current_user)::pg_catalog.regrole);

-- ---------------------------------------------------------------------------
-- Internal helpers (schema pgdurable)
-- ---------------------------------------------------------------------------

-- A setting with its documented default when unset or empty.
CREATE FUNCTION pgdurable.setting(name text, default_value text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(nullif(current_setting(name, true), ''), default_value)
$$;

-- True only when an administrator switched the setting on at server level.
-- A session (SET, PGOPTIONS) or ALTER ROLE/DATABASE cannot, so a SECURITY
-- DEFINER function owned by a superuser cannot be tricked into starting
-- superuser instances for its callers.
CREATE FUNCTION pgdurable.superuser_instances_enabled() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((
        SELECT lower(s.reset_val) IN ('on', 'true', 'yes', '1')
               AND s.source IN ('configuration file', 'command line', 'environment variable')
        FROM pg_catalog.pg_settings s
        WHERE s.name = 'pg_durable.enable_superuser_instances'), false)
$$;

CREATE FUNCTION pgdurable.in_workflow() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(current_setting('df.in_workflow', true), '') = 'true'
$$;

-- A fresh 8-hex id: the last 8 hex digits of a random UUID, as the reference does.
CREATE FUNCTION pgdurable.new_id() RETURNS text
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT right(replace(gen_random_uuid()::text, '-', ''), 8)
$$;

-- Parse df.start's argument with the reference's stricter root handling
-- (0002): an unknown root node_type raises instead of becoming SQL.
CREATE FUNCTION pgdurable.parse_graph(fut text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pgdurable.dsl_node_strict(fut)::jsonb
$$;

-- JSON helpers for validating text without raising.
CREATE FUNCTION pgdurable.json_value_or_null(value text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN value::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

CREATE FUNCTION pgdurable.json_object_or_null(value text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT parsed FROM pgdurable.json_value_or_null(value) AS parsed
    WHERE jsonb_typeof(parsed) = 'object'
$$;

-- The parser's message for text that is not JSON, NULL for valid JSON.
CREATE FUNCTION pgdurable.json_error(value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM value::jsonb;
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN SQLERRM;
END;
$$;

-- Validate a parsed graph and flatten it into df.nodes rows (pre-order ids:
-- left, right, condition_node, extra_nodes). Returns a JSON array of
-- {id, node_type, query, result_name, left_node, right_node}; raises the
-- reference's path-prefixed errors. The walk is one recursive query: each row
-- knows its parent and slot, so a parent learns its children's ids by a join.
CREATE FUNCTION pgdurable.flatten_graph(graph jsonb, root_id text) RETURNS jsonb
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
            SELECT graph, root_id, NULL::text, NULL::text, 'root'::text, ARRAY[]::int[], 1
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
                              array_to_string(pgdurable.dsl_valid_node_types(), ', '))
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
                   WHEN f.node ->> 'node_type' NOT IN ('THEN', 'JOIN', 'RACE', 'IF', 'LOOP')
                        AND (ch.left_id IS NOT NULL OR ch.right_id IS NOT NULL OR ch.cond_id IS NOT NULL) THEN
                       format('%s node must not have child nodes', f.node ->> 'node_type')
                   WHEN f.node ->> 'node_type' NOT IN ('THEN', 'JOIN', 'RACE', 'IF', 'LOOP')
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
                   WHEN c.node_type IN ('THEN', 'RACE', 'LOOP', 'JOIN') THEN NULL
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

-- Persist a validated graph as a new pending instance in the caller's
-- transaction and wake the workers (the NOTIFY is delivered at commit, so a
-- rolled-back start never runs). Returns the instance id.
CREATE FUNCTION pgdurable.start_in_caller_transaction(fut text, label text, database text)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    graph jsonb := pgdurable.parse_graph(fut);
    identity text := current_user;
    role_row record;
    instance_id text;
    root_id text := pgdurable.new_id();
    node_rows jsonb;
    batch_start int;
BEGIN
    node_rows := pgdurable.flatten_graph(graph, root_id);

    IF database IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database d WHERE d.datname = database) THEN
        RAISE EXCEPTION 'database "%" does not exist', database;
    END IF;

    SELECT r.rolcanlogin, r.rolsuper INTO role_row
    FROM pg_catalog.pg_roles r WHERE r.rolname = identity;
    IF NOT role_row.rolcanlogin THEN
        RAISE EXCEPTION 'current_user "%" does not have LOGIN privilege; workflow steps run by logging in as the role that starts them', identity
            USING HINT = 'Start the workflow as a role with LOGIN, or ALTER ROLE ' || quote_ident(identity) || ' LOGIN.';
    END IF;
    IF role_row.rolsuper AND NOT pgdurable.superuser_instances_enabled() THEN
        RAISE EXCEPTION 'current_user "%" is a superuser and pg_durable.enable_superuser_instances is off; start workflows as an ordinary role', identity
            USING HINT = 'Use a non-superuser role (df.grant_usage gives one the privileges it needs), or set pg_durable.enable_superuser_instances = on in postgresql.conf.';
    END IF;

    -- Reserve an id; a collision with an existing instance re-rolls.
    FOR attempt IN 1..10 LOOP
        INSERT INTO df.instances (id, label, root_node, submitted_by, database)
        VALUES (pgdurable.new_id(), label, root_id,
                pg_catalog.quote_ident(identity)::pg_catalog.regrole, database)
        ON CONFLICT (id) DO NOTHING
        RETURNING id INTO instance_id;
        EXIT WHEN instance_id IS NOT NULL;
    END LOOP;
    IF instance_id IS NULL THEN
        RAISE EXCEPTION 'could not allocate a unique instance id after 10 attempts';
    END IF;

    -- Nodes in batches of 1000 rows, as the reference does.
    FOR batch_start IN 0 .. jsonb_array_length(node_rows) - 1 BY 1000 LOOP
        INSERT INTO df.nodes (id, instance_id, node_type, query, result_name, left_node,
                              right_node, submitted_by, database)
        SELECT r.id, instance_id, r.node_type, r.query, r.result_name, r.left_node, r.right_node,
               pg_catalog.quote_ident(identity)::pg_catalog.regrole, database
        FROM jsonb_to_recordset(jsonb_path_query_array(
                 node_rows, ('$[' || batch_start || ' to ' || (batch_start + 999) || ']')::jsonpath))
             AS r(id text, node_type text, query text, result_name text, left_node text, right_node text);
    END LOOP;

    INSERT INTO pgdurable.instance_vars (instance_id, vars)
    SELECT instance_id, coalesce(jsonb_object_agg(v.name, v.value), '{}'::jsonb)
    FROM df.vars v
    WHERE v.owner = pg_catalog.quote_ident(identity)::pg_catalog.regrole;

    PERFORM pg_catalog.pg_notify('pgdurable_wake', 'start:' || instance_id);
    RETURN instance_id;
END;
$$;

-- 'new' mode: run the start on a loopback session logged in as the same role,
-- which commits on its own and so survives a rollback of the caller.
--
-- SECURITY DEFINER because dblink only lets superusers open connections that
-- authenticate without a password. Being a definer function it cannot see the
-- caller's current_user, so df.start passes it in and we accept it only when
-- the session could become that role anyway (membership of session_user):
-- nobody can start instances as a role they could not SET ROLE to.
CREATE FUNCTION pgdurable.start_in_new_transaction(fut text, label text, database text, as_role text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    max_starts int := pgdurable.setting('pg_durable.max_new_transaction_starts', '2')::int;
    wait_seconds int := pgdurable.setting('pg_durable.new_transaction_start_timeout', '5')::int;
    deadline timestamptz := clock_timestamp() + make_interval(secs => wait_seconds);
    slot int;
    dblink text;  -- schema prefix of the dblink functions
    conninfo text;
    connection_name text := 'pgdurable_start_' || pg_backend_pid();
    instance_id text;
BEGIN
    -- Checked here as well as in df.start: this function is reachable directly.
    IF pgdurable.in_workflow() THEN
        RAISE EXCEPTION 'df.start(transaction_mode => ''new'') cannot be called inside a workflow - use the default transaction_mode => ''caller''';
    END IF;
    IF NOT pg_catalog.pg_has_role(session_user, as_role, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to start a workflow as role "%"', as_role;
    END IF;
    SELECT quote_ident(n.nspname) || '.' INTO dblink
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'dblink';
    IF dblink IS NULL THEN
        RAISE EXCEPTION 'transaction_mode ''new'' needs the dblink extension, which this server does not have'
            USING HINT = 'Install PostgreSQL''s contrib modules, then run `pgdurable schema upgrade`, or use transaction_mode => ''caller''.';
    END IF;

    -- Admission: at most max_starts loopback sessions at once, one advisory
    -- lock slot each (key 0x50474446, as the reference); wait for a free slot.
    <<admission>>
    LOOP
        FOR candidate IN 0 .. max_starts - 1 LOOP
            IF pg_catalog.pg_try_advisory_lock(1346847814, candidate) THEN
                slot := candidate;
                EXIT admission;
            END IF;
        END LOOP;
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'pg_durable: launch limit reached (max_new_transaction_starts=%). Timed out after %s waiting for a launch slot for df.start(transaction_mode => ''new'')', max_starts, wait_seconds;
        END IF;
        PERFORM pg_catalog.pg_sleep(0.02);
    END LOOP;

    BEGIN
        conninfo := format('dbname=%s user=%s application_name=pgdurable:start %s',
                           quote_literal(current_database()), quote_literal(as_role),
                           pgdurable.loopback_address());
        EXECUTE format('SELECT %sdblink_connect_u($1, $2)', dblink) USING connection_name, conninfo;
        EXECUTE format('SELECT %sdblink_exec($1, $2)', dblink)
            USING connection_name, 'SET lock_timeout = 30000; SET statement_timeout = 30000';
        EXECUTE format('SELECT r.id FROM %sdblink($1, $2) AS r(id text)', dblink)
            INTO instance_id
            USING connection_name, format('SELECT df.start(%L, %L, %L)', fut, label, database);
        EXECUTE format('SELECT %sdblink_disconnect($1)', dblink) USING connection_name;
    EXCEPTION WHEN others THEN
        EXECUTE format('SELECT %1$sdblink_disconnect($1) WHERE $1 = ANY (%1$sdblink_get_connections())', dblink)
            USING connection_name;
        PERFORM pg_catalog.pg_advisory_unlock(1346847814, slot);
        RAISE;
    END;
    PERFORM pg_catalog.pg_advisory_unlock(1346847814, slot);
    RETURN instance_id;
END;
$$;

-- Where the loopback session connects: our own socket directory and port,
-- unless pgdurable.loopback_conninfo says otherwise.
CREATE FUNCTION pgdurable.loopback_address() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(nullif(current_setting('pgdurable.loopback_conninfo', true), ''),
                    format('host=%s port=%s',
                           quote_literal(trim(split_part(current_setting('unix_socket_directories'), ',', 1))),
                           current_setting('port')))
$$;

-- dblink ships with PostgreSQL's contrib modules; without it only 'new' mode
-- is unavailable. It gets a schema of its own that no role has USAGE on, so
-- only superusers and the definer function above can call it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'dblink')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'dblink') THEN
        CREATE SCHEMA pgdurable_dblink;
        CREATE EXTENSION dblink WITH SCHEMA pgdurable_dblink;
    END IF;
END;
$$;

-- ---------------------------------------------------------------------------
-- df.start
-- ---------------------------------------------------------------------------

CREATE FUNCTION df.start(fut text, label text DEFAULT NULL, database text DEFAULT NULL,
                         transaction_mode text DEFAULT 'caller')
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CASE transaction_mode
        WHEN 'caller' THEN
            RETURN pgdurable.start_in_caller_transaction(fut, label, database);
        WHEN 'new' THEN
            IF pgdurable.in_workflow() THEN
                RAISE EXCEPTION 'df.start(transaction_mode => ''new'') cannot be called inside a workflow - use the default transaction_mode => ''caller''';
            END IF;
            -- Validate here first, so errors in the graph read the same in both modes.
            PERFORM pgdurable.flatten_graph(pgdurable.parse_graph(fut), '00000000');
            RETURN pgdurable.start_in_new_transaction(fut, label, database, current_user);
        ELSE
            RAISE EXCEPTION 'invalid transaction_mode "%": use ''caller'' (default) or ''new''', transaction_mode;
    END CASE;
END;
$$;

-- ---------------------------------------------------------------------------
-- Control
-- ---------------------------------------------------------------------------

CREATE FUNCTION df.status(instance_id text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT i.status FROM df.instances i WHERE i.id = instance_id
$$;

-- Only a completed run has a result; failed and running ones give NULL.
CREATE FUNCTION df.result(instance_id text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    -- Qualified: inside the join, a bare instance_id would mean n.instance_id.
    SELECT n.result::text
    FROM df.instances i
    JOIN df.nodes n ON n.instance_id = i.id AND n.id = i.root_node
    WHERE i.id = result.instance_id AND n.status = 'completed'
$$;

CREATE FUNCTION pgdurable.require_visible_instance(instance_id text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM df.instances i WHERE i.id = instance_id) THEN
        RAISE EXCEPTION 'Instance not found or access denied: %', instance_id;
    END IF;
END;
$$;

CREATE FUNCTION df.cancel(instance_id text, reason text DEFAULT 'Cancelled by user') RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.require_visible_instance(instance_id);
    -- A terminal status is never overwritten.
    UPDATE df.instances i SET status = 'cancelled', updated_at = pg_catalog.now()
    WHERE i.id = instance_id AND i.status NOT IN ('completed', 'failed', 'cancelled');
    PERFORM pg_catalog.pg_notify('pgdurable_wake', 'cancel:' || instance_id);
    RETURN format('Instance %s cancelled: %s', instance_id, reason);
END;
$$;

CREATE FUNCTION df.signal(instance_id text, signal_name text, data text DEFAULT '{}') RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    payload jsonb;
BEGIN
    PERFORM pgdurable.require_visible_instance(instance_id);
    -- Text that is not JSON travels as a JSON string.
    payload := coalesce(pgdurable.json_value_or_null(data), to_jsonb(data));
    INSERT INTO pgdurable.signals (instance_id, name, data) VALUES (instance_id, signal_name, payload);
    PERFORM pg_catalog.pg_notify('pgdurable_wake', 'signal:' || instance_id);
    RETURN 'OK';
END;
$$;

-- Blocks until the instance is terminal; each poll is a new statement
-- snapshot, so it sees the worker's commits.
CREATE FUNCTION df.await_instance(instance_id text, timeout_seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deadline timestamptz;
    current_status text;
BEGIN
    IF pgdurable.in_workflow() THEN
        RAISE EXCEPTION 'df.await_instance() cannot be called inside a workflow - a step waiting for another instance would hold its connection; wait outside the workflow instead';
    END IF;
    IF timeout_seconds IS NULL OR timeout_seconds <= 0 THEN
        RAISE EXCEPTION 'Timeout must be positive';
    END IF;
    deadline := clock_timestamp() + make_interval(secs => timeout_seconds);
    LOOP
        SELECT i.status INTO current_status FROM df.instances i WHERE i.id = instance_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'Instance not found: %', instance_id;
        END IF;
        IF current_status IN ('completed', 'failed', 'cancelled') THEN
            PERFORM pgdurable.mark_non_future_helper('df.await_instance');
            RETURN lower(current_status);
        END IF;
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'Timeout after %s waiting for instance %', timeout_seconds, instance_id;
        END IF;
        PERFORM pg_catalog.pg_sleep(0.1);
    END LOOP;
END;
$$;

CREATE FUNCTION df.wait_for_completion(instance_id text, timeout_seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE WARNING 'df.wait_for_completion() is deprecated; use df.await_instance()';
    RETURN df.await_instance(instance_id, timeout_seconds);
END;
$$;

-- ---------------------------------------------------------------------------
-- Variables (per role; a workflow sees the snapshot taken by df.start)
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgdurable.refuse_in_workflow(helper text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pgdurable.in_workflow() THEN
        RAISE EXCEPTION '%() cannot be called inside a workflow - variables are captured when df.start() runs; set them before starting the workflow', helper;
    END IF;
END;
$$;

CREATE FUNCTION df.setvar(name text, value text) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.refuse_in_workflow('df.setvar');
    INSERT INTO df.vars AS v (name, value) VALUES (setvar.name, setvar.value)
    ON CONFLICT ON CONSTRAINT vars_pkey DO UPDATE SET value = excluded.value;
    PERFORM pgdurable.mark_non_future_helper('df.setvar');
    RETURN 'OK';
END;
$$;

CREATE FUNCTION df.unsetvar(name text) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.refuse_in_workflow('df.unsetvar');
    DELETE FROM df.vars v
    WHERE v.name = unsetvar.name AND v.owner = pg_catalog.quote_ident(current_user)::pg_catalog.regrole;
    PERFORM pgdurable.mark_non_future_helper('df.unsetvar');
    RETURN 'OK';
END;
$$;

CREATE FUNCTION df.clearvars() RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.refuse_in_workflow('df.clearvars');
    DELETE FROM df.vars v WHERE v.owner = pg_catalog.quote_ident(current_user)::pg_catalog.regrole;
    PERFORM pgdurable.mark_non_future_helper('df.clearvars');
    RETURN 'OK';
END;
$$;

CREATE FUNCTION df.getvar(name text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT v.value FROM df.vars v
    WHERE v.name = getvar.name AND v.owner = pg_catalog.quote_ident(current_user)::pg_catalog.regrole
$$;

-- ---------------------------------------------------------------------------
-- Privileges (SPEC B §2 "Grants"; pgdurable adds USAGE on its own schema and
-- the rows of its tables that follow the caller's instances)
-- ---------------------------------------------------------------------------

-- Sensitive functions are not callable by PUBLIC; df.grant_usage hands them out.
REVOKE EXECUTE ON FUNCTION df.http(text, text, text, jsonb, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION df.http_multipart(text, text, jsonb, jsonb, integer) FROM PUBLIC;

-- The statements both functions run, in grant form; revoke_usage undoes each.
CREATE FUNCTION pgdurable.usage_privileges(include_http boolean, with_grant boolean)
RETURNS TABLE (privilege text, object text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM (VALUES
        ('USAGE', 'SCHEMA df'),
        ('SELECT', 'df.instances'),
        ('UPDATE (status, updated_at)', 'df.instances'),
        ('SELECT', 'df.nodes'),
        ('INSERT (id, label, root_node, submitted_by, database)', 'df.instances'),
        ('INSERT (id, instance_id, node_type, query, result_name, left_node, right_node, submitted_by, database)', 'df.nodes'),
        ('SELECT, INSERT, UPDATE, DELETE', 'df.vars'),
        ('USAGE', 'SCHEMA pgdurable'),
        ('SELECT, INSERT', 'pgdurable.instance_vars'),
        ('SELECT, INSERT', 'pgdurable.signals')
    ) AS always(privilege, object)
    UNION ALL
    SELECT 'SELECT', 'pgdurable.executions' WHERE to_regclass('pgdurable.executions') IS NOT NULL
    UNION ALL
    SELECT 'EXECUTE', f FROM unnest(ARRAY[
        'FUNCTION df.http(text, text, text, jsonb, integer)',
        'FUNCTION df.http_multipart(text, text, jsonb, jsonb, integer)']) f
    WHERE include_http
    UNION ALL
    SELECT 'EXECUTE', f FROM unnest(ARRAY[
        'FUNCTION df.grant_usage(text, boolean, boolean)',
        'FUNCTION df.revoke_usage(text)',
        'FUNCTION df.metrics()']) f
    WHERE with_grant AND to_regprocedure(substr(f, 10)) IS NOT NULL
$$;

-- SECURITY INVOKER: callers can hand out only what they hold WITH GRANT OPTION.
CREATE FUNCTION df.grant_usage(p_role text, include_http boolean DEFAULT false,
                               with_grant boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    item record;
BEGIN
    FOR item IN SELECT * FROM pgdurable.usage_privileges(include_http, with_grant) LOOP
        EXECUTE format('GRANT %s ON %s TO %I', item.privilege, item.object, p_role)
            || CASE WHEN with_grant THEN ' WITH GRANT OPTION' ELSE '' END;
    END LOOP;
    RAISE NOTICE 'pg_durable: granted df usage privileges to "%"', p_role;
END;
$$;

CREATE FUNCTION df.revoke_usage(p_role text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    item record;
BEGIN
    -- Everything grant_usage may have granted, sensitive functions included;
    -- a delegated admin may not hold some of them, so those are skipped.
    FOR item IN SELECT * FROM pgdurable.usage_privileges(true, true) LOOP
        BEGIN
            EXECUTE format('REVOKE %s ON %s FROM %I CASCADE', item.privilege, item.object, p_role);
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END;
    END LOOP;
    RAISE NOTICE 'pg_durable: revoked df usage privileges granted by "%" from "%"', current_user, p_role;
END;
$$;

REVOKE EXECUTE ON FUNCTION df.grant_usage(text, boolean, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION df.revoke_usage(text) FROM PUBLIC;
