//! The read side: 8Knot's queries against aveloxis_augur_data, the materialized views
//! and their refresh, and the daily activity the triggers keep (docs/analytics.md).
//! Data arrives through the real pipeline: the replayed GitHub fixtures collected by the
//! agent, and a scripted git repository through the facade.

use std::time::{Duration, Instant};

use harness::gitrepo::{Change, Commit, ScriptedRepo};
use harness::replay::{github_fixtures, ReplayServer};
use harness::sqlx::{self, Connection, PgConnection, PgPool};
use harness::{cluster_url, output_text, TestDb};

const REPO: &str = "https://github.com/PyGithub/PyGithub";
const SEARCH_PATH: &str = "SET search_path = aveloxis_augur_data, aveloxis_data";

/// A database holding the collected fixture repository and a facade-collected git repository.
async fn collected(label: &str) -> (TestDb, PgPool, ScriptedRepo) {
    let db = TestDb::with_extension(label).await;
    let replay = ReplayServer::start().await;
    let fixtures = github_fixtures();
    replay
        .load_repository(&fixtures.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let api = replay.api_url();
    let out = db
        .agent_async(
            &["collect", REPO, "--phases", "collect", "--github-api-url", api.as_str()],
            &[("GITHUB_TOKENS", "tok-1")],
        )
        .await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");

    let git = ScriptedRepo::new(label);
    git.import(&[
        Commit {
            branch: "main",
            mark: 1,
            from: None,
            merge: &[],
            author: "Ann <ann@example.org>",
            time: "1700000000 +0530",
            message: "first\n",
            changes: vec![
                Change::Write("a.txt", b"1\n2\n3\n"),
                Change::Write("b.txt", b"x\n"),
                Change::Write("CODE_OF_CONDUCT.md", b"be kind\n"),
                Change::Write("SECURITY.md", b"top-level policy\n"),
                Change::Write(".github/SECURITY.md", b"the policy GitHub shows\n"),
                Change::Write("docs/code_of_conduct_faq.md", b"a decoy\n"),
                Change::Write("docs/audits/2024-report.pdf", b"%PDF\n"),
            ],
        },
        Commit {
            branch: "main",
            mark: 2,
            from: Some(1),
            merge: &[],
            author: "Bob <bob@example.org>",
            time: "1700090000 -0800",
            message: "second\n",
            changes: vec![Change::Write("a.txt", b"1\n3\n4\n5\n")],
        },
        Commit {
            branch: "main",
            mark: 3,
            from: Some(2),
            merge: &[],
            author: "Ann <ann@example.org>",
            time: "1700200000 +0000",
            message: "third\n",
            changes: vec![Change::Write("c.txt", b"c\n")],
        },
    ]);
    let clones = db.scratch_dir("clones");
    let out = db.agent(&["collect", git.path_str(), "--clone-dir", clones.to_str().unwrap()]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "facade collect failed:\n{stdout}\n{stderr}");
    let pool = db.pool(3).await;
    (db, pool, git)
}

async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// 8Knot's 13 queries (8knot-contract.md §2), as it sends them, each cast into its cache
/// table's column types; returns (query, rows).
const EIGHT_KNOT_QUERIES: &[(&str, &str)] = &[
    ("issues", "SELECT r.repo_id::int4, r.repo_name::text, i.issue_id::int4, i.gh_issue_number::int4, i.gh_issue_id::int8,
        left(i.reporter_id::text, 15), left(i.cntrb_id::text, 15), i.created_at::text, i.closed_at::text
      FROM repo r JOIN issues i ON r.repo_id = i.repo_id
      WHERE r.repo_id IN (SELECT repo_id FROM repo) AND i.pull_request_id IS NULL
        AND i.created_at < now() AND (i.closed_at < now() OR i.closed_at IS NULL)"),
    ("commits", "SELECT DISTINCT r.repo_id::int4, c.cmt_commit_hash::text, c.cmt_author_email::text,
        c.cmt_author_date::text, timezone('utc', c.cmt_author_timestamp)::text,
        timezone('utc', c.cmt_committer_timestamp)::text
      FROM repo r JOIN commits c ON r.repo_id = c.repo_id
      WHERE c.repo_id IN (SELECT repo_id FROM repo) AND timezone('utc', c.cmt_author_timestamp) < now()
        AND timezone('utc', c.cmt_committer_timestamp) < now()"),
    ("prs", "SELECT r.repo_id::int4, r.repo_name::text, pr.pull_request_id::int4, pr.pr_src_number::int4,
        left(pr.pr_augur_contributor_id::text, 15), pr.pr_created_at::text, pr.pr_closed_at::text, pr.pr_merged_at::text
      FROM repo r JOIN pull_requests pr ON r.repo_id = pr.repo_id
      WHERE pr.repo_id IN (SELECT repo_id FROM repo) AND pr.pr_created_at < now()
        AND (pr.pr_closed_at < now() OR pr.pr_closed_at IS NULL) AND (pr.pr_merged_at < now() OR pr.pr_merged_at IS NULL)"),
    ("contributors", "SELECT repo_id::int4, repo_name::text, left(cntrb_id::text, 15), timezone('utc', created_at)::text,
        login::text, action::text, rank::int4
      FROM explorer_contributor_actions WHERE repo_id IN (SELECT repo_id FROM repo) AND timezone('utc', created_at) < now()"),
    ("affiliation", "SELECT left(c.cntrb_id::text, 15), c.created_at::text, c.repo_id::int4, c.login::text, c.action::text,
        c.rank::int4, con.cntrb_company::text, string_agg(ca.alias_email, ' , ' ORDER BY ca.alias_email)::text
      FROM explorer_contributor_actions c JOIN contributors_aliases ca ON c.cntrb_id = ca.cntrb_id
      JOIN contributors con ON c.cntrb_id = con.cntrb_id
      WHERE c.repo_id IN (SELECT repo_id FROM repo) AND timezone('utc', c.created_at) < now()
      GROUP BY c.cntrb_id, c.created_at, c.repo_id, c.login, c.action, c.rank, con.cntrb_company"),
    ("issue_assignee", "SELECT issue_id::int4, id::int4, created::text, closed::text, assign_date::text,
        assignment_action::text, left(assignee::text, 15)
      FROM explorer_issue_assignments WHERE id IN (SELECT repo_id FROM repo) AND created < now()
        AND (closed < now() OR closed IS NULL) AND (assign_date < now() OR assign_date IS NULL)"),
    ("pr_assignee", "SELECT pull_request_id::int4, id::int4, created::text, closed::text, assign_date::text,
        assignment_action::text, left(assignee::text, 15)
      FROM explorer_pr_assignments WHERE id IN (SELECT repo_id FROM repo) AND created < now()
        AND (closed < now() OR closed IS NULL) AND (assign_date < now() OR assign_date IS NULL)"),
    ("pr_response", "SELECT t.pull_request_id::int4, t.id::int4, t.cntrb_id::text, t.msg_timestamp::text,
        t.msg_cntrb_id::text, t.pr_created_at::text, t.pr_closed_at::text
      FROM (SELECT * FROM explorer_pr_response WHERE ID IN (SELECT repo_id FROM repo)) t"),
    ("repo_languages", "SELECT repo_id::int4 AS id, programming_language::text, code_lines::int4, files::int4
      FROM explorer_repo_languages WHERE repo_id IN (SELECT repo_id FROM repo)"),
    ("package_version", "SELECT rdl.repo_id::int4, rdl.name::text, rdl.current_release_date::text,
        rdl.latest_release_date::text, rdl.libyear::float4,
        CASE WHEN rdl.libyear >= 1.0 THEN 'Greater than a year' ELSE 'Less than a year' END
      FROM repo_deps_libyear rdl
      WHERE rdl.repo_id IN (SELECT repo_id FROM repo) AND rdl.libyear >= 0
        AND rdl.data_collection_date = (SELECT max(x.data_collection_date) FROM repo_deps_libyear x
                                        WHERE x.repo_id = rdl.repo_id)"),
    ("repo_releases", "SELECT r.repo_id::int4, r.release_name::text, r.release_created_at::text,
        r.release_published_at::text, r.release_updated_at::text
      FROM releases r WHERE r.repo_id IN (SELECT repo_id FROM repo) AND r.release_published_at IS NOT NULL"),
    ("ossf_score", "SELECT s.repo_id::int4, s.name::text, s.score::float4, s.data_collection_date::text
      FROM repo_deps_scorecard s
      WHERE s.repo_id IN (SELECT repo_id FROM repo)
        AND s.data_collection_date = (SELECT max(x.data_collection_date) FROM repo_deps_scorecard x
                                      WHERE x.repo_id = s.repo_id)"),
    ("repo_info", "SELECT DISTINCT repo_id::int4, issues_enabled::text, fork_count::int4, watchers_count::int4,
        license::text, stars_count::int4, code_of_conduct_file::text, security_issue_file::text,
        security_audit_file::text, data_collection_date::text
      FROM repo_info ri
      WHERE repo_id IN (SELECT repo_id FROM repo)
        AND data_collection_date = (SELECT max(x.data_collection_date) FROM repo_info x WHERE x.repo_id = ri.repo_id)"),
];

/// Augur's relations, column by column in Augur's (model) order with Augur's types
/// (chaoss/augur augur/application/db/models/augur_data.py). Timestamp precision is not
/// compared: Augur's are timestamp(0); ours keep what was stored.
const AUGUR_COLUMNS: &[(&str, &str)] = &[
    ("repo", "repo_id:bigint repo_group_id:bigint repo_git:varchar repo_path:varchar repo_name:varchar repo_added:timestamp repo_type:varchar url:varchar owner_id:integer description:varchar primary_language:varchar created_at:varchar forked_from:varchar updated_at:timestamp repo_archived_date_collected:timestamptz repo_archived:integer tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp repo_src_id:bigint"),
    ("repo_groups", "repo_group_id:bigint rg_name:varchar rg_description:varchar rg_website:varchar rg_recache:smallint rg_last_modified:timestamp rg_type:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("contributors", "cntrb_id:uuid cntrb_login:varchar cntrb_email:varchar cntrb_full_name:varchar cntrb_company:varchar cntrb_created_at:timestamp cntrb_type:varchar cntrb_fake:smallint cntrb_deleted:smallint cntrb_long:numeric cntrb_lat:numeric cntrb_country_code:char cntrb_state:varchar cntrb_city:varchar cntrb_location:varchar cntrb_canonical:varchar cntrb_last_used:timestamptz gh_user_id:bigint gh_login:varchar gh_url:varchar gh_html_url:varchar gh_node_id:varchar gh_avatar_url:varchar gh_gravatar_id:varchar gh_followers_url:varchar gh_following_url:varchar gh_gists_url:varchar gh_starred_url:varchar gh_subscriptions_url:varchar gh_organizations_url:varchar gh_repos_url:varchar gh_events_url:varchar gh_received_events_url:varchar gh_type:varchar gh_site_admin:varchar gl_web_url:varchar gl_avatar_url:varchar gl_state:varchar gl_username:varchar gl_full_name:varchar gl_id:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("contributors_aliases", "cntrb_alias_id:bigint cntrb_id:uuid canonical_email:varchar alias_email:varchar cntrb_active:smallint cntrb_last_modified:timestamp tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("commits", "cmt_id:bigint repo_id:bigint cmt_commit_hash:varchar cmt_author_name:varchar cmt_author_raw_email:varchar cmt_author_email:varchar cmt_author_date:varchar cmt_author_affiliation:varchar cmt_committer_name:varchar cmt_committer_raw_email:varchar cmt_committer_email:varchar cmt_committer_date:varchar cmt_committer_affiliation:varchar cmt_added:integer cmt_removed:integer cmt_whitespace:integer cmt_filename:varchar cmt_date_attempted:timestamp cmt_ght_author_id:uuid cmt_ght_committer_id:integer cmt_ght_committed_at:timestamp cmt_committer_timestamp:timestamptz cmt_author_timestamp:timestamptz cmt_author_platform_username:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("issues", "issue_id:bigint repo_id:bigint reporter_id:uuid pull_request:bigint pull_request_id:bigint created_at:timestamp issue_title:varchar issue_body:varchar cntrb_id:uuid comment_count:bigint updated_at:timestamp closed_at:timestamp due_on:timestamp repository_url:varchar issue_url:varchar labels_url:varchar comments_url:varchar events_url:varchar html_url:varchar issue_state:varchar issue_node_id:varchar gh_issue_number:bigint gh_issue_id:bigint gh_user_id:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_requests", "pull_request_id:bigint repo_id:bigint pr_url:varchar pr_src_id:bigint pr_src_node_id:varchar pr_html_url:varchar pr_diff_url:varchar pr_patch_url:varchar pr_issue_url:varchar pr_augur_issue_id:bigint pr_src_number:bigint pr_src_state:varchar pr_src_locked:boolean pr_src_title:varchar pr_augur_contributor_id:uuid pr_body:text pr_created_at:timestamp pr_updated_at:timestamp pr_closed_at:timestamp pr_merged_at:timestamp pr_merge_commit_sha:varchar pr_teams:bigint pr_milestone:varchar pr_commits_url:varchar pr_review_comments_url:varchar pr_review_comment_url:varchar pr_comments_url:varchar pr_statuses_url:varchar pr_meta_head_id:varchar pr_meta_base_id:varchar pr_src_issue_url:varchar pr_src_comments_url:varchar pr_src_review_comments_url:varchar pr_src_commits_url:varchar pr_src_statuses_url:varchar pr_src_author_association:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("releases", "release_id:char repo_id:bigint release_name:varchar release_description:varchar release_author:varchar release_created_at:timestamp release_published_at:timestamp release_updated_at:timestamp release_is_draft:boolean release_is_prerelease:boolean release_tag_name:varchar release_url:varchar tag_only:boolean tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("repo_info", "repo_info_id:bigint repo_id:bigint last_updated:timestamp issues_enabled:varchar open_issues:integer pull_requests_enabled:varchar wiki_enabled:varchar pages_enabled:varchar fork_count:integer default_branch:varchar watchers_count:integer UUID:integer license:varchar stars_count:integer committers_count:integer issue_contributors_count:varchar changelog_file:varchar contributing_file:varchar license_file:varchar code_of_conduct_file:varchar security_issue_file:varchar security_audit_file:varchar status:varchar keywords:varchar commit_count:bigint issues_count:bigint issues_closed:bigint pull_request_count:bigint pull_requests_open:bigint pull_requests_closed:bigint pull_requests_merged:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("repo_deps_libyear", "repo_deps_libyear_id:bigint repo_id:bigint name:varchar requirement:varchar type:varchar package_manager:varchar current_verion:varchar latest_version:varchar current_release_date:varchar latest_release_date:varchar libyear:float8 tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("repo_deps_scorecard", "repo_deps_scorecard_id:bigint repo_id:bigint name:varchar scorecard_check_details:jsonb score:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("repo_labor", "repo_labor_id:bigint repo_id:bigint repo_clone_date:timestamp rl_analysis_date:timestamp programming_language:varchar file_path:varchar file_name:varchar total_lines:integer code_lines:integer comment_lines:integer blank_lines:integer code_complexity:integer repo_url:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("message", "msg_id:bigint rgls_id:bigint platform_msg_id:bigint platform_node_id:varchar repo_id:bigint cntrb_id:uuid msg_text:varchar msg_timestamp:timestamp msg_sender_email:varchar msg_header:varchar pltfrm_id:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    // Their children, as Augur users query them.
    ("issue_assignees", "issue_assignee_id:bigint issue_id:bigint repo_id:bigint cntrb_id:uuid issue_assignee_src_id:bigint issue_assignee_src_node:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("issue_events", "event_id:bigint issue_id:bigint repo_id:bigint cntrb_id:uuid action:varchar action_commit_hash:varchar created_at:timestamp node_id:varchar node_url:varchar platform_id:bigint issue_event_src_id:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("issue_labels", "issue_label_id:bigint issue_id:bigint repo_id:bigint label_text:varchar label_description:varchar label_color:varchar label_src_id:bigint label_src_node_id:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("issue_message_ref", "issue_msg_ref_id:bigint issue_id:bigint repo_id:bigint msg_id:bigint issue_msg_ref_src_node_id:varchar issue_msg_ref_src_comment_id:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_assignees", "pr_assignee_map_id:bigint pull_request_id:bigint repo_id:bigint contrib_id:uuid pr_assignee_src_id:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_commits", "pr_cmt_id:bigint pull_request_id:bigint repo_id:bigint pr_cmt_sha:varchar pr_cmt_node_id:varchar pr_cmt_message:varchar pr_cmt_comments_url:varchar pr_cmt_author_cntrb_id:uuid pr_cmt_timestamp:timestamp pr_cmt_author_email:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_events", "pr_event_id:bigint pull_request_id:bigint repo_id:bigint cntrb_id:uuid action:varchar action_commit_hash:varchar created_at:timestamp issue_event_src_id:bigint node_id:varchar node_url:varchar platform_id:bigint pr_platform_event_id:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_files", "pr_file_id:bigint pull_request_id:bigint repo_id:bigint pr_file_additions:bigint pr_file_deletions:bigint pr_file_path:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_labels", "pr_label_id:bigint pull_request_id:bigint repo_id:bigint pr_src_id:bigint pr_src_node_id:varchar pr_src_url:varchar pr_src_description:varchar pr_src_color:varchar pr_src_default_bool:boolean tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_message_ref", "pr_msg_ref_id:bigint pull_request_id:bigint repo_id:bigint msg_id:bigint pr_message_ref_src_comment_id:bigint pr_message_ref_src_node_id:varchar pr_issue_url:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_meta", "pr_repo_meta_id:bigint pull_request_id:bigint repo_id:bigint pr_head_or_base:varchar pr_src_meta_label:varchar pr_src_meta_ref:varchar pr_sha:varchar cntrb_id:uuid tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_reviewers", "pr_reviewer_map_id:bigint pull_request_id:bigint pr_source_id:bigint repo_id:bigint cntrb_id:uuid pr_reviewer_src_id:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_reviews", "pr_review_id:bigint pull_request_id:bigint repo_id:bigint cntrb_id:uuid pr_review_author_association:varchar pr_review_state:varchar pr_review_body:varchar pr_review_submitted_at:timestamp pr_review_src_id:bigint pr_review_node_id:varchar pr_review_html_url:varchar pr_review_pull_request_url:varchar pr_review_commit_id:varchar platform_id:bigint tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    ("pull_request_review_message_ref", "pr_review_msg_ref_id:bigint pr_review_id:bigint repo_id:bigint msg_id:bigint pr_review_msg_url:varchar pr_review_src_id:bigint pr_review_msg_src_id:bigint pr_review_msg_node_id:varchar pr_review_msg_diff_hunk:varchar pr_review_msg_path:varchar pr_review_msg_position:bigint pr_review_msg_original_position:bigint pr_review_msg_commit_id:varchar pr_review_msg_original_commit_id:varchar pr_review_msg_updated_at:timestamp pr_review_msg_html_url:varchar pr_url:varchar pr_review_msg_author_association:varchar pr_review_msg_start_line:bigint pr_review_msg_original_start_line:bigint pr_review_msg_start_side:varchar pr_review_msg_line:bigint pr_review_msg_original_line:bigint pr_review_msg_side:varchar tool_source:varchar tool_version:varchar data_source:varchar data_collection_date:timestamp"),
    // The five materialized views 8Knot reads (8knot-contract.md §3).
    ("explorer_contributor_actions", "cntrb_id:uuid created_at:timestamptz repo_id:bigint action:text repo_name:varchar login:varchar rank:bigint"),
    ("explorer_pr_assignments", "pull_request_id:bigint id:bigint created:timestamp closed:timestamp assign_date:timestamp assignment_action:varchar assignee:uuid node_id:varchar"),
    ("explorer_issue_assignments", "issue_id:bigint id:bigint created:timestamp closed:timestamp assign_date:timestamp assignment_action:varchar assignee:uuid node_id:varchar"),
    ("explorer_pr_response", "pull_request_id:bigint id:bigint cntrb_id:uuid msg_timestamp:timestamp msg_cntrb_id:uuid pr_created_at:timestamp pr_closed_at:timestamp"),
    ("explorer_repo_languages", "repo_id:bigint repo_git:varchar repo_name:varchar programming_language:varchar code_lines:bigint files:integer"),
];

#[tokio::test]
async fn augur_relations_have_augurs_columns_in_augurs_order_and_types() {
    let db = TestDb::with_extension("analytics_columns").await;
    let pool = db.pool(1).await;
    for (relation, columns) in AUGUR_COLUMNS {
        let ours: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text || ':' ||
                    CASE t.typname WHEN 'int8' THEN 'bigint' WHEN 'int4' THEN 'integer' WHEN 'int2' THEN 'smallint'
                                   WHEN 'bpchar' THEN 'char' WHEN 'float8' THEN 'float8' WHEN 'bool' THEN 'boolean'
                                   ELSE t.typname::text END
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = ('aveloxis_augur_data.' || $1)::regclass AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
        )
        .bind(relation)
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{relation}: {e}"));
        let expected: Vec<String> = columns.split(' ').map(String::from).collect();
        assert_eq!(ours, expected, "aveloxis_augur_data.{relation}");
    }
}

#[tokio::test]
async fn eight_knot_runs_unchanged_against_aveloxis_augur_data() {
    let (db, pool, _git) = collected("analytics_8knot").await;
    sqlx::raw_sql("CALL aveloxis.refresh_views()")
        .execute(&pool)
        .await
        .unwrap();

    // 8Knot's login: an analyst with the two-schema search path, as AUGUR_SCHEMA sets it.
    // Roles are cluster-wide: one per test database.
    let login = format!("eightknot_{}", db.name);
    db.execute(&format!("CREATE ROLE {login} LOGIN IN ROLE aveloxis_analyst"))
        .await;
    let mut knot = db.connect_as(&login).await;
    sqlx::raw_sql(SEARCH_PATH).execute(&mut knot).await.unwrap();

    // Startup: repository and group discovery, and the bots list.
    let discovered: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT DISTINCT r.repo_git, r.repo_id, r.repo_name, rg.rg_name
         FROM repo r JOIN repo_groups rg ON rg.repo_group_id = r.repo_group_id",
    )
    .fetch_all(&mut knot)
    .await
    .unwrap();
    assert_eq!(discovered.len(), 2, "both repositories are offered: {discovered:?}");
    assert!(discovered.iter().any(|(git, ..)| git == REPO));
    sqlx::query("SELECT cntrb_id FROM contributors WHERE gh_type LIKE 'Bot'")
        .fetch_all(&mut knot)
        .await
        .unwrap();

    let mut rows = std::collections::BTreeMap::new();
    for (name, sql) in EIGHT_KNOT_QUERIES {
        let got = sqlx::query(sql)
            .fetch_all(&mut knot)
            .await
            .unwrap_or_else(|e| panic!("8Knot's {name} query fails: {e}"));
        rows.insert(*name, got.len());
    }
    // The data the fixtures hold reaches every query that reads it.
    for name in [
        "issues",
        "commits",
        "prs",
        "contributors",
        "pr_response",
        "repo_releases",
        "repo_info",
        "pr_assignee",
    ] {
        assert!(rows[name] > 0, "8Knot's {name} query returns nothing: {rows:?}");
    }

    // explorer_pr_response has exactly Augur's seven columns, in order.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_attribute a
         WHERE a.attrelid = 'aveloxis_augur_data.explorer_pr_response'::regclass AND a.attnum > 0 ORDER BY a.attnum",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        columns,
        [
            "pull_request_id",
            "id",
            "cntrb_id",
            "msg_timestamp",
            "msg_cntrb_id",
            "pr_created_at",
            "pr_closed_at"
        ]
    );
    // Every materialized view can be refreshed CONCURRENTLY: it has a unique index on columns only.
    let without: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         WHERE c.relnamespace = 'aveloxis_augur_data'::regnamespace AND c.relkind = 'm'
           AND NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique
                           AND i.indpred IS NULL AND i.indexprs IS NULL)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(without.is_empty(), "views without a usable unique index: {without:?}");
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM aveloxis_ops.refresh_order()").await,
        22
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_matviews WHERE schemaname = 'aveloxis_augur_data'"
        )
        .await,
        22
    );

    // Naive UTC timestamps whatever the session's TimeZone.
    sqlx::raw_sql("SET TimeZone = 'Asia/Kolkata'")
        .execute(&mut knot)
        .await
        .unwrap();
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM issues a JOIN aveloxis_data.issues b USING (issue_id)
         WHERE a.created_at <> (b.created_at AT TIME ZONE 'UTC')",
    )
    .fetch_one(&mut knot)
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
    let utc_text: String = sqlx::query_scalar("SELECT created_at::text FROM issues ORDER BY issue_id LIMIT 1")
        .fetch_one(&mut knot)
        .await
        .unwrap();
    sqlx::raw_sql("SET TimeZone = 'UTC'").execute(&mut knot).await.unwrap();
    let again: String = sqlx::query_scalar("SELECT created_at::text FROM issues ORDER BY issue_id LIMIT 1")
        .fetch_one(&mut knot)
        .await
        .unwrap();
    assert_eq!(utc_text, again);
    knot.close().await.unwrap();
}

#[tokio::test]
async fn the_views_say_what_the_base_tables_say_and_where_they_differ_from_augur() {
    let (_db, pool, _git) = collected("analytics_views").await;
    sqlx::raw_sql("CALL aveloxis.refresh_views()")
        .execute(&pool)
        .await
        .unwrap();
    let v = "aveloxis_augur_data";

    // One issue_opened per issue with a known reporter; one pull_request_open per PR.
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM {v}.explorer_contributor_actions WHERE action = 'issue_opened'")
        )
        .await,
        scalar_i64(
            &pool,
            "SELECT count(*) FROM aveloxis_data.issues WHERE reporter_id IS NOT NULL AND created_at IS NOT NULL"
        )
        .await
    );
    let prs = scalar_i64(
        &pool,
        "SELECT count(*) FROM aveloxis_data.pull_requests WHERE author_id IS NOT NULL",
    )
    .await;
    assert!(prs > 0);
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM {v}.explorer_contributor_actions WHERE action = 'pull_request_open'")
        )
        .await,
        prs
    );
    // Rank 1 is each contributor's FIRST action in the repository (Augur: the latest).
    let wrong_rank = scalar_i64(
        &pool,
        &format!(
            "SELECT count(*) FROM {v}.explorer_contributor_actions a
             WHERE a.rank = 1 AND a.created_at <> (SELECT min(b.created_at) FROM {v}.explorer_contributor_actions b
                                                   WHERE b.cntrb_id = a.cntrb_id AND b.repo_id = a.repo_id)"
        ),
    )
    .await;
    assert_eq!(wrong_rank, 0);
    let ranked_people = scalar_i64(
        &pool,
        &format!("SELECT count(DISTINCT (cntrb_id, repo_id)) FROM {v}.explorer_contributor_actions"),
    )
    .await;
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM {v}.explorer_contributor_actions WHERE rank = 1")
        )
        .await,
        ranked_people
    );
    // Issue comments are credited to their authors, on open issues too (Augur: the
    // reporter, and comments on open issues dropped): a comment by someone other than
    // the reporter, on an open issue.
    sqlx::raw_sql(
        "WITH target AS (SELECT i.issue_id, i.repo_id, i.reporter_id FROM aveloxis_data.issues i
                         WHERE i.closed_at IS NULL AND i.reporter_id IS NOT NULL ORDER BY i.issue_id LIMIT 1),
              author AS (SELECT c.cntrb_id FROM aveloxis_data.contributors c, target t
                         WHERE c.cntrb_id <> t.reporter_id ORDER BY c.cntrb_id LIMIT 1),
              m AS (INSERT INTO aveloxis_data.messages (repo_id, platform_id, msg_source, platform_msg_id, cntrb_id,
                                                        msg_text, msg_timestamp)
                    SELECT t.repo_id, 1, 'issue_comment', 999000111, a.cntrb_id, 'on an open issue',
                           '2020-02-02 02:02:02+00' FROM target t, author a RETURNING msg_id, repo_id)
         INSERT INTO aveloxis_data.issue_message_ref (issue_id, msg_id, repo_id)
         SELECT t.issue_id, m.msg_id, m.repo_id FROM target t, m;",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql("CALL aveloxis.refresh_views()")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(
            &pool,
            &format!(
                "SELECT count(*) FROM {v}.explorer_contributor_actions a JOIN aveloxis_data.messages m
                 ON m.platform_msg_id = 999000111 AND a.cntrb_id = m.cntrb_id AND a.created_at = m.msg_timestamp
                 WHERE a.action = 'issue_comment'"
            )
        )
        .await,
        1,
        "the comment on an open issue is its author's action"
    );
    let comments = scalar_i64(
        &pool,
        "SELECT count(*) FROM aveloxis_data.messages m JOIN aveloxis_data.issue_message_ref x USING (msg_id)
         WHERE m.cntrb_id IS NOT NULL AND m.msg_timestamp IS NOT NULL",
    )
    .await;
    assert!(comments > 0, "the fixtures hold issue comments");
    assert_eq!(
        scalar_i64(
            &pool,
            &format!(
                "SELECT count(*) FROM {v}.explorer_contributor_actions a
                 JOIN aveloxis_data.messages m ON m.cntrb_id = a.cntrb_id AND m.msg_timestamp = a.created_at
                 JOIN aveloxis_data.issue_message_ref x ON x.msg_id = m.msg_id
                 WHERE a.action = 'issue_comment'"
            )
        )
        .await,
        comments
    );
    // Every PR appears in explorer_pr_response, with each of its messages.
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT count(DISTINCT pull_request_id) FROM {v}.explorer_pr_response")
        )
        .await,
        scalar_i64(&pool, "SELECT count(*) FROM aveloxis_data.pull_requests").await
    );
    // Per repository counts.
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT coalesce(sum(commits_all_time), 0)::bigint FROM {v}.api_get_all_repos_commits")
        )
        .await,
        scalar_i64(
            &pool,
            "SELECT count(DISTINCT (repo_id, cmt_commit_hash)) FROM aveloxis_data.commits"
        )
        .await
    );
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT coalesce(sum(issues_all_time), 0)::bigint FROM {v}.api_get_all_repos_issues")
        )
        .await,
        scalar_i64(&pool, "SELECT count(*) FROM aveloxis_data.issues").await
    );
    // Libyear rows count only for their own repository (Augur cross-joins every repository).
    sqlx::raw_sql(
        "INSERT INTO aveloxis_data.repo_deps_libyear (repo_id, name, libyear, data_collection_date)
         SELECT min(repo_id), 'left-pad', 2.5, '2026-01-15 12:00+00' FROM aveloxis_data.repos;",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql("CALL aveloxis.refresh_views()")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&pool, &format!("SELECT count(*) FROM {v}.explorer_libyear_all")).await,
        1
    );
    assert_eq!(
        scalar_i64(&pool, &format!("SELECT count(*) FROM {v}.explorer_libyear_detail")).await,
        1
    );
    // Commits per day count commits, not (commit, file) rows as Augur's does.
    let (git_commits, git_rows) = (
        scalar_i64(
            &pool,
            "SELECT count(DISTINCT (repo_id, cmt_commit_hash)) FROM aveloxis_data.commits",
        )
        .await,
        scalar_i64(&pool, "SELECT count(*) FROM aveloxis_data.commits").await,
    );
    assert!(git_rows > git_commits);
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT sum(num_of_commits)::bigint FROM {v}.explorer_commits_and_committers_daily_count")
        )
        .await,
        git_commits
    );
    // Unknown contributors (the scripted commits' authors are linked to no account) are
    // left out rather than ranked together as one NULL person.
    assert!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM aveloxis_data.commits WHERE cmt_ght_author_id IS NULL"
        )
        .await
            > 0
    );
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM {v}.explorer_contributor_actions WHERE cntrb_id IS NULL")
        )
        .await,
        0
    );
    // A pull request with three events and two messages: Augur's join of events to
    // messages would count six comments and six of each event; these views count two and
    // what happened. Its assignment names the assignee, not the actor.
    sqlx::raw_sql(
        "WITH p AS (SELECT pull_request_id, repo_id, created_at FROM aveloxis_data.pull_requests ORDER BY pull_request_id LIMIT 1),
              people AS (SELECT array_agg(cntrb_id ORDER BY cntrb_id) AS ids FROM
                         (SELECT cntrb_id FROM aveloxis_data.contributors ORDER BY cntrb_id LIMIT 2) x),
              cleared AS (DELETE FROM aveloxis_data.pull_request_message_ref x USING p WHERE x.pull_request_id = p.pull_request_id),
              cleared_events AS (DELETE FROM aveloxis_data.pull_request_events e USING p WHERE e.pull_request_id = p.pull_request_id),
              ev AS (INSERT INTO aveloxis_data.pull_request_events (pull_request_id, repo_id, platform_id, platform_event_id,
                                                                    node_id, cntrb_id, action, assignee_id, created_at)
                     SELECT p.pull_request_id, p.repo_id, 1, 990000 + k, 'E' || k, people.ids[1],
                            CASE k WHEN 1 THEN 'assigned' ELSE 'labeled' END,
                            CASE k WHEN 1 THEN people.ids[2] END, p.created_at + k * interval '1 hour'
                     FROM p, people, generate_series(1, 3) k),
              m AS (INSERT INTO aveloxis_data.messages (repo_id, platform_id, msg_source, platform_msg_id, cntrb_id,
                                                        msg_text, msg_timestamp)
                    SELECT p.repo_id, 1, 'issue_comment', 991000 + k, people.ids[2], 'hi', p.created_at + k * interval '1 day'
                    FROM p, people, generate_series(1, 2) k RETURNING msg_id, repo_id)
         INSERT INTO aveloxis_data.pull_request_message_ref (pull_request_id, msg_id, repo_id)
         SELECT p.pull_request_id, m.msg_id, m.repo_id FROM p, m;",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql("CALL aveloxis.refresh_views()")
        .execute(&pool)
        .await
        .unwrap();
    let counts: (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT comment_count, assigned_count, labeled_count FROM {v}.explorer_pr_response_times
         WHERE pr_src_id = (SELECT platform_pr_id FROM aveloxis_data.pull_requests ORDER BY pull_request_id LIMIT 1)"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counts, (2, 1, 2));
    let assignee_is_the_assignee: bool = sqlx::query_scalar(&format!(
        "SELECT bool_and(a.assignee = e.assignee_id) FROM {v}.explorer_pr_assignments a
         JOIN aveloxis_data.pull_request_events e ON e.pull_request_id = a.pull_request_id AND e.action = 'assigned'"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(assignee_is_the_assignee);
    // Augur's boolean text flags.
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM {v}.repo_info WHERE issues_enabled NOT IN ('true', 'false')")
        )
        .await,
        0
    );
}

/// The daily activity the triggers kept, compared with a recomputation from scratch.
async fn assert_activity_matches_a_rebuild(pool: &PgPool, when: &str) {
    let kept = scalar_i64(pool, "SELECT count(*) FROM aveloxis_data.repo_daily_activity").await;
    assert!(kept > 0, "{when}: no activity kept");
    let differing = scalar_i64(
        pool,
        "SELECT count(*) FROM (
            (TABLE aveloxis_data.repo_daily_activity EXCEPT ALL SELECT * FROM aveloxis_ops.activity_from_scratch(NULL))
            UNION ALL
            (SELECT * FROM aveloxis_ops.activity_from_scratch(NULL) EXCEPT ALL TABLE aveloxis_data.repo_daily_activity)) d",
    )
    .await;
    if differing > 0 {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT 'kept ' || a::text FROM (TABLE aveloxis_data.repo_daily_activity
                 EXCEPT ALL SELECT * FROM aveloxis_ops.activity_from_scratch(NULL)) a
             UNION ALL SELECT 'fresh ' || b::text FROM (SELECT * FROM aveloxis_ops.activity_from_scratch(NULL)
                 EXCEPT ALL TABLE aveloxis_data.repo_daily_activity) b",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        panic!("{when}: the kept activity differs from a rebuild:\n{}", rows.join("\n"));
    }
    let wrong_firsts = scalar_i64(
        pool,
        "SELECT count(*) FROM aveloxis_data.repo_contributor_first f
         WHERE f.first_at IS DISTINCT FROM aveloxis_ops.first_contribution(f.repo_id, f.cntrb_id)",
    )
    .await;
    assert_eq!(wrong_firsts, 0, "{when}: first contributions drifted");
}

#[tokio::test]
async fn daily_activity_kept_by_the_triggers_equals_a_full_rebuild() {
    let (_db, pool, _git) = collected("analytics_activity").await;
    assert_activity_matches_a_rebuild(&pool, "after collection").await;
    let sums: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT sum(issues_opened)::bigint, sum(prs_opened)::bigint, sum(commits)::bigint, sum(new_contributors)::bigint
         FROM aveloxis_data.repo_daily_activity",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        sums.0,
        scalar_i64(&pool, "SELECT count(*) FROM aveloxis_data.issues").await
    );
    assert_eq!(sums.2, 3, "the three scripted commits");
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT sum(lines_added)::bigint FROM aveloxis_data.repo_daily_activity"
        )
        .await,
        scalar_i64(&pool, "SELECT sum(cmt_added)::bigint FROM aveloxis_data.commits").await
    );
    assert!(sums.1 > 0 && sums.3 > 0, "{sums:?}");

    // Re-staging the same payloads and draining again changes nothing.
    let repo: i64 = scalar_i64(
        &pool,
        &format!("SELECT repo_id FROM aveloxis_data.repos WHERE repo_git = '{REPO}'"),
    )
    .await;
    sqlx::raw_sql(&format!(
        "UPDATE aveloxis_ops.staging SET drained_at = NULL WHERE repo_id = {repo}"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(&format!("CALL aveloxis.drain({repo})"))
        .execute(&pool)
        .await
        .unwrap();
    assert_activity_matches_a_rebuild(&pool, "after a re-drain").await;

    // Reopened issues, re-attributed comments, deleted pull requests, commit authors
    // linked and re-linked: whatever statement changes the rows, the days follow.
    sqlx::raw_sql(
        "UPDATE aveloxis_data.issues SET closed_at = NULL
         WHERE issue_id IN (SELECT issue_id FROM aveloxis_data.issues WHERE closed_at IS NOT NULL ORDER BY issue_id LIMIT 3);
         UPDATE aveloxis_data.issues SET created_at = created_at - interval '400 days'
         WHERE issue_id = (SELECT max(issue_id) FROM aveloxis_data.issues);
         UPDATE aveloxis_data.messages SET cntrb_id = (SELECT reporter_id FROM aveloxis_data.issues
                                                      WHERE reporter_id IS NOT NULL ORDER BY issue_id LIMIT 1)
         WHERE msg_id IN (SELECT msg_id FROM aveloxis_data.messages ORDER BY msg_id LIMIT 5);
         DELETE FROM aveloxis_data.pull_requests
         WHERE pull_request_id IN (SELECT pull_request_id FROM aveloxis_data.pull_requests ORDER BY created_at LIMIT 2);
         DELETE FROM aveloxis_data.messages WHERE msg_id IN (SELECT msg_id FROM aveloxis_data.messages ORDER BY msg_timestamp LIMIT 3);",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_activity_matches_a_rebuild(&pool, "after updates and deletions").await;
    sqlx::raw_sql(
        "UPDATE aveloxis_data.commits SET cmt_ght_author_id = (SELECT min(cntrb_id::text)::uuid FROM aveloxis_data.contributors)
         WHERE cmt_author_email = 'ann@example.org';",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_activity_matches_a_rebuild(&pool, "after commit authors were linked").await;
    sqlx::raw_sql(
        "UPDATE aveloxis_data.commits SET cmt_ght_author_id = (SELECT max(cntrb_id::text)::uuid FROM aveloxis_data.contributors)
         WHERE cmt_author_email = 'ann@example.org';",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_activity_matches_a_rebuild(&pool, "after commit authors were re-linked").await;

    // A force-push removes a commit: through the drain, as the facade stages it.
    let (git_repo, hash): (i64, String) =
        sqlx::query_as("SELECT repo_id, cmt_commit_hash FROM aveloxis_data.commits WHERE cmt_filename = 'c.txt'")
            .fetch_one(&pool)
            .await
            .unwrap();
    sqlx::raw_sql(&format!(
        "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload)
         VALUES ({git_repo}, 3, 'commit_removed', '{{\"hash\": \"{hash}\"}}')"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(&format!("CALL aveloxis.drain({git_repo})"))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM aveloxis_data.commits WHERE cmt_commit_hash = '{hash}'")
        )
        .await,
        0,
        "the removed commit is gone"
    );
    assert_activity_matches_a_rebuild(&pool, "after a force-push").await;
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT sum(commits)::bigint FROM aveloxis_data.repo_daily_activity"
        )
        .await,
        2
    );

    // The rebuild itself writes what the triggers kept.
    let before: Vec<String> = sqlx::query_scalar("SELECT a::text FROM aveloxis_data.repo_daily_activity a ORDER BY 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.rebuild_activity()")
        .execute(&pool)
        .await
        .unwrap();
    let after: Vec<String> = sqlx::query_scalar("SELECT a::text FROM aveloxis_data.repo_daily_activity a ORDER BY 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_refresh_never_blocks_readers_records_each_view_and_survives_a_failing_one() {
    let (db, pool, _git) = collected("analytics_refresh").await;
    // Inside a transaction block it fails at once and holds nothing: the next call runs.
    let mut in_block = db.connect().await;
    let err = sqlx::raw_sql("BEGIN; CALL aveloxis.refresh_views();")
        .execute(&mut in_block)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid transaction termination"), "{err}");
    drop(in_block);
    sqlx::raw_sql("CALL aveloxis.refresh_views()")
        .execute(&pool)
        .await
        .unwrap();

    // A reader in the middle of a long transaction over the views 8Knot reads.
    let mut reader = db.connect().await;
    sqlx::raw_sql(
        "BEGIN ISOLATION LEVEL REPEATABLE READ;
         SELECT count(*) FROM aveloxis_augur_data.explorer_contributor_actions;
         SELECT count(*) FROM aveloxis_augur_data.explorer_pr_response;",
    )
    .execute(&mut reader)
    .await
    .unwrap();
    // A table two views read, locked by someone else: their refreshes fail (lock_timeout),
    // the others go on.
    let mut locker = db.connect().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE aveloxis_data.repo_labor IN ACCESS EXCLUSIVE MODE;")
        .execute(&mut locker)
        .await
        .unwrap();
    let mut refresher = db.connect().await;
    sqlx::raw_sql("SET lock_timeout = '1s'")
        .execute(&mut refresher)
        .await
        .unwrap();
    sqlx::raw_sql("CALL aveloxis.refresh_views()")
        .execute(&mut refresher)
        .await
        .unwrap();
    let history: Vec<(String, bool, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT view_name, concurrent, row_count, error FROM aveloxis.view_refresh_history(1)")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(history.len(), 22);
    for (view, concurrent, rows, error) in &history {
        if view == "explorer_repo_languages" || view == "explorer_repo_files" {
            assert!(error.as_deref().unwrap_or("").contains("lock"), "{view}: {error:?}");
        } else {
            assert!(
                error.is_none() && rows.is_some() && *concurrent,
                "{view}: {rows:?} {error:?}"
            );
        }
    }
    // The reader was never waited on and still reads.
    sqlx::query("SELECT count(*) FROM aveloxis_augur_data.explorer_contributor_actions")
        .execute(&mut reader)
        .await
        .unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
    sqlx::raw_sql("ROLLBACK").execute(&mut locker).await.unwrap();

    // A second caller returns at once while a refresh runs (the session lock).
    let mut holder = db.connect().await;
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('aveloxis.refresh_views', 0))")
        .execute(&mut holder)
        .await
        .unwrap();
    let runs = scalar_i64(&pool, "SELECT count(*) FROM aveloxis_ops.view_refresh_runs").await;
    sqlx::raw_sql("CALL aveloxis.refresh_views()")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM aveloxis_ops.view_refresh_runs").await,
        runs
    );
    holder.close().await.unwrap();

    // pg_cron runs it: schedule the refresh of this database from the cron database and
    // wait (bounded) for a run it made.
    let mut cron = PgConnection::connect(&cluster_url()).await.unwrap();
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_cron")
        .execute(&mut cron)
        .await
        .unwrap();
    let job = format!("aveloxis-test-refresh-{}", db.name);
    let last_before = scalar_i64(
        &pool,
        "SELECT coalesce(max(refresh_id), 0) FROM aveloxis_ops.view_refresh_runs",
    )
    .await;
    // pg_cron's launcher has been seen to miss the first job scheduled after it started
    // (pg_cron 1.4): a job not run within two minute boundaries is scheduled once more.
    let mut ran = 0;
    for _attempt in 0..2 {
        sqlx::query("SELECT cron.schedule_in_database($1, '* * * * *', 'CALL aveloxis.refresh_views()', $2)")
            .bind(&job)
            .bind(&db.name)
            .execute(&mut cron)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(125);
        while Instant::now() < deadline {
            ran = scalar_i64(
                &pool,
                &format!(
                    "SELECT count(*) FROM aveloxis_ops.view_refresh_runs
                     WHERE finished_at IS NOT NULL AND refresh_id > {last_before}"
                ),
            )
            .await;
            if ran > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        sqlx::query("SELECT cron.unschedule($1)")
            .bind(&job)
            .execute(&mut cron)
            .await
            .unwrap();
        if ran > 0 {
            break;
        }
    }
    assert!(ran > 0, "pg_cron did not run the refresh (scheduled twice, 125 s each)");
    let failed = scalar_i64(
        &pool,
        "SELECT failed::bigint FROM aveloxis_ops.view_refresh_runs ORDER BY refresh_id DESC LIMIT 1",
    )
    .await;
    assert_eq!(failed, 0);
}

#[tokio::test]
async fn the_analyst_api_answers_with_coverage_and_leaves_bots_out_on_request() {
    let (db, pool, _git) = collected("analytics_api").await;
    db.execute(&format!(
        "CREATE ROLE analyst_{} LOGIN IN ROLE aveloxis_analyst",
        db.name
    ))
    .await;
    let mut analyst = db.connect_as(&format!("analyst_{}", db.name)).await;
    let repo = scalar_i64(
        &pool,
        &format!("SELECT repo_id FROM aveloxis_data.repos WHERE repo_git = '{REPO}'"),
    )
    .await;
    let git_repo = scalar_i64(
        &pool,
        &format!("SELECT repo_id FROM aveloxis_data.repos WHERE repo_git <> '{REPO}'"),
    )
    .await;

    // repo_stats: what is stored, set against what the forge reported.
    let rows: Vec<(String, i64, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT entity, stored, forge_reported, coverage::text FROM aveloxis.repo_stats($1)")
            .bind(repo)
            .fetch_all(&mut analyst)
            .await
            .unwrap();
    let issues = rows.iter().find(|r| r.0 == "issues").unwrap();
    assert_eq!(
        issues.1,
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM aveloxis_data.issues WHERE repo_id = {repo}")
        )
        .await
    );
    assert!(issues.2.is_some() && issues.3.is_some(), "{issues:?}");
    // The facade reported the commits the branch reaches: all three stored.
    let commits: (i64, i64, String) = sqlx::query_as(
        "SELECT reported, gathered, coverage::text FROM aveloxis.completeness($1) WHERE entity = 'commits'",
    )
    .bind(git_repo)
    .fetch_one(&mut analyst)
    .await
    .unwrap();
    assert_eq!(commits, (3, 3, "1".to_string()));

    // A weekly series over the fixture's whole history: every week present, the counts
    // those of the base tables, and coverage on every row (a zero week says how sure it is).
    let range: (String, String) = sqlx::query_as(
        "SELECT (min(created_at) AT TIME ZONE 'UTC')::date::text, (max(created_at) AT TIME ZONE 'UTC')::date::text
         FROM aveloxis_data.issues WHERE repo_id = $1",
    )
    .bind(repo)
    .fetch_one(&pool)
    .await
    .unwrap();
    let series_sql = "SELECT count(*), sum(issues_opened)::bigint, sum(prs_opened)::bigint,
                             count(*) FILTER (WHERE coverage_issues_prs IS NULL)
                      FROM aveloxis.repo_activity($1, $2::date, $3::date, 'week', $4)";
    let (weeks, opened, prs, uncovered): (i64, i64, i64, i64) = sqlx::query_as(series_sql)
        .bind(repo)
        .bind(&range.0)
        .bind(&range.1)
        .bind(false)
        .fetch_one(&mut analyst)
        .await
        .unwrap();
    let expected_weeks = scalar_i64(
        &pool,
        &format!(
            "SELECT count(*) FROM generate_series(date_trunc('week', '{}'::date), '{}'::date, '1 week')",
            range.0, range.1
        ),
    )
    .await;
    assert_eq!(weeks, expected_weeks);
    assert_eq!(opened, issues.1);
    assert_eq!(
        prs,
        scalar_i64(
            &pool,
            &format!(
                "SELECT count(*) FROM aveloxis_data.pull_requests WHERE repo_id = {repo}
                 AND (created_at AT TIME ZONE 'UTC')::date BETWEEN '{}' AND '{}'",
                range.0, range.1
            )
        )
        .await
    );
    assert_eq!(uncovered, 0, "every row carries its coverage");
    // The same definitions over the base tables (exclude_bots reads them) agree when
    // nobody is a bot, and leave a bot's issues out once it is one.
    let reporter: (String, i64) = sqlx::query_as(
        "SELECT reporter_id::text, count(*) FROM aveloxis_data.issues WHERE repo_id = $1 AND reporter_id IS NOT NULL
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
    )
    .bind(repo)
    .fetch_one(&pool)
    .await
    .unwrap();
    let bots_before: i64 = scalar_i64(
        &pool,
        &format!(
            "SELECT count(*) FROM aveloxis_data.issues i WHERE i.repo_id = {repo} AND aveloxis.is_bot(i.reporter_id)"
        ),
    )
    .await;
    let (_, without_bots, ..): (i64, i64, i64, i64) = sqlx::query_as(series_sql)
        .bind(repo)
        .bind(&range.0)
        .bind(&range.1)
        .bind(true)
        .fetch_one(&mut analyst)
        .await
        .unwrap();
    assert_eq!(without_bots, opened - bots_before);
    sqlx::query("SELECT aveloxis.set_bot($1::uuid, true, 'test: files issues automatically')")
        .bind(&reporter.0)
        .execute(&pool)
        .await
        .unwrap();
    let rule: Option<String> = sqlx::query_scalar("SELECT aveloxis.bot_rule($1::uuid)")
        .bind(&reporter.0)
        .fetch_one(&mut analyst)
        .await
        .unwrap();
    assert_eq!(rule.as_deref(), Some("override: test: files issues automatically"));
    let (_, without_bots, ..): (i64, i64, i64, i64) = sqlx::query_as(series_sql)
        .bind(repo)
        .bind(&range.0)
        .bind(&range.1)
        .bind(true)
        .fetch_one(&mut analyst)
        .await
        .unwrap();
    assert_eq!(without_bots, opened - bots_before - reporter.1);

    // The group's series is the sum of its repositories'.
    let group: String = sqlx::query_scalar(
        "SELECT g.rg_name FROM aveloxis_data.repos r JOIN aveloxis_data.repo_groups g USING (repo_group_id) WHERE r.repo_id = $1",
    )
    .bind(repo)
    .fetch_one(&pool)
    .await
    .unwrap();
    let group_total: i64 = sqlx::query_scalar(
        "SELECT sum(issues_opened + commits)::bigint FROM aveloxis.group_activity($1, '2000-01-01', current_date, 'year')",
    )
    .bind(&group)
    .fetch_one(&mut analyst)
    .await
    .unwrap();
    let members: i64 = scalar_i64(
        &pool,
        &format!(
            "SELECT sum(a.issues_opened + a.commits)::bigint FROM aveloxis_data.repo_daily_activity a
             JOIN aveloxis_data.repos r USING (repo_id) JOIN aveloxis_data.repo_groups g USING (repo_group_id)
             WHERE g.rg_name = '{group}' AND a.day BETWEEN '2000-01-01' AND current_date"
        ),
    )
    .await;
    assert!(members > 0);
    assert_eq!(group_total, members);

    // Contributors: the top ones, the new ones, one across the fleet.
    let top: Vec<(String, i64)> = sqlx::query_as(
        "SELECT cntrb_id::text, actions FROM aveloxis.top_contributors($1, '2000-01-01', current_date, 3)",
    )
    .bind(repo)
    .fetch_all(&mut analyst)
    .await
    .unwrap();
    assert_eq!(top.len(), 3);
    assert!(top[0].1 >= top[1].1 && top[1].1 >= top[2].1, "{top:?}");
    let direct = scalar_i64(
        &pool,
        &format!(
            "SELECT count(*) FROM aveloxis_data.contributor_actions WHERE repo_id = {repo} AND cntrb_id = '{}'",
            top[0].0
        ),
    )
    .await;
    assert_eq!(top[0].1, direct);
    let across: i64 = sqlx::query_scalar("SELECT sum(actions)::bigint FROM aveloxis.contributor_activity($1::uuid)")
        .bind(&top[0].0)
        .fetch_one(&mut analyst)
        .await
        .unwrap();
    assert!(across >= direct);
    let newcomers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM aveloxis.new_contributors($1, '2000-01-01', current_date)")
            .bind(repo)
            .fetch_one(&mut analyst)
            .await
            .unwrap();
    assert_eq!(
        newcomers,
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM aveloxis_data.repo_contributor_first WHERE repo_id = {repo}")
        )
        .await
    );
    assert!(newcomers > 0);

    // Community files, found in the tree with no request: where GitHub looks first wins,
    // decoys are not taken, a directory of audits counts.
    let files: (Option<String>, Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT code_of_conduct_file, security_issue_file, security_audit_file, license_file
         FROM aveloxis_data.repo_community_files WHERE repo_id = $1",
    )
    .bind(git_repo)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        files,
        (
            Some("CODE_OF_CONDUCT.md".into()),
            Some(".github/SECURITY.md".into()),
            Some("docs/audits".into()),
            None
        )
    );

    // Bad arguments are clear errors; the agent role has no part in this API.
    let err = sqlx::query("SELECT * FROM aveloxis.repo_activity($1, '2020-01-01', '2020-02-01', 'fortnight')")
        .bind(repo)
        .fetch_all(&mut analyst)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("grain must be day, week, month or year"),
        "{err}"
    );
    db.execute(&format!("CREATE ROLE agent_{} LOGIN IN ROLE aveloxis_agent", db.name))
        .await;
    let mut agent = db.connect_as(&format!("agent_{}", db.name)).await;
    let err = sqlx::query("SELECT * FROM aveloxis.repo_stats($1)")
        .bind(repo)
        .fetch_all(&mut agent)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

/// Issues and their comments, with people who appear in both.
fn issue_and_comment_payloads() -> (Vec<String>, Vec<String>) {
    let user = |n: u64| serde_json::json!({"login": format!("person{}", n % 9), "id": 70_000 + n % 9, "type": "User"});
    let day = |n: u64| format!("2024-{:02}-{:02}T{:02}:30:00Z", 1 + n % 6, 1 + n % 27, n % 24);
    let issues = (1..=40u64)
        .map(|n| {
            let mut issue = serde_json::json!({"id": 600_000 + n, "number": n, "title": format!("issue {n}"),
                "state": if n % 3 == 0 { "closed" } else { "open" }, "user": user(n), "created_at": day(n),
                "updated_at": day(n + 1)});
            if n % 3 == 0 {
                issue["closed_at"] = serde_json::json!(day(n + 4));
            }
            issue.to_string()
        })
        .collect();
    let comments = (1..=80u64)
        .map(|n| {
            serde_json::json!({"id": 700_000 + n,
                "issue_url": format!("https://api.github.com/repos/order/test/issues/{}", 1 + (n - 1) / 2),
                "user": user(n * 5), "body": "+1", "created_at": day(n / 2 + 7), "updated_at": day(n / 2 + 7)})
            .to_string()
        })
        .collect();
    (issues, comments)
}

#[tokio::test]
async fn daily_activity_is_the_same_whatever_order_the_data_arrives_in() {
    let (issues, comments) = issue_and_comment_payloads();
    let mut kept = Vec::new();
    for (label, order) in [
        ("analytics_order_a", ["issue", "issue_comment"]),
        ("analytics_order_b", ["issue_comment", "issue"]),
    ] {
        let db = TestDb::with_extension(label).await;
        let pool = db.pool(1).await;
        let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://github.com/order/test')")
            .fetch_one(&pool)
            .await
            .unwrap();
        for entity in order {
            let payloads = if entity == "issue" { &issues } else { &comments };
            // Each entity in two halves, newest first: every drain sees a different part.
            for half in payloads.rchunks(payloads.len() / 2) {
                db.stage(repo, entity, half).await;
                db.drain(repo).await;
            }
        }
        assert_activity_matches_a_rebuild(&pool, label).await;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT (day, issues_opened, issues_closed, comments, new_contributors)::text
             FROM aveloxis_data.repo_daily_activity ORDER BY day",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let comments_kept = scalar_i64(
            &pool,
            "SELECT sum(comments)::bigint FROM aveloxis_data.repo_daily_activity",
        )
        .await;
        assert_eq!(
            comments_kept, 80,
            "{label}: every comment counted once its issue arrived"
        );
        kept.push(rows);
    }
    assert_eq!(kept[0], kept[1], "the order the data arrived in changed the activity");
}

/// Every branch of `contributor_actions` (the source of the largest views) reads its
/// tables by joins: no per-row subplan, which becomes a scan of a whole table per row once
/// the table outgrows work_mem (the 100,000-repository fleet's refresh did not finish
/// with two `EXISTS` joined by `OR`). Checked with a tiny work_mem, where nothing hashes.
#[tokio::test]
async fn contributor_actions_has_no_per_row_subplan() {
    let db = TestDb::with_extension("actions_plan").await;
    let pool = db.pool(1).await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET work_mem = '64kB'").execute(&mut *conn).await.unwrap();
    let plan: Vec<(String,)> = sqlx::query_as("EXPLAIN SELECT * FROM aveloxis_data.contributor_actions")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|(line,)| line).collect();
    assert!(
        plan.iter().any(|l| l.contains("messages")),
        "the plan reads messages:\n{}",
        plan.join("\n")
    );
    assert!(
        !plan.iter().any(|l| l.contains("SubPlan")),
        "a per-row subplan in contributor_actions:\n{}",
        plan.join("\n")
    );
}
