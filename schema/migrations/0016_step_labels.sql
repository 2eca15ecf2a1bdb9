-- What the source calls each step of a registered workflow (issue 21): the
-- task ids and job names the generated files carry in their source comments
-- (`-- source: dags/etl.py:12:5 (task ingest)`), which the registry's graph
-- JSON does not keep. `pgdurable apply` writes one row per workflow file it
-- applies, in the file's transaction, from the file's offline parse;
-- `pgdurable show` and the dashboard label an instance's steps with it.
--
-- labels: {"<key>": ["task a", ...]} where key is the md5 of a leaf step's
-- node type and query (a newline between them), and the list holds the labels
-- of the steps with that key in graph pre-order (left, right, condition,
-- extras), so the k-th such step of an instance gets the k-th label. Keys by
-- content rather than by position: the runs of a workflow (a tick's body
-- started once, an enqueue function's job) are other trees than the
-- registered loop, with the same steps.
--
-- A row is only true for the graph it was computed from: it keeps the
-- registry's definition_hash and is deleted when the workflow is redeployed
-- with another graph (a file applied with psql, which writes no labels) or
-- retired. Readers see the rows of the workflows that run as a role they are
-- a member of (the registry's rule on the dashboard); administrators write.

CREATE TABLE pgdurable.workflow_step_labels (
    source          text  NOT NULL,
    name            text  NOT NULL,
    run_as          text,
    definition_hash text  NOT NULL,
    labels          jsonb NOT NULL CONSTRAINT workflow_step_labels_object_chk
        CHECK (jsonb_typeof(labels) = 'object'),
    PRIMARY KEY (source, name)
);
COMMENT ON TABLE pgdurable.workflow_step_labels IS
    'Per registered workflow: what its source calls each step (written by pgdurable apply)';

-- SECURITY DEFINER: whoever may change the registry forgets its stale labels,
-- even without privileges on this table; it only ever deletes the row of the
-- registry row that changed (a trigger function cannot be called directly).
CREATE FUNCTION pgdurable.forget_stale_step_labels() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM pgdurable.workflow_step_labels l
        WHERE l.source = OLD.source AND l.name = OLD.name;
        RETURN OLD;
    END IF;
    DELETE FROM pgdurable.workflow_step_labels l
    WHERE l.source = NEW.source AND l.name = NEW.name
      AND (l.definition_hash IS DISTINCT FROM NEW.definition_hash
           OR l.run_as IS DISTINCT FROM NEW.run_as);
    RETURN NEW;
END;
$$;
CREATE TRIGGER workflows_forget_stale_step_labels
    AFTER UPDATE OR DELETE ON pgdurable.workflows
    FOR EACH ROW EXECUTE FUNCTION pgdurable.forget_stale_step_labels();
REVOKE EXECUTE ON FUNCTION pgdurable.forget_stale_step_labels() FROM PUBLIC;

ALTER TABLE pgdurable.workflow_step_labels ENABLE ROW LEVEL SECURITY;
CREATE POLICY workflow_step_labels_readers ON pgdurable.workflow_step_labels FOR SELECT
    USING (CASE WHEN run_as IS NULL THEN pgdurable.sees_role(NULL)
                WHEN to_regrole(quote_ident(run_as)) IS NULL THEN false
                ELSE pg_has_role(to_regrole(quote_ident(run_as)), 'MEMBER') END);
REVOKE ALL ON pgdurable.workflow_step_labels FROM PUBLIC;
GRANT SELECT ON pgdurable.workflow_step_labels TO PUBLIC;  -- rows filtered by the policy
