//! The facade end to end: `aveloxis-agent collect <local path>` (a git-only repository,
//! no forge) against scripted repositories, checked against what the git CLI prints.

use std::collections::BTreeSet;

use harness::gitrepo::{stored_numstat, Change, Commit, ScriptedRepo};
use harness::sqlx;
use harness::{output_text, TestDb};

fn collect(db: &TestDb, repo: &ScriptedRepo, clones: &std::path::Path) -> String {
    let out = db.agent(&["collect", repo.path_str(), "--clone-dir", clones.to_str().unwrap()]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");
    stdout
}

/// A group of one repository: its dm_repo_group_* rows are the repository's dm_repo_*
/// rows (the drain copies them instead of recomputing them), granularity by granularity.
async fn assert_group_rows_are_the_repositorys(pool: &sqlx::PgPool) {
    for (repo_table, group_table, period) in [
        ("dm_repo_annual", "dm_repo_group_annual", "0"),
        ("dm_repo_monthly", "dm_repo_group_monthly", "month"),
        ("dm_repo_weekly", "dm_repo_group_weekly", "week"),
    ] {
        let rows = |table: &str| {
            format!(
                "SELECT email, affiliation, year::int, {period}::int, added::bigint, removed::bigint, \
                 whitespace::bigint, files::bigint, patches::bigint FROM aveloxis_data.{table}"
            )
        };
        type Row = (String, String, i32, i32, i64, i64, i64, i64, i64);
        let of_repo: BTreeSet<Row> = sqlx::query_as(&rows(repo_table))
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let of_group: BTreeSet<Row> = sqlx::query_as(&rows(group_table))
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert!(!of_repo.is_empty(), "{repo_table} has rows");
        assert_eq!(of_repo, of_group, "{group_table} against {repo_table}");
    }
}

fn lines(n: usize, tag: &str) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{tag} line {i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Merges (octopus too), a rename, a text->binary change, binaries, an empty commit,
/// non-ASCII names, noreply, bot and empty emails.
fn script(repo: &ScriptedRepo) {
    let base = lines(40, "a");
    let mut renamed = lines(40, "a");
    renamed.extend_from_slice(b"one more line\n");
    let binary: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01";
    repo.import(&[
        Commit {
            branch: "main",
            mark: 1,
            from: None,
            merge: &[],
            author: "Zoë Ünïcode <zoe@mail.example.org>",
            time: "1700000000 +0530",
            message: "Initial commit: ünïcode\n\nWith a body.\n",
            changes: vec![
                Change::Write("README", b"hello\nworld\n"),
                Change::Write("src/a.txt", &base),
                Change::Write("docs/naïve file.md", b"caf\xc3\xa9\n"),
            ],
        },
        Commit {
            branch: "main",
            mark: 2,
            from: Some(1),
            merge: &[],
            author: "Alice <12345+alice@users.noreply.github.com>",
            time: "1700003600 -0800",
            message: "Rename a to b\n",
            changes: vec![Change::Delete("src/a.txt"), Change::Write("src/b.txt", &renamed)],
        },
        Commit {
            branch: "main",
            mark: 3,
            from: Some(2),
            merge: &[],
            author: "Bob <bob@example.com>",
            time: "1700007200 +0000",
            message: "Add a binary, make README binary\n",
            changes: vec![Change::Write("img.bin", binary), Change::Write("README", binary)],
        },
        Commit {
            branch: "main",
            mark: 4,
            from: Some(3),
            merge: &[],
            author: "dependabot[bot] <49699333+dependabot[bot]@users.noreply.github.com>",
            time: "1700010800 +0000",
            message: "An empty commit\n",
            changes: vec![],
        },
        Commit {
            branch: "side1",
            mark: 5,
            from: Some(2),
            merge: &[],
            author: "Anon <>",
            time: "1700014400 +0100",
            message: "Side one\n",
            changes: vec![Change::Write("side1.txt", b"one\n")],
        },
        Commit {
            branch: "side2",
            mark: 6,
            from: Some(2),
            merge: &[],
            author: "Carol <carol@example.com>",
            time: "1700018000 +0100",
            message: "Side two\n",
            changes: vec![
                Change::Write("side2.txt", b"two\n"),
                Change::Delete("docs/naïve file.md"),
            ],
        },
        Commit {
            branch: "side3",
            mark: 7,
            from: Some(2),
            merge: &[],
            author: "Carol <carol@example.com>",
            time: "1700021600 +0100",
            message: "Side three\n",
            changes: vec![Change::Write("side3.txt", b"three\n")],
        },
        Commit {
            branch: "main",
            mark: 8,
            from: Some(4),
            merge: &[5],
            author: "Bob <bob@example.com>",
            time: "1700025200 +0000",
            message: "Merge side1\n",
            changes: vec![Change::Write("side1.txt", b"one\n")],
        },
        Commit {
            branch: "main",
            mark: 9,
            from: Some(8),
            merge: &[6, 7],
            author: "Bob <bob@example.com>",
            time: "1700028800 +0000",
            message: "Octopus merge of side2 and side3\n",
            changes: vec![
                Change::Write("side2.txt", b"two\n"),
                Change::Write("side3.txt", b"three\n"),
                Change::Delete("docs/naïve file.md"),
            ],
        },
    ]);
}

#[tokio::test]
async fn git_history_is_stored_like_git_log_numstat_and_incremental_runs_add_only_what_is_new() {
    let db = TestDb::with_extension("facade").await;
    let repo = ScriptedRepo::new("facade");
    script(&repo);
    let clones = db.scratch_dir("clones");
    let pool = db.pool(2).await;

    let stdout = collect(&db, &repo, &clones);
    assert!(stdout.contains("facade: full walk, 9 commits staged"), "{stdout}");
    let expected = repo.numstat();
    assert_eq!(stored_numstat(&pool).await, expected);
    // The things the script was made to contain are really there.
    let merges: BTreeSet<_> = [repo.mark(8), repo.mark(9)].into();
    for (hash, file, ..) in &expected {
        if merges.contains(hash) || *hash == repo.mark(4) {
            assert_eq!(file, "(no files)");
        }
    }
    assert!(
        expected.contains(&(repo.mark(2), "src/b.txt".into(), "1".into(), "0".into())),
        "rename"
    );
    assert!(
        expected.contains(&(repo.mark(3), "README".into(), "-".into(), "-".into())),
        "text->binary"
    );
    let previous: Option<String> =
        sqlx::query_scalar("SELECT cmt_previous_filename FROM aveloxis_data.commits WHERE cmt_filename = 'src/b.txt'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(previous.as_deref(), Some("src/a.txt"));

    // Parents and messages are complete after one pass.
    let parents: BTreeSet<(String, Vec<String>)> = sqlx::query_as(
        "SELECT cmt_commit_hash, array_agg(parent_hash ORDER BY parent_position)
         FROM aveloxis_data.commit_parents GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let git_parents: BTreeSet<_> = repo.parents().into_iter().filter(|(_, p)| !p.is_empty()).collect();
    assert_eq!(parents, git_parents);
    let messages: BTreeSet<(String, String)> =
        sqlx::query_as("SELECT cmt_hash, rtrim(cmt_msg, E'\\n') FROM aveloxis_data.commit_messages")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(messages, repo.messages());

    // People, times and offsets as git recorded them.
    let (name, raw, date, offset, ts): (String, String, String, i16, String) = sqlx::query_as(
        "SELECT cmt_author_name, cmt_author_raw_email, cmt_author_date, cmt_author_tz_offset,
                to_char(cmt_author_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
         FROM aveloxis_data.commits WHERE cmt_commit_hash = $1 AND cmt_filename = 'README'",
    )
    .bind(repo.mark(1))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (name.as_str(), raw.as_str(), date.as_str(), offset, ts.as_str()),
        (
            "Zoë Ünïcode",
            "zoe@mail.example.org",
            "2023-11-15",
            330,
            "2023-11-14 22:13:20"
        )
    );
    let empty_email: String =
        sqlx::query_scalar("SELECT cmt_author_raw_email FROM aveloxis_data.commits WHERE cmt_commit_hash = $1")
            .bind(repo.mark(5))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(empty_email, "");

    // Aggregates: one patch per commit with an author time, per author and year.
    let patches: i64 = sqlx::query_scalar("SELECT sum(patches)::bigint FROM aveloxis_data.dm_repo_annual")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(patches, 9);
    let (bob_patches, bob_files, bob_added): (i64, i64, i64) = sqlx::query_as(
        "SELECT patches, files, added FROM aveloxis_data.dm_repo_monthly
         WHERE email = 'bob@example.com' AND year = 2023 AND month = 11",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // Bob: one commit changing img.bin and README (binary: 0 lines), two merges.
    assert_eq!((bob_patches, bob_files, bob_added), (3, 2, 0));
    let group_patches: i64 = sqlx::query_scalar("SELECT sum(patches)::bigint FROM aveloxis_data.dm_repo_group_weekly")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(group_patches, 9);
    assert_group_rows_are_the_repositorys(&pool).await;

    // Git-only: the free resolution steps ran; the noreply author got an account, the
    // bot and the empty email were skipped, the rest recorded as misses with a cooldown.
    let alice: (Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT c.cmt_author_platform_username, k.gh_user_id FROM aveloxis_data.commits c
         JOIN aveloxis_data.contributors k ON k.cntrb_id = c.cmt_ght_author_id WHERE c.cmt_commit_hash = $1",
    )
    .bind(repo.mark(2))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(alice, (Some("alice".into()), Some(12345)));
    let misses: BTreeSet<(String, String)> =
        sqlx::query_as("SELECT email, outcome FROM aveloxis_data.unresolved_commit_emails")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let expected_misses: BTreeSet<(String, String)> = [
        ("", "skipped"),
        ("49699333+dependabot[bot]@users.noreply.github.com", "skipped"),
        ("bob@example.com", "not_found"),
        ("carol@example.com", "not_found"),
        ("zoe@mail.example.org", "not_found"),
    ]
    .into_iter()
    .map(|(e, o)| (e.to_string(), o.to_string()))
    .collect();
    assert_eq!(misses, expected_misses);

    // A second run finds nothing new and stores nothing more.
    let stdout = collect(&db, &repo, &clones);
    assert!(
        stdout.contains("facade: incremental walk, 0 commits staged"),
        "{stdout}"
    );
    assert_eq!(stored_numstat(&pool).await, expected);

    // New commits are picked up incrementally.
    repo.import(&[Commit {
        branch: "main",
        mark: 10,
        from: Some(9),
        merge: &[],
        author: "Bob <bob@example.com>",
        time: "1710000000 +0000",
        message: "Later work\n",
        changes: vec![Change::Write("later.txt", &lines(3, "later"))],
    }]);
    let stdout = collect(&db, &repo, &clones);
    assert!(
        stdout.contains("facade: incremental walk, 1 commits staged"),
        "{stdout}"
    );
    assert_eq!(stored_numstat(&pool).await, repo.numstat());

    // A force-push rewrites the last commit: the dropped commit leaves, the new one
    // arrives, nothing is duplicated, and the aggregates follow.
    repo.git(&["update-ref", "refs/heads/main", &repo.mark(9)]);
    repo.import(&[Commit {
        branch: "main",
        mark: 11,
        from: Some(9),
        merge: &[],
        author: "Bob <bob@example.com>",
        time: "1710000001 +0000",
        message: "Later work, rewritten\n",
        changes: vec![Change::Write("later.txt", &lines(5, "rewritten"))],
    }]);
    let stdout = collect(&db, &repo, &clones);
    assert!(stdout.contains("1 commits staged, 1 removed"), "{stdout}");
    assert_eq!(stored_numstat(&pool).await, repo.numstat());
    let (patches, added): (i64, i64) = sqlx::query_as(
        "SELECT patches, added FROM aveloxis_data.dm_repo_annual WHERE email = 'bob@example.com' AND year = 2024",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((patches, added), (1, 5));
    assert_group_rows_are_the_repositorys(&pool).await;
    let orphans: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM aveloxis_data.commit_parents WHERE cmt_commit_hash = $1)
              + (SELECT count(*) FROM aveloxis_data.commit_messages WHERE cmt_hash = $1)",
    )
    .bind(repo.mark(10))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);

    // Rewritten again, then collected in full (force_recollect): the full walk still
    // removes what the rewrite dropped.
    repo.git(&["update-ref", "refs/heads/main", &repo.mark(9)]);
    repo.import(&[Commit {
        branch: "main",
        mark: 12,
        from: Some(9),
        merge: &[],
        author: "Bob <bob@example.com>",
        time: "1710000002 +0000",
        message: "Later work, rewritten twice\n",
        changes: vec![Change::Write("later.txt", &lines(2, "twice"))],
    }]);
    let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(repo.path_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.force_recollect($1)")
        .bind(repo_id)
        .execute(&pool)
        .await
        .unwrap();
    let stdout = collect(&db, &repo, &clones);
    assert!(
        stdout.contains("facade: full walk, 10 commits staged, 1 removed"),
        "{stdout}"
    );
    assert_eq!(stored_numstat(&pool).await, repo.numstat());
    let _ = std::fs::remove_dir_all(&clones);
}

#[tokio::test]
async fn unsafe_urls_are_refused_before_anything_runs() {
    let db = TestDb::with_extension("facade_unsafe").await;
    let pool = db.pool(1).await;
    // add_repo accepts the URL (it is a well-formed https remote); the facade refuses to
    // fetch from a path that git would read as an option, and fails the job as fatal.
    let url = "https://example.org/group/-upload-pack";
    let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo($1)")
        .bind(url)
        .fetch_one(&pool)
        .await
        .unwrap();
    let clones = db.scratch_dir("clones");
    let out = db.agent(&[
        "collect",
        url,
        "--phases",
        "facade",
        "--clone-dir",
        clones.to_str().unwrap(),
    ]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("refusing to clone"), "{stdout}");
    let (class, error): (String, String) = sqlx::query_as(
        "SELECT r.outcome, r.error FROM aveloxis_ops.job_runs r
         WHERE r.repo_id = $1 AND r.phase = 'facade'",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(error.contains("a path part starting with '-'"), "{error}");
    assert_eq!(class, "fatal");
    assert!(!clones.join(format!("repo_{repo_id}")).exists(), "nothing was cloned");
}

#[tokio::test]
async fn the_clone_follows_the_default_branch_and_is_made_again_when_the_origin_changes() {
    let db = TestDb::with_extension("facade_origin").await;
    let pool = db.pool(1).await;
    let repo = ScriptedRepo::new("origin");
    let clones = db.scratch_dir("clones");
    let one = |branch, mark, from, file| Commit {
        branch,
        mark,
        from,
        merge: &[],
        author: "Dee <dee@example.com>",
        time: "1700000000 +0000",
        message: "work\n",
        changes: vec![Change::Write(file, b"x\n")],
    };
    repo.import(&[one("main", 1, None, "a"), one("trunk", 2, Some(1), "b")]);
    collect(&db, &repo, &clones);
    assert_eq!(stored_numstat(&pool).await, repo.numstat());

    // The origin's default branch moves from main to trunk: the next run follows it.
    repo.git(&["symbolic-ref", "HEAD", "refs/heads/trunk"]);
    let stdout = collect(&db, &repo, &clones);
    assert!(stdout.contains("incremental walk, 1 commits staged"), "{stdout}");
    let hashes: BTreeSet<String> = sqlx::query_scalar("SELECT DISTINCT cmt_commit_hash FROM aveloxis_data.commits")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(hashes, [repo.mark(1), repo.mark(2)].into());

    // The repository moves (record_rename): the clone is made again from the new origin.
    let moved = ScriptedRepo::new("origin-moved");
    std::fs::remove_dir_all(&moved.path).unwrap();
    let copy = std::process::Command::new("cp")
        .args(["-a", repo.path_str(), moved.path_str()])
        .status()
        .unwrap();
    assert!(copy.success());
    let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(repo.path_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.record_rename($1, $2)")
        .bind(repo_id)
        .bind(moved.path_str())
        .execute(&pool)
        .await
        .unwrap();
    let clone = clones.join(format!("repo_{repo_id}"));
    let origin = |clone: &std::path::Path| {
        String::from_utf8(
            std::process::Command::new("git")
                .arg("--git-dir")
                .arg(clone)
                .args(["config", "remote.origin.url"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    assert_eq!(origin(&clone).trim(), repo.path_str());
    let stdout = collect(&db, &moved, &clones);
    assert!(stdout.contains("incremental walk, 0 commits staged"), "{stdout}");
    assert_eq!(origin(&clone).trim(), moved.path_str());
    let _ = std::fs::remove_dir_all(&clones);
}

#[tokio::test]
async fn two_repositories_of_one_group_drain_their_aggregates_at_once() {
    // Both drains refresh the group's dm_repo_group_* rows of the same author and year.
    // 0.6.0 let the second delete nothing (the first's rows were not committed yet) and
    // then fail on the first's insert: `duplicate key ... dm_repo_group_annual_pkey`
    // (seen by tests/tests/fault_injection.rs under `run --workers 3`).
    let db = TestDb::with_extension("facade_group_race").await;
    let mut first = db.connect().await;
    let (a, b): (i64, i64) =
        sqlx::query_as("SELECT aveloxis.add_repo('/srv/git/a.git'), aveloxis.add_repo('/srv/git/b.git')")
            .fetch_one(&mut first)
            .await
            .unwrap();
    let envelope = |hash: char| {
        serde_json::json!({
            "hash": hash.to_string().repeat(40), "parents": [], "message": "m\n",
            "author": {"name": "Ann", "email": "ann@example.com", "time": "2024-05-06T07:08:09+00:00"},
            "committer": {"name": "Ann", "email": "ann@example.com", "time": "2024-05-06T07:08:09+00:00"},
            "files": [{"path": format!("{hash}.txt"), "added": 2, "removed": 1}]
        })
        .to_string()
    };
    db.stage(a, "commit", &[envelope('a')]).await;
    db.stage(b, "commit", &[envelope('b')]).await;

    // The first drain refreshes the group's rows and holds its transaction open.
    sqlx::raw_sql("BEGIN").execute(&mut first).await.unwrap();
    let run: i64 = sqlx::query_scalar("SELECT aveloxis.drain_begin($1)")
        .bind(a)
        .fetch_one(&mut first)
        .await
        .unwrap();
    let mut step = String::new();
    for _ in 0..20 {
        step = sqlx::query_scalar("SELECT aveloxis.drain_step($1, $2)")
            .bind(a)
            .bind(run)
            .fetch_one(&mut first)
            .await
            .unwrap();
        if step == "done" {
            break;
        }
    }
    assert_eq!(step, "done");
    // The second drain starts meanwhile and must wait for it, then succeed.
    let second = {
        let url = db.url();
        tokio::spawn(async move {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
            sqlx::query("SELECT set_config('application_name', 'second-drain', false)")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("CALL aveloxis.drain($1)").bind(b).execute(&mut conn).await
        })
    };
    let mut waiting = false;
    for _ in 0..600 {
        waiting = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'second-drain'
                                                         AND wait_event_type = 'Lock')",
        )
        .fetch_one(&mut db.connect().await)
        .await
        .unwrap();
        if waiting || second.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(waiting, "the second drain never waited for the first");
    sqlx::raw_sql("COMMIT").execute(&mut first).await.unwrap();
    second
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the second drain failed: {e}"));
    let group: (i64, i64, i64) = sqlx::query_as(
        "SELECT added, removed, patches FROM aveloxis_data.dm_repo_group_annual
         WHERE email = 'ann@example.com' AND year = 2024",
    )
    .fetch_one(&mut first)
    .await
    .unwrap();
    assert_eq!(group, (4, 2, 2), "the group's row sums both repositories");
}

/// The cases where libgit2's rename pairing and git's differ: more renamed-and-edited
/// files than git's rename limit (git skips inexact detection, keeps exact renames),
/// one deleted file with two equally similar candidates (and two deleted files with one
/// candidate), and renames with edits on both sides of the 50% similarity threshold.
/// Stored rows and their previous paths must be what the git CLI prints.
#[tokio::test]
async fn rename_pairing_is_git_logs_in_large_and_ambiguous_commits() {
    let db = TestDb::with_extension("facade_renames").await;
    let repo = ScriptedRepo::new("facade-renames");
    let clones = db.scratch_dir("clones");
    let pool = db.pool(2).await;

    let file = |i: usize, tag: &str| lines(20, &format!("{tag} {i:04}"));
    let edited = |i: usize, tag: &str| {
        let mut body = file(i, tag);
        body.extend_from_slice(b"edited in the move\n");
        body
    };
    // 1,050 vendored files moved, renamed and edited (1,050 x 1,050 inexact candidates:
    // over git's limit of 1,000 x 1,000) and 50 moved unchanged.
    let vendored: Vec<(String, Vec<u8>)> = (0..1100)
        .map(|i| (format!("vendor/lib-1.0/f{i:04}.c"), file(i, "lib")))
        .collect();
    let moved: Vec<(String, Vec<u8>)> = (0..1100)
        .map(|i| {
            let body = if i < 1050 { edited(i, "lib") } else { file(i, "lib") };
            // Another basename: git's basename pass would pair them before its limit.
            (format!("vendor/lib-2.0/g{i:04}.c"), body)
        })
        .collect();
    // One file, two copies with one different line each: equally similar.
    let original = lines(20, "twin");
    let mut twin_a = lines(20, "twin");
    twin_a.extend_from_slice(b"a\n");
    let mut twin_b = lines(20, "twin");
    twin_b.extend_from_slice(b"b\n");
    // Renames with k of 20 lines replaced by lines of the same length: 30% to 70% of
    // the bytes, around git's 50% threshold.
    let threshold: Vec<(usize, Vec<u8>, Vec<u8>)> = (6..=14)
        .map(|k| {
            let before = lines(20, &format!("edge{k}"));
            let after: Vec<u8> = (0..20)
                .map(|i| {
                    if i < k {
                        format!("EDGE{k} line {i}\n")
                    } else {
                        format!("edge{k} line {i}\n")
                    }
                })
                .collect::<String>()
                .into_bytes();
            (k, before, after)
        })
        .collect();

    let mut first = vec![Change::Write("twins/original.txt", &original)];
    first.extend(vendored.iter().map(|(p, b)| Change::Write(p, b)));
    let edge_paths: Vec<(String, String)> = threshold
        .iter()
        .map(|(k, ..)| (format!("edge/before{k}.txt"), format!("edge/after{k}.txt")))
        .collect();
    for ((before_path, _), (_, before, _)) in edge_paths.iter().zip(&threshold) {
        first.push(Change::Write(before_path, before));
    }
    let mut vendor_move: Vec<Change<'_>> = vendored.iter().map(|(p, _)| Change::Delete(p)).collect();
    vendor_move.extend(moved.iter().map(|(p, b)| Change::Write(p, b)));
    let mut edges: Vec<Change<'_>> = Vec::new();
    for ((before_path, after_path), (_, _, after)) in edge_paths.iter().zip(&threshold) {
        edges.push(Change::Delete(before_path));
        edges.push(Change::Write(after_path, after));
    }
    fn commit<'a>(mark: u32, message: &'a str, changes: Vec<Change<'a>>) -> Commit<'a> {
        Commit {
            branch: "main",
            mark,
            from: (mark > 1).then_some(mark - 1),
            merge: &[],
            author: "Vendor Bot <vendor@example.org>",
            time: "1700000000 +0000",
            message,
            changes,
        }
    }
    repo.import(&[
        commit(1, "Vendor lib 1.0\n", first),
        commit(2, "Update vendored lib to 2.0\n", vendor_move),
        commit(
            3,
            "One file, two equal candidates\n",
            vec![
                Change::Delete("twins/original.txt"),
                Change::Write("twins/copy-a.txt", &twin_a),
                Change::Write("twins/copy-b.txt", &twin_b),
            ],
        ),
        commit(
            4,
            "Two files, one candidate\n",
            vec![
                Change::Delete("twins/copy-a.txt"),
                Change::Delete("twins/copy-b.txt"),
                Change::Write("twins/merged.txt", &original),
            ],
        ),
        commit(5, "Renames at the threshold\n", edges),
    ]);

    let stdout = collect(&db, &repo, &clones);
    assert!(stdout.contains("facade: full walk, 5 commits staged"), "{stdout}");
    let (stored, expected) = (stored_numstat(&pool).await, repo.numstat());
    assert!(
        stored == expected,
        "stored and not in git log: {:?}; in git log and not stored: {:?}",
        stored.difference(&expected).take(5).collect::<Vec<_>>(),
        expected.difference(&stored).take(5).collect::<Vec<_>>()
    );
    let stored_renames: BTreeSet<(String, String, String)> = sqlx::query_as(
        "SELECT cmt_commit_hash, cmt_previous_filename, cmt_filename FROM aveloxis_data.commits
         WHERE cmt_previous_filename IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let git_renames = repo.renames();
    assert!(
        stored_renames == git_renames,
        "renames stored and not in git: {:?}; in git and not stored: {:?}",
        stored_renames.difference(&git_renames).take(5).collect::<Vec<_>>(),
        git_renames.difference(&stored_renames).take(5).collect::<Vec<_>>()
    );
    // The cases are really there: git kept only the 50 exact renames of the big move,
    // paired the original with one twin, one twin with the merged file, and some but not
    // all of the threshold renames.
    let of = |mark: u32| git_renames.iter().filter(|r| r.0 == repo.mark(mark)).count();
    assert_eq!(of(2), 50, "exact renames of the big move");
    assert_eq!((of(3), of(4)), (1, 1));
    assert!(of(5) > 0 && of(5) < 9, "threshold renames paired: {}", of(5));
}
