-- The registry of deployed (migrated) workflows (SPEC A.1: pgdurable's own
-- objects live in schema pgdurable) and the idempotent deploy function that
-- every generated file calls.
--
-- One row per (source, name): the graph JSON and its SHA-256, the source
-- schedule, the portability profile, the role and database the instance runs
-- as/in, and the id of the one long-running instance started for it.
--
-- pgdurable.deploy_workflow(...) is what makes re-applying a file safe:
--   * same graph, role, database and start flag as registered: nothing happens;
--   * anything changed: the registered instance is cancelled (df.cancel) and,
--     unless the workflow is registered without starting, a new one starts;
--   * all in the caller's transaction, so a failure changes nothing.
--
-- Identity: the file is applied by an administrator, but the instance must
-- belong to the job's role (SPEC B §1.4: df.start records current_user). The
-- function switches `role` to that role just around df.start and df.cancel
-- (the setting is transaction-local and restored right after). No user SQL
-- runs under that switch: df.start only validates and inserts rows, and the
-- worker later runs every step by logging in as the role itself (SPEC A.2.3).

CREATE TABLE pgdurable.workflows (
    source text NOT NULL,
    name text NOT NULL,
    definition text NOT NULL,
    definition_hash text NOT NULL,
    schedule text,
    profile text NOT NULL CONSTRAINT workflows_profile_chk CHECK (profile IN ('portable', 'pgdurable')),
    fidelity text CONSTRAINT workflows_fidelity_chk
        CHECK (fidelity IN ('exact', 'approximate', 'manual', 'failed')),
    run_as text,
    target_database text,
    started boolean NOT NULL,
    instance_id varchar(8),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, name)
);
COMMENT ON TABLE pgdurable.workflows IS
    'Workflows deployed by generated migration files (pgdurable apply); one running instance each';

-- Run `statement` (df.start or df.cancel) as `as_role`, then switch back.
-- Returns the statement's text result.
CREATE FUNCTION pgdurable.call_as_role(as_role text, statement text, args text[])
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prior text := pg_catalog.current_setting('role');
    outcome text;
BEGIN
    PERFORM pg_catalog.set_config('role', as_role, true);
    EXECUTE statement INTO outcome USING args[1], args[2], args[3];
    PERFORM pg_catalog.set_config('role', prior, true);
    RETURN outcome;
END;
$$;

CREATE FUNCTION pgdurable.deploy_workflow(
    source text,
    workflow_name text,
    definition text,
    schedule text,
    profile text,
    fidelity text,
    run_as text,
    target_database text,
    start boolean
) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    graph text := pgdurable.dsl_node(definition);
    digest text := pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(graph, 'UTF8')), 'hex');
    old pgdurable.workflows;
    existed boolean;
    new_instance varchar(8);
BEGIN
    -- serialise deployers of the same workflow (the row may not exist yet)
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgdurable.workflows'),
                                             pg_catalog.hashtext(source || '/' || workflow_name));
    SELECT * INTO old FROM pgdurable.workflows w
    WHERE w.source = deploy_workflow.source AND w.name = workflow_name FOR UPDATE;
    existed := FOUND;
    IF existed AND old.definition_hash = digest AND old.run_as IS NOT DISTINCT FROM run_as
       AND old.target_database IS NOT DISTINCT FROM target_database AND old.started = start THEN
        RETURN 'unchanged';
    END IF;

    IF start THEN
        IF run_as IS NULL THEN
            RAISE EXCEPTION 'workflow %/% has no role to run as', source, workflow_name
                USING HINT = 'Regenerate it with --default-username ROLE.';
        ELSIF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = run_as) THEN
            RAISE EXCEPTION 'role "%" (the role workflow %/% runs as) does not exist', run_as,
                source, workflow_name
                USING HINT = 'Create the role, or regenerate with --default-username ROLE.';
        ELSIF NOT pg_catalog.has_any_column_privilege(run_as, 'df.instances', 'INSERT') THEN
            RAISE EXCEPTION 'role "%" may not start workflows (workflow %/%)', run_as, source,
                workflow_name
                USING HINT = pg_catalog.format('As an administrator run SELECT df.grant_usage(%L); then apply again.', run_as);
        END IF;
    END IF;

    IF existed AND old.instance_id IS NOT NULL THEN
        PERFORM pgdurable.call_as_role(old.run_as, 'SELECT df.cancel($1, $2)',
            ARRAY[old.instance_id, 'replaced by a new deployment of ' || source || '/' || workflow_name]);
    END IF;
    IF start THEN
        new_instance := pgdurable.call_as_role(run_as, 'SELECT df.start($1, $2, $3)',
            ARRAY[graph, source || '/' || workflow_name, target_database]);
    END IF;

    INSERT INTO pgdurable.workflows AS w (source, name, definition, definition_hash, schedule,
        profile, fidelity, run_as, target_database, started, instance_id)
    VALUES (source, workflow_name, graph, digest, schedule, profile, fidelity, run_as,
        target_database, start, new_instance)
    ON CONFLICT ON CONSTRAINT workflows_pkey DO UPDATE SET
        definition = EXCLUDED.definition, definition_hash = EXCLUDED.definition_hash,
        schedule = EXCLUDED.schedule, profile = EXCLUDED.profile, fidelity = EXCLUDED.fidelity,
        run_as = EXCLUDED.run_as, target_database = EXCLUDED.target_database,
        started = EXCLUDED.started, instance_id = EXCLUDED.instance_id, updated_at = now();
    RETURN CASE WHEN NOT existed THEN 'created' ELSE 'replaced' END
        || CASE WHEN new_instance IS NULL THEN '' ELSE ' ' || new_instance END;
END;
$$;

-- Cancel a deployed workflow's instance and remove it from the registry.
CREATE FUNCTION pgdurable.retire_workflow(source text, workflow_name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old pgdurable.workflows;
BEGIN
    DELETE FROM pgdurable.workflows w
    WHERE w.source = retire_workflow.source AND w.name = workflow_name
    RETURNING * INTO old;
    IF old.instance_id IS NOT NULL THEN
        PERFORM pgdurable.call_as_role(old.run_as, 'SELECT df.cancel($1, $2)',
            ARRAY[old.instance_id, 'retired ' || source || '/' || workflow_name]);
    END IF;
    RETURN old.name IS NOT NULL;
END;
$$;

REVOKE ALL ON TABLE pgdurable.workflows FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pgdurable.call_as_role(text, text, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pgdurable.deploy_workflow(text, text, text, text, text, text, text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pgdurable.retire_workflow(text, text) FROM PUBLIC;
