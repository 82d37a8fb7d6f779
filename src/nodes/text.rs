//! The plain-text file nodes: `TextReaderNode` reads a file in the data directories as text,
//! `TextWriterNode` writes or appends text to one, in UTF-8 or Latin-1. Both go through the
//! [`FileSandbox`].

use std::sync::Arc;

use kailash_actors::engine::node::{
    NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, ParamSpec, ParamType, PortSpec,
    Widget,
};
use serde_json::{Value, json};

use super::{
    NodeEnvironment,
    files::{
        FileSandbox, bool_param, file_node, file_path_spec, optional_str, output, required_str,
        schema, take_required, wrong_type,
    },
};

const DEFAULT_ENCODING: &str = "utf-8";

pub fn register(registry: &mut NodeRegistry, env: &NodeEnvironment) {
    let sandbox = Arc::new(FileSandbox::new(&env.data_dirs));
    registry.register(file_node(&sandbox, reader_schema(), read));
    registry.register(file_node(&sandbox, writer_schema(), write));
}

fn reader_schema() -> NodeSchema {
    schema(
        "TextReaderNode",
        "data",
        "Reads a text file from the data directories.",
        vec![
            file_path_spec("The text file to read, relative to the data directory."),
            encoding_spec(),
        ],
        vec![],
        vec![PortSpec::output(
            "text",
            ParamType::String,
            "The file's text.",
        )],
    )
}

fn writer_schema() -> NodeSchema {
    schema(
        "TextWriterNode",
        "data",
        "Writes or appends text to a file in the data directories.",
        vec![
            file_path_spec("The text file to write, relative to the data directory."),
            ParamSpec::optional("text", ParamType::String, None, "The text to write.")
                .widget(Widget::TextArea),
            encoding_spec(),
            ParamSpec::optional(
                "append",
                ParamType::Boolean,
                Some(json!(false)),
                "Append to the file instead of replacing it.",
            ),
        ],
        vec![PortSpec::input(
            "text",
            ParamType::String,
            true,
            "The text to write.",
        )],
        vec![
            PortSpec::output("file_path", ParamType::String, "The file_path as given."),
            PortSpec::output(
                "bytes_written",
                ParamType::Integer,
                "How many bytes were written.",
            ),
        ],
    )
}

fn encoding_spec() -> ParamSpec {
    ParamSpec::optional(
        "encoding",
        ParamType::String,
        Some(json!(DEFAULT_ENCODING)),
        "The character encoding: utf-8 (also utf8) or latin-1 (also latin1, iso-8859-1), \
         in any case.",
    )
}

/// The character encodings the text nodes support.
#[derive(Clone, Copy)]
enum Encoding {
    Utf8,
    Latin1,
}

impl Encoding {
    /// The `encoding` parameter; the usual spellings of each name are accepted.
    fn from_call(call: &NodeCall) -> Result<Self, NodeError> {
        let name = optional_str(call, "encoding")?.unwrap_or(DEFAULT_ENCODING);
        match name.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "latin-1" | "latin1" | "iso-8859-1" => Ok(Encoding::Latin1),
            _ => Err(NodeError::new(format!(
                "encoding '{name}' is not supported; use 'utf-8' or 'latin-1'"
            ))),
        }
    }

    fn decode(self, bytes: Vec<u8>, file_path: &str) -> Result<String, NodeError> {
        match self {
            Encoding::Utf8 => String::from_utf8(bytes).map_err(|error| {
                NodeError::new(format!(
                    "file_path '{file_path}' is not valid UTF-8 (at byte {at}); \
                     try encoding 'latin-1'",
                    at = error.utf8_error().valid_up_to()
                ))
            }),
            // Latin-1 bytes are exactly the first 256 Unicode code points.
            Encoding::Latin1 => Ok(bytes.into_iter().map(char::from).collect()),
        }
    }

    fn encode(self, text: &str) -> Result<Vec<u8>, NodeError> {
        match self {
            Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
            Encoding::Latin1 => text
                .chars()
                .map(|c| {
                    u8::try_from(c).map_err(|_| {
                        NodeError::new(format!("character '{c}' cannot be encoded as latin-1"))
                    })
                })
                .collect(),
        }
    }
}

async fn read(sandbox: Arc<FileSandbox>, call: NodeCall) -> Result<NodeOutput, NodeError> {
    let file_path = required_str(&call, "file_path")?;
    let encoding = Encoding::from_call(&call)?;
    let shown = file_path.to_owned();
    let text = sandbox
        .read_with(file_path, move |bytes| encoding.decode(bytes, &shown))
        .await?;
    Ok(output([("text", text.into())]))
}

async fn write(sandbox: Arc<FileSandbox>, mut call: NodeCall) -> Result<NodeOutput, NodeError> {
    let text = match take_required(&mut call, "text")? {
        Value::String(text) => text,
        other => return Err(wrong_type("text", "a string", &other)),
    };
    let file_path = required_str(&call, "file_path")?;
    let encoding = Encoding::from_call(&call)?;
    let append = bool_param(&call, "append", false)?;
    let bytes_written = sandbox
        .write_with(file_path, append, move || encoding.encode(&text))
        .await?;
    Ok(output([
        ("file_path", file_path.into()),
        ("bytes_written", bytes_written.into()),
    ]))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::nodes::files::testing::{TempDir, run_node};

    #[test]
    fn writes_appends_and_reads_in_both_encodings() {
        let (dir, registry) = TempDir::with_nodes(register);
        let write = |params| run_node(&registry, "TextWriterNode", params).unwrap();
        let first = write(json!({"file_path": "notes.txt", "text": "café\n"}));
        assert_eq!(
            first,
            output([
                ("file_path", json!("notes.txt")),
                ("bytes_written", json!(6))
            ])
        );
        let second = write(json!({"file_path": "notes.txt", "text": "thé", "append": true}));
        assert_eq!(second["bytes_written"], json!(4));
        let read = |params| run_node(&registry, "TextReaderNode", params).unwrap();
        assert_eq!(
            read(json!({"file_path": "notes.txt"}))["text"],
            json!("café\nthé")
        );

        write(json!({"file_path": "old.txt", "text": "naïve", "encoding": "ISO-8859-1"}));
        assert_eq!(fs::read(dir.0.join("old.txt")).unwrap(), b"na\xEFve");
        assert_eq!(
            read(json!({"file_path": "old.txt", "encoding": "latin1"}))["text"],
            json!("naïve")
        );
        write(json!({"file_path": "old.txt", "text": "new", "encoding": "utf8"}));
        assert_eq!(read(json!({"file_path": "old.txt"}))["text"], json!("new"));
    }

    #[test]
    fn bad_text_encodings_and_paths_fail_clearly() {
        let (dir, registry) = TempDir::with_nodes(register);
        fs::write(dir.0.join("latin.txt"), b"na\xEFve").unwrap();
        let read = |params| run_node(&registry, "TextReaderNode", params).unwrap_err();
        let not_utf8 = read(json!({"file_path": "latin.txt"}));
        assert!(
            not_utf8.contains("not valid UTF-8 (at byte 2)"),
            "{not_utf8}"
        );
        let unknown = read(json!({"file_path": "latin.txt", "encoding": "utf-16"}));
        assert_eq!(
            unknown,
            "encoding 'utf-16' is not supported; use 'utf-8' or 'latin-1'"
        );
        assert!(read(json!({"file_path": "missing.txt"})).contains("does not exist"));

        let write = |params| run_node(&registry, "TextWriterNode", params).unwrap_err();
        assert_eq!(
            write(json!({"file_path": "t.txt"})),
            "parameter 'text' is required"
        );
        assert!(write(json!({"file_path": "t.txt", "text": 5})).contains("must be a string"));
        assert!(
            write(json!({"file_path": "t.txt", "text": "x", "append": "no"})).contains("boolean")
        );
        let euro = write(json!({"file_path": "t.txt", "text": "5 €", "encoding": "latin-1"}));
        assert_eq!(euro, "character '€' cannot be encoded as latin-1");
        assert!(write(json!({"file_path": "../t.txt", "text": "x"})).contains("outside"));
        assert!(!dir.0.join("t.txt").exists());
    }
}
