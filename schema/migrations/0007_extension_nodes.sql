-- pgdurable's extension nodes (SPEC A.4): RETRY, TIMEOUT and TRY.
--
-- They live in schema pgdurable, never in df (SPEC A.1): the constructors
-- pgdurable.retry / pgdurable.timeout / pgdurable.try build node JSON exactly
-- like the df.* constructors (same envelope, same auto-wrap of their node
-- arguments), so the values compose with df.* and with each other.
--
-- Encoding (the one pgdurable/model.py and render.py already use):
--   RETRY    left_node = the step; query = {"max_attempts":n,"delay_seconds":n,
--            "backoff":f,"max_delay_seconds":n|null}
--   TIMEOUT  left_node = the step; query = {"timeout_seconds":n}
--   TRY      left_node = the step; right_node = what runs when it fails; no query
--
-- What this migration changes in the earlier layers, and why:
--   * pgdurable.dsl_valid_node_types() now also lists the three types, so
--     auto-wrap keeps them as nodes and df.start accepts them. The "Valid
--     types: …" wording of errors keeps the reference's twelve names
--     (pgdurable.dsl_reference_node_types), so error text stays identical to
--     pg_durable's (SPEC A.1).
--   * df.start's flattening (pgdurable.flatten_graph) learns their shape and
--     checks their configs; df.nodes' check constraints admit them.
--   * Monitoring: the inference walk descends into them; df.explain labels
--     them, shows a live RETRY's attempt and next attempt time, and evaluates
--     expressions that call pgdurable.* (not only df.*).
-- The worker executes them (worker/extensions.py).
--
-- On a database with the pg_durable extension instead of pgdurable, calling
-- one of these constructors fails with `schema "pgdurable" does not exist`,
-- and raw node JSON with one of these types is refused by df.start with
-- `Unknown node_type 'RETRY'` (see MIGRATING.md, "Extension nodes").

-- ---------------------------------------------------------------------------
-- Node types
-- ---------------------------------------------------------------------------

-- The reference's node types, for error messages only.
CREATE FUNCTION pgdurable.dsl_reference_node_types() RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT ARRAY['SQL', 'THEN', 'IF', 'JOIN', 'LOOP', 'BREAK', 'RACE', 'SLEEP',
                 'WAIT_SCHEDULE', 'HTTP', 'HTTP_MULTIPART', 'SIGNAL']
$$;

CREATE FUNCTION pgdurable.dsl_extension_node_types() RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT ARRAY['RETRY', 'TIMEOUT', 'TRY']
$$;

-- Every type a graph may use here: the reference's and ours.
CREATE OR REPLACE FUNCTION pgdurable.dsl_valid_node_types() RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT pgdurable.dsl_reference_node_types() || pgdurable.dsl_extension_node_types()
$$;


-- ---------------------------------------------------------------------------
-- Configs
-- ---------------------------------------------------------------------------

-- A JSON value that is an integer within [lo, hi].
CREATE FUNCTION pgdurable.json_int_between(value jsonb, lo bigint, hi bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(jsonb_typeof(value) = 'number' AND value::text ~ '^-?[0-9]+$'
                    AND value::text::numeric BETWEEN lo AND hi, false)
$$;

-- What is wrong with the query config of a RETRY or TIMEOUT node written by
-- hand (the constructors never produce a bad one), or NULL when it is valid.
-- The bounds are the constructors' bounds.
CREATE FUNCTION pgdurable.extension_config_error(node_type text, query text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    config jsonb := pgdurable.json_object_or_null(query);
BEGIN
    IF config IS NULL THEN
        RETURN 'expected a JSON object';
    END IF;
    IF node_type = 'RETRY' THEN
        IF NOT pgdurable.json_int_between(config -> 'max_attempts', 1, 2147483647) THEN
            RETURN 'max_attempts must be an integer of at least 1';
        ELSIF NOT pgdurable.json_int_between(config -> 'delay_seconds', 0, 2147483647) THEN
            RETURN 'delay_seconds must be a non-negative integer';
        ELSIF config ? 'backoff' AND jsonb_typeof(config -> 'backoff') <> 'null'
              AND NOT (jsonb_typeof(config -> 'backoff') = 'number'
                       AND (config ->> 'backoff')::numeric BETWEEN 1 AND 1000) THEN
            RETURN 'backoff must be a number from 1.0 to 1000.0';
        ELSIF config ? 'max_delay_seconds' AND jsonb_typeof(config -> 'max_delay_seconds') <> 'null'
              AND NOT pgdurable.json_int_between(config -> 'max_delay_seconds', 0, 2147483647) THEN
            RETURN 'max_delay_seconds must be a non-negative integer or null';
        END IF;
    ELSIF node_type = 'TIMEOUT' THEN
        IF NOT pgdurable.json_int_between(config -> 'timeout_seconds', 1, 2147483647) THEN
            RETURN 'timeout_seconds must be a positive integer';
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

-- ---------------------------------------------------------------------------
-- Constructors
-- ---------------------------------------------------------------------------
-- STABLE like the df.* composers (the helper guard of auto-wrap reads a
-- setting). A NULL node yields NULL, as with df.*; a NULL number other than
-- max_delay_seconds (whose NULL means "no cap") yields NULL too.

-- The backoff as serde_json prints an f64 ("2.0", "1.5"): the same bytes as
-- model.encode. Within the allowed range float8 output is already the
-- shortest form and never uses an exponent; whole numbers need the ".0".
CREATE FUNCTION pgdurable.json_float_text(value double precision) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET extra_float_digits = 1
AS $$
    SELECT CASE WHEN value::text ~ '^-?[0-9]+$' THEN value::text || '.0' ELSE value::text END
$$;

CREATE FUNCTION pgdurable.retry(node text, max_attempts integer, delay_seconds integer,
                                backoff double precision DEFAULT 1.0,
                                max_delay_seconds integer DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    step text;
BEGIN
    IF node IS NULL OR max_attempts IS NULL OR delay_seconds IS NULL OR backoff IS NULL THEN
        RETURN NULL;
    END IF;
    IF max_attempts < 1 THEN
        RAISE EXCEPTION 'pgdurable.retry: max_attempts must be at least 1 (got %)', max_attempts;
    ELSIF delay_seconds < 0 THEN
        RAISE EXCEPTION 'pgdurable.retry: delay_seconds must be non-negative (got %)', delay_seconds;
    ELSIF NOT backoff BETWEEN 1 AND 1000 THEN  -- also refuses NaN
        RAISE EXCEPTION 'pgdurable.retry: backoff must be between 1.0 and 1000.0 (got %)', backoff;
    ELSIF max_delay_seconds < 0 THEN
        RAISE EXCEPTION 'pgdurable.retry: max_delay_seconds must be non-negative or NULL (got %)',
            max_delay_seconds;
    END IF;
    step := pgdurable.dsl_node(node);
    RETURN pgdurable.dsl_envelope('RETRY', step, query =>
        '{"max_attempts":' || max_attempts
        || ',"delay_seconds":' || delay_seconds
        || ',"backoff":' || pgdurable.json_float_text(backoff)
        || ',"max_delay_seconds":' || coalesce(max_delay_seconds::text, 'null') || '}');
END;
$$;

CREATE FUNCTION pgdurable.timeout(node text, seconds integer) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    step text;
BEGIN
    IF node IS NULL OR seconds IS NULL THEN
        RETURN NULL;
    END IF;
    IF seconds <= 0 THEN
        RAISE EXCEPTION 'pgdurable.timeout: seconds must be positive (got %)', seconds;
    END IF;
    step := pgdurable.dsl_node(node);
    RETURN pgdurable.dsl_envelope('TIMEOUT', step, query => '{"timeout_seconds":' || seconds || '}');
END;
$$;

-- The step is normalised before the fallback, as df.if normalises its
-- arguments in order (it decides which bad argument is reported).
CREATE FUNCTION pgdurable.try(node text, on_failure text) RETURNS text
LANGUAGE plpgsql STABLE STRICT
AS $$
DECLARE
    step text := pgdurable.dsl_node(node);
    fallback text := pgdurable.dsl_node(on_failure);
BEGIN
    RETURN pgdurable.dsl_envelope('TRY', step, fallback);
END;
$$;

COMMENT ON FUNCTION pgdurable.retry(text, integer, integer, double precision, integer) IS
    'pgdurable extension node (not portable): re-run a failed step after a durable delay';
COMMENT ON FUNCTION pgdurable.timeout(text, integer) IS
    'pgdurable extension node (not portable): fail a step that runs longer than N seconds';
COMMENT ON FUNCTION pgdurable.try(text, text) IS
    'pgdurable extension node (not portable): run on_failure (with $error) when the step fails';

-- ---------------------------------------------------------------------------
-- df.start: strict root parsing and flattening
-- ---------------------------------------------------------------------------

-- Unchanged but for the reference's list in the "Valid types" message.
CREATE OR REPLACE FUNCTION pgdurable.dsl_node_strict(arg text) RETURNS text
LANGUAGE plpgsql STABLE STRICT
AS $$
DECLARE
    d record;
    valid CONSTANT text[] := pgdurable.dsl_valid_node_types();
BEGIN
    BEGIN
        d := pgdurable.dsl_parse(arg);
    EXCEPTION WHEN raise_exception THEN
        -- the non-future-helper error, which df.start reports with its prefix
        RAISE EXCEPTION 'Invalid durable function: %', SQLERRM;
    END;
    IF d.error IS NOT NULL AND d.envelope_type = ANY (valid) THEN
        RAISE EXCEPTION 'Invalid durable function: Malformed Durofut JSON with node_type ''%'': %',
            d.envelope_type, d.error;
    ELSIF d.envelope_type IS NOT NULL AND NOT d.envelope_type = ANY (valid) THEN
        RAISE EXCEPTION 'Invalid durable function: Unknown node_type ''%''. Valid types: %',
            d.envelope_type, array_to_string(pgdurable.dsl_reference_node_types(), ', ');
    END IF;
    RETURN pgdurable.dsl_envelope(d.node_type, d.left_node, d.right_node, d.condition_node,
                                  d.extra_nodes, d.query, d.result_name);
END;
$$;

-- The reference's flattening, plus the shape and config rules of the three
-- extension types (TRY, like THEN, keeps no query).
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
-- df.nodes admits the new types
-- ---------------------------------------------------------------------------

ALTER TABLE df.nodes DROP CONSTRAINT nodes_node_type_chk;
ALTER TABLE df.nodes ADD CONSTRAINT nodes_node_type_chk CHECK (node_type IN ('SQL', 'THEN', 'IF',
    'JOIN', 'LOOP', 'BREAK', 'RACE', 'SLEEP', 'WAIT_SCHEDULE', 'HTTP', 'HTTP_MULTIPART', 'SIGNAL',
    'RETRY', 'TIMEOUT', 'TRY'));

ALTER TABLE df.nodes DROP CONSTRAINT nodes_structure_chk;
ALTER TABLE df.nodes ADD CONSTRAINT nodes_structure_chk CHECK (
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
        -- SPEC A.4: the step is the left child; TRY's fallback is the right one
        WHEN node_type IN ('RETRY', 'TIMEOUT')
            THEN left_node IS NOT NULL AND right_node IS NULL AND query IS NOT NULL
        WHEN node_type = 'TRY'
            THEN left_node IS NOT NULL AND right_node IS NOT NULL AND query IS NULL
        ELSE false
    END);

-- ---------------------------------------------------------------------------
-- Monitoring: inference and df.explain
-- ---------------------------------------------------------------------------

-- The label of an extension node. Live (when the node carries the worker's
-- status_details): a RETRY adds its attempt, and while it waits the time of
-- the next attempt; a running TIMEOUT adds its deadline; a TRY that recovered
-- names the error it recovered from.
-- STABLE, not IMMUTABLE: it reads timestamps from text.
CREATE FUNCTION pgdurable.explain_extension_label(node jsonb) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    config jsonb := pgdurable.jsonb_or_null(node ->> 'query');
    details jsonb := CASE WHEN jsonb_typeof(node -> 'details') = 'object' THEN node -> 'details' END;
    running boolean := node ->> 'status' = 'running';
    label text;
BEGIN
    CASE node ->> 'type'
        WHEN 'RETRY' THEN
            label := 'RETRY (' || coalesce(config ->> 'max_attempts', '?') || ' attempts, '
                || coalesce(config ->> 'delay_seconds', '?') || 's'
                || CASE WHEN jsonb_typeof(config -> 'backoff') = 'number'
                             AND (config ->> 'backoff')::numeric <> 1
                        THEN ', x' || (config ->> 'backoff') ELSE '' END
                || CASE WHEN jsonb_typeof(config -> 'max_delay_seconds') = 'number'
                        THEN ', max ' || (config ->> 'max_delay_seconds') || 's' ELSE '' END
                || ')';
            IF details ? 'attempt' THEN
                label := label || ' [attempt ' || (details ->> 'attempt') || '/'
                    || coalesce(config ->> 'max_attempts', '?')
                    || CASE WHEN running AND details ? 'next_attempt_at'
                            THEN ', next at ' || to_char((details ->> 'next_attempt_at')::timestamptz
                                                         AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                                 || ' UTC'
                            ELSE '' END
                    || ']';
            END IF;
        WHEN 'TIMEOUT' THEN
            label := 'TIMEOUT ' || coalesce(config ->> 'timeout_seconds', '?') || 's';
            IF running AND details ? 'deadline_at' THEN
                label := label || ' [deadline ' || to_char((details ->> 'deadline_at')::timestamptz
                                                           AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                    || ' UTC]';
            END IF;
        ELSE
            label := 'TRY';
            IF details ? 'recovered_from' THEN
                label := label || ' [recovered from: '
                    || pgdurable.cut_bytes(details ->> 'recovered_from', 40, 37) || ']';
            END IF;
    END CASE;
    RETURN label;
END;
$$;

-- The labels of 0004 plus the extension nodes'.
CREATE OR REPLACE FUNCTION pgdurable.explain_label(node jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    query text := node ->> 'query';
    config jsonb := pgdurable.jsonb_or_null(node ->> 'query');
    suffix text := coalesce(' |=> ''' || (node ->> 'name') || '''', '');
    value text;
    timeout text;
BEGIN
    CASE node ->> 'type'
        WHEN 'SQL' THEN
            RETURN 'SQL: ' || pgdurable.cut_bytes(coalesce(query, '?'), 50, 47) || suffix;
        WHEN 'SLEEP' THEN
            RETURN 'SLEEP ' || coalesce(query, '?') || 's' || suffix;
        WHEN 'WAIT_SCHEDULE' THEN
            RETURN 'WAIT ''' || coalesce(pgdurable.json_str(config, 'cron_expr'), '?') || '''' || suffix;
        WHEN 'HTTP', 'HTTP_MULTIPART' THEN
            IF config IS NULL THEN
                RETURN (node ->> 'type') || ' ? ?' || suffix;
            END IF;
            RETURN (node ->> 'type') || ' ' || coalesce(pgdurable.json_str(config, 'method'), 'POST') || ' '
                || pgdurable.cut_bytes(coalesce(pgdurable.json_str(config, 'url'), '?'), 40, 37) || suffix;
        WHEN 'SIGNAL' THEN
            -- The timeout shows only when it is a JSON integer.
            IF jsonb_typeof(config) = 'object' AND jsonb_typeof(config -> 'timeout_seconds') = 'number'
               AND (config ->> 'timeout_seconds') ~ '^-?[0-9]+$' THEN
                timeout := ' (' || (config ->> 'timeout_seconds') || 's)';
            END IF;
            RETURN 'SIGNAL ''' || coalesce(pgdurable.json_str(config, 'signal_name'), '?') || ''''
                || coalesce(timeout, '') || suffix;
        WHEN 'LOOP' THEN
            RETURN CASE WHEN node ->> 'cond' IS NOT NULL THEN 'LOOP (while)' ELSE 'LOOP (infinite)' END
                || suffix;
        WHEN 'BREAK' THEN
            value := pgdurable.json_str(config, 'break_value');
            IF value IS NULL THEN
                RETURN 'BREAK' || suffix;
            END IF;
            RETURN 'BREAK ''' || pgdurable.cut_bytes(value, 20, 17) || '''' || suffix;
        WHEN 'IF' THEN
            RETURN 'IF' || suffix;
        WHEN 'JOIN' THEN
            RETURN 'JOIN (' || ((node ->> 'left' IS NOT NULL)::integer + (node ->> 'right' IS NOT NULL)::integer
                                + coalesce((node ->> 'extra_count')::integer, 0)) || ')' || suffix;
        WHEN 'THEN' THEN
            RETURN 'SEQUENCE';
        WHEN 'RETRY', 'TIMEOUT', 'TRY' THEN
            RETURN pgdurable.explain_extension_label(node) || suffix;
        ELSE
            RETURN node ->> 'type';
    END CASE;
END;
$$;

-- RETRY and TIMEOUT show their step, TRY its step and its fallback.
CREATE OR REPLACE FUNCTION pgdurable.explain_children(node jsonb, nodes jsonb, prefix text, show_status boolean)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    out text := '';
    branches text[];
    i integer;
BEGIN
    CASE node ->> 'type'
        WHEN 'LOOP' THEN
            IF node ->> 'left' IS NOT NULL THEN
                out := out || prefix || '↻ body:' || E'\n'
                    || pgdurable.explain_subtree(node ->> 'left', nodes, prefix || '  ', true, show_status);
            END IF;
            IF node ->> 'cond' IS NOT NULL THEN
                out := out || prefix || '? while:' || E'\n'
                    || pgdurable.explain_subtree(node ->> 'cond', nodes, prefix || '  ', true, show_status);
            END IF;
        WHEN 'IF' THEN
            IF node ->> 'cond' IS NOT NULL THEN
                out := out || prefix || '? condition:' || E'\n'
                    || pgdurable.explain_subtree(node ->> 'cond', nodes, prefix || '  ', true, show_status);
            END IF;
            IF node ->> 'left' IS NOT NULL THEN
                out := out || prefix || '✓ then:' || E'\n'
                    || pgdurable.explain_subtree(node ->> 'left', nodes, prefix || '  ', true, show_status);
            END IF;
            IF node ->> 'right' IS NOT NULL THEN
                out := out || prefix || '✗ else:' || E'\n'
                    || pgdurable.explain_subtree(node ->> 'right', nodes, prefix || '  ', true, show_status);
            END IF;
        WHEN 'JOIN', 'RACE' THEN
            branches := array_remove(ARRAY[node ->> 'left', node ->> 'right'], NULL);
            IF node ->> 'type' = 'JOIN' THEN
                branches := branches || ARRAY(SELECT jsonb_array_elements_text(coalesce(node -> 'extras', '[]')));
            END IF;
            FOR i IN 1 .. coalesce(cardinality(branches), 0) LOOP
                out := out || prefix || '║ branch ' || i || ':' || E'\n'
                    || pgdurable.explain_subtree(branches[i], nodes, prefix || '  ',
                                                 i = cardinality(branches), show_status);
            END LOOP;
        WHEN 'RETRY', 'TIMEOUT' THEN
            IF node ->> 'left' IS NOT NULL THEN
                out := out || prefix || CASE node ->> 'type' WHEN 'RETRY' THEN '↻ attempt:' ELSE '⏱ within:' END
                    || E'\n'
                    || pgdurable.explain_subtree(node ->> 'left', nodes, prefix || '  ', true, show_status);
            END IF;
        WHEN 'TRY' THEN
            IF node ->> 'left' IS NOT NULL THEN
                out := out || prefix || '✓ try:' || E'\n'
                    || pgdurable.explain_subtree(node ->> 'left', nodes, prefix || '  ', true, show_status);
            END IF;
            IF node ->> 'right' IS NOT NULL THEN
                out := out || prefix || '✗ on failure:' || E'\n'
                    || pgdurable.explain_subtree(node ->> 'right', nodes, prefix || '  ', true, show_status);
            END IF;
        ELSE
            NULL;  -- leaves have no children
    END CASE;
    RETURN out;
END;
$$;

-- The inference walk descends into the extension nodes' children too.
CREATE OR REPLACE FUNCTION pgdurable.node_children(node_type text, query text, left_node text, right_node text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    config jsonb;
BEGIN
    CASE upper(node_type)
        WHEN 'THEN', 'RACE', 'RETRY', 'TIMEOUT', 'TRY' THEN
            RETURN array_remove(ARRAY[left_node, right_node], NULL);
        WHEN 'JOIN' THEN
            config := pgdurable.jsonb_or_null(query);
            RETURN array_remove(ARRAY[left_node, right_node], NULL)
                || ARRAY(SELECT e #>> '{}'
                         FROM jsonb_array_elements(CASE WHEN jsonb_typeof(config -> 'extra_nodes') = 'array'
                                                        THEN config -> 'extra_nodes' ELSE '[]' END)
                              WITH ORDINALITY AS x(e, ord)
                         WHERE jsonb_typeof(e) = 'string'
                         ORDER BY ord);
        WHEN 'IF' THEN
            RETURN array_remove(ARRAY[pgdurable.json_str(pgdurable.jsonb_or_null(query), 'condition_node'),
                                      left_node, right_node], NULL);
        WHEN 'LOOP' THEN
            RETURN array_remove(ARRAY[left_node,
                                      pgdurable.json_str(pgdurable.jsonb_or_null(query), 'condition_node')], NULL);
        ELSE
            RETURN ARRAY[]::text[];
    END CASE;
END;
$$;

-- As in 0004, plus status_details, which the live extension labels read.
CREATE OR REPLACE FUNCTION pgdurable.explain_instance_nodes(p_instance_id text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_object_agg(n.id, jsonb_build_object(
               'type', n.node_type,
               'query', n.query,
               'name', n.result_name,
               'left', n.left_node,
               'right', n.right_node,
               'cond', CASE WHEN n.node_type IN ('IF', 'LOOP')
                            THEN pgdurable.json_str(pgdurable.jsonb_or_null(n.query), 'condition_node') END,
               'extras', CASE WHEN n.node_type = 'JOIN' THEN
                   to_jsonb(pgdurable.node_children('JOIN', n.query, NULL, NULL)) END,
               'extra_count', CASE WHEN n.node_type = 'JOIN' THEN
                   (SELECT jsonb_array_length(c -> 'extra_nodes')
                    FROM (SELECT pgdurable.jsonb_or_null(n.query) AS c) q
                    WHERE jsonb_typeof(c -> 'extra_nodes') = 'array') END,
               'status', coalesce(inf.inferred_status, n.status),
               'details', n.status_details))
    FROM df.nodes n
    LEFT JOIN pgdurable.node_inference(p_instance_id) inf ON inf.node_id = n.id
    WHERE n.instance_id = p_instance_id
$$;

-- As in 0004; extension types are accepted, the message keeps the reference's list.
CREATE OR REPLACE FUNCTION pgdurable.explain_durofut_nodes(node jsonb, path text, depth integer,
                                                INOUT nodes jsonb, INOUT error text)
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    node_type text := node ->> 'node_type';
    children jsonb := '[]';
    child record;
    extras jsonb := '[]';
BEGIN
    IF error IS NOT NULL THEN
        RETURN;
    END IF;
    IF depth > 256 THEN
        error := path || ': Graph exceeds maximum nesting depth of 256. Simplify the workflow or break it into multiple instances.';
        RETURN;
    END IF;
    IF NOT node_type = ANY (pgdurable.dsl_valid_node_types()) THEN
        error := format('%s: Unknown node_type ''%s''. Valid types: %s', path, node_type,
                        array_to_string(pgdurable.explain_node_types(), ', '));
        RETURN;
    END IF;
    IF node_type = 'IF' AND pgdurable.jsonb_or_null(node ->> 'query') ? 'condition_node' THEN
        error := path || ': condition_node in IF must be a first-class Durofut field, not embedded in query';
        RETURN;
    END IF;

    -- Children in the order df.start numbers them: left, right, condition, extras.
    IF jsonb_typeof(node -> 'left_node') = 'object' THEN
        children := children || jsonb_build_array(jsonb_build_array(path || '.left', node -> 'left_node'));
    END IF;
    IF jsonb_typeof(node -> 'right_node') = 'object' THEN
        children := children || jsonb_build_array(jsonb_build_array(path || '.right', node -> 'right_node'));
    END IF;
    IF node_type IN ('IF', 'LOOP') AND jsonb_typeof(node -> 'condition_node') = 'object' THEN
        children := children
            || jsonb_build_array(jsonb_build_array(path || '.condition_node', node -> 'condition_node'));
    END IF;
    IF node_type = 'JOIN' AND jsonb_typeof(node -> 'extra_nodes') = 'array' THEN
        SELECT coalesce(jsonb_agg(jsonb_build_array(path || '.extra_nodes[' || (ord - 1) || ']', e) ORDER BY ord), '[]')
        INTO extras
        FROM jsonb_array_elements(node -> 'extra_nodes') WITH ORDINALITY AS x(e, ord);
        children := children || extras;
    END IF;

    -- A child that does not deserialize fails at the parent, before any
    -- grandchild is looked at.
    FOR child IN SELECT c ->> 0 AS child_path, c -> 1 AS child_node FROM jsonb_array_elements(children) c LOOP
        IF pgdurable.durofut_shape_error(child.child_node) IS NOT NULL THEN
            error := child.child_path || ': ' || pgdurable.durofut_shape_error(child.child_node);
            RETURN;
        END IF;
    END LOOP;

    nodes := nodes || jsonb_build_object(path, jsonb_build_object(
        'type', node_type,
        'query', node ->> 'query',
        'name', node ->> 'result_name',
        'left', CASE WHEN jsonb_typeof(node -> 'left_node') = 'object' THEN path || '.left' END,
        'right', CASE WHEN jsonb_typeof(node -> 'right_node') = 'object' THEN path || '.right' END,
        'cond', CASE WHEN node_type IN ('IF', 'LOOP') AND jsonb_typeof(node -> 'condition_node') = 'object'
                     THEN path || '.condition_node' END,
        'extras', (SELECT coalesce(jsonb_agg(x ->> 0), '[]') FROM jsonb_array_elements(extras) x),
        'extra_count', jsonb_array_length(extras)));

    FOR child IN SELECT c ->> 0 AS child_path, c -> 1 AS child_node FROM jsonb_array_elements(children) c LOOP
        SELECT r.nodes, r.error INTO nodes, error
        FROM pgdurable.explain_durofut_nodes(child.child_node, child.child_path, depth + 1, nodes, error) r;
        IF error IS NOT NULL THEN
            RETURN;
        END IF;
    END LOOP;
END;
$$;

-- As in 0004, and expressions calling pgdurable.* constructors are evaluated too.
CREATE OR REPLACE FUNCTION df.explain(input text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    expr text := pg_catalog.regexp_replace(input, '^\s+|\s+$', '', 'g');
    parsed jsonb;
    evaluated record;
BEGIN
    IF expr ~ '^[0-9a-fA-F]{8}$' THEN
        RETURN pgdurable.explain_instance(expr);
    END IF;

    parsed := pgdurable.jsonb_or_null(expr);
    IF pgdurable.durofut_shape_error(parsed) IS NULL THEN
        RETURN pgdurable.explain_durofut(parsed);
    END IF;

    IF pg_catalog.strpos(expr, '~>') > 0 OR pg_catalog.strpos(expr, '|=>') > 0
       OR pg_catalog.strpos(expr, '?>') > 0 OR pg_catalog.strpos(expr, '!>') > 0
       OR pg_catalog.strpos(expr, '@>') > 0 OR pg_catalog.strpos(expr, 'df.') > 0
       OR pg_catalog.strpos(expr, 'pgdurable.') > 0 THEN
        SELECT * INTO evaluated FROM pgdurable.explain_evaluate(expr);
        IF evaluated.error IS NOT NULL THEN
            RETURN 'Failed to evaluate expression: ' || evaluated.error;
        END IF;
        IF evaluated.value IS NULL THEN
            RETURN 'Expression returned NULL';
        END IF;
        parsed := pgdurable.jsonb_or_null(evaluated.value);
        IF pgdurable.durofut_shape_error(parsed) IS NOT NULL THEN
            RETURN 'Failed to parse Durofut JSON: '
                || coalesce(CASE WHEN parsed IS NULL THEN 'expected value: not valid JSON' END,
                            pgdurable.durofut_shape_error(parsed));
        END IF;
        RETURN pgdurable.explain_durofut(parsed);
    END IF;

    -- A bare statement is one SQL node (so 'SELECT 1' is not run as 'SELECT SELECT 1').
    IF pg_catalog.upper(expr) ~ '^(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|CALL|DO|TRUNCATE|GRANT|REVOKE|EXPLAIN) '
       OR pg_catalog.upper(expr) ~ E'^(SELECT|INSERT|UPDATE|DELETE|WITH)\n' THEN
        RETURN pgdurable.explain_durofut(pg_catalog.jsonb_build_object('node_type', 'SQL', 'query', expr));
    END IF;

    RETURN 'Cannot explain input: not a valid Durofut JSON, instance ID, SQL statement, or DSL expression.'
        || E'\n' || 'Hint: DSL expressions use df.*() functions and operators like ~>, |=>, &, |.';
END;
$$;
