-- A `--` comment ends at a line feed or a carriage return: PostgreSQL's
-- scanner ends it at either. transaction_control_in (0011) ended it only at a
-- line feed, so `SELECT 1 --x<CR>; COMMIT` hid its COMMIT from df.start's
-- check. The function is rewritten in place, from its own definition, with
-- only that loop changed (the worker's lexer, pgdurable/sqltext.py, matches).
DO $migration$
DECLARE
    definition text := pg_get_functiondef('pgdurable.transaction_control_in(text)'::regprocedure);
    fixed text;
BEGIN
    fixed := replace(
        definition,
        $old$WHILE i <= n AND ch[i] <> E'\n' LOOP$old$,
        $new$WHILE i <= n AND ch[i] NOT IN (E'\n', E'\r') LOOP$new$
    );
    IF fixed = definition THEN
        RAISE EXCEPTION 'transaction_control_in: the comment loop to fix was not found';
    END IF;
    EXECUTE fixed;
END
$migration$;
