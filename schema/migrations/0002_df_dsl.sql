-- TEMPORARY STUB (not committed): replaced by the real DSL file from branch dsl.
CREATE SCHEMA df;
CREATE FUNCTION pgdurable.mark_non_future_helper(helper text) RETURNS void LANGUAGE sql AS $$
  SELECT set_config('df.non_future_helper', helper || '@' || statement_timestamp(), true) $$;
CREATE FUNCTION pgdurable.dsl_node(arg text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    IF jsonb_typeof(arg::jsonb -> 'node_type') = 'string' THEN RETURN arg; END IF;
  EXCEPTION WHEN invalid_text_representation THEN NULL;
  END;
  RETURN '{"node_type":"SQL","query":' || to_json(arg)::text || '}';
END $$;
CREATE FUNCTION df.sql(q text) RETURNS text LANGUAGE sql AS $$ SELECT '{"node_type":"SQL","query":' || to_json(q)::text || '}' $$;
CREATE FUNCTION df.seq(a text, b text) RETURNS text LANGUAGE sql AS $$ SELECT '{"node_type":"THEN","left_node":' || pgdurable.dsl_node(a) || ',"right_node":' || pgdurable.dsl_node(b) || '}' $$;
CREATE FUNCTION df.http(url text, method text DEFAULT 'POST', body text DEFAULT NULL, headers jsonb DEFAULT NULL, timeout_seconds integer DEFAULT 30) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION df.http_multipart(url text, method text DEFAULT 'POST', parts jsonb DEFAULT NULL, headers jsonb DEFAULT NULL, timeout_seconds integer DEFAULT 30) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
