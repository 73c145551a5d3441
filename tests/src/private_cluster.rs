//! A throwaway PostgreSQL cluster of one test's own (`scripts/cluster.sh` with its own
//! `AVELOXIS_CLUSTER_DIR`), for faults that must not hit the shared test cluster: crashes
//! and restarts. Destroyed when the value is dropped, also when the test fails.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::{pg_bindir, repo_root};

pub struct PrivateCluster {
    dir: PathBuf,
    /// `postgres://postgres@127.0.0.1:<port>/aveloxis` (the database cluster.sh creates).
    pub url: String,
}

/// `scripts/cluster.sh <command>` on the cluster in `dir`, with `extra_conf` appended to the
/// configuration of a cluster it creates.
fn cluster_sh(dir: &PathBuf, command: &str, extra_conf: &str) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/cluster.sh"))
        .arg(command)
        .env("AVELOXIS_CLUSTER_DIR", dir)
        .env("AVELOXIS_CLUSTER_EXTRA_CONF", extra_conf)
        .output()
        .expect("run scripts/cluster.sh")
}

impl PrivateCluster {
    /// Creates and starts a cluster under /tmp (the postgres OS user must reach it), with
    /// `extra_conf` (settings, one per line) after cluster.sh's own.
    pub fn start(label: &str, extra_conf: &str) -> PrivateCluster {
        let dir = PathBuf::from(format!("/tmp/pg_aveloxis-{label}-{}", std::process::id()));
        // A leftover of an earlier run with the same pid: not ours to keep.
        let _ = cluster_sh(&dir, "destroy", "");
        let mut cluster = PrivateCluster {
            dir,
            url: String::new(),
        };
        // cluster.sh picks a free port, but two clusters starting at once may pick the
        // same one: starts in this process wait for each other, and a start that lost the
        // port to another process is tried again (cluster.sh start is idempotent).
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut attempts = 0;
        let stdout = loop {
            attempts += 1;
            let out = cluster_sh(&cluster.dir, "start", extra_conf);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                break stdout;
            }
            assert!(
                attempts < 5,
                "the private cluster did not start: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        cluster.url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("DATABASE_URL="))
            .expect("cluster.sh prints DATABASE_URL")
            .to_string();
        cluster
    }

    /// `pg_ctl restart -m immediate`: every backend is killed without a checkpoint (as in a
    /// crash), then the server recovers and starts again on the same port (postmaster.opts).
    pub fn restart_immediate(&self) {
        let pg_ctl = pg_bindir().join("pg_ctl");
        let data = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        let args = [
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "restart",
            "-m",
            "immediate",
            "-w",
            "-t",
            "120",
        ];
        // As cluster.sh does: the server refuses to run as root.
        let out = if current_user_is("postgres") {
            Command::new(&pg_ctl).args(args).output()
        } else if current_user_is("root") {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&pg_ctl)
                .args(args)
                .output()
        } else {
            Command::new("sudo")
                .args(["-u", "postgres"])
                .arg(&pg_ctl)
                .args(args)
                .output()
        }
        .expect("run pg_ctl restart");
        assert!(
            out.status.success(),
            "pg_ctl restart -m immediate failed: {}{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

fn current_user_is(name: &str) -> bool {
    Command::new("id")
        .arg("-un")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == name)
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = cluster_sh(&self.dir, "destroy", "");
    }
}
