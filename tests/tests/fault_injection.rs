//! Fault injection: the drain's backend terminated mid-batch, the cluster restarted
//! (immediate, as in a crash) while `aveloxis-agent run` works with three workers, and the
//! agent SIGKILLed mid-walk and mid-API-collection. After recovery (lease expiry, or the
//! agent reconnecting by itself) the database must hold exactly what an uninterrupted run
//! of the same data stores: 0 rows lost, 0 duplicated (a canonical dump of every
//! `aveloxis_data` table compared as a multiset).
//!
//! No timed assertions: every wait polls a condition and fails after a generous bound.

use std::ffi::OsStr;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::gitrepo::{Change, Commit, ScriptedRepo};
use harness::private_cluster::PrivateCluster;
use harness::replay::{github_fixtures, ReplayServer};
use harness::sqlx::{self, Connection, PgConnection};
use harness::{agent_bin, diff, fixture_records, TestDb};
use serde_json::{json, Value};

/// How long any wait may take before the test fails.
const BOUND: Duration = Duration::from_secs(120);

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// Runs statements; panics with the SQL on failure.
async fn exec(url: &str, sql: &str) {
    let mut conn = connect(url).await;
    if let Err(e) = sqlx::raw_sql(sql).execute(&mut conn).await {
        panic!("SQL failed: {e}\n{sql}");
    }
}

/// One bigint, or None while the server cannot answer (it may be restarting).
async fn try_i64(url: &str, sql: &str) -> Option<i64> {
    let mut conn = PgConnection::connect(url).await.ok()?;
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.ok()
}

async fn i64_of(url: &str, sql: &str) -> i64 {
    let mut conn = connect(url).await;
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
}

async fn text_of(url: &str, sql: &str) -> String {
    let mut conn = connect(url).await;
    sqlx::query_scalar::<_, Option<String>>(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .unwrap_or_default()
}

/// Polls `check` until it gives a value; fails saying `what` after [`BOUND`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {} s", BOUND.as_secs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every table of `aveloxis_data`, without the columns that differ between two databases
/// holding the same data: identity keys, the columns referring to them, `repo_id`, and
/// `attempts` (how often an email was looked up depends on how concurrent jobs interleave).
const TABLES: &str = "
SELECT c.relname::text,
       coalesce(array_agg(a.attname::text) FILTER (WHERE a.attidentity <> '' OR a.attname IN ('repo_id', 'attempts')
           OR EXISTS (SELECT FROM pg_constraint f, generate_subscripts(f.conkey, 1) k, pg_attribute r
                      WHERE f.contype = 'f' AND f.conrelid = c.oid AND f.conkey[k] = a.attnum
                        AND r.attrelid = f.confrelid AND r.attnum = f.confkey[k] AND r.attidentity <> '')), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'aveloxis_data' AND c.relkind = 'r'
GROUP BY c.relname ORDER BY 1";

/// A canonical dump of the stored data: one sorted line per row (duplicates stay visible).
/// Times of the last day or later were taken from the clock while collecting (collection
/// dates, retry times), not from the data: they read `(clock)`.
async fn dump(url: &str) -> String {
    let mut conn = connect(url).await;
    let tables: Vec<(String, Vec<String>)> = sqlx::query_as(TABLES).fetch_all(&mut conn).await.unwrap();
    let mut lines = Vec::new();
    for (table, volatile) in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            r#"SELECT coalesce((SELECT jsonb_object_agg(k, CASE
                   WHEN v #>> '{{}}' !~ '^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:\d\d)?|Z)$' THEN v
                   WHEN (v #>> '{{}}')::timestamptz > now() - interval '1 day' THEN '"(clock)"' ELSE v END)
                 FROM jsonb_each(to_jsonb(t) - $1::text[]) AS e(k, v)), '{{}}')::text
               FROM aveloxis_data.{table} t"#
        ))
        .bind(&volatile)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("dumping {table}: {e}"));
        lines.extend(rows.into_iter().map(|r| format!("{table} {r}")));
    }
    lines.sort();
    lines.join("\n") + "\n"
}

/// Asserts the faulted database stores exactly what the uninterrupted one does.
async fn assert_same_data(reference: &str, faulted: &str, what: &str) {
    let (expected, got) = (dump(reference).await, dump(faulted).await);
    if expected != got {
        let diff = diff("uninterrupted", &expected, "faulted", &got);
        let mut count = std::collections::BTreeMap::<String, usize>::new();
        for l in diff
            .lines()
            .filter(|l| l.starts_with(['-', '+']) && !l.starts_with("---") && !l.starts_with("+++"))
        {
            *count.entry(l.split(' ').next().unwrap().to_string()).or_default() += 1;
        }
        let head: Vec<&str> = diff.lines().take(60).collect();
        panic!(
            "{what}: the stored rows differ from the uninterrupted run's, rows per table (- uninterrupted, \
             + faulted): {count:?}\n{}\n...",
            head.join("\n")
        );
    }
}

async fn add_repos(url: &str, urls: &[&str]) -> Vec<i64> {
    let mut conn = connect(url).await;
    let mut ids = Vec::new();
    for u in urls {
        ids.push(
            sqlx::query_scalar("SELECT aveloxis.add_repo($1)")
                .bind(u)
                .fetch_one(&mut conn)
                .await
                .unwrap(),
        );
    }
    ids
}

/// A directory under the temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("aveloxis-fi-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Arguments from one line (the paths in tests have no spaces).
fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

/// Starts the agent against `url`, its stdout and stderr into `log` (a pipe nobody reads
/// could fill and stall it); killed if the test ends first.
fn spawn_agent<S: AsRef<OsStr>>(url: &str, args: &[S], env: &[(&str, &str)], log: &str) -> tokio::process::Child {
    let file = std::fs::File::create(log).unwrap();
    tokio::process::Command::new(agent_bin())
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("AVELOXIS_CONFIG")
        .env_remove("GITHUB_TOKENS")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .expect("start aveloxis-agent")
}

/// Waits (bounded) for the agent to exit and asserts it succeeded; returns its log.
async fn exits_cleanly(mut agent: tokio::process::Child, log: &str) -> String {
    let status = tokio::time::timeout(BOUND * 3, agent.wait())
        .await
        .unwrap_or_else(|_| panic!("the agent did not exit:\n{}", read(log)))
        .unwrap();
    let text = read(log);
    assert!(status.success(), "the agent failed ({status}):\n{text}");
    text
}

fn read(log: &str) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// A history of `n` commits, each rewriting one of 25 files with contents that name the
/// repository (so two repositories never share a commit).
fn history(label: &str, n: usize) -> ScriptedRepo {
    let repo = ScriptedRepo::new(label);
    let authors = [
        "Ann Example <ann@example.com>",
        "Bo <bo@example.org>",
        "Cy <12345+cy@users.noreply.github.com>",
        "Dee <>",
    ];
    let contents: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{label} {i}\n").repeat(i % 7 + 1).into_bytes())
        .collect();
    let messages: Vec<String> = (0..n).map(|i| format!("{label}: change {i}\n")).collect();
    let times: Vec<String> = (0..n).map(|i| format!("{} +0000", 1_600_000_000 + i * 3600)).collect();
    let paths: Vec<String> = (0..n).map(|i| format!("src/f{}.txt", i % 25)).collect();
    let commits: Vec<Commit> = (0..n)
        .map(|i| Commit {
            branch: "main",
            mark: i as u32 + 1,
            from: (i > 0).then_some(i as u32),
            merge: &[],
            author: authors[i % authors.len()],
            time: &times[i],
            message: &messages[i],
            changes: vec![Change::Write(&paths[i], &contents[i])],
        })
        .collect();
    repo.import(&commits);
    repo
}

/// `n` GitHub issue payloads shaped like a recorded one: varied reporters, labels, states.
fn issue_payloads(n: i64) -> Vec<String> {
    let template = fixture_records("github/issues/octokit/paginate-issues.normalized-fixture.json").remove(0);
    (1..=n)
        .map(|k| {
            let mut issue = template.clone();
            let user = 1000 + k % 37;
            issue["id"] = json!(700_000_000 + k);
            issue["number"] = json!(k);
            issue["node_id"] = json!(format!("I_fault{k}"));
            issue["title"] = json!(format!("Fault issue {k}"));
            issue["body"] = json!(format!("Body of issue {k}.\n").repeat((k % 9 + 1) as usize));
            issue["user"]["id"] = json!(user);
            issue["user"]["login"] = json!(format!("user-{user}"));
            issue["user"]["node_id"] = json!(format!("U_fault{user}"));
            issue["labels"] = json!([{"id": 9000 + k % 5, "node_id": format!("LA{}", k % 5),
                "name": format!("area/{}", k % 5), "color": "ededed", "default": false, "description": null}]);
            issue["state"] = json!(if k % 3 == 0 { "open" } else { "closed" });
            issue["closed_at"] = if k % 3 == 0 {
                Value::Null
            } else {
                json!("2020-01-02T03:04:05Z")
            };
            issue["url"] = json!(format!("https://api.github.com/repos/fault/drain/issues/{k}"));
            issue["html_url"] = json!(format!("https://github.com/fault/drain/issues/{k}"));
            issue.to_string()
        })
        .collect()
}

#[tokio::test]
async fn drain_backend_terminated_mid_batch_loses_and_doubles_nothing() {
    const ISSUES: i64 = 4000;
    let payloads = issue_payloads(ISSUES);
    let reference = TestDb::with_extension("fi_drain_ref").await;
    let repo = add_repos(&reference.url(), &["https://github.com/fault/drain"]).await[0];
    reference.stage(repo, "issue", &payloads).await;
    exec(&reference.url(), &format!("CALL aveloxis.drain({repo}, 50)")).await;

    let db = TestDb::with_extension("fi_drain").await;
    let url = db.url();
    let repo = add_repos(&url, &["https://github.com/fault/drain"]).await[0];
    db.stage(repo, "issue", &payloads).await;
    let mut victim = db.connect().await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut victim)
        .await
        .unwrap();
    let drain = tokio::spawn(async move {
        sqlx::query("CALL aveloxis.drain($1, 50)")
            .bind(repo)
            .execute(&mut victim)
            .await
            .map(|_| ())
    });
    let drained = "SELECT count(drained_at) FROM aveloxis_ops.staging";
    let url_ = url.as_str();
    wait_for("the drain committed a batch", move || async move {
        Some(i64_of(url_, drained).await).filter(|n| *n > 0)
    })
    .await;
    let terminated = i64_of(&url, &format!("SELECT pg_terminate_backend({pid})::int::int8")).await;
    let result = tokio::time::timeout(BOUND, drain)
        .await
        .expect("the drain ends")
        .unwrap();
    let at_kill = i64_of(&url, drained).await;
    assert!(
        terminated == 1 && result.is_err() && at_kill < ISSUES,
        "the drain was not cut mid-run (terminated {terminated}, result {result:?}, {at_kill} of {ISSUES} drained): \
         stage more rows"
    );

    // The next drain takes over where the committed batches stopped.
    exec(&url, &format!("CALL aveloxis.drain({repo}, 50)")).await;
    // Every staged row drained, none rejected; over both runs each issue inserted once and
    // never written again; exactly the staged ids (count, distinct, bounds of a range).
    let summary = text_of(
        &url,
        "SELECT format('%s undrained, %s rejected; %s; %s issues, %s distinct ids from %s to %s',
                (SELECT count(*) FROM aveloxis_ops.staging WHERE drained_at IS NULL),
                (SELECT count(*) FROM aveloxis_ops.staging_rejects),
                (SELECT format('%s inserted, %s updated, %s unchanged, %s rejected', sum(inserted), sum(updated),
                               sum(unchanged), sum(rejected))
                 FROM aveloxis_ops.drain_run_counts WHERE entity = 'issue'),
                count(*), count(DISTINCT platform_issue_id), min(platform_issue_id), max(platform_issue_id))
         FROM aveloxis_data.issues",
    )
    .await;
    let (first, last) = (700_000_001, 700_000_000 + ISSUES);
    assert_eq!(
        summary,
        format!(
            "0 undrained, 0 rejected; {ISSUES} inserted, 0 updated, 0 unchanged, 0 rejected; \
             {ISSUES} issues, {ISSUES} distinct ids from {first} to {last}"
        )
    );
    assert_same_data(&reference.url(), &url, "drain terminated mid-batch").await;
}

/// Progress of the queue and staging, to tell a stalled recovery from a working one.
const PROGRESS: &str = "
SELECT concat_ws('/', (SELECT count(*) FROM aveloxis_ops.staging), (SELECT count(drained_at) FROM aveloxis_ops.staging),
                 (SELECT count(*) FROM aveloxis_ops.job_runs), (SELECT count(finished_at) FROM aveloxis_ops.job_runs),
                 (SELECT string_agg(job_id || lease_owner, ',') FROM aveloxis_ops.jobs))";

const QUEUE_STATE: &str = "
SELECT string_agg(format('job %s repo %s: leased by %s, success %s, backoff until %s, error %s',
                         job_id, repo_id, lease_owner, last_success_at, backoff_until, last_error), E'\n' ORDER BY job_id)
FROM aveloxis_ops.jobs";

/// Each run: its outcome, the commits its lease staged and those it reported staging.
const RUNS: &str = "
SELECT string_agg(format('run %s, job %s, %s: %s, %s rows in staging, %s reported; %s', r.run_id, r.job_id, r.agent,
                         r.outcome, (SELECT count(*) FROM aveloxis_ops.staging s WHERE s.job_run_id = r.run_id),
                         r.result -> 'counts' ->> 'commit', r.error), E'\n' ORDER BY r.run_id)
FROM aveloxis_ops.job_runs r";

/// Five repositories collected by `run --workers 3` on a private cluster (`conf` added to
/// cluster.sh's settings) restarted with `pg_ctl restart -m immediate` while jobs are in
/// progress: the agent must live through it and end with the uninterrupted run's data.
async fn restart_during_run(label: &str, conf: &str) {
    const REPOS: usize = 5;
    let scratch = Scratch::new(label);
    let repos: Vec<ScriptedRepo> = (0..REPOS).map(|i| history(&format!("{label}-{i}"), 1500)).collect();
    let paths: Vec<&str> = repos.iter().map(ScriptedRepo::path_str).collect();
    let facade = |clones: &str, extra: &str| {
        args(&format!(
            "run --phases facade --poll-seconds 1 --clone-dir {clones} {extra}"
        ))
    };

    // The reference: one worker, so nothing but the data decides what it stores.
    let reference = TestDb::with_extension(label).await;
    add_repos(&reference.url(), &paths).await;
    let log = scratch.path("reference.log");
    let args = facade(&scratch.path("clones-ref"), "--once --workers 1");
    let out = exits_cleanly(spawn_agent(&reference.url(), &args, &[], &log), &log).await;
    assert!(out.contains(&format!("{REPOS} jobs run, 0 failed")), "{out}");

    let cluster = PrivateCluster::start(label, conf);
    let url = cluster.url.as_str();
    let roots = std::env::temp_dir();
    exec(
        url,
        &format!(
            "CREATE EXTENSION pg_aveloxis;
             SELECT aveloxis.set_setting('registry.local_path_roots', '{}');",
            roots.display()
        ),
    )
    .await;
    add_repos(url, &paths).await;
    let log = scratch.path("restarted.log");
    let args = facade(&scratch.path("clones"), "--agent crashy --workers 3");
    let mut agent = spawn_agent(url, &args, &[], &log);
    wait_for("the workers leased jobs and staged commits", move || async move {
        let sql = "SELECT count(*) FROM aveloxis_ops.jobs WHERE lease_owner IS NOT NULL
                     AND EXISTS (SELECT FROM aveloxis_ops.staging)";
        try_i64(url, sql).await.filter(|n| *n > 0)
    })
    .await;
    cluster.restart_immediate();
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent exited on the restart:\n{}",
        read(&log)
    );
    let done = "SELECT count(last_success_at) FROM aveloxis_ops.jobs";
    assert!(
        i64_of(url, done).await < REPOS as i64,
        "every job had completed before the restart: make the histories longer"
    );

    // Recovery: the agent reconnects by itself. A job the outage failed waits out its
    // backoff; a lease whose holder never heard back waits for its expiry. When nothing
    // moves for a while, time passes (clock.offset in hours: past every lease and backoff,
    // short of the 1-day cadence).
    let deadline = Instant::now() + BOUND * 3;
    let (mut last, mut still_since, mut hours) = (String::new(), Instant::now(), 0);
    while try_i64(url, done).await != Some(REPOS as i64) {
        if let Some(status) = agent.try_wait().unwrap() {
            panic!("the agent exited after the restart ({status}):\n{}", read(&log));
        }
        let progress = match PgConnection::connect(url).await {
            Ok(mut c) => sqlx::query_scalar::<_, String>(PROGRESS).fetch_one(&mut c).await.ok(),
            Err(_) => None,
        };
        match progress {
            Some(p) if p != last => (last, still_since) = (p, Instant::now()),
            Some(_) if still_since.elapsed() > Duration::from_secs(15) && hours < 12 => {
                hours += 1;
                let tick =
                    format!("SELECT aveloxis.set_setting('clock.offset', '{hours} hours'); CALL aveloxis.tick();");
                exec(url, &tick).await;
                still_since = Instant::now();
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the facade jobs did not all complete after the restart (clock moved {hours} h):\n{}\n{}",
            text_of(url, QUEUE_STATE).await,
            read(&log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Stopped, the agent leaves nothing leased and exits 0.
    let pid = agent.id().expect("the agent runs") as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let text = exits_cleanly(agent, &log).await;
    let leased = i64_of(
        url,
        "SELECT count(*) FROM aveloxis_ops.jobs WHERE lease_owner IS NOT NULL",
    )
    .await;
    let pending = i64_of(
        url,
        "SELECT count(*) FROM aveloxis_ops.staging WHERE drained_at IS NULL",
    )
    .await;
    assert_eq!(
        (leased, pending),
        (0, 0),
        "(leased jobs, undrained rows) after the stop:\n{text}"
    );
    let runs = text_of(url, RUNS).await;
    assert_same_data(
        &reference.url(),
        url,
        &format!("cluster restarted during run; the runs:\n{runs}\n"),
    )
    .await;
}

#[tokio::test]
async fn cluster_restart_during_run_with_three_workers_loses_and_doubles_nothing() {
    // Durable commits, as a production server has them (synchronous_commit's default).
    restart_during_run("fi-restart", "synchronous_commit = on").await;
}

/// cluster.sh's own settings (synchronous_commit = off): a crash may lose the last
/// commits PostgreSQL acknowledged. A job whose acknowledged staging was lost must not
/// complete as if it had been stored (or the rows are lost for good: the next facade run
/// walks only what is new since the head it recorded).
#[tokio::test]
async fn cluster_restart_with_asynchronous_commit_loses_nothing_either() {
    restart_during_run("fi-restart-async", "").await;
}

/// `run` (`args`) collects `repo` uninterrupted in one database; in another it is killed
/// (SIGKILL) once `staged` says it is mid-job, its lease expires (the clock an hour on,
/// then `tick()`), and a second agent finishes the job. Both databases must then hold the
/// same rows. Returns the second.
async fn kill_expire_rescue(
    label: &str,
    scratch: &Scratch,
    repo: &str,
    runs: [Vec<String>; 2],
    env: &[(&str, &str)],
    staged: &str,
) -> TestDb {
    let [reference_args, run] = runs;
    let reference = TestDb::with_extension(&format!("{label}_ref")).await;
    add_repos(&reference.url(), &[repo]).await;
    let log = scratch.path("reference.log");
    let once = [reference_args, args("--once")].concat();
    exits_cleanly(spawn_agent(&reference.url(), &once, env, &log), &log).await;

    let db = TestDb::with_extension(label).await;
    let url = &db.url();
    add_repos(url, &[repo]).await;
    let log = scratch.path("victim.log");
    let mut victim = spawn_agent(
        url,
        &[run.clone(), args("--workers 1 --agent victim")].concat(),
        env,
        &log,
    );
    wait_for("the agent staged rows", move || async move {
        Some(i64_of(url, staged).await).filter(|n| *n > 0)
    })
    .await;
    victim.kill().await.unwrap();
    let held = "SELECT format('%s; %s runs finished', (SELECT lease_owner FROM aveloxis_ops.jobs WHERE lease_owner IS NOT NULL),
                              (SELECT count(finished_at) FROM aveloxis_ops.job_runs))";
    assert_eq!(
        text_of(url, held).await,
        "victim/1; 0 runs finished",
        "killed mid-job:\n{}",
        read(&log)
    );

    exec(
        url,
        "SELECT aveloxis.set_setting('clock.offset', '1 hour'); CALL aveloxis.tick();",
    )
    .await;
    let log = scratch.path("rescuer.log");
    let rescuer = [run, args("--workers 1 --agent rescuer --once")].concat();
    exits_cleanly(spawn_agent(url, &rescuer, env, &log), &log).await;
    let runs = "SELECT string_agg(agent || ' ' || outcome, ', ' ORDER BY run_id) FROM aveloxis_ops.job_runs";
    assert_eq!(text_of(url, runs).await, "victim/1 lease_expired, rescuer/1 complete");
    assert_same_data(&reference.url(), url, &format!("{label}: agent killed mid-job")).await;
    db
}

#[tokio::test]
async fn agent_sigkilled_mid_walk_loses_and_doubles_nothing() {
    const COMMITS: i64 = 6000;
    let repo = history("fi-kill-walk", COMMITS as usize);
    let scratch = Scratch::new("kill-walk");
    let run = |dir: &str| {
        args(&format!(
            "run --phases facade --poll-seconds 1 --clone-dir {}",
            scratch.path(dir)
        ))
    };
    let staged = "SELECT count(*) FROM aveloxis_ops.staging WHERE entity = 'commit'";
    let runs = [run("clones-ref"), run("clones")];
    let db = kill_expire_rescue("fi_kill_walk", &scratch, repo.path_str(), runs, &[], staged).await;
    let walked = i64_of(
        &db.url(),
        "SELECT count(*) FROM aveloxis_ops.staging s JOIN aveloxis_ops.job_runs r ON r.run_id = s.job_run_id
         WHERE r.agent = 'victim/1'",
    )
    .await;
    assert!(
        walked < COMMITS,
        "the victim staged all {COMMITS} commits before it was killed: make the history longer"
    );
}

#[tokio::test]
async fn agent_sigkilled_mid_api_collection_loses_and_doubles_nothing() {
    let fixtures = github_fixtures();
    let fixtures: Vec<&str> = fixtures.iter().map(String::as_str).collect();
    let reference = ReplayServer::start().await;
    reference.load_repository(&fixtures).await;
    // Slow answers, so the kill lands between two lists.
    let slow = ReplayServer::start().await;
    slow.load_repository_slowly(&fixtures, Duration::from_millis(150)).await;
    let run = |api: String| args(&format!("run --phases collect --poll-seconds 1 --github-api-url {api}"));
    kill_expire_rescue(
        "fi_kill_api",
        &Scratch::new("kill-api"),
        "https://github.com/PyGithub/PyGithub",
        [run(reference.api_url()), run(slow.api_url())],
        &[("GITHUB_TOKENS", "tok-1")],
        "SELECT count(DISTINCT entity) - 1 FROM aveloxis_ops.staging",
    )
    .await;
}
