//! The synthetic fleet of the read-side and storage benchmarks (docs/benchmarks.md,
//! docs/scaling.md): repositories with commits, issues, pull requests, comments, events
//! and reviews, written straight into the base tables.

use crate::exec;
use sqlx::PgConnection;

/// The synthetic fleet, written straight into the base tables (the triggers keep the
/// daily activity as it goes in).
pub async fn populate(conn: &mut PgConnection, repos: i64) {
    exec(
        conn,
        &format!(
            "INSERT INTO aveloxis_data.repo_groups (rg_name) VALUES ('bench fleet');
             INSERT INTO aveloxis_data.repos (repo_group_id, platform_id, repo_git, repo_host, repo_owner, repo_name)
             SELECT (SELECT repo_group_id FROM aveloxis_data.repo_groups WHERE rg_name = 'bench fleet'), 1,
                    'https://github.com/bench/r' || g, 'github.com', 'bench', 'r' || g
             FROM generate_series(1, {repos}) g;
             INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gh_user_id, gh_login, gh_type)
             SELECT aveloxis.platform_uuid(1::smallint, g), 'user' || g, g, 'user' || g,
                    CASE WHEN g % 200 = 0 THEN 'Bot' ELSE 'User' END
             FROM generate_series(1, 20000) g;"
        ),
    )
    .await;
    // Per repository: 250 commits x 4 files, 100 issues, 100 pull requests, 2 comments
    // each, an event per closed one, a review per pull request.
    for first in (1..=repos).step_by(50) {
        let last = (first + 49).min(repos);
        exec(
            conn,
            &format!(
                "INSERT INTO aveloxis_data.commits
                     (repo_id, cmt_commit_hash, cmt_author_name, cmt_author_raw_email, cmt_author_email, cmt_author_date,
                      cmt_committer_name, cmt_committer_raw_email, cmt_committer_email, cmt_committer_date,
                      cmt_added, cmt_removed, cmt_filename, cmt_ght_author_id, cmt_author_timestamp, cmt_committer_timestamp)
                 SELECT r.r, md5(r.r || ':' || c), 'Dev', a.email, a.email, to_char(a.ts, 'YYYY-MM-DD'),
                        'Dev', a.email, a.email, to_char(a.ts, 'YYYY-MM-DD'), f * 3, f, 'src/f' || f || '.rs',
                        aveloxis.platform_uuid(1::smallint, a.who), a.ts, a.ts
                 FROM generate_series({first}, {last}) r(r), generate_series(1, 250) c, generate_series(1, 4) f,
                      LATERAL (SELECT 1 + (r.r * 31 + c * 7) % 20000 AS who,
                                      'u' || (1 + (r.r * 31 + c * 7) % 20000) || '@example.org' AS email,
                                      timestamptz '2019-01-01' + ((r.r * 7919 + c * 104729) % 2400) * interval '1 day'
                                          + (c % 24) * interval '1 hour' AS ts) a;
                 INSERT INTO aveloxis_data.issues (repo_id, platform_issue_id, issue_number, issue_title, issue_state,
                                                   reporter_id, created_at, closed_at)
                 SELECT r, r * 1000 + n, n, 'issue ' || n, CASE WHEN n % 2 = 0 THEN 'closed' ELSE 'open' END,
                        aveloxis.platform_uuid(1::smallint, 1 + (r * 13 + n * 17) % 20000),
                        timestamptz '2019-01-01' + ((r * 31 + n * 97) % 2400) * interval '1 day',
                        CASE WHEN n % 2 = 0 THEN timestamptz '2019-01-01' + ((r * 31 + n * 97) % 2400 + 5) * interval '1 day' END
                 FROM generate_series({first}, {last}) r, generate_series(1, 100) n;
                 INSERT INTO aveloxis_data.pull_requests (repo_id, platform_pr_id, pr_number, pr_title, pr_state, author_id,
                                                          created_at, closed_at, merged_at)
                 SELECT r, r * 1000 + n, 100 + n, 'pr ' || n,
                        CASE WHEN n % 3 = 0 THEN 'merged' WHEN n % 3 = 1 THEN 'closed' ELSE 'open' END,
                        aveloxis.platform_uuid(1::smallint, 1 + (r * 11 + n * 23) % 20000),
                        timestamptz '2019-01-01' + ((r * 37 + n * 89) % 2400) * interval '1 day',
                        CASE WHEN n % 3 <> 2 THEN timestamptz '2019-01-01' + ((r * 37 + n * 89) % 2400 + 2) * interval '1 day' END,
                        CASE WHEN n % 3 = 0 THEN timestamptz '2019-01-01' + ((r * 37 + n * 89) % 2400 + 2) * interval '1 day' END
                 FROM generate_series({first}, {last}) r, generate_series(1, 100) n;"
            ),
        )
        .await;
    }
    for first in (1..=repos).step_by(100) {
        children(conn, first, (first + 99).min(repos)).await;
    }
    exec(conn, "VACUUM ANALYZE").await;
}

/// Collected data for every repository already registered (the fleet benchmark's
/// 10,000 and 100,000), shaped like a long tail rather than 1,000 equal projects: by
/// `repo_id % 20`, 5% of the repositories have 100 commits of 3 files and 20 issues and
/// pull requests, 25% have 20 commits of 2 files and 4 of each, 70% have 5 commits of 2
/// files and one of each; plain-git repositories (platform 3) have commits only. Comments,
/// events and reviews as in [`populate`]. About 32 commit rows and 5 issues and pull
/// requests per repository on average: a three-class stand-in for the heavy tail of real
/// fleets, small enough that 100,000 repositories fit this machine's disk.
pub async fn populate_tail(conn: &mut PgConnection) {
    exec(
        conn,
        "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gh_user_id, gh_login, gh_type)
         SELECT aveloxis.platform_uuid(1::smallint, g), 'user' || g, g, 'user' || g,
                CASE WHEN g % 200 = 0 THEN 'Bot' ELSE 'User' END
         FROM generate_series(1, 20000) g
         ON CONFLICT DO NOTHING",
    )
    .await;
    let (low, high): (i64, i64) = sqlx::query_as("SELECT min(repo_id), max(repo_id) FROM aveloxis_data.repos")
        .fetch_one(&mut *conn)
        .await
        .expect("the fleet's repositories");
    // (commits, files per commit, issues = pull requests) of the repository r.
    let shape = "CASE WHEN r.repo_id % 20 = 0 THEN 100 WHEN r.repo_id % 20 <= 5 THEN 20 ELSE 5 END AS commits,
                 CASE WHEN r.repo_id % 20 = 0 THEN 3 ELSE 2 END AS files,
                 CASE WHEN r.platform_id = 3 THEN 0 WHEN r.repo_id % 20 = 0 THEN 20
                      WHEN r.repo_id % 20 <= 5 THEN 4 ELSE 1 END AS items";
    for first in (low..=high).step_by(2_000) {
        let last = first + 1_999;
        exec(
            conn,
            &format!(
                "INSERT INTO aveloxis_data.commits
                     (repo_id, cmt_commit_hash, cmt_author_name, cmt_author_raw_email, cmt_author_email, cmt_author_date,
                      cmt_committer_name, cmt_committer_raw_email, cmt_committer_email, cmt_committer_date,
                      cmt_added, cmt_removed, cmt_filename, cmt_ght_author_id, cmt_author_timestamp, cmt_committer_timestamp)
                 SELECT r.repo_id, md5(r.repo_id || ':' || c), 'Dev', a.email, a.email, to_char(a.ts, 'YYYY-MM-DD'),
                        'Dev', a.email, a.email, to_char(a.ts, 'YYYY-MM-DD'), f * 3, f, 'src/f' || f || '.rs',
                        aveloxis.platform_uuid(1::smallint, a.who), a.ts, a.ts
                 FROM aveloxis_data.repos r, LATERAL (SELECT {shape}) k, generate_series(1, k.commits) c,
                      generate_series(1, k.files) f,
                      LATERAL (SELECT 1 + (r.repo_id * 31 + c * 7) % 20000 AS who,
                                      'u' || (1 + (r.repo_id * 31 + c * 7) % 20000) || '@example.org' AS email,
                                      timestamptz '2019-01-01' + ((r.repo_id * 7919 + c * 104729) % 2400) * interval '1 day'
                                          + (c % 24) * interval '1 hour' AS ts) a
                 WHERE r.repo_id BETWEEN {first} AND {last};
                 INSERT INTO aveloxis_data.issues (repo_id, platform_issue_id, issue_number, issue_title, issue_state,
                                                   reporter_id, created_at, closed_at)
                 SELECT r.repo_id, r.repo_id * 1000 + n, n, 'issue ' || n,
                        CASE WHEN n % 2 = 0 THEN 'closed' ELSE 'open' END,
                        aveloxis.platform_uuid(1::smallint, 1 + (r.repo_id * 13 + n * 17) % 20000),
                        timestamptz '2019-01-01' + ((r.repo_id * 31 + n * 97) % 2400) * interval '1 day',
                        CASE WHEN n % 2 = 0
                             THEN timestamptz '2019-01-01' + ((r.repo_id * 31 + n * 97) % 2400 + 5) * interval '1 day' END
                 FROM aveloxis_data.repos r, LATERAL (SELECT {shape}) k, generate_series(1, k.items) n
                 WHERE r.repo_id BETWEEN {first} AND {last};
                 INSERT INTO aveloxis_data.pull_requests (repo_id, platform_pr_id, pr_number, pr_title, pr_state, author_id,
                                                          created_at, closed_at, merged_at)
                 SELECT r.repo_id, r.repo_id * 1000 + n, 100 + n, 'pr ' || n,
                        CASE WHEN n % 3 = 0 THEN 'merged' WHEN n % 3 = 1 THEN 'closed' ELSE 'open' END,
                        aveloxis.platform_uuid(1::smallint, 1 + (r.repo_id * 11 + n * 23) % 20000),
                        timestamptz '2019-01-01' + ((r.repo_id * 37 + n * 89) % 2400) * interval '1 day',
                        CASE WHEN n % 3 <> 2
                             THEN timestamptz '2019-01-01' + ((r.repo_id * 37 + n * 89) % 2400 + 2) * interval '1 day' END,
                        CASE WHEN n % 3 = 0
                             THEN timestamptz '2019-01-01' + ((r.repo_id * 37 + n * 89) % 2400 + 2) * interval '1 day' END
                 FROM aveloxis_data.repos r, LATERAL (SELECT {shape}) k, generate_series(1, k.items) n
                 WHERE r.repo_id BETWEEN {first} AND {last};"
            ),
        )
        .await;
        children(conn, first, last).await;
    }
    exec(conn, "VACUUM ANALYZE").await;
}

/// Comments (two per issue and per pull request), an event per closed one and a review
/// per pull request, for the repositories `first..=last`.
async fn children(conn: &mut PgConnection, first: i64, last: i64) {
    exec(
        conn,
        &format!(
            "WITH m AS (
                     INSERT INTO aveloxis_data.messages (repo_id, platform_id, msg_source, platform_msg_id, cntrb_id,
                                                         msg_text, msg_timestamp)
                     SELECT i.repo_id, 1, 'issue_comment', i.issue_id * 10 + k,
                            aveloxis.platform_uuid(1::smallint, 1 + (i.issue_id * 7 + k) % 20000), 'a comment',
                            i.created_at + k * interval '3 hours'
                     FROM aveloxis_data.issues i, generate_series(1, 2) k WHERE i.repo_id BETWEEN {first} AND {last}
                     RETURNING msg_id, repo_id, platform_msg_id)
                 INSERT INTO aveloxis_data.issue_message_ref (issue_id, msg_id, repo_id)
                 SELECT m.platform_msg_id / 10, m.msg_id, m.repo_id FROM m;
                 WITH m AS (
                     INSERT INTO aveloxis_data.messages (repo_id, platform_id, msg_source, platform_msg_id, cntrb_id,
                                                         msg_text, msg_timestamp)
                     SELECT p.repo_id, 1, 'issue_comment', 900000000000 + p.pull_request_id * 10 + k,
                            aveloxis.platform_uuid(1::smallint, 1 + (p.pull_request_id * 5 + k) % 20000), 'looks good',
                            p.created_at + k * interval '5 hours'
                     FROM aveloxis_data.pull_requests p, generate_series(1, 2) k WHERE p.repo_id BETWEEN {first} AND {last}
                     RETURNING msg_id, repo_id, platform_msg_id)
                 INSERT INTO aveloxis_data.pull_request_message_ref (pull_request_id, msg_id, repo_id)
                 SELECT (m.platform_msg_id - 900000000000) / 10, m.msg_id, m.repo_id FROM m;
                 INSERT INTO aveloxis_data.issue_events (issue_id, repo_id, platform_id, platform_event_id, node_id,
                                                         cntrb_id, action, created_at)
                 SELECT i.issue_id, i.repo_id, 1, i.issue_id, 'IE_' || i.issue_id, i.reporter_id, 'closed', i.closed_at
                 FROM aveloxis_data.issues i WHERE i.closed_at IS NOT NULL AND i.repo_id BETWEEN {first} AND {last};
                 INSERT INTO aveloxis_data.pull_request_events (pull_request_id, repo_id, platform_id, platform_event_id,
                                                                node_id, cntrb_id, action, created_at)
                 SELECT p.pull_request_id, p.repo_id, 1, 500000000 + p.pull_request_id, 'PE_' || p.pull_request_id,
                        p.author_id, CASE WHEN p.merged_at IS NOT NULL THEN 'merged' ELSE 'closed' END, p.closed_at
                 FROM aveloxis_data.pull_requests p WHERE p.closed_at IS NOT NULL AND p.repo_id BETWEEN {first} AND {last};
                 INSERT INTO aveloxis_data.pull_request_reviews (pull_request_id, repo_id, platform_review_id, cntrb_id,
                                                                 review_state, submitted_at)
                 SELECT p.pull_request_id, p.repo_id, p.pull_request_id,
                        aveloxis.platform_uuid(1::smallint, 1 + (p.pull_request_id * 3) % 20000),
                        CASE WHEN p.pull_request_id % 2 = 0 THEN 'APPROVED' ELSE 'COMMENTED' END,
                        p.created_at + interval '1 day'
                 FROM aveloxis_data.pull_requests p WHERE p.repo_id BETWEEN {first} AND {last};"
        ),
    )
    .await;
}
