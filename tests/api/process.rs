//! The real binary as a child process: start-up checks, the embedded default's secret,
//! configured backends, and SIGTERM.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::{TempPath, random_secret};

const BINARY: &str = env!("CARGO_BIN_EXE_kailash-gateway");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command with a clean environment: nothing of the developer's leaks in.
pub fn gateway(data_dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KAILASH_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir());
    command
}

pub fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(body) = blocking_get(port, "/ready", None)
            && body.0 == 200
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("gateway on port {port} never became ready");
}

/// A minimal blocking HTTP GET (the test must not depend on the server's own runtime).
pub fn blocking_get(port: u16, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_bad_setting_stops_the_start_with_one_line_naming_it() {
    let data = TempPath::new("data");
    let dir = &data.0;
    for (env, value, named) in [
        ("KAILASH_MAX_SESSIONS", "many", "max_sessions"),
        ("KAILASH_AUTH_MODE", "maybe", "auth_mode"),
        (
            "KAILASH_SESSION_TIMEOUT_MINUTES",
            "-1",
            "session_timeout_minutes",
        ),
        ("KAILASH_BIND", "localhost", "bind"),
    ] {
        let output = gateway(dir).env(env, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{env}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(named), "{stderr} should name {named}");
    }
    let output = gateway(dir)
        .args(["--config", "/nonexistent/gateway.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/gateway.toml"));
}

#[test]
fn a_backend_without_a_secret_refuses_to_start_in_gated_mode() {
    let data = TempPath::new("data");
    let dir = &data.0;
    for (env, url) in [
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("REDIS_URL", "redis://127.0.0.1:6379/"),
    ] {
        let output = gateway(dir).env(env, url).output().unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("KAILASH_API_GATEWAY_SECRET"), "{stderr}");
    }
    assert!(
        !dir.join("jwt_secret").exists(),
        "no secret is generated outside the embedded default"
    );
}

#[test]
fn the_embedded_default_generates_keeps_and_announces_its_secret() {
    let data = TempPath::new("data");
    let dir = &data.0;
    let port = free_port();
    let mut child = gateway(dir)
        .env("KAILASH_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let token = lines
        .find_map(|line| {
            line.trim()
                .strip_prefix("eyJ")
                .map(|rest| format!("eyJ{rest}"))
        })
        .expect("an admin token is printed");
    // Keep reading so the gateway never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    wait_ready(port);
    let secret_file = dir.join("jwt_secret");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let (status, body) = blocking_get(port, "/api/sessions", Some(&token)).unwrap();
    assert_eq!(status, 200, "{body}");
    drop(_running);

    // A second start reuses the secret (the old token still works) and prints no token.
    let port = free_port();
    let child = gateway(dir)
        .env("KAILASH_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _running = Running(child);
    wait_ready(port);
    let (status, _) = blocking_get(port, "/api/sessions", Some(&token)).unwrap();
    assert_eq!(status, 200);
    // And `kailash-gateway token` mints with the same secret.
    let minted = gateway(dir)
        .args(["token", "--sub", "carol"])
        .output()
        .unwrap();
    let minted = String::from_utf8(minted.stdout).unwrap();
    let (status, _) = blocking_get(port, "/api/sessions", Some(minted.trim())).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn configured_backends_are_reported_redacted_and_sigterm_stops_cleanly() {
    let _server_up = crate::persistence::PG_FAULT.blocking_read();
    let data = TempPath::new("data");
    let dir = &data.0;
    let port = free_port();
    let database_url = std::env::var("KAILASH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let with_password = database_url.replacen("postgres@", "postgres:s3cret@", 1);
    let child = gateway(dir)
        .env("KAILASH_BIND", format!("127.0.0.1:{port}"))
        .env("KAILASH_API_GATEWAY_SECRET", random_secret())
        .env("DATABASE_URL", &with_password)
        .spawn()
        .unwrap();
    let mut running = Running(child);
    wait_ready(port);
    let (status, body) = blocking_get(port, "/health", None).unwrap();
    assert_eq!(status, 200);
    assert!(!body.contains("s3cret"), "{body}");
    assert!(body.contains("postgres:***@"), "{body}");

    let started = Instant::now();
    nix_kill(running.0.id());
    let exit = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "SIGTERM must stop the gateway"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

fn nix_kill(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
