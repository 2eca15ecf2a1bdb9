-- Code steps (SPEC A.4): PYTHON and COMMAND nodes, and who may run them.
--
-- A PYTHON node calls `package.module:function` with JSON args and kwargs;
-- a COMMAND node runs a program with arguments, environment and working
-- directory. The worker runs both in a child process, at-least-once
-- (worker/code_steps.py). The node only names the code: the code itself is
-- never read from the database but from the code roots the worker's operator
-- configured (`pgdurable worker --code-path DIR`).
--
-- Encoding (leaves, like SQL): query =
--   PYTHON   {"args": [...], "kwargs": {...}, "callable": "pkg.mod:function"}
--   COMMAND  {"argv": ["bin/x", ...], "cwd": text|null, "env": {"K": "v"}|null}
-- (jsonb's text form, so the same call always yields the same bytes).
--
-- Who may run what: an administrator (a superuser or the owner of schema
-- pgdurable) grants a role patterns of callables or programs with
-- pgdurable.grant_code(role, 'python:etl.jobs.*') or
-- pgdurable.grant_code(role, 'command:bin/*.sh'); `*` matches any text, `?`
-- one character. A grant to a role covers the roles that inherit from it.
-- df.grant_usage gives no code execution. The check runs where rows are
-- written, in a trigger on df.nodes, so df.start (both transaction modes),
-- deploy_workflow (`pgdurable apply`) and rows inserted by hand all pass
-- through it; the worker asks again before it runs the step
-- (pgdurable.code_step_refusal_v1), so a revoke after the start fails the
-- step. Neither check reads a session setting.

-- ---------------------------------------------------------------------------
-- Node types and constraints
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgdurable.dsl_extension_node_types() RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT ARRAY['RETRY', 'TIMEOUT', 'TRY', 'PYTHON', 'COMMAND']
$$;

ALTER TABLE df.nodes DROP CONSTRAINT nodes_node_type_chk;
ALTER TABLE df.nodes ADD CONSTRAINT nodes_node_type_chk CHECK (node_type IN ('SQL', 'THEN', 'IF',
    'JOIN', 'LOOP', 'BREAK', 'RACE', 'SLEEP', 'WAIT_SCHEDULE', 'HTTP', 'HTTP_MULTIPART', 'SIGNAL',
    'RETRY', 'TIMEOUT', 'TRY', 'PYTHON', 'COMMAND'));

ALTER TABLE df.nodes DROP CONSTRAINT nodes_structure_chk;
ALTER TABLE df.nodes ADD CONSTRAINT nodes_structure_chk CHECK (
    CASE
        WHEN node_type IN ('SQL', 'SLEEP', 'WAIT_SCHEDULE', 'BREAK', 'HTTP', 'HTTP_MULTIPART', 'SIGNAL',
                           'PYTHON', 'COMMAND')
            THEN left_node IS NULL AND right_node IS NULL AND query IS NOT NULL
        WHEN node_type = 'THEN'
            THEN left_node IS NOT NULL AND right_node IS NOT NULL AND query IS NULL
        WHEN node_type = 'IF'
            THEN left_node IS NOT NULL AND right_node IS NOT NULL AND query IS NOT NULL
        WHEN node_type = 'LOOP'
            THEN left_node IS NOT NULL AND right_node IS NULL
        WHEN node_type = 'JOIN'
            THEN left_node IS NOT NULL AND right_node IS NOT NULL
        WHEN node_type = 'RACE'
            THEN left_node IS NOT NULL AND right_node IS NOT NULL AND query IS NULL
        WHEN node_type IN ('RETRY', 'TIMEOUT')
            THEN left_node IS NOT NULL AND right_node IS NULL AND query IS NOT NULL
        WHEN node_type = 'TRY'
            THEN left_node IS NOT NULL AND right_node IS NOT NULL AND query IS NULL
        ELSE false
    END);

-- ---------------------------------------------------------------------------
-- Configs
-- ---------------------------------------------------------------------------

-- What a code node runs, as grants name it: ('python', 'pkg.mod:function')
-- or ('command', argv[0]); NULLs when the config has no such field.
CREATE FUNCTION pgdurable.code_target(node_type text, query text, OUT kind text, OUT target text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE node_type WHEN 'PYTHON' THEN 'python' WHEN 'COMMAND' THEN 'command' END,
           CASE node_type
               WHEN 'PYTHON' THEN pgdurable.json_str(pgdurable.json_object_or_null(query), 'callable')
               WHEN 'COMMAND' THEN
                   CASE WHEN jsonb_typeof(pgdurable.json_object_or_null(query) -> 'argv' -> 0) = 'string'
                        THEN pgdurable.json_object_or_null(query) -> 'argv' ->> 0 END
           END
$$;

-- What is wrong with a code node's config, or NULL. The worker checks the
-- same rules again (worker/code_roots.py) before it resolves anything.
CREATE FUNCTION pgdurable.code_config_error(node_type text, query text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    config jsonb := pgdurable.json_object_or_null(query);
    target text := (pgdurable.code_target(node_type, query)).target;
BEGIN
    IF config IS NULL THEN
        RETURN 'expected a JSON object';
    END IF;
    IF node_type = 'PYTHON' THEN
        IF target IS NULL THEN
            RETURN 'callable must be a string ''package.module:function''';
        ELSIF target !~ '^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$' THEN
            RETURN format('callable %s is not of the form ''package.module:function''', to_json(target));
        ELSIF jsonb_typeof(config -> 'args') IS DISTINCT FROM 'array' THEN
            RETURN 'args must be a JSON array';
        ELSIF jsonb_typeof(config -> 'kwargs') IS DISTINCT FROM 'object' THEN
            RETURN 'kwargs must be a JSON object';
        END IF;
    ELSE
        IF jsonb_typeof(config -> 'argv') IS DISTINCT FROM 'array' OR jsonb_array_length(config -> 'argv') = 0
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(config -> 'argv') a WHERE jsonb_typeof(a) <> 'string') THEN
            RETURN 'argv must be a non-empty array of strings (the program first)';
        ELSIF target = '' THEN
            RETURN 'the program (argv[0]) is empty';
        ELSIF target ~ '(^|/)\.\.(/|$)' THEN
            RETURN format('the program %s contains a ''..'' component; name it by its path inside a code root', to_json(target));
        ELSIF coalesce(jsonb_typeof(config -> 'env'), 'null') NOT IN ('object', 'null')
              OR EXISTS (SELECT 1 FROM jsonb_each(CASE WHEN jsonb_typeof(config -> 'env') = 'object'
                                                       THEN config -> 'env' ELSE '{}' END) e
                         WHERE jsonb_typeof(e.value) <> 'string') THEN
            RETURN 'env must be a JSON object of strings or null';
        ELSIF coalesce(jsonb_typeof(config -> 'cwd'), 'null') NOT IN ('string', 'null') THEN
            RETURN 'cwd must be a string or null';
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

-- ---------------------------------------------------------------------------
-- Constructors
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgdurable.python(callable text, args jsonb DEFAULT '[]', kwargs jsonb DEFAULT '{}')
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    config text;
    problem text;
BEGIN
    IF callable IS NULL THEN
        RETURN NULL;
    END IF;
    config := pg_catalog.jsonb_build_object('callable', callable,
                                            'args', coalesce(args, '[]'::jsonb),
                                            'kwargs', coalesce(kwargs, '{}'::jsonb))::text;
    problem := pgdurable.code_config_error('PYTHON', config);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'pgdurable.python: %', problem;
    END IF;
    RETURN pgdurable.dsl_envelope('PYTHON', query => config);
END;
$$;

CREATE FUNCTION pgdurable.command(argv text[], env jsonb DEFAULT NULL, cwd text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    config text;
    problem text;
BEGIN
    IF argv IS NULL THEN
        RETURN NULL;
    END IF;
    IF array_position(argv, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'pgdurable.command: argv must not contain NULL';
    END IF;
    config := pg_catalog.jsonb_build_object('argv', pg_catalog.to_jsonb(argv),
                                            'env', env, 'cwd', cwd)::text;
    problem := pgdurable.code_config_error('COMMAND', config);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'pgdurable.command: %', problem;
    END IF;
    RETURN pgdurable.dsl_envelope('COMMAND', query => config);
END;
$$;

COMMENT ON FUNCTION pgdurable.python(text, jsonb, jsonb) IS
    'pgdurable extension node (not portable): call a Python function deployed under the worker''s code roots';
COMMENT ON FUNCTION pgdurable.command(text[], jsonb, text) IS
    'pgdurable extension node (not portable): run a program deployed under the worker''s code roots';

-- ---------------------------------------------------------------------------
-- Grants
-- ---------------------------------------------------------------------------

CREATE TABLE pgdurable.code_grants (
    grantee    regrole     NOT NULL,
    kind       text        NOT NULL CONSTRAINT code_grants_kind_chk CHECK (kind IN ('python', 'command')),
    pattern    text        NOT NULL CONSTRAINT code_grants_pattern_chk CHECK (pattern <> ''),
    granted_by name        NOT NULL DEFAULT current_user,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grantee, kind, pattern)
);
-- Only its owner (the schema's owner) and superusers read or write it.
REVOKE ALL ON pgdurable.code_grants FROM PUBLIC;

-- A grant pattern as a LIKE pattern: `*` any text, `?` one character, the
-- rest literal.
CREATE FUNCTION pgdurable.code_like_pattern(pattern text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT replace(replace(replace(replace(replace(pattern, '\', '\\'), '%', '\%'), '_', '\_'),
                           '*', '%'), '?', '_')
$$;

CREATE FUNCTION pgdurable.check_code_administrator(action text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
       AND NOT pg_catalog.pg_has_role(current_user,
                                      (SELECT n.nspowner FROM pg_catalog.pg_namespace n
                                       WHERE n.nspname = 'pgdurable'), 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to % code execution: only a superuser or the owner of schema pgdurable may', action
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END;
$$;

-- 'python:pattern' or 'command:pattern' split, or an error naming the forms.
CREATE FUNCTION pgdurable.split_code_pattern(pattern text, OUT kind text, OUT body text)
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    kind := split_part(pattern, ':', 1);
    body := substr(pattern, length(kind) + 2);
    IF pattern IS NULL OR kind NOT IN ('python', 'command') OR strpos(pattern, ':') = 0 OR body = '' THEN
        RAISE EXCEPTION 'invalid code pattern %: write ''python:package.module:function'' or ''command:path/in/code/root'' (* matches any text)',
            coalesce(to_json(pattern)::text, 'NULL');
    END IF;
END;
$$;

-- SECURITY INVOKER: writing the table needs its privileges anyway; the
-- explicit check gives the clear error.
CREATE FUNCTION pgdurable.grant_code(grantee regrole, pattern text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parts record := pgdurable.split_code_pattern(pattern);
    added boolean;
BEGIN
    PERFORM pgdurable.check_code_administrator('grant');
    IF grantee IS NULL THEN
        RAISE EXCEPTION 'pgdurable.grant_code: the role must not be NULL';
    END IF;
    INSERT INTO pgdurable.code_grants (grantee, kind, pattern)
    VALUES (grantee, parts.kind, parts.body)
    ON CONFLICT DO NOTHING
    RETURNING true INTO added;
    RETURN coalesce(added, false);
END;
$$;

CREATE FUNCTION pgdurable.revoke_code(grantee regrole, pattern text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parts record := pgdurable.split_code_pattern(pattern);
    removed boolean;
BEGIN
    PERFORM pgdurable.check_code_administrator('revoke');
    DELETE FROM pgdurable.code_grants g
    WHERE g.grantee = revoke_code.grantee AND g.kind = parts.kind AND g.pattern = parts.body
    RETURNING true INTO removed;
    RETURN coalesce(removed, false);
END;
$$;

COMMENT ON FUNCTION pgdurable.grant_code(regrole, text) IS
    'allow a role (and roles inheriting from it) to start code steps matching python:PATTERN or command:PATTERN';
COMMENT ON FUNCTION pgdurable.revoke_code(regrole, text) IS
    'remove a grant made with pgdurable.grant_code (running steps fail at their next start)';

-- Why `role` may not run the code node (node_type, query), or NULL when it
-- may. SECURITY DEFINER: it reads pgdurable.code_grants, which its callers
-- (the trigger below, the worker's check) must not need access to.
CREATE FUNCTION pgdurable.code_refusal(p_role regrole, node_type text, query text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text := pgdurable.code_config_error(node_type, query);
    what record := pgdurable.code_target(node_type, query);
BEGIN
    IF problem IS NOT NULL THEN
        RETURN format('invalid %s node: %s', node_type, problem);
    END IF;
    -- Joined to pg_roles: a grant to a role dropped since names no role.
    IF EXISTS (SELECT 1 FROM pgdurable.code_grants g
               JOIN pg_catalog.pg_roles r ON r.oid = g.grantee
               WHERE g.kind = what.kind
                 AND pg_catalog.pg_has_role(p_role, r.oid, 'USAGE')
                 AND what.target LIKE pgdurable.code_like_pattern(g.pattern) ESCAPE '\') THEN
        RETURN NULL;
    END IF;
    RETURN format('role %s is not allowed to run %s %s in a workflow: no pgdurable.grant_code pattern of it matches',
                  to_json(p_role::text), CASE what.kind WHEN 'python' THEN 'Python callable' ELSE 'program' END,
                  to_json(what.target));
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.code_refusal(regrole, text, text) FROM PUBLIC;

-- Every code node written to df.nodes is checked against its role's grants.
CREATE FUNCTION pgdurable.check_code_node() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    refusal text := pgdurable.code_refusal(NEW.submitted_by, NEW.node_type, NEW.query);
    what record := pgdurable.code_target(NEW.node_type, NEW.query);
BEGIN
    IF refusal IS NOT NULL THEN
        RAISE EXCEPTION '%', refusal
            USING ERRCODE = 'insufficient_privilege',
                  HINT = CASE WHEN what.target IS NULL THEN NULL ELSE format(
                      'An administrator allows it with SELECT pgdurable.grant_code(%L, %L); the worker must also have it under a --code-path root.',
                      NEW.submitted_by::text, what.kind || ':' || what.target) END;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER nodes_code_grant_chk
    BEFORE INSERT OR UPDATE OF node_type, query, submitted_by ON df.nodes
    FOR EACH ROW WHEN (NEW.node_type IN ('PYTHON', 'COMMAND'))
    EXECUTE FUNCTION pgdurable.check_code_node();

-- The worker's check before it runs a code step: the node as stored, its
-- instance's role, the grants as they are now. NULL when it may run.
CREATE FUNCTION pgdurable.code_step_refusal_v1(p_instance text, p_epoch bigint, p_token bytea,
                                               p_node text)
RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    node record;
BEGIN
    PERFORM pgdurable.check_lease(p_instance, p_epoch, p_token);
    SELECT n.node_type, n.query, i.submitted_by INTO node
    FROM df.nodes n JOIN df.instances i ON i.id = n.instance_id
    WHERE n.instance_id = p_instance AND n.id = p_node;
    IF NOT FOUND OR node.node_type NOT IN ('PYTHON', 'COMMAND') THEN
        RETURN format('node %s of instance %s is not a code step', p_node, p_instance);
    END IF;
    RETURN pgdurable.code_refusal(node.submitted_by, node.node_type, node.query);
END;
$$;
REVOKE EXECUTE ON FUNCTION pgdurable.code_step_refusal_v1(text, bigint, bytea, text) FROM PUBLIC;

-- For generated files that start their instances later (a queue job's
-- enqueue function): refuse at apply time, with the error df.start would
-- give then, when `role` may not run one of the graph's code nodes. Answers
-- only for the caller itself, a role it is a member of, or an administrator.
CREATE FUNCTION pgdurable.check_code_grants(graph text, role_name text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    node jsonb;
    refusal text;
    grantee regrole := pg_catalog.quote_ident(role_name)::pg_catalog.regrole;
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, grantee, 'MEMBER')
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user)
       AND NOT pg_catalog.pg_has_role(session_user,
                                      (SELECT n.nspowner FROM pg_catalog.pg_namespace n
                                       WHERE n.nspname = 'pgdurable'), 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to check the code grants of role "%"', role_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    FOR node IN
        SELECT v FROM jsonb_path_query(graph::jsonb,
            'strict $.** ? (@.type() == "object" && (@.node_type == "PYTHON" || @.node_type == "COMMAND"))') v
    LOOP
        refusal := pgdurable.code_refusal(grantee, node ->> 'node_type', node ->> 'query');
        IF refusal IS NOT NULL THEN
            RAISE EXCEPTION '%', refusal
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('An administrator allows it with SELECT pgdurable.grant_code(%L, %L); the worker must also have it under a --code-path root.',
                                    role_name, (pgdurable.code_target(node ->> 'node_type', node ->> 'query')).kind
                                    || ':' || (pgdurable.code_target(node ->> 'node_type', node ->> 'query')).target);
        END IF;
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------
-- df.explain labels
-- ---------------------------------------------------------------------------

-- The labels of 0007 plus the code steps': `PYTHON pkg.mod:function`,
-- `COMMAND bin/x.sh`.
CREATE OR REPLACE FUNCTION pgdurable.explain_label(node jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    query text := node ->> 'query';
    config jsonb := pgdurable.jsonb_or_null(node ->> 'query');
    suffix text := coalesce(' |=> ''' || (node ->> 'name') || '''', '');
    value text;
    timeout text;
BEGIN
    CASE node ->> 'type'
        WHEN 'SQL' THEN
            RETURN 'SQL: ' || pgdurable.cut_bytes(coalesce(query, '?'), 50, 47) || suffix;
        WHEN 'SLEEP' THEN
            RETURN 'SLEEP ' || coalesce(query, '?') || 's' || suffix;
        WHEN 'WAIT_SCHEDULE' THEN
            RETURN 'WAIT ''' || coalesce(pgdurable.json_str(config, 'cron_expr'), '?') || '''' || suffix;
        WHEN 'HTTP', 'HTTP_MULTIPART' THEN
            IF config IS NULL THEN
                RETURN (node ->> 'type') || ' ? ?' || suffix;
            END IF;
            RETURN (node ->> 'type') || ' ' || coalesce(pgdurable.json_str(config, 'method'), 'POST') || ' '
                || pgdurable.cut_bytes(coalesce(pgdurable.json_str(config, 'url'), '?'), 40, 37) || suffix;
        WHEN 'SIGNAL' THEN
            -- The timeout shows only when it is a JSON integer.
            IF jsonb_typeof(config) = 'object' AND jsonb_typeof(config -> 'timeout_seconds') = 'number'
               AND (config ->> 'timeout_seconds') ~ '^-?[0-9]+$' THEN
                timeout := ' (' || (config ->> 'timeout_seconds') || 's)';
            END IF;
            RETURN 'SIGNAL ''' || coalesce(pgdurable.json_str(config, 'signal_name'), '?') || ''''
                || coalesce(timeout, '') || suffix;
        WHEN 'LOOP' THEN
            RETURN CASE WHEN node ->> 'cond' IS NOT NULL THEN 'LOOP (while)' ELSE 'LOOP (infinite)' END
                || suffix;
        WHEN 'BREAK' THEN
            value := pgdurable.json_str(config, 'break_value');
            IF value IS NULL THEN
                RETURN 'BREAK' || suffix;
            END IF;
            RETURN 'BREAK ''' || pgdurable.cut_bytes(value, 20, 17) || '''' || suffix;
        WHEN 'IF' THEN
            RETURN 'IF' || suffix;
        WHEN 'JOIN' THEN
            RETURN 'JOIN (' || ((node ->> 'left' IS NOT NULL)::integer + (node ->> 'right' IS NOT NULL)::integer
                                + coalesce((node ->> 'extra_count')::integer, 0)) || ')' || suffix;
        WHEN 'THEN' THEN
            RETURN 'SEQUENCE';
        WHEN 'PYTHON', 'COMMAND' THEN
            RETURN (node ->> 'type') || ' '
                || pgdurable.cut_bytes(coalesce((pgdurable.code_target(node ->> 'type', query)).target, '?'), 40, 37)
                || suffix;
        WHEN 'RETRY', 'TIMEOUT', 'TRY' THEN
            RETURN pgdurable.explain_extension_label(node) || suffix;
        ELSE
            RETURN node ->> 'type';
    END CASE;
END;
$$;
