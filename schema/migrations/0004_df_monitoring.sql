-- Monitoring and df.explain of pg_durable 0.2.6 (SPEC B §3 "Monitoring" and
-- "Other", §7), in SQL and PL/pgSQL, plus pgdurable.executions, the execution
-- history the worker keeps for them.
--
-- Everything here only reads. The functions are SECURITY INVOKER (except
-- df.metrics and df.version, see there), so df.instances' row-level security
-- decides what a caller sees, exactly as SPI under RLS does in the reference.
-- A caller needs USAGE on schema pgdurable and SELECT on pgdurable.executions,
-- which df.grant_usage hands out.
--
-- Where the reference asks duroxide (its engine) for the orchestration's
-- name, execution count, status and output, we read pgdurable.executions, and
-- when the worker has written no row for an instance yet we derive the same
-- values from df.nodes (root result, node stamps), so the views are never
-- empty just because the history is.
--
-- Functions pin search_path and schema-qualify what they call (CVE-2018-1058),
-- except df.explain and its evaluator, which must see the caller's search_path
-- to evaluate a DSL expression the way the caller would.

-- ---------------------------------------------------------------------------
-- Execution history
-- ---------------------------------------------------------------------------

-- One row per generation of an instance's root orchestration: execution 1,
-- then one more for each root-loop iteration (continue-as-new).
--
-- Contract for the worker, which writes this table with a privileged role
-- (superuser or BYPASSRLS; callers only ever get SELECT):
--   * INSERT (instance_id, execution_id, status 'Running', started_at) when a
--     generation starts; execution_id is 1 for the first and +1 for each
--     continue-as-new, matching the <gen> of the root scope in node stamps.
--   * On its end, UPDATE status to 'Completed' (output = the root result as
--     text), 'Failed' (output = the error text; a cancelled run is 'Failed'
--     too, as duroxide records it) or 'ContinuedAsNew' (output = the
--     iteration's body result, or NULL), and set completed_at.
--   * event_count is the number of journal events the generation recorded
--     (steps scheduled and completed, timers, signals); df.metrics sums it.
-- Status values are duroxide's execution statuses, which is what the
-- reference's df.instance_executions and df.explain header show.
CREATE TABLE pgdurable.executions (
    instance_id  varchar(8)  NOT NULL REFERENCES df.instances (id) ON DELETE CASCADE,
    execution_id integer     NOT NULL CHECK (execution_id >= 1),
    status       text        NOT NULL DEFAULT 'Running'
        CHECK (status IN ('Running', 'Completed', 'Failed', 'ContinuedAsNew')),
    event_count  integer     NOT NULL DEFAULT 0 CHECK (event_count >= 0),
    started_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    completed_at timestamptz,
    output       text,
    PRIMARY KEY (instance_id, execution_id)
);
COMMENT ON TABLE pgdurable.executions IS
    'One row per root generation of an instance (written by the worker; read by df monitoring)';

-- A row is visible exactly when its instance is (the subquery applies the
-- policy of df.instances). Not forced: the owner and the worker bypass it.
ALTER TABLE pgdurable.executions ENABLE ROW LEVEL SECURITY;
CREATE POLICY executions_follow_instance ON pgdurable.executions FOR SELECT
    USING (EXISTS (SELECT 1 FROM df.instances i WHERE i.id = instance_id));

-- ---------------------------------------------------------------------------
-- Small helpers
-- ---------------------------------------------------------------------------

-- JSON text parsed, or NULL when it is not JSON (node configs are free text).
CREATE FUNCTION pgdurable.jsonb_or_null(value text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN value::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

-- A string field of a JSON object, or NULL when absent or not a string (the
-- reference reads configs with serde's as_str()).
CREATE FUNCTION pgdurable.json_str(doc jsonb, key text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN jsonb_typeof(doc) = 'object' AND jsonb_typeof(doc -> key) = 'string'
                THEN doc ->> key END
$$;

-- Text cut to at most keep_bytes bytes plus '...' when longer than max_bytes
-- bytes. The reference slices bytes; we back off to a character boundary
-- where it would fail on a multi-byte character.
CREATE FUNCTION pgdurable.cut_bytes(value text, max_bytes integer, keep_bytes integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kept text;
BEGIN
    IF value IS NULL OR octet_length(value) <= max_bytes THEN
        RETURN value;
    END IF;
    kept := left(value, keep_bytes);
    WHILE octet_length(kept) > keep_bytes LOOP
        kept := left(kept, -1);
    END LOOP;
    RETURN kept || '...';
END;
$$;

-- ---------------------------------------------------------------------------
-- Node stamps and inferred status (SPEC §7 "Inference")
-- ---------------------------------------------------------------------------

-- A node's stamp {"execution_id":"<scope>::<gen>"} split into scope and gen;
-- both NULL when the node was never stamped or the stamp does not parse. A
-- scope is the root instance id, or for a child orchestration
-- <parent scope>::<parent gen>::<child root node>.
CREATE FUNCTION pgdurable.stamp_parts(status_details jsonb, OUT scope text, OUT gen bigint)
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parts text[];
    tokens text[];
    i integer;
BEGIN
    -- The generation is whatever follows the last '::'.
    parts := regexp_match(pgdurable.json_str(status_details, 'execution_id'), '^(.*)::(.*)$');
    IF parts IS NULL OR parts[2] !~ '^[+-]?[0-9]{1,18}$' THEN
        RETURN;
    END IF;
    -- The scope must be a root id followed by (generation, node id) pairs.
    tokens := string_to_array(parts[1], '::');
    IF coalesce(cardinality(tokens), 0) % 2 = 0 OR tokens[1] = '' THEN
        RETURN;
    END IF;
    FOR i IN 2 .. cardinality(tokens) - 1 BY 2 LOOP
        IF tokens[i] !~ '^[+-]?[0-9]{1,18}$' OR tokens[i + 1] = '' THEN
            RETURN;
        END IF;
    END LOOP;
    scope := parts[1];
    gen := parts[2]::bigint;
END;
$$;

-- A stamp is superseded when a newer generation of its scope exists, or when
-- the generation of an enclosing scope that spawned it has been superseded
-- (a child of an older loop iteration). scope_max maps scope -> highest gen.
CREATE FUNCTION pgdurable.stamp_superseded(scope text, gen bigint, scope_max jsonb)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tokens text[];
    n integer;
BEGIN
    LOOP
        IF (scope_max ->> scope)::bigint > gen THEN
            RETURN true;
        END IF;
        tokens := string_to_array(scope, '::');
        n := cardinality(tokens);
        IF n < 3 THEN
            RETURN false;
        END IF;
        gen := tokens[n - 1]::bigint;
        scope := array_to_string(tokens[1 : n - 2], '::');
    END LOOP;
END;
$$;

-- The children the inference walk descends into, in the reference's order.
CREATE FUNCTION pgdurable.node_children(node_type text, query text, left_node text, right_node text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    config jsonb;
BEGIN
    CASE upper(node_type)
        WHEN 'THEN', 'RACE' THEN
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

-- Inferred status of every visible node of an instance (shared by
-- df.instance_nodes and df.explain). Walks down from the root carrying NTA,
-- the nearest ancestor that is terminal and not superseded:
--   terminal, current generation  -> stored status
--   terminal, superseded          -> 'skipped' under an NTA, else 'pending'
--                                    (it will run again)
--   not terminal                  -> 'skipped' under an NTA, else stored
--                                    running/pending
-- from_ancestor_id names the NTA, or for a superseded node without one the
-- ancestor with the highest stamped generation. Nodes the walk does not reach
-- keep their stored status.
CREATE FUNCTION pgdurable.node_inference(p_instance_id text)
RETURNS TABLE (node_id text, inferred_status text, from_ancestor_id text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE facts AS (
        SELECT n.id::text AS id, n.node_type, n.query, n.left_node::text AS left_node,
               n.right_node::text AS right_node, n.status, s.scope, s.gen
        FROM df.nodes n
        CROSS JOIN LATERAL pgdurable.stamp_parts(n.status_details) s
        WHERE n.instance_id = p_instance_id
    ),
    scope_max AS (
        SELECT coalesce(jsonb_object_agg(scope, top_gen), '{}'::jsonb) AS m
        FROM (SELECT scope, max(gen) AS top_gen FROM facts WHERE scope IS NOT NULL GROUP BY scope) x
    ),
    judged AS (
        SELECT f.*,
               f.status IN ('completed', 'failed') AS terminal,
               f.scope IS NOT NULL AND pgdurable.stamp_superseded(f.scope, f.gen, sm.m) AS superseded
        FROM facts f CROSS JOIN scope_max sm
    ),
    edges AS (
        SELECT j.id AS parent, c.child
        FROM judged j
        CROSS JOIN LATERAL unnest(pgdurable.node_children(j.node_type, j.query, j.left_node, j.right_node)) AS c(child)
    ),
    -- One row per reached node with what its ancestors decided; path guards
    -- against cycles in hand-made rows.
    walk (id, nta, anc_gen, anc_id, path) AS (
        SELECT i.root_node::text, NULL::text, NULL::bigint, NULL::text, ARRAY[i.root_node::text]
        FROM df.instances i
        WHERE i.id = p_instance_id
        UNION ALL
        SELECT e.child,
               CASE WHEN j.terminal AND NOT j.superseded THEN j.id ELSE w.nta END,
               CASE WHEN j.gen IS NOT NULL AND (w.anc_gen IS NULL OR j.gen >= w.anc_gen)
                    THEN j.gen ELSE w.anc_gen END,
               CASE WHEN j.gen IS NOT NULL AND (w.anc_gen IS NULL OR j.gen >= w.anc_gen)
                    THEN j.id ELSE w.anc_id END,
               w.path || e.child
        FROM walk w
        JOIN judged j ON j.id = w.id
        JOIN edges e ON e.parent = w.id
        WHERE e.child <> ALL (w.path)
    ),
    reached AS (
        SELECT DISTINCT ON (id) * FROM walk ORDER BY id, cardinality(path)
    )
    SELECT j.id,
           CASE WHEN r.id IS NULL THEN coalesce(j.status, 'pending')
                WHEN j.terminal AND NOT j.superseded THEN j.status
                WHEN j.terminal THEN CASE WHEN r.nta IS NOT NULL THEN 'skipped' ELSE 'pending' END
                WHEN r.nta IS NOT NULL THEN 'skipped'
                WHEN j.status = 'running' THEN 'running'
                ELSE 'pending' END,
           CASE WHEN r.id IS NULL OR (j.terminal AND NOT j.superseded) THEN NULL
                WHEN j.terminal THEN coalesce(r.nta, r.anc_id)
                ELSE r.nta END
    FROM judged j
    LEFT JOIN reached r ON r.id = j.id
$$;

-- ---------------------------------------------------------------------------
-- Execution summary shared by list_instances, instance_info, explain, metrics
-- ---------------------------------------------------------------------------

-- execution_count: 1 + root-loop iterations; engine_status: the current
-- generation's status in duroxide's words (NULL without history); output:
-- the root result, or the error text of a failed run.
CREATE FUNCTION pgdurable.instance_summary(p_instance_id text, OUT execution_count bigint,
                                           OUT engine_status text, OUT output text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    instance_status text;
    root_status text;
    root_result jsonb;
    derived_output text;
    current_execution record;
BEGIN
    SELECT i.status, n.status, n.result INTO instance_status, root_status, root_result
    FROM df.instances i
    LEFT JOIN df.nodes n ON n.instance_id = i.id AND n.id = i.root_node
    WHERE i.id = p_instance_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The root node holds the run's result, or its error text as a JSON string
    -- (failures stamp every ancestor with the error; node.error is never written).
    IF instance_status = 'completed' AND root_status = 'completed' THEN
        derived_output := root_result::text;
    ELSIF instance_status = 'failed' AND root_status = 'failed' THEN
        derived_output := CASE WHEN jsonb_typeof(root_result) = 'string' THEN root_result #>> '{}'
                               ELSE root_result::text END;
    END IF;
    output := derived_output;

    -- With history, the current generation speaks (SELECT INTO would blank
    -- the outputs when there is no row, hence the record).
    SELECT e.execution_id, e.status, e.output INTO current_execution
    FROM pgdurable.executions e
    WHERE e.instance_id = p_instance_id
    ORDER BY e.execution_id DESC
    LIMIT 1;
    IF FOUND THEN
        execution_count := current_execution.execution_id;
        engine_status := current_execution.status;
        output := coalesce(current_execution.output, derived_output);
    ELSE
        -- No history yet: the root scope's highest stamped generation.
        SELECT greatest(1, coalesce(max(s.gen), 1)) INTO execution_count
        FROM df.nodes n
        CROSS JOIN LATERAL pgdurable.stamp_parts(n.status_details) s
        WHERE n.instance_id = p_instance_id AND s.scope = p_instance_id;
    END IF;
END;
$$;

-- ---------------------------------------------------------------------------
-- df.list_instances
-- ---------------------------------------------------------------------------

-- limit_count checks shared by both overloads. pg_durable.list_instances_max_limit
-- is superuser-only in the reference; a plain SQL schema cannot restrict who
-- SETs a custom setting, so here any role can raise its own cap.
CREATE FUNCTION pgdurable.check_list_limit(limit_count integer) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    setting text := btrim(current_setting('pg_durable.list_instances_max_limit', true));
    max_limit integer := 1000;
BEGIN
    IF setting ~ '^[0-9]{1,9}$' AND setting::integer >= 1 THEN
        max_limit := setting::integer;
    END IF;
    IF limit_count IS NULL OR limit_count < 1 THEN
        RAISE EXCEPTION 'limit_count must be at least 1';
    END IF;
    IF limit_count > max_limit THEN
        RAISE EXCEPTION 'limit_count % exceeds pg_durable.list_instances_max_limit (%)', limit_count, max_limit
            USING HINT = 'Lower limit_count, or page through the instances with the paginated overload (after_cursor/next_cursor).';
    END IF;
END;
$$;

-- Basic overload: 0-2 arguments. The paginated one has no defaults on its
-- first three parameters, so the two never compete for a call.
CREATE FUNCTION df.list_instances(status_filter text DEFAULT NULL, limit_count integer DEFAULT 100)
RETURNS TABLE (instance_id text, label text, function_name text, status text,
               execution_count bigint, output text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.check_list_limit(limit_count);
    RETURN QUERY
    SELECT p.id, p.label, 'pg_durable::orchestration::execute-function-graph'::text, p.status,
           s.execution_count, s.output
    FROM (SELECT i.id::text AS id, i.label, i.status, i.created_at
          FROM df.instances i
          WHERE status_filter IS NULL OR i.status = status_filter
          ORDER BY i.created_at DESC, i.id
          LIMIT limit_count) p
    CROSS JOIN LATERAL pgdurable.instance_summary(p.id) s
    ORDER BY p.created_at DESC, p.id;
END;
$$;

-- The keyset cursor: hex of 'v1|<created_at as to_char ISO text>|<id>'.
-- Anything that is not exactly such a token raises, so a client never
-- silently restarts from the first page.
CREATE FUNCTION pgdurable.decode_list_cursor(cursor text, OUT created_at timestamptz, OUT id text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    raw text;
    parts text[];
BEGIN
    IF cursor IS NULL OR cursor = '' OR length(cursor) > 512 OR length(cursor) % 2 <> 0
       OR cursor !~ '^[0-9a-fA-F]+$' THEN
        RAISE EXCEPTION 'df.list_instances: invalid after_cursor';
    END IF;
    BEGIN
        raw := convert_from(decode(cursor, 'hex'), 'UTF8');
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'df.list_instances: invalid after_cursor';
    END;
    parts := regexp_match(raw, '^v1\|([^|]+)\|(.+)$');
    IF parts IS NULL OR parts[1] !~
       '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}[+-][0-9]{2}(:[0-9]{2})?$' THEN
        RAISE EXCEPTION 'df.list_instances: invalid after_cursor';
    END IF;
    BEGIN
        created_at := parts[1]::timestamptz;
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'df.list_instances: invalid after_cursor';
    END;
    id := parts[2];
END;
$$;

-- Paginated overload: filters, timestamps and a keyset cursor over
-- (created_at DESC, id ASC). One extra row is read to learn whether another
-- page exists; next_cursor points after this page's last row.
CREATE FUNCTION df.list_instances(status_filter text, limit_count integer, label_filter text,
                                  after_cursor text DEFAULT NULL)
RETURNS TABLE (instance_id text, label text, function_name text, status text,
               execution_count bigint, output text, created_at timestamptz,
               completed_at timestamptz, next_cursor text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    after_ts timestamptz;
    after_id text;
BEGIN
    PERFORM pgdurable.check_list_limit(limit_count);
    IF after_cursor IS NOT NULL THEN
        SELECT c.created_at, c.id INTO after_ts, after_id FROM pgdurable.decode_list_cursor(after_cursor) c;
    END IF;
    RETURN QUERY
    WITH candidates AS (
        SELECT i.id::text AS id, i.label, i.status, i.created_at, i.completed_at,
               to_char(i.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.USOF') AS created_text
        FROM df.instances i
        WHERE i.created_at IS NOT NULL
          AND (status_filter IS NULL OR i.status = status_filter)
          AND (label_filter IS NULL OR i.label = label_filter)
          AND (after_ts IS NULL
               OR (i.created_at <= after_ts
                   AND (i.created_at < after_ts OR (i.created_at = after_ts AND i.id > after_id))))
        ORDER BY i.created_at DESC, i.id
        LIMIT limit_count::bigint + 1
    ),
    numbered AS (
        SELECT c.*, row_number() OVER (ORDER BY c.created_at DESC, c.id) AS rn FROM candidates c
    ),
    page_cursor AS (
        SELECT encode(convert_to('v1|' || n.created_text || '|' || n.id, 'UTF8'), 'hex') AS token
        FROM numbered n
        WHERE n.rn = limit_count AND EXISTS (SELECT 1 FROM numbered m WHERE m.rn > limit_count)
    )
    SELECT n.id, n.label, 'pg_durable::orchestration::execute-function-graph'::text, n.status,
           s.execution_count, s.output, n.created_at, n.completed_at,
           (SELECT pc.token FROM page_cursor pc)
    FROM numbered n
    CROSS JOIN LATERAL pgdurable.instance_summary(n.id) s
    WHERE n.rn <= limit_count
    ORDER BY n.rn;
END;
$$;

-- ---------------------------------------------------------------------------
-- df.instance_info, df.instance_executions, df.metrics
-- ---------------------------------------------------------------------------

-- function_version is the version duroxide registers the orchestration under
-- (its default, 1.0.0). No row for an unknown or hidden instance.
CREATE FUNCTION df.instance_info(instance_id text)
RETURNS TABLE (instance_id text, label text, function_name text, function_version text,
               current_execution_id bigint, status text, output text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT i.id::text, i.label, 'pg_durable::orchestration::execute-function-graph'::text,
           '1.0.0'::text, s.execution_count, i.status, s.output
    FROM df.instances i
    CROSS JOIN LATERAL pgdurable.instance_summary(i.id) s
    WHERE i.id = $1
$$;

-- Newest first. Without history rows (no worker has written any yet) the
-- generations are reconstructed from df.instances and the node stamps:
-- earlier ones ContinuedAsNew, the current one by the instance's status;
-- event counts are then unknown (0). A pending instance has none.
CREATE FUNCTION df.instance_executions(instance_id text, limit_count integer DEFAULT 5)
RETURNS TABLE (execution_id bigint, status text, event_count bigint, duration_ms bigint, output text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    inst record;
    summary record;
BEGIN
    IF limit_count IS NULL OR limit_count < 1 THEN
        RAISE EXCEPTION 'limit_count must be at least 1';
    END IF;
    SELECT i.id, i.status, i.created_at, i.completed_at INTO inst FROM df.instances i WHERE i.id = $1;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    IF EXISTS (SELECT 1 FROM pgdurable.executions e WHERE e.instance_id = inst.id) THEN
        RETURN QUERY
        SELECT e.execution_id::bigint, e.status, e.event_count::bigint,
               CASE WHEN e.completed_at IS NULL THEN 0::bigint
                    ELSE greatest(0, floor(extract(epoch FROM e.completed_at - e.started_at) * 1000))::bigint END,
               e.output
        FROM pgdurable.executions e
        WHERE e.instance_id = inst.id
        ORDER BY e.execution_id DESC
        LIMIT least(limit_count, 10000);
        RETURN;
    END IF;

    IF inst.status = 'pending' THEN
        RETURN;
    END IF;
    SELECT * INTO summary FROM pgdurable.instance_summary(inst.id);
    RETURN QUERY
    SELECT g::bigint,
           CASE WHEN g < summary.execution_count THEN 'ContinuedAsNew'
                WHEN inst.status = 'completed' THEN 'Completed'
                WHEN inst.status IN ('failed', 'cancelled') THEN 'Failed'
                ELSE 'Running' END,
           0::bigint,
           CASE WHEN g = summary.execution_count AND inst.completed_at IS NOT NULL
                THEN greatest(0, floor(extract(epoch FROM inst.completed_at - inst.created_at) * 1000))::bigint
                ELSE 0::bigint END,
           CASE WHEN g = summary.execution_count THEN summary.output END
    FROM generate_series(summary.execution_count, 1, -1) AS g
    LIMIT least(limit_count, 10000);
END;
$$;

-- System-wide counts, so SECURITY DEFINER (it reads past RLS) and not
-- executable by PUBLIC; df.grant_usage(..., with_grant => true) hands it out.
-- Running counts pending instances too (their orchestration is queued);
-- failed counts cancelled ones, which the engine records as failed.
CREATE FUNCTION df.metrics()
RETURNS TABLE (total_instances bigint, running_instances bigint, completed_instances bigint,
               failed_instances bigint, total_executions bigint, total_events bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*),
           count(*) FILTER (WHERE i.status IN ('pending', 'running')),
           count(*) FILTER (WHERE i.status = 'completed'),
           count(*) FILTER (WHERE i.status IN ('failed', 'cancelled')),
           coalesce(sum(s.execution_count), 0)::bigint,
           (SELECT coalesce(sum(e.event_count), 0)::bigint FROM pgdurable.executions e)
    FROM df.instances i
    CROSS JOIN LATERAL pgdurable.instance_summary(i.id) s
$$;
REVOKE EXECUTE ON FUNCTION df.metrics() FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- df.instance_nodes
-- ---------------------------------------------------------------------------

-- One row per visible node: stored status plus the inferred one. Ordered by
-- node id for stable output (the reference's order is a hash map's).
CREATE FUNCTION df.instance_nodes(instance_id_param text)
RETURNS TABLE (node_id text, node_type text, query text, result_name text, left_node text,
               right_node text, status text, result text, status_details text,
               inferred_status text, inferred_status_from_ancestor_id text,
               updated_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.id::text, n.node_type, n.query, n.result_name, n.left_node::text, n.right_node::text,
           n.status, n.result::text, n.status_details::text,
           coalesce(inf.inferred_status, n.status, 'pending'), inf.from_ancestor_id, n.updated_at
    FROM df.nodes n
    LEFT JOIN pgdurable.node_inference($1) inf ON inf.node_id = n.id
    WHERE n.instance_id = $1
    ORDER BY n.id
$$;

-- The pre-0.2.4 shape: a plain projection with execution_id 1; the second
-- argument is accepted and ignored.
CREATE FUNCTION df.instance_nodes(instance_id_param text, last_n_executions integer)
RETURNS TABLE (execution_id bigint, node_id text, node_type text, query text, result_name text,
               left_node text, right_node text, status text, result text, updated_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 1::bigint, n.id::text, n.node_type, n.query, n.result_name, n.left_node::text,
           n.right_node::text, n.status, n.result::text, n.updated_at
    FROM df.nodes n
    WHERE n.instance_id = $1
    ORDER BY n.id
$$;

-- ---------------------------------------------------------------------------
-- df.explain
-- ---------------------------------------------------------------------------
--
-- Both sources (a stored instance, a Durofut value) are first turned into the
-- same flat map, id -> {type, query, name, left, right, cond, extras,
-- extra_count, status}, and one renderer draws it.

CREATE FUNCTION pgdurable.explain_marker(status text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE status
        WHEN 'completed' THEN ' ✓'
        WHEN 'failed' THEN ' ✗'
        WHEN 'running' THEN ' ⏳'
        WHEN 'pending' THEN ' ○'
        WHEN 'skipped' THEN ' ⊘'
        ELSE '' END
$$;

-- One node's label. Named nodes get a ' |=> ''name''' suffix, except RACE and
-- THEN (which the reference renders without it).
CREATE FUNCTION pgdurable.explain_label(node jsonb) RETURNS text
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
        ELSE
            RETURN node ->> 'type';
    END CASE;
END;
$$;

-- The steps of a THEN chain, nested THENs flattened, in execution order.
CREATE FUNCTION pgdurable.explain_sequence(node_id text, nodes jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    node jsonb := nodes -> node_id;
BEGIN
    IF node IS NULL THEN
        RETURN ARRAY[]::text[];
    END IF;
    IF node ->> 'type' <> 'THEN' THEN
        RETURN ARRAY[node_id];
    END IF;
    RETURN pgdurable.explain_sequence(node ->> 'left', nodes)
        || pgdurable.explain_sequence(node ->> 'right', nodes);
END;
$$;

-- The labelled child blocks under a node ('↻ body:', '? condition:', ...),
-- each subtree two columns deeper.
CREATE FUNCTION pgdurable.explain_children(node jsonb, nodes jsonb, prefix text, show_status boolean)
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
        ELSE
            NULL;  -- leaves have no children
    END CASE;
    RETURN out;
END;
$$;

-- One subtree, one line per node. Below the root a line starts with
-- '└─' (or '├─' for a JOIN/RACE branch that is not the last); a THEN chain is
-- drawn as its steps, each later step starting with '→ '.
CREATE FUNCTION pgdurable.explain_subtree(node_id text, nodes jsonb, prefix text, is_last boolean,
                                          show_status boolean)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    node jsonb := nodes -> node_id;
    connector text;
    steps text[];
    step jsonb;
    out text := '';
    i integer;
BEGIN
    IF node IS NULL THEN
        RETURN '';
    END IF;
    connector := CASE WHEN prefix = '' THEN '' WHEN is_last THEN '└─' ELSE '├─' END;

    IF node ->> 'type' = 'THEN' THEN
        steps := pgdurable.explain_sequence(node_id, nodes);
        FOR i IN 1 .. coalesce(cardinality(steps), 0) LOOP
            step := nodes -> steps[i];
            out := out || prefix || CASE WHEN i = 1 THEN connector ELSE '→ ' END
                || pgdurable.explain_label(step)
                || CASE WHEN show_status THEN pgdurable.explain_marker(step ->> 'status') ELSE '' END
                || E'\n';
            IF step ->> 'type' NOT IN ('SQL', 'SLEEP', 'WAIT_SCHEDULE', 'HTTP', 'HTTP_MULTIPART') THEN
                out := out || pgdurable.explain_children(step, nodes, prefix || '    ', show_status);
            END IF;
        END LOOP;
        RETURN out;
    END IF;

    out := prefix || connector || pgdurable.explain_label(node)
        || CASE WHEN show_status THEN pgdurable.explain_marker(node ->> 'status') ELSE '' END || E'\n';
    RETURN out || pgdurable.explain_children(
        node, nodes,
        CASE WHEN prefix = '' THEN '    ' WHEN is_last THEN prefix || '    ' ELSE prefix || '│   ' END,
        show_status);
END;
$$;

-- The whole tree, every line right-padded to the longest line plus 4.
CREATE FUNCTION pgdurable.explain_tree(root_id text, nodes jsonb, show_status boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lines text[];
    width integer;
BEGIN
    lines := string_to_array(
        regexp_replace(pgdurable.explain_subtree(root_id, nodes, '', true, show_status), '\s+$', ''),
        E'\n');
    IF coalesce(cardinality(lines), 0) = 0 THEN
        RETURN '';
    END IF;
    SELECT max(char_length(regexp_replace(l, E'\r$', ''))) + 4 INTO width FROM unnest(lines) AS l;
    RETURN (SELECT string_agg(rpad(regexp_replace(l, E'\r$', ''), width), E'\n' ORDER BY ord)
            FROM unnest(lines) WITH ORDINALITY AS x(l, ord));
END;
$$;

-- A stored instance's nodes in the renderer's shape, with inferred statuses.
-- Condition and extra branches are read from the stored query config.
CREATE FUNCTION pgdurable.explain_instance_nodes(p_instance_id text) RETURNS jsonb
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
               'status', coalesce(inf.inferred_status, n.status)))
    FROM df.nodes n
    LEFT JOIN pgdurable.node_inference(p_instance_id) inf ON inf.node_id = n.id
    WHERE n.instance_id = p_instance_id
$$;

-- Header and tree of a live instance.
CREATE FUNCTION pgdurable.explain_instance(p_instance_id text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    inst record;
    summary record;
    nodes jsonb;
    status text;
BEGIN
    SELECT i.root_node::text AS root_node, i.label, i.status INTO inst
    FROM df.instances i WHERE i.id = p_instance_id;
    IF NOT FOUND THEN
        RETURN format('Instance ''%s'' not found', p_instance_id);
    END IF;
    nodes := pgdurable.explain_instance_nodes(p_instance_id);
    IF nodes IS NULL THEN
        RETURN format('No nodes found for instance ''%s''', p_instance_id);
    END IF;
    SELECT * INTO summary FROM pgdurable.instance_summary(p_instance_id);
    -- The reference shows the engine's status when it has one (e.g.
    -- 'Completed'), else df.instances.status.
    status := coalesce(nullif(summary.engine_status, ''), inst.status);
    RETURN 'Instance: ' || p_instance_id || coalesce(' (' || inst.label || ')', '') || E'\n'
        || 'Status:   ' || CASE lower(status)
                               WHEN 'completed' THEN '✓' WHEN 'continuedasnew' THEN '✓'
                               WHEN 'failed' THEN '✗' WHEN 'canceled' THEN '✗' WHEN 'cancelled' THEN '✗'
                               WHEN 'running' THEN '⏳'
                               ELSE '○' END
        || ' ' || status || E'\n'
        || coalesce('Output:   ' || pgdurable.cut_bytes(summary.output, 60, 57) || E'\n', '')
        || E'\n'
        || pgdurable.explain_tree(inst.root_node, nodes, true);
END;
$$;

CREATE FUNCTION pgdurable.explain_node_types() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY['SQL', 'THEN', 'IF', 'JOIN', 'LOOP', 'BREAK', 'RACE', 'SLEEP', 'WAIT_SCHEDULE',
                 'HTTP', 'HTTP_MULTIPART', 'SIGNAL']
$$;

-- Whether a JSON value deserializes as a Durofut: an object with a string
-- node_type whose child fields hold objects and whose text fields hold text.
-- (Children are checked only one level down, as the reference does.)
CREATE FUNCTION pgdurable.durofut_shape_error(node jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN jsonb_typeof(node) IS DISTINCT FROM 'object' THEN 'invalid type: expected a Durofut JSON object'
        WHEN NOT node ? 'node_type' THEN 'missing field `node_type`'
        WHEN jsonb_typeof(node -> 'node_type') <> 'string' THEN 'invalid type: node_type must be a string'
        WHEN jsonb_typeof(node -> 'left_node') NOT IN ('object', 'null')
          OR jsonb_typeof(node -> 'right_node') NOT IN ('object', 'null')
            THEN 'Durofut children must be JSON objects'
        WHEN jsonb_typeof(node -> 'condition_node') NOT IN ('object', 'null')
            THEN 'condition_node must be a Durofut JSON object'
        WHEN node ? 'extra_nodes' AND jsonb_typeof(node -> 'extra_nodes') <> 'array'
            THEN 'invalid type: extra_nodes must be an array'
        WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(node -> 'extra_nodes') = 'array'
                                                             THEN node -> 'extra_nodes' ELSE '[]' END) e
                     WHERE jsonb_typeof(e) <> 'object')
            THEN 'extra_nodes entries must be Durofut JSON objects'
        WHEN jsonb_typeof(node -> 'query') NOT IN ('string', 'null')
          OR jsonb_typeof(node -> 'result_name') NOT IN ('string', 'null')
            THEN 'invalid type: query and result_name must be strings'
    END
$$;

-- Flatten a nested Durofut into the renderer's map, checking it the way
-- df.start does; ids are the node paths ('root', 'root.left', ...). On the
-- first problem (in pre-order) the error is returned with its path instead.
CREATE FUNCTION pgdurable.explain_durofut_nodes(node jsonb, path text, depth integer,
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
    IF NOT node_type = ANY (pgdurable.explain_node_types()) THEN
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

-- Render a Durofut value (already known to deserialize), or its graph error.
CREATE FUNCTION pgdurable.explain_durofut(graph jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    flat record;
BEGIN
    SELECT * INTO flat FROM pgdurable.explain_durofut_nodes(graph, 'root', 0, '{}'::jsonb, NULL);
    IF flat.error IS NOT NULL THEN
        RETURN 'Invalid durable function graph: ' || flat.error;
    END IF;
    RETURN pgdurable.explain_tree('root', flat.nodes, false);
END;
$$;

-- Evaluate 'SELECT <expr>' as the caller, with df added to the end of the
-- search_path so the DSL operators resolve. No SET clause on purpose.
CREATE FUNCTION pgdurable.explain_evaluate(expr text, OUT value text, OUT error text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    saved text := pg_catalog.current_setting('search_path');
BEGIN
    PERFORM pg_catalog.set_config('search_path',
                                  CASE WHEN saved = '' THEN 'df' ELSE saved || ', df' END, true);
    BEGIN
        EXECUTE 'SELECT ' || expr INTO value;
    EXCEPTION WHEN others THEN
        error := SQLERRM;
    END;
    PERFORM pg_catalog.set_config('search_path', saved, true);
END;
$$;

-- df.explain(input): a text picture of an instance (8 hex characters) or of
-- an unstarted workflow: Durofut JSON, a DSL expression (anything with ~>,
-- |=>, ?>, !>, @> or df.), or a plain SQL statement. Problems come back as
-- text, never as an error.
CREATE FUNCTION df.explain(input text) RETURNS text
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
       OR pg_catalog.strpos(expr, '@>') > 0 OR pg_catalog.strpos(expr, 'df.') > 0 THEN
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

-- ---------------------------------------------------------------------------
-- Other
-- ---------------------------------------------------------------------------

-- The reference prints its crate version and the UTC time the extension was
-- built. Our "build" is the schema install: the time the newest migration was
-- applied ('unknown' without bookkeeping). SECURITY DEFINER because callers
-- have no privileges on pgdurable.schema_migrations.
CREATE FUNCTION df.version() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT '0.2.6 (built '
        || coalesce((SELECT to_char(max(m.applied_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                     FROM pgdurable.schema_migrations m), 'unknown')
        || ')'
$$;

-- The database the workers serve: pg_durable.database when set, otherwise
-- this one (the reference defaults to 'postgres', where its extension must
-- live; pgdurable serves the database its schema is installed in).
CREATE FUNCTION df.target_database() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(nullif(current_setting('pg_durable.database', true), ''), current_database())
$$;

-- The reference's engine schema name; pgdurable has no such schema.
CREATE FUNCTION df.duroxide_schema() RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT '_duroxide'::text
$$;

-- Kept for compatibility: workers pick up work on their own, so this only
-- answers the way the reference does.
CREATE FUNCTION df.run(instance_id text DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN $1 IS NULL THEN 'Triggered run for all pending instances'
                ELSE 'Triggered run for instance: ' || $1 END
$$;
