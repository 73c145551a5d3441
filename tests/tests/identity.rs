//! Identity convergence end to end (docs/identity.md): enrichment and search-resolve runs
//! of the real agent against a local GitHub (and GitLab) API, the real extension applying
//! what they staged: profiles filled, renames recorded, cooldowns honoured (no second
//! request inside the window), search hits linked or merged (and unmerged), a spent search
//! budget waited out.

use aveloxis_agent::forge::github::{GithubClient, GithubConfig};
use aveloxis_agent::forge::gitlab::{GitlabClient, GitlabConfig, TokenStyle};
use aveloxis_agent::forge::tokens::TokenPool;
use aveloxis_agent::phases::identity::run_batch;
use harness::sqlx::{self, PgPool};
use harness::TestDb;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// (cntrb_login, gh_login, company, location, email, enrichment attempted)
type ProfileRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
);
/// (cntrb_id, gh_user_id, gh_login, cntrb_login)
type LinkedRow = (String, Option<i64>, Option<String>, Option<String>);

async fn add_repo(pool: &PgPool, url: &str) -> i64 {
    sqlx::query_scalar("SELECT aveloxis.add_repo($1)")
        .bind(url)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Issues whose authors are these accounts: the drain makes them contributors.
async fn contributors_from_issues(db: &TestDb, repo: i64, users: &[(i64, &str)]) {
    let payloads: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(n, (id, login))| {
            json!({"id": n + 1, "number": n + 1, "title": "t", "state": "open",
                   "updated_at": "2024-01-01T00:00:00Z", "user": {"id": id, "login": login, "type": "User"}})
            .to_string()
        })
        .collect();
    db.stage(repo, "issue", &payloads).await;
    db.drain(repo).await;
}

fn github(server: &MockServer, pool: &PgPool) -> GithubClient {
    GithubClient::new(
        GithubConfig::new(&format!("{}/", server.uri())).unwrap(),
        TokenPool::new(["tok".to_string()], 1, pool.clone()),
    )
    .unwrap()
}

async fn requests(server: &MockServer) -> Vec<String> {
    let mut seen: Vec<String> = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| match r.url.query() {
            Some(q) => format!("{}?{q}", r.url.path()),
            None => r.url.path().to_string(),
        })
        .collect();
    seen.sort();
    seen
}

async fn get(server: &MockServer, at: &str, status: u16, body: Value) {
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(server)
        .await;
}

#[tokio::test]
async fn enrichment_fills_profiles_records_renames_and_honours_the_cooldown() {
    let db = TestDb::with_extension("identity_enrich").await;
    let pool = db.pool(4).await;
    db.execute("SELECT aveloxis.set_setting('enrich.every', '0')").await;
    let repo = add_repo(&pool, "https://github.com/o/r").await;
    contributors_from_issues(&db, repo, &[(1, "alice"), (2, "bob"), (3, "carol"), (4, "dan")]).await;
    // dan already has a company: not thin, never fetched.
    db.execute("UPDATE aveloxis_data.contributors SET cntrb_company = 'Initech' WHERE gh_login = 'dan'")
        .await;

    let server = MockServer::start().await;
    get(
        &server,
        "/users/alice",
        200,
        json!({"id": 1, "login": "alice", "type": "User", "name": "Alice Liddell", "company": " @acme ",
               "location": "Oxford", "email": "alice@acme.example", "blog": "", "created_at": "2011-01-26T19:01:12Z"}),
    )
    .await;
    // bob renamed himself bobby: his old login is gone, his account id answers.
    get(&server, "/users/bob", 404, json!({"message": "Not Found"})).await;
    get(
        &server,
        "/user/2",
        200,
        json!({"id": 2, "login": "bobby", "type": "User", "company": null, "location": "Lyon"}),
    )
    .await;
    // carol deleted her account: a miss, stamped all the same.
    get(&server, "/users/carol", 404, json!({"message": "Not Found"})).await;
    get(&server, "/user/3", 404, json!({"message": "Not Found"})).await;
    let gh = github(&server, &pool);

    let run = run_batch(&pool, "test", "enrich", 1, 1, &gh, None)
        .await
        .unwrap()
        .expect("a batch");
    assert_eq!(
        (run.batch, run.requests, run.stopped.as_deref()),
        (3, 5, None),
        "{run:?}"
    );
    let summary = run.summary.unwrap();
    assert_eq!(
        (
            &summary["profiles"],
            &summary["not_found"],
            &summary["renamed"],
            &summary["attempted"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(3)),
        "{summary}"
    );
    let rows: Vec<ProfileRow> = sqlx::query_as(
        "SELECT cntrb_login, gh_login, cntrb_company, cntrb_location, cntrb_email,
                    cntrb_last_enriched_at IS NOT NULL
             FROM aveloxis_data.contributors ORDER BY gh_user_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (
                Some("alice".into()),
                Some("alice".into()),
                Some("@acme".into()),
                Some("Oxford".into()),
                Some("alice@acme.example".into()),
                true
            ),
            // R2/R3: cntrb_login stays the first login; gh_login follows the rename.
            (
                Some("bob".into()),
                Some("bobby".into()),
                None,
                Some("Lyon".into()),
                None,
                true
            ),
            (Some("carol".into()), Some("carol".into()), None, None, None, true),
            (
                Some("dan".into()),
                Some("dan".into()),
                Some("Initech".into()),
                None,
                None,
                false
            ),
        ]
    );
    let history: Vec<(String, bool)> = sqlx::query_as(
        "SELECT login, replaced_at IS NOT NULL FROM aveloxis_data.contributor_login_history
         WHERE platform_user_id = 2 ORDER BY first_seen_at, login",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(history, [("bob".into(), true), ("bobby".into(), false)]);
    let ids_kept: bool = sqlx::query_scalar(
        "SELECT bool_and(cntrb_id = aveloxis.platform_uuid(1::smallint, gh_user_id)) FROM aveloxis_data.contributors",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(ids_kept, "cntrb_id never changes (R2)");

    // Inside the cooldown nobody is due: no batch, no request. (bob is still thin? no:
    // he has a location now; carol is thin but was attempted.)
    let before = requests(&server).await.len();
    assert!(run_batch(&pool, "test", "enrich", 1, 1, &gh, None)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        requests(&server).await.len(),
        before,
        "no second request inside the window"
    );
    let why: (String, String) =
        sqlx::query_as("SELECT status, reason FROM aveloxis.why_not_enriched((SELECT cntrb_id FROM aveloxis_data.contributors WHERE gh_login = 'carol')) WHERE task = 'enrich'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(why.0, "cooling down", "{why:?}");
    let progress: (i64, i64, i64) = sqlx::query_as("SELECT * FROM aveloxis.enrichment_progress()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(progress, (0, 0, 1), "carol: thin, attempted, within the cooldown");

    // Past the cooldown (a shorter one), carol is asked again: once.
    db.execute("SELECT aveloxis.set_setting('enrich.cooldown', '0')").await;
    let again = run_batch(&pool, "test", "enrich", 1, 1, &gh, None)
        .await
        .unwrap()
        .expect("carol again");
    assert_eq!((again.batch, again.requests), (1, 2), "{again:?}");
}

#[tokio::test]
async fn batches_never_overlap_leases_are_proven_by_token_and_runs_are_paced() {
    let db = TestDb::with_extension("identity_lease").await;
    let pool = db.pool(4).await;
    let repo = add_repo(&pool, "https://github.com/o/r").await;
    contributors_from_issues(&db, repo, &[(1, "alice"), (2, "bob")]).await;
    db.execute("SELECT aveloxis.set_setting('enrich.every', '0')").await;
    let claim = |agent: &'static str, max: i32| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (sqlx::types::Uuid, sqlx::types::Uuid)>(
                "SELECT lease_token, cntrb_id FROM aveloxis.claim_identity_batch($1, 'enrich', 1::smallint, $2)",
            )
            .bind(agent)
            .bind(max)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let first = claim("a", 1).await;
    let second = claim("b", 5).await;
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0].1, second[0].1, "a leased contributor is not handed out again");
    assert!(claim("c", 5).await.is_empty(), "everyone is leased");

    // A lease stages only its own contributors, and only with its token.
    let stranger =
        sqlx::query("SELECT aveloxis.stage_identity($1, ARRAY[$2], ARRAY['profile'], ARRAY[404], ARRAY[NULL])")
            .bind(first[0].0)
            .bind(second[0].1)
            .execute(&pool)
            .await
            .unwrap_err();
    assert!(stranger.to_string().contains("not in this run's batch"), "{stranger}");
    let forged = sqlx::query("SELECT aveloxis.complete_identity_batch(gen_random_uuid())")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        forged.to_string().contains("no identity run holds this lease token"),
        "{forged}"
    );

    // The first lease answers (a miss) and completes; the second expires unanswered:
    // its contributor is free again and was not stamped (nobody tried it).
    sqlx::query("SELECT aveloxis.stage_identity($1, ARRAY[$2], ARRAY['profile'], ARRAY[404], ARRAY[NULL])")
        .bind(first[0].0)
        .bind(first[0].1)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.complete_identity_batch($1)")
        .bind(first[0].0)
        .execute(&pool)
        .await
        .unwrap();
    db.execute("SELECT aveloxis.set_setting('clock.offset', '1 hour')")
        .await;
    let again = claim("d", 5).await;
    assert_eq!(again.iter().map(|r| r.1).collect::<Vec<_>>(), [second[0].1]);
    let expired: String = sqlx::query_scalar("SELECT outcome FROM aveloxis_ops.identity_runs WHERE agent = 'b'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(expired, "lease_expired");

    // Paced: with enrich.every at a day, no batch starts within a day of the last one.
    db.execute(
        "SELECT aveloxis.set_setting('enrich.every', '1 day'); SELECT aveloxis.set_setting('enrich.cooldown', '0')",
    )
    .await;
    db.execute("SELECT aveloxis.set_setting('clock.offset', '3 hours')")
        .await;
    assert!(claim("e", 5).await.is_empty(), "paced by enrich.every");
    let due: i64 =
        sqlx::query_scalar("SELECT due FROM aveloxis.identity_health() WHERE task = 'enrich' AND platform_id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(due, 2, "both are due, the pacing holds them back");
}

#[tokio::test]
async fn search_resolve_links_merges_and_settles_noreply_without_the_api() {
    let db = TestDb::with_extension("identity_search").await;
    let pool = db.pool(4).await;
    db.execute("SELECT aveloxis.set_setting('search.every', '0')").await;
    let repo = add_repo(&pool, "https://github.com/o/r").await;
    // xavier (account 100) is known from the API; four email-only rows from commits.
    // bobby (account 2) was "bob" when a commit named him by login only: the rename race
    // left a second row, known by the old login and an email.
    contributors_from_issues(&db, repo, &[(100, "xavier"), (2, "bobby")]).await;
    db.execute(
        "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email, cntrb_full_name, data_collection_date) VALUES
           ('00000000-0000-4000-8000-000000000001', 'x@corp.example', 'Xavier X', now() - interval '2 days'),
           ('00000000-0000-4000-8000-000000000002', 'y@corp.example', 'Yan Y', now() - interval '2 days'),
           ('00000000-0000-4000-8000-000000000003', 'z@corp.example', 'Zoe Z', now() - interval '2 days'),
           ('00000000-0000-4000-8000-000000000004', '7+wendy@users.noreply.github.com', 'Wendy', now());
         INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gh_login, cntrb_email)
           VALUES ('00000000-0000-4000-8000-000000000005', 'bob', 'bob', 'bob@corp.example');
         INSERT INTO aveloxis_data.contributors_aliases (alias_email, cntrb_id)
           VALUES ('xx@corp.example', '00000000-0000-4000-8000-000000000001')",
    )
    .await;
    let server = MockServer::start().await;
    let empty = json!({"total_count": 0, "incomplete_results": false, "items": []});
    Mock::given(method("GET"))
        .and(path("/search/users"))
        .and(query_param("q", "x@corp.example in:email"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "total_count": 1, "incomplete_results": false, "items": [{"login": "xavier", "id": 100, "type": "User"}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/search/users"))
        .and(query_param("q", "bob@corp.example in:email"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "total_count": 1, "incomplete_results": false, "items": [{"login": "bobby", "id": 2, "type": "User"}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/search/commits"))
        .and(query_param("q", "author-email:y@corp.example"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "total_count": 1, "incomplete_results": false,
            "items": [{"sha": "abc", "author": {"login": "yan", "id": 200, "type": "User"}}]})))
        .mount(&server)
        .await;
    for p in ["/search/users", "/search/commits"] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200).set_body_json(&empty))
            .with_priority(10)
            .mount(&server)
            .await;
    }
    let ids = "SELECT string_agg(cntrb_id::text, ',' ORDER BY cntrb_id) FROM aveloxis_data.contributors";
    let ids_before: String = sqlx::query_scalar(ids).fetch_one(&pool).await.unwrap();
    let gh = github(&server, &pool);
    let run = run_batch(&pool, "test", "search", 1, 1, &gh, None)
        .await
        .unwrap()
        .expect("a batch");
    let summary = run.summary.clone().unwrap();
    assert_eq!(
        (
            &summary["linked"],
            &summary["merged"],
            &summary["not_found"],
            &summary["attempted"]
        ),
        (&json!(2), &json!(2), &json!(1), &json!(5)),
        "{summary}"
    );
    // x, bob: user search hits; y: user search empty, commit search hit; z: both empty;
    // wendy: none.
    assert_eq!(run.requests, 6, "{:?}", requests(&server).await);
    let ids_after: String = sqlx::query_scalar(ids).fetch_one(&pool).await.unwrap();
    assert_eq!(ids_after, ids_before, "no cntrb_id changed or vanished (R2)");
    let bob: (i16, String, Option<String>) = sqlx::query_as(
        "SELECT c.cntrb_deleted, aveloxis.person_of(c.cntrb_id)::text, c.cntrb_login FROM aveloxis_data.contributors c
         WHERE c.cntrb_id = '00000000-0000-4000-8000-000000000005'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        bob,
        (1, "01000000-0200-0000-0000-000000000000".into(), Some("bob".into())),
        "the rename race's duplicate merged into the account's row, its own login kept"
    );
    assert!(
        !requests(&server).await.iter().any(|r| r.contains("wendy")),
        "noreply settled without the API"
    );

    // x was a duplicate of xavier: merged into the deterministic row (R1), logged.
    let merged: (sqlx::types::Uuid, sqlx::types::Uuid, i16, String) = sqlx::query_as(
        "SELECT m.winner, m.loser, c.cntrb_deleted, m.source FROM aveloxis_data.contributor_merges m
         JOIN aveloxis_data.contributors c ON c.cntrb_id = m.loser WHERE m.winner = aveloxis.platform_uuid(1::smallint, 100)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(merged.1.to_string(), "00000000-0000-4000-8000-000000000001");
    assert_eq!(merged.0.to_string(), "01000000-6400-0000-0000-000000000000");
    assert_eq!((merged.2, merged.3.as_str()), (1, "search_resolve"));
    let resolves: Option<String> =
        sqlx::query_scalar("SELECT cntrb_id::text FROM aveloxis.resolve_email('xx@corp.example')")
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert_eq!(
        resolves.as_deref(),
        Some("01000000-6400-0000-0000-000000000000"),
        "aliases follow the winner"
    );
    // y and wendy linked (R11: cntrb_id and cntrb_login untouched).
    let linked: Vec<LinkedRow> = sqlx::query_as(
        "SELECT cntrb_id::text, gh_user_id, gh_login, cntrb_login FROM aveloxis_data.contributors
         WHERE cntrb_id IN ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000004')
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        linked,
        [
            (
                "00000000-0000-4000-8000-000000000002".into(),
                Some(200),
                Some("yan".into()),
                None
            ),
            (
                "00000000-0000-4000-8000-000000000004".into(),
                Some(7),
                Some("wendy".into()),
                None
            ),
        ]
    );
    // Everyone attempted waits out the cooldown: a second run asks nothing.
    let before = requests(&server).await.len();
    assert!(run_batch(&pool, "test", "search", 1, 1, &gh, None)
        .await
        .unwrap()
        .is_none());
    assert_eq!(requests(&server).await.len(), before);
    let queue: i64 = sqlx::query_scalar("SELECT aveloxis.search_resolve_queue()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(queue, 0);

    // The merge is undone exactly: x is active again with its alias; no orphan anywhere.
    sqlx::query(
        "SELECT aveloxis.unmerge((SELECT merge_id FROM aveloxis_data.contributor_merges
                                  WHERE winner = aveloxis.platform_uuid(1::smallint, 100)))",
    )
    .execute(&pool)
    .await
    .unwrap();
    let back: (i16, String) = sqlx::query_as(
        "SELECT c.cntrb_deleted, a.cntrb_id::text FROM aveloxis_data.contributors c
         JOIN aveloxis_data.contributors_aliases a ON a.alias_email = 'xx@corp.example'
         WHERE c.cntrb_id = '00000000-0000-4000-8000-000000000001'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(back, (0, "00000000-0000-4000-8000-000000000001".into()));
    let orphans: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(orphans), 0)::bigint FROM aveloxis.contributor_fk_integrity()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(orphans, 0);
}

#[tokio::test]
async fn a_spent_search_budget_is_waited_out_not_failed() {
    let db = TestDb::with_extension("identity_budget").await;
    let pool = db.pool(4).await;
    db.execute("SELECT aveloxis.set_setting('search.every', '0')").await;
    db.execute(
        "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email) VALUES
           ('00000000-0000-4000-8000-000000000001', 'a@corp.example'),
           ('00000000-0000-4000-8000-000000000002', 'b@corp.example')",
    )
    .await;
    let server = MockServer::start().await;
    // Every search answer says the budget is spent until two seconds from now: the agent
    // waits for the reset (the shared budget, aveloxis.token_acquire) and goes on.
    let reset = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2)
    .to_string();
    for p in ["/search/users", "/search/commits"] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"total_count": 0, "incomplete_results": false, "items": []}))
                    .insert_header("X-RateLimit-Resource", "search")
                    .insert_header("X-RateLimit-Limit", "30")
                    .insert_header("X-RateLimit-Remaining", "0")
                    .insert_header("X-RateLimit-Reset", reset.as_str()),
            )
            .mount(&server)
            .await;
    }
    let gh = github(&server, &pool);
    let run = run_batch(&pool, "test", "search", 1, 1, &gh, None)
        .await
        .unwrap()
        .expect("a batch");
    assert_eq!((run.requests, run.stopped.as_deref()), (4, None), "{run:?}");
    assert_eq!(run.summary.unwrap()["not_found"], json!(2));
}

#[tokio::test]
async fn gitlab_accounts_are_enriched_by_id() {
    let db = TestDb::with_extension("identity_gitlab").await;
    let pool = db.pool(4).await;
    db.execute("SELECT aveloxis.set_setting('enrich.every', '0')").await;
    // A gitlab.com account known by id (as the GitLab drain stores it).
    db.execute(
        "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, gl_id, gl_username)
           VALUES (aveloxis.platform_uuid(2::smallint, 42), 'jdoe', 42, 'jdoe');
         INSERT INTO aveloxis_data.contributor_identities (platform_id, platform_user_id, cntrb_id, login)
           VALUES (2, 42, aveloxis.platform_uuid(2::smallint, 42), 'jdoe')",
    )
    .await;
    let server = MockServer::start().await;
    get(
        &server,
        "/api/v4/users/42",
        200,
        json!({"id": 42, "username": "jdoe", "name": "J. Doe", "state": "active", "organization": "GNOME",
               "location": "Berlin", "public_email": "", "web_url": "https://gitlab.com/jdoe",
               "avatar_url": null, "bot": false, "created_at": "2015-03-01T10:00:00.000Z"}),
    )
    .await;
    let gl = GitlabClient::new(
        GitlabConfig::new(&format!("{}/api/v4/", server.uri())).unwrap(),
        TokenPool::new(["glpat".to_string()], 2, pool.clone()),
        TokenStyle::PrivateToken,
    )
    .unwrap();
    let run = run_batch(&pool, "test", "enrich", 2, 2, &gl, None)
        .await
        .unwrap()
        .expect("a batch");
    assert_eq!((run.batch, run.requests), (1, 1), "{run:?}");
    let row: (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT cntrb_company, cntrb_location, gl_state FROM aveloxis_data.contributors")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        row,
        (Some("GNOME".into()), Some("Berlin".into()), Some("active".into()))
    );
    // Search-resolve does not ask GitLab (its search by email is for administrators).
    assert!(run_batch(&pool, "test", "search", 2, 2, &gl, None)
        .await
        .unwrap()
        .is_none());
}

/// A commit envelope (docs/staging-contract.md) by `email` at `time`.
fn commit(hash_seed: u32, email: &str, time: &str) -> String {
    json!({
        "hash": format!("{hash_seed:040x}"), "parents": [],
        "author": {"name": "Pat", "email": email, "time": time},
        "committer": {"name": "Pat", "email": email, "time": time},
        "message": "work\n", "files": [{"path": "f", "added": 3, "removed": 1}]
    })
    .to_string()
}

#[tokio::test]
async fn an_employer_change_and_a_corrected_domain_rule_change_the_aggregates_not_the_commits() {
    let db = TestDb::with_extension("identity_affiliation").await;
    let pool = db.pool(4).await;
    db.execute("SELECT aveloxis.set_setting('registry.local_path_roots', '/srv/git')")
        .await;
    let repo = add_repo(&pool, "/srv/git/affiliated").await;
    // Pat committed in 2019 and 2023 from a personal address; Sam from a company one.
    db.stage(
        repo,
        "commit",
        &[
            commit(1, "pat@home.example", "2019-03-01T10:00:00+00:00"),
            commit(2, "pat@home.example", "2023-03-01T10:00:00+00:00"),
            commit(3, "sam@corp.example", "2023-04-01T10:00:00+00:00"),
        ],
    )
    .await;
    db.drain(repo).await;
    // Pat's commits are linked to Pat's contributor row (as commit resolution does).
    db.execute(
        "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_email) VALUES ('00000000-0000-4000-8000-0000000000aa', 'pat@home.example');
         UPDATE aveloxis_data.commits SET cmt_ght_author_id = '00000000-0000-4000-8000-0000000000aa'
         WHERE cmt_author_email = 'pat@home.example'",
    )
    .await;
    let commit_rows = "SELECT md5(string_agg(to_jsonb(c)::text, ',' ORDER BY cmt_id)) FROM aveloxis_data.commits c";
    let untouched: String = sqlx::query_scalar(commit_rows).fetch_one(&pool).await.unwrap();
    let aggregates = || async {
        sqlx::query_as::<_, (String, String, i16)>(
            "SELECT email, affiliation, year FROM aveloxis_data.dm_repo_annual ORDER BY year, email",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let row = |e: &str, a: &str, y: i16| (e.to_string(), a.to_string(), y);
    assert_eq!(
        aggregates().await,
        [
            row("pat@home.example", "(Unknown)", 2019),
            row("pat@home.example", "(Unknown)", 2023),
            row("sam@corp.example", "(Unknown)", 2023)
        ]
    );

    // Pat worked at Initech until 2020, at Globex since 2022; corp.example is Hooli.
    db.execute(
        "SELECT aveloxis.enroll('00000000-0000-4000-8000-0000000000aa', 'Initech', NULL, '2020-01-01');
         SELECT aveloxis.enroll('00000000-0000-4000-8000-0000000000aa', 'Globex', '2022-01-01');
         SELECT aveloxis.set_affiliation('corp.example', 'Hooli')",
    )
    .await;
    let refreshed: i64 = sqlx::query_scalar("SELECT aveloxis.refresh_commit_aggregates($1)")
        .bind(repo)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(refreshed, 3);
    assert_eq!(
        aggregates().await,
        [
            row("pat@home.example", "Initech", 2019),
            row("pat@home.example", "Globex", 2023),
            row("sam@corp.example", "Hooli", 2023)
        ]
    );
    // The rule was wrong: corp.example is Initrode. Corrected after the fact.
    db.execute("SELECT aveloxis.set_affiliation('corp.example', 'Initrode')")
        .await;
    sqlx::query("SELECT aveloxis.refresh_commit_aggregates($1)")
        .bind(repo)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(aggregates().await[2], row("sam@corp.example", "Initrode", 2023));
    let augur: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT cmt_author_affiliation::text FROM aveloxis_augur_data.commits ORDER BY cmt_author_timestamp",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        augur,
        [Some("Initech".into()), Some("Globex".into()), Some("Initrode".into())]
    );
    let after: String = sqlx::query_scalar(commit_rows).fetch_one(&pool).await.unwrap();
    assert_eq!(after, untouched, "no commit row was rewritten");
}
