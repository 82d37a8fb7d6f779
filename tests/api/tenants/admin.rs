//! `/api/admin/tenants`: create, list, read, change, deactivate and activate; strict input
//! validation with per-field errors; platform administrators only; every change audited.

use reqwest::Method;
use serde_json::{Value, json};

use super::*;

#[actix_web::test]
async fn a_platform_admin_creates_reads_changes_and_lists_tenants() {
    let app = spawn_app().await;
    let created = app
        .create_tenant(&json!({
            "tenant_id": "acme",
            "name": "Acme Corp",
            "limits": {"max_sessions": 10, "max_nodes_per_workflow": 5},
            "features": {"ai_enabled": true},
            "allowed_node_types": ["MergeNode", "SwitchNode"]
        }))
        .await;
    assert_eq!(created["tenant_id"], "acme");
    assert_eq!(created["name"], "Acme Corp");
    assert_eq!(created["active"], true);
    assert_eq!(
        created["limits"],
        json!({"max_sessions": 10, "max_nodes_per_workflow": 5})
    );
    assert_eq!(created["features"], json!({"ai_enabled": true}));
    assert_eq!(
        created["allowed_node_types"],
        json!(["MergeNode", "SwitchNode"])
    );
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    // Without an id, one is generated.
    let generated = app.create_tenant(&json!({"name": "Globex"})).await;
    let generated_id = generated["tenant_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated_id).is_ok());
    assert_eq!(generated["limits"], json!({}));
    assert_eq!(generated["allowed_node_types"], json!([]));

    let read = json(as_platform(&app, Method::GET, "/api/admin/tenants/acme", None).await).await;
    assert_eq!(read, created);

    // PATCH replaces each given field whole and leaves the others.
    let changed = as_platform(
        &app,
        Method::PATCH,
        "/api/admin/tenants/acme",
        Some(&json!({"name": "Acme", "limits": {"max_workflows": 3}})),
    )
    .await;
    assert_eq!(changed.status(), 200);
    let changed = json(changed).await;
    assert_eq!(changed["name"], "Acme");
    assert_eq!(changed["limits"], json!({"max_workflows": 3}));
    assert_eq!(changed["features"], json!({"ai_enabled": true}));

    let listed = json(as_platform(&app, Method::GET, "/api/admin/tenants", None).await).await;
    assert_eq!(listed["total"], 3);
    let ids: Vec<_> = listed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = vec!["acme".to_owned(), "default".into(), generated_id.into()];
    expected.sort();
    assert_eq!(ids, expected);

    let entries = json(
        as_platform(
            &app,
            Method::GET,
            "/api/admin/audit?action=tenant.create",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(entries["total"], 2);
    let entries = entries["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["resource"] == "acme" && e["user_id"] == "admin")
    );
    let updates = json(
        as_platform(
            &app,
            Method::GET,
            "/api/admin/audit?action=tenant.update",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(updates["total"], 1);
}

#[actix_web::test]
async fn existing_unknown_and_default_tenants_answer_with_stable_codes() {
    let app = spawn_app().await;
    app.add_tenant("acme").await;
    let again = as_platform(
        &app,
        Method::POST,
        "/api/admin/tenants",
        Some(&json!({"tenant_id": "acme", "name": "again"})),
    )
    .await;
    assert_error(
        again,
        409,
        "tenant_exists",
        "A tenant with this id already exists",
    )
    .await;
    for (method, path) in [
        (Method::GET, "/api/admin/tenants/nope"),
        (Method::PATCH, "/api/admin/tenants/nope"),
        (Method::POST, "/api/admin/tenants/nope/deactivate"),
        (Method::POST, "/api/admin/tenants/nope/activate"),
    ] {
        let response = as_platform(&app, method, path, Some(&json!({}))).await;
        assert_error(response, 404, "tenant_not_found", "Tenant not found").await;
    }
    let default = as_platform(
        &app,
        Method::POST,
        "/api/admin/tenants/default/deactivate",
        None,
    )
    .await;
    assert_error(
        default,
        409,
        "default_tenant",
        "The default tenant cannot be deactivated",
    )
    .await;
}

#[actix_web::test]
async fn bad_tenant_bodies_name_each_field() {
    let app = spawn_app().await;
    let api = &app.api;
    let post = |body: Value| async move {
        as_platform(api, Method::POST, "/api/admin/tenants", Some(&body)).await
    };
    let unknown_limit = post(json!({"name": "x", "limits": {"max_users": 3}})).await;
    let body = json(unknown_limit).await;
    assert_eq!(body["code"], "invalid_request");
    assert_eq!(body["errors"][0]["path"], "limits.max_users");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown field `max_users`"),
        "{body}"
    );
    let negative = json(post(json!({"name": "x", "limits": {"max_sessions": -1}})).await).await;
    assert_eq!(negative["errors"][0]["path"], "limits.max_sessions");
    let unknown_field = json(post(json!({"name": "x", "active": false})).await).await;
    assert_eq!(unknown_field["code"], "invalid_request");
    assert_eq!(unknown_field["errors"][0]["path"], "active");

    let many = post(json!({
        "tenant_id": "no spaces",
        "name": "  ",
        "limits": {"max_sessions": 0, "requests_per_second": 5},
        "features": {"ai_enabled": "yes"},
        "allowed_node_types": ["MergeNode", "NoSuchNode"]
    }))
    .await;
    assert_error_with(
        many,
        400,
        "invalid_request",
        "The request body has invalid fields",
        Some(json!([
            {"path": "name", "message": "must be 1 to 128 characters, not blank"},
            {"path": "limits.max_sessions", "message": "must be at least 1 (leave it out for no limit)"},
            {"path": "features.ai_enabled", "message": "must be true or false"},
            {"path": "allowed_node_types[1]", "message": "is not a node type"},
            {"path": "tenant_id", "message": "must be 1 to 64 letters, digits or _-."}
        ])),
    )
    .await;
    let nameless = post(json!({"tenant_id": "acme"})).await;
    assert_error_with(
        nameless,
        400,
        "invalid_request",
        "The request body has invalid fields",
        Some(json!([{"path": "name", "message": "is required"}])),
    )
    .await;

    app.add_tenant("acme").await;
    let rename = as_platform(
        &app,
        Method::PATCH,
        "/api/admin/tenants/acme",
        Some(&json!({"tenant_id": "other"})),
    )
    .await;
    assert_error_with(
        rename,
        400,
        "invalid_request",
        "The request body has invalid fields",
        Some(json!([{"path": "tenant_id", "message": "cannot be changed"}])),
    )
    .await;
}

#[actix_web::test]
async fn only_the_platform_tenants_admins_manage_tenants() {
    let app = spawn_app().await;
    app.add_tenant("acme").await;
    let acme_admin = app.token_in("acme", "root", &["admin"]);
    let developer = app.token_for("dev");
    for token in [&acme_admin, &developer] {
        for (method, path) in [
            (Method::GET, "/api/admin/tenants"),
            (Method::POST, "/api/admin/tenants"),
            (Method::GET, "/api/admin/tenants/acme"),
            (Method::PATCH, "/api/admin/tenants/acme"),
            (Method::POST, "/api/admin/tenants/acme/deactivate"),
            (Method::POST, "/api/admin/tenants/acme/activate"),
        ] {
            let response = send(&app, token, method, path, Some(&json!({"name": "x"}))).await;
            assert_error(response, 403, "forbidden", "You are not allowed to do this").await;
        }
    }
    // A tenant's admin cannot give itself the permission through a custom role either.
    let role = send(
        &app,
        &acme_admin,
        Method::PUT,
        "/api/admin/roles/platform",
        Some(&json!({"permissions": ["tenant:manage"]})),
    )
    .await;
    let body = json(role).await;
    assert_eq!(body["code"], "invalid_request");
    assert_eq!(body["errors"][0]["path"], "permissions[0]");
    // The bootstrap admin, logged in, is a platform administrator.
    let login = app
        .request(Method::POST, "/api/auth/login")
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let token = json(login).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = send(&app, &token, Method::GET, "/api/admin/tenants", None).await;
    assert_eq!(listed.status(), 200);
}
