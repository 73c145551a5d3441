#!/usr/bin/env bash
# The main job, offline, from a fresh Debian machine: install what is missing, build
# and install pg_aveloxis, start a local cluster, register repositories with the agent,
# and show what the database now holds. Re-running it is fast and changes nothing new.
#
# The repositories collected are this checkout's own git history (a git-only repository:
# no forge, no network) and a GitLab project replayed by a local GitLab from recorded
# gitlab.com traffic; other forge repositories are registered to show the queue.
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

scripts/setup.sh
scripts/install-extension.sh >/dev/null
scripts/cluster.sh start >/dev/null
DATABASE_URL=$(scripts/cluster.sh env | sed -n 's/^DATABASE_URL=//p')
export DATABASE_URL

step "CREATE EXTENSION pg_aveloxis (or update it to $(extension_version))"
"$PG_BIN/psql" "$DATABASE_URL" -q -v ON_ERROR_STOP=1 \
    -c 'CREATE EXTENSION IF NOT EXISTS pg_aveloxis' \
    -c 'ALTER EXTENSION pg_aveloxis UPDATE'

step "allowing local repositories under $(dirname "$REPO_ROOT") (registry.local_path_roots; none by default)"
"$PG_BIN/psql" "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -v roots="$(dirname "$REPO_ROOT")" >/dev/null \
    <<<"SELECT aveloxis.set_setting('registry.local_path_roots', :'roots')"

step "switching on in-database scheduling: pg_cron runs aveloxis.tick() every minute and refreshes the views"
"$PG_BIN/psql" "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' \
    -c 'SELECT aveloxis.unschedule()' -c 'SELECT aveloxis.schedule()' \
    -c "SELECT jobname, schedule, command FROM cron.job WHERE jobname LIKE 'aveloxis-%' ORDER BY jobname"

step "building aveloxis-agent"
cargo build -q -p collector-agent
agent=$REPO_ROOT/target/debug/aveloxis-agent

step "registering repositories: this checkout (git only) and two forge repositories"
"$agent" add https://github.com/chaoss/augur git@gitlab.com:fdroid/fdroidclient.git --group "CHAOSS and friends"

step "collecting this checkout's git history and analysing its HEAD tree, offline (aveloxis-agent collect $REPO_ROOT)"
clone_dir=${AVELOXIS_CLONE_DIR:-$REPO_ROOT/target/aveloxis-clones}
"$agent" collect "$REPO_ROOT" --phases facade,analysis --clone-dir "$clone_dir"

step "collecting a GitLab project: gitlab.com's gitlab-data/snowflake_spend, replayed by a local GitLab from recorded traffic"
# The recorded answers of ../shared/fixtures/gitlab served as GitLab REST v4 does (no network);
# the agent is pointed at it with --gitlab-api-url, as at a self-managed instance.
cargo build -q -p aveloxis-tests --bin gitlab_demo_server
coproc GITLAB_DEMO { exec "$REPO_ROOT/target/debug/gitlab_demo_server"; }
demo_pid=$GITLAB_DEMO_PID
trap 'kill "$demo_pid" 2>/dev/null || true' EXIT
read -r gitlab_api <&"${GITLAB_DEMO[0]}"
GITLAB_TOKENS=demo-token "$agent" collect https://gitlab.com/gitlab-data/snowflake_spend --phases collect \
    --gitlab-api-url "$gitlab_api"
kill "$demo_pid" 2>/dev/null || true
wait "$demo_pid" 2>/dev/null || true
trap - EXIT
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    SELECT entity, stored, first_activity::date AS first, last_activity::date AS last, forge_reported, coverage
    FROM aveloxis.repo_stats(aveloxis.resolve_repo('https://gitlab.com/gitlab-data/snowflake_spend'))
    WHERE stored > 0" -c "
    SELECT pr_src_number AS mr, pr_src_state AS state, left(pr_src_title, 40) AS title,
           pr_created_at::date AS opened, pr_merged_at::date AS merged
    FROM aveloxis_augur_data.pull_requests
    WHERE repo_id = aveloxis.resolve_repo('https://gitlab.com/gitlab-data/snowflake_spend')
    ORDER BY pr_src_number LIMIT 5"

step "aveloxis-agent status"
"$agent" status

step "what the database now holds"
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    SELECT r.repo_id, p.platform_name AS platform, g.rg_name AS repo_group, r.repo_owner, r.repo_name, r.repo_git
    FROM aveloxis_data.repos r
    JOIN aveloxis_data.platforms p USING (platform_id)
    JOIN aveloxis_data.repo_groups g USING (repo_group_id)
    ORDER BY r.repo_id" -c "
    SELECT count(DISTINCT c.cmt_commit_hash) AS commits, count(*) AS commit_file_rows,
           sum(c.cmt_added) AS lines_added, sum(c.cmt_removed) AS lines_removed,
           min(c.cmt_author_date) AS first_commit, max(c.cmt_author_date) AS last_commit
    FROM aveloxis_data.commits c WHERE c.repo_id = aveloxis.resolve_repo('$REPO_ROOT')" -c "
    SELECT year, month, email, patches, added, removed, files
    FROM aveloxis_data.dm_repo_monthly WHERE repo_id = aveloxis.resolve_repo('$REPO_ROOT')
    ORDER BY year DESC, month DESC, patches DESC LIMIT 10"

step "an analyst's answer: who wrote this repository, and how much of it?"
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    SELECT c.cmt_author_name AS author, count(DISTINCT c.cmt_commit_hash) AS commits,
           round(100.0 * count(DISTINCT c.cmt_commit_hash)
                 / sum(count(DISTINCT c.cmt_commit_hash)) OVER (), 1) AS pct_of_commits,
           sum(c.cmt_added) AS lines_added, min(c.cmt_author_timestamp)::date AS first, max(c.cmt_author_timestamp)::date AS last
    FROM aveloxis_data.commits c WHERE c.repo_id = aveloxis.resolve_repo('$REPO_ROOT')
    GROUP BY 1 ORDER BY 2 DESC LIMIT 5" -c "
    SELECT phase, status, reason FROM aveloxis.why_not_collected(aveloxis.resolve_repo('https://github.com/chaoss/augur'))"

step "an analyst's answer: what this repository is written in (its HEAD tree counted by the analysis phase)"
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    SELECT programming_language AS language, files, code_lines, comment_lines, pct_of_code, left(head_sha, 12) AS head
    FROM aveloxis.repo_languages(aveloxis.resolve_repo('$REPO_ROOT')) LIMIT 8"

step "an analyst's answer: what this repository depends on (its manifests and lockfiles, parsed in the database)"
# The versions in use come from the lockfiles; libyear and OSV findings need the registries
# and OSV (network): \`aveloxis-agent run\` claims the packages and vulnerabilities jobs.
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    SELECT ecosystem, resolution, count(*) AS dependencies, count(*) FILTER (WHERE direct) AS direct
    FROM aveloxis.dependencies(aveloxis.resolve_repo('$REPO_ROOT')) GROUP BY 1, 2 ORDER BY 1, 3 DESC" -c "
    SELECT name, version, resolution, requirement, manifest_path
    FROM aveloxis.dependencies(aveloxis.resolve_repo('$REPO_ROOT'), direct_only => true)
    WHERE manifest_path = 'pg_aveloxis/Cargo.toml' ORDER BY name LIMIT 8"
sbom_file=$REPO_ROOT/target/aveloxis-sbom.cdx.json
"$agent" sbom "$REPO_ROOT" --format cyclonedx --output "$sbom_file"
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    SELECT d ->> 'specVersion' AS cyclonedx, jsonb_array_length(d -> 'components') AS components,
           jsonb_array_length(d #> '{dependencies,0,dependsOn}') AS direct, d #>> '{components,0,purl}' AS first_purl
    FROM aveloxis.sbom(aveloxis.resolve_repo('$REPO_ROOT')) d"

step "an analyst dates an affiliation: the top author's email domain stands for an organization from the middle of the history on"
# Affiliation is read through dated rules (docs/identity.md): a rule, or its correction,
# changes the answers about the past without rewriting a commit row.
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    WITH top AS (
        SELECT split_part(cmt_author_email, '@', 2) AS domain,
               percentile_disc(0.5) WITHIN GROUP (ORDER BY cmt_author_timestamp)::date AS middle
        FROM aveloxis_data.commits WHERE repo_id = aveloxis.resolve_repo('$REPO_ROOT')
        GROUP BY 1 HAVING split_part(cmt_author_email, '@', 2) ~ '^[a-z0-9-]+(\.[a-z0-9-]+)+\$'
        ORDER BY count(*) DESC LIMIT 1)
    SELECT domain, middle AS from_date, aveloxis.set_affiliation(domain, 'Org of ' || domain, true, middle) AS groups_queued
    FROM top" -c "
    SELECT aveloxis.refresh_commit_aggregates(aveloxis.resolve_repo('$REPO_ROOT')) AS groups_recomputed" -c "
    SELECT year, affiliation, sum(patches) AS commits, sum(added) AS lines_added
    FROM aveloxis_data.dm_repo_annual WHERE repo_id = aveloxis.resolve_repo('$REPO_ROOT')
    GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC LIMIT 8" -c "
    SELECT task, platform_id, due, leased, cooling_down FROM aveloxis.identity_health()"

step "refreshing the materialized views 8Knot reads (CALL aveloxis.refresh_views(), as pg_cron does weekly)"
"$PG_BIN/psql" "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -c 'CALL aveloxis.refresh_views()' -c "
    SELECT view_name, concurrent, row_count, round(extract(epoch FROM duration) * 1000) AS ms, error
    FROM aveloxis.view_refresh_history(1) ORDER BY duration DESC LIMIT 6"

step "an analyst's answers from the SQL API: what is stored, how complete, and the last weeks' activity"
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    SELECT entity, stored, first_activity::date AS first, last_activity::date AS last, forge_reported, coverage
    FROM aveloxis.repo_stats(aveloxis.resolve_repo('$REPO_ROOT')) WHERE stored > 0 OR forge_reported IS NOT NULL" -c "
    SELECT period_start AS week, commits, lines_added, lines_removed, new_contributors, coverage_commits
    FROM aveloxis.repo_activity(aveloxis.resolve_repo('$REPO_ROOT'), current_date - 27, current_date, 'week')" -c "
    SELECT code_of_conduct_file, security_issue_file, contributing_file, license_file
    FROM aveloxis_data.repo_community_files WHERE repo_id = aveloxis.resolve_repo('$REPO_ROOT')"

step "as 8Knot sees it (search_path aveloxis_augur_data,aveloxis_data): commits and committers per day"
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "SET search_path = aveloxis_augur_data, aveloxis_data" -c "
    SELECT r.repo_name, d.cmt_committer_date, d.num_of_commits, d.num_of_unique_committers
    FROM explorer_commits_and_committers_daily_count d JOIN repo r USING (repo_id)
    ORDER BY d.cmt_committer_date DESC LIMIT 5"

step "a DBA's view of scaling out: how Citus would hold these tables (aveloxis.distribution_plan(), docs/scaling.md)"
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    SELECT kind, count(*) AS tables,
           string_agg(table_name::text, ', ' ORDER BY step) FILTER (WHERE n <= 4) || ', ...' AS first_in_order
    FROM (SELECT p.*, row_number() OVER (PARTITION BY kind ORDER BY step) AS n FROM aveloxis.distribution_plan() p) p
    GROUP BY kind ORDER BY min(step)" -c "
    SELECT step, statement FROM aveloxis.distribute(dry_run => true) ORDER BY step DESC LIMIT 2"

cat <<MSG
The cluster keeps running for you to explore:
  scripts/cluster.sh psql          # psql into it (DATABASE_URL=$DATABASE_URL)
  scripts/cluster.sh stop          # stop it; scripts/cluster.sh destroy deletes it
MSG
