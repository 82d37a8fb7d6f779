//! The CSV file nodes: `CSVReaderNode` turns a CSV file in the data directories into rows
//! (objects keyed by the header row, or plain arrays), `CSVWriterNode` writes rows back out.
//! Both go through the [`FileSandbox`].

use std::sync::Arc;

use kailash_actors::engine::node::{
    NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, ParamSpec, ParamType, PortSpec,
};
use serde_json::{Map, Value, json};

use super::{
    NodeEnvironment,
    files::{
        FileSandbox, bool_param, file_node, file_path_spec, kind_of, optional_str, output,
        required_str, schema, take_required, without_bom, wrong_type,
    },
};

const DEFAULT_DELIMITER: &str = ",";

pub fn register(registry: &mut NodeRegistry, env: &NodeEnvironment) {
    let sandbox = Arc::new(FileSandbox::new(&env.data_dirs));
    registry.register(file_node(&sandbox, reader_schema(), read));
    registry.register(file_node(&sandbox, writer_schema(), write));
}

fn reader_schema() -> NodeSchema {
    schema(
        "CSVReaderNode",
        "data",
        "Reads a CSV file from the data directories into rows.",
        vec![
            file_path_spec("The CSV file to read, relative to the data directory."),
            ParamSpec::optional(
                "headers",
                ParamType::Boolean,
                Some(json!(true)),
                "Whether the first row names the columns: rows are then objects, else arrays.",
            ),
            delimiter_spec(),
            ParamSpec::optional(
                "index_column",
                ParamType::String,
                None,
                "A column whose values key the rows in data_indexed (needs headers).",
            ),
        ],
        vec![],
        vec![
            PortSpec::output(
                "data",
                ParamType::Array,
                "The rows: objects of strings, or arrays without headers.",
            ),
            PortSpec::output(
                "data_indexed",
                ParamType::Object,
                "The rows keyed by index_column, when given.",
            ),
        ],
    )
}

fn writer_schema() -> NodeSchema {
    schema(
        "CSVWriterNode",
        "data",
        "Writes rows (objects or arrays) to a CSV file in the data directories.",
        vec![
            file_path_spec(
                "The CSV file to write, relative to the data directory; it is replaced.",
            ),
            ParamSpec::optional(
                "data",
                ParamType::Array,
                None,
                "The rows: all objects, or all arrays.",
            ),
            ParamSpec::optional(
                "headers",
                ParamType::Any,
                Some(json!(true)),
                "true: a header row from the keys of the first object; false: no header row; \
                 or the list of column names (and, for objects, the columns written).",
            ),
            delimiter_spec(),
        ],
        vec![PortSpec::input(
            "data",
            ParamType::Array,
            true,
            "The rows to write.",
        )],
        vec![
            PortSpec::output(
                "rows_written",
                ParamType::Integer,
                "How many rows were written, not counting the header.",
            ),
            PortSpec::output("file_path", ParamType::String, "The file_path as given."),
        ],
    )
}

fn delimiter_spec() -> ParamSpec {
    ParamSpec::optional(
        "delimiter",
        ParamType::String,
        Some(json!(DEFAULT_DELIMITER)),
        "The field separator: one single-byte character.",
    )
}

/// The `delimiter` parameter as the single byte the csv crate needs.
fn delimiter(call: &NodeCall) -> Result<u8, NodeError> {
    let text = optional_str(call, "delimiter")?.unwrap_or(DEFAULT_DELIMITER);
    match text.as_bytes() {
        [byte] => Ok(*byte),
        _ => Err(NodeError::new(format!(
            "delimiter must be exactly one single-byte character, got '{text}'"
        ))),
    }
}

async fn read(sandbox: Arc<FileSandbox>, call: NodeCall) -> Result<NodeOutput, NodeError> {
    let file_path = required_str(&call, "file_path")?;
    let headers = bool_param(&call, "headers", true)?;
    let delimiter = delimiter(&call)?;
    let index_column = optional_str(&call, "index_column")?.map(str::to_owned);
    if index_column.is_some() && !headers {
        return Err(NodeError::new(
            "index_column needs headers=true: without a header row the columns have no names",
        ));
    }
    let shown = file_path.to_owned();
    sandbox
        .read_with(file_path, move |bytes| {
            let reader = csv::ReaderBuilder::new()
                .has_headers(headers)
                .delimiter(delimiter)
                .from_reader(without_bom(&bytes));
            let (columns, rows) =
                records(reader, headers).map_err(|error| malformed(&shown, &error))?;
            let indexed = index_column
                .map(|column| index(&rows, &columns, &column))
                .transpose()?;
            let mut result = output([("data", Value::Array(rows))]);
            if let Some(indexed) = indexed {
                result.insert("data_indexed".to_owned(), indexed);
            }
            Ok(result)
        })
        .await
}

/// The header row (empty without headers) and the rows: objects keyed by column with
/// headers, arrays of cells without.
fn records(
    mut reader: csv::Reader<&[u8]>,
    headers: bool,
) -> Result<(Vec<String>, Vec<Value>), csv::Error> {
    let columns: Vec<String> = match headers {
        true => reader.headers()?.iter().map(str::to_owned).collect(),
        false => Vec::new(),
    };
    let rows = reader
        .records()
        .map(|record| {
            let record = record?;
            Ok(match headers {
                true => columns
                    .iter()
                    .cloned()
                    .zip(record.iter().map(Value::from))
                    .collect(),
                false => record.iter().collect(),
            })
        })
        .collect::<Result<_, csv::Error>>()?;
    Ok((columns, rows))
}

/// The rows keyed by their `column` value; like a dict built row by row, a repeated key
/// keeps the last row.
fn index(rows: &[Value], columns: &[String], column: &str) -> Result<Value, NodeError> {
    if !columns.iter().any(|known| known == column) {
        return Err(NodeError::new(format!(
            "index_column '{column}' is not a column of the file (columns: {})",
            columns.join(", ")
        )));
    }
    let indexed: Map<String, Value> = rows
        .iter()
        .map(|row| {
            let key = row.get(column).and_then(Value::as_str).unwrap_or_default();
            (key.to_owned(), row.clone())
        })
        .collect();
    Ok(Value::Object(indexed))
}

/// A CSV syntax or encoding problem, by line.
fn malformed(file_path: &str, error: &csv::Error) -> NodeError {
    let at = error
        .position()
        .map(|position| format!(" at line {}", position.line()))
        .unwrap_or_default();
    let why = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("a row has {len} fields where {expected_len} were expected")
        }
        csv::ErrorKind::Utf8 { .. } => "the text is not valid UTF-8".to_owned(),
        _ => error.to_string(),
    };
    NodeError::new(format!(
        "file_path '{file_path}' is not valid CSV{at}: {why}"
    ))
}

/// Which header row to write, and which columns to take from object rows.
enum Header {
    /// The keys of the first object, written as a header row.
    FromData,
    /// No header row; object rows still give the keys of the first object.
    Omitted,
    /// These names, written as a header row; object rows give these columns.
    Named(Vec<String>),
}

impl Header {
    fn from_call(call: &NodeCall) -> Result<Self, NodeError> {
        match call.param("headers") {
            None | Some(Value::Bool(true)) => Ok(Header::FromData),
            Some(Value::Bool(false)) => Ok(Header::Omitted),
            Some(Value::Array(names)) => names
                .iter()
                .map(|name| name.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .map(Header::Named)
                .ok_or_else(|| {
                    NodeError::new("parameter 'headers' must list the column names as strings")
                }),
            Some(other) => Err(wrong_type(
                "headers",
                "a boolean or an array of column names",
                other,
            )),
        }
    }
}

async fn write(sandbox: Arc<FileSandbox>, mut call: NodeCall) -> Result<NodeOutput, NodeError> {
    let rows = match take_required(&mut call, "data")? {
        Value::Array(rows) => rows,
        other => return Err(wrong_type("data", "an array of objects or arrays", &other)),
    };
    let file_path = required_str(&call, "file_path")?;
    let header = Header::from_call(&call)?;
    let delimiter = delimiter(&call)?;
    let rows_written = rows.len();
    sandbox
        .write_with(file_path, false, move || render(&rows, &header, delimiter))
        .await?;
    Ok(output([
        ("rows_written", rows_written.into()),
        ("file_path", file_path.into()),
    ]))
}

/// The CSV text of `rows`. Object rows give the header's columns (missing ones empty, others
/// left out); array rows are written as they are.
fn render(rows: &[Value], header: &Header, delimiter: u8) -> Result<Vec<u8>, NodeError> {
    let first_keys = || match rows.first() {
        Some(Value::Object(first)) => first.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let (columns, header_row) = match header {
        Header::Named(names) => (names.clone(), true),
        Header::FromData => (first_keys(), rows.first().is_some_and(Value::is_object)),
        Header::Omitted => (first_keys(), false),
    };
    let objects = rows.first().is_some_and(Value::is_object);
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_writer(Vec::new());
    let failed = |error: csv::Error| NodeError::new(format!("cannot write CSV: {error}"));
    if header_row {
        writer.write_record(&columns).map_err(failed)?;
    }
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = match (row, objects) {
            (Value::Object(fields), true) => columns
                .iter()
                .map(|column| fields.get(column).map(cell).unwrap_or_default())
                .collect(),
            (Value::Array(items), false) => items.iter().map(cell).collect(),
            _ => {
                return Err(NodeError::new(format!(
                    "data[{i}] is {}: rows must be all objects or all arrays",
                    kind_of(row)
                )));
            }
        };
        writer.write_record(&cells).map_err(failed)?;
    }
    writer
        .into_inner()
        .map_err(|error| NodeError::new(format!("cannot write CSV: {error}")))
}

/// One cell's text: strings as they are, null empty, anything else as JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::*;
    use crate::nodes::files::testing::{TempDir, run_node};

    #[test]
    fn reads_rows_as_objects_arrays_and_an_index() {
        let (dir, registry) = TempDir::with_nodes(register);
        fs::write(dir.0.join("people.csv"), "\u{feff}id;name\n1;Ann\n2;Bob\n").unwrap();
        let read = |params| run_node(&registry, "CSVReaderNode", params).unwrap();
        let objects =
            read(json!({"file_path": "people.csv", "delimiter": ";", "index_column": "id"}));
        assert_eq!(
            objects["data"],
            json!([{"id": "1", "name": "Ann"}, {"id": "2", "name": "Bob"}])
        );
        assert_eq!(
            objects["data_indexed"]["2"],
            json!({"id": "2", "name": "Bob"})
        );
        let arrays = read(json!({"file_path": "people.csv", "delimiter": ";", "headers": false}));
        assert_eq!(
            arrays["data"],
            json!([["id", "name"], ["1", "Ann"], ["2", "Bob"]])
        );
        assert!(!arrays.contains_key("data_indexed"));
    }

    #[test]
    fn reading_refuses_bad_parameters_and_files() {
        let (dir, registry) = TempDir::with_nodes(register);
        fs::write(dir.0.join("ragged.csv"), "a,b\n1,2\n3\n").unwrap();
        fs::write(dir.0.join("ok.csv"), "a,b\n1,2\n").unwrap();
        let fail = |params| run_node(&registry, "CSVReaderNode", params).unwrap_err();
        assert_eq!(
            fail(json!({"file_path": "nope.csv"})),
            "file_path 'nope.csv' does not exist"
        );
        assert!(fail(json!({"file_path": "../ok.csv"})).contains("outside the data directories"));
        assert!(fail(json!({"file_path": "ok.csv", "delimiter": ";;"})).contains("exactly one"));
        assert!(fail(json!({"file_path": "ok.csv", "delimiter": "é"})).contains("exactly one"));
        assert_eq!(
            fail(json!({"file_path": "ok.csv", "headers": "yes"})),
            "parameter 'headers' must be a boolean, got a string"
        );
        assert_eq!(
            fail(json!({"file_path": 7})),
            "parameter 'file_path' must be a string, got a number"
        );
        assert!(
            fail(json!({"file_path": "ok.csv", "index_column": "z"})).contains("columns: a, b")
        );
        assert!(
            fail(json!({"file_path": "ok.csv", "index_column": "a", "headers": false}))
                .contains("needs headers")
        );
        let ragged = fail(json!({"file_path": "ragged.csv"}));
        assert!(
            ragged.starts_with("file_path 'ragged.csv' is not valid CSV at line 3"),
            "{ragged}"
        );
    }

    #[test]
    fn writes_objects_and_arrays_and_reads_them_back() {
        let (dir, registry) = TempDir::with_nodes(register);
        let write = |params| run_node(&registry, "CSVWriterNode", params).unwrap();
        let rows = json!([{"a": 1, "b": "x,y"}, {"a": null, "b": [1], "extra": true}]);
        let written = write(json!({"file_path": "out/rows.csv", "data": rows}));
        assert_eq!(
            written,
            output([
                ("rows_written", json!(2)),
                ("file_path", json!("out/rows.csv"))
            ])
        );
        let text = fs::read_to_string(dir.0.join("out/rows.csv")).unwrap();
        assert_eq!(text, "a,b\n1,\"x,y\"\n,[1]\n");
        let read = run_node(
            &registry,
            "CSVReaderNode",
            json!({"file_path": "out/rows.csv"}),
        )
        .unwrap();
        assert_eq!(read["data"][0], json!({"a": "1", "b": "x,y"}));

        write(
            json!({"file_path": "picked.csv", "data": rows, "headers": ["b", "extra"], "delimiter": "\t"}),
        );
        let text = fs::read_to_string(dir.0.join("picked.csv")).unwrap();
        assert_eq!(text, "b\textra\nx,y\t\n[1]\ttrue\n");
        write(json!({"file_path": "bare.csv", "data": [["1", 2], [3]], "headers": false}));
        assert_eq!(
            fs::read_to_string(dir.0.join("bare.csv")).unwrap(),
            "1,2\n3\n"
        );
        write(json!({"file_path": "titled.csv", "data": [[1, 2]], "headers": ["x", "y"]}));
        assert_eq!(
            fs::read_to_string(dir.0.join("titled.csv")).unwrap(),
            "x,y\n1,2\n"
        );
    }

    #[test]
    fn writing_refuses_bad_data_and_paths() {
        let (_dir, registry) = TempDir::with_nodes(register);
        let fail = |params| run_node(&registry, "CSVWriterNode", params).unwrap_err();
        assert_eq!(
            fail(json!({"file_path": "x.csv"})),
            "parameter 'data' is required"
        );
        assert!(fail(json!({"file_path": "x.csv", "data": {"a": 1}})).contains("must be an array"));
        assert_eq!(
            fail(json!({"file_path": "x.csv", "data": [{"a": 1}, [1]]})),
            "data[1] is an array: rows must be all objects or all arrays"
        );
        assert!(
            fail(json!({"file_path": "x.csv", "data": [], "headers": [1]}))
                .contains("column names")
        );
        assert!(
            fail(json!({"file_path": "x.csv", "data": [], "headers": "a"}))
                .contains("must be a boolean or")
        );
        assert!(fail(json!({"file_path": "/etc/x.csv", "data": []})).contains("outside"));
    }
}
