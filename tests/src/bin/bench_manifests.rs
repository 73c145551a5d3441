//! Manifest parser benchmark (docs/benchmarks.md): `scripts/bench.sh manifests [copies]`.
//!
//! The corpus is the parser's fixtures: real manifest files of well-known projects, every
//! kind (pg_aveloxis/src/manifest/fixtures), each stored `copies` times in a table with
//! the path it has in its repository. Measured side by side, rounds alternated:
//! `aveloxis.parse_manifest(path, content)` over every row (what `reparse_manifests()`
//! and the drain pay), against reading the same rows' content once (`length(content)`,
//! the de-TOAST and scan every pass over them pays anyway).

use std::time::Instant;

use harness::sqlx;
use harness::{exec, TestDb};

#[tokio::main]
async fn main() {
    let copies: i64 = std::env::args()
        .nth(1)
        .map_or(2_000, |a| a.parse().expect("copies: a number"));
    let dir = harness::repo_root().join("pg_aveloxis/src/manifest/fixtures");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the fixtures")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f != "SOURCES.md")
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f.replace("__", "/"), String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect();
    files.sort();

    let db = TestDb::with_extension("bench_manifests").await;
    let mut conn = db.connect().await;
    exec(
        &mut conn,
        "CREATE TABLE corpus (path text NOT NULL, content text NOT NULL)",
    )
    .await;
    let (paths, contents): (Vec<String>, Vec<String>) = files.iter().cloned().unzip();
    sqlx::query(
        "INSERT INTO corpus SELECT p, c FROM unnest($1::text[], $2::text[]) AS f(p, c), generate_series(1, $3)",
    )
    .bind(&paths)
    .bind(&contents)
    .bind(copies)
    .execute(&mut conn)
    .await
    .unwrap();
    exec(&mut conn, "VACUUM ANALYZE corpus").await;
    let (rows, bytes): (i64, i64) = sqlx::query_as("SELECT count(*), sum(octet_length(content))::bigint FROM corpus")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let named: i64 =
        sqlx::query_scalar("SELECT count(p.package_name) FROM corpus c, aveloxis.parse_manifest(c.path, c.content) p")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        named > 0 && named < rows,
        "some files declare a name, some none: {named} of {rows}"
    );

    let (mut parse, mut read) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(p.package_name) FROM corpus c, aveloxis.parse_manifest(c.path, c.content) p",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        parse.push(t.elapsed().as_secs_f64());
        assert_eq!(n, named);
        let t = Instant::now();
        let n: i64 = sqlx::query_scalar("SELECT count(length(content)) FROM corpus")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        read.push(t.elapsed().as_secs_f64());
        assert_eq!(n, rows);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (parse, read) = (median(parse), median(read));
    println!(
        "corpus: {} real manifest files x {copies} = {rows} rows, {:.1} MB; {named} declare a name",
        files.len(),
        bytes as f64 / 1e6
    );
    println!(
        "  parse_manifest       {:>8.3} s  {:>10.0} manifests/s  {:>7.1} MB/s",
        parse,
        rows as f64 / parse,
        bytes as f64 / 1e6 / parse
    );
    println!(
        "  reading the content  {:>8.3} s  {:>10.0} manifests/s  {:>7.1} MB/s",
        read,
        rows as f64 / read,
        bytes as f64 / 1e6 / read
    );
    println!("  parse_manifest costs {:.1}x reading the same rows", parse / read);
}
