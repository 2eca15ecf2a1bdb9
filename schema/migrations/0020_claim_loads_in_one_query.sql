-- A claim loads the instances it claimed in one query (issue 22). claim_v3
-- (0011) called load_v1 once per claimed run, in a plpgsql loop. load_v1 is
-- a SQL function with a SET clause: never inlined, and its body is planned
-- again at every call (plpgsql keeps its plans for the session), so a call
-- cost several times the query it ran (pg_stat_user_functions over 2 000
-- one-step workflows: 0.11 ms a call, of which 0.03 ms the query; ten calls
-- 2.9 ms against 0.2 ms for load_v2 of ten).
--
-- load_v2 builds the documents of many instances at once, in load_v1's
-- shape (NULL for an id that names no instance), one row per id in order; load_v1 becomes a call of it, so the shape lives in one place.
-- claim_v3 is rewritten in place, from its own definition, with only its
-- final loop replaced: same arguments, same rows, same order.

CREATE FUNCTION pgdurable.load_v2(p_instances text[])
RETURNS TABLE (instance_id text, instance json)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- One index probe per id (a subquery per element): with = ANY the planner
    -- scans a small df.instances whole, which costs more than the probes.
    RETURN QUERY
    SELECT u.id, (
        SELECT json_build_object(
            'id', i.id, 'label', i.label, 'root', i.root_node, 'status', i.status,
            'role', r.rolname, 'role_exists', r.rolname IS NOT NULL,
            'role_super', coalesce(r.rolsuper, false),
            -- Read from pg_settings (a scan of every setting) only when it matters.
            'super_allowed', CASE WHEN r.rolsuper THEN pgdurable.superuser_instances_enabled()
                                  ELSE false END,
            'database', i.database, 'control_database', current_database(),
            'vars', coalesce((SELECT v.vars FROM pgdurable.instance_vars v
                              WHERE v.instance_id = i.id), '{}'::jsonb),
            'nodes', (SELECT json_agg(json_build_object(
                          'id', n.id, 'type', n.node_type, 'query', n.query,
                          'name', n.result_name, 'left', n.left_node, 'right', n.right_node,
                          'status', n.status, 'exec', n.status_details ->> 'execution_id'))
                      FROM df.nodes n WHERE n.instance_id = i.id),
            'journal', (SELECT coalesce(json_agg(json_build_object(
                            'scope', j.scope, 'gen', j.gen, 'node', j.node_id,
                            'outcome', j.outcome, 'result', j.result::text, 'error', j.error,
                            'named', j.named_results::text)), '[]')
                        FROM pgdurable.journal j WHERE j.instance_id = i.id))
        FROM df.instances i
        LEFT JOIN pg_catalog.pg_roles r ON r.oid = i.submitted_by
        WHERE i.id = u.id)
    FROM unnest(p_instances) AS u(id);
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.load_v2(text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION pgdurable.load_v1(p_instance text) RETURNS json
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT l.instance FROM pgdurable.load_v2(ARRAY[p_instance]) l);
END;
$$;

DO $migration$
DECLARE
    definition text := pg_get_functiondef(
        'pgdurable.claim_v3(text, bytea, integer, jsonb, double precision)'::regprocedure);
    fixed text;
BEGIN
    fixed := replace(
        definition,
        $old$    FOR k IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        instance_id := ids[k];
        epoch := epochs[k];
        role_oid := roles[k];
        instance := pgdurable.load_v1(ids[k]);
        RETURN NEXT;
    END LOOP;$old$,
        $new$    -- In claim order (ids is sorted by wake time); an instance removed
    -- meanwhile comes back with no document, as load_v1 returned NULL.
    -- load_v2 returns one row per id, in the order of ids.
    RETURN QUERY
    SELECT c.id::varchar(8), c.epoch, c.role, l.instance
    FROM unnest(ids, epochs, roles) WITH ORDINALITY AS c(id, epoch, role, k)
    JOIN pgdurable.load_v2(ids) WITH ORDINALITY AS l(instance_id, instance, k) USING (k)
    ORDER BY c.k;$new$
    );
    IF fixed = definition THEN
        RAISE EXCEPTION 'claim_v3: the loading loop to replace was not found';
    END IF;
    EXECUTE fixed;
END
$migration$;
