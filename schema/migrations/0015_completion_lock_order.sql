-- A step's completion and the worker's own stamp writes for the same instance
-- take their locks in one order.
--
-- A SQL step still running after 50 ms gets its 'running' stamps written by a
-- separate flush, on another connection, while the step's transaction is open
-- (worker/steps.py). Both checked the lease with FOR SHARE on the run row, then
-- updated df.nodes rows; the completion of the workflow's last step then
-- stamped the ancestors and deleted the run row. The flush held the run row
-- (shared) and waited for a node row the completion held; the completion held
-- that node and waited to delete the run row: a deadlock, and the victim's
-- instance failed (seen as 1 of 50 instances failing "deadlock detected" with
-- two worker processes; parallel branches completing at once could do the same).
--
-- Now every write that changes node rows or ends the run takes the run row
-- FOR UPDATE first: writers of one instance queue on that row before touching
-- any node, so none can hold a node another waits for.

CREATE FUNCTION pgdurable.hold_lease(p_instance text, p_epoch bigint, p_token bytea)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM pgdurable.runs r
    WHERE r.instance_id = p_instance AND r.epoch = p_epoch
      AND r.token_hash = pg_catalog.sha256(p_token)
      AND r.lease_expires_at > clock_timestamp()
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgdurable: lease lost for instance % (epoch %)', p_instance, p_epoch
            USING ERRCODE = 'PD001';
    END IF;
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.hold_lease(text, bigint, bytea) FROM PUBLIC;

CREATE OR REPLACE FUNCTION pgdurable.complete_step_v2(p_instance text, p_epoch bigint,
                                                      p_token bytea, p_scope text,
                                                      p_gen integer, p_node text,
                                                      p_result json, p_stamps jsonb,
                                                      p_finish jsonb DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current_status text;
BEGIN
    PERFORM pgdurable.hold_lease(p_instance, p_epoch, p_token);
    PERFORM pgdurable.apply_stamps(p_instance, p_stamps);
    INSERT INTO pgdurable.journal (instance_id, scope, gen, node_id, outcome, result)
    VALUES (p_instance, p_scope, p_gen, p_node, 'completed', p_result);
    UPDATE df.nodes n
    SET status = 'completed', result = p_result::jsonb,
        status_details = jsonb_build_object('execution_id', p_scope || '::' || p_gen),
        updated_at = now()
    WHERE n.instance_id = p_instance AND n.id = p_node;
    current_status := (SELECT i.status FROM df.instances i WHERE i.id = p_instance);
    IF p_finish IS NOT NULL AND current_status IN ('pending', 'running') THEN
        PERFORM pgdurable.apply_stamps(p_instance, p_finish);
        PERFORM pgdurable.end_run(p_instance, 'completed', p_result::text);
        current_status := 'completed';
    END IF;
    RETURN current_status;
END;
$$;

CREATE OR REPLACE FUNCTION pgdurable.stamp_nodes_v1(p_instance text, p_epoch bigint,
                                                   p_token bytea, stamps jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.hold_lease(p_instance, p_epoch, p_token);
    PERFORM pgdurable.apply_stamps(p_instance, stamps);
    RETURN (SELECT i.status FROM df.instances i WHERE i.id = p_instance);
END;
$$;

CREATE OR REPLACE FUNCTION pgdurable.finish_v2(p_instance text, p_epoch bigint, p_token bytea,
                                              p_status text, p_stamps jsonb, p_output text)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.hold_lease(p_instance, p_epoch, p_token);
    PERFORM pgdurable.apply_stamps(p_instance, p_stamps);
    PERFORM pgdurable.end_run(p_instance, p_status, p_output);
END;
$$;

CREATE OR REPLACE FUNCTION pgdurable.finish_v3(p_instance text, p_epoch bigint, p_token bytea,
                                              p_status text, p_stamps jsonb, p_output text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    closed jsonb;
BEGIN
    PERFORM pgdurable.hold_lease(p_instance, p_epoch, p_token);
    PERFORM pgdurable.apply_stamps(p_instance, p_stamps);
    closed := pgdurable.close_runs(p_instance, p_status, p_output);
    PERFORM pgdurable.end_run(p_instance, p_status, p_output);
    RETURN closed;
END;
$$;
