//! Shared token budgets through real concurrent sessions.

use harness::sqlx::{self, PgConnection};
use harness::TestDb;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// (fingerprint, wait in seconds, available)
async fn acquire(conn: &mut PgConnection, fingerprints: &[&str], cost: i32) -> (Option<String>, f64, i32) {
    sqlx::query_as(
        "SELECT fingerprint, extract(epoch FROM wait)::float8, available
         FROM aveloxis.token_acquire($1, 'core', $2)",
    )
    .bind(fingerprints)
    .bind(cost)
    .fetch_one(conn)
    .await
    .unwrap()
}

/// `reset`: a SQL expression for the reset time.
async fn settle(conn: &mut PgConnection, fingerprint: &str, remaining: i32, reset: &str) {
    sqlx::query(&format!("SELECT aveloxis.token_settle($1, 'core', $2, {reset})"))
        .bind(fingerprint)
        .bind(remaining)
        .execute(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn eight_acquirers_never_spend_past_the_reported_budget() {
    let db = TestDb::with_extension("tokens_concurrent").await;
    let mut conn = db.connect().await;
    sqlx::query("SELECT aveloxis.set_setting('tokens.reserve', '10')")
        .execute(&mut conn)
        .await
        .unwrap();
    // One rate-limit window, as the forge names it: a fixed reset time.
    let window = "'2099-01-01 00:00:00+00'::timestamptz";
    settle(&mut conn, A, 100, window).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = db.connect().await;
        tasks.push(tokio::spawn(async move {
            let mut grants = 0;
            loop {
                let (token, wait, _) = acquire(&mut c, &[A], 1).await;
                match token {
                    Some(_) => grants += 1,
                    None => {
                        assert!(wait > 3500.0, "told to wait for the reset, not {wait} s");
                        return grants;
                    }
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(
        total, 90,
        "100 reported, 10 kept in reserve: exactly 90 grants among 8 acquirers"
    );
    let outstanding: i32 = sqlx::query_scalar("SELECT outstanding FROM aveloxis.token_status() WHERE bucket = 'core'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(outstanding, 90);

    // Responses come back: each settles its grant; an older report never raises the budget.
    settle(&mut conn, A, 40, window).await;
    settle(&mut conn, A, 60, window).await;
    let remaining: i32 =
        sqlx::query_scalar("SELECT reported_remaining FROM aveloxis.token_status() WHERE bucket = 'core'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(remaining, 40);
}

#[tokio::test]
async fn the_fullest_token_is_chosen_and_unknown_ones_are_probed_one_at_a_time() {
    let db = TestDb::with_extension("tokens_choice").await;
    let mut conn = db.connect().await;
    settle(&mut conn, A, 500, "aveloxis_ops.clock() + interval '1 hour'").await;
    settle(&mut conn, B, 4000, "aveloxis_ops.clock() + interval '1 hour'").await;
    let (token, wait, available) = acquire(&mut conn, &[A, B], 1).await;
    assert_eq!((token.as_deref(), wait, available), (Some(B), 0.0, 4000 - 50 - 1));

    // A token never reported: one probe, then wait until its response is settled.
    let c = "cccccccccccccccccccccccccccccccc";
    assert_eq!(acquire(&mut conn, &[c], 1).await.0.as_deref(), Some(c));
    let (token, wait, _) = acquire(&mut conn, &[c], 1).await;
    assert_eq!(token, None);
    assert!(wait > 0.0 && wait <= 60.0, "the probe window: {wait}");
    settle(&mut conn, c, 4999, "aveloxis_ops.clock() + interval '1 hour'").await;
    assert_eq!(acquire(&mut conn, &[c], 1).await.0.as_deref(), Some(c));

    // An exhausted token is used again once its window has reset (then probed).
    settle(&mut conn, A, 0, "aveloxis_ops.clock() + interval '10 minutes'").await;
    assert_eq!(acquire(&mut conn, &[A], 1).await.0, None);
    sqlx::query("SELECT aveloxis.set_setting('clock.offset', '11 minutes')")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(acquire(&mut conn, &[A], 1).await.0.as_deref(), Some(A));
}

#[tokio::test]
async fn invalid_tokens_are_skipped_and_raw_tokens_refused() {
    let db = TestDb::with_extension("tokens_invalid").await;
    let mut conn = db.connect().await;
    settle(&mut conn, A, 5000, "aveloxis_ops.clock() + interval '1 hour'").await;
    settle(&mut conn, B, 100, "aveloxis_ops.clock() + interval '1 hour'").await;
    sqlx::query("SELECT aveloxis.token_invalidate($1)")
        .bind(A)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(acquire(&mut conn, &[A, B], 1).await.0.as_deref(), Some(B));
    sqlx::query("SELECT aveloxis.token_invalidate($1)")
        .bind(B)
        .execute(&mut conn)
        .await
        .unwrap();
    let err = sqlx::query("SELECT * FROM aveloxis.token_acquire($1, 'core')")
        .bind(&[A, B][..])
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("every token offered is invalid"), "{err}");
    // A successful response proves the token valid again.
    settle(&mut conn, A, 4000, "aveloxis_ops.clock() + interval '1 hour'").await;
    assert_eq!(acquire(&mut conn, &[A, B], 1).await.0.as_deref(), Some(A));

    let err =
        sqlx::query("SELECT * FROM aveloxis.token_acquire(ARRAY['ghp_16C7e42F292c6912E7710c838347Ae178B4a'], 'core')")
            .execute(&mut conn)
            .await
            .unwrap_err();
    assert!(
        err.to_string().contains("never the token itself") || err.to_string().contains("hex digits"),
        "{err}"
    );
    let err = sqlx::query("SELECT * FROM aveloxis.token_acquire($1, 'rest')")
        .bind(&[A][..])
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown rate-limit bucket"), "{err}");
}
