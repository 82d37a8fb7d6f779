//! `HTTPRequestNode`: one HTTP(S) request per run, with the egress policy enforced on every
//! connection and every redirect hop.
//!
//! The node owns one `reqwest::Client`, so the connection pool and TLS setup are paid once,
//! not per run. The client's DNS resolver is the egress check itself: a host name is
//! resolved, every address vetted, and the connection made to exactly those addresses, which
//! leaves no window for DNS rebinding. IP-literal hosts, which no resolver sees, are checked
//! before sending and in the redirect policy. Proxies from the environment are ignored (a
//! proxy would resolve the target itself, past the check). Redirects are followed up to five
//! hops.
//!
//! A non-2xx answer fails the node (`HTTP 404 Not Found from <url>`); so do timeouts, refused
//! targets and bodies over 10 MiB. `retry_count` retries connection failures and 5xx answers
//! with a short exponential backoff.

use std::{
    error::Error as StdError,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use kailash_actors::engine::node::{
    NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, ParamSpec, ParamType, PortSpec,
    Widget,
};
use reqwest::{
    Client, Method, Request, Response, Url,
    dns::{Addrs, Name, Resolve, Resolving},
    redirect::Policy,
};
use serde_json::{Map, Value, json};

use super::{
    NodeEnvironment,
    egress::{EgressPolicy, error_chain, timeout_param},
    files::{native_node, optional_str, output, required_str, schema, wrong_type},
};

const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
/// More retries would only prolong an outage; the cap also bounds a run's total time.
const MAX_RETRIES: u32 = 10;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

pub fn register(registry: &mut NodeRegistry, env: &NodeEnvironment) {
    let policy = Arc::new(EgressPolicy::new(&env.egress_allow));
    match build_client(&policy) {
        Ok(client) => registry.register(native_node(http_schema(), move |call| {
            let (client, policy) = (client.clone(), Arc::clone(&policy));
            async move {
                let plan = plan(&client, &policy, &call)?;
                send(&client, plan).await
            }
        })),
        Err(error) => {
            tracing::error!(%error, "HTTPRequestNode is unavailable: cannot build its HTTP client")
        }
    }
}

fn http_schema() -> NodeSchema {
    use ParamType::{Any, Boolean, Integer, Number, Object, String as Text};
    let params = vec![
        ParamSpec::required("url", Text, "The http:// or https:// URL to request"),
        ParamSpec::optional("method", Text, Some(json!("GET")), "The HTTP method")
            .options(METHODS.map(Value::from)),
        ParamSpec::optional("headers", Object, None, "Request headers, name → value"),
        ParamSpec::optional(
            "params",
            Object,
            None,
            "Query parameters; a list repeats the name",
        ),
        ParamSpec::optional("json_data", Any, None, "A value sent as the JSON body"),
        ParamSpec::optional(
            "data",
            Any,
            None,
            "A string body, or an object sent as a form",
        ),
        ParamSpec::optional(
            "timeout",
            Number,
            Some(json!(DEFAULT_TIMEOUT_SECS)),
            "Seconds per try",
        )
        .validation(json!({"exclusive_minimum": 0})),
        ParamSpec::optional(
            "retry_count",
            Integer,
            Some(json!(0)),
            "Retries on connect errors, 5xx",
        )
        .validation(json!({"minimum": 0, "maximum": MAX_RETRIES})),
        ParamSpec::optional("auth_type", Text, None, "How auth_token is sent")
            .options(["bearer", "basic", "api_key"].map(Value::from)),
        ParamSpec::optional(
            "auth_token",
            Text,
            None,
            "Token, \"user:pass\" for basic, or API key",
        )
        .widget(Widget::Password),
    ];
    let outputs = vec![
        PortSpec::output(
            "response",
            Object,
            "status_code, headers, content_type, content, …",
        ),
        PortSpec::output("status_code", Integer, "The final HTTP status"),
        PortSpec::output(
            "success",
            Boolean,
            "Always true: a non-2xx answer fails the node",
        ),
    ];
    let description = "Sends an HTTP request and returns the response";
    schema(
        "HTTPRequestNode",
        "api",
        description,
        params,
        vec![],
        outputs,
    )
}

/// A client builder that only ever connects to addresses `policy` vetted (no proxy, which
/// would resolve targets itself). Shared with webhook delivery.
pub(crate) fn vetted_client(policy: &Arc<EgressPolicy>) -> reqwest::ClientBuilder {
    Client::builder()
        .dns_resolver(VettedResolver(Arc::clone(policy)))
        .no_proxy()
}

fn build_client(policy: &Arc<EgressPolicy>) -> reqwest::Result<Client> {
    let hops = Arc::clone(policy);
    vetted_client(policy)
        .redirect(Policy::custom(move |attempt| {
            // `previous` holds every URL already requested, the original included.
            if attempt.previous().len() > MAX_REDIRECTS {
                let error = NodeError::new(format!("more than {MAX_REDIRECTS} redirects"));
                return attempt.error(error);
            }
            match check_url(&hops, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(refusal),
            }
        }))
        .build()
}

/// Resolves through the egress policy, so the client only ever connects to vetted addresses.
struct VettedResolver(Arc<EgressPolicy>);

impl Resolve for VettedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.0);
        Box::pin(async move {
            // Port 0: reqwest substitutes the URL's port.
            let addrs = policy.check_host(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The scheme check, and the egress check for IP-literal hosts (names are vetted when the
/// resolver looks them up).
pub(crate) fn check_url(policy: &EgressPolicy, url: &Url) -> Result<(), NodeError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NodeError::new(format!(
            "only http and https URLs are allowed, not {}:",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| NodeError::new(format!("URL {} has no host", shown(url))))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // The URL parser has already turned every numeric IPv4 spelling into dotted form.
    match host.parse::<IpAddr>() {
        Ok(ip) => policy.check_ip(host, ip),
        Err(_) => Ok(()),
    }
}

/// One run's request and how to send it.
struct Plan {
    request: Request,
    timeout: Duration,
    retries: u32,
}

/// The request the parameters describe, once its URL has passed `check_url`.
fn plan(client: &Client, policy: &EgressPolicy, call: &NodeCall) -> Result<Plan, NodeError> {
    // The message leaves the URL out: it may hold credentials, which unparsed can't be masked.
    let url = Url::parse(required_str(call, "url")?)
        .map_err(|e| NodeError::new(format!("invalid url: {e}")))?;
    check_url(policy, &url)?;
    let name = optional_str(call, "method")?.unwrap_or("GET");
    let method = match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
        Ok(method) if METHODS.contains(&method.as_str()) => method,
        _ => {
            let methods = METHODS.join(", ");
            return Err(NodeError::new(format!(
                "method must be one of {methods}, got '{name}'"
            )));
        }
    };
    let timeout = timeout_param(call, Duration::from_secs(DEFAULT_TIMEOUT_SECS))?;
    let mut builder = client.request(method, url).timeout(timeout);
    for (name, value) in object_param(call, "headers")?.into_iter().flatten() {
        builder = builder.header(name.as_str(), text_of(value));
    }
    if let Some(params) = object_param(call, "params")? {
        builder = builder.query(&pairs(params));
    }
    builder = match (call.param("json_data"), call.param("data")) {
        (Some(_), Some(_)) => {
            return Err(NodeError::new("give either json_data or data, not both"));
        }
        (Some(json), None) => builder.json(json),
        (None, Some(Value::String(text))) => builder.body(text.clone()),
        (None, Some(Value::Object(form))) => builder.form(&pairs(form)),
        (None, Some(other)) => return Err(wrong_type("data", "a string or an object", other)),
        (None, None) => builder,
    };
    builder = match (
        optional_str(call, "auth_type")?,
        optional_str(call, "auth_token")?,
    ) {
        (None, _) => builder,
        (Some(_), None) => return Err(NodeError::new("auth_type needs auth_token")),
        (Some("bearer"), Some(token)) => builder.bearer_auth(token),
        (Some("basic"), Some(token)) => {
            let (user, password) = token
                .split_once(':')
                .ok_or_else(|| NodeError::new("basic auth_token must be \"user:pass\""))?;
            builder.basic_auth(user, Some(password))
        }
        (Some("api_key"), Some(token)) => builder.header("X-API-Key", token),
        (Some(other), Some(_)) => {
            return Err(NodeError::new(format!(
                "auth_type must be bearer, basic or api_key, got '{other}'"
            )));
        }
    };
    let request = builder
        .build()
        .map_err(|e| NodeError::new(format!("invalid request: {}", error_chain(&e))))?;
    Ok(Plan {
        request,
        timeout,
        retries: retry_count(call)?,
    })
}

fn retry_count(call: &NodeCall) -> Result<u32, NodeError> {
    let Some(value) = call.param("retry_count") else {
        return Ok(0);
    };
    value
        .as_u64()
        .and_then(|count| u32::try_from(count).ok())
        .filter(|count| *count <= MAX_RETRIES)
        .ok_or_else(|| {
            wrong_type(
                "retry_count",
                &format!("an integer from 0 to {MAX_RETRIES}"),
                value,
            )
        })
}

fn object_param<'a>(
    call: &'a NodeCall,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, NodeError> {
    call.param(name)
        .map(|value| {
            value
                .as_object()
                .ok_or_else(|| wrong_type(name, "an object", value))
        })
        .transpose()
}

/// Name/value pairs for a query string or form; a list value repeats its name, as Python's
/// `requests` does, and a null value is left out.
fn pairs(object: &Map<String, Value>) -> Vec<(&str, String)> {
    let mut pairs = Vec::new();
    for (name, value) in object {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                pairs.extend(items.iter().map(|item| (name.as_str(), text_of(item))))
            }
            scalar => pairs.push((name.as_str(), text_of(scalar))),
        }
    }
    pairs
}

/// A string as itself, anything else as its JSON text.
fn text_of(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

async fn send(
    client: &Client,
    Plan {
        request,
        timeout,
        retries,
    }: Plan,
) -> Result<NodeOutput, NodeError> {
    let url = shown(request.url());
    let mut attempt = 0;
    loop {
        // Every body this node builds is in memory, so a request can always be cloned.
        let this_try = request
            .try_clone()
            .ok_or_else(|| NodeError::new("the request body cannot be resent"))?;
        let started = Instant::now();
        let outcome = client.execute(this_try).await;
        let retryable = match &outcome {
            Ok(response) => response.status().is_server_error(),
            Err(error) => error.is_connect() && egress_refusal(error).is_none(),
        };
        if retryable && attempt < retries {
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
            continue;
        }
        let response = outcome.map_err(|error| send_error(&error, &url, timeout))?;
        return read_response(response, started, timeout).await;
    }
}

/// 250 ms, 500 ms, 1 s, then 2 s between attempts.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.saturating_sub(1).min(3))
}

async fn read_response(
    mut response: Response,
    started: Instant,
    timeout: Duration,
) -> Result<NodeOutput, NodeError> {
    let status = response.status();
    let url = shown(response.url());
    if !status.is_success() {
        let reason = status
            .canonical_reason()
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        return Err(NodeError::new(format!(
            "HTTP {}{reason} from {url}",
            status.as_str()
        )));
    }
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        // Repeated headers are joined as HTTP allows, so none is lost in the JSON object.
        if let Some(Value::String(joined)) = headers.get_mut(name.as_str()) {
            *joined = format!("{joined}, {value}");
        } else {
            headers.insert(name.as_str().to_owned(), Value::from(value.into_owned()));
        }
    }
    let content_type = headers.get("content-type").cloned().unwrap_or(Value::Null);
    let too_big = || {
        NodeError::new(format!(
            "response from {url} is larger than {MAX_BODY_BYTES} bytes"
        ))
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| send_error(&error, &url, timeout))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    let content = content(content_type.as_str().unwrap_or(""), &body);
    let response_time_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let response = json!({
        "status_code": status.as_u16(),
        "headers": headers,
        "content_type": content_type,
        "content": content,
        "response_time_ms": response_time_ms,
        "url": url,
    });
    Ok(output([
        ("response", response),
        ("status_code", json!(status.as_u16())),
        ("success", json!(true)),
    ]))
}

/// The body as JSON when the content type says so and it parses, else as (lossy) text.
fn content(content_type: &str, body: &[u8]) -> Value {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if (essence == "application/json" || essence.ends_with("+json"))
        && let Ok(value) = serde_json::from_slice(body)
    {
        return value;
    }
    Value::from(String::from_utf8_lossy(body).into_owned())
}

/// The egress refusal (or redirect limit) behind a failed request, if that is why it failed;
/// reqwest wraps what the resolver and redirect policy return as error sources.
fn egress_refusal(error: &reqwest::Error) -> Option<&NodeError> {
    std::iter::successors(Some(error as &(dyn StdError + 'static)), |&e| e.source())
        .find_map(|e| e.downcast_ref::<NodeError>())
}

fn send_error(error: &reqwest::Error, url: &str, timeout: Duration) -> NodeError {
    if let Some(refusal) = egress_refusal(error) {
        refusal.clone()
    } else if error.is_timeout() {
        NodeError::new(format!(
            "request to {url} timed out after {}s",
            timeout.as_secs_f64()
        ))
    } else {
        NodeError::new(format!("request to {url} failed: {}", error_chain(error)))
    }
}

/// The URL for messages and output, without a password it may carry.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        // Only fails for URLs that cannot have credentials, which then have none to hide.
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

#[cfg(test)]
mod tests;
