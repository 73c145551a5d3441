//! Tests of identity convergence in SQL (docs/identity.md): the shared email chain
//! (`aveloxis.email_chain`), reversible merges (`merge_contributors`, `unmerge`,
//! `person_of`, `merge_suggestions`) and time-aware affiliation (`enroll`,
//! `affiliation_of`, `commit_affiliation`). The runs that feed them (enrichment,
//! search-resolve) are tested end to end in tests/tests/identity.rs.

#[cfg(feature = "pg_test")]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::{int, sql_error, text};
    use pgrx::prelude::*;

    const A: &str = "01000000-0a00-0000-0000-000000000000"; // platform_uuid(1, 10)
    const B: &str = "4b1d0000-0000-4000-8000-000000000001";
    const C: &str = "4b1d0000-0000-4000-8000-000000000002";
    const D: &str = "4b1d0000-0000-4000-8000-000000000003";

    fn chain(email: &str) -> Option<String> {
        text(&format!(
            "SELECT (SELECT concat_ws('|', step, reason, platform_id, platform_kind, user_id, login, cntrb_id)
                     FROM aveloxis.email_chain(ARRAY['{email}']))"
        ))
    }

    #[pg_test]
    fn the_email_chain_parses_noreply_and_junk_addresses_in_one_place() {
        assert_eq!(
            chain("12345+Octo-Cat@users.noreply.github.com").as_deref(),
            Some("noreply|1|1|12345|octo-cat")
        );
        assert_eq!(
            chain("octocat@users.noreply.github.com").as_deref(),
            Some("noreply|1|1|octocat")
        );
        assert_eq!(
            chain("4242-jdoe@users.noreply.gitlab.com").as_deref(),
            Some("noreply|2|2|4242|jdoe")
        );
        for not_one in [
            "0+octocat@users.noreply.github.com",
            "x+octocat@users.noreply.github.com",
            "+octocat@users.noreply.github.com",
            "-octocat@users.noreply.github.com",
            "jdoe@users.noreply.gitlab.com",
            // A host nobody declared: nobody's account.
            "7-jdoe@users.noreply.gitlab.example.org",
        ] {
            assert_eq!(chain(not_one).as_deref(), Some("unknown"), "{not_one}");
        }
        // A declared self-managed GitLab: its own identity platform.
        Spi::run("SELECT aveloxis.add_forge_host('gitlab.example.org', 2::smallint)").unwrap();
        let platform =
            int("SELECT platform_id FROM aveloxis_data.platforms WHERE platform_host = 'gitlab.example.org'").unwrap();
        assert_eq!(
            chain("7-jdoe@users.noreply.gitlab.example.org"),
            Some(format!("noreply|{platform}|2|7|jdoe"))
        );
        for (email, why) in [
            ("", "empty email"),
            ("root", "not an email address"),
            ("49699333+dependabot[bot]@users.noreply.github.com", "a bot account"),
            ("noreply@github.com", "a service's noreply address"),
            ("action@github.com", "a service or machine address"),
            ("root@localhost", "a service or machine address"),
        ] {
            assert_eq!(chain(email), Some(format!("skipped|{why}")), "{email:?}");
        }
        // The database step, and one row per distinct address in the order given.
        Spi::run(&format!(
            "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email) VALUES ('{B}', 'Kim@Example.org')"
        ))
        .unwrap();
        assert_eq!(chain("kim@example.org"), Some(format!("database|{B}")));
        assert_eq!(
            text(
                "SELECT string_agg(email || ':' || step, ',' ORDER BY ordinality)
                  FROM aveloxis.email_chain(ARRAY['b@x.org', 'KIM@example.org', NULL, 'b@x.org ', 'kim@example.org'])
                  WITH ORDINALITY"
            )
            .as_deref(),
            Some("b@x.org:unknown,kim@example.org:database")
        );
    }

    /// Every row a merge may touch, as text, to compare byte for byte.
    fn snapshot() -> String {
        text(
            "SELECT concat_ws(E'\\n',
                (SELECT string_agg(to_jsonb(c)::text, E'\\n' ORDER BY c.cntrb_id) FROM aveloxis_data.contributors c),
                (SELECT string_agg(to_jsonb(i)::text, E'\\n' ORDER BY i.platform_id, i.platform_user_id)
                 FROM aveloxis_data.contributor_identities i),
                (SELECT string_agg(to_jsonb(h)::text, E'\\n' ORDER BY h.platform_id, h.platform_user_id, h.login)
                 FROM aveloxis_data.contributor_login_history h),
                (SELECT string_agg(to_jsonb(a)::text, E'\\n' ORDER BY a.alias_email) FROM aveloxis_data.contributors_aliases a),
                (SELECT string_agg(to_jsonb(e)::text, E'\\n' ORDER BY e.enrollment_id) FROM aveloxis_data.contributor_enrollments e))",
        )
        .unwrap()
    }

    fn people() {
        Spi::run(&format!(
            "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gh_user_id, gh_login, data_collection_date)
             VALUES ('{A}', 'alice', 10, 'alice', '2024-01-01');
             INSERT INTO aveloxis_data.contributor_identities (platform_id, platform_user_id, cntrb_id, login)
             VALUES (1, 10, '{A}', 'alice');
             INSERT INTO aveloxis_data.contributor_login_history (platform_id, platform_user_id, login, cntrb_id)
             VALUES (1, 10, 'alice', '{A}');
             INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email, cntrb_full_name, cntrb_company, gl_id,
                                                     gl_username, data_collection_date)
             VALUES ('{B}', 'ally@work.example', 'Alice Liddell', 'ACME', 77, 'ally', '2023-01-01');
             INSERT INTO aveloxis_data.contributor_identities (platform_id, platform_user_id, cntrb_id, login)
             VALUES (2, 77, '{B}', 'ally');
             INSERT INTO aveloxis_data.contributor_login_history (platform_id, platform_user_id, login, cntrb_id)
             VALUES (2, 77, 'ally', '{B}');
             INSERT INTO aveloxis_data.contributors_aliases (alias_email, cntrb_id) VALUES ('a.l@old.example', '{B}');
             -- Someone else's alias that B's email must not take over.
             INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email) VALUES ('{C}', 'c@example.org');
             INSERT INTO aveloxis_data.contributors_aliases (alias_email, cntrb_id) VALUES ('ally@work.example', '{C}');
             INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email, data_collection_date)
             VALUES ('{D}', 'd@example.org', '2022-01-01');"
        ))
        .unwrap();
        Spi::run(&format!(
            "SELECT aveloxis.enroll('{B}', 'ACME', '2019-01-01', '2021-01-01')"
        ))
        .unwrap();
    }

    #[pg_test]
    fn unmerge_restores_every_row_byte_for_byte() {
        people();
        let before = snapshot();
        let merge = int(&format!(
            "SELECT aveloxis.merge_contributors('{A}', '{B}', 'one person')"
        ))
        .unwrap();
        assert_eq!(
            text(&format!(
                "SELECT concat_ws('|', c.cntrb_company, c.cntrb_full_name, c.gl_id,
                                  (SELECT count(*) FROM aveloxis_data.contributor_identities i WHERE i.cntrb_id = c.cntrb_id),
                                  (SELECT count(*) FROM aveloxis_data.contributor_enrollments e WHERE e.cntrb_id = c.cntrb_id))
                 FROM aveloxis_data.contributors c WHERE c.cntrb_id = '{A}'"
            ))
            .as_deref(),
            Some("ACME|Alice Liddell|77|2|1"),
            "the winner took the loser's accounts, enrollments and empty fields"
        );
        assert_eq!(
            text(&format!("SELECT aveloxis.person_of('{B}')::text")).as_deref(),
            Some(A)
        );
        assert_eq!(
            text(
                "SELECT cntrb_id::text FROM aveloxis_data.contributors_aliases WHERE alias_email = 'ally@work.example'"
            )
            .as_deref(),
            Some(C),
            "an address that is someone else's alias stays theirs"
        );
        assert_ne!(snapshot(), before);
        let undo = int(&format!("SELECT aveloxis.unmerge({merge})")).unwrap();
        assert_eq!(snapshot(), before, "unmerge restores exactly the state before");
        assert_eq!(
            text(&format!("SELECT aveloxis.person_of('{B}')::text")).as_deref(),
            Some(B)
        );
        // The log keeps both, and is append-only for its readers: an undo is undone once.
        assert_eq!(
            text("SELECT string_agg(action || coalesce(':' || undoes, ''), ',' ORDER BY merge_id) FROM aveloxis_data.contributor_merges")
                .as_deref(),
            Some(&*format!("merge,unmerge:{merge}"))
        );
        assert!(undo > merge);
        let err = sql_error(&format!("SELECT aveloxis.unmerge({merge})")).unwrap();
        assert!(err.contains("was already undone"), "{err}");
    }

    #[pg_test]
    fn chains_of_merges_resolve_and_unwind_newest_first() {
        people();
        let before = snapshot();
        let first = int(&format!("SELECT aveloxis.merge_contributors('{B}', '{D}')")).unwrap();
        let second = int(&format!("SELECT aveloxis.merge_contributors('{A}', '{B}')")).unwrap();
        assert_eq!(
            text(&format!("SELECT aveloxis.person_of('{D}')::text")).as_deref(),
            Some(A),
            "D -> B -> A"
        );
        assert_eq!(
            text(&format!(
                "SELECT person_id::text FROM aveloxis_data.contributor_persons WHERE cntrb_id = '{D}'"
            ))
            .as_deref(),
            Some(A)
        );
        assert_eq!(
            int(&format!("SELECT count(DISTINCT person_id) FROM aveloxis_data.contributor_persons WHERE cntrb_id IN ('{A}', '{B}', '{D}')")),
            Some(1)
        );
        // The older merge cannot be undone under the newer one; newest first works.
        let err = sql_error(&format!("SELECT aveloxis.unmerge({first})")).unwrap();
        assert!(
            err.contains(&format!("merge {second} has to be undone before merge {first}")),
            "{err}"
        );
        Spi::run(&format!("SELECT aveloxis.unmerge({second})")).unwrap();
        Spi::run(&format!("SELECT aveloxis.unmerge({first})")).unwrap();
        assert_eq!(snapshot(), before);
        // Merging into a merged-away row is refused with where to go instead.
        Spi::run(&format!("SELECT aveloxis.merge_contributors('{B}', '{D}')")).unwrap();
        let err = sql_error(&format!("SELECT aveloxis.merge_contributors('{D}', '{C}')")).unwrap();
        assert!(
            err.starts_with(&format!("22023 contributor {D} was already merged away")),
            "{err}"
        );
    }

    #[pg_test]
    fn suggestions_are_listed_never_applied_and_rejections_stick() {
        Spi::run(&format!(
            "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email, cntrb_full_name, data_collection_date) VALUES
               ('{B}', 'jane@corp.example', 'Jane Roe', '2020-01-01'),
               ('{C}', 'jroe@corp.example', ' jane roe ', '2021-01-01'),
               ('{D}', 'admin@corp.example', 'admin', '2021-01-01');
             INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gh_user_id, gh_login) VALUES ('{A}', 'alice', 10, 'alice');
             INSERT INTO aveloxis_data.contributor_identities (platform_id, platform_user_id, cntrb_id, login)
             VALUES (1, 10, '{A}', 'alice');
             INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gl_id, gl_username)
             VALUES ('4b1d0000-0000-4000-8000-000000000009', 'Alice', 5, 'Alice');"
        ))
        .unwrap();
        let listed = || {
            text("SELECT string_agg(reason || ':' || suggested_winner, ',' ORDER BY reason) FROM aveloxis.merge_suggestions()")
        };
        assert_eq!(
            listed().as_deref(),
            Some(&*format!(
                "same login on GitHub and GitLab:{A},same name and email domain:{B}"
            ))
        );
        assert_eq!(
            int("SELECT count(*) FROM aveloxis_data.contributor_merges"),
            Some(0),
            "never applied by listing"
        );
        Spi::run(&format!(
            "SELECT aveloxis.reject_merge_suggestion('{C}', '{B}', 'two Janes')"
        ))
        .unwrap();
        let merge = int(&format!(
            "SELECT aveloxis.accept_merge_suggestion('{A}', '4b1d0000-0000-4000-8000-000000000009')"
        ))
        .unwrap();
        assert_eq!(listed(), None, "rejected and accepted pairs are gone");
        assert_eq!(
            text(&format!(
                "SELECT concat_ws('|', winner, source) FROM aveloxis_data.contributor_merges WHERE merge_id = {merge}"
            ))
            .as_deref(),
            Some(&*format!("{A}|suggestion")),
            "the deterministic id (R1) wins"
        );
    }

    #[pg_test]
    fn affiliation_is_dated_and_follows_the_person() {
        people();
        Spi::run(&format!(
            "SELECT aveloxis.enroll('{A}', 'Globex', '2021-01-01');
             SELECT aveloxis.set_affiliation('work.example', 'Work Inc')"
        ))
        .unwrap();
        let at = |who: &str, when: &str| text(&format!("SELECT aveloxis.affiliation_of('{who}', '{when}')"));
        assert_eq!(at(B, "2020-06-01").as_deref(), Some("ACME"));
        assert_eq!(at(A, "2022-06-01").as_deref(), Some("Globex"));
        // Before any enrollment: B's email's domain rule; A has no email, so nothing.
        assert_eq!(at(B, "2018-06-01").as_deref(), Some("Work Inc"));
        assert_eq!(at(A, "2018-06-01"), None);
        // After a merge the person's enrollments answer for either row.
        Spi::run(&format!("SELECT aveloxis.merge_contributors('{A}', '{B}')")).unwrap();
        assert_eq!(at(B, "2020-06-01").as_deref(), Some("ACME"));
        assert_eq!(at(B, "2022-06-01").as_deref(), Some("Globex"));
        assert_eq!(at(A, "2020-06-01").as_deref(), Some("ACME"));
        // A correction: ACME ended in mid-2020, not 2021.
        let acme =
            int("SELECT enrollment_id FROM aveloxis_data.contributor_enrollments WHERE organization = 'ACME'").unwrap();
        Spi::run(&format!(
            "SELECT aveloxis.correct_enrollment({acme}, ends_on => '2020-07-01')"
        ))
        .unwrap();
        assert_eq!(
            at(A, "2020-09-01").as_deref(),
            Some("Work Inc"),
            "the domain rule of the email it took from B"
        );
        let err = sql_error(&format!(
            "SELECT aveloxis.enroll('{A}', 'X', '2020-01-01', '2019-01-01')"
        ))
        .unwrap();
        assert!(err.starts_with("22023 an enrollment ends after it starts"), "{err}");
    }
}
