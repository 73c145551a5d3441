-- The 22 materialized views of Augur (and the Go system), in aveloxis_augur_data under
-- Augur's names and columns, built over aveloxis_data. Each has a unique index so that
-- aveloxis.refresh_views() (sql/refresh.sql) refreshes it CONCURRENTLY: 8Knot's readers
-- are never blocked. Where Augur's semantics are wrong for what 8Knot's charts assume,
-- these views do it right; docs/analytics.md lists each difference.
--
-- Times: Augur's naive `timestamp` columns are the UTC wall time (AT TIME ZONE 'UTC',
-- never a ::timestamp cast that reads the session's TimeZone); commit times and
-- explorer_contributor_actions.created_at stay timestamptz, as in Augur.
-- Rows about an unknown contributor (NULL id: a commit author not resolved yet, a
-- deleted account) are left out of the per-contributor views: they cannot be ranked.

-- Every action of every known contributor, one row each, live over the base tables:
-- the source of explorer_contributor_actions (and its three dependents) and of the
-- analyst API (sql/analyst_api.sql).
CREATE VIEW aveloxis_data.contributor_actions WITH (security_invoker = true) AS
-- One row per commit (commits holds one row per changed file).
SELECT cm.cmt_ght_author_id AS cntrb_id, min(cm.cmt_author_timestamp) AS created_at, cm.repo_id,
       'commit'::text AS action, min(cm.cmt_id) AS source_id
FROM aveloxis_data.commits cm
WHERE cm.cmt_ght_author_id IS NOT NULL AND cm.cmt_author_timestamp IS NOT NULL
GROUP BY cm.repo_id, cm.cmt_commit_hash, cm.cmt_ght_author_id
UNION ALL
SELECT i.reporter_id, i.created_at, i.repo_id, 'issue_opened', i.issue_id
FROM aveloxis_data.issues i WHERE i.reporter_id IS NOT NULL AND i.created_at IS NOT NULL
UNION ALL
SELECT e.cntrb_id, e.created_at, e.repo_id, 'issue_closed', e.event_id
FROM aveloxis_data.issue_events e
WHERE e.action = 'closed' AND e.cntrb_id IS NOT NULL AND e.created_at IS NOT NULL
UNION ALL
SELECT p.author_id, p.created_at, p.repo_id, 'pull_request_open', p.pull_request_id
FROM aveloxis_data.pull_requests p WHERE p.author_id IS NOT NULL AND p.created_at IS NOT NULL
UNION ALL
SELECT e.cntrb_id, e.created_at, e.repo_id, 'pull_request_closed', e.pr_event_id
FROM aveloxis_data.pull_request_events e JOIN aveloxis_data.pull_requests p USING (pull_request_id)
WHERE e.action = 'closed' AND p.merged_at IS NULL AND e.cntrb_id IS NOT NULL AND e.created_at IS NOT NULL
UNION ALL
SELECT e.cntrb_id, e.created_at, e.repo_id, 'pull_request_merged', e.pr_event_id
FROM aveloxis_data.pull_request_events e
WHERE e.action = 'merged' AND e.cntrb_id IS NOT NULL AND e.created_at IS NOT NULL
UNION ALL
SELECT v.cntrb_id, v.submitted_at, v.repo_id, 'pull_request_review_' || v.review_state, v.pr_review_id
FROM aveloxis_data.pull_request_reviews v
WHERE v.cntrb_id IS NOT NULL AND v.submitted_at IS NOT NULL AND v.review_state IS NOT NULL
UNION ALL
-- Conversation comments and diff (review) comments: both are comments on the PR. One
-- semi-join on the union of both reference tables (two EXISTS joined by OR were
-- per-message subplans, a scan of the references per message once they outgrew
-- work_mem: the fleet benchmark's 100,000-repository refresh did not finish).
SELECT m.cntrb_id, m.msg_timestamp, m.repo_id, 'pull_request_comment', m.msg_id
FROM aveloxis_data.messages m
WHERE m.msg_source IN ('issue_comment', 'review_comment') AND m.cntrb_id IS NOT NULL
  AND m.msg_timestamp IS NOT NULL
  AND (m.repo_id, m.msg_id) IN (SELECT x.repo_id, x.msg_id FROM aveloxis_data.pull_request_message_ref x
                                UNION ALL
                                SELECT x.repo_id, x.msg_id FROM aveloxis_data.review_comments x)
UNION ALL
-- Credited to the comment's author (Augur credits the issue's reporter), on open
-- issues too (Augur's closed_at <> msg_timestamp drops them).
SELECT m.cntrb_id, m.msg_timestamp, m.repo_id, 'issue_comment', m.msg_id
FROM aveloxis_data.messages m
WHERE m.msg_source = 'issue_comment' AND m.cntrb_id IS NOT NULL AND m.msg_timestamp IS NOT NULL
  AND EXISTS (SELECT FROM aveloxis_data.issue_message_ref x WHERE x.repo_id = m.repo_id AND x.msg_id = m.msg_id);
COMMENT ON VIEW aveloxis_data.contributor_actions IS 'Every action of every known contributor (live; explorer_contributor_actions is its ranked snapshot)';

-- rank 1 is the contributor's FIRST action in the repository (8Knot's "first
-- contribution" charts read rank = 1; Augur ranks newest first).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_contributor_actions AS
SELECT a.cntrb_id, a.created_at, a.repo_id, a.action, r.repo_name::varchar AS repo_name,
       c.cntrb_login::varchar AS login,
       row_number() OVER (PARTITION BY a.cntrb_id, a.repo_id ORDER BY a.created_at, a.action, a.source_id) AS rank
FROM aveloxis_data.contributor_actions a
JOIN aveloxis_data.repos r ON r.repo_id = a.repo_id
LEFT JOIN aveloxis_data.contributors c ON c.cntrb_id = a.cntrb_id;
CREATE UNIQUE INDEX explorer_contributor_actions_key ON aveloxis_augur_data.explorer_contributor_actions
    (cntrb_id, created_at, repo_id, action, repo_name, login, rank);
CREATE INDEX explorer_contributor_actions_repo_idx ON aveloxis_augur_data.explorer_contributor_actions (repo_id);

CREATE MATERIALIZED VIEW aveloxis_augur_data.api_get_all_repo_prs AS
SELECT p.repo_id, count(*) AS pull_requests_all_time
FROM aveloxis_data.pull_requests p GROUP BY p.repo_id;
CREATE UNIQUE INDEX api_get_all_repo_prs_key ON aveloxis_augur_data.api_get_all_repo_prs (repo_id);

CREATE MATERIALIZED VIEW aveloxis_augur_data.api_get_all_repos_commits AS
SELECT cm.repo_id, count(DISTINCT cm.cmt_commit_hash) AS commits_all_time
FROM aveloxis_data.commits cm GROUP BY cm.repo_id;
CREATE UNIQUE INDEX api_get_all_repos_commits_key ON aveloxis_augur_data.api_get_all_repos_commits (repo_id);

-- aveloxis_data.issues holds no pull requests.
CREATE MATERIALIZED VIEW aveloxis_augur_data.api_get_all_repos_issues AS
SELECT i.repo_id, count(*) AS issues_all_time
FROM aveloxis_data.issues i GROUP BY i.repo_id;
CREATE UNIQUE INDEX api_get_all_repos_issues_key ON aveloxis_augur_data.api_get_all_repos_issues (repo_id);

CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_entry_list AS
SELECT r.repo_git::varchar AS repo_git, r.repo_id, r.repo_name::varchar AS repo_name, g.rg_name::varchar AS rg_name
FROM aveloxis_data.repos r JOIN aveloxis_data.repo_groups g USING (repo_group_id);
CREATE UNIQUE INDEX explorer_entry_list_key ON aveloxis_augur_data.explorer_entry_list (repo_id);

-- Per committer date (git's local 'YYYY-MM-DD', as Augur): commits, and distinct
-- committers. Augur counts (commit, file) rows as commits; these are commits.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_commits_and_committers_daily_count AS
SELECT r.repo_id, r.repo_name::varchar AS repo_name, cm.cmt_committer_date::varchar AS cmt_committer_date,
       count(DISTINCT cm.cmt_commit_hash) AS num_of_commits,
       count(DISTINCT cm.cmt_committer_raw_email) AS num_of_unique_committers
FROM aveloxis_data.commits cm JOIN aveloxis_data.repos r USING (repo_id)
WHERE cm.cmt_committer_date IS NOT NULL
GROUP BY r.repo_id, r.repo_name, cm.cmt_committer_date;
CREATE UNIQUE INDEX explorer_commits_and_committers_daily_count_key
    ON aveloxis_augur_data.explorer_commits_and_committers_daily_count (repo_id, cmt_committer_date);

-- Libyear: each repository's own rows (Augur and the Go system cross-join every
-- repository with every libyear row), by the month of the scan.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_libyear_all AS
SELECT r.repo_id, r.repo_name::varchar AS repo_name, avg(l.libyear) AS avg_libyear,
       date_part('month', l.data_collection_date AT TIME ZONE 'UTC') AS month,
       date_part('year', l.data_collection_date AT TIME ZONE 'UTC') AS year
FROM aveloxis_data.repo_deps_libyear l JOIN aveloxis_data.repos r USING (repo_id)
GROUP BY r.repo_id, r.repo_name, 4, 5;
CREATE UNIQUE INDEX explorer_libyear_all_key ON aveloxis_augur_data.explorer_libyear_all (repo_id, year, month);

CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_libyear_summary AS
SELECT r.repo_id, r.repo_name::varchar AS repo_name, avg(l.libyear) AS avg_libyear,
       date_part('month', l.data_collection_date AT TIME ZONE 'UTC') AS month,
       date_part('year', l.data_collection_date AT TIME ZONE 'UTC') AS year
FROM aveloxis_data.repo_deps_libyear l JOIN aveloxis_data.repos r USING (repo_id)
GROUP BY r.repo_id, r.repo_name, 4, 5;
CREATE UNIQUE INDEX explorer_libyear_summary_key ON aveloxis_augur_data.explorer_libyear_summary (repo_id, year, month);

-- The latest scan's dependencies of each repository.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_libyear_detail AS
SELECT r.repo_id, r.repo_name::varchar AS repo_name, l.name::varchar AS name, l.requirement::varchar AS requirement,
       l.current_verion::varchar AS current_verion, l.latest_version::varchar AS latest_version,
       l.current_release_date::varchar AS current_release_date, l.libyear,
       l.data_collection_date AT TIME ZONE 'UTC' AS max, l.repo_deps_libyear_id
FROM aveloxis_data.repo_deps_libyear l JOIN aveloxis_data.repos r USING (repo_id)
WHERE l.data_collection_date = (SELECT max(x.data_collection_date) FROM aveloxis_data.repo_deps_libyear x
                                WHERE x.repo_id = l.repo_id);
CREATE UNIQUE INDEX explorer_libyear_detail_key ON aveloxis_augur_data.explorer_libyear_detail (repo_id, repo_deps_libyear_id);

-- A contributor's first seven actions in each repository (rank 1 = the first).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_new_contributors AS
SELECT a.cntrb_id, a.created_at,
       date_part('month', a.created_at AT TIME ZONE 'UTC') AS month,
       date_part('year', a.created_at AT TIME ZONE 'UTC') AS year,
       a.repo_id, a.repo_name, c.cntrb_full_name::varchar AS full_name, a.login, a.rank
FROM aveloxis_augur_data.explorer_contributor_actions a
LEFT JOIN aveloxis_data.contributors c ON c.cntrb_id = a.cntrb_id
WHERE a.rank <= 7;
CREATE UNIQUE INDEX explorer_new_contributors_key ON aveloxis_augur_data.explorer_new_contributors
    (cntrb_id, created_at, month, year, repo_id, full_name, repo_name, login, rank);

-- The action that made each contributor new to each repository.
CREATE MATERIALIZED VIEW aveloxis_augur_data.augur_new_contributors AS
SELECT a.cntrb_id, a.created_at, a.repo_id, a.action, a.repo_name, a.login, a.rank
FROM aveloxis_augur_data.explorer_contributor_actions a
WHERE a.rank = 1;
CREATE UNIQUE INDEX augur_new_contributors_key ON aveloxis_augur_data.augur_new_contributors
    (cntrb_id, created_at, repo_id, repo_name, login, rank);

-- Every pull request, with its assignment events (one row with NULLs when none).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_pr_assignments AS
SELECT p.pull_request_id, p.repo_id AS id,
       p.created_at AT TIME ZONE 'UTC' AS created, p.closed_at AT TIME ZONE 'UTC' AS closed,
       e.created_at AT TIME ZONE 'UTC' AS assign_date, e.action::varchar AS assignment_action,
       coalesce(e.assignee_id, e.cntrb_id) AS assignee,
       coalesce(e.node_id, 'event:' || e.platform_event_id)::varchar AS node_id
FROM aveloxis_data.pull_requests p
LEFT JOIN aveloxis_data.pull_request_events e
       ON e.pull_request_id = p.pull_request_id AND e.action IN ('assigned', 'unassigned');
CREATE UNIQUE INDEX explorer_pr_assignments_key ON aveloxis_augur_data.explorer_pr_assignments (pull_request_id, id, node_id);
-- 8Knot reads these views by repository (WHERE id IN (...)).
CREATE INDEX explorer_pr_assignments_repo_idx ON aveloxis_augur_data.explorer_pr_assignments (id);

-- Exactly Augur's seven columns (8Knot copies SELECT * into a 7-column table): every
-- pull request with each message on it (conversation, review bodies and diff
-- comments), one row with NULLs when it has none. UNION de-duplicates, as Augur.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_pr_response AS
SELECT p.pull_request_id, p.repo_id AS id, p.author_id AS cntrb_id,
       m.msg_timestamp AT TIME ZONE 'UTC' AS msg_timestamp, m.msg_cntrb_id,
       p.created_at AT TIME ZONE 'UTC' AS pr_created_at, p.closed_at AT TIME ZONE 'UTC' AS pr_closed_at
FROM aveloxis_data.pull_requests p
LEFT JOIN (
    SELECT x.pull_request_id, m.msg_timestamp, m.cntrb_id AS msg_cntrb_id
    FROM aveloxis_data.pull_request_message_ref x JOIN aveloxis_data.messages m USING (msg_id)
    UNION
    SELECT v.pull_request_id, m.msg_timestamp, m.cntrb_id
    FROM aveloxis_data.pull_request_review_message_ref x
    JOIN aveloxis_data.pull_request_reviews v USING (pr_review_id)
    JOIN aveloxis_data.messages m ON m.msg_id = x.msg_id
    UNION
    SELECT x.pull_request_id, m.msg_timestamp, m.cntrb_id
    FROM aveloxis_data.review_comments x JOIN aveloxis_data.messages m USING (msg_id)
) m ON m.pull_request_id = p.pull_request_id;
CREATE UNIQUE INDEX explorer_pr_response_key ON aveloxis_augur_data.explorer_pr_response
    (pull_request_id, id, cntrb_id, msg_cntrb_id, msg_timestamp);
CREATE INDEX explorer_pr_response_repo_idx ON aveloxis_augur_data.explorer_pr_response (id);

-- Augur's web users and their repository groups. pg_aveloxis has no web users (8Knot
-- reads user groups from Augur's REST API, not SQL): the view exists, empty, so a
-- client that names it gets no error.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_user_repos AS
SELECT NULL::varchar AS login_name, NULL::bigint AS user_id, NULL::bigint AS group_id, NULL::bigint AS repo_id
WHERE false;
CREATE UNIQUE INDEX explorer_user_repos_key ON aveloxis_augur_data.explorer_user_repos (login_name, user_id, group_id, repo_id);

-- Per pull request: timings and event counts. Event and message counts come from
-- separate aggregates (Augur joins events to messages, multiplying both counts).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_pr_response_times AS
SELECT r.repo_id, p.platform_pr_id AS pr_src_id, r.repo_name::varchar AS repo_name,
       p.pr_author_association::varchar AS pr_src_author_association, g.rg_name::varchar AS repo_group,
       p.pr_state::varchar AS pr_src_state,
       p.merged_at AT TIME ZONE 'UTC' AS pr_merged_at, p.created_at AT TIME ZONE 'UTC' AS pr_created_at,
       p.closed_at AT TIME ZONE 'UTC' AS pr_closed_at,
       date_part('year', p.created_at AT TIME ZONE 'UTC') AS created_year,
       date_part('month', p.created_at AT TIME ZONE 'UTC') AS created_month,
       date_part('year', p.closed_at AT TIME ZONE 'UTC') AS closed_year,
       date_part('month', p.closed_at AT TIME ZONE 'UTC') AS closed_month,
       b.pr_src_meta_label::varchar AS pr_src_meta_label, b.pr_head_or_base::varchar AS pr_head_or_base,
       extract(epoch FROM p.closed_at - p.created_at) / 3600 AS hours_to_close,
       extract(epoch FROM p.closed_at - p.created_at) / 86400 AS days_to_close,
       extract(epoch FROM mt.first_response_time - p.created_at) / 3600 AS hours_to_first_response,
       extract(epoch FROM mt.first_response_time - p.created_at) / 86400 AS days_to_first_response,
       extract(epoch FROM mt.last_response_time - p.created_at) / 3600 AS hours_to_last_response,
       extract(epoch FROM mt.last_response_time - p.created_at) / 86400 AS days_to_last_response,
       mt.first_response_time AT TIME ZONE 'UTC' AS first_response_time,
       mt.last_response_time AT TIME ZONE 'UTC' AS last_response_time,
       mt.average_time_between_responses,
       coalesce(ev.assigned_count, 0) AS assigned_count,
       coalesce(ev.review_requested_count, 0) AS review_requested_count,
       coalesce(ev.labeled_count, 0) AS labeled_count,
       coalesce(ev.subscribed_count, 0) AS subscribed_count,
       coalesce(ev.mentioned_count, 0) AS mentioned_count,
       coalesce(ev.referenced_count, 0) AS referenced_count,
       coalesce(ev.closed_count, 0) AS closed_count,
       coalesce(ev.head_ref_force_pushed_count, 0) AS head_ref_force_pushed_count,
       coalesce(ev.merged_count, 0) AS merged_count,
       coalesce(ev.milestoned_count, 0) AS milestoned_count,
       coalesce(ev.unlabeled_count, 0) AS unlabeled_count,
       coalesce(ev.head_ref_deleted_count, 0) AS head_ref_deleted_count,
       coalesce(mt.comment_count, 0) AS comment_count,
       p.pr_additions::bigint AS lines_added, p.pr_deletions::bigint AS lines_removed,
       coalesce(pc.commit_count, p.pr_commit_count) AS commit_count,
       p.pr_changed_files::bigint AS file_count
FROM aveloxis_data.pull_requests p
JOIN aveloxis_data.repos r ON r.repo_id = p.repo_id
JOIN aveloxis_data.repo_groups g ON g.repo_group_id = r.repo_group_id
LEFT JOIN aveloxis_data.pull_request_meta b ON b.pull_request_id = p.pull_request_id AND b.pr_head_or_base = 'base'
LEFT JOIN (
    SELECT e.pull_request_id,
           count(*) FILTER (WHERE e.action = 'assigned') AS assigned_count,
           count(*) FILTER (WHERE e.action = 'review_requested') AS review_requested_count,
           count(*) FILTER (WHERE e.action = 'labeled') AS labeled_count,
           count(*) FILTER (WHERE e.action = 'unlabeled') AS unlabeled_count,
           count(*) FILTER (WHERE e.action = 'subscribed') AS subscribed_count,
           count(*) FILTER (WHERE e.action = 'mentioned') AS mentioned_count,
           count(*) FILTER (WHERE e.action = 'referenced') AS referenced_count,
           count(*) FILTER (WHERE e.action = 'closed') AS closed_count,
           count(*) FILTER (WHERE e.action = 'head_ref_force_pushed') AS head_ref_force_pushed_count,
           count(*) FILTER (WHERE e.action = 'head_ref_deleted') AS head_ref_deleted_count,
           count(*) FILTER (WHERE e.action = 'milestoned') AS milestoned_count,
           count(*) FILTER (WHERE e.action = 'merged') AS merged_count
    FROM aveloxis_data.pull_request_events e GROUP BY e.pull_request_id
) ev ON ev.pull_request_id = p.pull_request_id
LEFT JOIN (
    SELECT x.pull_request_id, min(m.msg_timestamp) AS first_response_time, max(m.msg_timestamp) AS last_response_time,
           count(*) AS comment_count,
           (max(m.msg_timestamp) - min(m.msg_timestamp)) / count(*) AS average_time_between_responses
    FROM aveloxis_data.pull_request_message_ref x JOIN aveloxis_data.messages m USING (msg_id)
    GROUP BY x.pull_request_id
) mt ON mt.pull_request_id = p.pull_request_id
LEFT JOIN (
    SELECT c.pull_request_id, count(*) AS commit_count FROM aveloxis_data.pull_request_commits c
    GROUP BY c.pull_request_id
) pc ON pc.pull_request_id = p.pull_request_id;
CREATE UNIQUE INDEX explorer_pr_response_times_key ON aveloxis_augur_data.explorer_pr_response_times
    (repo_id, pr_src_id, pr_src_meta_label);

-- Every issue, with its assignment events (one row with NULLs when none).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_issue_assignments AS
SELECT i.issue_id, i.repo_id AS id,
       i.created_at AT TIME ZONE 'UTC' AS created, i.closed_at AT TIME ZONE 'UTC' AS closed,
       e.created_at AT TIME ZONE 'UTC' AS assign_date, e.action::varchar AS assignment_action,
       coalesce(e.assignee_id, e.cntrb_id) AS assignee,
       coalesce(e.node_id, 'event:' || e.platform_event_id)::varchar AS node_id
FROM aveloxis_data.issues i
LEFT JOIN aveloxis_data.issue_events e ON e.issue_id = i.issue_id AND e.action IN ('assigned', 'unassigned');
CREATE UNIQUE INDEX explorer_issue_assignments_key ON aveloxis_augur_data.explorer_issue_assignments (issue_id, id, node_id);
CREATE INDEX explorer_issue_assignments_repo_idx ON aveloxis_augur_data.explorer_issue_assignments (id);

-- Lines and files per language, from each repository's latest labor scan.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_repo_languages AS
SELECT l.repo_id, r.repo_git::varchar AS repo_git, r.repo_name::varchar AS repo_name,
       l.programming_language::varchar AS programming_language,
       sum(l.code_lines)::bigint AS code_lines, count(*)::integer AS files
FROM aveloxis_data.repo_labor l JOIN aveloxis_data.repos r USING (repo_id)
WHERE l.data_collection_date = (SELECT max(x.data_collection_date) FROM aveloxis_data.repo_labor x
                                WHERE x.repo_id = l.repo_id)
GROUP BY l.repo_id, r.repo_git, r.repo_name, l.programming_language;
CREATE UNIQUE INDEX explorer_repo_languages_key ON aveloxis_augur_data.explorer_repo_languages
    (repo_id, programming_language);

CREATE MATERIALIZED VIEW aveloxis_augur_data.issue_reporter_created_at AS
SELECT i.reporter_id, i.created_at AT TIME ZONE 'UTC' AS created_at, i.repo_id, i.issue_id
FROM aveloxis_data.issues i;
CREATE UNIQUE INDEX issue_reporter_created_at_key ON aveloxis_augur_data.issue_reporter_created_at (issue_id);

-- Actions of the last 13 months, ranked within them (rank 1 = the first).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_contributor_recent_actions AS
SELECT a.cntrb_id, a.created_at, a.repo_id, a.action, a.repo_name, a.login,
       row_number() OVER (PARTITION BY a.cntrb_id, a.repo_id ORDER BY a.created_at, a.action, a.rank) AS rank
FROM aveloxis_augur_data.explorer_contributor_actions a
WHERE a.created_at >= now() - interval '13 months';
CREATE UNIQUE INDEX explorer_contributor_recent_actions_key ON aveloxis_augur_data.explorer_contributor_recent_actions
    (cntrb_id, created_at, repo_id, action, repo_name, login, rank);

CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_pr_files AS
SELECT f.pr_file_path::varchar AS file_path, f.pull_request_id, f.repo_id
FROM aveloxis_data.pull_request_files f;
CREATE UNIQUE INDEX explorer_pr_files_key ON aveloxis_augur_data.explorer_pr_files (file_path, pull_request_id, repo_id);

-- Per file path: the authors of pull requests that changed it and their reviewers.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_cntrb_per_file AS
SELECT f.repo_id, f.pr_file_path::varchar AS file_path,
       coalesce(string_agg(DISTINCT p.author_id::text, ','), '')::varchar AS cntrb_ids,
       coalesce(string_agg(DISTINCT v.cntrb_id::text, ','), '')::varchar AS reviewer_ids
FROM aveloxis_data.pull_request_files f
JOIN aveloxis_data.pull_requests p USING (pull_request_id)
LEFT JOIN aveloxis_data.pull_request_reviews v ON v.pull_request_id = f.pull_request_id
GROUP BY f.repo_id, f.pr_file_path;
CREATE UNIQUE INDEX explorer_cntrb_per_file_key ON aveloxis_augur_data.explorer_cntrb_per_file (repo_id, file_path);

-- The files of each repository's latest labor scan.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_repo_files AS
SELECT l.repo_id AS id, r.repo_name::varchar AS repo_name, r.repo_git::varchar AS repo_path,
       l.rl_analysis_date AT TIME ZONE 'UTC' AS rl_analysis_date,
       l.file_path::varchar AS file_path, l.file_name::varchar AS file_name, l.repo_labor_id
FROM aveloxis_data.repo_labor l JOIN aveloxis_data.repos r USING (repo_id)
WHERE l.data_collection_date = (SELECT max(x.data_collection_date) FROM aveloxis_data.repo_labor x
                                WHERE x.repo_id = l.repo_id);
CREATE UNIQUE INDEX explorer_repo_files_key ON aveloxis_augur_data.explorer_repo_files (id, repo_labor_id);
