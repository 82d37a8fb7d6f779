//! Tests of `HTTPRequestNode` against a small HTTP server on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{
    super::{egress::testing, files::testing::run},
    *,
};

fn node(allow: &[&str]) -> NodeRegistry {
    testing::registry(register, allow)
}

async fn fetch(registry: &NodeRegistry, params: Value) -> Result<NodeOutput, String> {
    testing::call(registry, "HTTPRequestNode", params).await
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering by path; returns its base URL.
async fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let flaky_hits = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, Arc::clone(&flaky_hits)));
        }
    });
    base
}

async fn answer(mut stream: TcpStream, flaky_hits: Arc<AtomicUsize>) {
    let mut received = Vec::new();
    let (head, body) = loop {
        let mut chunk = [0; 4096];
        let Ok(n @ 1..) = stream.read(&mut chunk).await else {
            return;
        };
        received.extend_from_slice(&chunk[..n]);
        let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.parse().unwrap());
        if received.len() >= end + 4 + length {
            break (
                head,
                String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into_owned(),
            );
        }
    };
    let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
    let (status, extra, content) = match target.split('?').next().unwrap() {
        "/json" => (
            "200 OK",
            "content-type: application/json\r\n",
            r#"{"hello":"world"}"#.to_owned(),
        ),
        "/text" => (
            "200 OK",
            "content-type: text/plain\r\n",
            "plain text".to_owned(),
        ),
        "/echo" => (
            "200 OK",
            "content-type: application/json\r\n",
            json!({"head": head, "body": body}).to_string(),
        ),
        "/to-private" => (
            "302 Found",
            "location: http://10.1.2.3/secret\r\n",
            String::new(),
        ),
        "/to-json" => ("302 Found", "location: /json\r\n", String::new()),
        "/loop" => ("302 Found", "location: /loop\r\n", String::new()),
        "/flaky" if flaky_hits.fetch_add(1, Ordering::SeqCst) == 0 => {
            ("503 Service Unavailable", "", String::new())
        }
        "/flaky" => ("200 OK", "", "recovered".to_owned()),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ("200 OK", "", String::new())
        }
        "/huge" => {
            // No content-length: the size is only discovered while reading.
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                .await;
            let _ = stream.write_all(&vec![b'a'; MAX_BODY_BYTES + 1]).await;
            return;
        }
        _ => ("404 Not Found", "", String::new()),
    };
    let length = content.len();
    let reply = format!(
        "HTTP/1.1 {status}\r\n{extra}content-length: {length}\r\nconnection: close\r\n\r\n{content}"
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

#[test]
fn private_targets_and_other_schemes_are_refused() {
    run(async {
        let node = node(&[]);
        for url in [
            "http://127.0.0.1/",
            "http://localhost:9/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://2130706433/",
            "https://[::ffff:192.168.0.1]/",
        ] {
            let error = fetch(&node, json!({"url": url})).await.unwrap_err();
            assert!(error.contains("refused"), "{url}: {error}");
        }
        for url in ["ftp://example.com/x", "file:///etc/passwd"] {
            let error = fetch(&node, json!({"url": url})).await.unwrap_err();
            assert!(error.contains("only http and https"), "{url}: {error}");
        }
    });
}

#[test]
fn responses_are_reported() {
    run(async {
        let (node, base) = (node(&["127.0.0.1"]), serve().await);
        let out = fetch(&node, json!({"url": format!("{base}/json")}))
            .await
            .unwrap();
        assert_eq!(
            (&out["status_code"], &out["success"]),
            (&json!(200), &json!(true))
        );
        let response = &out["response"];
        assert_eq!(response["content"], json!({"hello": "world"}));
        assert_eq!(response["content_type"], "application/json");
        assert_eq!(response["headers"]["content-type"], "application/json");
        assert_eq!(response["url"], format!("{base}/json"));
        assert!(response["response_time_ms"].as_f64().unwrap() >= 0.0);
        let out = fetch(&node, json!({"url": format!("{base}/text")}))
            .await
            .unwrap();
        assert_eq!(out["response"]["content"], "plain text");
        let error = fetch(&node, json!({"url": format!("{base}/missing")}))
            .await
            .unwrap_err();
        assert_eq!(error, format!("HTTP 404 Not Found from {base}/missing"));
        let error = fetch(
            &node,
            json!({"url": format!("{base}/slow"), "timeout": 0.3}),
        )
        .await
        .unwrap_err();
        assert!(error.contains("timed out after 0.3s"), "{error}");
        let error = fetch(&node, json!({"url": format!("{base}/huge")}))
            .await
            .unwrap_err();
        assert!(error.contains("larger than"), "{error}");
        let out = fetch(
            &node,
            json!({"url": format!("{base}/flaky"), "retry_count": 1}),
        )
        .await
        .unwrap();
        assert_eq!(out["response"]["content"], "recovered");
    });
}

#[test]
fn redirects_are_checked_and_limited() {
    run(async {
        let (node, base) = (node(&["127.0.0.1"]), serve().await);
        let error = fetch(&node, json!({"url": format!("{base}/to-private")}))
            .await
            .unwrap_err();
        assert!(
            error.contains("10.1.2.3") && error.contains("refused"),
            "{error}"
        );
        let out = fetch(&node, json!({"url": format!("{base}/to-json")}))
            .await
            .unwrap();
        assert_eq!(out["response"]["url"], format!("{base}/json"));
        let error = fetch(&node, json!({"url": format!("{base}/loop")}))
            .await
            .unwrap_err();
        assert!(error.contains("more than 5 redirects"), "{error}");
    });
}

#[test]
fn query_body_headers_and_auth_are_sent() {
    run(async {
        let (node, base) = (node(&["127.0.0.1"]), serve().await);
        let params = json!({
            "url": format!("{base}/echo"), "method": "post", "headers": {"X-Test": "yes"},
            "params": {"q": "a b", "n": 2, "tag": ["x", "y"]}, "json_data": {"k": 1},
            "auth_type": "bearer", "auth_token": "tok",
        });
        let echo = &fetch(&node, params).await.unwrap()["response"]["content"];
        let head = echo["head"].as_str().unwrap();
        let target = head.split(' ').nth(1).unwrap();
        let mut query: Vec<_> = target.strip_prefix("/echo?").unwrap().split('&').collect();
        query.sort_unstable();
        assert_eq!(query, ["n=2", "q=a+b", "tag=x", "tag=y"], "{head}");
        assert!(head.starts_with("post "), "{head}");
        for line in [
            "x-test: yes",
            "authorization: bearer tok",
            "content-type: application/json",
        ] {
            assert!(head.contains(line), "{line} in {head}");
        }
        assert_eq!(echo["body"], r#"{"k":1}"#);
        let params = json!({"url": format!("{base}/echo"), "method": "PUT", "data": {"a": "1"},
            "auth_type": "api_key", "auth_token": "key"});
        let echo = &fetch(&node, params).await.unwrap()["response"]["content"];
        assert!(echo["head"].as_str().unwrap().contains("x-api-key: key"));
        assert_eq!(echo["body"], "a=1");
    });
}

#[test]
fn bad_parameters_fail() {
    run(async {
        let node = node(&[]);
        for (params, expected) in [
            (json!({"url": "not a url"}), "invalid url"),
            (
                json!({"url": "http://example.com", "method": "TRACE"}),
                "method must be one of",
            ),
            (
                json!({"url": "http://example.com", "json_data": 1, "data": "x"}),
                "not both",
            ),
            (
                json!({"url": "http://example.com", "auth_type": "basic", "auth_token": "x"}),
                "user:pass",
            ),
            (
                json!({"url": "http://example.com", "auth_type": "bearer"}),
                "needs auth_token",
            ),
            (
                json!({"url": "http://example.com", "timeout": 0}),
                "positive number",
            ),
            (
                json!({"url": "http://example.com", "retry_count": 11}),
                "retry_count",
            ),
        ] {
            let error = fetch(&node, params).await.unwrap_err();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    });
}
