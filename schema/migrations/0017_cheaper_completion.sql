-- A SQL step's completion with less server work (issue 22). complete_step_v2
-- (0015) stays for workers of the previous release.
--
-- What v2 spent its time on, per step of a 10-step chain: one UPDATE of
-- df.nodes per queued stamp (1.8 a step: the THEN nodes' 'running' and
-- 'completed'), each in a plpgsql loop iteration, then one more UPDATE for the
-- step's own node, and on the last step another loop for the ancestors'
-- stamps, which overwrote the 'running' stamps just written; and nested
-- SET-search_path function calls (hold_lease, apply_stamps, on the last step
-- apply_stamps again), each saving and restoring settings. Measured with
-- pg_stat_statements over 400 steps (10-step chains, one worker): v2 took
-- 0.36-0.39 ms a call, of which 0.20 ms its node UPDATEs; v3 0.31-0.35 ms,
-- of which 0.13-0.15 ms its one UPDATE.
--
-- v3 does the same writes with one UPDATE of df.nodes: the queued stamps, the
-- step's own 'completed' stamp and (when the step finishes the instance) the
-- ancestors' stamps go through one set, in that order, and only the last
-- stamp of each node is written. The lease check and the lock order are
-- 0015's: the run row FOR UPDATE before any node row. Each stamp follows
-- apply_stamps' rule ('running' never overwrites the terminal stamp of the
-- same execution, stored or earlier in the same set).

CREATE FUNCTION pgdurable.complete_step_v3(p_instance text, p_epoch bigint, p_token bytea,
                                           p_scope text, p_gen integer, p_node text,
                                           p_result json, p_stamps jsonb,
                                           p_finish jsonb DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current_status text;
    finishing boolean;
    -- The step's own stamp; v2 wrote a NULL result as SQL NULL, so no key then.
    own jsonb := jsonb_build_object('node', p_node, 'status', 'completed',
                                    'exec', p_scope || '::' || p_gen)
                 || CASE WHEN p_result IS NULL THEN '{}'
                         ELSE jsonb_build_object('result', p_result::jsonb) END;
BEGIN
    -- hold_lease's check, inline: writers of one instance queue on the run
    -- row before touching node rows (0015).
    PERFORM 1 FROM pgdurable.runs r
    WHERE r.instance_id = p_instance AND r.epoch = p_epoch
      AND r.token_hash = sha256(p_token)
      AND r.lease_expires_at > clock_timestamp()
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgdurable: lease lost for instance % (epoch %)', p_instance, p_epoch
            USING ERRCODE = 'PD001';
    END IF;
    -- Read once the run row is held: a cancel that committed before is seen.
    current_status := (SELECT i.status FROM df.instances i WHERE i.id = p_instance);
    -- A cancelled instance is left for the worker's cancel path (as in v2).
    finishing := p_finish IS NOT NULL AND current_status IN ('pending', 'running');
    INSERT INTO pgdurable.journal (instance_id, scope, gen, node_id, outcome, result)
    VALUES (p_instance, p_scope, p_gen, p_node, 'completed', p_result);
    WITH stamps AS (
        SELECT s.value AS stamp, s.value ->> 'node' AS node, s.value ->> 'status' AS status,
               s.value ->> 'exec' AS exec, s.k
        FROM jsonb_array_elements(coalesce(p_stamps, '[]') || jsonb_build_array(own)
                                  || CASE WHEN finishing THEN p_finish ELSE '[]' END)
             WITH ORDINALITY s(value, k)
    ), last AS (
        SELECT DISTINCT ON (st.node) st.*
        FROM stamps st
        WHERE NOT (st.status = 'running' AND EXISTS (
            SELECT 1 FROM stamps t
            WHERE t.node = st.node AND t.exec = st.exec AND t.k < st.k
              AND t.status IN ('completed', 'failed')))
        ORDER BY st.node, st.k DESC
    )
    UPDATE df.nodes n
    SET status = l.status,
        result = CASE WHEN l.status = 'running' THEN NULL ELSE l.stamp -> 'result' END,
        status_details = jsonb_build_object('execution_id', l.exec)
                         || coalesce(l.stamp -> 'details', '{}'),
        updated_at = now()
    FROM last l
    WHERE n.instance_id = p_instance AND n.id = l.node
      AND NOT (l.status = 'running' AND n.status IN ('completed', 'failed')
               AND n.status_details ->> 'execution_id' = l.exec);
    IF finishing THEN
        PERFORM pgdurable.end_run(p_instance, 'completed', p_result::text);
        current_status := 'completed';
    END IF;
    RETURN current_status;
END;
$$;
-- Any role may call it: the token, not a grant, is what guards it.
GRANT EXECUTE ON FUNCTION
    pgdurable.complete_step_v3(text, bigint, bytea, text, integer, text, json, jsonb, jsonb)
    TO PUBLIC;
