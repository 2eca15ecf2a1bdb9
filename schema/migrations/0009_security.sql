-- Security (issue 16): what a role granted df.grant_usage can no longer do.
--
--   * 'new'-mode starts: the loopback target is the administrator's choice
--     only (read from the configuration files, never from SET or ALTER
--     ROLE/DATABASE), may not name a user, database or other identity, and
--     the login user is always the caller.
--   * The "inside a workflow" guard no longer rests on a setting the step can
--     change: the worker registers each step session's backend (pid and start
--     time) from its own connection, and the guard looks it up.
--   * Runs count the tries that could not connect to the instance's
--     database, so the worker can fail such an instance after a bounded
--     number of them.
--
-- Administrator-only settings (read with pgdurable.admin_setting):
--   pgdurable.loopback_conninfo ['']  libpq keywords for the 'new'-mode
--       loopback session: host, hostaddr, port, connect_timeout, ssl*, gss*,
--       keepalives*, tcp_user_timeout, channel_binding, target_session_attrs

-- ---------------------------------------------------------------------------
-- Administrator-only settings
-- ---------------------------------------------------------------------------

-- A setting as the administrator wrote it in postgresql.conf (or a file it
-- includes) or with ALTER SYSTEM: the last line the server applies, read
-- from pg_file_settings. A session SET, PGOPTIONS or ALTER ROLE/DATABASE …
-- SET changes only a session's value, never the files, so none of them can
-- change what this returns. Empty or absent: default_value.
--
-- SECURITY DEFINER: pg_file_settings is readable by superusers only.
-- Installed by a non-superuser, the files cannot be read and the default
-- is used.
CREATE FUNCTION pgdurable.admin_setting(name text, default_value text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    configured text;
BEGIN
    SELECT f.setting INTO configured
    FROM pg_catalog.pg_file_settings f
    WHERE f.name = admin_setting.name AND f.applied AND f.error IS NULL
    ORDER BY f.seqno DESC LIMIT 1;
    RETURN coalesce(nullif(configured, ''), default_value);
EXCEPTION WHEN insufficient_privilege THEN
    RETURN default_value;
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.admin_setting(text, text) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- 'new' mode: the loopback target
-- ---------------------------------------------------------------------------

-- Where the loopback session connects: the server's own socket directory
-- and port, unless the administrator set pgdurable.loopback_conninfo. Its
-- keywords may only say where and how to reach the server (host, port, TLS,
-- keepalives…); keywords that choose the identity or the database (user,
-- dbname, password, passfile, service, options, replication…) are refused,
-- since the session logs in as the caller and dblink runs it as superuser.
CREATE OR REPLACE FUNCTION pgdurable.loopback_address() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    configured text := pgdurable.admin_setting('pgdurable.loopback_conninfo', '');
    allowed text[] := ARRAY['host', 'hostaddr', 'port', 'connect_timeout', 'sslmode',
        'sslrootcert', 'sslcrl', 'sslcert', 'sslkey', 'sslsni', 'gssencmode', 'krbsrvname',
        'keepalives', 'keepalives_idle', 'keepalives_interval', 'keepalives_count',
        'tcp_user_timeout', 'channel_binding', 'target_session_attrs'];
    rest text := configured;
    pair text[];
BEGIN
    IF configured = '' THEN
        RETURN format('host=%s port=%s',
                      quote_literal(trim(split_part(current_setting('unix_socket_directories'), ',', 1))),
                      current_setting('port'));
    END IF;
    LOOP
        rest := ltrim(rest, E' \t\r\n');
        EXIT WHEN rest = '';
        -- keyword = value, the value bare or single-quoted with backslash escapes
        pair := regexp_match(rest, '^(([A-Za-z_]+)\s*=\s*(''([^''\\]|\\.)*''|[^\s'']+))');
        IF pair IS NULL THEN
            RAISE EXCEPTION 'pgdurable.loopback_conninfo must be libpq keyword=value settings, not %', configured
                USING HINT = 'Set it in postgresql.conf or with ALTER SYSTEM, e.g. ''host=/run/postgresql port=5432''.';
        END IF;
        IF NOT pair[2] = ANY (allowed) THEN
            RAISE EXCEPTION 'pgdurable.loopback_conninfo may not set "%": the loopback session always logs in as the caller, to the current database', pair[2]
                USING HINT = 'Only these keywords are allowed: ' || array_to_string(allowed, ', ') || '.';
        END IF;
        rest := substr(rest, length(pair[1]) + 1);
    END LOOP;
    RETURN configured;
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.loopback_address() FROM PUBLIC;

-- 0003's function with three changes: the guard is pgdurable.in_workflow()
-- as redefined below; the loopback address comes first in the connection
-- string and the identity after it (libpq lets a later keyword win); and the
-- address is the administrator's (pgdurable.loopback_address).
CREATE OR REPLACE FUNCTION pgdurable.start_in_new_transaction(fut text, label text, database text, as_role text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    max_starts int := pgdurable.setting('pg_durable.max_new_transaction_starts', '2')::int;
    wait_seconds int := pgdurable.setting('pg_durable.new_transaction_start_timeout', '5')::int;
    deadline timestamptz := clock_timestamp() + make_interval(secs => wait_seconds);
    slot int;
    dblink text;  -- schema prefix of the dblink functions
    conninfo text;
    connection_name text := 'pgdurable_start_' || pg_backend_pid();
    instance_id text;
BEGIN
    -- Checked here as well as in df.start: this function is reachable directly.
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
    -- Before taking a slot: a bad administrator setting raises here.
    conninfo := format('%s dbname=%s user=%s application_name=%s',
                       pgdurable.loopback_address(), quote_literal(current_database()),
                       quote_literal(as_role), quote_literal('pgdurable:start'));

    -- Admission: at most max_starts loopback sessions at once, one advisory
    -- lock slot each (key 0x50474446, as the reference); wait for a free slot.
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
-- The "inside a workflow" guard
-- ---------------------------------------------------------------------------

-- Backends the worker opened to run steps, registered by the worker from its
-- own connection when it opens each one. A step can change every setting of
-- its session (df.in_workflow among them) but cannot write this table, nor
-- change its own pid or start time, so it cannot make its session look like
-- an ordinary one. A row of a backend that ended is ignored (the start time
-- no longer matches) and removed at the next registration.
CREATE TABLE pgdurable.step_sessions (
    pid           integer     PRIMARY KEY,
    backend_start timestamptz NOT NULL
);
REVOKE ALL ON pgdurable.step_sessions FROM PUBLIC;

CREATE FUNCTION pgdurable.register_step_session_v1(p_pid integer) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM pgdurable.step_sessions s
    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                      WHERE a.pid = s.pid AND a.backend_start = s.backend_start);
    INSERT INTO pgdurable.step_sessions (pid, backend_start)
    SELECT a.pid, a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = p_pid
    ON CONFLICT (pid) DO UPDATE SET backend_start = excluded.backend_start;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.register_step_session_v1(integer) FROM PUBLIC;

-- True in a step session the worker registered, whatever the step did to its
-- settings; also when df.in_workflow is 'true', as in the reference (a
-- session may always turn the guard on for itself). SECURITY DEFINER: the
-- caller has no privilege on pgdurable.step_sessions.
CREATE OR REPLACE FUNCTION pgdurable.in_workflow() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(current_setting('df.in_workflow', true), '') = 'true'
        OR EXISTS (SELECT 1 FROM pgdurable.step_sessions s
                   JOIN pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a
                     ON a.pid = s.pid AND a.backend_start = s.backend_start
                   WHERE s.pid = pg_catalog.pg_backend_pid())
$$;
