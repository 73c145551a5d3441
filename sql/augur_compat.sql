-- aveloxis_augur_data: Augur's relations under Augur's names, columns (in Augur's
-- order) and types, over aveloxis_data. 8Knot runs against it unchanged with
-- AUGUR_SCHEMA=aveloxis_augur_data,aveloxis_data (docs/analytics.md).
--
-- Augur's naive `timestamp` columns are UTC wall times, computed with AT TIME ZONE
-- 'UTC' so that no session TimeZone changes them. Columns Augur has and we do not
-- collect are NULL of Augur's type. Views are security_invoker: a reader needs the
-- SELECT on aveloxis_data that aveloxis_analyst has.
-- The 22 materialized views live here too (sql/matviews.sql).

CREATE SCHEMA aveloxis_augur_data;
COMMENT ON SCHEMA aveloxis_augur_data IS 'Augur-compatible names over aveloxis_data, and the materialized views (8Knot reads here)';

CREATE VIEW aveloxis_augur_data.repo_groups WITH (security_invoker = true) AS
SELECT g.repo_group_id, g.rg_name::varchar AS rg_name, g.rg_description::varchar AS rg_description,
       g.rg_website::varchar AS rg_website, NULL::smallint AS rg_recache,
       g.rg_last_modified AT TIME ZONE 'UTC' AS rg_last_modified, g.rg_type::varchar AS rg_type,
       g.tool_source::varchar AS tool_source, g.tool_version::varchar AS tool_version,
       g.data_source::varchar AS data_source, g.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_groups g;

CREATE VIEW aveloxis_augur_data.repo WITH (security_invoker = true) AS
SELECT r.repo_id, r.repo_group_id, r.repo_git::varchar AS repo_git, NULL::varchar AS repo_path,
       r.repo_name::varchar AS repo_name, r.repo_added AT TIME ZONE 'UTC' AS repo_added,
       p.platform_name::varchar AS repo_type,
       (r.repo_host || '/' || r.repo_owner || '/' || r.repo_name)::varchar AS url, NULL::integer AS owner_id,
       i.description::varchar AS description, i.primary_language::varchar AS primary_language,
       to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')::varchar AS created_at,
       NULL::varchar AS forked_from, i.updated_at AT TIME ZONE 'UTC' AS updated_at,
       CASE WHEN r.repo_archived THEN i.data_collection_date END AS repo_archived_date_collected,
       r.repo_archived::integer AS repo_archived,
       r.tool_source::varchar AS tool_source, r.tool_version::varchar AS tool_version,
       r.data_source::varchar AS data_source, r.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date,
       r.repo_src_id
FROM aveloxis_data.repos r
JOIN aveloxis_data.platforms p USING (platform_id)
LEFT JOIN aveloxis_data.repo_info i USING (repo_id);

-- One row per repository (the current one; earlier versions are in
-- aveloxis_data.repo_info_history). The counts are computed when asked for.
CREATE VIEW aveloxis_augur_data.repo_info WITH (security_invoker = true) AS
SELECT i.repo_info_id, i.repo_id, i.updated_at AT TIME ZONE 'UTC' AS last_updated,
       i.issues_enabled::varchar AS issues_enabled, i.open_issues, NULL::varchar AS pull_requests_enabled,
       i.wiki_enabled::varchar AS wiki_enabled, i.pages_enabled::varchar AS pages_enabled, i.fork_count,
       i.default_branch::varchar AS default_branch, i.watchers_count, NULL::integer AS "UUID",
       i.license::varchar AS license, i.stars_count, NULL::integer AS committers_count,
       NULL::varchar AS issue_contributors_count, f.changelog_file::varchar AS changelog_file,
       f.contributing_file::varchar AS contributing_file, f.license_file::varchar AS license_file,
       coalesce(f.code_of_conduct_file, i.code_of_conduct_file)::varchar AS code_of_conduct_file,
       coalesce(f.security_issue_file, i.security_issue_file)::varchar AS security_issue_file,
       coalesce(f.security_audit_file, i.security_audit_file)::varchar AS security_audit_file,
       NULL::varchar AS status, NULL::varchar AS keywords,
       (SELECT count(DISTINCT c.cmt_commit_hash) FROM aveloxis_data.commits c WHERE c.repo_id = i.repo_id) AS commit_count,
       (SELECT count(*) FROM aveloxis_data.issues x WHERE x.repo_id = i.repo_id) AS issues_count,
       (SELECT count(*) FROM aveloxis_data.issues x WHERE x.repo_id = i.repo_id AND x.closed_at IS NOT NULL) AS issues_closed,
       (SELECT count(*) FROM aveloxis_data.pull_requests x WHERE x.repo_id = i.repo_id) AS pull_request_count,
       (SELECT count(*) FROM aveloxis_data.pull_requests x WHERE x.repo_id = i.repo_id AND x.closed_at IS NULL) AS pull_requests_open,
       (SELECT count(*) FROM aveloxis_data.pull_requests x
        WHERE x.repo_id = i.repo_id AND x.closed_at IS NOT NULL AND x.merged_at IS NULL) AS pull_requests_closed,
       (SELECT count(*) FROM aveloxis_data.pull_requests x WHERE x.repo_id = i.repo_id AND x.merged_at IS NOT NULL) AS pull_requests_merged,
       i.tool_source::varchar AS tool_source, i.tool_version::varchar AS tool_version,
       i.data_source::varchar AS data_source, i.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_info i
LEFT JOIN aveloxis_data.repo_community_files f ON f.repo_id = i.repo_id;

CREATE VIEW aveloxis_augur_data.contributors WITH (security_invoker = true) AS
SELECT c.cntrb_id, c.cntrb_login::varchar AS cntrb_login, c.cntrb_email::varchar AS cntrb_email,
       c.cntrb_full_name::varchar AS cntrb_full_name, c.cntrb_company::varchar AS cntrb_company,
       c.cntrb_created_at AT TIME ZONE 'UTC' AS cntrb_created_at, c.gh_type::varchar AS cntrb_type,
       0::smallint AS cntrb_fake, c.cntrb_deleted, NULL::numeric(11, 8) AS cntrb_long,
       NULL::numeric(10, 8) AS cntrb_lat, NULL::char(3) AS cntrb_country_code, NULL::varchar AS cntrb_state,
       NULL::varchar AS cntrb_city, c.cntrb_location::varchar AS cntrb_location,
       c.cntrb_canonical::varchar AS cntrb_canonical, NULL::timestamptz AS cntrb_last_used,
       c.gh_user_id, c.gh_login::varchar AS gh_login, c.gh_url::varchar AS gh_url,
       c.gh_html_url::varchar AS gh_html_url, c.gh_node_id::varchar AS gh_node_id,
       c.gh_avatar_url::varchar AS gh_avatar_url, c.gh_gravatar_id::varchar AS gh_gravatar_id,
       NULL::varchar AS gh_followers_url, NULL::varchar AS gh_following_url, NULL::varchar AS gh_gists_url,
       NULL::varchar AS gh_starred_url, NULL::varchar AS gh_subscriptions_url,
       NULL::varchar AS gh_organizations_url, NULL::varchar AS gh_repos_url, NULL::varchar AS gh_events_url,
       NULL::varchar AS gh_received_events_url, c.gh_type::varchar AS gh_type,
       c.gh_site_admin::varchar AS gh_site_admin, c.gl_web_url::varchar AS gl_web_url,
       c.gl_avatar_url::varchar AS gl_avatar_url, c.gl_state::varchar AS gl_state,
       c.gl_username::varchar AS gl_username, c.gl_full_name::varchar AS gl_full_name, c.gl_id,
       c.tool_source::varchar AS tool_source, c.tool_version::varchar AS tool_version,
       c.data_source::varchar AS data_source, c.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.contributors c;

-- Augur numbers aliases; ours are keyed by the email, so the id is a stable hash of it.
CREATE VIEW aveloxis_augur_data.contributors_aliases WITH (security_invoker = true) AS
SELECT hashtextextended(a.alias_email, 0) AS cntrb_alias_id, a.cntrb_id,
       coalesce(a.canonical_email, a.alias_email)::varchar AS canonical_email, a.alias_email::varchar AS alias_email,
       1::smallint AS cntrb_active, a.data_collection_date AT TIME ZONE 'UTC' AS cntrb_last_modified,
       a.tool_source::varchar AS tool_source, a.tool_version::varchar AS tool_version,
       a.data_source::varchar AS data_source, a.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.contributors_aliases a;

CREATE VIEW aveloxis_augur_data.commits WITH (security_invoker = true) AS
SELECT c.cmt_id, c.repo_id, c.cmt_commit_hash::varchar(80) AS cmt_commit_hash,
       c.cmt_author_name::varchar AS cmt_author_name, c.cmt_author_raw_email::varchar AS cmt_author_raw_email,
       c.cmt_author_email::varchar AS cmt_author_email, c.cmt_author_date::varchar(10) AS cmt_author_date,
       -- Read through the dated affiliations (sql/affiliation.sql), never a stored copy.
       aveloxis.commit_affiliation(c.cmt_ght_author_id, c.cmt_author_email, c.cmt_author_timestamp)::varchar
           AS cmt_author_affiliation,
       c.cmt_committer_name::varchar AS cmt_committer_name,
       c.cmt_committer_raw_email::varchar AS cmt_committer_raw_email,
       c.cmt_committer_email::varchar AS cmt_committer_email, c.cmt_committer_date::varchar AS cmt_committer_date,
       aveloxis.email_affiliation(c.cmt_committer_email, c.cmt_committer_timestamp)::varchar
           AS cmt_committer_affiliation, c.cmt_added, c.cmt_removed,
       c.cmt_whitespace, c.cmt_filename::varchar AS cmt_filename,
       c.cmt_date_attempted AT TIME ZONE 'UTC' AS cmt_date_attempted, c.cmt_ght_author_id,
       NULL::integer AS cmt_ght_committer_id, c.cmt_ght_committed_at AT TIME ZONE 'UTC' AS cmt_ght_committed_at,
       c.cmt_committer_timestamp, c.cmt_author_timestamp,
       c.cmt_author_platform_username::varchar AS cmt_author_platform_username,
       c.tool_source::varchar AS tool_source, c.tool_version::varchar AS tool_version,
       c.data_source::varchar AS data_source, c.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.commits c;

-- Issues only (Augur's issues table holds no pull requests either: pull_request and
-- pull_request_id are NULL). cntrb_id is who closed it: the issue's closed_by, else the
-- actor of its last 'closed' event (the issues list carries no closed_by).
CREATE VIEW aveloxis_augur_data.issues WITH (security_invoker = true) AS
SELECT i.issue_id, i.repo_id, i.reporter_id, NULL::bigint AS pull_request, NULL::bigint AS pull_request_id,
       i.created_at AT TIME ZONE 'UTC' AS created_at, i.issue_title::varchar AS issue_title,
       i.issue_body::varchar AS issue_body,
       coalesce(i.closed_by_id,
                CASE WHEN i.closed_at IS NOT NULL THEN
                    (SELECT e.cntrb_id FROM aveloxis_data.issue_events e
                     WHERE e.repo_id = i.repo_id AND e.issue_id = i.issue_id AND e.action = 'closed'
                     ORDER BY e.created_at DESC, e.event_id DESC LIMIT 1) END) AS cntrb_id,
       i.comment_count::bigint AS comment_count, i.updated_at AT TIME ZONE 'UTC' AS updated_at,
       i.closed_at AT TIME ZONE 'UTC' AS closed_at, NULL::timestamp AS due_on, NULL::varchar AS repository_url,
       i.issue_url::varchar AS issue_url, NULL::varchar AS labels_url, NULL::varchar AS comments_url,
       NULL::varchar AS events_url, i.html_url::varchar AS html_url, i.issue_state::varchar AS issue_state,
       i.node_id::varchar AS issue_node_id, i.issue_number::bigint AS gh_issue_number,
       i.platform_issue_id AS gh_issue_id,
       (SELECT c.gh_user_id FROM aveloxis_data.contributors c WHERE c.cntrb_id = i.reporter_id) AS gh_user_id,
       i.tool_source::varchar AS tool_source, i.tool_version::varchar AS tool_version,
       i.data_source::varchar AS data_source, i.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issues i;

-- pr_src_state is GitHub's state ('open' or 'closed'; a merged pull request is closed).
CREATE VIEW aveloxis_augur_data.pull_requests WITH (security_invoker = true) AS
SELECT p.pull_request_id, p.repo_id, p.pr_url::varchar AS pr_url, p.platform_pr_id AS pr_src_id,
       p.node_id::varchar AS pr_src_node_id, p.pr_html_url::varchar AS pr_html_url,
       p.pr_diff_url::varchar AS pr_diff_url, NULL::varchar AS pr_patch_url, NULL::varchar AS pr_issue_url,
       NULL::bigint AS pr_augur_issue_id, p.pr_number::bigint AS pr_src_number,
       (CASE p.pr_state WHEN 'merged' THEN 'closed' ELSE p.pr_state END)::varchar AS pr_src_state,
       p.pr_locked AS pr_src_locked, p.pr_title::varchar AS pr_src_title, p.author_id AS pr_augur_contributor_id,
       p.pr_body, p.created_at AT TIME ZONE 'UTC' AS pr_created_at, p.updated_at AT TIME ZONE 'UTC' AS pr_updated_at,
       p.closed_at AT TIME ZONE 'UTC' AS pr_closed_at, p.merged_at AT TIME ZONE 'UTC' AS pr_merged_at,
       p.merge_commit_sha::varchar AS pr_merge_commit_sha, NULL::bigint AS pr_teams, NULL::varchar AS pr_milestone,
       NULL::varchar AS pr_commits_url, NULL::varchar AS pr_review_comments_url,
       NULL::varchar AS pr_review_comment_url, NULL::varchar AS pr_comments_url, NULL::varchar AS pr_statuses_url,
       (SELECT m.pr_src_meta_label FROM aveloxis_data.pull_request_meta m
        WHERE m.repo_id = p.repo_id AND m.pull_request_id = p.pull_request_id
          AND m.pr_head_or_base = 'head')::varchar AS pr_meta_head_id,
       (SELECT m.pr_src_meta_label FROM aveloxis_data.pull_request_meta m
        WHERE m.repo_id = p.repo_id AND m.pull_request_id = p.pull_request_id
          AND m.pr_head_or_base = 'base')::varchar AS pr_meta_base_id,
       NULL::varchar AS pr_src_issue_url, NULL::varchar AS pr_src_comments_url,
       NULL::varchar AS pr_src_review_comments_url, NULL::varchar AS pr_src_commits_url,
       NULL::varchar AS pr_src_statuses_url, p.pr_author_association::varchar AS pr_src_author_association,
       p.tool_source::varchar AS tool_source, p.tool_version::varchar AS tool_version,
       p.data_source::varchar AS data_source, p.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_requests p;

CREATE VIEW aveloxis_augur_data.releases WITH (security_invoker = true) AS
SELECT r.release_id::char(256) AS release_id, r.repo_id, r.release_name::varchar AS release_name,
       r.release_description::varchar AS release_description, r.release_author::varchar AS release_author,
       r.release_created_at AT TIME ZONE 'UTC' AS release_created_at,
       r.release_published_at AT TIME ZONE 'UTC' AS release_published_at,
       r.release_updated_at AT TIME ZONE 'UTC' AS release_updated_at, r.release_is_draft, r.release_is_prerelease,
       r.release_tag_name::varchar AS release_tag_name, r.release_url::varchar AS release_url, false AS tag_only,
       r.tool_source::varchar AS tool_source, r.tool_version::varchar AS tool_version,
       r.data_source::varchar AS data_source, r.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.releases r;

CREATE VIEW aveloxis_augur_data.message WITH (security_invoker = true) AS
SELECT m.msg_id, NULL::bigint AS rgls_id, m.platform_msg_id, m.node_id::varchar AS platform_node_id, m.repo_id,
       m.cntrb_id, m.msg_text::varchar AS msg_text, m.msg_timestamp AT TIME ZONE 'UTC' AS msg_timestamp,
       NULL::varchar AS msg_sender_email, NULL::varchar AS msg_header, m.platform_id::bigint AS pltfrm_id,
       m.tool_source::varchar AS tool_source, m.tool_version::varchar AS tool_version,
       m.data_source::varchar AS data_source, m.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.messages m;

CREATE VIEW aveloxis_augur_data.repo_labor WITH (security_invoker = true) AS
SELECT l.repo_labor_id, l.repo_id, l.repo_clone_date AT TIME ZONE 'UTC' AS repo_clone_date,
       l.rl_analysis_date AT TIME ZONE 'UTC' AS rl_analysis_date,
       l.programming_language::varchar AS programming_language, l.file_path::varchar AS file_path,
       l.file_name::varchar AS file_name, l.total_lines, l.code_lines, l.comment_lines, l.blank_lines,
       l.code_complexity, l.repo_url::varchar AS repo_url, l.tool_source::varchar AS tool_source,
       l.tool_version::varchar AS tool_version, l.data_source::varchar AS data_source,
       l.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_labor l;

CREATE VIEW aveloxis_augur_data.repo_deps_libyear WITH (security_invoker = true) AS
SELECT l.repo_deps_libyear_id, l.repo_id, l.name::varchar AS name, l.requirement::varchar AS requirement,
       l.type::varchar AS type, l.package_manager::varchar AS package_manager,
       l.current_verion::varchar AS current_verion, l.latest_version::varchar AS latest_version,
       l.current_release_date::varchar AS current_release_date,
       l.latest_release_date::varchar AS latest_release_date, l.libyear,
       l.tool_source::varchar AS tool_source, l.tool_version::varchar AS tool_version,
       l.data_source::varchar AS data_source, l.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_deps_libyear l;

CREATE VIEW aveloxis_augur_data.repo_deps_scorecard WITH (security_invoker = true) AS
SELECT s.repo_deps_scorecard_id, s.repo_id, s.name::varchar AS name, s.scorecard_check_details,
       s.score::varchar AS score, s.tool_source::varchar AS tool_source, s.tool_version::varchar AS tool_version,
       s.data_source::varchar AS data_source, s.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_deps_scorecard s;

-- The children 8Knot's views are built from, and that Augur users query, under Augur's
-- names and columns. Columns we do not keep (tool_source on some children, URLs Augur
-- copies from the API) are NULL of Augur's type.
CREATE VIEW aveloxis_augur_data.issue_events WITH (security_invoker = true) AS
SELECT e.event_id, e.issue_id, e.repo_id, e.cntrb_id, e.action::varchar AS action,
       e.action_commit_hash::varchar AS action_commit_hash, e.created_at AT TIME ZONE 'UTC' AS created_at,
       e.node_id::varchar AS node_id, NULL::varchar AS node_url, e.platform_id::bigint AS platform_id,
       e.platform_event_id AS issue_event_src_id, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, e.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issue_events e;

CREATE VIEW aveloxis_augur_data.pull_request_events WITH (security_invoker = true) AS
SELECT e.pr_event_id, e.pull_request_id, e.repo_id, e.cntrb_id, e.action::varchar AS action,
       e.action_commit_hash::varchar AS action_commit_hash, e.created_at AT TIME ZONE 'UTC' AS created_at,
       e.platform_event_id AS issue_event_src_id, e.node_id::varchar AS node_id, NULL::varchar AS node_url,
       e.platform_id::bigint AS platform_id, e.platform_event_id AS pr_platform_event_id,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       e.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_events e;

CREATE VIEW aveloxis_augur_data.pull_request_reviews WITH (security_invoker = true) AS
SELECT v.pr_review_id, v.pull_request_id, v.repo_id, v.cntrb_id,
       v.author_association::varchar AS pr_review_author_association, v.review_state::varchar AS pr_review_state,
       v.review_body::varchar AS pr_review_body, v.submitted_at AT TIME ZONE 'UTC' AS pr_review_submitted_at,
       v.platform_review_id AS pr_review_src_id, v.node_id::varchar AS pr_review_node_id,
       v.html_url::varchar AS pr_review_html_url, NULL::varchar AS pr_review_pull_request_url,
       v.commit_id::varchar AS pr_review_commit_id,
       (SELECT r.platform_id::bigint FROM aveloxis_data.repos r WHERE r.repo_id = v.repo_id) AS platform_id,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       v.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_reviews v;

CREATE VIEW aveloxis_augur_data.issue_message_ref WITH (security_invoker = true) AS
SELECT x.issue_msg_ref_id, x.issue_id, x.repo_id, x.msg_id,
       (SELECT m.node_id FROM aveloxis_data.messages m WHERE m.repo_id = x.repo_id AND m.msg_id = x.msg_id)::varchar
           AS issue_msg_ref_src_node_id,
       x.platform_src_id AS issue_msg_ref_src_comment_id, x.tool_source::varchar AS tool_source,
       x.tool_version::varchar AS tool_version, x.data_source::varchar AS data_source,
       x.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issue_message_ref x;

CREATE VIEW aveloxis_augur_data.pull_request_message_ref WITH (security_invoker = true) AS
SELECT x.pr_msg_ref_id, x.pull_request_id, x.repo_id, x.msg_id, x.platform_src_id AS pr_message_ref_src_comment_id,
       (SELECT m.node_id FROM aveloxis_data.messages m WHERE m.repo_id = x.repo_id AND m.msg_id = x.msg_id)::varchar
           AS pr_message_ref_src_node_id,
       NULL::varchar AS pr_issue_url, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, x.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_message_ref x;

-- Augur's review messages are the diff comments (review_comments here); a review's own
-- body is pull_request_reviews.pr_review_body.
CREATE VIEW aveloxis_augur_data.pull_request_review_message_ref WITH (security_invoker = true) AS
SELECT c.review_comment_id AS pr_review_msg_ref_id, c.pr_review_id, c.repo_id, c.msg_id,
       NULL::varchar AS pr_review_msg_url, c.platform_review_id AS pr_review_src_id,
       c.platform_src_id AS pr_review_msg_src_id, m.node_id::varchar AS pr_review_msg_node_id,
       c.diff_hunk::varchar AS pr_review_msg_diff_hunk, c.path::varchar AS pr_review_msg_path,
       c."position"::bigint AS pr_review_msg_position, c.original_position::bigint AS pr_review_msg_original_position,
       c.commit_id::varchar AS pr_review_msg_commit_id, c.original_commit_id::varchar AS pr_review_msg_original_commit_id,
       m.msg_updated_at AT TIME ZONE 'UTC' AS pr_review_msg_updated_at, m.msg_html_url::varchar AS pr_review_msg_html_url,
       NULL::varchar AS pr_url, c.author_association::varchar AS pr_review_msg_author_association,
       NULL::bigint AS pr_review_msg_start_line, NULL::bigint AS pr_review_msg_original_start_line,
       NULL::varchar AS pr_review_msg_start_side, c.line::bigint AS pr_review_msg_line,
       c.original_line::bigint AS pr_review_msg_original_line, c.side::varchar AS pr_review_msg_side,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       c.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.review_comments c
JOIN aveloxis_data.messages m ON m.repo_id = c.repo_id AND m.msg_id = c.msg_id;

CREATE VIEW aveloxis_augur_data.issue_labels WITH (security_invoker = true) AS
SELECT l.issue_label_id, l.issue_id, l.repo_id, l.label_text::varchar AS label_text,
       l.label_description::varchar AS label_description, l.label_color::varchar AS label_color,
       l.platform_label_id AS label_src_id, NULL::varchar AS label_src_node_id, l.tool_source::varchar AS tool_source,
       l.tool_version::varchar AS tool_version, l.data_source::varchar AS data_source,
       l.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issue_labels l;

CREATE VIEW aveloxis_augur_data.pull_request_labels WITH (security_invoker = true) AS
SELECT l.pr_label_id, l.pull_request_id, l.repo_id, l.platform_label_id AS pr_src_id, NULL::varchar AS pr_src_node_id,
       NULL::varchar AS pr_src_url, l.label_name::varchar AS pr_src_description, l.label_color::varchar AS pr_src_color,
       NULL::boolean AS pr_src_default_bool, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, l.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_labels l;

CREATE VIEW aveloxis_augur_data.issue_assignees WITH (security_invoker = true) AS
SELECT a.issue_assignee_id, a.issue_id, a.repo_id, a.cntrb_id, a.platform_assignee_id AS issue_assignee_src_id,
       NULL::varchar AS issue_assignee_src_node, a.tool_source::varchar AS tool_source,
       a.tool_version::varchar AS tool_version, a.data_source::varchar AS data_source,
       a.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issue_assignees a;

CREATE VIEW aveloxis_augur_data.pull_request_assignees WITH (security_invoker = true) AS
SELECT a.pr_assignee_id AS pr_assignee_map_id, a.pull_request_id, a.repo_id, a.cntrb_id AS contrib_id,
       a.platform_assignee_id AS pr_assignee_src_id, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, a.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_assignees a;

CREATE VIEW aveloxis_augur_data.pull_request_reviewers WITH (security_invoker = true) AS
SELECT r.pr_reviewer_id AS pr_reviewer_map_id, r.pull_request_id,
       (SELECT p.platform_pr_id FROM aveloxis_data.pull_requests p
        WHERE p.repo_id = r.repo_id AND p.pull_request_id = r.pull_request_id)
           AS pr_source_id,
       r.repo_id, r.cntrb_id, r.platform_reviewer_id AS pr_reviewer_src_id, NULL::varchar AS tool_source,
       NULL::varchar AS tool_version, NULL::varchar AS data_source,
       r.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_reviewers r;

CREATE VIEW aveloxis_augur_data.pull_request_commits WITH (security_invoker = true) AS
SELECT c.pr_cmt_id, c.pull_request_id, c.repo_id, c.pr_cmt_sha::varchar AS pr_cmt_sha,
       c.pr_cmt_node_id::varchar AS pr_cmt_node_id, c.pr_cmt_message::varchar AS pr_cmt_message,
       NULL::varchar AS pr_cmt_comments_url, c.pr_cmt_author_cntrb_id,
       c.pr_cmt_timestamp AT TIME ZONE 'UTC' AS pr_cmt_timestamp, c.pr_cmt_author_email::varchar AS pr_cmt_author_email,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       c.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_commits c;

CREATE VIEW aveloxis_augur_data.pull_request_files WITH (security_invoker = true) AS
SELECT f.pr_file_id, f.pull_request_id, f.repo_id, f.pr_file_additions::bigint AS pr_file_additions,
       f.pr_file_deletions::bigint AS pr_file_deletions, f.pr_file_path::varchar AS pr_file_path,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       f.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_files f;

CREATE VIEW aveloxis_augur_data.pull_request_meta WITH (security_invoker = true) AS
SELECT m.pr_repo_meta_id, m.pull_request_id, m.repo_id, m.pr_head_or_base::varchar AS pr_head_or_base,
       m.pr_src_meta_label::varchar AS pr_src_meta_label, m.pr_src_meta_ref::varchar AS pr_src_meta_ref,
       m.pr_sha::varchar AS pr_sha, m.cntrb_id, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, m.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_meta m;
