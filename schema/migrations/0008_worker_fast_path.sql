-- The worker's fast path (issue 10): fewer round trips and transactions per
-- step and per instance, and claims served in the order runs became ready.
-- The _v1 functions stay for workers of the previous release.

-- ---------------------------------------------------------------------------
-- Steps: one transaction each
-- ---------------------------------------------------------------------------

-- One call completes a SQL step, carrying the node stamps the worker queued
-- since its previous write, so a step costs one transaction instead of a step
-- transaction plus a stamp transaction.
--
-- Same guard as complete_step_v1 (0005): SECURITY DEFINER, and nothing is
-- written unless the caller presents the token whose sha256 the current
-- lease holds. The stamps it applies are confined to the leased instance.
-- Returns the instance's status, so the worker learns of a cancel at the
-- step boundary without another round trip.
CREATE FUNCTION pgdurable.complete_step_v2(p_instance text, p_epoch bigint, p_token bytea,
                                           p_scope text, p_gen integer, p_node text,
                                           p_result json, p_stamps jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stamp jsonb;
BEGIN
    -- The lease check of pgdurable.check_lease, inlined: one function call
    -- less on every step. FOR SHARE orders it against a concurrent takeover.
    PERFORM 1 FROM pgdurable.runs r
    WHERE r.instance_id = p_instance AND r.epoch = p_epoch
      AND r.token_hash = pg_catalog.sha256(p_token)
      AND r.lease_expires_at > clock_timestamp()
    FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgdurable: lease lost for instance % (epoch %)', p_instance, p_epoch
            USING ERRCODE = 'PD001';
    END IF;
    -- Queued stamps, in order, with stamp_nodes_v1's rule: 'running' never
    -- overwrites the terminal stamp of the same execution.
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
    INSERT INTO pgdurable.journal (instance_id, scope, gen, node_id, outcome, result)
    VALUES (p_instance, p_scope, p_gen, p_node, 'completed', p_result);
    UPDATE df.nodes n
    SET status = 'completed', result = p_result::jsonb,
        status_details = jsonb_build_object('execution_id', p_scope || '::' || p_gen),
        updated_at = now()
    WHERE n.instance_id = p_instance AND n.id = p_node;
    RETURN (SELECT i.status FROM df.instances i WHERE i.id = p_instance);
END;
$$;
-- Any role may call it: the token, not a grant, is what guards it.
GRANT EXECUTE ON FUNCTION
    pgdurable.complete_step_v2(text, bigint, bytea, text, integer, text, json, jsonb) TO PUBLIC;

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

-- claim_v1 plus load_v1 for each claimed run: one round trip instead of one
-- per claimed instance. The loads run after the claim, so they see it.
CREATE FUNCTION pgdurable.claim_v2(worker_name text, token_hash bytea, how_many integer,
                                   lease_seconds double precision)
RETURNS TABLE (instance_id varchar(8), epoch bigint, instance json)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    claimed record;
BEGIN
    FOR claimed IN SELECT * FROM pgdurable.claim_v1(worker_name, token_hash, how_many,
                                                     lease_seconds) LOOP
        instance_id := claimed.instance_id;
        epoch := claimed.epoch;
        instance := pgdurable.load_v1(claimed.instance_id);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------
-- Finishing: finish_v1 with static SQL
-- ---------------------------------------------------------------------------

-- finish_v1 reached pgdurable.executions through dynamic SQL (the table was
-- optional when 0005 was written; 0004 always creates it now) and nested
-- two lease checks; this is the same work in one function.
CREATE FUNCTION pgdurable.finish_v2(p_instance text, p_epoch bigint, p_token bytea,
                                    p_status text, p_stamps jsonb, p_output text)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stamp jsonb;
    execution integer;
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
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

REVOKE EXECUTE ON FUNCTION
    pgdurable.claim_v2(text, bytea, integer, double precision),
    pgdurable.finish_v2(text, bigint, bytea, text, jsonb, text)
FROM PUBLIC;
