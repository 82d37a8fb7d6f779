//! The data-directory sandbox every file node goes through ([`FileSandbox`]), and the small
//! helpers the native nodes share: building a schema, reading typed parameters, wrapping an
//! async function as a [`NodeType`].
//!
//! A `file_path` is resolved against the configured data directories: a relative path lands
//! in the first, an absolute one must already lie inside one, `..` may not climb out, and
//! symlinks are followed to where they really lead before the check. Error messages repeat
//! only the path the user gave, never the server's directories.

use std::{
    fs::{self, OpenOptions},
    future::Future,
    io::{self, Write},
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use futures_util::future::BoxFuture;
use kailash_actors::engine::node::{
    NodeCall, NodeError, NodeOutput, NodeSchema, NodeType, ParamSpec, ParamType, PortSpec, Widget,
};
use serde_json::Value;

/// The directories file nodes may read and write.
pub(crate) struct FileSandbox {
    roots: Vec<PathBuf>,
}

impl FileSandbox {
    /// A sandbox over `data_dirs`, creating the first if it is missing. Failing to create it
    /// does not stop the gateway: the file nodes then fail at run time, saying why.
    pub(crate) fn new(data_dirs: &[PathBuf]) -> Self {
        if let Some(first) = data_dirs.first()
            && let Err(error) = fs::create_dir_all(first)
        {
            tracing::warn!(
                dir = %first.display(),
                %error,
                "cannot create the data directory; file nodes will fail"
            );
        }
        Self {
            roots: data_dirs.to_vec(),
        }
    }

    /// The real path of an existing file to read at `file_path`.
    pub(crate) fn resolve_read(&self, file_path: &str) -> Result<PathBuf, NodeError> {
        let located = self.locate(file_path)?;
        let real = fs::canonicalize(&located).map_err(|error| io_error(file_path, &error))?;
        self.ensure_inside(&real, file_path)?;
        Ok(real)
    }

    /// The real path to write `file_path` to, creating missing directories above it.
    pub(crate) fn resolve_write(&self, file_path: &str) -> Result<PathBuf, NodeError> {
        let located = self.locate(file_path)?;
        // A path that folds to a root itself has no file name inside it.
        let (Some(parent), Some(name)) = (located.parent(), located.file_name()) else {
            return Err(outside(file_path));
        };
        self.create_parent(parent, file_path)?;
        let real_parent = fs::canonicalize(parent).map_err(|error| io_error(file_path, &error))?;
        self.ensure_inside(&real_parent, file_path)?;
        let target = real_parent.join(name);
        // Opening follows a symlink in the file's own place, so it must lead inside too; a
        // dangling one is refused since writing through it could create a file anywhere.
        if fs::symlink_metadata(&target).is_ok_and(|meta| meta.file_type().is_symlink()) {
            let real = fs::canonicalize(&target).map_err(|_| outside(file_path))?;
            self.ensure_inside(&real, file_path)?;
            return Ok(real);
        }
        Ok(target)
    }

    /// Reads the file at `file_path` and hands its bytes to `parse`, both off the async
    /// worker (node futures run on actix's single-threaded workers).
    pub(crate) async fn read_with<T, F>(
        self: &Arc<Self>,
        file_path: &str,
        parse: F,
    ) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(Vec<u8>) -> Result<T, NodeError> + Send + 'static,
    {
        let (sandbox, file_path) = (Arc::clone(self), file_path.to_owned());
        blocking(move || {
            let path = sandbox.resolve_read(&file_path)?;
            let bytes = fs::read(path).map_err(|error| io_error(&file_path, &error))?;
            parse(bytes)
        })
        .await
    }

    /// Writes what `render` produces to `file_path`, replacing the file or appending to it,
    /// off the async worker; the number of bytes written. Rendering comes first so that bad
    /// data never leaves an emptied file or new directories behind.
    pub(crate) async fn write_with<F>(
        self: &Arc<Self>,
        file_path: &str,
        append: bool,
        render: F,
    ) -> Result<usize, NodeError>
    where
        F: FnOnce() -> Result<Vec<u8>, NodeError> + Send + 'static,
    {
        let (sandbox, file_path) = (Arc::clone(self), file_path.to_owned());
        blocking(move || {
            let bytes = render()?;
            let path = sandbox.resolve_write(&file_path)?;
            let failed = |error| io_error(&file_path, &error);
            let mut options = OpenOptions::new();
            options
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append);
            options
                .open(path)
                .and_then(|mut file| file.write_all(&bytes))
                .map_err(failed)?;
            Ok(bytes.len())
        })
        .await
    }

    /// Where `file_path` points, decided on its text alone: a refused path never gets as far
    /// as a lookup that could reveal whether something exists outside the roots.
    fn locate(&self, file_path: &str) -> Result<PathBuf, NodeError> {
        if file_path.is_empty() {
            return Err(NodeError::new("file_path is empty"));
        }
        let folded = fold_dots(Path::new(file_path)).ok_or_else(|| outside(file_path))?;
        if !folded.is_absolute() {
            return Ok(self.home()?.join(folded));
        }
        // A root may be given as configured (say `/data`) or as it really is (`/mnt/data`).
        let inside = self.roots.iter().any(|root| {
            let lexical = std::path::absolute(root)
                .ok()
                .and_then(|root| fold_dots(&root));
            let real = fs::canonicalize(root).ok();
            lexical
                .into_iter()
                .chain(real)
                .any(|root| folded.starts_with(root))
        });
        inside.then_some(folded).ok_or_else(|| outside(file_path))
    }

    /// The first root, where relative paths resolve.
    fn home(&self) -> Result<PathBuf, NodeError> {
        let first = self
            .roots
            .first()
            .ok_or_else(|| NodeError::new("no data directory is configured for file nodes"))?;
        fs::canonicalize(first).map_err(|_| {
            NodeError::new(
                "the data directory does not exist and could not be created; \
                 ask the operator to create it",
            )
        })
    }

    /// Refuses a real (canonical) path that is not inside any root.
    fn ensure_inside(&self, real: &Path, file_path: &str) -> Result<(), NodeError> {
        let mut real_roots = self
            .roots
            .iter()
            .filter_map(|root| fs::canonicalize(root).ok());
        let inside = real_roots.any(|root| real.starts_with(root));
        inside.then_some(()).ok_or_else(|| outside(file_path))
    }

    /// Creates the directories missing above a file to write, once the nearest existing one
    /// is known to lie inside a root, so that no directory is ever created outside.
    fn create_parent(&self, parent: &Path, file_path: &str) -> Result<(), NodeError> {
        if parent.is_dir() {
            return Ok(());
        }
        let existing = parent
            .ancestors()
            .find(|dir| dir.exists())
            .ok_or_else(|| outside(file_path))?;
        let real = fs::canonicalize(existing).map_err(|error| io_error(file_path, &error))?;
        self.ensure_inside(&real, file_path)?;
        fs::create_dir_all(parent).map_err(|error| io_error(file_path, &error))
    }
}

/// `path` with `.` dropped and each `..` taking away the component before it; `None` when a
/// `..` would climb above where the path starts.
fn fold_dots(path: &Path) -> Option<PathBuf> {
    let mut folded = PathBuf::new();
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth.checked_sub(1)?;
                folded.pop();
            }
            Component::Normal(name) => {
                depth += 1;
                folded.push(name);
            }
            Component::RootDir | Component::Prefix(_) => folded.push(component.as_os_str()),
        }
    }
    Some(folded)
}

fn outside(file_path: &str) -> NodeError {
    NodeError::new(format!(
        "file_path '{file_path}' is outside the data directories"
    ))
}

/// An I/O failure on `file_path`, in words that name no server directory.
fn io_error(file_path: &str, error: &io::Error) -> NodeError {
    match error.kind() {
        io::ErrorKind::NotFound => {
            NodeError::new(format!("file_path '{file_path}' does not exist"))
        }
        io::ErrorKind::PermissionDenied => {
            NodeError::new(format!("file_path '{file_path}': permission denied"))
        }
        _ => NodeError::new(format!("file_path '{file_path}': {error}")),
    }
}

/// Runs blocking work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| NodeError::new("the file operation stopped unexpectedly"))?
}

/// `bytes` without a leading UTF-8 byte order mark (spreadsheet exports often start with one).
pub(crate) fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A node type made of its schema and an async function of the call.
pub(crate) struct NativeNode<F> {
    schema: NodeSchema,
    run: F,
    branching: bool,
}

/// Wraps `run` as the node type declared by `schema`.
pub(crate) fn native_node<F, Fut>(schema: NodeSchema, run: F) -> NativeNode<F>
where
    F: Fn(NodeCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<NodeOutput, NodeError>> + Send + 'static,
{
    NativeNode {
        schema,
        run,
        branching: false,
    }
}

impl<F> NativeNode<F> {
    /// Marks the node as branching: a null output is a branch not taken (SwitchNode).
    pub(crate) fn branching(self) -> Self {
        Self {
            branching: true,
            ..self
        }
    }
}

impl<F, Fut> NodeType for NativeNode<F>
where
    F: Fn(NodeCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<NodeOutput, NodeError>> + Send + 'static,
{
    fn schema(&self) -> &NodeSchema {
        &self.schema
    }

    fn run(&self, call: NodeCall) -> BoxFuture<'static, Result<NodeOutput, NodeError>> {
        Box::pin((self.run)(call))
    }

    fn is_branching(&self) -> bool {
        self.branching
    }
}

/// A node whose `run` works on files in `sandbox`.
pub(crate) fn file_node<F, Fut>(
    sandbox: &Arc<FileSandbox>,
    schema: NodeSchema,
    run: F,
) -> impl NodeType
where
    F: Fn(Arc<FileSandbox>, NodeCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<NodeOutput, NodeError>> + Send + 'static,
{
    let sandbox = Arc::clone(sandbox);
    native_node(schema, move |call| run(Arc::clone(&sandbox), call))
}

/// A version 1.0.0 schema of a node with declared parameters only.
pub(crate) fn schema(
    node_type: &'static str,
    category: &'static str,
    description: &'static str,
    parameters: Vec<ParamSpec>,
    inputs: Vec<PortSpec>,
    outputs: Vec<PortSpec>,
) -> NodeSchema {
    NodeSchema {
        node_type,
        category,
        description,
        version: "1.0.0",
        parameters,
        inputs,
        outputs,
        accepts_any_input: false,
    }
}

/// The required `file_path` parameter of every file node.
pub(crate) fn file_path_spec(description: &'static str) -> ParamSpec {
    ParamSpec::required("file_path", ParamType::String, description).widget(Widget::FilePath)
}

/// A node output from `(key, value)` pairs.
pub(crate) fn output(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> NodeOutput {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

/// Takes the parameter `name` out of the call (large data is moved, not copied).
pub(crate) fn take_required(call: &mut NodeCall, name: &str) -> Result<Value, NodeError> {
    call.params
        .remove(name)
        .filter(|value| !value.is_null())
        .ok_or_else(|| missing(name))
}

fn missing(name: &str) -> NodeError {
    NodeError::new(format!("parameter '{name}' is required"))
}

/// The required string parameter `name`.
pub(crate) fn required_str<'a>(call: &'a NodeCall, name: &str) -> Result<&'a str, NodeError> {
    let value = call.param(name).ok_or_else(|| missing(name))?;
    value
        .as_str()
        .ok_or_else(|| wrong_type(name, "a string", value))
}

/// The string parameter `name`, if given.
pub(crate) fn optional_str<'a>(
    call: &'a NodeCall,
    name: &str,
) -> Result<Option<&'a str>, NodeError> {
    call.param(name)
        .map(|value| {
            value
                .as_str()
                .ok_or_else(|| wrong_type(name, "a string", value))
        })
        .transpose()
}

/// The boolean parameter `name`, or `default` when not given.
pub(crate) fn bool_param(call: &NodeCall, name: &str, default: bool) -> Result<bool, NodeError> {
    call.param(name).map_or(Ok(default), |value| {
        value
            .as_bool()
            .ok_or_else(|| wrong_type(name, "a boolean", value))
    })
}

/// "parameter 'x' must be a string, got a number".
pub(crate) fn wrong_type(name: &str, expected: &str, got: &Value) -> NodeError {
    NodeError::new(format!(
        "parameter '{name}' must be {expected}, got {}",
        kind_of(got)
    ))
}

/// The JSON type of `value`, with its article, for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Helpers the node tests share: a runtime, temporary data directories, calls from JSON.
#[cfg(test)]
pub(crate) mod testing {
    use std::{future::Future, path::PathBuf};

    use kailash_actors::engine::node::{NodeCall, NodeOutput, NodeRegistry};
    use serde_json::Value;

    use crate::nodes::NodeEnvironment;

    /// Runs `future` to completion on a fresh current-thread runtime.
    pub(crate) fn run<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a test runtime")
            .block_on(future)
    }

    /// A call with `params` (a JSON object).
    pub(crate) fn call(params: Value) -> NodeCall {
        let params = serde_json::from_value(params).expect("params as an object");
        NodeCall {
            node_id: "test".into(),
            params,
        }
    }

    /// Runs the registered node `node_type` with `params` (a JSON object).
    pub(crate) fn run_node(
        registry: &NodeRegistry,
        node_type: &str,
        params: Value,
    ) -> Result<NodeOutput, String> {
        let node = registry.get(node_type).expect("a registered node type");
        run(node.run(call(params))).map_err(|error| error.message)
    }

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new() -> Self {
            let path = std::env::temp_dir().join(format!("kailash-nodes-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("a temp dir");
            Self(path)
        }

        /// A fresh data directory and the node types `register` adds, with it as their only
        /// data directory.
        pub(crate) fn with_nodes(
            register: fn(&mut NodeRegistry, &NodeEnvironment),
        ) -> (Self, NodeRegistry) {
            let dir = Self::new();
            let env = NodeEnvironment {
                data_dirs: vec![dir.0.clone()],
                ..NodeEnvironment::default()
            };
            let mut registry = NodeRegistry::new();
            register(&mut registry, &env);
            (dir, registry)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::{testing::TempDir, *};

    fn data_and_outside() -> (TempDir, TempDir, FileSandbox) {
        let (data, elsewhere) = (TempDir::new(), TempDir::new());
        fs::write(data.0.join("in.txt"), "inside").unwrap();
        fs::write(elsewhere.0.join("secret.txt"), "outside").unwrap();
        let sandbox = FileSandbox::new(std::slice::from_ref(&data.0));
        (data, elsewhere, sandbox)
    }

    fn message(result: Result<PathBuf, NodeError>) -> String {
        result.unwrap_err().message
    }

    #[test]
    fn relative_and_absolute_paths_inside_resolve() {
        let (data, _elsewhere, sandbox) = data_and_outside();
        let real = fs::canonicalize(data.0.join("in.txt")).unwrap();
        let absolute = data.0.join("in.txt");
        for path in ["in.txt", "./sub/../in.txt", absolute.to_str().unwrap()] {
            assert_eq!(sandbox.resolve_read(path).unwrap(), real, "{path}");
        }
        let written = sandbox.resolve_write("new/deeper/out.txt").unwrap();
        assert!(written.starts_with(fs::canonicalize(&data.0).unwrap()));
        assert!(data.0.join("new/deeper").is_dir());
    }

    #[test]
    fn escapes_are_refused_without_naming_the_root() {
        let (data, elsewhere, sandbox) = data_and_outside();
        let secret = elsewhere.0.join("secret.txt");
        for path in ["../x", "a/../../x", secret.to_str().unwrap(), "/etc/passwd"] {
            let refused = format!("file_path '{path}' is outside the data directories");
            assert_eq!(message(sandbox.resolve_read(path)), refused);
            assert_eq!(message(sandbox.resolve_write(path)), refused);
        }
        let missing = message(sandbox.resolve_read("missing.txt"));
        assert_eq!(missing, "file_path 'missing.txt' does not exist");
        assert!(!missing.contains(data.0.to_str().unwrap()));
        assert_eq!(message(sandbox.resolve_read("")), "file_path is empty");
    }

    #[test]
    fn symlinks_are_judged_by_where_they_lead() {
        let (data, elsewhere, sandbox) = data_and_outside();
        symlink(elsewhere.0.join("secret.txt"), data.0.join("out-link")).unwrap();
        symlink(&elsewhere.0, data.0.join("out-dir")).unwrap();
        symlink(data.0.join("in.txt"), data.0.join("in-link")).unwrap();
        symlink(elsewhere.0.join("not-yet"), data.0.join("dangling")).unwrap();
        for path in ["out-link", "out-dir/secret.txt"] {
            assert!(
                message(sandbox.resolve_read(path)).contains("outside"),
                "{path}"
            );
        }
        for path in [
            "out-link",
            "out-dir/new.txt",
            "out-dir/sub/new.txt",
            "dangling",
        ] {
            assert!(
                message(sandbox.resolve_write(path)).contains("outside"),
                "{path}"
            );
        }
        assert!(!elsewhere.0.join("sub").exists());
        let real = fs::canonicalize(data.0.join("in.txt")).unwrap();
        assert_eq!(sandbox.resolve_read("in-link").unwrap(), real);
        assert_eq!(sandbox.resolve_write("in-link").unwrap(), real);
    }

    #[test]
    fn a_missing_data_directory_fails_at_run_time() {
        let blocker = TempDir::new();
        fs::write(blocker.0.join("file"), "").unwrap();
        // A directory under a regular file can never be created.
        let sandbox = FileSandbox::new(&[blocker.0.join("file/data")]);
        assert!(message(sandbox.resolve_read("x.csv")).contains("does not exist"));
        let unconfigured = FileSandbox::new(&[]);
        assert!(message(unconfigured.resolve_write("x.csv")).contains("no data directory"));
    }
}
