//! The code nodes, `PythonCodeNode` and `DataTransformer`: Kailash frontends' Python, run
//! in a pool of sandboxed `python3` worker processes ([`pool`], speaking [`protocol`],
//! running `worker.py`).
//!
//! What the sandbox enforces (and what it does not) is written down in `worker.py` and in
//! the README's "Python code nodes" section. Nothing in a workflow or a request changes it:
//! a `sandbox_mode` key is refused when the workflow is created or a run is started with it
//! in `config_overrides` (both through `check_config`), and fails the node if it arrives as
//! a run input. Without a Python executable the gateway still starts, warns, and
//! refuses workflows using these nodes with `python_unavailable`.

mod pool;
mod protocol;

use std::time::Duration;

use futures_util::future::BoxFuture;
use kailash_actors::engine::node::{
    ConfigProblem, NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, NodeType, ParamSpec,
    ParamType, PortSpec, Widget,
};
use serde_json::{Map, Value, json};

pub use pool::{PoolConfig, PythonPool};

use super::NodeEnvironment;
use crate::config::Settings;

/// Modules sandboxed code may never import, whatever the operator allows: they reach
/// processes, sockets, files outside the data directories, or the interpreter's insides.
pub const DENIED_IMPORTS: &[&str] = &[
    "os",
    "sys",
    "subprocess",
    "socket",
    "ctypes",
    "importlib",
    "gc",
    "inspect",
    "builtins",
    "io",
    "pathlib",
    "shutil",
    "multiprocessing",
    "threading",
    "_thread",
    "signal",
    "pickle",
    "_pickle",
    "marshal",
    "resource",
    "posix",
    "pty",
    "fcntl",
    "mmap",
    "code",
    "codeop",
    "runpy",
    "types",
    "asyncio",
    "concurrent",
    "select",
    "selectors",
    "ssl",
    "http",
    "urllib",
    "ftplib",
    "smtplib",
    "telnetlib",
    "socketserver",
    "xmlrpc",
    "tempfile",
    "glob",
    "zipimport",
    "pkgutil",
    "sysconfig",
    "platform",
    "webbrowser",
    "faulthandler",
    "dis",
    "pdb",
    "bdb",
    "trace",
    "atexit",
    "copyreg",
    "shelve",
    "dbm",
    "sqlite3",
    "site",
    "tracemalloc",
];

/// The default import allowlist: the Kailash list without anything in [`DENIED_IMPORTS`].
pub const DEFAULT_ALLOWED_IMPORTS: &[&str] = &[
    "math",
    "cmath",
    "statistics",
    "decimal",
    "fractions",
    "numbers",
    "random",
    "datetime",
    "time",
    "calendar",
    "zoneinfo",
    "json",
    "re",
    "string",
    "textwrap",
    "unicodedata",
    "difflib",
    "collections",
    "itertools",
    "functools",
    "operator",
    "heapq",
    "bisect",
    "array",
    "copy",
    "enum",
    "dataclasses",
    "typing",
    "uuid",
    "hashlib",
    "hmac",
    "base64",
    "binascii",
    "csv",
    "pprint",
    "pandas",
    "numpy",
    "scipy",
    "sklearn",
];

/// The pool configuration the settings describe.
pub fn pool_config(settings: &Settings) -> PoolConfig {
    let mb = 1024 * 1024;
    PoolConfig {
        executable: settings.python_executable.clone(),
        workers: settings.python_workers,
        max_runs_per_worker: settings.python_worker_max_runs,
        wall_clock: Duration::from_secs_f64(settings.python_timeout_seconds),
        max_output_bytes: settings.python_max_output_bytes,
        working_dir: settings.node_data_dirs.first().cloned(),
        worker_config: json!({
            "allowed_imports": settings.python_allowed_imports,
            "denied_imports": DENIED_IMPORTS,
            "data_dirs": settings.node_data_dirs,
            "max_output_bytes": settings.python_max_output_bytes,
            "max_print_bytes": settings.python_max_print_bytes,
            "cpu_seconds": settings.python_cpu_seconds,
            "memory_bytes": settings.python_memory_mb * mb,
        }),
    }
}

/// Which of the two code nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Code,
    Transform,
}

impl Kind {
    /// The parameter holding the node's own Python: never a variable, never output.
    fn source_param(self) -> &'static str {
        match self {
            Kind::Code => "code",
            Kind::Transform => "transformations",
        }
    }
}

struct CodeNode {
    schema: NodeSchema,
    kind: Kind,
    pool: Option<PythonPool>,
}

const SANDBOX_MODE: &str = "sandbox_mode";
const SANDBOX_MODE_REFUSED: &str =
    "the Python sandbox cannot be configured by a workflow or a request; remove sandbox_mode";

impl NodeType for CodeNode {
    fn schema(&self) -> &NodeSchema {
        &self.schema
    }

    fn check_config(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if config.contains_key(SANDBOX_MODE) {
            problems.push(ConfigProblem {
                parameter: Some(SANDBOX_MODE.into()),
                message: SANDBOX_MODE_REFUSED.into(),
                code: None,
            });
        }
        if !self.pool.as_ref().is_some_and(PythonPool::is_available) {
            problems.push(ConfigProblem {
                parameter: None,
                message: format!(
                    "{} needs Python, which is not available on this gateway",
                    self.schema.node_type
                ),
                code: Some("python_unavailable"),
            });
        }
        problems
    }

    fn run(&self, call: NodeCall) -> BoxFuture<'static, Result<NodeOutput, NodeError>> {
        let (kind, pool) = (self.kind, self.pool.clone());
        Box::pin(async move {
            let pool = pool.ok_or_else(|| NodeError::new("Python is not available"))?;
            let request = request(kind, call)?;
            let response = pool.run(&request).await?;
            if !response.printed.is_empty() {
                tracing::debug!(printed = %response.printed, "python code printed");
            }
            if response.ok {
                Ok(response.output)
            } else {
                Err(NodeError::new(response.error))
            }
        })
    }
}

/// The request frame for one run: the source, and every other parameter as a variable.
fn request(kind: Kind, mut call: NodeCall) -> Result<Vec<u8>, NodeError> {
    if call.params.contains_key(SANDBOX_MODE) {
        return Err(NodeError::new(SANDBOX_MODE_REFUSED));
    }
    let source_param = kind.source_param();
    let source = call
        .params
        .remove(source_param)
        .ok_or_else(|| NodeError::new(format!("required parameter '{source_param}' is missing")))?;
    let body = match (kind, source) {
        (Kind::Code, Value::String(code)) => json!({
            "kind": "code",
            "code": code,
            "inputs": call.params,
            "exclude": [source_param],
        }),
        (Kind::Transform, Value::Array(transformations)) => json!({
            "kind": "transform",
            "transformations": transformations,
            "inputs": call.params,
        }),
        (_, other) => {
            return Err(super::files::wrong_type(
                source_param,
                if kind == Kind::Code {
                    "a string of Python"
                } else {
                    "a list of Python strings"
                },
                &other,
            ));
        }
    };
    serde_json::to_vec(&body).map_err(|error| NodeError::new(error.to_string()))
}

pub(super) fn register(registry: &mut NodeRegistry, env: &NodeEnvironment) {
    let output = || {
        vec![PortSpec::output(
            "result",
            ParamType::Any,
            "what the code set as `result`",
        )]
    };
    registry.register(CodeNode {
        kind: Kind::Code,
        pool: env.python.clone(),
        schema: NodeSchema {
            node_type: "PythonCodeNode",
            category: "code",
            description: "Runs Python in a sandboxed worker process. Every input (connected, \
                node-scoped or flat) and config key is a variable; the output is {\"result\": \
                result} when the code sets `result`, else the public JSON-able variables the \
                code bound (never the node's own config). In code that imports pandas, an \
                input that is a list of records arrives as a DataFrame.",
            version: "1.0.0",
            parameters: vec![
                ParamSpec::required("code", ParamType::String, "Python source to run")
                    .widget(Widget::Code),
            ],
            inputs: vec![],
            outputs: output(),
            accepts_any_input: true,
        },
    });
    registry.register(CodeNode {
        kind: Kind::Transform,
        pool: env.python.clone(),
        schema: NodeSchema {
            node_type: "DataTransformer",
            category: "transform",
            description: "Applies Python transformations in order to `result`, which starts \
                as `data`: an expression gives the new result, a lambda is mapped over a list \
                (or applied to anything else), a block sets `result`. Runs in the same \
                sandbox as PythonCodeNode; every input is a variable.",
            version: "1.0.0",
            parameters: vec![
                ParamSpec::optional("data", ParamType::Any, None, "the data to transform"),
                ParamSpec::required(
                    "transformations",
                    ParamType::Array,
                    "Python expressions, lambdas or blocks, applied in order",
                ),
            ],
            inputs: vec![PortSpec::input(
                "data",
                ParamType::Any,
                false,
                "the data to transform",
            )],
            outputs: output(),
            accepts_any_input: true,
        },
    });
}

#[cfg(test)]
mod tests;
