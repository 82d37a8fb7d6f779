//! The JSON file nodes: `JSONReaderNode` parses a JSON file in the data directories,
//! `JSONWriterNode` writes any JSON value to one. Both go through the [`FileSandbox`].

use std::sync::Arc;

use kailash_actors::engine::node::{
    NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, ParamSpec, ParamType, PortSpec,
};
use serde::Serialize;
use serde_json::{Value, json, ser::PrettyFormatter};

use super::{
    NodeEnvironment,
    files::{
        FileSandbox, file_node, file_path_spec, output, required_str, schema, take_required,
        without_bom, wrong_type,
    },
};

const DEFAULT_INDENT: u64 = 2;
/// Deep enough for any layout; bounded so that a huge indent cannot blow up the file.
const MAX_INDENT: u64 = 16;

pub fn register(registry: &mut NodeRegistry, env: &NodeEnvironment) {
    let sandbox = Arc::new(FileSandbox::new(&env.data_dirs));
    registry.register(file_node(&sandbox, reader_schema(), read));
    registry.register(file_node(&sandbox, writer_schema(), write));
}

fn reader_schema() -> NodeSchema {
    schema(
        "JSONReaderNode",
        "data",
        "Reads a JSON file from the data directories.",
        vec![file_path_spec(
            "The JSON file to read, relative to the data directory.",
        )],
        vec![],
        vec![PortSpec::output(
            "data",
            ParamType::Any,
            "The parsed JSON value.",
        )],
    )
}

fn writer_schema() -> NodeSchema {
    schema(
        "JSONWriterNode",
        "data",
        "Writes a JSON value to a file in the data directories.",
        vec![
            file_path_spec(
                "The JSON file to write, relative to the data directory; it is replaced.",
            ),
            ParamSpec::optional("data", ParamType::Any, None, "The value to write."),
            ParamSpec::optional(
                "indent",
                ParamType::Integer,
                Some(json!(DEFAULT_INDENT)),
                "Spaces per nesting level, 0 to 16; 0 writes everything on one line.",
            )
            .validation(json!({"minimum": 0, "maximum": MAX_INDENT})),
        ],
        vec![PortSpec::input(
            "data",
            ParamType::Any,
            true,
            "The value to write.",
        )],
        vec![PortSpec::output(
            "file_path",
            ParamType::String,
            "The file_path as given.",
        )],
    )
}

async fn read(sandbox: Arc<FileSandbox>, call: NodeCall) -> Result<NodeOutput, NodeError> {
    let file_path = required_str(&call, "file_path")?;
    let shown = file_path.to_owned();
    let data = sandbox
        .read_with(file_path, move |bytes| {
            // serde_json's message names the line and column of the problem.
            serde_json::from_slice::<Value>(without_bom(&bytes)).map_err(|error| {
                NodeError::new(format!("file_path '{shown}' is not valid JSON: {error}"))
            })
        })
        .await?;
    Ok(output([("data", data)]))
}

async fn write(sandbox: Arc<FileSandbox>, mut call: NodeCall) -> Result<NodeOutput, NodeError> {
    let data = take_required(&mut call, "data")?;
    let file_path = required_str(&call, "file_path")?;
    let indent = match call.param("indent") {
        None => DEFAULT_INDENT,
        Some(value) => value
            .as_u64()
            .filter(|indent| *indent <= MAX_INDENT)
            .ok_or_else(|| wrong_type("indent", "an integer from 0 to 16", value))?,
    };
    sandbox
        .write_with(file_path, false, move || render(&data, indent))
        .await?;
    Ok(output([("file_path", file_path.into())]))
}

/// `data` as JSON text indented by `indent` spaces (one line for 0), ending in a newline.
fn render(data: &Value, indent: u64) -> Result<Vec<u8>, NodeError> {
    let mut bytes = Vec::new();
    let written = if indent == 0 {
        serde_json::to_writer(&mut bytes, data)
    } else {
        let spaces = " ".repeat(indent as usize);
        let formatter = PrettyFormatter::with_indent(spaces.as_bytes());
        data.serialize(&mut serde_json::Serializer::with_formatter(
            &mut bytes, formatter,
        ))
    };
    written.map_err(|error| NodeError::new(format!("cannot write JSON: {error}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::nodes::files::testing::{TempDir, run_node};

    #[test]
    fn writes_and_reads_back_any_value() {
        let (dir, registry) = TempDir::with_nodes(register);
        let data = json!({"name": "Ann", "tags": ["a"], "n": 1.5});
        let written = run_node(
            &registry,
            "JSONWriterNode",
            json!({"file_path": "d/x.json", "data": data}),
        );
        assert_eq!(written.unwrap(), output([("file_path", json!("d/x.json"))]));
        let text = fs::read_to_string(dir.0.join("d/x.json")).unwrap();
        assert!(
            text.starts_with("{\n  \"name\": \"Ann\",\n  \"tags\""),
            "insertion order is kept: {text}"
        );
        let read = run_node(
            &registry,
            "JSONReaderNode",
            json!({"file_path": "d/x.json"}),
        )
        .unwrap();
        assert_eq!(read["data"], data);

        let compact = json!({"file_path": "c.json", "data": [1, {"a": null}], "indent": 0});
        run_node(&registry, "JSONWriterNode", compact).unwrap();
        assert_eq!(
            fs::read_to_string(dir.0.join("c.json")).unwrap(),
            "[1,{\"a\":null}]\n"
        );
        let four = json!({"file_path": "f.json", "data": [1], "indent": 4, "name": "ignored"});
        run_node(&registry, "JSONWriterNode", four).unwrap();
        assert_eq!(
            fs::read_to_string(dir.0.join("f.json")).unwrap(),
            "[\n    1\n]\n"
        );
    }

    #[test]
    fn bad_files_and_parameters_fail_clearly() {
        let (dir, registry) = TempDir::with_nodes(register);
        fs::write(dir.0.join("broken.json"), "{\n  \"a\": 1,\n  oops\n}").unwrap();
        let read = |params| run_node(&registry, "JSONReaderNode", params).unwrap_err();
        let broken = read(json!({"file_path": "broken.json"}));
        assert!(
            broken.starts_with("file_path 'broken.json' is not valid JSON"),
            "{broken}"
        );
        assert!(broken.contains("line 3 column 3"), "{broken}");
        assert_eq!(
            read(json!({"file_path": "gone.json"})),
            "file_path 'gone.json' does not exist"
        );
        assert!(read(json!({"file_path": "../../etc/passwd"})).contains("outside"));
        assert_eq!(read(json!({})), "parameter 'file_path' is required");

        let write = |params| run_node(&registry, "JSONWriterNode", params).unwrap_err();
        assert_eq!(
            write(json!({"file_path": "x.json"})),
            "parameter 'data' is required"
        );
        let wide = write(json!({"file_path": "x.json", "data": 1, "indent": 99}));
        assert_eq!(
            wide,
            "parameter 'indent' must be an integer from 0 to 16, got a number"
        );
        assert!(
            write(json!({"file_path": "x.json", "data": 1, "indent": "2"}))
                .contains("got a string")
        );
        assert!(!dir.0.join("x.json").exists());
    }
}
