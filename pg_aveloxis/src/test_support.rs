//! Helpers for `#[pg_test]`s (built only with the `pg_test` feature).

use pgrx::prelude::*;

/// Runs `sql`; returns `None` if it succeeds, else `"SQLSTATE message | hint"`.
/// An error inside a `#[pg_test]` would abort its transaction; this catches it in a
/// PL/pgSQL exception block (a subtransaction) so one test can check many errors.
pub fn sql_error(sql: &str) -> Option<String> {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.sql_error(stmt text) RETURNS text LANGUAGE plpgsql AS $$
         DECLARE st text; msg text; hint text;
         BEGIN
             EXECUTE stmt;
             RETURN NULL;
         EXCEPTION WHEN OTHERS THEN
             GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
             RETURN st || ' ' || msg || ' | ' || coalesce(hint, '');
         END $$",
    )
    .unwrap();
    Spi::get_one_with_args::<String>("SELECT pg_temp.sql_error($1)", &[sql.into()]).unwrap()
}

/// Runs a query returning one text value (NULL → None).
pub fn text(sql: &str) -> Option<String> {
    Spi::get_one::<String>(sql).unwrap()
}

/// Runs a query returning one bigint value (NULL → None).
pub fn int(sql: &str) -> Option<i64> {
    Spi::get_one::<i64>(sql).unwrap()
}
