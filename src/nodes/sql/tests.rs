//! Tests of the SQL nodes against the test PostgreSQL (`KAILASH_TEST_DATABASE_URL`, else
//! the local server on 127.0.0.1:5432).

use serde_json::Value;
use uuid::Uuid;

use super::{
    super::{egress::testing, files::testing::run},
    *,
};

const LOCAL: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

fn database_url() -> String {
    std::env::var("KAILASH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs `query` with `parameters` on the test database through `SQLDatabaseNode`.
async fn sql(
    registry: &NodeRegistry,
    query: &str,
    parameters: Value,
) -> Result<NodeOutput, String> {
    let params =
        json!({"connection_string": database_url(), "query": query, "parameters": parameters});
    testing::call(registry, "SQLDatabaseNode", params).await
}

#[test]
fn refusals_need_no_database() {
    run(async {
        let registry = testing::registry(register, &[]);
        let error = sql(&registry, "SELECT 1", json!([])).await.unwrap_err();
        assert!(error.contains("refused"), "{error}");
        let registry = testing::registry(register, &LOCAL);
        for (connection_string, expected) in [
            (
                "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/postgres",
                "unix socket",
            ),
            ("host=127.0.0.1 user=postgres", "must be a postgres://"),
            ("postgres://u@127.0.0.1/db?hostaddr=10.0.0.1", "hostaddr"),
            (
                "postgres://u@127.0.0.1/db?port=x",
                "invalid value for option `port`",
            ),
        ] {
            let params = json!({"connection_string": connection_string, "query": "SELECT 1"});
            let error = testing::call(&registry, "SQLDatabaseNode", params)
                .await
                .unwrap_err();
            assert!(error.contains(expected), "{connection_string}: {error}");
        }
        let error = sql(&registry, "SELECT $1", json!({"a": 1}))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            "named parameters are not supported; use $1.. with a list"
        );
    });
}

#[test]
fn parameters_are_bound_and_types_mapped() {
    run(async {
        let registry = testing::registry(register, &LOCAL);
        let table = format!("kailash_sql_{}", Uuid::new_v4().simple());
        let create = format!(
            "CREATE TEMP TABLE {table} (id int4, score float8, name text, active bool, \
             doc jsonb, ref uuid, at timestamptz, note text)"
        );
        sql(&registry, &create, json!([])).await.unwrap();
        let hostile = format!("'; DROP TABLE {table}; --");
        let insert = format!("INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
        let uuid = "5f0c6a52-3f0e-4b8e-9d55-1a2b3c4d5e6f";
        let values =
            json!([7, 2.5, hostile, true, {"a": [1, 2]}, uuid, "2024-05-06T07:08:09Z", null]);
        let out = sql(&registry, &insert, values).await.unwrap();
        assert_eq!(
            (&out["row_count"], &out["data"], &out["columns"]),
            (&json!(1), &json!([]), &json!([]))
        );
        assert!(out["execution_time"].as_f64().unwrap() >= 0.0);
        let out = sql(&registry, &format!("SELECT * FROM {table}"), json!([]))
            .await
            .unwrap();
        let columns = json!(["id", "score", "name", "active", "doc", "ref", "at", "note"]);
        assert_eq!((&out["row_count"], &out["columns"]), (&json!(1), &columns));
        let expected = json!({"id": 7, "score": 2.5, "name": hostile, "active": true,
            "doc": {"a": [1, 2]}, "ref": uuid, "at": "2024-05-06T07:08:09Z", "note": null});
        assert_eq!(out["data"], json!([expected]));
        let update = format!("UPDATE {table} SET note = $1 WHERE id = $2");
        let out = sql(&registry, &update, json!(["seen", "7"])).await.unwrap();
        assert_eq!(out["row_count"], 1);
    });
}

#[test]
fn other_types_arrays_and_async_nesting() {
    run(async {
        let registry = testing::registry(register, &LOCAL);
        let query = "SELECT $1::numeric AS n, -0.001::numeric AS small, \
            10000.5::numeric AS big, ARRAY[[1, 2], [3, NULL]] AS grid, $2::int4[] AS ids, \
            $3::text[] AS words, '\\x01ff'::bytea AS bytes, 'infinity'::timestamptz AS forever, \
            DATE '2024-01-02' AS day, 0.1::float4 AS f4, 'NaN'::float8 AS nan, \
            '2024-01-02 03:04:05.5'::timestamp AS local";
        let values = json!(["123.4500", [1, 2, null], ["a\"b", "c,d"]]);
        let row = &sql(&registry, query, values).await.unwrap()["data"][0];
        let expected = json!({"n": "123.4500", "small": "-0.001", "big": "10000.5",
            "grid": [[1, 2], [3, null]], "ids": [1, 2, null], "words": ["a\"b", "c,d"],
            "bytes": "\\x01ff", "forever": "infinity", "day": "2024-01-02", "f4": 0.1,
            "nan": "NaN", "local": "2024-01-02T03:04:05.500"});
        assert_eq!(row, &expected);
        let params = json!({"connection_string": database_url(), "query": "SELECT 1 AS one"});
        let out = testing::call(&registry, "AsyncSQLDatabaseNode", params)
            .await
            .unwrap();
        assert_eq!(out["result"]["data"], json!([{"one": 1}]));
        assert_eq!(out["result"]["row_count"], 1);
    });
}

#[test]
fn failures_are_node_errors() {
    run(async {
        let registry = testing::registry(register, &LOCAL);
        for (query, values, expected) in [
            ("SELEC 1", json!([]), "syntax error"),
            (
                "SELECT $1::int4",
                json!([1.5]),
                "parameter $1: cannot bind a number to type int4",
            ),
            ("SELECT $1::bool", json!([{"a": 1}]), "parameter $1"),
            (
                "SELECT $1::int4",
                json!([]),
                "takes 1 parameter(s) but 0 were given",
            ),
            ("SELECT '10.0.0.1'::inet AS addr", json!([]), "addr::text"),
            (
                "SELECT $1::int4",
                json!(["abc"]),
                "invalid input syntax for type integer",
            ),
        ] {
            let error = sql(&registry, query, values).await.unwrap_err();
            assert!(error.contains(expected), "{query}: {error}");
        }
        // A statement timeout ends the run; the pool serves the next run normally.
        let started = Instant::now();
        let query = "SELECT pg_sleep(5)";
        let params = json!({"connection_string": database_url(), "query": query, "timeout": 0.5});
        let error = testing::call(&registry, "SQLDatabaseNode", params)
            .await
            .unwrap_err();
        assert!(error.contains("time"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            sql(&registry, "SELECT 2 AS two", json!([])).await.unwrap()["data"],
            json!([{"two": 2}])
        );
    });
}

#[test]
fn dropping_a_run_cancels_its_statement() {
    run(async {
        let registry = testing::registry(register, &LOCAL);
        let query = format!("SELECT pg_sleep(30) -- {}", Uuid::new_v4());
        let cancelled = Duration::from_millis(300);
        assert!(
            tokio::time::timeout(cancelled, sql(&registry, &query, json!([])))
                .await
                .is_err()
        );
        let active =
            "SELECT count(*) AS n FROM pg_stat_activity WHERE query = $1 AND state = 'active'";
        // The cancel request goes out from a spawned task; give it a moment.
        for _ in 0..50 {
            let out = sql(&registry, active, json!([query])).await.unwrap();
            if out["data"][0]["n"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the dropped run's statement is still running");
    });
}
