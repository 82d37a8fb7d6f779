//! API keys: created once (shown once), listed without the secret, scoped, revoked.

use reqwest::Method;
use serde_json::json;

use super::*;

#[actix_web::test]
async fn api_keys_authenticate_as_their_owner_within_their_scopes() {
    let app = spawn_app().await;
    let token = user_with_roles(&app, "kim", &["developer"]).await;
    let create = |body: Value| {
        app.request(Method::POST, "/api/auth/api-keys")
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let created = create(json!({"name": "ci", "scopes": ["session:create", "session:read"]}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    let key = created["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));

    let with_key = |method: Method, path: &str| {
        app.request(method, path)
            .header("x-api-key", key.clone())
            .send()
    };
    let session = with_key(Method::POST, "/api/sessions").await.unwrap();
    assert_eq!(session.status(), 200);
    assert_eq!(json(session).await["user_id"], "kim");
    // Outside the key's scopes, though the owner may.
    let hooks = with_key(Method::GET, "/api/webhooks").await.unwrap();
    assert_error(hooks, 403, "forbidden", "You are not allowed to do this").await;

    let listed = app
        .request(Method::GET, "/api/auth/api-keys")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let listed = json(listed).await;
    assert_eq!(listed["total"], 1);
    assert!(
        listed["api_keys"][0].get("api_key").is_none(),
        "the secret is shown once"
    );

    // Bad requests: scopes beyond the owner's, no name.
    let bad = json(
        create(json!({"name": "", "scopes": ["user:manage"]}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bad["code"], "invalid_request");
    assert_eq!(bad["errors"].as_array().unwrap().len(), 2);

    let key_id = created["key_id"].as_str().unwrap();
    let revoke = |id: String| {
        app.request(Method::DELETE, &format!("/api/auth/api-keys/{id}"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(revoke(key_id.to_owned()).await.unwrap().status(), 200);
    let again = revoke(key_id.to_owned()).await.unwrap();
    assert_error(again, 404, "api_key_not_found", "API key not found").await;
    let refused = with_key(Method::GET, "/api/sessions").await.unwrap();
    assert_error(
        refused,
        401,
        "invalid_token",
        "Invalid authentication credentials: unknown or revoked API key",
    )
    .await;
    assert_eq!(audit(&app, "action=apikey.create&user=kim").await.len(), 1);
    assert_eq!(audit(&app, "action=apikey.revoke&user=kim").await.len(), 1);
}
