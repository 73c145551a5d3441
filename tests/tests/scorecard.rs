//! The scorecard phase end to end (docs/analysis.md, "Scorecard"): the real agent reads a
//! local server shaped as the public OpenSSF Scorecard API and the extension stores one row
//! per check plus Augur's aggregate row, with one timestamp; a newer read moves the older
//! to history; a repository the API does not publish keeps what it had.

use harness::sqlx;
use harness::{output_text, TestDb};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An answer shaped as `GET /projects/github.com/{owner}/{repo}` returns it (ossf/scorecard
/// result JSON v5: `date`, `repo`, `scorecard`, `score`, `checks[]`).
fn answer(score: f64, binary_artifacts: i64) -> Value {
    let doc = |anchor: &str| {
        json!({"short": "What the check determines.",
                                    "url": format!("https://github.com/ossf/scorecard/blob/main/docs/checks.md#{anchor}")})
    };
    json!({
        "date": "2026-11-23T08:41:18Z",
        "repo": {"name": "github.com/acme/widget", "commit": "5c9fa0d5e3b45e2a8bb09b30ac8c5ac71a2e0b6a"},
        "scorecard": {"version": "v5.1.1", "commit": "aa2b2e2e0ee6f2c2d1a0c8aa5a0d2b3c4d5e6f70"},
        "score": score,
        "checks": [
            {"name": "Binary-Artifacts", "score": binary_artifacts, "reason": "no binaries found in the repo",
             "details": null, "documentation": doc("binary-artifacts")},
            {"name": "Code-Review", "score": 7, "reason": "Found 21/30 approved changesets -- score normalized to 7",
             "details": null, "documentation": doc("code-review")},
            {"name": "Packaging", "score": -1, "reason": "packaging workflow not detected",
             "details": ["Warn: no GitHub/GitLab publishing workflow detected."], "documentation": doc("packaging")},
            {"name": "Signed-Releases", "score": -1, "reason": "no releases found", "details": null,
             "documentation": doc("signed-releases")}
        ],
        "metadata": null
    })
}

fn collect(db: &TestDb, url: &str, api: &str) -> String {
    let out = db.agent(&["collect", url, "--phases", "scorecard", "--scorecard-url", api]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");
    stdout
}

#[tokio::test]
async fn checks_and_the_aggregate_with_one_timestamp_history_kept_and_unpublished_repositories_said_so() {
    let db = TestDb::with_extension("scorecard").await;
    let pool = db.pool(2).await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/projects/github.com/acme/widget"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(6.3, 10)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/projects/github.com/acme/widget"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(7.1, 9)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/projects/github.com/acme/unlisted"))
        .respond_with(ResponseTemplate::new(404).set_body_string("not found"))
        .mount(&server)
        .await;
    let api = format!("{}/", server.uri());

    let out = collect(&db, "https://github.com/acme/widget", &api);
    assert!(out.contains("OpenSSF Scorecard 6.3 with 4 checks"), "{out}");
    let rows = || async {
        sqlx::query_as::<_, (String, Option<String>, i64)>(
            "SELECT name, score, count(*) OVER (PARTITION BY data_collection_date)
             FROM aveloxis_data.repo_deps_scorecard ORDER BY name",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let r = |n: &str, s: &str| (n.to_string(), Some(s.to_string()), 5i64);
    assert_eq!(
        rows().await,
        [
            r("Binary-Artifacts", "10"),
            r("Code-Review", "7"),
            r("OSSF_SCORECARD_AGGREGATE_SCORE", "6.3"),
            r("Packaging", "-1"),
            r("Signed-Releases", "-1")
        ],
        "one row per check and the aggregate, all of one scan"
    );
    let details: (String, String) = sqlx::query_as(
        "SELECT scorecard_check_details ->> 'name', scorecard_check_details #>> '{scorecard,version}'
         FROM aveloxis_data.repo_deps_scorecard WHERE name = 'OSSF_SCORECARD_AGGREGATE_SCORE'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(details, ("github.com/acme/widget".into(), "v5.1.1".into()));
    // 8Knot casts every score to float4: no '' anywhere.
    let floats: Vec<f32> =
        sqlx::query_scalar("SELECT score::float4 FROM aveloxis_augur_data.repo_deps_scorecard ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(floats, [-1.0, -1.0, 6.3, 7.0, 10.0]);

    // A week later: the newer read replaces, the older goes to history whole.
    let out = collect(&db, "https://github.com/acme/widget", &api);
    assert!(out.contains("OpenSSF Scorecard 7.1"), "{out}");
    let state: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.repo_deps_scorecard),
                (SELECT count(DISTINCT data_collection_date) FROM aveloxis_data.repo_deps_scorecard),
                (SELECT count(*) FROM aveloxis_data.repo_deps_scorecard_history)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, (5, 1, 5));

    // A repository the API does not publish: completes, stores nothing, and says so.
    let out = collect(&db, "https://github.com/acme/unlisted", &api);
    assert!(out.contains("publishes no scorecard for this repository"), "{out}");
    let (outcome, stored): (Value, i64) = sqlx::query_as(
        "SELECT j.last_outcome, (SELECT count(*) FROM aveloxis_data.repo_deps_scorecard s WHERE s.repo_id = j.repo_id)
         FROM aveloxis_ops.jobs j WHERE j.phase = 'scorecard'
           AND j.repo_id = aveloxis.resolve_repo('https://github.com/acme/unlisted')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((outcome["published"].clone(), stored), (json!(false), 0));

    // The phase in the queue: weekly, visible where operators look.
    let (status, reason): (String, String) = sqlx::query_as(
        "SELECT status, reason FROM aveloxis.why_not_collected(aveloxis.resolve_repo('https://github.com/acme/widget'))
         WHERE phase = 'scorecard'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "waiting");
    assert!(reason.contains("7 days"), "{reason}");
    let jobs: i64 = sqlx::query_scalar("SELECT jobs FROM aveloxis.queue_health() WHERE phase = 'scorecard'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, 2);
    // GitLab repositories get no scorecard job (no public source).
    sqlx::query("SELECT aveloxis.add_repo('https://gitlab.com/acme/widget')")
        .execute(&pool)
        .await
        .unwrap();
    let gitlab: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM aveloxis_ops.jobs WHERE phase = 'scorecard'
           AND repo_id = aveloxis.resolve_repo('https://gitlab.com/acme/widget')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(gitlab, 0);
}
