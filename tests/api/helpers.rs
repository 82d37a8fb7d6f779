//! `spawn_app()`: a real gateway on a random port inside the test's actix System, a
//! reqwest client, and token minting with the app's secret.

use std::time::Duration;

use actix_web::{dev::ServerHandle, web};
use kailash_gateway::{
    Application,
    app::AppState,
    auth::token::{MintRequest, TokenKeys, TokenType},
    config::{AuthMode, Secret, Settings},
};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

/// The bootstrap `admin` user's password in tests.
pub const ADMIN_PASSWORD: &str = "admin-test-password";

/// A gateway in this process: its address and client ([`Api`]), state and server.
pub struct TestApp {
    pub api: Api,
    pub state: web::Data<AppState>,
    pub server: ServerHandle,
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A gateway as its clients see it, wherever it runs: its address, a client, and token
/// minting with its secret.
pub struct Api {
    pub address: String,
    pub client: Client,
    pub secret: String,
}

/// Settings every test starts from: gated, one worker, a fresh data dir, quiet logs, one
/// Python worker of `KAILASH_TEST_PYTHON` (scripts/test.sh: a venv with pandas).
pub fn test_settings() -> Settings {
    let data_dir = std::env::temp_dir().join(format!("kailash-test-{}", uuid::Uuid::new_v4()));
    Settings {
        bind: "127.0.0.1:0".into(),
        workers: 1,
        node_data_dirs: vec![data_dir.join("files")],
        data_dir,
        log_filter: "warn".into(),
        python_executable: std::env::var("KAILASH_TEST_PYTHON")
            .unwrap_or_else(|_| "python3".into()),
        python_workers: 1,
        admin_password: Some(Secret::new(ADMIN_PASSWORD)),
        ..Settings::default()
    }
}

/// A unique path under the system temp directory, removed (with its contents) on drop.
pub struct TempPath(pub std::path::PathBuf);

impl TempPath {
    pub fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("kailash-test-{}-{name}", uuid::Uuid::new_v4())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns a gateway with `customize` applied to [`test_settings`].
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let secret = random_secret();
    let mut settings = test_settings();
    settings.api_gateway_secret = Some(Secret::new(secret.clone()));
    customize(&mut settings);
    settings.validate().expect("test settings are valid");
    let signing = (settings.auth_mode == AuthMode::Gated).then(|| Secret::new(secret.clone()));
    spawn(
        Application::build(settings, signing.as_ref())
            .await
            .expect("app builds"),
        secret,
    )
    .await
}

/// Opens the accounts of a built gateway, starts serving it and connects a client.
pub async fn spawn(app: Application, secret: String) -> TestApp {
    app.open_accounts().await.expect("accounts open");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (state, server) = (app.state(), app.server_handle());
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        api: Api::new(address, secret),
        state,
        server,
    }
}

impl Api {
    pub fn new(address: String, secret: String) -> Self {
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client builds");
        Self {
            address,
            client,
            secret,
        }
    }

    /// An access token for `user` in the default tenant, as the gateway mints them.
    pub fn token_for(&self, user: &str) -> String {
        self.mint(MintRequest {
            subject: user.into(),
            tenant_id: None,
            roles: vec!["user".into()],
            permissions: vec![],
            lifetime: chrono::Duration::minutes(10),
            token_type: TokenType::Access,
        })
    }

    /// An access token for `user` of `tenant` with `roles`.
    pub fn token_in(&self, tenant: &str, user: &str, roles: &[&str]) -> String {
        self.mint(MintRequest {
            subject: user.into(),
            tenant_id: Some(tenant.into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            permissions: vec![],
            lifetime: chrono::Duration::minutes(10),
            token_type: TokenType::Access,
        })
    }

    /// An access token of a platform administrator (role `admin` in the default tenant).
    pub fn platform_admin_token(&self) -> String {
        self.token_in("default", "admin", &["admin"])
    }

    /// Creates a tenant with `body` (`{"tenant_id", "name", ...}`) and returns it.
    pub async fn create_tenant(&self, body: &Value) -> Value {
        let response = self
            .request(Method::POST, "/api/admin/tenants")
            .bearer_auth(self.platform_admin_token())
            .json(body)
            .send()
            .await
            .expect("request completes");
        assert_eq!(response.status(), 201, "tenant created");
        json(response).await
    }

    /// Creates an unlimited tenant named by its id.
    pub async fn add_tenant(&self, tenant_id: &str) {
        self.create_tenant(&serde_json::json!({"tenant_id": tenant_id, "name": tenant_id}))
            .await;
    }

    pub fn mint(&self, request: MintRequest) -> String {
        TokenKeys::hs256(self.secret.as_bytes()).mint(&request)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
    }

    /// A request authenticated as `user`.
    pub fn as_user(&self, user: &str, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(self.token_for(user))
    }

    /// Sends a request as `user`.
    pub async fn send_as(&self, user: &str, method: Method, path: &str) -> Response {
        self.as_user(user, method, path)
            .send()
            .await
            .expect("request completes")
    }

    /// Sends a request as `user` and reads the JSON answer.
    pub async fn json_as(&self, user: &str, method: Method, path: &str) -> Value {
        json(self.send_as(user, method, path).await).await
    }

    /// Sends a JSON body as `user`.
    pub async fn post_json(&self, user: &str, path: &str, body: &Value) -> Response {
        self.as_user(user, Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("request completes")
    }

    /// The `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        self.request(Method::GET, "/metrics")
            .send()
            .await
            .expect("request completes")
            .text()
            .await
            .expect("body reads")
    }

    /// Creates a session for `user` and returns its id.
    pub async fn create_session(&self, user: &str) -> String {
        let response = self
            .as_user(user, Method::POST, "/api/sessions")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        json(response).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

pub async fn json(response: Response) -> Value {
    let text = response.text().await.expect("body reads");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Asserts an error answer whole: status, the exact JSON body `{detail, code, request_id}`,
/// and that the body's request id is the `X-Request-ID` header's.
pub async fn assert_error(response: Response, status: u16, code: &str, detail: &str) -> Value {
    assert_error_with(response, status, code, detail, None).await
}

/// [`assert_error`] for validation failures, whose body also carries `errors`.
pub async fn assert_error_with(
    response: Response,
    status: u16,
    code: &str,
    detail: &str,
    errors: Option<Value>,
) -> Value {
    assert_eq!(response.status(), status, "status of a `{code}` error");
    let header_id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    let body = json(response).await;
    let mut expected = serde_json::json!({"detail": detail, "code": code, "request_id": header_id});
    if let Some(errors) = errors {
        expected["errors"] = errors;
    }
    assert_eq!(body, expected);
    body
}

/// Polls `check` until it returns true or `within` passes.
pub async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The native SwitchNode → MergeNode workflow the execution and real-time tests run: `route`
/// sends `input_data` with `tier == "gold"` to `gold`, anything else to `other`.
#[rustfmt::skip]
pub fn route_and_merge() -> Value {
    serde_json::json!({
        "name": "route_and_merge",
        "nodes": [
            {"id": "route", "type": "SwitchNode", "config": {"condition_field": "tier", "operator": "==", "value": "gold"}},
            {"id": "gold", "type": "MergeNode", "config": {"merge_type": "concat"}},
            {"id": "other", "type": "MergeNode", "config": {"merge_type": "concat"}}
        ],
        "connections": [
            {"from_node": "route", "from_output": "true_output", "to_node": "gold", "to_input": "data1"},
            {"from": "route", "from_output": "false_output.tier", "to": "other", "to_input": "data1"}
        ]
    })
}
