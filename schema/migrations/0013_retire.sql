-- Retiring a workflow removes everything its generated file created (issue 20).
--
-- pgdurable.retire_workflow (0006) cancels the instance and deletes the
-- registry row, but a queue job's enqueue function (pgdurable_jobs.enqueue_*)
-- and an Airflow DAG's trigger function (airflow_dags.trigger_*) stayed and
-- still started runs. Each such function's comment names its workflow
-- ('<source>/<name>#run', '<source>/<name>#trigger'); pgdurable.retire drops
-- those of the retired workflow in the caller's transaction, with the
-- registry row, so a failure changes nothing.
--
-- Administrators only (EXECUTE revoked from PUBLIC). Only the two schemas the
-- generated files create are searched: a comment anyone wrote on a function
-- elsewhere never makes retire drop it.

CREATE FUNCTION pgdurable.retire(source text, workflow_name text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prefix text := source || '/' || workflow_name || '#';
    fn text;
    dropped text[] := ARRAY[]::text[];
    instance varchar(8);
    registered boolean;
BEGIN
    SELECT w.instance_id INTO instance FROM pgdurable.workflows w
    WHERE w.source = retire.source AND w.name = workflow_name;
    registered := pgdurable.retire_workflow(source, workflow_name);
    FOR fn IN
        SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('pgdurable_jobs', 'airflow_dags')
          AND pg_catalog.obj_description(p.oid, 'pg_proc') IN (prefix || 'run', prefix || 'trigger')
        ORDER BY 1
    LOOP
        -- the text of a regprocedure is its schema-qualified, quoted signature
        EXECUTE pg_catalog.format('DROP FUNCTION %s', fn);
        dropped := dropped || fn;
    END LOOP;
    RETURN pg_catalog.jsonb_build_object(
        'source', source, 'name', workflow_name, 'registered', registered,
        'cancelled', instance, 'dropped', pg_catalog.to_jsonb(dropped));
END;
$$;
COMMENT ON FUNCTION pgdurable.retire(text, text) IS
    'Retire a deployed workflow: cancel its instance, remove it from the registry and drop the functions generated for it';
REVOKE EXECUTE ON FUNCTION pgdurable.retire(text, text) FROM PUBLIC;
