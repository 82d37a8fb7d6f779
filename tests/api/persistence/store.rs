//! The PostgreSQL adapter through the `Store` port alone: migrations, every record type's
//! round trip, and tenant scoping on every repository method.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kailash_actors::{
    execution::{ExecutionSnapshot, ExecutionStatus},
    store::{
        ExecutionRecord, HistoryQuery, NodeRunRecord, SessionRecord, Store, WorkflowRecord, Write,
    },
};
use kailash_gateway::{adapters::postgres::PgStore, app::connect, config::Settings};
use serde_json::{Map, json};
use uuid::Uuid;

use super::{PG_FAULT, event_record, fresh_database, migrated_store};

#[actix_web::test]
async fn migrations_build_the_schema_from_empty_and_a_rerun_is_a_no_op() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    let store = connect(&url, &Settings::default()).unwrap();
    assert_eq!(
        store.migrate().await,
        Ok(12),
        "V1 (store), V2 (accounts), V3 (webhooks), V4 (cheaper history writes), V5 (fencing tokens), V6 (tenants), V7 (packed events), V8 (folded node runs), V9 (tenant rows backfilled), V10 (revocation times), V11 (row-level security) and V12 (page events as one text) applied to an empty database"
    );
    assert_eq!(store.migrate().await, Ok(0), "a re-run applies nothing");
    // A second node migrating concurrently waits for the lock and then finds nothing to do.
    let other = connect(&url, &Settings::default()).unwrap();
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    assert_eq!((a, b), (Ok(0), Ok(0)));
    let client = super::connect(&url).await;
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for table in [
        "event_pages",
        "events",
        "executions",
        "node_runs",
        "running_executions",
        "sessions",
        "tenants",
        "workflow_versions",
    ] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
}

/// One of everything, for `tenant`; answers (session, execution).
pub(super) async fn fill(store: &PgStore, tenant: &str) -> (SessionRecord, ExecutionRecord) {
    let now = Utc::now();
    let session = SessionRecord {
        tenant_id: tenant.into(),
        session_id: Uuid::new_v4(),
        user_id: "alice".into(),
        metadata: json!({"app": tenant}),
        created_at: now,
        last_activity: now,
    };
    store.create_session(&session).await.unwrap();
    for version in [1, 2] {
        store
            .save_workflow(&WorkflowRecord {
                tenant_id: tenant.into(),
                session_id: session.session_id,
                workflow_id: "flow".into(),
                version,
                definition: json!({"name": format!("v{version}"), "nodes": []}),
                created_at: now,
            })
            .await
            .unwrap();
    }
    let mut execution = ExecutionRecord {
        tenant_id: tenant.into(),
        session_id: session.session_id,
        user_id: "alice".into(),
        inputs: json!({"n": {"x": 1}}),
        config_overrides: json!({}),
        snapshot: ExecutionSnapshot {
            execution_id: Uuid::new_v4(),
            workflow_id: "flow".into(),
            workflow_name: "v2".into(),
            status: ExecutionStatus::Running,
            progress: 0.0,
            current_node: None,
            created_at: now,
            started_at: Some(now),
            completed_at: None,
            outputs: Map::new(),
            error: None,
            node_states: Map::new(),
        },
        fence: 0,
    };
    store.create_execution(&execution).await.unwrap();
    execution.snapshot.status = ExecutionStatus::Completed;
    execution.snapshot.progress = 100.0;
    execution.snapshot.completed_at = Some(now);
    execution
        .snapshot
        .outputs
        .insert("n".into(), json!({"y": 2}));
    let event = |seq| {
        Write::Event(event_record(
            tenant,
            session.session_id,
            seq,
            Some("alice"),
            now,
            json!({}),
        ))
    };
    let batch = vec![
        event(1),
        event(2),
        Write::NodeRun(NodeRunRecord {
            tenant_id: tenant.into(),
            execution_id: execution.snapshot.execution_id,
            node_id: "n".into(),
            node_type: "MergeNode".into(),
            status: "completed".into(),
            started_at: Some(now),
            finished_at: now,
            execution_time_ms: Some(1.5),
            outputs: json!({"y": 2}),
            error: None,
            fence: 0,
        }),
        Write::ExecutionFinished(Box::new(execution.clone())),
        Write::SessionTouched {
            tenant_id: tenant.into(),
            session_id: session.session_id,
            at: now + Duration::seconds(5),
        },
    ];
    store.write_batch(&batch).await.unwrap();
    // Retried after an unknown outcome: nothing doubles.
    store.write_batch(&batch).await.unwrap();
    (session, execution)
}

#[actix_web::test]
async fn every_record_round_trips_and_no_method_answers_across_tenants() {
    let _server_up = PG_FAULT.read().await;
    let store = Arc::new(migrated_store().await);
    let (a_session, a_run) = fill(&store, "tenant-a").await;
    let (b_session, b_run) = fill(&store, "tenant-b").await;
    let (a, b) = ("tenant-a", "tenant-b");
    let (a_id, b_id) = (a_session.session_id, b_session.session_id);
    let (a_run_id, b_run_id) = (a_run.snapshot.execution_id, b_run.snapshot.execution_id);

    let tenants = store.tenants().await.unwrap();
    assert_eq!(tenants.iter().map(|t| &**t).collect::<Vec<_>>(), [a, b]);

    // Sessions: round trip (activity moved by the touch), and only the tenant's.
    let sessions = store.active_sessions(a).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].session_id, a_id);
    assert_eq!(sessions[0].metadata, json!({"app": a}));
    assert!(sessions[0].last_activity > a_session.last_activity);

    // Workflows: newest version, every version; nothing under the other tenant's session.
    let workflows = store.workflows(a, a_id).await.unwrap();
    assert_eq!(workflows.len(), 1);
    assert_eq!(
        (
            workflows[0].version,
            workflows[0].definition["name"].clone()
        ),
        (2, json!("v2"))
    );
    assert_eq!(
        store
            .workflow_versions(a, a_id, "flow")
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store.workflows(a, b_id).await.unwrap().is_empty());
    assert!(
        store
            .workflow_versions(a, b_id, "flow")
            .await
            .unwrap()
            .is_empty()
    );

    // Executions: the finished state, inputs kept; none of the other tenant's.
    let runs = store.executions(a, a_id, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.snapshot.status, ExecutionStatus::Completed);
    assert_eq!(run.snapshot.outputs["n"], json!({"y": 2}));
    assert_eq!(run.inputs, json!({"n": {"x": 1}}));
    assert!(store.executions(a, b_id, 10).await.unwrap().is_empty());

    let node_runs = store.node_runs(a, a_run_id).await.unwrap();
    assert_eq!(node_runs.len(), 1, "the retried batch did not double it");
    assert_eq!(
        (node_runs[0].status.as_ref(), node_runs[0].execution_time_ms),
        ("completed", Some(1.5))
    );
    assert!(store.node_runs(a, b_run_id).await.unwrap().is_empty());

    let events = store.recent_events(a, a_id, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    // The JSON as written, and the record read back from it.
    let second: serde_json::Value = serde_json::from_str(&events[1].json).unwrap();
    assert_eq!(
        (second["seq"].as_u64(), second["user_id"].as_str()),
        (Some(2), Some("alice"))
    );
    assert_eq!(
        (events[1].session_id, events[1].user_id.as_deref()),
        (a_id, Some("alice"))
    );
    assert!(store.recent_events(a, b_id, 10).await.unwrap().is_empty());

    let history = store
        .execution_history(
            a,
            &HistoryQuery {
                limit: 10,
                ..HistoryQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(history.executions.len(), 1);
    assert_eq!(history.executions[0].snapshot.execution_id, a_run_id);

    // Recovery and retention touch only the tenant named.
    let mut running = b_run.clone();
    running.snapshot.execution_id = Uuid::new_v4();
    running.snapshot.status = ExecutionStatus::Running;
    running.snapshot.completed_at = None;
    store.create_execution(&running).await.unwrap();
    assert!(
        store
            .fail_interrupted(a, None, "stopped", Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    let failed = store
        .fail_interrupted(b, None, "stopped", Utc::now())
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].snapshot.status, ExecutionStatus::Failed);
    assert_eq!(failed[0].snapshot.error.as_deref(), Some("stopped"));

    let later = Utc::now() + Duration::hours(1);
    let pruned = store.prune(a, later, later).await.unwrap();
    assert_eq!((pruned.events, pruned.executions), (2, 1));
    assert!(store.recent_events(a, a_id, 10).await.unwrap().is_empty());
    assert_eq!(
        store.recent_events(b, b_id, 10).await.unwrap().len(),
        2,
        "B untouched"
    );
    assert_eq!(store.executions(b, b_id, 10).await.unwrap().len(), 2);
    assert_eq!(store.node_runs(b, b_run_id).await.unwrap().len(), 1);

    // Ending a session hides it from the active ones.
    store
        .write_batch(&[Write::SessionEnded {
            tenant_id: a.into(),
            session_id: a_id,
            at: Utc::now(),
            reason: "closed",
        }])
        .await
        .unwrap();
    assert!(store.active_sessions(a).await.unwrap().is_empty());
    assert_eq!(store.active_sessions(b).await.unwrap().len(), 1);
    assert!(store.health().await.problem.is_none());
}

/// A node run of `execution` under `fence`.
fn node_run(execution: &ExecutionRecord, node_id: &str, fence: u64) -> Write {
    Write::NodeRun(NodeRunRecord {
        tenant_id: execution.tenant_id.clone(),
        execution_id: execution.snapshot.execution_id,
        node_id: node_id.into(),
        node_type: "PythonCodeNode".into(),
        status: "completed".into(),
        started_at: None,
        finished_at: Utc::now(),
        execution_time_ms: None,
        outputs: json!({}),
        error: None,
        fence,
    })
}

#[actix_web::test]
async fn a_lost_runs_writes_under_its_old_fencing_token_change_nothing() {
    let _server_up = PG_FAULT.read().await;
    let store = migrated_store().await;
    let (session, finished) = fill(&store, "tenant-f").await;
    let tenant = "tenant-f";
    // A run leased with token 41 on a node that is then lost (cut off, not dead).
    let mut run = finished.clone();
    run.snapshot.execution_id = Uuid::new_v4();
    run.snapshot.status = ExecutionStatus::Running;
    run.snapshot.completed_at = None;
    run.fence = 41;
    store.create_execution(&run).await.unwrap();
    store
        .write_batch(&[node_run(&run, "first", 41)])
        .await
        .unwrap();

    // A survivor takes the session over: the run is failed and its token raised.
    let failed = store
        .fail_interrupted(tenant, Some(session.session_id), "node lost", Utc::now())
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].fence, 42, "the failure raised the token");

    // The lost node goes on writing under 41: neither its node runs nor its final state
    // are taken.
    let mut late = run.clone();
    late.snapshot.status = ExecutionStatus::Completed;
    late.snapshot.completed_at = Some(Utc::now());
    store
        .write_batch(&[
            node_run(&run, "second", 41),
            Write::ExecutionFinished(Box::new(late)),
        ])
        .await
        .unwrap();
    let kept = store
        .executions(tenant, session.session_id, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.snapshot.execution_id == run.snapshot.execution_id)
        .unwrap();
    assert_eq!(
        kept.snapshot.status,
        ExecutionStatus::Failed,
        "the failure stands"
    );
    assert_eq!(kept.snapshot.error.as_deref(), Some("node lost"));
    let recorded: Vec<String> = store
        .node_runs(tenant, run.snapshot.execution_id)
        .await
        .unwrap()
        .iter()
        .map(|n| n.node_id.to_string())
        .collect();
    assert_eq!(
        recorded,
        ["first"],
        "only what the lease holder wrote in time"
    );

    // Under the current token a write is taken (the token, not the writer, decides).
    store
        .write_batch(&[node_run(&run, "third", 42)])
        .await
        .unwrap();
    assert_eq!(
        store
            .node_runs(tenant, run.snapshot.execution_id)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[actix_web::test]
async fn node_runs_that_come_with_the_final_state_are_read_back_whole() {
    let _server_up = PG_FAULT.read().await;
    let store = migrated_store().await;
    let (_, finished) = fill(&store, "tenant-n").await;
    let tenant = "tenant-n";
    let mut run = finished.clone();
    run.snapshot.execution_id = Uuid::new_v4();
    run.snapshot.status = ExecutionStatus::Running;
    run.snapshot.completed_at = None;
    store.create_execution(&run).await.unwrap();

    // One run ended before the batch that finishes the execution; two come with it: one
    // whose outputs are the execution's outputs of that node, one failed with its own.
    // To the microsecond, what PostgreSQL keeps.
    let base = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let at = |ms| base + Duration::milliseconds(ms);
    let node = |id: &str, ms, status: &'static str, outputs, error: Option<&str>| NodeRunRecord {
        tenant_id: tenant.into(),
        execution_id: run.snapshot.execution_id,
        node_id: id.into(),
        node_type: "PythonCodeNode".into(),
        status: status.into(),
        started_at: Some(at(ms - 1)),
        finished_at: at(ms),
        execution_time_ms: Some(1.0),
        outputs,
        error: error.map(str::to_owned),
        fence: 0,
    };
    let early = node("a", 10, "completed", json!({"x": 1}), None);
    let same = node("b", 20, "completed", json!({"y": [1, 2]}), None);
    let failed = node("c", 30, "failed", json!({"partial": true}), Some("boom"));
    store
        .write_batch(&[Write::NodeRun(early.clone())])
        .await
        .unwrap();
    let mut done = run.clone();
    done.snapshot.status = ExecutionStatus::Failed;
    done.snapshot.completed_at = Some(at(40));
    done.snapshot.outputs = Map::from_iter([
        ("a".to_owned(), json!({"x": 1})),
        ("b".to_owned(), json!({"y": [1, 2]})),
    ]);
    let batch = [
        Write::NodeRun(same.clone()),
        Write::NodeRun(failed.clone()),
        Write::ExecutionFinished(Box::new(done)),
    ];
    store.write_batch(&batch).await.unwrap();
    store.write_batch(&batch).await.unwrap();

    let runs = store
        .node_runs(tenant, run.snapshot.execution_id)
        .await
        .unwrap();
    assert_eq!(
        runs,
        [early, same, failed],
        "in the order they ended, whole"
    );
    assert!(
        store
            .node_runs("tenant-other", run.snapshot.execution_id)
            .await
            .unwrap()
            .is_empty()
    );
}
