//! The code nodes against real worker processes (`KAILASH_TEST_PYTHON`, else `python3`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::nodes::files::testing::{TempDir, call, run};

fn python() -> String {
    std::env::var("KAILASH_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn pool_in(dir: &TempDir, customize: impl FnOnce(&mut Settings)) -> PythonPool {
    let mut settings = Settings {
        python_executable: python(),
        python_workers: 1,
        node_data_dirs: vec![dir.0.clone()],
        ..Settings::default()
    };
    customize(&mut settings);
    PythonPool::start(pool_config(&settings))
}

fn registry_with(pool: &PythonPool) -> NodeRegistry {
    let mut registry = NodeRegistry::new();
    register(
        &mut registry,
        &NodeEnvironment {
            python: Some(pool.clone()),
            ..NodeEnvironment::default()
        },
    );
    registry
}

async fn run_type(
    registry: &NodeRegistry,
    node_type: &str,
    params: Value,
) -> Result<Value, String> {
    registry
        .get(node_type)
        .expect("registered")
        .run(call(params))
        .await
        .map(Value::Object)
        .map_err(|e| e.message)
}

#[test]
fn code_sees_its_inputs_and_outputs_result_or_its_own_locals() {
    let dir = TempDir::new();
    run(async {
        let registry = registry_with(&pool_in(&dir, |_| {}));
        let out = run_type(
            &registry,
            "PythonCodeNode",
            json!({"code": "result = {'n': x * 2}", "x": 21}),
        );
        assert_eq!(out.await.unwrap(), json!({"result": {"n": 42}}));

        // No `result`: what the code bound, not the inputs it left alone nor its config.
        let out = run_type(
            &registry,
            "PythonCodeNode",
            json!({"code": "total = sum(items)\nitems2 = items + [4]\n_hidden = 1\nimport math",
                   "items": [1, 2, 3], "name": "summer"}),
        );
        assert_eq!(
            out.await.unwrap(),
            json!({"total": 6, "items2": [1, 2, 3, 4]})
        );
    });
}

#[test]
fn data_transformer_applies_expressions_lambdas_and_blocks_in_order() {
    let dir = TempDir::new();
    run(async {
        let registry = registry_with(&pool_in(&dir, |_| {}));
        let out = run_type(
            &registry,
            "DataTransformer",
            json!({"data": [1, 2, 3, 4],
                   "transformations": ["lambda x: x * 10", "[v for v in result if v > 15]",
                                       "total = sum(result)\nresult = {'items': result, 'total': total + bonus}"],
                   "bonus": 1}),
        );
        assert_eq!(
            out.await.unwrap(),
            json!({"result": {"items": [20, 30, 40], "total": 91}})
        );
        let failed = run_type(
            &registry,
            "DataTransformer",
            json!({"data": 1, "transformations": ["result + 1", "result / 0"]}),
        );
        let message = failed.await.unwrap_err();
        assert!(
            message.starts_with("transformation 2: ZeroDivisionError"),
            "{message}"
        );
    });
}

#[test]
fn a_dropped_run_kills_its_worker_and_the_pool_replaces_it() {
    let dir = TempDir::new();
    run(async {
        let pool = pool_in(&dir, |_| {});
        let registry = registry_with(&pool);
        let sleeper = run_type(
            &registry,
            "PythonCodeNode",
            json!({"code": "import time\ntime.sleep(30)"}),
        );
        // Dropping the future is what cancel and the engine's timeouts do.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), sleeper)
                .await
                .is_err()
        );
        let started = Instant::now();
        let out = run_type(&registry, "PythonCodeNode", json!({"code": "result = 1"}));
        assert_eq!(out.await.unwrap(), json!({"result": 1}));
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn the_wall_clock_kills_code_that_runs_too_long() {
    let dir = TempDir::new();
    run(async {
        let pool = pool_in(&dir, |s| s.python_timeout_seconds = 0.5);
        let registry = registry_with(&pool);
        let started = Instant::now();
        let out = run_type(
            &registry,
            "PythonCodeNode",
            json!({"code": "while True: pass"}),
        );
        let message = out.await.unwrap_err();
        assert!(message.contains("longer than 0.5 s"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let out = run_type(&registry, "PythonCodeNode", json!({"code": "result = 2"}));
        assert_eq!(out.await.unwrap(), json!({"result": 2}));
    });
}

#[test]
fn sandbox_mode_and_a_missing_python_are_refused_at_creation() {
    let dir = TempDir::new();
    run(async {
        let pool = pool_in(&dir, |s| {
            s.python_executable = "/nonexistent/python3".into()
        });
        assert!(!pool.is_available());
        let registry = registry_with(&pool);
        let node = registry.get("PythonCodeNode").unwrap();
        let config = json!({"code": "result = 1", "sandbox_mode": "trusted"});
        let problems = node.check_config(config.as_object().unwrap());
        let found: Vec<_> = problems
            .iter()
            .map(|p| (p.parameter.as_deref(), p.code))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some("sandbox_mode"), None),
                (None, Some("python_unavailable"))
            ]
        );
        let out = run_type(&registry, "PythonCodeNode", json!({"code": "result = 1"}));
        assert!(out.await.unwrap_err().contains("not available"));
    });
}
