-- The worker's fast path (issue 10): fewer round trips and transactions per
-- step and per instance, and claims served in the order runs became ready.
-- The _v1 functions stay for workers of the previous release.

-- ---------------------------------------------------------------------------
-- Steps: one transaction each
-- ---------------------------------------------------------------------------

-- Queued node stamps [{"node","status","exec","result"?,"details"?}], in
-- order, with stamp_nodes_v1's rule: 'running' never overwrites the terminal
-- stamp of the same execution. Callers check the lease first.
CREATE FUNCTION pgdurable.apply_stamps(p_instance text, p_stamps jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stamp jsonb;
BEGIN
    FOR stamp IN SELECT value FROM jsonb_array_elements(coalesce(p_stamps, '[]')) LOOP
        UPDATE df.nodes n
        SET status = stamp ->> 'status',
            result = CASE WHEN stamp ->> 'status' = 'running' THEN NULL ELSE stamp -> 'result' END,
            status_details = jsonb_build_object('execution_id', stamp ->> 'exec')
                             || coalesce(stamp -> 'details', '{}'),
            updated_at = now()
        WHERE n.instance_id = p_instance AND n.id = stamp ->> 'node'
          AND NOT (stamp ->> 'status' = 'running' AND n.status IN ('completed', 'failed')
                   AND n.status_details ->> 'execution_id' = stamp ->> 'exec');
    END LOOP;
END;
$$;

-- End a run (finish_v1's work after its stamps, with static SQL: finish_v1
-- reached pgdurable.executions through dynamic SQL, from when the table was
-- optional): the execution's row, the instance's terminal status (never over
-- a cancel or another terminal status) and the run row. Callers check the
-- lease first.
CREATE FUNCTION pgdurable.end_run(p_instance text, p_status text, p_output text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    execution integer;
BEGIN
    execution := coalesce((SELECT g.gen FROM pgdurable.generations g
                           WHERE g.instance_id = p_instance AND g.scope = p_instance), 1);
    INSERT INTO pgdurable.executions AS e
        (instance_id, execution_id, status, event_count, started_at, completed_at, output)
    VALUES (p_instance, execution, CASE p_status WHEN 'completed' THEN 'Completed' ELSE 'Failed' END,
            (SELECT count(*) FROM pgdurable.journal j WHERE j.instance_id = p_instance),
            now(), now(), p_output)
    ON CONFLICT (instance_id, execution_id) DO UPDATE
    SET status = excluded.status, event_count = excluded.event_count,
        completed_at = excluded.completed_at, output = excluded.output;
    UPDATE df.instances i
    SET status = p_status, updated_at = now(),
        completed_at = CASE WHEN p_status = 'completed' THEN now() END
    WHERE i.id = p_instance AND i.status IN ('pending', 'running');
    DELETE FROM pgdurable.runs r WHERE r.instance_id = p_instance;
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.apply_stamps(text, jsonb),
    pgdurable.end_run(text, text, text) FROM PUBLIC;

-- One call completes a SQL step, carrying the node stamps the worker queued
-- since its previous write, so a step costs one transaction instead of a step
-- transaction plus a stamp transaction; the last step of a workflow also
-- finishes the instance in that transaction.
--
-- Same guard as complete_step_v1 (0005): SECURITY DEFINER, and nothing is
-- written unless the caller presents the token whose sha256 the current
-- lease holds. The stamps it applies are confined to the leased instance.
-- Returns the instance's status, so the worker learns of a cancel at the
-- step boundary without another round trip.
CREATE FUNCTION pgdurable.complete_step_v2(p_instance text, p_epoch bigint, p_token bytea,
                                           p_scope text, p_gen integer, p_node text,
                                           p_result json, p_stamps jsonb,
                                           p_finish jsonb DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current_status text;
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    PERFORM pgdurable.apply_stamps(p_instance, p_stamps);
    INSERT INTO pgdurable.journal (instance_id, scope, gen, node_id, outcome, result)
    VALUES (p_instance, p_scope, p_gen, p_node, 'completed', p_result);
    UPDATE df.nodes n
    SET status = 'completed', result = p_result::jsonb,
        status_details = jsonb_build_object('execution_id', p_scope || '::' || p_gen),
        updated_at = now()
    WHERE n.instance_id = p_instance AND n.id = p_node;
    current_status := (SELECT i.status FROM df.instances i WHERE i.id = p_instance);
    -- The step that ends the workflow (the worker knows, from the graph, that
    -- nothing runs after it) finishes the instance too, with its ancestors'
    -- stamps in p_finish and its result as the output; a cancelled instance
    -- is left for the worker's cancel path.
    IF p_finish IS NOT NULL AND current_status IN ('pending', 'running') THEN
        PERFORM pgdurable.apply_stamps(p_instance, p_finish);
        PERFORM pgdurable.end_run(p_instance, 'completed', p_result::text);
        current_status := 'completed';
    END IF;
    RETURN current_status;
END;
$$;
-- Any role may call it: the token, not a grant, is what guards it.
GRANT EXECUTE ON FUNCTION
    pgdurable.complete_step_v2(text, bigint, bytea, text, integer, text, json, jsonb, jsonb)
    TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Claims: ready order, and the instance loaded in the same round trip
-- ---------------------------------------------------------------------------

-- Claims go in wake_at order. A new run used to get '-infinity', which put
-- every queued start ahead of timers that had fallen due; the time the run
-- became runnable keeps them in arrival order instead.
ALTER TABLE pgdurable.runs ALTER COLUMN wake_at SET DEFAULT clock_timestamp();

-- A signal a run waits for makes it runnable now (claim_v1 would find it
-- anyway, but only after every run with a finite wake time).
CREATE FUNCTION pgdurable.wake_on_signal() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE pgdurable.runs r SET wake_at = clock_timestamp()
    WHERE r.instance_id = NEW.instance_id AND NEW.name = ANY (r.waiting_signals)
      AND r.wake_at > clock_timestamp();
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.wake_on_signal() FROM PUBLIC;
CREATE TRIGGER signals_wake_run AFTER INSERT ON pgdurable.signals
    FOR EACH ROW EXECUTE FUNCTION pgdurable.wake_on_signal();

-- claim_v1 with a plan that stays cheap and static SQL for the monitoring row (claim_v1 reached
-- pgdurable.executions through note_execution's dynamic SQL, once per
-- claimed instance), returning each claimed instance loaded (load_v1): one
-- round trip per claim instead of one more per claimed instance. The loads
-- run after the claiming statement, so they see it.
CREATE FUNCTION pgdurable.claim_v2(worker_name text, token_hash bytea, how_many integer,
                                   lease_seconds double precision)
RETURNS TABLE (instance_id varchar(8), epoch bigint, instance json)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    ids text[];
    epochs bigint[];
BEGIN
    -- Runs only, in wake order, without claim_v1's join to df.instances for
    -- the status: under a busy queue the statistics of df.instances lag, the
    -- planner then drove the join from the instances' status index and
    -- sorted every queued run on each claim. A run whose instance was
    -- cancelled while it waited is claimed too, and the worker removes it.
    WITH candidates AS (
        SELECT r.instance_id
        FROM pgdurable.runs r
        WHERE (r.lease_expires_at IS NULL OR r.lease_expires_at < clock_timestamp())
          AND (r.wake_at <= clock_timestamp()
               OR (r.waiting_signals <> '{}' AND EXISTS (
                       SELECT 1 FROM pgdurable.signals s
                       WHERE s.instance_id = r.instance_id AND s.name = ANY (r.waiting_signals))))
        ORDER BY r.wake_at, r.instance_id
        LIMIT how_many
        FOR UPDATE OF r SKIP LOCKED
    ), claimed AS (
        UPDATE pgdurable.runs r
        SET epoch = r.epoch + 1, token_hash = claim_v2.token_hash, worker = worker_name,
            lease_expires_at = clock_timestamp() + make_interval(secs => lease_seconds)
        FROM candidates c
        WHERE r.instance_id = c.instance_id
        RETURNING r.instance_id, r.epoch, r.wake_at
    ), started AS (
        UPDATE df.instances i SET status = 'running', updated_at = now()
        FROM claimed c WHERE i.id = c.instance_id AND i.status = 'pending'
        RETURNING i.id
    ), noted AS (
        -- note_execution(id, 1, 'Running', NULL) for each instance started now
        INSERT INTO pgdurable.executions AS e
            (instance_id, execution_id, status, event_count, started_at, completed_at, output)
        SELECT st.id, 1, 'Running',
               (SELECT count(*) FROM pgdurable.journal j WHERE j.instance_id = st.id),
               now(), NULL, NULL
        FROM started st
        ON CONFLICT (instance_id, execution_id) DO UPDATE
        SET status = excluded.status, event_count = excluded.event_count,
            completed_at = excluded.completed_at, output = excluded.output
    )
    -- In wake order, the order they waited in.
    SELECT array_agg(c.instance_id ORDER BY c.wake_at, c.instance_id),
           array_agg(c.epoch ORDER BY c.wake_at, c.instance_id)
    INTO ids, epochs FROM claimed c;
    FOR k IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        instance_id := ids[k];
        epoch := epochs[k];
        instance := pgdurable.load_v1(ids[k]);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- load_v1 as in 0005, except that the superuser switch (read from
-- pg_settings, which costs more than the rest of the load) is only looked up
-- for an instance whose role is a superuser, the only case it decides.
CREATE OR REPLACE FUNCTION pgdurable.load_v1(p_instance text) RETURNS json
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT json_build_object(
        'id', i.id, 'label', i.label, 'root', i.root_node, 'status', i.status,
        'role', r.rolname, 'role_exists', r.rolname IS NOT NULL,
        'role_super', coalesce(r.rolsuper, false),
        -- Read from pg_settings (a scan of every setting) only when it matters.
        'super_allowed', CASE WHEN r.rolsuper THEN pgdurable.superuser_instances_enabled()
                              ELSE false END,
        'database', i.database, 'control_database', current_database(),
        'vars', coalesce((SELECT v.vars FROM pgdurable.instance_vars v WHERE v.instance_id = i.id),
                         '{}'::jsonb),
        'nodes', (SELECT json_agg(json_build_object(
                      'id', n.id, 'type', n.node_type, 'query', n.query, 'name', n.result_name,
                      'left', n.left_node, 'right', n.right_node, 'status', n.status,
                      'exec', n.status_details ->> 'execution_id'))
                  FROM df.nodes n WHERE n.instance_id = i.id),
        'journal', (SELECT coalesce(json_agg(json_build_object(
                        'scope', j.scope, 'gen', j.gen, 'node', j.node_id, 'outcome', j.outcome,
                        'result', j.result::text, 'error', j.error,
                        'named', j.named_results::text)), '[]')
                    FROM pgdurable.journal j WHERE j.instance_id = i.id))
    FROM df.instances i
    LEFT JOIN pg_catalog.pg_roles r ON r.oid = i.submitted_by
    WHERE i.id = p_instance
$$;

-- ---------------------------------------------------------------------------
-- Finishing
-- ---------------------------------------------------------------------------

-- finish_v1 with one lease check (it nested two) and static SQL.
CREATE FUNCTION pgdurable.finish_v2(p_instance text, p_epoch bigint, p_token bytea,
                                    p_status text, p_stamps jsonb, p_output text)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    PERFORM pgdurable.apply_stamps(p_instance, p_stamps);
    PERFORM pgdurable.end_run(p_instance, p_status, p_output);
END;
$$;

-- The v1 functions of older workers, rewritten on the same helpers so the
-- stamp rule and the end of a run live in one place each.
CREATE OR REPLACE FUNCTION pgdurable.stamp_nodes_v1(p_instance text, p_epoch bigint,
                                                   p_token bytea, stamps jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    PERFORM pgdurable.apply_stamps(p_instance, stamps);
    RETURN (SELECT i.status FROM df.instances i WHERE i.id = p_instance);
END;
$$;

CREATE OR REPLACE FUNCTION pgdurable.finish_v1(p_instance text, p_epoch bigint, p_token bytea,
                                              p_status text, p_stamps jsonb, p_output text)
RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pgdurable.finish_v2(p_instance, p_epoch, p_token, p_status, p_stamps, p_output)
$$;

REVOKE EXECUTE ON FUNCTION
    pgdurable.claim_v2(text, bytea, integer, double precision),
    pgdurable.finish_v2(text, bigint, bytea, text, jsonb, text)
FROM PUBLIC;
