//! The deployment files, validated offline with the real tools `scripts/test.sh` installs
//! (`scripts/lib/deploy-tools.sh`): the kustomize overlays build and every resource passes the
//! Kubernetes schemas, the Deployment keeps the rollout promises (probes, grace period longer
//! than the drain, non-root, read-only root), `nginx -t` accepts `deploy/nginx.conf`, the compose
//! stack has its three nodes behind nginx, and the Dockerfile copies paths that exist.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;

/// Kubernetes version whose schemas the manifests must pass.
const KUBERNETES_VERSION: &str = "1.32.0";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A validator from `scripts/lib/deploy-tools.sh`, by its environment variable.
fn tool(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests through scripts/test.sh, which installs the deployment validators")
    })
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// YAML documents as JSON values, parsed by PyYAML (installed with kubernetes-validate).
fn parse_yaml(text: &str) -> Vec<Value> {
    let mut child = Command::new(tool("KAILASH_TEST_PYTHON"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "YAML does not parse: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn kustomize(overlay: &str) -> String {
    let output = run(Command::new(tool("KAILASH_TEST_KUBECTL"))
        .arg("kustomize")
        .arg(root().join("k8s/overlays").join(overlay)));
    String::from_utf8(output.stdout).unwrap()
}

/// Runs kubernetes-validate (strict: unknown fields fail) and returns the kinds it had no
/// schema for.
fn validate(file: &Path) -> BTreeSet<String> {
    let output = run(Command::new(tool("KAILASH_TEST_KUBE_VALIDATE"))
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(file));
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    report
        .lines()
        .filter_map(|line| line.split("Couldn't find schema for kind ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect()
}

fn kinds(resources: &[Value]) -> BTreeSet<&str> {
    resources
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect()
}

fn resource<'a>(resources: &'a [Value], kind: &str, name: &str) -> &'a Value {
    resources
        .iter()
        .find(|r| r["kind"] == kind && r["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The longest drain (src/shutdown.rs, steps 1 to 7 at their bounds) with the settings
/// `value` reads: delay + execution drain + in-flight requests and store flush (the
/// shutdown timeout each) + three actor asks.
fn longest_drain(value: impl Fn(&str) -> f64) -> f64 {
    value("KAILASH_DRAIN_DELAY_SECONDS")
        + value("KAILASH_EXECUTION_DRAIN_SECONDS")
        + 2.0 * value("KAILASH_SHUTDOWN_TIMEOUT_SECONDS")
        + 3.0 * value("KAILASH_ACTOR_ASK_TIMEOUT_MS") / 1000.0
}

fn seconds(config: &Value, key: &str) -> f64 {
    config["data"][key]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("ConfigMap sets no {key}"))
}

#[test]
fn every_overlay_builds_and_passes_the_kubernetes_schemas() {
    let dir = tempfile_dir();
    for overlay in ["development", "production"] {
        let rendered = kustomize(overlay);
        let file = dir.join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let unchecked = validate(&file);
        // The ServiceMonitor is the Prometheus Operator's CRD: not in the Kubernetes schemas.
        assert_eq!(
            unchecked,
            BTreeSet::from(["ServiceMonitor".to_string()]),
            "{overlay}"
        );
        let resources = parse_yaml(&rendered);
        let expected = [
            "Namespace",
            "ConfigMap",
            "Deployment",
            "Service",
            "Ingress",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceMonitor",
        ];
        for kind in expected {
            assert!(kinds(&resources).contains(kind), "{overlay} lacks a {kind}");
        }
        assert!(
            resources
                .iter()
                .all(|r| r["kind"] == "Namespace" || r["metadata"]["namespace"] == "kailash"),
            "{overlay}: every resource lives in the kailash namespace"
        );
    }
    let template = root().join("k8s/overlays/production/secret.template.yaml");
    assert!(validate(&template).is_empty());
}

#[test]
fn development_brings_its_own_stores_and_production_points_at_managed_ones() {
    let development = parse_yaml(&kustomize("development"));
    resource(&development, "Deployment", "postgres");
    resource(&development, "Deployment", "redis");
    resource(&development, "Secret", "kailash-gateway");

    let production = parse_yaml(&kustomize("production"));
    for (kind, name) in [("Deployment", "postgres"), ("Deployment", "redis")] {
        assert!(
            production
                .iter()
                .all(|r| !(r["kind"] == kind && r["metadata"]["name"] == name)),
            "production runs no in-cluster {name}"
        );
    }
    // The secret is created out of band: applying the overlay must never overwrite it.
    assert!(!kinds(&production).contains("Secret"));
    let config = resource(&production, "ConfigMap", "kailash-gateway");
    assert!(
        !config["data"]["REDIS_URL"]
            .as_str()
            .unwrap()
            .contains("//redis:")
    );
}

#[test]
fn the_deployment_keeps_the_rollout_and_hardening_promises() {
    let production = parse_yaml(&kustomize("production"));
    let deployment = resource(&production, "Deployment", "kailash-gateway");
    let config = resource(&production, "ConfigMap", "kailash-gateway");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_f64()
        .expect("a preStop sleep");
    let drain = longest_drain(|key| seconds(config, key));
    let grace = pod["terminationGracePeriodSeconds"].as_f64().unwrap();
    assert!(
        grace > pre_stop + drain,
        "grace period {grace}s must exceed preStop {pre_stop}s + drain {drain}s"
    );

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert!(container["resources"]["requests"].is_object());
    assert!(container["resources"]["limits"].is_object());
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    // The read-only root needs a writable data directory where the gateway keeps its state.
    let data_dir = config["data"]["KAILASH_DATA_DIR"].as_str().unwrap();
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == data_dir)
    );

    let ingress = resource(&production, "Ingress", "kailash-gateway");
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-buffering"],
        "off"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
        "3600"
    );
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("deploy/docker-compose.yml")).unwrap();
    parse_yaml(&text).remove(0)
}

/// The compose services nginx balances over.
fn gateway_services(compose: &Value) -> Vec<String> {
    let services = compose["services"].as_object().unwrap();
    services
        .iter()
        .filter(|(_, service)| service["build"]["dockerfile"] == "deploy/Dockerfile")
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn the_compose_stack_runs_three_gateways_behind_nginx_with_its_stores() {
    let compose = compose();
    let gateways = gateway_services(&compose);
    assert_eq!(gateways.len(), 3, "{gateways:?}");
    let services = &compose["services"];
    for name in ["nginx", "postgres", "redis"] {
        assert!(services[name].is_object(), "no {name} service");
    }
    let nginx_conf = std::fs::read_to_string(root().join("deploy/nginx.conf")).unwrap();
    for gateway in &gateways {
        let service = &services[gateway];
        assert_eq!(
            service["env_file"], ".env",
            "secrets come from the env file"
        );
        let env = service["environment"].as_object().unwrap();
        assert!(env.contains_key("DATABASE_URL") && env.contains_key("REDIS_URL"));
        let drain = longest_drain(|key| {
            env[key]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{gateway} sets no {key}"))
        });
        let grace: f64 = service["stop_grace_period"]
            .as_str()
            .and_then(|v| v.strip_suffix('s')?.parse().ok())
            .expect("a stop_grace_period in seconds");
        assert!(
            grace > drain,
            "{gateway}: stop_grace_period {grace}s must exceed the longest drain {drain}s"
        );
        assert!(
            nginx_conf.contains(&format!("server {gateway}:8000")),
            "nginx balances over {gateway}"
        );
    }
    assert!(root().join("deploy/env.example").is_file());
}

#[test]
fn nginx_accepts_the_load_balancer_config() {
    // nginx resolves upstream hosts and binds its port when it loads its configuration: give
    // the compose service names an address in a private mount namespace and port 80 a private
    // network namespace (both owned by an unprivileged user namespace), then test the real file.
    let dir = tempfile_dir();
    let hosts = dir.join("hosts");
    let names = gateway_services(&compose()).join(" ");
    std::fs::write(&hosts, format!("127.0.0.1 localhost {names}\n")).unwrap();
    let config = root().join("deploy/nginx.conf");
    // `user root`: inside the user namespace only root is mapped, so nginx must not try to
    // hand its temporary directories to `nobody` (chown fails there with EINVAL).
    let script = format!(
        "mount --bind '{}' /etc/hosts && exec '{}' -t -q -g 'user root;' -c '{}'",
        hosts.display(),
        tool("KAILASH_TEST_NGINX").display(),
        config.display()
    );
    run(Command::new("unshare")
        .args(["--map-root-user", "--mount", "--net", "sh", "-c"])
        .arg(script));
}

#[test]
fn the_dockerfile_copies_paths_that_exist_and_runs_the_gateway_unprivileged() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let mut copied = BTreeSet::new();
    for line in dockerfile.lines().map(str::trim) {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from=") {
            continue;
        }
        let parts: Vec<&str> = args.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                root().join(source).exists(),
                "the Dockerfile copies {source}, which does not exist"
            );
            copied.insert(source.to_string());
        }
    }
    // What `cargo build --locked` needs: the manifests, every member and every target path.
    for needed in ["Cargo.toml", "Cargo.lock", "src", "actors", "benches"] {
        assert!(copied.contains(needed), "the build stage lacks {needed}");
    }
    assert!(dockerfile.contains("HEALTHCHECK"));
    assert!(dockerfile.contains("ENTRYPOINT [\"kailash-gateway\", \"serve\"]"));
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
}

/// A fresh directory for one test's files.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kailash-deploy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
