//! Request benchmark of a GitHub collection (docs/benchmarks.md): `scripts/bench.sh requests`.
//!
//! Collects the replayed PyGithub/PyGithub (the recorded traffic of `../shared/fixtures`
//! served as one repository) with the agent's own code, counts the requests it made, and
//! counts, for the same data, the requests of the Go system's endpoint plan
//! (aveloxis-go-spec.md §8): the same list pages, plus per issue `/issues/{n}/labels` and
//! `/issues/{n}`; per pull request `/issues/{n}/labels`, `/pulls/{n}` three times,
//! requested_reviewers, reviews, commits and files; the repo-wide events scanned once per
//! type (issues, pull requests); per issue and per pull request a comments call. Then a
//! second, no-change collection: the quota it costs as a share of the first (a 304 to a
//! conditional request costs none on GitHub).

use std::collections::BTreeMap;

use aveloxis_agent::forge::github::{GithubClient, GithubConfig};
use aveloxis_agent::forge::tokens::TokenPool;
use aveloxis_agent::phases::api::{collect_github, finish};
use aveloxis_agent::queue::claim_repo;
use harness::replay::{github_fixtures, ReplayServer};
use harness::TestDb;

/// Requests by endpoint kind: the path after /repos/{o}/{r}, numbers folded.
fn endpoint(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    // /repos/{o}/{r}/... or, after a redirect by id, /repositories/{id}/...
    let skip = if path.starts_with("/repositories/") { 3 } else { 4 };
    let rest: Vec<&str> = path.split('/').skip(skip).collect();
    let folded: Vec<String> = rest
        .iter()
        .map(|s| {
            if s.chars().all(|c| c.is_ascii_digit()) {
                "{n}".to_string()
            } else {
                s.to_string()
            }
        })
        .collect();
    format!("/{}", folded.join("/"))
}

#[tokio::main]
async fn main() {
    let replay = ReplayServer::start().await;
    let fixtures = github_fixtures();
    replay
        .load_repository(&fixtures.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let db = TestDb::with_extension("bench_requests").await;
    let pool = db.pool(4).await;
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://github.com/PyGithub/PyGithub')")
        .fetch_one(&pool)
        .await
        .unwrap();
    let config = GithubConfig::new(&replay.api_url()).unwrap();
    let github = GithubClient::new(config, TokenPool::new(["bench-token".to_string()], 1, pool.clone())).unwrap();

    let job = claim_repo(&pool, "bench", repo, "collect", 600).await.unwrap();
    let first = finish(&pool, "bench", &job, collect_github(&github, &pool, &job, None).await)
        .await
        .unwrap();
    let first_requests = replay.requests().await;

    // Nothing changed: the next collection (incremental, with the ETags of the first).
    sqlx::query("SELECT aveloxis.set_setting('clock.offset', '1 day 1 minute')")
        .execute(&pool)
        .await
        .unwrap();
    let job = claim_repo(&pool, "bench", repo, "collect", 600).await.unwrap();
    let second = finish(&pool, "bench", &job, collect_github(&github, &pool, &job, None).await)
        .await
        .unwrap();
    let second_requests: Vec<_> = replay.requests().await.into_iter().skip(first_requests.len()).collect();

    let mut by_endpoint: BTreeMap<String, usize> = BTreeMap::new();
    for (path, _, _) in &first_requests {
        *by_endpoint.entry(endpoint(path)).or_default() += 1;
    }
    let count = |sql: &str| {
        let pool = pool.clone();
        let sql = sql.to_string();
        async move { sqlx::query_scalar::<_, i64>(&sql).fetch_one(&pool).await.unwrap() as usize }
    };
    let issues = count("SELECT count(*) FROM aveloxis_data.issues").await;
    let pulls = count("SELECT count(*) FROM aveloxis_data.pull_requests").await;
    let staged: usize = first.staged.values().sum();
    let pages = |e: &str| by_endpoint.get(e).copied().unwrap_or(0);

    // The Go plan for the same data: the same list pages, and its per-item calls.
    let list_pages = pages("/")
        + pages("/contributors")
        + pages("/issues")
        + pages("/issues/comments")
        + pages("/pulls/comments")
        + pages("/releases")
        + pages("/pulls");
    let go_requests = list_pages
        + 2 * pages("/issues/events") // scanned once per type
        + 2 * issues // /issues/{n}/labels, /issues/{n}
        + 8 * pulls // labels, /pulls/{n} x3, requested_reviewers, reviews, commits, files
        + issues + pulls; // per-item comments calls

    println!(
        "replayed repository: PyGithub/PyGithub ({issues} issues, {pulls} pull requests stored; {staged} items staged)"
    );
    println!("\nrequests of the first (full) collection, by endpoint:");
    for (e, n) in &by_endpoint {
        println!("  {n:>4}  {e}");
    }
    let ours = first_requests.len();
    println!("\n                           requests   per staged item");
    println!(
        "  aveloxis-agent           {ours:>8}   {:>15.3}",
        ours as f64 / staged as f64
    );
    println!(
        "  Go endpoint plan         {go_requests:>8}   {:>15.3}",
        go_requests as f64 / staged as f64
    );
    println!(
        "  share: {:.0}% of the Go plan's requests (goal <= 35%)",
        100.0 * ours as f64 / go_requests as f64
    );
    let conditional = second_requests.iter().filter(|r| r.1.is_some()).count();
    // A 304 costs no quota: what the second run spent is what it did not get as 304.
    let spent_second = second_requests.len() - second.not_modified;
    println!(
        "\nno-change re-collection: {} requests ({conditional} conditional, {} answered 304), {} staged",
        second_requests.len(),
        second.not_modified,
        second.staged.values().sum::<usize>()
    );
    println!(
        "  quota: {spent_second} of the first run's {ours} = {:.1}% (goal <= 5%)",
        100.0 * spent_second as f64 / ours as f64
    );
}
