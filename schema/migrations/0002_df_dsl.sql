-- The `df` schema and its pure graph-construction layer: the DSL of
-- pg_durable 0.2.6 (SPEC B §1) rebuilt in SQL and PL/pgSQL.
--
-- Every df.* constructor and operator returns text holding compact JSON (a
-- "Durofut") that is byte-identical to what the reference extension builds.
-- Nothing here writes to the database; df.start (another migration) persists
-- the graph. Internal helpers live in schema `pgdurable` (SPEC A.1):
--   pgdurable.dsl_node(text)                 auto-wrap of node arguments (B §1.2)
--   pgdurable.dsl_node_strict(text)          the stricter normalisation of df.start
--   pgdurable.mark_non_future_helper(text)   the df.setvar/... statement marker
--   pgdurable.cron_validate / cron_next      the reference's cron rules (B §4.2)
--   pgdurable.http_policy()                  the outbound HTTP tier
--
-- Byte compatibility rests on three facts about the reference (serde_json with
-- preserve_order and raw_value):
--   * a node's keys are always written in the order node_type, left_node,
--     right_node, condition_node, extra_nodes, query, result_name, empty ones
--     left out, with no whitespace;
--   * a child is re-serialised one level deep only: its own keys are
--     normalised, but the grandchildren are copied byte for byte;
--   * strings escape ", \ and control characters only (to_json(text) does the
--     same), so non-ASCII text is written as is.
-- No grants are made here: another migration decides who may use `df`.

CREATE SCHEMA df;
COMMENT ON SCHEMA df IS 'pg_durable-compatible durable function DSL, catalog and control functions';

------------------------------------------------------------------------------
-- JSON text helpers
------------------------------------------------------------------------------

-- A JSON number rewritten the way serde_json prints it after parsing it
-- without arbitrary precision: integers that fit u64/i64 stay as they are,
-- everything else becomes an f64 printed in ryu's shortest form ("100.0",
-- "1.5e-7", "1e20"). Used for jsonb arguments (headers, parts) and for the
-- "floating point `…`" wording of deserialisation errors.
CREATE FUNCTION pgdurable.json_number_text(num text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
SET extra_float_digits = 1  -- float8 output is then the shortest exact form
AS $$
DECLARE
    shortest text;
    negative boolean;
    mantissa text;
    exponent int := 0;
    digits text;
    point int;     -- value = 0.<digits> * 10^point
    len int;
    k int;         -- value = <digits> * 10^k
BEGIN
    IF num ~ '^-?[0-9]+$'
       AND num::numeric BETWEEN -9223372036854775808 AND 18446744073709551615
       AND num <> '-0' THEN
        RETURN num;
    END IF;
    shortest := num::float8::text;
    negative := left(shortest, 1) = '-';
    shortest := ltrim(shortest, '-');
    mantissa := split_part(shortest, 'e', 1);
    IF position('e' IN shortest) > 0 THEN
        exponent := split_part(shortest, 'e', 2)::int;
    END IF;
    point := length(split_part(mantissa, '.', 1)) + exponent;
    digits := replace(mantissa, '.', '');
    point := point - (length(digits) - length(ltrim(digits, '0')));
    digits := rtrim(ltrim(digits, '0'), '0');
    IF digits = '' THEN
        RETURN CASE WHEN negative THEN '-0.0' ELSE '0.0' END;
    END IF;
    len := length(digits);
    k := point - len;
    RETURN CASE WHEN negative THEN '-' ELSE '' END || CASE
        WHEN k >= 0 AND point <= 16 THEN digits || repeat('0', k) || '.0'
        WHEN point > 0 AND point <= 16 THEN left(digits, point) || '.' || substr(digits, point + 1)
        WHEN point > -5 AND point <= 0 THEN '0.' || repeat('0', -point) || digits
        WHEN len = 1 THEN digits || 'e' || (point - 1)
        ELSE left(digits, 1) || '.' || substr(digits, 2) || 'e' || (point - 1)
    END;
END;
$$;

-- jsonb serialised compactly the way the reference writes a jsonb argument:
-- keys in jsonb's own order, no whitespace, numbers as serde_json prints them.
CREATE FUNCTION pgdurable.json_compact(value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT CASE jsonb_typeof(value)
        WHEN 'object' THEN '{' || coalesce((
            SELECT string_agg(to_json(e.key)::text || ':' || pgdurable.json_compact(e.value), ','
                              ORDER BY e.n)
            FROM jsonb_each(value) WITH ORDINALITY AS e(key, value, n)), '') || '}'
        WHEN 'array' THEN '[' || coalesce((
            SELECT string_agg(pgdurable.json_compact(e.value), ',' ORDER BY e.n)
            FROM jsonb_array_elements(value) WITH ORDINALITY AS e(value, n)), '') || ']'
        WHEN 'string' THEN to_json(value #>> '{}')::text
        WHEN 'number' THEN pgdurable.json_number_text(value::text)
        ELSE value::text
    END
$$;

------------------------------------------------------------------------------
-- Durofut envelopes
------------------------------------------------------------------------------

-- The one place that writes a node: children are JSON text already
-- normalised (they are copied verbatim), scalars are escaped here.
CREATE FUNCTION pgdurable.dsl_envelope(
    node_type text,
    left_node text DEFAULT NULL,
    right_node text DEFAULT NULL,
    condition_node text DEFAULT NULL,
    extra_nodes text[] DEFAULT NULL,
    query text DEFAULT NULL,
    result_name text DEFAULT NULL
) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT '{"node_type":' || to_json(node_type)::text
        || coalesce(',"left_node":' || left_node, '')
        || coalesce(',"right_node":' || right_node, '')
        || coalesce(',"condition_node":' || condition_node, '')
        || CASE WHEN cardinality(extra_nodes) > 0
                THEN ',"extra_nodes":[' || array_to_string(extra_nodes, ',') || ']'
                ELSE '' END
        || coalesce(',"query":' || to_json(query)::text, '')
        || coalesce(',"result_name":' || to_json(result_name)::text, '')
        || '}'
$$;

CREATE FUNCTION pgdurable.dsl_valid_node_types() RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT ARRAY['SQL', 'THEN', 'IF', 'JOIN', 'LOOP', 'BREAK', 'RACE', 'SLEEP',
                 'WAIT_SCHEDULE', 'HTTP', 'HTTP_MULTIPART', 'SIGNAL']
$$;

------------------------------------------------------------------------------
-- The non-future-helper guard (SPEC B §1.2, last paragraph)
------------------------------------------------------------------------------

-- df.setvar, df.unsetvar, df.clearvars and df.await_instance return plain
-- text ("OK", "completed", ...). Passing that into a composer would silently
-- become a SQL step, so each helper records its name and the current
-- statement's start time; a composer that receives non-JSON text in the same
-- statement names the helper instead. The epoch keeps the marker independent
-- of DateStyle and TimeZone.
CREATE FUNCTION pgdurable.mark_non_future_helper(helper text) RETURNS void
LANGUAGE sql VOLATILE
AS $$
    SELECT NULL::void FROM set_config(
        'df.non_future_helper',
        helper || '@' || extract(epoch FROM statement_timestamp())::text,
        true)
$$;

-- Raises the helper error when `arg` could be a helper's result: it does not
-- start with '{' (after Unicode whitespace, like Rust's trim_start) and a
-- helper marked the current statement.
CREATE FUNCTION pgdurable.dsl_check_non_future_helper(arg text) RETURNS void
LANGUAGE plpgsql STABLE STRICT
AS $$
DECLARE
    marker text;
    helper text;
BEGIN
    IF arg ~ '^[\s\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\{' THEN
        RETURN;
    END IF;
    marker := current_setting('df.non_future_helper', true);
    IF marker IS NULL OR position('@' IN marker) = 0 THEN
        RETURN;
    END IF;
    helper := substring(marker FROM '^(.*)@[^@]*$');
    IF substring(marker FROM '@([^@]*)$') = extract(epoch FROM statement_timestamp())::text THEN
        RAISE EXCEPTION '% cannot be used as a workflow step. Call % before df.start().',
            helper, helper;
    END IF;
END;
$$;

------------------------------------------------------------------------------
-- Auto-wrap (SPEC B §1.2)
------------------------------------------------------------------------------

-- Where serde_json would report an error inside member `member_no` (1-based,
-- document order) of a top-level JSON object: the offsets, counted in
-- characters consumed, just after the member's key, at the start of its value
-- and just after its value. Only called on the error path, so a plain
-- character walk is fine.
CREATE FUNCTION pgdurable.json_member_span(
    doc text, member_no int,
    OUT key_end int, OUT value_start int, OUT value_end int)
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    c text[] := string_to_array(doc, NULL);
    i int := 1;
    member int := 0;
    depth int;
    ws CONSTANT text[] := ARRAY[' ', E'\t', E'\n', E'\r'];
BEGIN
    WHILE c[i] = ANY (ws) LOOP i := i + 1; END LOOP;
    i := i + 1;  -- the opening brace
    LOOP
        WHILE c[i] = ANY (ws) OR c[i] = ',' LOOP i := i + 1; END LOOP;
        -- the key, a string
        i := i + 1;
        WHILE c[i] <> '"' LOOP
            i := i + CASE WHEN c[i] = '\' THEN 2 ELSE 1 END;
        END LOOP;
        i := i + 1;
        key_end := i - 1;
        WHILE c[i] = ANY (ws) OR c[i] = ':' LOOP i := i + 1; END LOOP;
        value_start := i - 1;
        IF c[i] = '"' THEN
            i := i + 1;
            WHILE c[i] <> '"' LOOP
                i := i + CASE WHEN c[i] = '\' THEN 2 ELSE 1 END;
            END LOOP;
            i := i + 1;
        ELSIF c[i] IN ('{', '[') THEN
            depth := 0;
            LOOP
                IF c[i] = '"' THEN
                    i := i + 1;
                    WHILE c[i] <> '"' LOOP
                        i := i + CASE WHEN c[i] = '\' THEN 2 ELSE 1 END;
                    END LOOP;
                ELSIF c[i] IN ('{', '[') THEN
                    depth := depth + 1;
                ELSIF c[i] IN ('}', ']') THEN
                    depth := depth - 1;
                END IF;
                i := i + 1;
                EXIT WHEN depth = 0;
            END LOOP;
        ELSE
            WHILE NOT (c[i] = ANY (ws || ARRAY[',', '}', ']'])) LOOP i := i + 1; END LOOP;
        END IF;
        value_end := i - 1;
        member := member + 1;
        EXIT WHEN member >= member_no;
    END LOOP;
END;
$$;

-- serde_json's " at line L column C" suffix for an offset (characters
-- consumed): lines count newlines, columns count bytes since the last one.
CREATE FUNCTION pgdurable.json_error_position(doc text, consumed int) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT format(' at line %s column %s',
                  1 + length(p) - length(replace(p, E'\n', '')),
                  octet_length(regexp_replace(p, '^.*\n', '')))
    FROM (SELECT left(doc, consumed) AS p) AS prefix
$$;

-- How serde describes an unexpected JSON value in "invalid type: …" errors.
CREATE FUNCTION pgdurable.json_unexpected(raw json) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    s text;
    ch text;
    out text := '';
BEGIN
    CASE json_typeof(raw)
    WHEN 'null' THEN RETURN 'null';
    WHEN 'boolean' THEN RETURN format('boolean `%s`', raw::text);
    WHEN 'array' THEN RETURN 'sequence';
    WHEN 'object' THEN RETURN 'map';
    WHEN 'number' THEN
        s := pgdurable.json_number_text(raw::text);
        IF s ~ '^-?[0-9]+$' THEN
            RETURN format('integer `%s`', s);
        END IF;
        RETURN format('floating point `%s`', s);
    ELSE
        -- Rust's Debug rendering of the decoded string.
        FOREACH ch IN ARRAY string_to_array(raw #>> '{}', NULL) LOOP
            out := out || CASE
                WHEN ch = '\' THEN '\\'
                WHEN ch = '"' THEN '\"'
                WHEN ch = E'\t' THEN '\t'
                WHEN ch = E'\n' THEN '\n'
                WHEN ch = E'\r' THEN '\r'
                WHEN ascii(ch) < 32 OR ascii(ch) = 127 THEN format('\u{%s}', to_hex(ascii(ch)))
                ELSE ch END;
        END LOOP;
        RETURN format('string "%s"', out);
    END CASE;
END;
$$;

-- Splits a node argument into its fields, the way the reference's
-- Durofut::ensure does: valid Durofut JSON is taken apart (children stay raw
-- JSON text); a JSON object with a string node_type that does not
-- deserialise raises "Invalid Durofut JSON: …"; anything else, including JSON
-- with an unknown or missing node_type, becomes a SQL node holding the text.
-- `valid` is false when the text was wrapped although it is an object with a
-- string node_type (the unknown-type case, which df.start rejects).
CREATE FUNCTION pgdurable.dsl_parse(
    arg text,
    OUT node_type text, OUT left_node text, OUT right_node text,
    OUT condition_node text, OUT extra_nodes text[], OUT query text,
    OUT result_name text, OUT error text, OUT envelope_type text)
LANGUAGE plpgsql STABLE STRICT
AS $$
DECLARE
    doc json;
    m record;
    seen text[] := '{}';
    problem text;
    problem_member int;
    problem_at text;   -- where serde stops: key_end, value_start or value_end
    span record;
    field_kind text;
BEGIN
    PERFORM pgdurable.dsl_check_non_future_helper(arg);
    BEGIN
        doc := arg::json;
    EXCEPTION WHEN data_exception THEN
        doc := NULL;
    END;
    IF doc IS NULL OR json_typeof(doc) <> 'object' THEN
        node_type := 'SQL';
        query := arg;
        RETURN;
    END IF;

    -- serde stops at the first member that does not fit the Durofut struct.
    FOR m IN SELECT e.key, e.value, e.n
             FROM json_each(doc) WITH ORDINALITY AS e(key, value, n) ORDER BY e.n LOOP
        IF m.key = 'node_type' AND json_typeof(m.value) = 'string' THEN
            envelope_type := m.value #>> '{}';  -- the last one wins, as in serde_json::Value
        ELSIF m.key = 'node_type' THEN
            envelope_type := NULL;
        END IF;
        CONTINUE WHEN problem IS NOT NULL
            OR m.key NOT IN ('node_type', 'left_node', 'right_node', 'condition_node',
                             'extra_nodes', 'query', 'result_name');
        problem_member := m.n;
        IF m.key = ANY (seen) THEN
            problem := format('duplicate field `%s`', m.key);
            problem_at := 'key_end';
            CONTINUE;
        END IF;
        seen := seen || m.key;
        field_kind := json_typeof(m.value);
        problem_at := 'value_end';
        CASE
        WHEN m.key IN ('node_type', 'query', 'result_name') THEN
            IF field_kind = 'string' THEN
                CASE m.key
                    WHEN 'node_type' THEN node_type := m.value #>> '{}';
                    WHEN 'query' THEN query := m.value #>> '{}';
                    ELSE result_name := m.value #>> '{}';
                END CASE;
            ELSIF field_kind <> 'null' OR m.key = 'node_type' THEN
                problem := format('invalid type: %s, expected a string',
                                  pgdurable.json_unexpected(m.value));
                IF field_kind IN ('array', 'object') THEN
                    problem_at := 'value_start';  -- serde does not consume [ or {
                END IF;
            END IF;
        WHEN m.key IN ('left_node', 'right_node') THEN
            IF field_kind = 'object' THEN
                IF m.key = 'left_node' THEN left_node := m.value::text;
                ELSE right_node := m.value::text; END IF;
            ELSIF field_kind <> 'null' THEN
                problem := 'Durofut children must be JSON objects';
            END IF;
        WHEN m.key = 'condition_node' THEN
            IF field_kind = 'object' THEN
                condition_node := m.value::text;
            ELSIF field_kind <> 'null' THEN
                problem := 'condition_node must be a Durofut JSON object';
            END IF;
        ELSE  -- extra_nodes
            IF field_kind <> 'array' THEN
                problem := format('invalid type: %s, expected a sequence',
                                  pgdurable.json_unexpected(m.value));
                IF field_kind = 'object' THEN
                    problem_at := 'value_start';
                END IF;
            ELSIF EXISTS (SELECT FROM json_array_elements(m.value) AS x(v)
                          WHERE json_typeof(x.v) <> 'object') THEN
                problem := 'extra_nodes entries must be Durofut JSON objects';
            ELSE
                extra_nodes := ARRAY(SELECT x.v::text
                                     FROM json_array_elements(m.value) WITH ORDINALITY AS x(v, n)
                                     ORDER BY x.n);
            END IF;
        END CASE;
    END LOOP;

    IF problem IS NOT NULL AND envelope_type IS NOT NULL THEN
        span := pgdurable.json_member_span(arg, problem_member);
        error := problem || pgdurable.json_error_position(arg, CASE problem_at
            WHEN 'key_end' THEN span.key_end
            WHEN 'value_start' THEN span.value_start
            ELSE span.value_end END);
    END IF;
    IF problem IS NOT NULL OR node_type IS NULL
       OR NOT node_type = ANY (pgdurable.dsl_valid_node_types()) THEN
        node_type := 'SQL';
        query := arg;
        left_node := NULL; right_node := NULL; condition_node := NULL;
        extra_nodes := NULL; result_name := NULL;
    ELSE
        envelope_type := NULL;  -- a valid Durofut: nothing to report
    END IF;
END;
$$;

-- Auto-wrap of a node-taking argument (SPEC B §1.2). Returns the node JSON
-- as the reference nests it: its own keys normalised, grandchildren verbatim.
CREATE FUNCTION pgdurable.dsl_node(arg text) RETURNS text
LANGUAGE plpgsql STABLE STRICT
AS $$
DECLARE
    d record;
BEGIN
    d := pgdurable.dsl_parse(arg);
    IF d.error IS NOT NULL THEN
        RAISE EXCEPTION 'Invalid Durofut JSON: failed to deserialize workflow step: %', d.error;
    END IF;
    RETURN pgdurable.dsl_envelope(d.node_type, d.left_node, d.right_node, d.condition_node,
                                  d.extra_nodes, d.query, d.result_name);
END;
$$;

-- The stricter normalisation df.start applies to its root (the reference's
-- ensure_strict): JSON with an unknown node_type is refused instead of being
-- wrapped. Raises with the reference's "Invalid durable function: " prefix.
-- Nested children are checked when df.start flattens the graph, not here.
CREATE FUNCTION pgdurable.dsl_node_strict(arg text) RETURNS text
LANGUAGE plpgsql STABLE STRICT
AS $$
DECLARE
    d record;
    valid CONSTANT text[] := pgdurable.dsl_valid_node_types();
BEGIN
    BEGIN
        d := pgdurable.dsl_parse(arg);
    EXCEPTION WHEN raise_exception THEN
        -- the non-future-helper error, which df.start reports with its prefix
        RAISE EXCEPTION 'Invalid durable function: %', SQLERRM;
    END;
    IF d.error IS NOT NULL AND d.envelope_type = ANY (valid) THEN
        RAISE EXCEPTION 'Invalid durable function: Malformed Durofut JSON with node_type ''%'': %',
            d.envelope_type, d.error;
    ELSIF d.envelope_type IS NOT NULL AND NOT d.envelope_type = ANY (valid) THEN
        RAISE EXCEPTION 'Invalid durable function: Unknown node_type ''%''. Valid types: %',
            d.envelope_type, array_to_string(valid, ', ');
    END IF;
    RETURN pgdurable.dsl_envelope(d.node_type, d.left_node, d.right_node, d.condition_node,
                                  d.extra_nodes, d.query, d.result_name);
END;
$$;

------------------------------------------------------------------------------
-- Cron (SPEC B §4.2 WAIT_SCHEDULE)
------------------------------------------------------------------------------
-- The reference validates df.wait_for_schedule with the Rust `cron` crate
-- 0.13 after prepending "0 " as the seconds field. That crate reads
-- "sec min hour day-of-month month day-of-week [year]" with Quartz rules:
-- day-of-week 1-7 with Sunday = 1, names (SUN, MON-FRI, JAN, ...) only in the
-- month and day-of-week fields, '?' only in the two day fields, ranges, lists
-- and steps (*/15, 5/10, 1-20/3), years 1970-2100. Because of the "0 " prefix
-- the user writes 5 fields (or 6 with a year) and the @daily-style macros are
-- rejected. The parser below mirrors the crate's combinators, including its
-- tolerance for whitespace around numbers and names ("1 - 5").

CREATE FUNCTION pgdurable.cron_skip_space(s text, p int) RETURNS int
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
BEGIN
    WHILE substr(s, p, 1) IN (' ', E'\t', E'\r', E'\n') LOOP p := p + 1; END LOOP;
    RETURN p;
END;
$$;

-- A number with optional surrounding whitespace; must fit an unsigned 32-bit int.
CREATE FUNCTION pgdurable.cron_number(s text, p int, OUT ok boolean, OUT next int, OUT value bigint)
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    digits text;
BEGIN
    next := pgdurable.cron_skip_space(s, p);
    digits := substring(substr(s, next) FROM '^[0-9]+');
    ok := digits IS NOT NULL AND digits::numeric <= 4294967295;
    IF ok THEN
        value := digits::bigint;
        next := pgdurable.cron_skip_space(s, next + length(digits));
    END IF;
END;
$$;

-- A name (ASCII letters) with optional surrounding whitespace.
CREATE FUNCTION pgdurable.cron_name(s text, p int, OUT ok boolean, OUT next int, OUT value text)
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
BEGIN
    next := pgdurable.cron_skip_space(s, p);
    value := substring(substr(s, next) FROM '^[A-Za-z]+');
    ok := value IS NOT NULL;
    IF ok THEN
        next := pgdurable.cron_skip_space(s, next + length(value));
    END IF;
END;
$$;

-- One specifier: '*', 'a-b', 'n' or 'NAME-NAME' (and '?' where allowed),
-- tried in that order like the crate's alt().
CREATE FUNCTION pgdurable.cron_specifier(
    s text, p int, allow_any boolean,
    OUT ok boolean, OUT next int, OUT kind text, OUT a text, OUT b text)
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    x record;
    y record;
BEGIN
    ok := true;
    IF allow_any AND substr(s, p, 1) = '?' THEN
        kind := 'all'; next := p + 1; RETURN;
    END IF;
    IF substr(s, p, 1) = '*' THEN
        kind := 'all'; next := p + 1; RETURN;
    END IF;
    x := pgdurable.cron_number(s, p);
    IF x.ok AND substr(s, x.next, 1) = '-' THEN
        y := pgdurable.cron_number(s, x.next + 1);
        IF y.ok THEN
            kind := 'range'; a := x.value; b := y.value; next := y.next; RETURN;
        END IF;
    END IF;
    IF x.ok THEN
        kind := 'point'; a := x.value; next := x.next; RETURN;
    END IF;
    x := pgdurable.cron_name(s, p);
    IF x.ok AND substr(s, x.next, 1) = '-' THEN
        y := pgdurable.cron_name(s, x.next + 1);
        IF y.ok THEN
            kind := 'named_range'; a := x.value; b := y.value; next := y.next; RETURN;
        END IF;
    END IF;
    ok := false;
END;
$$;

-- The ordinal a month or weekday name stands for, NULL when the field takes
-- no names or the name is unknown (Sunday = 1).
CREATE FUNCTION pgdurable.cron_name_ordinal(unit text, name text) RETURNS int
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT CASE unit
        WHEN 'dow' THEN CASE lower(name)
            WHEN 'sun' THEN 1 WHEN 'sunday' THEN 1
            WHEN 'mon' THEN 2 WHEN 'monday' THEN 2
            WHEN 'tue' THEN 3 WHEN 'tues' THEN 3 WHEN 'tuesday' THEN 3
            WHEN 'wed' THEN 4 WHEN 'wednesday' THEN 4
            WHEN 'thu' THEN 5 WHEN 'thurs' THEN 5 WHEN 'thursday' THEN 5
            WHEN 'fri' THEN 6 WHEN 'friday' THEN 6
            WHEN 'sat' THEN 7 WHEN 'saturday' THEN 7 END
        WHEN 'month' THEN CASE lower(name)
            WHEN 'jan' THEN 1 WHEN 'january' THEN 1
            WHEN 'feb' THEN 2 WHEN 'february' THEN 2
            WHEN 'mar' THEN 3 WHEN 'march' THEN 3
            WHEN 'apr' THEN 4 WHEN 'april' THEN 4
            WHEN 'may' THEN 5
            WHEN 'jun' THEN 6 WHEN 'june' THEN 6
            WHEN 'jul' THEN 7 WHEN 'july' THEN 7
            WHEN 'aug' THEN 8 WHEN 'august' THEN 8
            WHEN 'sep' THEN 9 WHEN 'september' THEN 9
            WHEN 'oct' THEN 10 WHEN 'october' THEN 10
            WHEN 'nov' THEN 11 WHEN 'november' THEN 11
            WHEN 'dec' THEN 12 WHEN 'december' THEN 12 END
    END
$$;

-- The values a specifier denotes, or NULL when it is invalid for the unit
-- (out of range, reversed range, name where none is allowed).
CREATE FUNCTION pgdurable.cron_specifier_values(
    unit text, lo int, hi int, kind text, a text, b text) RETURNS int[]
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    first bigint;
    last bigint;
BEGIN
    CASE kind
    WHEN 'all' THEN
        RETURN ARRAY(SELECT generate_series(lo, hi));
    WHEN 'point' THEN
        RETURN ARRAY[a::bigint];  -- range-checked by the caller, like the crate
    ELSE
        IF kind = 'range' THEN
            first := a::bigint; last := b::bigint;
        ELSE
            first := pgdurable.cron_name_ordinal(unit, a);
            last := pgdurable.cron_name_ordinal(unit, b);
        END IF;
        IF first IS NULL OR last IS NULL OR first < lo OR last > hi OR first > last THEN
            RETURN NULL;
        END IF;
        RETURN ARRAY(SELECT generate_series(first, last)::int);
    END CASE;
EXCEPTION WHEN numeric_value_out_of_range THEN
    RETURN NULL;
END;
$$;

-- One field: a comma list of specifiers, steps ('x/n') and lone names,
-- with surrounding whitespace. Returns the sorted values it selects.
CREATE FUNCTION pgdurable.cron_field(
    s text, p int, unit text, OUT ok boolean, OUT next int, OUT vals int[])
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    lo CONSTANT int := CASE unit WHEN 'dom' THEN 1 WHEN 'month' THEN 1 WHEN 'dow' THEN 1
                                 WHEN 'year' THEN 1970 ELSE 0 END;
    hi CONSTANT int := CASE unit WHEN 'second' THEN 59 WHEN 'minute' THEN 59 WHEN 'hour' THEN 23
                                 WHEN 'dom' THEN 31 WHEN 'month' THEN 12 WHEN 'dow' THEN 7
                                 ELSE 2100 END;
    allow_any CONSTANT boolean := unit IN ('dom', 'dow');
    spec record;
    step record;
    has_step boolean;
    nm record;
    items int := 0;
    part int[];
    acc int[] := '{}';
    pos int;
BEGIN
    ok := false;
    pos := pgdurable.cron_skip_space(s, p);
    LOOP
        -- after the first item a ',' must introduce the next; an item that
        -- fails to parse ends the list before its comma (nom's separated_list1)
        IF items > 0 THEN
            EXIT WHEN substr(s, pos, 1) <> ',';
        END IF;
        spec := pgdurable.cron_specifier(s, pos + CASE WHEN items > 0 THEN 1 ELSE 0 END, allow_any);
        has_step := false;
        IF spec.ok AND substr(s, spec.next, 1) = '/' THEN
            step := pgdurable.cron_number(s, spec.next + 1);
            has_step := step.ok;
        END IF;
        IF has_step THEN
            -- a step: 'n/k' runs from n to the maximum
            IF step.value = 0 OR step.value > hi THEN RETURN; END IF;
            IF spec.kind = 'point' THEN
                IF spec.a::bigint < lo OR spec.a::bigint > hi THEN RETURN; END IF;
                part := ARRAY(SELECT generate_series(spec.a::int, hi));
            ELSE
                part := pgdurable.cron_specifier_values(unit, lo, hi, spec.kind, spec.a, spec.b);
            END IF;
            IF part IS NULL THEN RETURN; END IF;
            part := ARRAY(SELECT v FROM unnest(part) WITH ORDINALITY AS u(v, n)
                          WHERE (n - 1) % step.value = 0 ORDER BY n);
            pos := step.next;
        ELSIF spec.ok THEN
            part := pgdurable.cron_specifier_values(unit, lo, hi, spec.kind, spec.a, spec.b);
            IF part IS NULL THEN RETURN; END IF;
            pos := spec.next;
        ELSE
            nm := pgdurable.cron_name(s, pos + CASE WHEN items > 0 THEN 1 ELSE 0 END);
            IF NOT nm.ok THEN
                EXIT WHEN items > 0;
                RETURN;
            END IF;
            part := ARRAY[pgdurable.cron_name_ordinal(unit, nm.value)];
            IF part[1] IS NULL THEN RETURN; END IF;
            pos := nm.next;
        END IF;
        acc := acc || part;
        items := items + 1;
    END LOOP;
    -- every value, points included, must lie within the unit's bounds
    IF EXISTS (SELECT FROM unnest(acc) AS v WHERE v < lo OR v > hi) THEN
        RETURN;
    END IF;
    ok := true;
    next := pgdurable.cron_skip_space(s, pos);
    vals := ARRAY(SELECT DISTINCT v FROM unnest(acc) AS v ORDER BY v);
END;
$$;

-- Parses a full crate-style expression (seconds first). `ok` is false when
-- the crate would reject it; the arrays hold the selected values.
CREATE FUNCTION pgdurable.cron_parse(
    expr text,
    OUT ok boolean, OUT seconds int[], OUT minutes int[], OUT hours int[],
    OUT days_of_month int[], OUT months int[], OUT days_of_week int[], OUT years int[])
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    units CONSTANT text[] := ARRAY['second', 'minute', 'hour', 'dom', 'month', 'dow'];
    f record;
    pos int := 1;
    i int;
BEGIN
    ok := false;
    FOR i IN 1 .. 6 LOOP
        f := pgdurable.cron_field(expr, pos, units[i]);
        IF NOT f.ok THEN RETURN; END IF;
        pos := f.next;
        CASE i
            WHEN 1 THEN seconds := f.vals;
            WHEN 2 THEN minutes := f.vals;
            WHEN 3 THEN hours := f.vals;
            WHEN 4 THEN days_of_month := f.vals;
            WHEN 5 THEN months := f.vals;
            ELSE days_of_week := f.vals;
        END CASE;
    END LOOP;
    -- the year field is optional; a bad one leaves text over, which fails below
    f := pgdurable.cron_field(expr, pos, 'year');
    IF f.ok THEN
        pos := f.next;
        years := f.vals;
    ELSE
        years := ARRAY(SELECT generate_series(1970, 2100));
    END IF;
    ok := pos > length(expr);
END;
$$;

-- Validates a df.wait_for_schedule expression with the reference's rules
-- and error text.
CREATE FUNCTION pgdurable.cron_validate(expr text) RETURNS void
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
BEGIN
    IF NOT (pgdurable.cron_parse('0 ' || expr)).ok THEN
        RAISE EXCEPTION 'Invalid cron expression ''%'': Invalid expression: Invalid cron expression.',
            expr;
    END IF;
END;
$$;

-- The next tick of a df.wait_for_schedule expression strictly after `after`,
-- evaluated in UTC with seconds = 0; both day fields must match. NULL when no
-- tick remains (years stop at 2100). Raises like cron_validate on bad input.
CREATE FUNCTION pgdurable.cron_next(expr text, after timestamptz) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    c record;
    t timestamp;
BEGIN
    PERFORM pgdurable.cron_validate(expr);
    c := pgdurable.cron_parse('0 ' || expr);
    t := date_trunc('minute', after AT TIME ZONE 'UTC') + interval '1 minute';
    -- each step either accepts t or jumps to the start of the next candidate
    -- year, month, day, hour or minute, so the loop is short
    LOOP
        IF extract(year FROM t) > 2100 THEN
            RETURN NULL;
        ELSIF NOT extract(year FROM t)::int = ANY (c.years) THEN
            t := date_trunc('year', t) + interval '1 year';
        ELSIF NOT extract(month FROM t)::int = ANY (c.months) THEN
            t := date_trunc('month', t) + interval '1 month';
        ELSIF NOT (extract(day FROM t)::int = ANY (c.days_of_month)
                   AND extract(dow FROM t)::int + 1 = ANY (c.days_of_week)) THEN
            t := date_trunc('day', t) + interval '1 day';
        ELSIF NOT extract(hour FROM t)::int = ANY (c.hours) THEN
            t := date_trunc('hour', t) + interval '1 hour';
        ELSIF NOT extract(minute FROM t)::int = ANY (c.minutes) THEN
            t := t + interval '1 minute';
        ELSE
            RETURN t AT TIME ZONE 'UTC';
        END IF;
    END LOOP;
END;
$$;

------------------------------------------------------------------------------
-- HTTP policy (SPEC B §4.2 HTTP: compile-time in the reference, a setting here)
------------------------------------------------------------------------------

-- pg_durable.http_policy: disabled | azure | test | allow-all. Unset means
-- 'disabled', the reference's default build (cargo's default features enable
-- no http-allow-* feature); its released .deb packages are built with
-- http-allow-azure-domains, which corresponds to 'azure'.
CREATE FUNCTION pgdurable.http_policy() RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    policy text := coalesce(nullif(current_setting('pg_durable.http_policy', true), ''), 'disabled');
BEGIN
    IF policy NOT IN ('disabled', 'azure', 'test', 'allow-all') THEN
        RAISE EXCEPTION 'invalid pg_durable.http_policy "%"', policy
            USING HINT = 'Use one of: disabled, azure, test, allow-all.';
    END IF;
    RETURN policy;
END;
$$;

-- Shared DSL-time checks of df.http and df.http_multipart, in the
-- reference's order: enabled, then the URL scheme (skipped while the URL
-- still holds a {placeholder}).
CREATE FUNCTION pgdurable.http_precheck(function_name text, url text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    scheme text;
BEGIN
    IF pgdurable.http_policy() = 'disabled' THEN
        RAISE EXCEPTION '% is disabled. Rebuild with the ''http-allow-azure-domains'' Cargo feature to enable outbound HTTP requests.',
            function_name
            USING HINT = 'pgdurable: set pg_durable.http_policy to azure, test or allow-all.';
    END IF;
    IF position('{' IN url) = 0 THEN
        -- Rust's to_ascii_lowercase: only ASCII letters change
        scheme := translate(split_part(url, '://', 1),
                            'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz');
        IF scheme NOT IN ('http', 'https') THEN
            RAISE EXCEPTION 'Blocked: unsupported URL scheme ''%''. Only http and https are allowed.',
                scheme;
        END IF;
    END IF;
END;
$$;

------------------------------------------------------------------------------
-- df constructors (SPEC B §1.1)
------------------------------------------------------------------------------
-- Composers are STABLE, not IMMUTABLE: the helper guard reads a setting and
-- the statement time, and folding them at plan time would skip the guard.

CREATE FUNCTION df.sql(query text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT pgdurable.dsl_envelope('SQL', query => query) $$;

CREATE FUNCTION df.seq(a text, b text) RETURNS text
LANGUAGE sql STABLE STRICT
AS $$ SELECT pgdurable.dsl_envelope('THEN', pgdurable.dsl_node(a), pgdurable.dsl_node(b)) $$;

CREATE FUNCTION df.as(fut text, name text) RETURNS text
LANGUAGE plpgsql STABLE STRICT
AS $$
DECLARE
    d record;
BEGIN
    IF name = '' THEN
        RAISE EXCEPTION 'df.as: result name cannot be empty';
    ELSIF name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'df.as: result name ''%'' is not a valid identifier — must match [a-zA-Z_][a-zA-Z0-9_]*',
            name;
    END IF;
    d := pgdurable.dsl_parse(fut);
    IF d.error IS NOT NULL THEN
        RAISE EXCEPTION 'Invalid Durofut JSON: failed to deserialize workflow step: %', d.error;
    END IF;
    RETURN pgdurable.dsl_envelope(d.node_type, d.left_node, d.right_node, d.condition_node,
                                  d.extra_nodes, d.query, name);
END;
$$;

CREATE FUNCTION df.join(a text, b text) RETURNS text
LANGUAGE sql STABLE STRICT
AS $$ SELECT pgdurable.dsl_envelope('JOIN', pgdurable.dsl_node(a), pgdurable.dsl_node(b)) $$;

CREATE FUNCTION df.join3(a text, b text, c text) RETURNS text
LANGUAGE sql STABLE STRICT
AS $$
    SELECT pgdurable.dsl_envelope('JOIN', pgdurable.dsl_node(a), pgdurable.dsl_node(b),
                                  extra_nodes => ARRAY[pgdurable.dsl_node(c)])
$$;

CREATE FUNCTION df.race(a text, b text) RETURNS text
LANGUAGE sql STABLE STRICT
AS $$ SELECT pgdurable.dsl_envelope('RACE', pgdurable.dsl_node(a), pgdurable.dsl_node(b)) $$;

-- The condition is normalised first, then the branches, as in the reference
-- (it decides which of several bad arguments is reported).
CREATE FUNCTION df.if(condition text, then_branch text, else_branch text) RETURNS text
LANGUAGE plpgsql STABLE STRICT
AS $$
DECLARE
    cond text := pgdurable.dsl_node(condition);
    yes text := pgdurable.dsl_node(then_branch);
    no text := pgdurable.dsl_node(else_branch);
BEGIN
    RETURN pgdurable.dsl_envelope('IF', yes, no, cond);
END;
$$;

CREATE FUNCTION df.if_rows(result_name text, then_branch text, else_branch text) RETURNS text
LANGUAGE plpgsql STABLE STRICT
AS $$
DECLARE
    yes text := pgdurable.dsl_node(then_branch);
    no text := pgdurable.dsl_node(else_branch);
BEGIN
    RETURN pgdurable.dsl_envelope('IF', yes, no, query =>
        '{"condition_type":"result_has_rows","result_name":' || to_json(result_name)::text || '}');
END;
$$;

-- Not STRICT: the condition is optional. A NULL body yields NULL.
CREATE FUNCTION df.loop(body text, condition text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    node text := pgdurable.dsl_node(body);
BEGIN
    IF node IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN pgdurable.dsl_envelope('LOOP', node,
                                  condition_node => pgdurable.dsl_node(condition));
END;
$$;

-- The value is a literal, never auto-wrapped.
CREATE FUNCTION df.break(value text DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT pgdurable.dsl_envelope('BREAK', query =>
        '{"break_value":' || coalesce(to_json(value)::text, 'null') || '}')
$$;

CREATE FUNCTION df.sleep(seconds bigint) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
BEGIN
    IF seconds < 0 THEN
        RAISE EXCEPTION 'Sleep duration must be non-negative';
    END IF;
    RETURN pgdurable.dsl_envelope('SLEEP', query => seconds::text);
END;
$$;

-- Only validated here; the next tick is computed when the node runs.
CREATE FUNCTION df.wait_for_schedule(cron_expr text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
BEGIN
    PERFORM pgdurable.cron_validate(cron_expr);
    RETURN pgdurable.dsl_envelope('WAIT_SCHEDULE', query =>
        '{"cron_expr":' || to_json(cron_expr)::text || '}');
END;
$$;

CREATE FUNCTION df.wait_for_signal(name text, timeout_seconds integer DEFAULT NULL) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF name IS NULL THEN
        RETURN NULL;
    ELSIF name = '' THEN
        RAISE EXCEPTION 'Signal name cannot be empty';
    ELSIF timeout_seconds <= 0 THEN
        RAISE EXCEPTION 'Timeout must be positive';
    END IF;
    RETURN pgdurable.dsl_envelope('SIGNAL', query =>
        '{"signal_name":' || to_json(name)::text
        || ',"timeout_seconds":' || coalesce(timeout_seconds::text, 'null') || '}');
END;
$$;

-- STABLE: the outcome depends on pg_durable.http_policy. NULL url, method or
-- timeout yields NULL.
CREATE FUNCTION df.http(
    url text,
    method text DEFAULT 'POST',
    body text DEFAULT NULL,
    headers jsonb DEFAULT NULL,
    timeout_seconds integer DEFAULT 30
) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF url IS NULL OR method IS NULL OR timeout_seconds IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pgdurable.http_precheck('df.http()', url);
    IF upper(method) NOT IN ('GET', 'POST', 'PUT', 'DELETE', 'PATCH') THEN
        RAISE EXCEPTION 'Invalid HTTP method: %. Must be GET, POST, PUT, DELETE, or PATCH', method;
    END IF;
    IF timeout_seconds <= 0 THEN
        RAISE EXCEPTION 'Timeout must be positive';
    END IF;
    RETURN pgdurable.dsl_envelope('HTTP', query =>
        '{"url":' || to_json(url)::text
        || ',"method":' || to_json(upper(method))::text
        || ',"body":' || coalesce(to_json(body)::text, 'null')
        || ',"headers":' || coalesce(pgdurable.json_compact(headers), 'null')
        || ',"timeout_seconds":' || timeout_seconds || '}');
END;
$$;

-- parts defaults to NULL only because it follows a defaulted parameter; a
-- NULL list is rejected.
CREATE FUNCTION df.http_multipart(
    url text,
    method text DEFAULT 'POST',
    parts jsonb DEFAULT NULL,
    headers jsonb DEFAULT NULL,
    timeout_seconds integer DEFAULT 30
) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF url IS NULL OR method IS NULL OR timeout_seconds IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pgdurable.http_precheck('df.http_multipart()', url);
    IF upper(method) NOT IN ('POST', 'PUT', 'PATCH') THEN
        RAISE EXCEPTION 'Invalid HTTP method for multipart: %. Must be POST, PUT, or PATCH', method;
    END IF;
    IF timeout_seconds <= 0 THEN
        RAISE EXCEPTION 'Timeout must be positive';
    END IF;
    IF parts IS NULL THEN
        RAISE EXCEPTION 'parts is required and cannot be NULL';
    ELSIF jsonb_typeof(parts) <> 'array' THEN
        RAISE EXCEPTION 'parts must be a JSON array of part objects';
    ELSIF jsonb_array_length(parts) = 0 THEN
        RAISE EXCEPTION 'parts must contain at least one part';
    END IF;
    RETURN pgdurable.dsl_envelope('HTTP_MULTIPART', query =>
        '{"url":' || to_json(url)::text
        || ',"method":' || to_json(upper(method))::text
        || ',"parts":' || pgdurable.json_compact(parts)
        || ',"headers":' || coalesce(pgdurable.json_compact(headers), 'null')
        || ',"timeout_seconds":' || timeout_seconds || '}');
END;
$$;

------------------------------------------------------------------------------
-- Operators (SPEC B §1.3)
------------------------------------------------------------------------------
-- PostgreSQL gives every user-defined operator the same precedence, left
-- associative, so `a ~> b & c` is `(a ~> b) & c`. The helper functions keep
-- the reference's names (df.as_op, df.if_then_op, df.if_else_op,
-- df.loop_prefix_op): they are part of its df surface.

CREATE OPERATOR ~> (FUNCTION = df.seq, LEFTARG = text, RIGHTARG = text);

CREATE FUNCTION df.as_op(fut text, name text) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT df.as(fut, name) $$;

CREATE OPERATOR |=> (FUNCTION = df.as_op, LEFTARG = text, RIGHTARG = text);

CREATE OPERATOR & (FUNCTION = df.join, LEFTARG = text, RIGHTARG = text);

CREATE OPERATOR | (FUNCTION = df.race, LEFTARG = text, RIGHTARG = text);

-- `cond ?> then` keeps both operands as text until `!>` supplies the else
-- branch. The marker is built with jsonb, exactly as the reference does, so
-- its bytes are jsonb's: keys ordered by length, ", " and ": " separators.
CREATE FUNCTION df.if_then_op(condition text, then_branch text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT jsonb_build_object('_partial_if', true, 'condition', condition,
                              'then_branch', then_branch)::text
$$;

CREATE OPERATOR ?> (FUNCTION = df.if_then_op, LEFTARG = text, RIGHTARG = text);

-- The left side is read as jsonb, so text that is not JSON at all fails
-- with PostgreSQL's own "invalid input syntax for type json", as in the
-- reference.
CREATE FUNCTION df.if_else_op(partial_if text, else_branch text) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    partial jsonb := partial_if::jsonb;
BEGIN
    IF partial ->> '_partial_if' IS NULL THEN
        RAISE EXCEPTION 'Invalid if-then-else: left side of !> must be a ?> expression';
    END IF;
    RETURN df.if(partial ->> 'condition', partial ->> 'then_branch', else_branch);
END;
$$;

CREATE OPERATOR !> (FUNCTION = df.if_else_op, LEFTARG = text, RIGHTARG = text);

CREATE FUNCTION df.loop_prefix_op(body text) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT df.loop(body) $$;

CREATE OPERATOR @> (FUNCTION = df.loop_prefix_op, RIGHTARG = text);
