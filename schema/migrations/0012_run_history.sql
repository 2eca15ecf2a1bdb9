-- Run history of registered workflows (issue 20): one row per run, the
-- pg_cron `cron.job_run_details` a DBA knows, kept bounded.
--
-- What a run is:
--   * a tick: one iteration (root generation) of the long-running instance
--     pgdurable.deploy_workflow started for a workflow. It starts when the
--     first timer of the iteration fires (the df.wait_for_schedule or
--     df.sleep that paces the loop; its due time is the run's due time) and
--     ends when the loop moves to its next iteration;
--   * a started run: an instance started with a workflow's run label (the
--     generated enqueue functions label runs '<source>/<name>#run', the
--     Airflow trigger functions 'airflow:<dag_id>'). Due when it was started,
--     started when a worker first claimed it, ended with the instance.
-- A run failed when the instance failed during it, or when a failure inside it
-- was recovered by pgdurable.try (the wrapper every translated run has: the
-- loop goes on, the run still failed, with that error).
--
-- Who writes: only the worker, in the transactions that already move a run
-- along (a timer firing, the next loop iteration, the end of an instance),
-- through the functions below; plain (unregistered) instances pay one
-- indexed lookup when a root-scope timer fires, nothing else. Nothing here
-- raises for an instance that is not a registered workflow's.
--
-- Who reads: the views pgdurable.run_history and pgdurable.job_run_details
-- and pgdurable.workflow_health, which show a role only its own runs (the
-- rule of df.instances); superusers and BYPASSRLS roles see all.
--
-- Retention (settings per database, ALTER DATABASE … SET, read by workers):
--   pgdurable.run_history_max_age   '30 days'  ended runs older than this go
--   pgdurable.run_history_max_runs  1000       newest runs kept per workflow
-- Errors are stored cut to 2000 bytes, so the defaults bound the table to
-- about 2 MB per workflow. Workers prune once a minute (one at a time).

CREATE TABLE pgdurable.workflow_run_counters (
    source   text   NOT NULL,
    name     text   NOT NULL,
    jobid    bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- stable across redeploys
    last_run bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (source, name)
);
COMMENT ON TABLE pgdurable.workflow_run_counters IS
    'Per workflow: a stable job id and the number of its latest run';

CREATE TABLE pgdurable.workflow_runs (
    runid        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text        NOT NULL,
    workflow     text        NOT NULL,
    jobid        bigint      NOT NULL,
    run_number   bigint      NOT NULL,
    kind         text        NOT NULL CONSTRAINT workflow_runs_kind_chk CHECK (kind IN ('tick', 'run')),
    instance_id  varchar(8)  NOT NULL,
    -- '<instance>::<gen>': the execution_id in df.nodes.status_details of the
    -- run's steps (nested scopes extend it with '::<node>::<gen>').
    execution    text        NOT NULL,
    iteration    integer,    -- ticks: the loop iteration
    due_at       timestamptz,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    outcome      text        NOT NULL DEFAULT 'running'
        CONSTRAINT workflow_runs_outcome_chk
        CHECK (outcome IN ('running', 'succeeded', 'failed', 'cancelled')),
    error        text,
    submitted_by regrole     NOT NULL,
    database     text,
    CONSTRAINT workflow_runs_execution_key UNIQUE (instance_id, execution)
);
CREATE INDEX workflow_runs_workflow_idx ON pgdurable.workflow_runs (source, workflow, runid DESC);
CREATE INDEX workflow_runs_open_idx ON pgdurable.workflow_runs (instance_id)
    WHERE outcome = 'running';
CREATE INDEX workflow_runs_ended_idx ON pgdurable.workflow_runs (ended_at);
COMMENT ON TABLE pgdurable.workflow_runs IS
    'One row per run of a registered workflow (written by the worker; see pgdurable.run_history)';

-- Which registered workflow an instance drives: looked up on every root-scope
-- timer that fires, so it must be an index probe.
CREATE INDEX workflows_instance_idx ON pgdurable.workflows (instance_id)
    WHERE instance_id IS NOT NULL;

ALTER TABLE pgdurable.workflow_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY workflow_runs_user_isolation ON pgdurable.workflow_runs FOR SELECT
    USING (submitted_by = quote_ident(current_user)::regrole);
REVOKE ALL ON pgdurable.workflow_runs, pgdurable.workflow_run_counters FROM PUBLIC;
GRANT SELECT ON pgdurable.workflow_runs TO PUBLIC;  -- rows filtered by the policy

-- ---------------------------------------------------------------------------
-- Writing runs (the worker's functions; nobody else may call them)
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgdurable.run_error(value text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pgdurable.cut_bytes(value, 2000, 1997)
$$;

-- The row as the worker reports it (logs, metrics).
CREATE FUNCTION pgdurable.run_json(r pgdurable.workflow_runs) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'runid', r.runid, 'workflow', r.source || '/' || r.workflow, 'run', r.run_number,
        'kind', r.kind, 'instance', r.instance_id, 'execution', r.execution,
        'outcome', r.outcome, 'error', r.error,
        'due_at', r.due_at, 'started_at', r.started_at, 'ended_at', r.ended_at,
        'delay_seconds', extract(epoch FROM r.started_at - r.due_at),
        'duration_seconds', extract(epoch FROM r.ended_at - r.started_at))
$$;

-- Insert a run with the workflow's next number.
CREATE FUNCTION pgdurable.open_run(p_source text, p_name text, p_kind text, p_instance text,
                                   p_execution text, p_iteration integer, p_due timestamptz,
                                   p_started timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    counter pgdurable.workflow_run_counters;
    opened pgdurable.workflow_runs;
BEGIN
    INSERT INTO pgdurable.workflow_run_counters AS c (source, name, last_run)
    VALUES (p_source, p_name, 1)
    ON CONFLICT (source, name) DO UPDATE SET last_run = c.last_run + 1
    RETURNING * INTO counter;
    INSERT INTO pgdurable.workflow_runs (source, workflow, jobid, run_number, kind, instance_id,
        execution, iteration, due_at, started_at, submitted_by, database)
    SELECT p_source, p_name, counter.jobid, counter.last_run, p_kind, p_instance, p_execution,
           p_iteration, p_due, p_started, i.submitted_by, i.database
    FROM df.instances i WHERE i.id = p_instance
    RETURNING * INTO opened;
    RETURN pgdurable.run_json(opened);
END;
$$;

-- The error of the latest failure pgdurable.try recovered in an execution
-- (its own scope and the scopes nested in it), or NULL.
CREATE FUNCTION pgdurable.recovered_failure(p_instance text, p_scope text, p_gen integer)
RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT j.error
    FROM pgdurable.journal j
    JOIN df.nodes n ON n.instance_id = j.instance_id AND n.id = j.node_id AND n.node_type = 'TRY'
    WHERE j.instance_id = p_instance AND j.outcome = 'failed'
      AND ((j.scope = p_scope AND j.gen = p_gen)
           OR starts_with(j.scope, p_scope || '::' || p_gen || '::'))
    ORDER BY j.recorded_at DESC
    LIMIT 1
$$;

-- A timer of a registered workflow's loop fired in iteration p_gen: the first
-- one (not the loop's own one-second pacing timer) starts the iteration's run.
-- NULL when the instance is no registered workflow's or the run exists.
CREATE FUNCTION pgdurable.open_tick(p_instance text, p_gen integer, p_node text,
                                    p_due timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    registered record;
BEGIN
    SELECT w.source, w.name INTO registered
    FROM pgdurable.workflows w JOIN df.instances i ON i.id = w.instance_id
    WHERE w.instance_id = p_instance AND i.root_node <> p_node;
    IF NOT FOUND OR EXISTS (SELECT 1 FROM pgdurable.workflow_runs r
                            WHERE r.instance_id = p_instance
                              AND r.execution = p_instance || '::' || p_gen) THEN
        RETURN NULL;
    END IF;
    RETURN pgdurable.open_run(registered.source, registered.name, 'tick', p_instance,
                              p_instance || '::' || p_gen, p_gen, p_due, clock_timestamp());
END;
$$;

-- timer_v1, and the run a fired root-scope timer starts (NULL if none).
CREATE FUNCTION pgdurable.timer_v2(p_instance text, p_epoch bigint, p_token bytea,
                                   p_scope text, p_gen integer, p_node text,
                                   p_due_at timestamptz, p_seconds double precision,
                                   p_result json, p_record boolean)
RETURNS TABLE (due_at timestamptz, fired boolean, run jsonb)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT t.due_at, t.fired INTO due_at, fired
    FROM pgdurable.timer_v1(p_instance, p_epoch, p_token, p_scope, p_gen, p_node, p_due_at,
                            p_seconds, p_result, p_record) t;
    IF fired AND p_scope = p_instance THEN
        run := pgdurable.open_tick(p_instance, p_gen, p_node, due_at);
    END IF;
    RETURN NEXT;
END;
$$;

-- next_generation_v1, ending the run of the iteration that ends (a
-- registered loop's iteration without any timer is a run from its start).
CREATE FUNCTION pgdurable.next_generation_v2(p_instance text, p_epoch bigint, p_token bytea,
                                             p_scope text, p_gen integer, p_named json)
RETURNS TABLE (started_at timestamptz, run jsonb)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    failure text;
    began timestamptz;
    closed pgdurable.workflow_runs;
BEGIN
    IF p_scope = p_instance THEN  -- read before next_generation_v1 drops them
        failure := pgdurable.recovered_failure(p_instance, p_scope, p_gen);
        began := (SELECT g.started_at FROM pgdurable.generations g
                  WHERE g.instance_id = p_instance AND g.scope = p_scope);
    END IF;
    started_at := pgdurable.next_generation_v1(p_instance, p_epoch, p_token, p_scope, p_gen,
                                               p_named);
    IF p_scope = p_instance AND EXISTS (SELECT 1 FROM pgdurable.workflows w
                                        WHERE w.instance_id = p_instance) THEN
        IF NOT EXISTS (SELECT 1 FROM pgdurable.workflow_runs r
                       WHERE r.instance_id = p_instance AND r.execution = p_scope || '::' || p_gen)
        THEN
            PERFORM pgdurable.open_tick(p_instance, p_gen, '', NULL);
            UPDATE pgdurable.workflow_runs r SET started_at = coalesce(began, r.started_at)
            WHERE r.instance_id = p_instance AND r.execution = p_scope || '::' || p_gen;
        END IF;
        UPDATE pgdurable.workflow_runs r
        SET ended_at = clock_timestamp(),
            outcome = CASE WHEN failure IS NULL THEN 'succeeded' ELSE 'failed' END,
            error = pgdurable.run_error(failure)
        WHERE r.instance_id = p_instance AND r.execution = p_scope || '::' || p_gen
          AND r.outcome = 'running'
        RETURNING * INTO closed;
        IF closed.runid IS NOT NULL THEN
            run := pgdurable.run_json(closed);
        END IF;
    END IF;
    RETURN NEXT;
END;
$$;

-- End every open run of an instance that ends with p_status; returns them.
CREATE FUNCTION pgdurable.close_runs(p_instance text, p_status text, p_output text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    closed jsonb := '[]';
    r pgdurable.workflow_runs;
    failure text;
BEGIN
    FOR r IN SELECT * FROM pgdurable.workflow_runs x
             WHERE x.instance_id = p_instance AND x.outcome = 'running' FOR UPDATE LOOP
        failure := CASE WHEN p_status = 'failed' THEN coalesce(p_output, 'failed')
                        WHEN p_status = 'completed' THEN pgdurable.recovered_failure(
                            p_instance, split_part(r.execution, '::', 1),
                            split_part(r.execution, '::', 2)::integer) END;
        UPDATE pgdurable.workflow_runs x
        SET ended_at = clock_timestamp(),
            outcome = CASE WHEN p_status = 'cancelled' THEN 'cancelled'
                           WHEN failure IS NOT NULL THEN 'failed' ELSE 'succeeded' END,
            error = pgdurable.run_error(failure)
        WHERE x.runid = r.runid
        RETURNING * INTO r;
        closed := closed || jsonb_build_array(pgdurable.run_json(r));
    END LOOP;
    RETURN closed;
END;
$$;

-- end_run as in 0008, which now also ends the instance's open runs: every
-- way an instance ends (finish, the last SQL step's completion) goes through it.
CREATE OR REPLACE FUNCTION pgdurable.end_run(p_instance text, p_status text, p_output text)
RETURNS void
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
    -- An instance with no open run (every plain one) skips close_runs.
    IF EXISTS (SELECT 1 FROM pgdurable.workflow_runs r
               WHERE r.instance_id = p_instance AND r.outcome = 'running') THEN
        PERFORM pgdurable.close_runs(p_instance, p_status, p_output);
    END IF;
    UPDATE df.instances i
    SET status = p_status, updated_at = now(),
        completed_at = CASE WHEN p_status = 'completed' THEN now() END
    WHERE i.id = p_instance AND i.status IN ('pending', 'running');
    DELETE FROM pgdurable.runs r WHERE r.instance_id = p_instance;
END;
$$;

-- finish_v2, returning the runs the end of the instance ended.
CREATE FUNCTION pgdurable.finish_v3(p_instance text, p_epoch bigint, p_token bytea,
                                    p_status text, p_stamps jsonb, p_output text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    closed jsonb;
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    PERFORM pgdurable.apply_stamps(p_instance, p_stamps);
    closed := pgdurable.close_runs(p_instance, p_status, p_output);
    PERFORM pgdurable.end_run(p_instance, p_status, p_output);
    RETURN closed;
END;
$$;

-- A claimed instance labelled as a run of a registered workflow
-- ('<source>/<name>#run', 'airflow:<dag_id>'): its run, created at its first
-- claim (due when it was started). NULL for any other instance. The worker
-- calls it only for instances whose label has one of these shapes.
CREATE FUNCTION pgdurable.begin_run_v1(p_instance text, p_epoch bigint, p_token bytea)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    inst df.instances;
    base text;
    wf_source text;
    wf_name text;
    existing pgdurable.workflow_runs;
    opened jsonb;
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    SELECT * INTO inst FROM df.instances i WHERE i.id = p_instance;
    IF inst.label LIKE '%#run' THEN
        base := left(inst.label, -4);
        wf_source := split_part(base, '/', 1);
        wf_name := substr(base, length(wf_source) + 2);
    ELSIF starts_with(coalesce(inst.label, ''), 'airflow:') THEN
        wf_source := 'airflow';
        wf_name := substr(inst.label, 9);
    ELSE
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgdurable.workflows w
                   WHERE w.source = wf_source AND w.name = wf_name
                     AND w.instance_id IS DISTINCT FROM p_instance) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO existing FROM pgdurable.workflow_runs r
    WHERE r.instance_id = p_instance AND r.execution = p_instance || '::1';
    IF FOUND THEN
        RETURN pgdurable.run_json(existing) || '{"opened":false}';
    END IF;
    opened := pgdurable.open_run(wf_source, wf_name, 'run', p_instance, p_instance || '::1',
                                 NULL, inst.created_at, clock_timestamp());
    RETURN opened || jsonb_build_object(
        'opened', true,
        'waited_seconds', extract(epoch FROM clock_timestamp() - inst.created_at));
END;
$$;

-- The run of an instance (started run), as it is now.
CREATE FUNCTION pgdurable.run_of_v1(p_instance text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pgdurable.run_json(r) FROM pgdurable.workflow_runs r
    WHERE r.instance_id = p_instance AND r.execution = p_instance || '::1'
$$;

-- A setting read for retention, with its default when unset or invalid.
CREATE FUNCTION pgdurable.retention_setting(name text, default_value text, kind regtype)
RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    value text := pgdurable.setting(name, default_value);
BEGIN
    EXECUTE format('SELECT %L::%s', value, kind);
    RETURN value;
EXCEPTION WHEN data_exception THEN
    RAISE WARNING 'pgdurable: % = % is not a valid %; using %', name, value, kind, default_value;
    RETURN default_value;
END;
$$;

-- Delete ended runs older than pgdurable.run_history_max_age and all but the
-- newest pgdurable.run_history_max_runs of each workflow; returns how many.
-- One worker at a time (the others skip); open runs are never deleted.
CREATE FUNCTION pgdurable.prune_run_history_v1() RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    max_age interval := greatest(pgdurable.retention_setting(
        'pgdurable.run_history_max_age', '30 days', 'interval')::interval, interval '0');
    max_runs integer := greatest(pgdurable.retention_setting(
        'pgdurable.run_history_max_runs', '1000', 'integer')::integer, 1);
    by_age bigint;
    by_count bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('pgdurable.workflow_runs'), 0) THEN
        RETURN 0;
    END IF;
    DELETE FROM pgdurable.workflow_runs r
    WHERE r.outcome <> 'running' AND r.ended_at < clock_timestamp() - max_age;
    GET DIAGNOSTICS by_age = ROW_COUNT;
    DELETE FROM pgdurable.workflow_runs r
    USING (SELECT x.runid, row_number() OVER (PARTITION BY x.source, x.workflow
                                              ORDER BY x.runid DESC) AS newest
           FROM pgdurable.workflow_runs x) d
    WHERE r.runid = d.runid AND d.newest > max_runs AND r.outcome <> 'running';
    GET DIAGNOSTICS by_count = ROW_COUNT;
    RETURN by_age + by_count;
END;
$$;

-- What the worker's metrics show as backlog: runs runnable now and not
-- leased, and runs leased by any worker.
CREATE FUNCTION pgdurable.backlog_v1(OUT runnable bigint, OUT claimed bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*) FILTER (WHERE r.wake_at <= clock_timestamp()
                              AND (r.lease_expires_at IS NULL
                                   OR r.lease_expires_at < clock_timestamp())),
           count(*) FILTER (WHERE r.lease_expires_at >= clock_timestamp())
    FROM pgdurable.runs r
$$;

REVOKE EXECUTE ON FUNCTION
    pgdurable.run_error(text),
    pgdurable.run_json(pgdurable.workflow_runs),
    pgdurable.open_run(text, text, text, text, text, integer, timestamptz, timestamptz),
    pgdurable.recovered_failure(text, text, integer),
    pgdurable.open_tick(text, integer, text, timestamptz),
    pgdurable.timer_v2(text, bigint, bytea, text, integer, text, timestamptz, double precision, json, boolean),
    pgdurable.next_generation_v2(text, bigint, bytea, text, integer, json),
    pgdurable.close_runs(text, text, text),
    pgdurable.finish_v3(text, bigint, bytea, text, jsonb, text),
    pgdurable.begin_run_v1(text, bigint, bytea),
    pgdurable.run_of_v1(text),
    pgdurable.retention_setting(text, text, regtype),
    pgdurable.prune_run_history_v1(),
    pgdurable.backlog_v1()
FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Reading runs
-- ---------------------------------------------------------------------------

-- Views run with their owner's rights, so row-level security of the table
-- would not apply to their readers: they filter with the same rule themselves,
-- as security barriers (a reader's own function in a WHERE clause is applied
-- only to rows the filter let through, so it cannot leak hidden ones).
CREATE FUNCTION pgdurable.sees_role(owner regrole) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT owner = quote_ident(current_user)::regrole
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                   WHERE r.rolname = current_user AND (r.rolsuper OR r.rolbypassrls))
$$;

-- Every visible run, newest first by runid. outcome: running, succeeded,
-- failed or cancelled (a run still open in an instance that was cancelled or
-- failed meanwhile shows that). execution leads to its steps in df.nodes.
CREATE VIEW pgdurable.run_history WITH (security_barrier) AS
SELECT r.runid, r.jobid, r.source || '/' || r.workflow AS workflow, r.run_number, r.kind,
       CASE WHEN r.outcome = 'running' AND i.status IS NULL THEN 'cancelled'
            WHEN r.outcome = 'running' AND i.status IN ('cancelled', 'failed') THEN i.status
            ELSE r.outcome END AS outcome,
       r.error, r.due_at, r.started_at, r.ended_at,
       r.ended_at - r.started_at AS duration, r.started_at - r.due_at AS delay,
       r.instance_id, r.execution, r.iteration,
       r.submitted_by::text AS username, coalesce(r.database, current_database()) AS database
FROM pgdurable.workflow_runs r
LEFT JOIN df.instances i ON i.id = r.instance_id
WHERE pgdurable.sees_role(r.submitted_by);
COMMENT ON VIEW pgdurable.run_history IS
    'Runs of registered workflows (ticks of schedule loops, started runs), own runs only';

-- Shaped like pg_cron's cron.job_run_details: the same columns, names and
-- status words (running, succeeded, failed; a cancelled run is failed with
-- return_message 'cancelled'). jobid is stable per workflow, command its
-- name (the graph is in pgdurable.workflows), job_pid NULL (a run spans
-- several backends).
CREATE VIEW pgdurable.job_run_details WITH (security_barrier) AS
SELECT h.jobid, h.runid, NULL::integer AS job_pid, h.database::text AS database,
       h.username::text AS username, h.workflow AS command,
       CASE h.outcome WHEN 'cancelled' THEN 'failed' ELSE h.outcome END AS status,
       CASE h.outcome WHEN 'cancelled' THEN 'cancelled' ELSE h.error END AS return_message,
       h.started_at AS start_time, h.ended_at AS end_time
FROM pgdurable.run_history h;
COMMENT ON VIEW pgdurable.job_run_details IS
    'pgdurable.run_history in the shape of pg_cron''s cron.job_run_details';

-- One row per visible registered workflow: where it stands.
--   state: failing (its latest ended run failed), running (a run is open
--          or a worker holds its loop), waiting (for its next due time or a
--          signal), overdue (due over 30 s ago and no worker took it), on
--          demand (no loop: runs only when its enqueue/trigger function is
--          called), or its loop instance's terminal status (gone: deleted).
CREATE VIEW pgdurable.workflow_health WITH (security_barrier) AS
SELECT w.source || '/' || w.name AS workflow, w.schedule, w.instance_id,
       i.status AS instance_status,
       CASE WHEN w.instance_id IS NOT NULL AND i.status IS NULL THEN 'gone'
            WHEN i.status IN ('completed', 'failed', 'cancelled') THEN i.status
            WHEN l.outcome = 'failed' THEN 'failing'
            WHEN o.runid IS NOT NULL OR q.lease_expires_at >= clock_timestamp() THEN 'running'
            WHEN w.instance_id IS NULL THEN 'on demand'
            WHEN q.wake_at < clock_timestamp() - interval '30 seconds' THEN 'overdue'
            ELSE 'waiting' END AS state,
       l.run_number AS last_run, l.outcome AS last_outcome, l.ended_at AS last_ended_at,
       f.run_number AS last_failed_run, f.ended_at AS last_failed_at, f.error AS last_error,
       (SELECT count(*) FROM pgdurable.workflow_runs x
        WHERE x.source = w.source AND x.workflow = w.name AND x.outcome = 'failed') AS failed_runs,
       (SELECT count(*) FROM pgdurable.workflow_runs x
        WHERE x.source = w.source AND x.workflow = w.name) AS runs,
       CASE WHEN q.wake_at > '-infinity' AND q.wake_at < 'infinity' AND o.runid IS NULL
            THEN q.wake_at END AS next_due_at,
       coalesce(q.wake_at < clock_timestamp() - interval '30 seconds'
                AND (q.lease_expires_at IS NULL OR q.lease_expires_at < clock_timestamp()),
                false) AS overdue
FROM pgdurable.workflows w
LEFT JOIN df.instances i ON i.id = w.instance_id
LEFT JOIN pgdurable.runs q ON q.instance_id = w.instance_id
LEFT JOIN LATERAL (
    SELECT x.runid FROM pgdurable.workflow_runs x
    WHERE x.source = w.source AND x.workflow = w.name AND x.outcome = 'running'
      AND (x.instance_id = w.instance_id OR x.kind = 'run') LIMIT 1) o ON true
-- the latest ended run of each kind: a queue workflow's ticks (which only
-- start runs) succeeding must not hide its runs failing
LEFT JOIN LATERAL (
    SELECT x.run_number, x.outcome, x.ended_at FROM (
        SELECT DISTINCT ON (y.kind) y.* FROM pgdurable.workflow_runs y
        WHERE y.source = w.source AND y.workflow = w.name AND y.outcome <> 'running'
        ORDER BY y.kind, y.runid DESC) x
    ORDER BY (x.outcome = 'failed') DESC, x.runid DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (
    SELECT x.run_number, x.ended_at, x.error FROM pgdurable.workflow_runs x
    WHERE x.source = w.source AND x.workflow = w.name AND x.outcome = 'failed'
    ORDER BY x.runid DESC LIMIT 1) f ON true
WHERE w.run_as IS NULL AND pgdurable.sees_role(NULL)
   OR w.run_as IS NOT NULL AND to_regrole(quote_ident(w.run_as)) IS NOT NULL
      AND pgdurable.sees_role(to_regrole(quote_ident(w.run_as)));
COMMENT ON VIEW pgdurable.workflow_health IS
    'Registered workflows: state, last outcome and error, next due time, overdue';

-- Every visible instance with what it is doing now. df's status says running
-- for a loop that sleeps until its next tick; state tells them apart:
--   pending   started, no worker has taken it yet
--   running   a worker holds it
--   waiting   for a timer (wakes_at) or a signal (waiting_signals)
--   queued    runnable now, no worker holds it
--   completed, failed, cancelled: as df.instances.status
CREATE VIEW pgdurable.instance_states WITH (security_barrier) AS
SELECT i.id, i.label, i.status,
       CASE WHEN i.status NOT IN ('pending', 'running') OR r.instance_id IS NULL THEN i.status
            WHEN r.lease_expires_at >= clock_timestamp() THEN 'running'
            WHEN i.status = 'pending' THEN 'pending'
            WHEN r.wake_at > clock_timestamp() THEN 'waiting'
            ELSE 'queued' END AS state,
       CASE WHEN r.wake_at > clock_timestamp() AND r.wake_at < 'infinity' THEN r.wake_at END
           AS wakes_at,
       coalesce(r.waiting_signals, '{}') AS waiting_signals,
       i.created_at, i.updated_at, i.completed_at
FROM df.instances i
LEFT JOIN pgdurable.runs r ON r.instance_id = i.id
WHERE pgdurable.sees_role(i.submitted_by);
COMMENT ON VIEW pgdurable.instance_states IS
    'Instances (own only) with what they do now: pending, running, waiting, queued or ended';

GRANT SELECT ON pgdurable.run_history, pgdurable.job_run_details, pgdurable.workflow_health,
    pgdurable.instance_states TO PUBLIC;
