//! The RBAC matrix across the built-in roles, the same denials over WebSocket, node-level
//! rules through a custom role, the admin routes' bad inputs, and the audit entries.

use reqwest::Method;
use serde_json::json;

use super::*;
use crate::realtime::client::WsClient;

const ROLES: [&str; 4] = ["admin", "developer", "operator", "viewer"];

/// Whether each role (in [`ROLES`] order) may make the request.
struct Row {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    allowed: [bool; 4],
}

fn row(method: Method, path: &'static str, allowed: [bool; 4]) -> Row {
    Row {
        method,
        path,
        body: None,
        allowed,
    }
}

#[actix_web::test]
async fn each_built_in_role_gets_exactly_its_routes() {
    let app = spawn_app().await;
    let (y, n) = (true, false);
    let rows = [
        row(Method::GET, "/api/sessions", [y, y, y, y]),
        row(Method::GET, "/api/sessions/{sid}", [y, y, y, y]),
        Row {
            body: Some(route_and_merge()),
            ..row(
                Method::POST,
                "/api/workflows?session_id={sid}",
                [y, y, n, n],
            )
        },
        row(Method::GET, "/api/workflows?session_id={sid}", [y, y, y, y]),
        row(Method::GET, "/api/schemas/nodes", [y, y, y, y]),
        Row {
            body: Some(json!({"workflow_id": "nope"})),
            ..row(
                Method::POST,
                "/api/executions?session_id={sid}",
                [y, y, y, n],
            )
        },
        row(
            Method::GET,
            "/api/executions?session_id={sid}",
            [y, y, y, y],
        ),
        row(
            Method::DELETE,
            "/api/executions/nope?session_id={sid}",
            [y, y, y, n],
        ),
        row(Method::GET, "/api/webhooks", [y, y, n, n]),
        Row {
            body: Some(json!({"name": "ci"})),
            ..row(Method::POST, "/api/auth/api-keys", [y, y, y, n])
        },
        row(Method::GET, "/api/admin/users", [y, n, n, n]),
        row(Method::GET, "/api/admin/roles", [y, n, n, n]),
        row(Method::GET, "/api/admin/audit", [y, n, n, n]),
        row(Method::GET, "/api/stats", [y, y, y, y]),
        row(Method::DELETE, "/api/sessions/{sid}", [y, y, y, n]),
    ];
    for (i, role) in ROLES.iter().enumerate() {
        let token = user_with_roles(&app, &format!("{role}-user"), &[role]).await;
        let created = app
            .request(Method::POST, "/api/sessions")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 200, "{role} creates a session");
        let sid = json(created).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        for row in &rows {
            let path = row.path.replace("{sid}", &sid);
            let mut request = app.request(row.method.clone(), &path).bearer_auth(&token);
            if let Some(body) = &row.body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            if row.allowed[i] {
                assert_ne!(response.status(), 403, "{role} {} {path}", row.method);
                assert_ne!(response.status(), 401, "{role} {} {path}", row.method);
            } else {
                assert_error(response, 403, "forbidden", "You are not allowed to do this").await;
            }
        }
    }
    let denied = audit(&app, "outcome=denied&user=viewer-user").await;
    let denied_rows = rows.iter().filter(|r| !r.allowed[3]).count();
    assert_eq!(denied.len(), denied_rows);
    assert_eq!(denied[0]["action"], "session:close");
    assert!(
        denied[0]["resource"]
            .as_str()
            .unwrap()
            .starts_with("DELETE /api/sessions/")
    );
}

#[actix_web::test]
async fn websocket_messages_are_denied_like_their_http_twins() {
    let app = spawn_app().await;
    let viewer = user_with_roles(&app, "vera", &["viewer"]).await;
    let sid = json(
        app.request(Method::POST, "/api/sessions")
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap(),
    )
    .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = WsClient::connect_with(&app, Some(viewer), &format!("session_id={sid}")).await;
    for message in [
        json!({"type": "execute_workflow", "workflow_id": "w"}),
        json!({"type": "cancel_execution", "execution_id": "e"}),
    ] {
        let reply = ws.request(&message).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["error"]["code"], "forbidden");
        assert_eq!(reply["error"]["detail"], "You are not allowed to do this");
    }
    // Allowed messages still work for the viewer.
    let status = ws
        .request(&json!({"type": "get_status", "execution_id": "e"}))
        .await;
    assert_eq!(status["error"]["code"], "execution_not_found");
    let denied = audit(&app, "outcome=denied&user=vera").await;
    let resources: Vec<_> = denied.iter().map(|e| e["resource"].clone()).collect();
    assert_eq!(
        resources,
        [json!("ws:cancel_execution"), json!("ws:execute_workflow")]
    );
}

#[actix_web::test]
async fn custom_roles_and_node_level_rules() {
    let app = spawn_app().await;
    let admin = admin_token(&app).await;
    let put = |name: &'static str, body: Value| {
        app.request(Method::PUT, &format!("/api/admin/roles/{name}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let role = json!({
        "permissions": ["session:create", "session:read", "workflow:create"],
        "denied_node_types": ["PythonCodeNode"],
    });
    assert_eq!(put("builder", role).await.unwrap().status(), 200);
    let builtin = put("admin", json!({"permissions": []})).await.unwrap();
    assert_error(
        builtin,
        409,
        "role_in_use",
        "Built-in roles cannot be changed",
    )
    .await;
    let bad = put(
        "odd",
        json!({"permissions": ["root:everything"], "denied_node_types": ["NoSuchNode"]}),
    )
    .await
    .unwrap();
    let bad = json(bad).await;
    assert_eq!(bad["code"], "invalid_request");
    assert_eq!(bad["errors"].as_array().unwrap().len(), 2);

    let builder = user_with_roles(&app, "bob", &["builder"]).await;
    let sid = json(
        app.request(Method::POST, "/api/sessions")
            .bearer_auth(&builder)
            .send()
            .await
            .unwrap(),
    )
    .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let create = |workflow: Value| {
        app.request(Method::POST, &format!("/api/workflows?session_id={sid}"))
            .bearer_auth(&builder)
            .json(&workflow)
            .send()
    };
    assert_eq!(create(route_and_merge()).await.unwrap().status(), 200);
    let python = json!({"name": "py", "nodes": [
        {"id": "p", "type": "PythonCodeNode", "config": {"code": "result = 1"}}
    ], "connections": []});
    let refused = create(python).await.unwrap();
    assert_error(refused, 403, "forbidden", "You are not allowed to do this").await;
    let entries = audit(&app, "action=workflow:node_type&user=bob").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["outcome"], "denied");
    // The role has no execute permission.
    let run = app
        .request(Method::POST, &format!("/api/executions?session_id={sid}"))
        .bearer_auth(&builder)
        .json(&json!({"workflow_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 403);
    let deleted = app
        .request(Method::DELETE, "/api/admin/roles/builder")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(audit(&app, "action=role.put").await.len(), 1);
    assert_eq!(audit(&app, "action=role.delete").await.len(), 1);
}

#[actix_web::test]
async fn admin_user_routes_answer_bad_requests_with_stable_codes() {
    let app = spawn_app().await;
    let admin = admin_token(&app).await;
    let send = |method: Method, path: &str, body: Option<Value>| {
        let mut request = app.request(method, path).bearer_auth(&admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let ok = send(Method::POST, "/api/admin/users",
        Some(json!({"username": "eve", "password": "eve-password", "roles": ["viewer"], "attributes": {"department": "ops"}})))
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let body = json(ok).await;
    assert_eq!(body["roles"], json!(["viewer"]));
    assert!(body.get("password_hash").is_none());
    let again = send(
        Method::POST,
        "/api/admin/users",
        Some(json!({"username": "eve", "password": "eve-password"})),
    )
    .await
    .unwrap();
    assert_error(
        again,
        409,
        "user_exists",
        "A user with this name already exists",
    )
    .await;
    let bad = send(
        Method::POST,
        "/api/admin/users",
        Some(json!({"username": "bad name", "password": "short", "roles": ["wizard"]})),
    )
    .await
    .unwrap();
    let bad = json(bad).await;
    assert_eq!(bad["code"], "invalid_request");
    let paths: Vec<_> = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].clone())
        .collect();
    assert_eq!(
        paths,
        [json!("password"), json!("roles[0]"), json!("username")]
    );
    let missing = send(Method::GET, "/api/admin/users/nobody", None)
        .await
        .unwrap();
    assert_error(missing, 404, "user_not_found", "User not found").await;

    // Changing roles shows at the next login.
    let patched = send(
        Method::PATCH,
        "/api/admin/users/eve",
        Some(json!({"roles": ["developer"]})),
    )
    .await
    .unwrap();
    assert_eq!(patched.status(), 200);
    let eve = tokens(&app, "eve", "eve-password").await;
    let webhooks = app
        .request(Method::GET, "/api/webhooks")
        .bearer_auth(eve["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(webhooks.status(), 200);
    let disabled = send(
        Method::PATCH,
        "/api/admin/users/eve",
        Some(json!({"disabled": true})),
    )
    .await
    .unwrap();
    assert_eq!(disabled.status(), 200);
    assert_eq!(login(&app, "eve", "eve-password").await.status(), 401);
    let gone = send(Method::DELETE, "/api/admin/users/eve", None)
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    let listed = json(send(Method::GET, "/api/admin/users", None).await.unwrap()).await;
    assert_eq!(listed["total"], 1, "only admin remains");
    for action in ["user.create", "user.update", "user.delete"] {
        assert!(
            !audit(&app, &format!("action={action}")).await.is_empty(),
            "{action}"
        );
    }
}
