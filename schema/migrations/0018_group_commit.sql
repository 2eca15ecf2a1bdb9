-- Group commit (issue 22): the completions of several SQL steps, run in one
-- transaction on one connection of their role (each step in its own
-- savepoint, worker/step_group.py), recorded by one call before one COMMIT.
-- complete_step_v3 (0017) stays for the single-step path and older workers.
--
-- p_steps is a JSON array, one object per step whose statement succeeded:
--   {"instance", "epoch", "scope", "gen", "node", "result" (the step's
--    result as JSON text), "stamps" (queued node stamps), "finish" (the
--    ancestors' stamps when the step ends the instance, or null)}
-- Returns one row per element (k, its 1-based position) with the
-- instance's status as complete_step_v3 returns it.
--
-- All or nothing: when this worker no longer holds the lease of any element,
-- it raises PD001 (naming that instance) and the transaction, the steps'
-- statements with it, rolls back. Committing the others' effects would also
-- commit that step's statement, already run in the same transaction, without
-- its completion: its next owner would run it again. The worker then runs
-- each step again on its own (a rollback keeps that exactly-once).
--
-- Lock order: the run rows of every element, FOR UPDATE in instance-id
-- order, before any journal or node row (0015's rule: writers of one
-- instance queue on its run row first); then complete_step_v3 per element,
-- whose own lease check finds the row already held. Same guard as v3: the
-- token, which only the worker knows, not a grant; SECURITY DEFINER because
-- the step's role has no privilege on the bookkeeping tables.

CREATE FUNCTION pgdurable.complete_steps_v1(p_token bytea, p_steps jsonb)
RETURNS TABLE (k integer, status text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    held text[];
    missing text;
    s record;
BEGIN
    -- By primary key (an index probe per element), then the epochs compared.
    held := ARRAY(
        SELECT r.instance_id::text || ':' || r.epoch
        FROM pgdurable.runs r
        WHERE r.instance_id = ANY (ARRAY(SELECT e.value ->> 'instance'
                                         FROM jsonb_array_elements(p_steps) e(value)))
          AND r.token_hash = sha256(p_token)
          AND r.lease_expires_at > clock_timestamp()
        ORDER BY r.instance_id
        FOR UPDATE OF r);
    -- Two steps of one instance (JOIN branches) may share a group: a missing
    -- instance, not a count, tells a lost lease.
    missing := (SELECT e.value ->> 'instance' FROM jsonb_array_elements(p_steps) e(value)
                WHERE NOT ((e.value ->> 'instance') || ':' || (e.value ->> 'epoch')) = ANY (held)
                LIMIT 1);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'pgdurable: lease lost for instance % (group commit)', missing
            USING ERRCODE = 'PD001';
    END IF;
    FOR s IN SELECT e.value AS v, e.k AS position
             FROM jsonb_array_elements(p_steps) WITH ORDINALITY e(value, k) LOOP
        k := s.position;
        status := pgdurable.complete_step_v3(
            s.v ->> 'instance', (s.v ->> 'epoch')::bigint, p_token,
            s.v ->> 'scope', (s.v ->> 'gen')::integer, s.v ->> 'node',
            (s.v ->> 'result')::json, s.v -> 'stamps',
            CASE WHEN jsonb_typeof(s.v -> 'finish') = 'array' THEN s.v -> 'finish' END);
        RETURN NEXT;
    END LOOP;
END;
$$;
-- Any role may call it: the token, not a grant, is what guards it (as v3).
GRANT EXECUTE ON FUNCTION pgdurable.complete_steps_v1(bytea, jsonb) TO PUBLIC;
