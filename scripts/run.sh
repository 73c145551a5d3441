#!/usr/bin/env bash
# The main job, offline, from a fresh Debian machine: install what is missing, build
# and install pg_aveloxis, start a local cluster, register repositories with the agent,
# and show what the database now holds. Re-running it is fast and changes nothing new.
#
# At this stage of the project the job registers repositories; collection (GitHub,
# GitLab, git history) arrives with the agent's later issues.
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

step "building aveloxis-agent"
cargo build -q -p collector-agent
agent=$REPO_ROOT/target/debug/aveloxis-agent

step "registering repositories: this checkout (git only) and two forge repositories"
"$agent" add "$REPO_ROOT" --group "Local"
"$agent" add https://github.com/chaoss/augur git@gitlab.com:fdroid/fdroidclient.git --group "CHAOSS and friends"

step "aveloxis-agent status"
"$agent" status

step "what aveloxis_data.repos holds"
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "
    SELECT r.repo_id, p.platform_name AS platform, g.rg_name AS repo_group, r.repo_owner, r.repo_name, r.repo_git
    FROM aveloxis_data.repos r
    JOIN aveloxis_data.platforms p USING (platform_id)
    JOIN aveloxis_data.repo_groups g USING (repo_group_id)
    ORDER BY r.repo_id"

cat <<MSG
The cluster keeps running for you to explore:
  scripts/cluster.sh psql          # psql into it (DATABASE_URL=$DATABASE_URL)
  scripts/cluster.sh stop          # stop it; scripts/cluster.sh destroy deletes it
MSG
