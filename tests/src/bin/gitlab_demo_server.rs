//! A local GitLab for the main job (`scripts/run.sh`): serves the recorded gitlab.com
//! project of `harness::gitlab_replay` (DevLake's recording of
//! `gitlab-data/snowflake_spend`) as GitLab REST v4 does, prints its API root on one line,
//! and serves until stdin closes or it is killed. No network: everything is replayed.

use std::io::Read;

use harness::gitlab_replay::{devlake_project, GitlabReplay, ReplayOptions};

#[tokio::main]
async fn main() {
    let replay = GitlabReplay::start(devlake_project(), ReplayOptions::default()).await;
    println!("{}", replay.api_url());
    // Serve until the parent closes our stdin (or kills us).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await
    .unwrap();
}
