//! Several real gateway processes on one PostgreSQL database and one Redis act as one
//! gateway. Each test starts its own [`LocalCluster`]: a fresh database, its own Redis key
//! prefix, and N child processes of the real binary on free loopback ports.
//!
//! A test that restarts the Redis server takes [`REDIS_FAULT`] for writing; every other
//! test of this module takes it for reading, so no cluster sees Redis vanish unless it asked
//! for that (and [`PG_FAULT`] for reading, as every user of the PostgreSQL server does).

mod events;
mod faults;
mod rolling;
mod script;

mod sessions;
mod tenant_limits;

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::Duration,
};

use serde_json::Value;
use tokio::sync::RwLock;

pub use crate::persistence::PG_FAULT;
use crate::{
    helpers::*,
    persistence::fresh_database,
    process::{free_port, gateway, wait_ready},
};

/// Held for reading while a test uses the Redis server, for writing while one restarts it.
pub static REDIS_FAULT: RwLock<()> = RwLock::const_new(());

/// The test Redis (exported by scripts/test.sh).
pub fn redis_url() -> String {
    std::env::var("KAILASH_TEST_REDIS_URL").expect(
        "KAILASH_TEST_REDIS_URL is not set: run the tests through scripts/test.sh, which starts Redis",
    )
}

/// One gateway process of a cluster.
pub struct Node {
    pub api: Api,
    pub node_id: String,
    child: Option<Child>,
}

impl std::ops::Deref for Node {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Node {
    /// Sends `signal` (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running node").id();
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// `kill -9`: the process ends with no chance to tidy up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// N gateway nodes sharing a fresh database and a Redis key prefix.
pub struct LocalCluster {
    pub nodes: Vec<Node>,
    database_url: String,
    prefix: String,
    secret: String,
    data_dir: TempPath,
    started: usize,
}

impl std::ops::Index<usize> for LocalCluster {
    type Output = Node;

    fn index(&self, index: usize) -> &Node {
        &self.nodes[index]
    }
}

impl LocalCluster {
    pub async fn start(nodes: usize) -> Self {
        Self::start_with(nodes, |_| {}).await
    }

    /// Like [`LocalCluster::start`], with `customize` applied to each node's command.
    pub async fn start_with(nodes: usize, customize: impl Fn(&mut Command)) -> Self {
        let mut cluster = Self {
            nodes: Vec::new(),
            database_url: fresh_database().await,
            prefix: format!(
                "kgw-test-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            secret: random_secret(),
            data_dir: TempPath::new("cluster"),
            started: 0,
        };
        for _ in 0..nodes {
            let node = cluster.start_node(&customize);
            cluster.nodes.push(node);
        }
        cluster
    }

    /// Starts one more node (not added to `nodes`), with `customize` applied to its command.
    pub fn start_node(&mut self, customize: impl FnOnce(&mut Command)) -> Node {
        self.started += 1;
        let port = free_port();
        let node_id = format!("node-{}", self.started);
        let data_dir: PathBuf = self.data_dir.0.join(&node_id);
        std::fs::create_dir_all(&data_dir).expect("node data dir");
        let mut command = gateway(&data_dir);
        command
            .env("KAILASH_BIND", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", redis_url())
            .env("KAILASH_REDIS_PREFIX", &self.prefix)
            .env("KAILASH_NODE_ID", &node_id)
            .env("KAILASH_API_GATEWAY_SECRET", &self.secret)
            .env("KAILASH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("KAILASH_WORKERS", "1");
        customize(&mut command);
        let child = command.spawn().expect("the gateway binary starts");
        let node = Node {
            api: Api::new(format!("http://127.0.0.1:{port}"), self.secret.clone()),
            node_id,
            child: Some(child),
        };
        wait_ready(port);
        node
    }

    /// The database every node stores in.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// An access token for the bootstrap `admin`, minted with the cluster's secret.
    pub fn admin_token(&self) -> String {
        self.nodes[0].mint(kailash_gateway::auth::token::MintRequest {
            subject: "admin".into(),
            tenant_id: None,
            roles: vec!["admin".into()],
            permissions: vec![],
            lifetime: chrono::Duration::minutes(10),
            token_type: kailash_gateway::auth::token::TokenType::Access,
        })
    }
}

/// `GET /api/admin/nodes` through `node`: the ids of the live nodes.
pub async fn live_nodes(cluster: &LocalCluster, node: &Node) -> Vec<String> {
    let answer: Value = json(
        node.request(reqwest::Method::GET, "/api/admin/nodes")
            .bearer_auth(cluster.admin_token())
            .send()
            .await
            .expect("request completes"),
    )
    .await;
    answer["nodes"]
        .as_array()
        .expect("a node list")
        .iter()
        .map(|n| n["node_id"].as_str().unwrap().to_owned())
        .collect()
}

/// How long cross-node effects may take in these tests (generous: CI machines are shared).
pub const SETTLE: Duration = Duration::from_secs(15);
