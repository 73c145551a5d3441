//! add_repo from many sessions at once: one row per repository, whatever the spelling.

use harness::sqlx;
use harness::TestDb;

#[tokio::test]
async fn concurrent_adds_of_one_repo_make_one_row() {
    let db = TestDb::with_extension("registry_concurrency").await;
    let pool = db.pool(16).await;
    let spellings = [
        "https://github.com/chaoss/augur",
        "https://github.com/CHAOSS/Augur.git",
        "git@github.com:chaoss/augur.git",
        "github.com/chaoss/augur/",
        "https://www.github.com/chaoss/augur",
    ];
    // 5 spellings x 8 rounds, in new groups too, all in flight together.
    let mut tasks = Vec::new();
    for round in 0..8 {
        for url in spellings {
            let pool = pool.clone();
            let group = format!("group-{}", round % 3);
            tasks.push(tokio::spawn(async move {
                sqlx::query_scalar::<_, i64>("SELECT aveloxis.add_repo($1, $2)")
                    .bind(url)
                    .bind(group)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }));
        }
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every caller gets the same repo_id: {ids:?}");

    let (repos, keys): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.repos), (SELECT count(*) FROM aveloxis_data.repo_url_history)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((repos, keys), (1, 1));
    pool.close().await;
}

#[tokio::test]
async fn concurrent_adds_of_distinct_repos_all_land() {
    let db = TestDb::with_extension("registry_distinct").await;
    let pool = db.pool(16).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            sqlx::query_scalar::<_, i64>("SELECT aveloxis.add_repo($1, 'Shared Group')")
                .bind(format!("https://github.com/owner{}/repo{i}", i % 7))
                .fetch_one(&pool)
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    let groups: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.repo_groups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        groups, 1,
        "the group is created once even when 200 sessions race for it"
    );
    pool.close().await;
}
