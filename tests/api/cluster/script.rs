//! `deploy/local-cluster.sh`, the way an operator uses it: `up` starts private PostgreSQL
//! and Redis, three nodes and nginx; through nginx alone the nodes act as one gateway
//! (WebSocket upgrades and SSE pass unbuffered); `status` sees every part; `down` stops it.

use std::process::{Command, Output};

use super::*;
use crate::realtime::{client::WsClient, run, session_with_workflow, sse::open};

/// A cluster the script started in its own directory, stopped when dropped (even when the
/// test fails, so nothing is left running).
pub(super) struct ScriptCluster {
    dir: TempPath,
    /// Passed to the script (and so to every node it starts).
    env: Vec<(String, String)>,
}

impl ScriptCluster {
    /// `up` with this test's binary and `env`; panics unless everything started.
    pub(super) fn up(env: &[(&str, &str)]) -> Self {
        let cluster = Self {
            dir: TempPath::new("local-cluster"),
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        };
        let up = cluster.script("up", &["--bin", env!("CARGO_BIN_EXE_kailash-gateway")]);
        assert!(succeeded(&up), "up");
        cluster
    }

    /// The load balancer, as clients see it.
    pub(super) fn balancer(&self) -> Api {
        Api::new(
            self.env("KAILASH_LB_URL"),
            self.env("KAILASH_API_GATEWAY_SECRET"),
        )
    }

    fn script(&self, command: &str, extra: &[&str]) -> Output {
        self.command(command, extra).output().expect("bash runs")
    }

    /// `local-cluster.sh COMMAND --dir DIR EXTRA...`, not yet run.
    pub(super) fn command(&self, command: &str, extra: &[&str]) -> Command {
        let mut script = Command::new("bash");
        script
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/local-cluster.sh"
            ))
            .arg(command)
            .arg("--dir")
            .arg(&self.dir.0)
            .args(extra);
        script
    }

    /// One variable of the script's `env` output, as a shell evaluating it sees it.
    fn env(&self, name: &str) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local-cluster.sh");
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "eval \"$(bash '{script}' env --dir '{}')\" && printf %s \"${name}\"",
                self.dir.0.display()
            ))
            .output()
            .expect("bash runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).expect("UTF-8")
    }
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        let down = self.script("down", &[]);
        if !down.status.success() {
            eprintln!("local-cluster.sh down: {down:?}");
        }
    }
}

pub(super) fn succeeded(output: &Output) -> bool {
    if !output.status.success() {
        eprintln!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.status.success()
}

#[actix_rt::test]
async fn the_local_cluster_script_runs_three_nodes_behind_nginx_as_one_gateway() {
    let cluster = ScriptCluster::up(&[]);
    let balancer = cluster.balancer();
    let nodes = cluster.env("KAILASH_NODE_URLS");
    assert_eq!(nodes.split(' ').count(), 3, "{nodes}");

    // Everything through nginx: requests land on any node, the stream on any other.
    let (session, workflow) = session_with_workflow(&balancer, "alice").await;
    let mut sse = open(&balancer, "alice", &format!("session_id={session}"), None).await;
    let mut socket = WsClient::connect(&balancer, "alice", &format!("session_id={session}")).await;
    run(&balancer, "alice", &session, &workflow).await;
    let streamed = sse.until("workflow.completed").await;
    assert!(streamed.len() >= 3, "{streamed:?}");
    let over_ws = socket.events_until("workflow.completed").await;
    assert_eq!(over_ws.len(), streamed.len(), "the same events on both");

    let status = cluster.script("status", &[]);
    assert!(succeeded(&status), "status sees every part up");
    let report = String::from_utf8_lossy(&status.stdout);
    for part in ["nginx", "node-1", "node-2", "node-3", "redis", "postgres"] {
        assert!(report.contains(part), "{part} in {report}");
    }
}
