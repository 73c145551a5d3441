//! Identity convergence benchmark (docs/benchmarks.md): `scripts/bench.sh identity [people]`.
//!
//! Part 1, convergence on a replayed fleet: `people` accounts known from the API (as the
//! drain makes them: login and id only) and as many email-only rows (as commit authors
//! make them), shaped like the reference's cohorts: most profiles say a company or a
//! location, a few accounts renamed or deleted; of the emails some are noreply addresses,
//! some another known account's, some found by GitHub's user search, more by its commit
//! search (the reference: ~8-11% and ~35%), the rest nobody's. The real agent code
//! (`phases::identity::run_batch`, default batch sizes) runs enrichment and search-resolve
//! batches against a local GitHub until nothing is due; after each round the shares of
//! active contributors with an account, a company and a canonical email are printed, with
//! the API calls per resolved contributor.
//!
//! Part 2, merge throughput on 100,000 contributors: 10,000 logged, reversible merges
//! (`merge_contributors`) side by side with 10,000 others done by 0.13.0's unlogged
//! merge_contributors (one call per merge each), then person_of() lookups, the whole
//! contributor_persons view, merge_suggestions() and the 10,000 unmerges.

use std::time::Instant;

use aveloxis_agent::forge::github::{GithubClient, GithubConfig};
use aveloxis_agent::forge::tokens::TokenPool;
use aveloxis_agent::phases::identity::run_batch;
use harness::sqlx::{self, PgPool};
use harness::TestDb;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// What the fake GitHub knows of account `id` (1..=people): its profile.
fn profile(id: i64) -> Option<Value> {
    match id % 20 {
        0 => None, // deleted: 5%
        1 => Some(json!({"id": id, "login": format!("renamed{id}"), "type": "User", "location": "Somewhere"})),
        2..=8 => Some(json!({"id": id, "login": format!("user{id}"), "type": "User"})), // empty profile: 35%
        _ => Some(json!({"id": id, "login": format!("user{id}"), "type": "User",
                         "company": format!("Company {}", id % 97), "location": "City",
                         "email": format!("user{id}@mail.example")})),
    }
}

/// The cohort of email-only row `k`: what finds its account, if anything.
enum Cohort {
    /// `<id>+login@users.noreply.github.com` of a known account (free).
    Noreply(i64),
    /// The public email of a known account: the user search finds it (a duplicate: merge).
    Duplicate(i64),
    /// An account nobody collected, found by the user search.
    UserSearch(i64),
    /// An account nobody collected, found by the commit search only.
    CommitSearch(i64),
    Nobody,
}

fn cohort(k: i64, people: i64) -> Cohort {
    match k % 20 {
        0 | 1 => Cohort::Noreply(1 + k % people),
        2..=4 => Cohort::Duplicate(1 + (k * 7) % people),
        5 | 6 => Cohort::UserSearch(1_000_000 + k),
        7..=12 => Cohort::CommitSearch(2_000_000 + k),
        _ => Cohort::Nobody,
    }
}

fn email_of(k: i64, people: i64) -> String {
    match cohort(k, people) {
        Cohort::Noreply(id) => format!("{id}+user{id}@users.noreply.github.com"),
        _ => format!("dev{k}@corp{}.example", k % 13),
    }
}

fn github_answer(req: &Request, people: i64) -> ResponseTemplate {
    let reset = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    let ok = |v: Value, bucket: &str| {
        ResponseTemplate::new(200)
            .set_body_json(v)
            .insert_header("x-ratelimit-remaining", "4999")
            .insert_header("x-ratelimit-reset", reset.as_str())
            .insert_header("x-ratelimit-resource", bucket)
    };
    let missing = || ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}));
    let path = req.url.path();
    let query: String = req
        .url
        .query_pairs()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let empty = json!({"total_count": 0, "incomplete_results": false, "items": []});
    if let Some(login) = path.strip_prefix("/users/") {
        let id: i64 = login.trim_start_matches("user").parse().unwrap_or(0);
        return match profile(id) {
            Some(p) if p["login"] == login => ok(p, "core"),
            _ => missing(),
        };
    }
    if let Some(id) = path.strip_prefix("/user/") {
        return match profile(id.parse().unwrap_or(0)) {
            Some(p) => ok(p, "core"),
            None => missing(),
        };
    }
    let k = |q: &str| -> Option<i64> {
        let local = q.split('@').next()?;
        local.rsplit("dev").next()?.parse().ok()
    };
    if path == "/search/users" {
        let email = query.trim_end_matches(" in:email");
        return match k(email).map(|k| cohort(k, people)) {
            Some(Cohort::Duplicate(id)) => ok(
                json!({"total_count": 1, "items": [{"id": id, "login": format!("user{id}")}]}),
                "search",
            ),
            Some(Cohort::UserSearch(id)) => ok(
                json!({"total_count": 1, "items": [{"id": id, "login": format!("user{id}")}]}),
                "search",
            ),
            _ => ok(empty, "search"),
        };
    }
    if path == "/search/commits" {
        let email = query.trim_start_matches("author-email:");
        return match k(email).map(|k| cohort(k, people)) {
            Some(Cohort::CommitSearch(id)) => ok(
                json!({"total_count": 1, "items": [{"sha": "a", "author": {"id": id, "login": format!("user{id}")}}]}),
                "search",
            ),
            _ => ok(empty, "search"),
        };
    }
    missing()
}

/// (active, with an account, with a company, with a canonical email)
async fn shares(pool: &PgPool) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE gh_user_id IS NOT NULL OR gl_id IS NOT NULL),
                count(*) FILTER (WHERE cntrb_company IS NOT NULL), count(*) FILTER (WHERE cntrb_canonical IS NOT NULL)
         FROM aveloxis_data.contributors WHERE cntrb_deleted = 0",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn convergence(people: i64) {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(move |req: &Request| github_answer(req, people))
        .mount(&server)
        .await;
    let db = TestDb::with_extension("bench_identity").await;
    let pool = db.pool(4).await;
    db.execute("SELECT aveloxis.set_setting('enrich.every', '0'); SELECT aveloxis.set_setting('search.every', '0')")
        .await;
    // Accounts as the drain makes them, and email-only rows as commit authors make them.
    sqlx::query(
        "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gh_user_id, gh_login)
         SELECT aveloxis.platform_uuid(1::smallint, i), 'user' || i, i, 'user' || i FROM generate_series(1, $1) i;
         ",
    )
    .bind(people)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO aveloxis_data.contributor_identities (platform_id, platform_user_id, cntrb_id, login)
         SELECT 1, i, aveloxis.platform_uuid(1::smallint, i), 'user' || i FROM generate_series(1, $1) i",
    )
    .bind(people)
    .execute(&pool)
    .await
    .unwrap();
    let emails: Vec<String> = (0..people).map(|k| email_of(k, people)).collect();
    // Duplicates: the account's public email is the commit email (the user search finds it).
    sqlx::query(
        "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email, tool_source)
         SELECT gen_random_uuid(), e, 'commit author' FROM unnest($1::text[]) e",
    )
    .bind(&emails)
    .execute(&pool)
    .await
    .unwrap();
    let gh = GithubClient::new(
        GithubConfig::new(&format!("{}/", server.uri())).unwrap(),
        TokenPool::new(["tok".to_string()], 1, pool.clone()),
    )
    .unwrap();
    let start = shares(&pool).await;
    println!(
        "convergence: {people} API accounts + {people} email-only rows; default batches (enrich.batch, search.batch)"
    );
    println!("round | runs | requests | active | with account | with company | with canonical email");
    let pct = |n: i64, of: i64| 100.0 * n as f64 / of.max(1) as f64;
    let line = |round: usize, runs: usize, requests: usize, s: (i64, i64, i64, i64)| {
        println!(
            "{round:>5} | {runs:>4} | {requests:>8} | {:>6} | {:>11.1}% | {:>11.1}% | {:>19.1}%",
            s.0,
            pct(s.1, s.0),
            pct(s.2, s.0),
            pct(s.3, s.0)
        );
    };
    line(0, 0, 0, start);
    let (mut runs, mut requests, mut round) = (0usize, 0usize, 0usize);
    let mut merged_linked = 0i64;
    // Requests by task, and what each task settled.
    let (mut enrich_requests, mut search_requests) = (0usize, 0usize);
    let started = Instant::now();
    loop {
        round += 1;
        let mut any = false;
        for task in ["enrich", "search"] {
            if let Some(run) = run_batch(&pool, "bench", task, 1, 1, &gh, None).await.unwrap() {
                any = true;
                runs += 1;
                requests += run.requests;
                if task == "enrich" {
                    enrich_requests += run.requests;
                } else {
                    search_requests += run.requests;
                }
                if let Some(s) = &run.summary {
                    merged_linked += s["linked"].as_i64().unwrap_or(0) + s["merged"].as_i64().unwrap_or(0);
                }
            }
        }
        if !any {
            break;
        }
        line(round, runs, requests, shares(&pool).await);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (attempted, enriched): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE cntrb_last_enriched_at IS NOT NULL),
                count(*) FILTER (WHERE cntrb_company IS NOT NULL OR cntrb_location IS NOT NULL)
         FROM aveloxis_data.contributors WHERE cntrb_deleted = 0 AND gh_user_id IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let resolved = enriched + merged_linked;
    println!(
        "done in {round} rounds ({elapsed:.1} s against instant answers): {requests} requests; {enriched} profiles \
         filled, {merged_linked} email-only rows linked or merged; {:.2} API calls per resolved contributor",
        requests as f64 / resolved.max(1) as f64
    );
    println!(
        "  enrichment: {enrich_requests} requests for {attempted} accounts attempted ({:.2} an account: renamed and \
         deleted ones cost two), {enriched} of them with a company or location ({:.2} requests a filled profile); \
         search-resolve: {search_requests} requests for {merged_linked} rows linked or merged ({:.2} a row; noreply \
         addresses and known emails cost none)",
        enrich_requests as f64 / attempted.max(1) as f64,
        enrich_requests as f64 / enriched.max(1) as f64,
        search_requests as f64 / merged_linked.max(1) as f64
    );
    let again = run_batch(&pool, "bench", "enrich", 1, 1, &gh, None)
        .await
        .unwrap()
        .is_some()
        || run_batch(&pool, "bench", "search", 1, 1, &gh, None)
            .await
            .unwrap()
            .is_some();
    println!(
        "a further round inside the cooldowns: {}",
        if again {
            "ran (unexpected)"
        } else {
            "0 requests, nothing due"
        }
    );
    drop(db);
}

/// 0.13.0's merge_contributors (migrations/pg_aveloxis--0.13.0.sql), unlogged and not
/// reversible, as a session function: the baseline of the same writes per merge.
const MERGE_0_13_0: &str = r#"CREATE FUNCTION pg_temp.merge_0_13_0(winner uuid, loser uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    w aveloxis_data.contributors;
    l aveloxis_data.contributors;
BEGIN
    IF winner IS NULL OR loser IS NULL OR winner = loser THEN
        RAISE EXCEPTION 'merge_contributors needs two different contributors'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the row to keep first, then the duplicate.';
    END IF;
    -- Both rows locked in a fixed order, so two merges cannot deadlock.
    PERFORM 1 FROM aveloxis_data.contributors c WHERE c.cntrb_id IN (winner, loser) ORDER BY c.cntrb_id FOR UPDATE;
    SELECT * INTO w FROM aveloxis_data.contributors c WHERE c.cntrb_id = winner;
    SELECT * INTO l FROM aveloxis_data.contributors c WHERE c.cntrb_id = loser;
    IF w.cntrb_id IS NULL OR l.cntrb_id IS NULL THEN
        RAISE EXCEPTION 'contributor % does not exist', CASE WHEN w.cntrb_id IS NULL THEN winner ELSE loser END
            USING ERRCODE = 'no_data_found';
    END IF;
    IF w.cntrb_deleted = 1 OR l.cntrb_deleted = 1 THEN
        RAISE EXCEPTION 'contributor % was already merged away', CASE WHEN w.cntrb_deleted = 1 THEN winner ELSE loser END
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Merge into the row it was merged into.';
    END IF;
    UPDATE aveloxis_data.contributors c SET
        cntrb_email = coalesce(c.cntrb_email, l.cntrb_email),
        cntrb_full_name = coalesce(c.cntrb_full_name, l.cntrb_full_name),
        cntrb_company = coalesce(c.cntrb_company, l.cntrb_company),
        cntrb_location = coalesce(c.cntrb_location, l.cntrb_location),
        cntrb_canonical = coalesce(c.cntrb_canonical, l.cntrb_canonical),
        gh_user_id = coalesce(c.gh_user_id, l.gh_user_id), gh_login = coalesce(c.gh_login, l.gh_login),
        gh_url = coalesce(c.gh_url, l.gh_url), gh_html_url = coalesce(c.gh_html_url, l.gh_html_url),
        gh_node_id = coalesce(c.gh_node_id, l.gh_node_id), gh_avatar_url = coalesce(c.gh_avatar_url, l.gh_avatar_url),
        gh_type = coalesce(c.gh_type, l.gh_type),
        gl_id = coalesce(c.gl_id, l.gl_id), gl_username = coalesce(c.gl_username, l.gl_username),
        gl_web_url = coalesce(c.gl_web_url, l.gl_web_url), gl_avatar_url = coalesce(c.gl_avatar_url, l.gl_avatar_url)
    WHERE c.cntrb_id = winner;
    UPDATE aveloxis_data.contributor_identities i SET cntrb_id = winner WHERE i.cntrb_id = loser;
    UPDATE aveloxis_data.contributor_login_history h SET cntrb_id = winner WHERE h.cntrb_id = loser;
    UPDATE aveloxis_data.contributors_aliases a SET cntrb_id = winner WHERE a.cntrb_id = loser;
    INSERT INTO aveloxis_data.contributors_aliases (alias_email, cntrb_id, canonical_email, tool_source, tool_version, data_source)
    SELECT e, winner, coalesce(w.cntrb_canonical, w.cntrb_email), 'pg_aveloxis', aveloxis.version(), 'aveloxis.merge_contributors'
    FROM unnest(ARRAY[l.cntrb_email, l.cntrb_canonical]) AS e
    WHERE e IS NOT NULL
    ON CONFLICT (alias_email) DO UPDATE SET cntrb_id = EXCLUDED.cntrb_id;
    UPDATE aveloxis_data.contributors c SET cntrb_deleted = 1 WHERE c.cntrb_id = loser;
END
$$;"#;

async fn merges(total: i64, merges: i64) {
    let db = TestDb::with_extension("bench_merges").await;
    let pool = db.pool(2).await;
    let half = total / 2;
    // total contributors: half with an account, half email-only; each of the first
    // 2 x merges email-only rows duplicates an account (same email as an alias).
    sqlx::raw_sql(&format!(
        "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gh_user_id, gh_login, cntrb_full_name, data_collection_date)
         SELECT aveloxis.platform_uuid(1::smallint, i), 'user' || i, i, 'user' || i, 'Person ' || i, now() - interval '1 day'
         FROM generate_series(1, {half}) i;
         INSERT INTO aveloxis_data.contributor_identities (platform_id, platform_user_id, cntrb_id, login)
         SELECT 1, i, aveloxis.platform_uuid(1::smallint, i), 'user' || i FROM generate_series(1, {half}) i;
         INSERT INTO aveloxis_data.contributor_login_history (platform_id, platform_user_id, login, cntrb_id)
         SELECT 1, i, 'user' || i, aveloxis.platform_uuid(1::smallint, i) FROM generate_series(1, {half}) i;
         INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email, cntrb_full_name)
         SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'dev' || i || '@corp.example',
                CASE WHEN i % 10 = 0 THEN 'Person ' || i END
         FROM generate_series(1, {half}) i;
         INSERT INTO aveloxis_data.contributors_aliases (alias_email, cntrb_id)
         SELECT 'old' || i || '@corp.example', ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid
         FROM generate_series(1, {half}) i;
         CREATE TABLE bench_pairs AS
         SELECT i AS n, aveloxis.platform_uuid(1::smallint, i) AS winner,
                ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid AS loser
         FROM generate_series(1, {}) i;
         ANALYZE;",
        2 * merges
    ))
    .execute(&pool)
    .await
    .unwrap();
    println!("merges on {total} contributors ({half} with an account, {half} email-only):");
    // Side by side: merges 1..m logged (merge_contributors), m+1..2m by the unlogged statements.
    let t = Instant::now();
    sqlx::query("SELECT count(aveloxis.merge_contributors(p.winner, p.loser)) FROM bench_pairs p WHERE p.n <= $1")
        .bind(merges)
        .execute(&pool)
        .await
        .unwrap();
    let logged = t.elapsed().as_secs_f64();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(MERGE_0_13_0).execute(&mut *conn).await.unwrap();
    let t = Instant::now();
    sqlx::query("SELECT count(pg_temp.merge_0_13_0(p.winner, p.loser)) FROM bench_pairs p WHERE p.n > $1")
        .bind(merges)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let unlogged = t.elapsed().as_secs_f64();
    println!(
        "  {merges} logged, reversible merges: {logged:.2} s = {:.0}/s; 0.13.0's unlogged merge: {unlogged:.2} s = {:.0}/s; ratio {:.2}x",
        merges as f64 / logged,
        merges as f64 / unlogged,
        logged / unlogged
    );
    let t = Instant::now();
    let n: i64 = sqlx::query_scalar("SELECT count(aveloxis.person_of(p.loser)) FROM bench_pairs p WHERE p.n <= $1")
        .bind(merges)
        .fetch_one(&pool)
        .await
        .unwrap();
    let lookups = t.elapsed().as_secs_f64();
    println!(
        "  person_of() of {n} merged rows: {lookups:.2} s = {:.0}/s",
        n as f64 / lookups
    );
    let t = Instant::now();
    let persons: i64 = sqlx::query_scalar("SELECT count(DISTINCT person_id) FROM aveloxis_data.contributor_persons")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "  contributor_persons, whole ({persons} people): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let suggestions: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis.merge_suggestions(1000000)")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "  merge_suggestions() over them: {suggestions} pairs in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    sqlx::query(
        "SELECT count(aveloxis.unmerge(m.merge_id)) FROM (SELECT merge_id FROM aveloxis_data.contributor_merges
                                                         WHERE action = 'merge' ORDER BY merge_id DESC) m",
    )
    .execute(&pool)
    .await
    .unwrap();
    let undo = t.elapsed().as_secs_f64();
    println!("  {merges} unmerges: {undo:.2} s = {:.0}/s", merges as f64 / undo);
    drop(db);
}

#[tokio::main]
async fn main() {
    let people: i64 = std::env::args()
        .nth(1)
        .map_or(2000, |a| a.parse().expect("people: a number"));
    convergence(people).await;
    merges(100_000, 10_000).await;
}
