-- The worker's durable state (SPEC A.3): runs and their leases, the step
-- journal, loop generations, durable timers. Nothing the worker needs to
-- resume an instance lives only in its memory.
--
-- Model. A worker *claims* a run (one row per non-terminal instance), which
-- bumps the run's epoch and records the hash of a secret token only that
-- worker process knows. Every durable write the worker makes for the run goes
-- through a function below that checks (epoch, token): a worker whose lease
-- was taken over is fenced out. Ordinary roles have no privilege on these
-- tables; the functions they can call (pgdurable.complete_step) are useless
-- without the token, which never appears in any table, setting or query text.
--
-- Journal keys are (instance_id, scope, gen, node_id) (SPEC B §6 IMPL):
--   scope  the instance id for the root orchestration, or
--          '<parent scope>::<parent gen>::<child root node>' for a JOIN/RACE
--          branch or a non-root loop;
--   gen    the generation of that scope (1, then one more per loop iteration).

CREATE TABLE pgdurable.runs (
    instance_id      varchar(8) PRIMARY KEY REFERENCES df.instances (id) ON DELETE CASCADE,
    epoch            bigint      NOT NULL DEFAULT 0,   -- bumped by every claim (fencing token)
    token_hash       bytea,                            -- sha256 of the lease holder's secret
    worker           text,                             -- lease holder, for operators
    lease_expires_at timestamptz,                      -- database clock; NULL = not leased
    -- When the run can make progress again without an event: '-infinity' now,
    -- a timer's due time, or 'infinity' when only a signal (or cancel) can help.
    wake_at          timestamptz NOT NULL DEFAULT '-infinity',
    waiting_signals  text[]      NOT NULL DEFAULT '{}' -- signal names a wait is blocked on
);
CREATE INDEX runs_wake_idx ON pgdurable.runs (wake_at);
COMMENT ON TABLE pgdurable.runs IS
    'One row per instance the workers still have to drive; leases fence concurrent workers';

-- Outcomes that must never be recomputed: leaf steps (SQL, SLEEP, SIGNAL,
-- WAIT_SCHEDULE, HTTP), RACE decisions and finished non-root loops. The
-- result is kept as json (not jsonb) so column order survives replay.
CREATE TABLE pgdurable.journal (
    instance_id   varchar(8) NOT NULL REFERENCES df.instances (id) ON DELETE CASCADE,
    scope         text       NOT NULL,
    gen           integer    NOT NULL,
    node_id       varchar(8) NOT NULL,
    outcome       text       NOT NULL CHECK (outcome IN ('completed', 'failed', 'broke')),
    result        json,      -- completed: the result; broke: the break value
    error         text,      -- failed: the error text
    named_results json,      -- finished non-root loops: the names they merge back
    delivery      text       NOT NULL DEFAULT 'exactly_once'
                             CHECK (delivery IN ('exactly_once', 'at_least_once')),
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (instance_id, scope, gen, node_id)
);

-- The current generation of every loop scope, with the named results it
-- started from (a root loop resets them, a nested loop carries them).
CREATE TABLE pgdurable.generations (
    instance_id   varchar(8) NOT NULL REFERENCES df.instances (id) ON DELETE CASCADE,
    scope         text       NOT NULL,
    gen           integer    NOT NULL CHECK (gen >= 1),
    named_results json       NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (instance_id, scope)
);

-- Durable timers (SLEEP, SIGNAL timeouts, WAIT_SCHEDULE): the due time is
-- fixed the first time the node runs and never recomputed on replay.
CREATE TABLE pgdurable.timers (
    instance_id varchar(8) NOT NULL REFERENCES df.instances (id) ON DELETE CASCADE,
    scope       text       NOT NULL,
    gen         integer    NOT NULL,
    node_id     varchar(8) NOT NULL,
    due_at      timestamptz NOT NULL,
    PRIMARY KEY (instance_id, scope, gen, node_id)
);

-- Signals a wait consumed: removed from pgdurable.signals in the transaction
-- that journals the wait's result, so each signal is delivered exactly once.
CREATE TABLE pgdurable.consumed_signals (
    seq         bigint PRIMARY KEY,
    instance_id varchar(8) NOT NULL REFERENCES df.instances (id) ON DELETE CASCADE,
    scope       text       NOT NULL,
    gen         integer    NOT NULL,
    node_id     varchar(8) NOT NULL,
    name        text       NOT NULL,
    data        jsonb,
    consumed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

REVOKE ALL ON pgdurable.runs, pgdurable.journal, pgdurable.generations, pgdurable.timers,
    pgdurable.consumed_signals FROM PUBLIC;

-- Every new instance gets a run; existing unfinished ones too.
CREATE FUNCTION pgdurable.create_run() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO pgdurable.runs (instance_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.create_run() FROM PUBLIC;
CREATE TRIGGER instances_create_run AFTER INSERT ON df.instances
    FOR EACH ROW EXECUTE FUNCTION pgdurable.create_run();
INSERT INTO pgdurable.runs (instance_id)
SELECT id FROM df.instances WHERE status IN ('pending', 'running') ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Leases
-- ---------------------------------------------------------------------------

-- Claim up to `how_many` runnable runs for a worker: unfinished, not leased
-- (or the lease expired), and either due or holding a signal they wait for.
-- Each claim bumps the epoch, so completions of any earlier holder fail.
-- Pending instances become running here.
CREATE FUNCTION pgdurable.claim_v1(worker_name text, token_hash bytea, how_many integer,
                                   lease_seconds double precision)
RETURNS TABLE (instance_id varchar(8), epoch bigint)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    WITH candidates AS (
        SELECT r.instance_id
        FROM pgdurable.runs r
        JOIN df.instances i ON i.id = r.instance_id
        WHERE i.status IN ('pending', 'running')
          AND (r.lease_expires_at IS NULL OR r.lease_expires_at < clock_timestamp())
          AND (r.wake_at <= clock_timestamp()
               OR (r.waiting_signals <> '{}' AND EXISTS (
                       SELECT 1 FROM pgdurable.signals s
                       WHERE s.instance_id = r.instance_id AND s.name = ANY (r.waiting_signals))))
        ORDER BY r.wake_at, r.instance_id
        LIMIT how_many
        FOR UPDATE OF r SKIP LOCKED
    ), claimed AS (
        UPDATE pgdurable.runs r
        SET epoch = r.epoch + 1, token_hash = claim_v1.token_hash, worker = worker_name,
            lease_expires_at = clock_timestamp() + make_interval(secs => lease_seconds)
        FROM candidates c
        WHERE r.instance_id = c.instance_id
        RETURNING r.instance_id, r.epoch
    ), started AS (
        UPDATE df.instances i SET status = 'running', updated_at = now()
        FROM claimed c WHERE i.id = c.instance_id AND i.status = 'pending'
        RETURNING pgdurable.note_execution(i.id, 1, 'Running', NULL)
    )
    SELECT c.instance_id, c.epoch FROM claimed c;
END;
$$;

-- The fence every durable write passes: the caller must hold the current,
-- unexpired lease. Raises (so the caller's transaction rolls back) otherwise.
CREATE FUNCTION pgdurable.check_lease(p_instance text, p_epoch bigint, p_token bytea)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- FOR SHARE: a concurrent takeover (UPDATE of the row) waits for us, and we
    -- for it, so the check and our write are ordered with respect to it.
    PERFORM 1 FROM pgdurable.runs r
    WHERE r.instance_id = p_instance AND r.epoch = p_epoch
      AND r.token_hash = pg_catalog.sha256(p_token)
      AND r.lease_expires_at > clock_timestamp()
    FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgdurable: lease lost for instance % (epoch %)', p_instance, p_epoch
            USING ERRCODE = 'PD001';
    END IF;
END;
$$;

-- Extend this worker's leases; returns the instances still held (a lost one
-- must be abandoned by the worker).
CREATE FUNCTION pgdurable.heartbeat_v1(p_token bytea, held jsonb, lease_seconds double precision)
RETURNS TABLE (instance_id varchar(8))
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    UPDATE pgdurable.runs r
    SET lease_expires_at = clock_timestamp() + make_interval(secs => lease_seconds)
    FROM jsonb_each_text(held) h(id, epoch)
    WHERE r.instance_id = h.id AND r.epoch = h.epoch::bigint
      AND r.token_hash = pg_catalog.sha256(p_token)
      AND r.lease_expires_at > clock_timestamp()
    RETURNING r.instance_id
$$;

-- Give a run back: it sleeps until wake_at or one of the signals arrives.
CREATE FUNCTION pgdurable.release_v1(p_instance text, p_epoch bigint, p_token bytea,
                                     p_wake_at timestamptz, p_signals text[])
RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    UPDATE pgdurable.runs r
    SET lease_expires_at = NULL, token_hash = NULL, worker = NULL,
        wake_at = p_wake_at, waiting_signals = p_signals
    WHERE r.instance_id = p_instance AND r.epoch = p_epoch
      AND r.token_hash = pg_catalog.sha256(p_token)
$$;

-- ---------------------------------------------------------------------------
-- Node stamps and the journal
-- ---------------------------------------------------------------------------

-- Write a batch of node stamps [{"node","status","result","exec"}] in order.
-- A 'running' stamp never overwrites the terminal stamp of the same execution
-- (stamps of one node can arrive from a replay). Returns the instance status,
-- so the worker learns of a cancel at every step boundary.
CREATE FUNCTION pgdurable.stamp_nodes_v1(p_instance text, p_epoch bigint, p_token bytea,
                                         stamps jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stamp jsonb;
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    FOR stamp IN SELECT value FROM jsonb_array_elements(stamps) LOOP
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
    RETURN (SELECT i.status FROM df.instances i WHERE i.id = p_instance);
END;
$$;

-- Journal one outcome and stamp its node, after checking the lease. The
-- journal's primary key makes a second completion of the same step fail, so
-- whoever commits first wins and the other transaction rolls back.
CREATE FUNCTION pgdurable.record_v1(p_instance text, p_epoch bigint, p_token bytea,
                                    p_scope text, p_gen integer, p_node text, p_outcome text,
                                    p_result json, p_error text, p_named json,
                                    p_delivery text, p_stamp boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    INSERT INTO pgdurable.journal (instance_id, scope, gen, node_id, outcome, result, error,
                                   named_results, delivery)
    VALUES (p_instance, p_scope, p_gen, p_node, p_outcome, p_result, p_error, p_named,
            coalesce(p_delivery, 'exactly_once'));
    IF p_stamp THEN
        UPDATE df.nodes n
        SET status = CASE p_outcome WHEN 'failed' THEN 'failed' ELSE 'completed' END,
            result = CASE p_outcome WHEN 'failed' THEN to_jsonb(p_error) ELSE p_result::jsonb END,
            status_details = jsonb_build_object('execution_id', p_scope || '::' || p_gen)
                || CASE WHEN p_delivery = 'at_least_once'
                        THEN '{"delivery":"at_least_once"}'::jsonb ELSE '{}'::jsonb END,
            updated_at = now()
        WHERE n.instance_id = p_instance AND n.id = p_node;
    END IF;
END;
$$;

-- The completion of a SQL step, called by the worker on the step's own
-- connection (logged in as the submitting role) in the same transaction as
-- the user's statement: both commit or neither does (SPEC A.2.1).
--
-- SECURITY DEFINER so that role can write the journal, which it has no
-- privilege on. Safe because it writes nothing unless the caller presents the
-- token whose sha256 the current lease holds: a 256-bit secret generated by
-- the worker, sent only as a bind parameter (never in query text, so not in
-- pg_stat_activity), and stored nowhere but as its hash in a table no
-- ordinary role can read. A user's SQL running earlier in the same
-- transaction cannot learn it, and the row it writes is keyed by the
-- instance the lease belongs to, so no instance can be completed for another.
CREATE FUNCTION pgdurable.complete_step_v1(p_instance text, p_epoch bigint, p_token bytea,
                                           p_scope text, p_gen integer, p_node text,
                                           p_result json)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pgdurable.record_v1(p_instance, p_epoch, p_token, p_scope, p_gen, p_node,
                               'completed', p_result, NULL, NULL, 'exactly_once', true)
$$;
-- Any role may call it: the token, not a grant, is what guards it, and roles
-- prepared by df.grant_usage before this migration must be able to run steps.
GRANT EXECUTE ON FUNCTION pgdurable.complete_step_v1(text, bigint, bytea, text, integer, text, json)
    TO PUBLIC;

-- Durable timer: fixed at the first call (at p_due_at, or p_seconds from
-- now by the database clock); returns its due time. When it is due and
-- p_record is set, the given result is journaled (and the node stamped) at once.
CREATE FUNCTION pgdurable.timer_v1(p_instance text, p_epoch bigint, p_token bytea,
                                   p_scope text, p_gen integer, p_node text,
                                   p_due_at timestamptz, p_seconds double precision,
                                   p_result json, p_record boolean)
RETURNS TABLE (due_at timestamptz, fired boolean)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    due timestamptz;
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    INSERT INTO pgdurable.timers AS t (instance_id, scope, gen, node_id, due_at)
    VALUES (p_instance, p_scope, p_gen, p_node,
            coalesce(p_due_at, clock_timestamp() + make_interval(secs => p_seconds)))
    ON CONFLICT (instance_id, scope, gen, node_id) DO UPDATE SET due_at = t.due_at
    RETURNING t.due_at INTO due;
    IF due <= clock_timestamp() AND p_record THEN
        PERFORM pgdurable.record_v1(p_instance, p_epoch, p_token, p_scope, p_gen, p_node,
                                    'completed', p_result, NULL, NULL, NULL, true);
    END IF;
    RETURN QUERY SELECT due, due <= clock_timestamp();
END;
$$;

-- A SIGNAL wait: take the oldest buffered signal of that name, if any, and
-- journal the wait's result in the same transaction. Returns the result, or
-- NULL when nothing has arrived yet.
CREATE FUNCTION pgdurable.consume_signal_v1(p_instance text, p_epoch bigint, p_token bytea,
                                            p_scope text, p_gen integer, p_node text,
                                            p_name text)
RETURNS json
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    taken record;
    outcome json;
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    DELETE FROM pgdurable.signals s
    WHERE s.seq = (SELECT s2.seq FROM pgdurable.signals s2
                   WHERE s2.instance_id = p_instance AND s2.name = p_name
                   ORDER BY s2.seq LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING s.seq, s.data INTO taken;
    IF taken.seq IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO pgdurable.consumed_signals (seq, instance_id, scope, gen, node_id, name, data)
    VALUES (taken.seq, p_instance, p_scope, p_gen, p_node, p_name, taken.data);
    outcome := json_build_object('signal_name', p_name, 'timed_out', false, 'data', taken.data);
    PERFORM pgdurable.record_v1(p_instance, p_epoch, p_token, p_scope, p_gen, p_node,
                                'completed', outcome, NULL, NULL, NULL, true);
    RETURN outcome;
END;
$$;

-- ---------------------------------------------------------------------------
-- Generations (loops)
-- ---------------------------------------------------------------------------

-- The current generation of a scope, created at generation 1 when missing.
CREATE FUNCTION pgdurable.enter_scope_v1(p_instance text, p_epoch bigint, p_token bytea,
                                         p_scope text, p_named json)
RETURNS TABLE (gen integer, named_results json, started_at timestamptz)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    INSERT INTO pgdurable.generations (instance_id, scope, gen, named_results)
    VALUES (p_instance, p_scope, 1, p_named)
    ON CONFLICT (instance_id, scope) DO NOTHING;
    RETURN QUERY SELECT g.gen, g.named_results, g.started_at FROM pgdurable.generations g
                 WHERE g.instance_id = p_instance AND g.scope = p_scope;
END;
$$;

-- Move a loop scope to its next generation (continue-as-new): the journal,
-- timers and nested generations of the finished one are dropped, since no
-- replay will ever read them again.
CREATE FUNCTION pgdurable.next_generation_v1(p_instance text, p_epoch bigint, p_token bytea,
                                             p_scope text, p_gen integer, p_named json)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    inner_prefix text := p_scope || '::' || p_gen || '::';
    started timestamptz := clock_timestamp();
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    UPDATE pgdurable.generations g SET gen = p_gen + 1, named_results = p_named, started_at = started
    WHERE g.instance_id = p_instance AND g.scope = p_scope AND g.gen = p_gen;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgdurable: generation % of scope % is not current', p_gen, p_scope
            USING ERRCODE = 'PD001';
    END IF;
    DELETE FROM pgdurable.journal j WHERE j.instance_id = p_instance
      AND ((j.scope = p_scope AND j.gen = p_gen) OR starts_with(j.scope, inner_prefix));
    DELETE FROM pgdurable.timers t WHERE t.instance_id = p_instance
      AND ((t.scope = p_scope AND t.gen = p_gen) OR starts_with(t.scope, inner_prefix));
    DELETE FROM pgdurable.generations g WHERE g.instance_id = p_instance
      AND starts_with(g.scope, inner_prefix);
    IF p_scope = p_instance THEN  -- a root-loop iteration is a new execution
        PERFORM pgdurable.note_execution(p_instance, p_gen, 'ContinuedAsNew', NULL);
        PERFORM pgdurable.note_execution(p_instance, p_gen + 1, 'Running', NULL);
    END IF;
    RETURN started;
END;
$$;

-- ---------------------------------------------------------------------------
-- Finishing
-- ---------------------------------------------------------------------------

-- End a run: stamp the root node, set the instance's terminal status (never
-- over a cancel or another terminal status) and drop the run row.
CREATE FUNCTION pgdurable.finish_v1(p_instance text, p_epoch bigint, p_token bytea,
                                    p_status text, p_stamps jsonb, p_output text)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgdurable.stamp_nodes_v1(p_instance, p_epoch, p_token, p_stamps);
    PERFORM pgdurable.note_execution(
        p_instance,
        coalesce((SELECT g.gen FROM pgdurable.generations g
                  WHERE g.instance_id = p_instance AND g.scope = p_instance), 1),
        CASE p_status WHEN 'completed' THEN 'Completed' ELSE 'Failed' END, p_output);
    UPDATE df.instances i
    SET status = p_status, updated_at = now(),
        completed_at = CASE WHEN p_status = 'completed' THEN now() END
    WHERE i.id = p_instance AND i.status IN ('pending', 'running');
    DELETE FROM pgdurable.runs r WHERE r.instance_id = p_instance;
END;
$$;

DO $$
BEGIN
    -- The worker's functions run as the worker (a superuser); nobody else needs them.
    REVOKE EXECUTE ON FUNCTION pgdurable.claim_v1(text, bytea, integer, double precision),
        pgdurable.check_lease(text, bigint, bytea),
        pgdurable.heartbeat_v1(bytea, jsonb, double precision),
        pgdurable.release_v1(text, bigint, bytea, timestamptz, text[]),
        pgdurable.stamp_nodes_v1(text, bigint, bytea, jsonb),
        pgdurable.record_v1(text, bigint, bytea, text, integer, text, text, json, text, json, text, boolean),
        pgdurable.timer_v1(text, bigint, bytea, text, integer, text, timestamptz, double precision, json, boolean),
        pgdurable.consume_signal_v1(text, bigint, bytea, text, integer, text, text),
        pgdurable.enter_scope_v1(text, bigint, bytea, text, json),
        pgdurable.next_generation_v1(text, bigint, bytea, text, integer, json),
        pgdurable.finish_v1(text, bigint, bytea, text, jsonb, text)
    FROM PUBLIC;
END;
$$;

-- ---------------------------------------------------------------------------
-- Loading, scheduling, monitoring
-- ---------------------------------------------------------------------------

-- Everything a claim needs to replay an instance, in one round trip: the
-- instance, its vars snapshot, its graph, the node stamps and the journal.
CREATE FUNCTION pgdurable.load_v1(p_instance text) RETURNS json
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT json_build_object(
        'id', i.id, 'label', i.label, 'root', i.root_node, 'status', i.status,
        'role', r.rolname, 'role_exists', r.rolname IS NOT NULL,
        'role_super', coalesce(r.rolsuper, false),
        'super_allowed', pgdurable.superuser_instances_enabled(),
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

-- Seconds until some run may become claimable (a timer falls due or a lease
-- expires); NULL when no run is waiting on time. The worker sleeps at most this.
CREATE FUNCTION pgdurable.next_wake_v1(OUT seconds double precision, OUT timed_runs bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    -- clamped to now first: '-infinity' (runnable now) cannot be subtracted
    SELECT extract(epoch FROM min(greatest(r.wake_at, r.lease_expires_at, clock_timestamp()))
                              - clock_timestamp())::double precision,
           count(*)
    FROM pgdurable.runs r JOIN df.instances i ON i.id = r.instance_id
    WHERE i.status IN ('pending', 'running') AND r.wake_at < 'infinity'
$$;

-- One row per root generation in pgdurable.executions (the monitoring table,
-- when installed; see its contract in 0004): execution 1, plus one per
-- root-loop iteration. Statuses are duroxide's: Running, Completed, Failed
-- (also for a cancelled run), ContinuedAsNew.
CREATE FUNCTION pgdurable.note_execution(p_instance text, p_execution integer, p_status text,
                                         p_output text)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass('pgdurable.executions') IS NULL THEN
        RETURN;
    END IF;
    EXECUTE $sql$
        INSERT INTO pgdurable.executions AS e
            (instance_id, execution_id, status, event_count, started_at, completed_at, output)
        VALUES ($1, $2, $3,
                (SELECT count(*) FROM pgdurable.journal j WHERE j.instance_id = $1),
                now(), CASE WHEN $3 <> 'Running' THEN now() END, $4)
        ON CONFLICT (instance_id, execution_id) DO UPDATE
        SET status = excluded.status, event_count = excluded.event_count,
            completed_at = excluded.completed_at, output = excluded.output
    $sql$ USING p_instance, p_execution, p_status, p_output;
END;
$$;

REVOKE EXECUTE ON FUNCTION pgdurable.load_v1(text), pgdurable.next_wake_v1(),
    pgdurable.note_execution(text, integer, text, text) FROM PUBLIC;
