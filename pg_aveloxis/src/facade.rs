//! Tests of the facade's SQL (sql/facade.sql): affiliations by email domain, the UTC
//! offset of git times, and the commit-author verbs. The walk and the drain of commit
//! envelopes are tested end to end in tests/tests/facade.rs and facade_authors.rs.

#[cfg(feature = "pg_test")]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::{int, sql_error, text};
    use pgrx::prelude::*;

    #[pg_test]
    fn affiliation_is_the_domains_else_the_nearest_parent_domains() {
        Spi::run(
            "INSERT INTO aveloxis_data.contributor_affiliations (ca_domain, ca_affiliation, ca_active) VALUES
                 ('example.com', 'Example Inc', true), ('labs.example.com', 'Example Labs', true),
                 ('gone.org', 'Gone', false)",
        )
        .unwrap();
        let of = |email: &str| text(&format!("SELECT aveloxis_ops.email_affiliation('{email}', NULL)"));
        assert_eq!(of("a@example.com").as_deref(), Some("Example Inc"));
        assert_eq!(of("a@mail.example.com").as_deref(), Some("Example Inc"));
        assert_eq!(of("a@x.labs.example.com").as_deref(), Some("Example Labs"));
        assert_eq!(of("a@gone.org"), None, "inactive");
        assert_eq!(
            of("a@example.community"),
            None,
            "a suffix of a label is not a parent domain"
        );
        assert_eq!(of("nobody"), None);
    }

    #[pg_test]
    fn set_affiliation_changes_what_commits_read_without_rewriting_them() {
        Spi::run("SELECT aveloxis.set_setting('registry.local_path_roots', '/srv/git')").unwrap();
        let repo = int("SELECT aveloxis.add_repo('/srv/git/affiliated')").unwrap();
        Spi::run(&format!(
            "INSERT INTO aveloxis_data.commits (repo_id, cmt_commit_hash, cmt_author_email, cmt_committer_email,
                                                cmt_added, cmt_removed, cmt_filename, cmt_author_timestamp)
             VALUES ({repo}, 'h1', 'a@dev.acme.io', 'c@other.org', 1, 0, 'f', '2024-05-01'),
                    ({repo}, 'h2', 'b@other.org', 'b@other.org', 1, 0, 'f', '2024-05-01')"
        ))
        .unwrap();
        let rows = "SELECT string_agg(concat_ws('|', cmt_id, cmt_author_email, cmt_author_affiliation, data_collection_date), ',' ORDER BY cmt_id) FROM aveloxis_data.commits";
        let before = text(rows);
        // One (repository, email, year) aggregate group queued; the commit rows untouched.
        assert_eq!(int("SELECT aveloxis.set_affiliation('ACME.io', 'Acme')"), Some(1));
        assert_eq!(text(rows), before);
        let read = "SELECT cmt_author_affiliation FROM aveloxis_augur_data.commits WHERE cmt_commit_hash = 'h1'";
        assert_eq!(text(read).as_deref(), Some("Acme"));
        assert_eq!(
            int(&format!(
                "SELECT count(*) FROM aveloxis_ops.commit_aggregate_backlog WHERE repo_id = {repo} AND year = 2024"
            )),
            Some(1)
        );
        // A rule from a later date does not reach back.
        Spi::run("SELECT aveloxis.set_affiliation('acme.io', 'Acme', true, '2025-01-01')").unwrap();
        assert_eq!(text(read), None);
        let err = sql_error("SELECT aveloxis.set_affiliation('not a domain', 'x')").unwrap();
        assert!(err.starts_with("22023 not an email domain"), "{err}");
    }

    #[pg_test]
    fn tz_offsets_of_git_times() {
        let of = |t: &str| int(&format!("SELECT aveloxis_ops.tz_offset_minutes('{t}')"));
        assert_eq!(of("2023-11-15T00:13:20+05:30"), Some(330));
        assert_eq!(of("2023-11-14T10:13:20-08:00"), Some(-480));
        assert_eq!(of("2023-11-14T18:13:20Z"), Some(0));
        assert_eq!(of("yesterday"), None);
    }

    #[pg_test]
    fn commit_author_verbs_check_their_input() {
        Spi::run("SELECT aveloxis.set_setting('registry.local_path_roots', '/srv/git')").unwrap();
        let repo = int("SELECT aveloxis.add_repo('/srv/git/verbs')").unwrap();
        let err = sql_error(&format!(
            "SELECT aveloxis.record_commit_author({repo}, 'a@b.c', 3::smallint, 1, 'x')"
        ))
        .unwrap();
        assert!(err.contains("platform must be 1 (GitHub) or 2 (GitLab)"), "{err}");
        let err = sql_error(&format!(
            "SELECT aveloxis.record_commit_author({repo}, 'a@b.c', 1::smallint, NULL, NULL)"
        ))
        .unwrap();
        assert!(err.contains("needs an account id or a login"), "{err}");
        let err = sql_error("SELECT aveloxis.record_commit_author_miss('a@b.c', 'maybe', 'why')").unwrap();
        assert!(err.contains("outcome must be"), "{err}");
        // A miss waits resolve.cooldown; a second miss counts an attempt.
        Spi::run("SELECT aveloxis.record_commit_author_miss('A@B.c', 'not_found', 'nothing found')").unwrap();
        Spi::run("SELECT aveloxis.record_commit_author_miss('a@b.c', 'not_found', 'nothing found')").unwrap();
        assert_eq!(
            text(
                "SELECT attempts || ' ' || (retry_after - last_attempted_at)::text
                 FROM aveloxis_data.unresolved_commit_emails WHERE email = 'a@b.c'"
            )
            .as_deref(),
            Some("2 7 days")
        );
    }

    #[pg_test]
    fn a_round_of_emails_in_one_call_is_each_email_in_its_own() {
        Spi::run(
            "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, cntrb_email)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 'ann', 'Ann@Example.org')",
        )
        .unwrap();
        // One row per email given, in order; unknown ones with NULLs; each what resolve_email says.
        assert_eq!(
            text(
                "SELECT string_agg(email || '=' || coalesce(cntrb_id::text, '-') || '/' || coalesce(source, '-'), ' ')
                 FROM aveloxis.resolve_emails(ARRAY['nobody@example.org', 'ann@example.org', '12+zed@users.noreply.github.com'])"
            )
            .as_deref(),
            Some(
                "nobody@example.org=-/- ann@example.org=00000000-0000-0000-0000-0000000000a1/email \
                 12+zed@users.noreply.github.com=-/noreply_id"
            )
        );
        assert_eq!(int("SELECT count(*) FROM aveloxis.resolve_emails('{}')"), Some(0));
        // Misses together: each recorded as record_commit_author_miss records it.
        assert_eq!(
            int("SELECT aveloxis.record_commit_author_misses(ARRAY['x@y.z', 'bot@localhost'], ARRAY['not_found', 'skipped'],
                                                            ARRAY['nothing found', NULL], ARRAY['X', NULL])"),
            Some(2)
        );
        assert_eq!(
            text(
                "SELECT string_agg(email || ' ' || outcome || ' ' || reason || ' ' || coalesce(name, '-'), ', ' ORDER BY email)
                 FROM aveloxis_data.unresolved_commit_emails"
            )
            .as_deref(),
            Some("bot@localhost skipped skipped -, x@y.z not_found nothing found X")
        );
        let err = sql_error(
            "SELECT aveloxis.record_commit_author_misses(ARRAY['a@b.c'], ARRAY['not_found'], ARRAY[]::text[], ARRAY[NULL])",
        )
        .unwrap();
        assert!(
            err.starts_with("22023 emails, outcomes, reasons and names must have one element per miss"),
            "{err}"
        );
        assert_eq!(
            int("SELECT count(*) FROM aveloxis_data.unresolved_commit_emails WHERE email = 'a@b.c'"),
            Some(0)
        );
    }
}
