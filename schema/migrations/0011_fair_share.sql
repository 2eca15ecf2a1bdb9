-- Security (issue 16, the rest): limits one role cannot get around.
--
--   * Fair shares: claim_v3 gives each role with runnable work a share of a
--     worker's slots (the worker passes what it holds per role), so one
--     role's long steps cannot keep every other role waiting.
--   * The step time limit, pgdurable.step_timeout, read by the worker
--     (pgdurable.worker_limits_v1) the administrator's way.
--   * df.start refuses SQL text with top-level transaction control: the
--     worker could not keep such a step exactly-once.
--   * Limits enforced in a caller's session ('new'-mode admission, the
--     df.list_instances cap) come from the administrator's configuration,
--     never from SET, PGOPTIONS or ALTER ROLE/DATABASE … SET.
--
-- Administrator-only settings (read with pgdurable.admin_setting):
--   pgdurable.step_timeout ['1h']  how long one SQL or HTTP step may run; an
--       interval ('90s', '2h') or seconds; 0 = no limit. A database's own
--       value (ALTER DATABASE … SET) may only lower it.
--   pg_durable.max_new_transaction_starts ['2'], pg_durable.new_transaction_start_timeout ['5'],
--   pg_durable.list_instances_max_limit ['1000']  (postmaster and superuser
--       settings in the reference; a superuser session may still SET the
--       last one for itself, as there)

-- ---------------------------------------------------------------------------
-- Fair shares: the role of each run, and a claim that spreads slots
-- ---------------------------------------------------------------------------

-- The role is copied onto the run so the claim can find the roles with
-- runnable work from an index, without joining every queued run to
-- df.instances.
ALTER TABLE pgdurable.runs ADD COLUMN submitted_by oid;
UPDATE pgdurable.runs r SET submitted_by = i.submitted_by
FROM df.instances i WHERE i.id = r.instance_id;
ALTER TABLE pgdurable.runs ALTER COLUMN submitted_by SET NOT NULL;
CREATE INDEX runs_role_wake_idx ON pgdurable.runs (submitted_by, wake_at);

CREATE FUNCTION pgdurable.run_role() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.submitted_by := (SELECT i.submitted_by FROM df.instances i WHERE i.id = NEW.instance_id);
    RETURN NEW;
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.run_role() FROM PUBLIC;
CREATE TRIGGER runs_role BEFORE INSERT ON pgdurable.runs
    FOR EACH ROW EXECUTE FUNCTION pgdurable.run_role();

-- claim_v2 with fair shares. held is what the calling worker holds now, per
-- role oid ({"16384": 3}); slots its concurrency. With R roles that hold or
-- wait for slots, a role's share is ceil(slots / R). Free slots go first to
-- claims that keep a role within its share, round-robin (each role's first
-- run, then each one's second...) and in wake order within a role; free
-- slots nobody below their share wants go to the others, so a role alone
-- uses every slot. A role below its share may also take the slots other
-- roles hold beyond theirs (the worker then holds more than slots, at most
-- twice as many): slots are not taken back from a running step, and without
-- this a role arriving while another fills the worker would wait for those
-- steps to end. Returns the role of each claimed run.
CREATE FUNCTION pgdurable.claim_v3(worker_name text, token_hash bytea, slots integer,
                                   held jsonb, lease_seconds double precision)
RETURNS TABLE (instance_id varchar(8), epoch bigint, role_oid oid, instance json)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    waiting oid[];
    holding oid[] := ARRAY(SELECT k::oid FROM jsonb_object_keys(held) k WHERE (held ->> k)::int > 0);
    share integer;
    held_total integer;
    beyond integer;
    free integer;
    ids text[];
    epochs bigint[];
    roles oid[];
BEGIN
    -- Roles with a runnable run: one index probe per role that has runs.
    WITH RECURSIVE role_list(r) AS (
        (SELECT r.submitted_by FROM pgdurable.runs r ORDER BY r.submitted_by LIMIT 1)
        UNION ALL
        SELECT (SELECT r.submitted_by FROM pgdurable.runs r
                WHERE r.submitted_by > l.r ORDER BY r.submitted_by LIMIT 1)
        FROM role_list l WHERE l.r IS NOT NULL
    )
    SELECT array_agg(l.r) INTO waiting FROM role_list l
    WHERE l.r IS NOT NULL AND EXISTS (
        SELECT 1 FROM pgdurable.runs r
        WHERE r.submitted_by = l.r
          AND (r.lease_expires_at IS NULL OR r.lease_expires_at < clock_timestamp())
          AND r.wake_at <= clock_timestamp());
    -- Runs woken by a signal only (claim_v2's second condition) have a
    -- wake_at of now since 0008's trigger; the claim below still checks both.
    IF waiting IS NULL THEN
        RETURN;
    END IF;
    share := ceil(slots::numeric / (SELECT count(DISTINCT x) FROM unnest(waiting || holding) x));
    SELECT coalesce(sum(v::int), 0), coalesce(sum(greatest(v::int - share, 0)), 0)
    INTO held_total, beyond
    FROM jsonb_each_text(held) AS h(k, v);
    free := greatest(slots - held_total, 0);
    IF free + beyond <= 0 THEN
        RETURN;
    END IF;

    WITH picked AS (
        SELECT p.instance_id, p.wake_at, p.submitted_by,
               row_number() OVER (PARTITION BY p.submitted_by ORDER BY p.wake_at, p.instance_id) AS turn,
               coalesce((held ->> w.role::text)::int, 0) AS had
        FROM unnest(waiting) AS w(role)
        CROSS JOIN LATERAL (
            SELECT r.instance_id, r.wake_at, r.submitted_by
            FROM pgdurable.runs r
            WHERE r.submitted_by = w.role
              AND (r.lease_expires_at IS NULL OR r.lease_expires_at < clock_timestamp())
              AND (r.wake_at <= clock_timestamp()
                   OR (r.waiting_signals <> '{}' AND EXISTS (
                           SELECT 1 FROM pgdurable.signals s
                           WHERE s.instance_id = r.instance_id AND s.name = ANY (r.waiting_signals))))
            ORDER BY r.wake_at, r.instance_id
            LIMIT greatest(share - coalesce((held ->> w.role::text)::int, 0), 0) + free
            FOR UPDATE OF r SKIP LOCKED
        ) AS p
    ), within_share AS (
        SELECT p.instance_id FROM picked p WHERE p.had + p.turn <= share
        ORDER BY p.turn, p.wake_at, p.instance_id LIMIT free + beyond
    ), beyond_share AS (  -- only free slots, once the claims within shares have theirs
        SELECT p.instance_id FROM picked p WHERE p.had + p.turn > share
        ORDER BY p.turn, p.wake_at, p.instance_id
        LIMIT greatest(free - (SELECT count(*) FROM within_share), 0)
    ), candidates AS (
        SELECT w.instance_id FROM within_share w
        UNION ALL
        SELECT b.instance_id FROM beyond_share b
    ), claimed AS (
        UPDATE pgdurable.runs r
        SET epoch = r.epoch + 1, token_hash = claim_v3.token_hash, worker = worker_name,
            lease_expires_at = clock_timestamp() + make_interval(secs => lease_seconds)
        FROM candidates c
        WHERE r.instance_id = c.instance_id
        RETURNING r.instance_id, r.epoch, r.wake_at, r.submitted_by
    ), started AS (
        UPDATE df.instances i SET status = 'running', updated_at = now()
        FROM claimed c WHERE i.id = c.instance_id AND i.status = 'pending'
        RETURNING i.id
    ), noted AS (
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
    SELECT array_agg(c.instance_id ORDER BY c.wake_at, c.instance_id),
           array_agg(c.epoch ORDER BY c.wake_at, c.instance_id),
           array_agg(c.submitted_by ORDER BY c.wake_at, c.instance_id)
    INTO ids, epochs, roles FROM claimed c;
    FOR k IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        instance_id := ids[k];
        epoch := epochs[k];
        role_oid := roles[k];
        instance := pgdurable.load_v1(ids[k]);
        RETURN NEXT;
    END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.claim_v3(text, bytea, integer, jsonb, double precision)
FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- The limits the worker enforces
-- ---------------------------------------------------------------------------

-- In seconds (NULL: no limit): the administrator's value, or a lower one
-- set for the database (ALTER DATABASE … SET pgdurable.step_timeout, read
-- on the worker's own connection): a database may tighten the limit, never
-- lift it. A value that is not an interval raises, so a typo stops the
-- worker at start instead of silently lifting the limit.
CREATE FUNCTION pgdurable.step_seconds(name text, configured text) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    seconds double precision;
BEGIN
    IF coalesce(btrim(configured), '') = '' THEN
        RETURN NULL;
    END IF;
    seconds := extract(epoch FROM btrim(configured)::interval);
    RETURN CASE WHEN seconds > 0 THEN seconds END;  -- 0: no limit
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
    RAISE EXCEPTION '% must be an interval such as ''1h'' or ''90s'', not %', name, quote_literal(configured)
        USING HINT = 'Fix it in postgresql.conf (or ALTER SYSTEM SET pgdurable.step_timeout = ''1h''), then SELECT pg_reload_conf().';
END;
$$;

CREATE FUNCTION pgdurable.worker_limits_v1(OUT step_timeout double precision)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT least(pgdurable.step_seconds('pgdurable.step_timeout',
                                        pgdurable.admin_setting('pgdurable.step_timeout', '1h')),
                 pgdurable.step_seconds('pgdurable.step_timeout (database)',
                                        current_setting('pgdurable.step_timeout', true)))
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.worker_limits_v1() FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Limits enforced in the caller's session
-- ---------------------------------------------------------------------------

-- The df.list_instances cap, as 0004's, from the administrator's files; as
-- the reference's superuser-only (SUSET) setting, a superuser session's own
-- value counts too. SECURITY DEFINER: callers may not run admin_setting.
CREATE OR REPLACE FUNCTION pgdurable.check_list_limit(limit_count integer) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    setting text := btrim(CASE
        WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user)
            THEN coalesce(nullif(current_setting('pg_durable.list_instances_max_limit', true), ''),
                          pgdurable.admin_setting('pg_durable.list_instances_max_limit', '1000'))
        ELSE pgdurable.admin_setting('pg_durable.list_instances_max_limit', '1000') END);
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

-- 0009's function; only the admission settings are now read from the
-- administrator's files (a session could lift or zero the launch limit).
CREATE OR REPLACE FUNCTION pgdurable.start_in_new_transaction(fut text, label text, database text, as_role text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    max_starts int := pgdurable.admin_setting('pg_durable.max_new_transaction_starts', '2')::int;
    wait_seconds int := pgdurable.admin_setting('pg_durable.new_transaction_start_timeout', '5')::int;
    deadline timestamptz := clock_timestamp() + make_interval(secs => wait_seconds);
    slot int;
    dblink text;  -- schema prefix of the dblink functions
    conninfo text;
    connection_name text := 'pgdurable_start_' || pg_backend_pid();
    instance_id text;
BEGIN
    IF pgdurable.in_workflow() THEN
        RAISE EXCEPTION 'df.start(transaction_mode => ''new'') cannot be called inside a workflow - use the default transaction_mode => ''caller''';
    END IF;
    IF NOT pg_catalog.pg_has_role(session_user, as_role, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to start a workflow as role "%"', as_role;
    END IF;
    SELECT quote_ident(n.nspname) || '.' INTO dblink
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'dblink';
    IF dblink IS NULL THEN
        RAISE EXCEPTION 'transaction_mode ''new'' needs the dblink extension, which this server does not have'
            USING HINT = 'Install PostgreSQL''s contrib modules, then run `pgdurable schema upgrade`, or use transaction_mode => ''caller''.';
    END IF;
    conninfo := format('%s dbname=%s user=%s application_name=%s',
                       pgdurable.loopback_address(), quote_literal(current_database()),
                       quote_literal(as_role), quote_literal('pgdurable:start'));

    <<admission>>
    LOOP
        FOR candidate IN 0 .. max_starts - 1 LOOP
            IF pg_catalog.pg_try_advisory_lock(1346847814, candidate) THEN
                slot := candidate;
                EXIT admission;
            END IF;
        END LOOP;
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'pg_durable: launch limit reached (max_new_transaction_starts=%). Timed out after %s waiting for a launch slot for df.start(transaction_mode => ''new'')', max_starts, wait_seconds;
        END IF;
        PERFORM pg_catalog.pg_sleep(0.02);
    END LOOP;

    BEGIN
        EXECUTE format('SELECT %sdblink_connect_u($1, $2)', dblink) USING connection_name, conninfo;
        EXECUTE format('SELECT %sdblink_exec($1, $2)', dblink)
            USING connection_name, 'SET lock_timeout = 30000; SET statement_timeout = 30000';
        EXECUTE format('SELECT r.id FROM %sdblink($1, $2) AS r(id text)', dblink)
            INTO instance_id
            USING connection_name, format('SELECT df.start(%L, %L, %L)', fut, label, database);
        EXECUTE format('SELECT %sdblink_disconnect($1)', dblink) USING connection_name;
    EXCEPTION WHEN others THEN
        EXECUTE format('SELECT %1$sdblink_disconnect($1) WHERE $1 = ANY (%1$sdblink_get_connections())', dblink)
            USING connection_name;
        PERFORM pg_catalog.pg_advisory_unlock(1346847814, slot);
        RAISE;
    END;
    PERFORM pg_catalog.pg_advisory_unlock(1346847814, slot);
    RETURN instance_id;
END;
$$;

-- ---------------------------------------------------------------------------
-- df.start: no top-level transaction control in SQL steps
-- ---------------------------------------------------------------------------

-- The first top-level statement of query that controls the transaction
-- (BEGIN, START TRANSACTION, COMMIT, END, ABORT, ROLLBACK other than
-- ROLLBACK TO a savepoint), as its leading words, or NULL. A small lexer of
-- PostgreSQL's rules, as the server reads the text with
-- standard_conforming_strings on (the worker sets it on its step sessions):
-- '…' and E'…' strings, "…" identifiers, $tag$…$tag$ bodies, -- and nested
-- /* */ comments; a BEGIN ATOMIC … END body is part of its CREATE statement.
-- Text it cannot read to the end (an unterminated string) gives NULL: the
-- server refuses that text anyway. The worker applies the same rule
-- (worker/step_text.py) to the text it is about to run.
CREATE FUNCTION pgdurable.transaction_control_in(query text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ch text[];
    n int;
    i int := 1;
    j int;
    c text;
    depth int;
    tag text;
    word text;
    words text[] := '{}';  -- leading tokens of the current statement ('' for a non-word)
    previous text := '';   -- the last word seen
    atomic int := 0;       -- nesting inside BEGIN ATOMIC … END
BEGIN
    -- Cheap refusal of the common case: no keyword that could matter.
    IF query IS NULL OR query !~* '\m(begin|commit|end|abort|rollback|start)\M' THEN
        RETURN NULL;
    END IF;
    ch := regexp_split_to_array(query, '');
    n := cardinality(ch);
    WHILE i <= n + 1 LOOP
        c := CASE WHEN i <= n THEN ch[i] ELSE ';' END;  -- the end ends the last statement
        IF c ~ '^[ \t\n\r\f\v]$' THEN
            i := i + 1;
        ELSIF c = '-' AND ch[i + 1] IS NOT DISTINCT FROM '-' THEN
            WHILE i <= n AND ch[i] <> E'\n' LOOP i := i + 1; END LOOP;
        ELSIF c = '/' AND ch[i + 1] IS NOT DISTINCT FROM '*' THEN
            depth := 1;
            i := i + 2;
            WHILE depth > 0 LOOP
                IF i > n THEN RETURN NULL; END IF;
                IF ch[i] = '/' AND ch[i + 1] IS NOT DISTINCT FROM '*' THEN
                    depth := depth + 1; i := i + 2;
                ELSIF ch[i] = '*' AND ch[i + 1] IS NOT DISTINCT FROM '/' THEN
                    depth := depth - 1; i := i + 2;
                ELSE
                    i := i + 1;
                END IF;
            END LOOP;
        ELSIF c = '''' OR (c IN ('e', 'E') AND ch[i + 1] IS NOT DISTINCT FROM '''') THEN
            j := CASE WHEN c = '''' THEN i + 1 ELSE i + 2 END;
            LOOP
                IF j > n THEN RETURN NULL; END IF;
                IF c <> '''' AND ch[j] = '\' THEN
                    j := j + 2;
                ELSIF ch[j] = '''' THEN
                    EXIT WHEN ch[j + 1] IS DISTINCT FROM '''';
                    j := j + 2;
                ELSE
                    j := j + 1;
                END IF;
            END LOOP;
            i := j + 1;
            words := words || ''::text;
            previous := '';
        ELSIF c = '"' THEN
            j := i + 1;
            LOOP
                IF j > n THEN RETURN NULL; END IF;
                IF ch[j] = '"' THEN
                    EXIT WHEN ch[j + 1] IS DISTINCT FROM '"';
                    j := j + 2;
                ELSE
                    j := j + 1;
                END IF;
            END LOOP;
            i := j + 1;
            words := words || ''::text;
            previous := '';
        ELSIF c = '$' AND (ch[i + 1] IS NOT DISTINCT FROM '$' OR ch[i + 1] ~ '^[A-Za-z_\u0080-\U0010ffff]$') THEN
            j := i + 1;
            WHILE j <= n AND ch[j] ~ '^[A-Za-z0-9_\u0080-\U0010ffff]$' LOOP j := j + 1; END LOOP;
            IF j > n OR ch[j] <> '$' THEN  -- not a tag: a lone $ character
                i := i + 1;
                words := words || ''::text;
                CONTINUE;
            END IF;
            tag := array_to_string(ch[i:j], '');
            depth := strpos(array_to_string(ch[j + 1:n], ''), tag);  -- characters, not bytes
            IF depth = 0 THEN RETURN NULL; END IF;
            i := j + depth + length(tag);
            words := words || ''::text;
            previous := '';
        ELSIF c ~ '^[A-Za-z_\u0080-\U0010ffff]$' THEN
            j := i + 1;
            WHILE j <= n AND ch[j] ~ '^[A-Za-z0-9_$\u0080-\U0010ffff]$' LOOP j := j + 1; END LOOP;
            word := lower(array_to_string(ch[i:j - 1], ''));
            i := j;
            IF atomic > 0 AND word IN ('case', 'begin') THEN
                atomic := atomic + 1;
            ELSIF atomic > 0 AND word = 'end' THEN
                atomic := atomic - 1;
            ELSIF word = 'atomic' AND previous = 'begin' AND cardinality(words) > 1 THEN
                atomic := 1;
            END IF;
            words := words || word;
            previous := word;
        ELSIF c = ';' THEN
            i := i + 1;
            IF atomic = 0 THEN
                IF words[1] IN ('begin', 'commit', 'end', 'abort')
                   OR (words[1] = 'start' AND words[2] IS NOT DISTINCT FROM 'transaction')
                   OR (words[1] = 'rollback' AND NOT 'to' = ANY (words[1:6])) THEN
                    RETURN array_to_string(words[1:3], ' ');
                END IF;
                words := '{}';
                previous := '';
            END IF;
        ELSE
            i := i + 1;
            words := words || ''::text;
            previous := '';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

-- Every SQL node of a graph (as df.start receives it) is checked.
CREATE FUNCTION pgdurable.refuse_transaction_control(graph jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    found text;
BEGIN
    WITH checked AS MATERIALIZED (
        SELECT pgdurable.transaction_control_in(q.node ->> 'query') AS statement
        FROM jsonb_path_query(graph, 'strict $.** ? (@.type() == "object" && @.node_type == "SQL")') AS q(node)
    )
    SELECT c.statement INTO found FROM checked c WHERE c.statement IS NOT NULL LIMIT 1;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'SQL step contains transaction control (%): a step runs in one transaction, which records its completion, so a COMMIT inside it would break exactly-once', upper(found)
            USING HINT = 'Split the text at that statement into separate steps (first ~> second), or move the work into a procedure (CALL runs it at least once).';
    END IF;
END;
$$;

-- 0003's df.start with the transaction-control check in front of both modes.
CREATE OR REPLACE FUNCTION df.start(fut text, label text DEFAULT NULL, database text DEFAULT NULL,
                                    transaction_mode text DEFAULT 'caller')
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CASE transaction_mode
        WHEN 'caller' THEN
            PERFORM pgdurable.refuse_transaction_control(pgdurable.parse_graph(fut));
            RETURN pgdurable.start_in_caller_transaction(fut, label, database);
        WHEN 'new' THEN
            IF pgdurable.in_workflow() THEN
                RAISE EXCEPTION 'df.start(transaction_mode => ''new'') cannot be called inside a workflow - use the default transaction_mode => ''caller''';
            END IF;
            PERFORM pgdurable.flatten_graph(pgdurable.parse_graph(fut), '00000000');
            PERFORM pgdurable.refuse_transaction_control(pgdurable.parse_graph(fut));
            RETURN pgdurable.start_in_new_transaction(fut, label, database, current_user);
        ELSE
            RAISE EXCEPTION 'invalid transaction_mode "%": use ''caller'' (default) or ''new''', transaction_mode;
    END CASE;
END;
$$;
