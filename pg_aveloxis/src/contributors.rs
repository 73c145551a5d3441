//! Tests of the contributor SQL API: `aveloxis.resolve_email`, `link_contributor` and
//! `merge_contributors` (sql/contributors.sql, sql/merges.sql) and the diagnostics
//! (sql/diagnostics.sql). Merges, affiliation and the email chain: convergence.rs.
//! The drain's identity resolution is tested end to end in tests/tests/drain.rs.

#[cfg(feature = "pg_test")]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::{int, sql_error, text};
    use pgrx::prelude::*;

    const A: &str = "01000000-0a00-0000-0000-000000000000"; // platform_uuid(1, 10)
    const B: &str = "4b1d0000-0000-4000-8000-000000000001"; // a random (v4) id

    fn setup() {
        Spi::run(&format!(
            "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gh_user_id, gh_login, cntrb_email)
             VALUES ('{A}', 'alice', 10, 'alice', 'Alice@Example.org');
             INSERT INTO aveloxis_data.contributor_identities (platform_id, platform_user_id, cntrb_id, login)
             VALUES (1, 10, '{A}', 'alice');
             INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email, cntrb_company)
             VALUES ('{B}', 'ally@work.example', 'ACME');
             INSERT INTO aveloxis_data.contributors_aliases (alias_email, cntrb_id) VALUES ('a.l@old.example', '{A}');"
        ))
        .unwrap();
    }

    fn resolved(email: &str) -> Option<String> {
        // A scalar subquery: resolve_email returns no row for an unknown address.
        text(&format!(
            "SELECT (SELECT concat_ws('|', cntrb_id, login, source) FROM aveloxis.resolve_email('{email}'))"
        ))
    }

    #[pg_test]
    fn resolve_email_follows_r12s_database_steps() {
        setup();
        assert_eq!(
            resolved("10+alice@users.noreply.github.com").as_deref(),
            Some(&*format!("{A}|alice|noreply_id"))
        );
        assert_eq!(
            resolved("ALICE@users.noreply.github.com").as_deref(),
            Some(&*format!("{A}|alice|noreply_login"))
        );
        assert_eq!(
            resolved("99+bob@users.noreply.github.com").as_deref(),
            Some("bob|noreply_id")
        );
        assert_eq!(
            resolved("alice@example.org").as_deref(),
            Some(&*format!("{A}|alice|email"))
        );
        assert_eq!(
            resolved("a.l@OLD.example").as_deref(),
            Some(&*format!("{A}|alice|alias"))
        );
        assert_eq!(resolved("nobody@nowhere.example"), None);
    }

    #[pg_test]
    fn link_contributor_adds_the_account_and_never_touches_identity() {
        setup();
        Spi::run(&format!(
            "SELECT aveloxis.link_contributor('{B}', 1::smallint, 20, 'ally')"
        ))
        .unwrap();
        assert_eq!(
            text(&format!(
                "SELECT concat_ws('|', cntrb_id, coalesce(cntrb_login, '-'), gh_user_id, gh_login)
                 FROM aveloxis_data.contributors WHERE cntrb_id = '{B}'"
            ))
            .as_deref(),
            Some(&*format!("{B}|-|20|ally")),
            "cntrb_id and cntrb_login unchanged (R11)"
        );
        assert_eq!(
            text("SELECT cntrb_id::text FROM aveloxis_data.contributor_identities WHERE platform_user_id = 20")
                .as_deref(),
            Some(B)
        );
        let err = sql_error(&format!(
            "SELECT aveloxis.link_contributor('{B}', 1::smallint, 10, 'alice')"
        ))
        .unwrap();
        assert!(
            err.starts_with(&format!(
                "23505 account 10 on platform 1 already belongs to contributor {A}"
            )),
            "{err}"
        );
        let err = sql_error("SELECT aveloxis.link_contributor(NULL, 1::smallint, 10, 'x')").unwrap();
        assert!(err.starts_with("22004"), "{err}");
    }

    #[pg_test]
    fn merge_is_logical_and_lookups_follow_the_winner() {
        setup();
        Spi::run(&format!(
            "SELECT aveloxis.link_contributor('{B}', 2::smallint, 77, 'ally')"
        ))
        .unwrap();
        Spi::run(&format!("SELECT aveloxis.merge_contributors('{A}', '{B}')")).unwrap();
        assert_eq!(
            text(&format!(
                "SELECT concat_ws('|', cntrb_deleted, cntrb_company) FROM aveloxis_data.contributors WHERE cntrb_id = '{B}'"
            ))
            .as_deref(),
            Some("1|ACME"),
            "the loser row stays (R2, R10)"
        );
        assert_eq!(
            text(&format!(
                "SELECT concat_ws('|', cntrb_company, gl_id) FROM aveloxis_data.contributors WHERE cntrb_id = '{A}'"
            ))
            .as_deref(),
            Some("ACME|77"),
            "the winner took the loser's empty fields"
        );
        assert_eq!(
            resolved("ally@work.example").as_deref(),
            Some(&*format!("{A}|alice|alias"))
        );
        assert_eq!(
            text("SELECT cntrb_id::text FROM aveloxis_data.contributor_identities WHERE platform_id = 2").as_deref(),
            Some(A)
        );
        let err = sql_error(&format!("SELECT aveloxis.merge_contributors('{A}', '{B}')")).unwrap();
        assert!(
            err.starts_with(&format!("22023 contributor {B} was already merged away")),
            "{err}"
        );
        let err = sql_error(&format!("SELECT aveloxis.merge_contributors('{A}', '{A}')")).unwrap();
        assert!(
            err.starts_with("22023 a merge needs two different contributors"),
            "{err}"
        );
    }

    #[pg_test]
    fn diagnostics_return_rows() {
        setup();
        assert_eq!(
            text("SELECT concat_ws('|', with_gh_user_id, email_only, thin, total) FROM aveloxis.contributor_quality()")
                .as_deref(),
            Some("1|1|1|2")
        );
        Spi::run("INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gh_user_id) VALUES (gen_random_uuid(), 'alice-old', 10)")
            .unwrap();
        assert_eq!(
            text("SELECT concat_ws('|', platform_user_id, contributors) FROM aveloxis.duplicate_contributors()")
                .as_deref(),
            Some("10|2")
        );
        assert_eq!(int("SELECT count(*) FROM aveloxis.identity_anomalies()"), Some(0));
        // Thin rows with a forge account (alice-old has none: search-resolve's, not enrichment's).
        assert_eq!(
            int("SELECT never_enriched FROM aveloxis.enrichment_progress()"),
            Some(1)
        );
        assert_eq!(int("SELECT aveloxis.search_resolve_queue()"), Some(1));
        assert_eq!(
            int("SELECT sum(orphans)::bigint FROM aveloxis.contributor_fk_integrity()"),
            Some(0)
        );
    }
}
