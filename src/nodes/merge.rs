//! `MergeNode`: combines up to five inputs (`data1`..`data5`) into one `merged_data`.
//!
//! `concat` chains arrays (other values join as single elements), `zip` pairs arrays up
//! position by position, `merge_dict` merges objects left to right. Given a `key`, `concat`
//! and `merge_dict` of arrays of objects join rows on it instead: rows sharing the key's
//! value become one object.

use std::{
    collections::{HashMap, hash_map::Entry},
    future::ready,
};

use kailash_actors::engine::node::{
    NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, ParamSpec, ParamType, PortSpec,
};
use serde_json::{Map, Value, json};

use super::files::{bool_param, kind_of, native_node, optional_str, output, schema};

/// The inputs, in merge order.
const INPUTS: [&str; 5] = ["data1", "data2", "data3", "data4", "data5"];
const MERGE_TYPES: [&str; 3] = ["concat", "zip", "merge_dict"];
const DEFAULT_MERGE_TYPE: &str = "concat";

pub fn register(registry: &mut NodeRegistry) {
    registry.register(native_node(merge_schema(), |call| ready(merge(call))));
}

fn merge_schema() -> NodeSchema {
    const INPUT: &str = "A value to merge; inputs are taken in order data1 to data5.";
    let mut parameters: Vec<ParamSpec> = INPUTS
        .map(|name| ParamSpec::optional(name, ParamType::Any, None, INPUT))
        .into();
    parameters.extend([
        ParamSpec::optional(
            "merge_type",
            ParamType::String,
            Some(json!(DEFAULT_MERGE_TYPE)),
            "How the inputs are combined.",
        )
        .options(MERGE_TYPES.map(Value::from)),
        ParamSpec::optional(
            "key",
            ParamType::String,
            None,
            "For concat and merge_dict of arrays of objects: the field whose value joins rows.",
        ),
        ParamSpec::optional(
            "skip_none",
            ParamType::Boolean,
            Some(json!(true)),
            "Drop null inputs before merging.",
        ),
    ]);
    schema(
        "MergeNode",
        "logic",
        "Combines up to five inputs by concatenation, position or key.",
        parameters,
        INPUTS
            .map(|name| PortSpec::input(name, ParamType::Any, false, INPUT))
            .into(),
        vec![PortSpec::output(
            "merged_data",
            ParamType::Any,
            "The combined value.",
        )],
    )
}

fn merge(mut call: NodeCall) -> Result<NodeOutput, NodeError> {
    let merge_type = optional_str(&call, "merge_type")?
        .unwrap_or(DEFAULT_MERGE_TYPE)
        .to_owned();
    let key = optional_str(&call, "key")?.map(str::to_owned);
    let skip_none = bool_param(&call, "skip_none", true)?;
    // Inputs never given are left out whatever skip_none says; it decides about explicit nulls.
    let inputs: Vec<(&str, Value)> = INPUTS
        .iter()
        .filter_map(|&name| Some((name, call.params.remove(name)?)))
        .filter(|(_, value)| !(skip_none && value.is_null()))
        .collect();
    let joins =
        key.is_some() && !inputs.is_empty() && inputs.iter().all(|(_, value)| value.is_array());
    let merged = match (merge_type.as_str(), key) {
        ("concat" | "merge_dict", Some(key)) if joins => join(inputs, &key)?,
        ("concat", _) => concat(inputs),
        ("zip", _) => zip(inputs)?,
        ("merge_dict", _) => merge_objects(inputs)?,
        (other, _) => {
            return Err(NodeError::new(format!(
                "merge_type '{other}' is unknown; use one of {}",
                MERGE_TYPES.join(", ")
            )));
        }
    };
    Ok(output([("merged_data", merged)]))
}

/// Arrays chained in order; any other value joins as one element.
fn concat(inputs: Vec<(&str, Value)>) -> Value {
    let mut merged = Vec::new();
    for (_, value) in inputs {
        match value {
            Value::Array(items) => merged.extend(items),
            other => merged.push(other),
        }
    }
    Value::Array(merged)
}

/// Arrays paired up position by position, as long as the shortest.
fn zip(inputs: Vec<(&str, Value)>) -> Result<Value, NodeError> {
    let mut columns = Vec::with_capacity(inputs.len());
    for (name, value) in inputs {
        match value {
            Value::Array(items) => columns.push(items.into_iter()),
            other => return Err(unfit("zip", "arrays", name, &other)),
        }
    }
    let len = columns
        .iter()
        .map(ExactSizeIterator::len)
        .min()
        .unwrap_or(0);
    Ok((0..len)
        .map(|_| Value::Array(columns.iter_mut().filter_map(Iterator::next).collect()))
        .collect())
}

/// Objects merged left to right: a later input's field replaces an earlier one's.
fn merge_objects(inputs: Vec<(&str, Value)>) -> Result<Value, NodeError> {
    let mut merged = Map::new();
    for (name, value) in inputs {
        match value {
            Value::Object(fields) => merged.extend(fields),
            other => return Err(unfit("merge_dict", "objects", name, &other)),
        }
    }
    Ok(Value::Object(merged))
}

/// The rows of every input (arrays of objects) joined on `key`: rows sharing its value become
/// one object, later inputs' fields winning, in order of first appearance.
fn join(inputs: Vec<(&str, Value)>, key: &str) -> Result<Value, NodeError> {
    let mut rows: Vec<Map<String, Value>> = Vec::new();
    let mut positions: HashMap<String, usize> = HashMap::new();
    for (name, value) in inputs {
        // A value that is not an array counts as a single row.
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        for (i, item) in items.into_iter().enumerate() {
            let fields = match item {
                Value::Object(fields) => fields,
                other => {
                    return Err(NodeError::new(format!(
                        "joining on '{key}' needs objects, but {name}[{i}] is {}",
                        kind_of(&other)
                    )));
                }
            };
            // The JSON text keys the join, so 1 and "1" stay apart.
            let id = fields
                .get(key)
                .filter(|id| !id.is_null())
                .ok_or_else(|| NodeError::new(format!("{name}[{i}] has no '{key}' to join on")))?
                .to_string();
            match positions.entry(id) {
                Entry::Occupied(row) => rows[*row.get()].extend(fields),
                Entry::Vacant(slot) => {
                    slot.insert(rows.len());
                    rows.push(fields);
                }
            }
        }
    }
    Ok(rows.into_iter().map(Value::Object).collect())
}

/// "merge_type 'zip' needs arrays, but data2 is a string".
fn unfit(merge_type: &str, needs: &str, name: &str, got: &Value) -> NodeError {
    let hint = if got.is_null() {
        " (skip_none=true drops null inputs)"
    } else {
        ""
    };
    NodeError::new(format!(
        "merge_type '{merge_type}' needs {needs}, but {name} is {}{hint}",
        kind_of(got)
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::nodes::files::testing::run_node;

    fn merged(params: Value) -> Result<Value, String> {
        let mut registry = NodeRegistry::new();
        register(&mut registry);
        run_node(&registry, "MergeNode", params).map(|mut out| out.remove("merged_data").unwrap())
    }

    #[test]
    fn concat_chains_arrays_and_appends_other_values() {
        let all = merged(json!({"data1": [1, 2], "data2": 3, "data3": null, "data4": [[4]]}));
        assert_eq!(all.unwrap(), json!([1, 2, 3, [4]]));
        let with_nulls = merged(json!({"data1": [1], "data2": null, "skip_none": false}));
        assert_eq!(with_nulls.unwrap(), json!([1, null]));
        assert_eq!(merged(json!({})).unwrap(), json!([]));
    }

    #[test]
    fn zip_pairs_up_to_the_shortest() {
        let zipped = merged(
            json!({"merge_type": "zip", "data1": [1, 2, 3], "data2": ["a", "b"], "data5": [true, false]}),
        );
        assert_eq!(zipped.unwrap(), json!([[1, "a", true], [2, "b", false]]));
        let scalar = merged(json!({"merge_type": "zip", "data1": [1], "data2": "ab"})).unwrap_err();
        assert_eq!(
            scalar,
            "merge_type 'zip' needs arrays, but data2 is a string"
        );
        let null =
            merged(json!({"merge_type": "zip", "data1": [1], "data2": null, "skip_none": false}))
                .unwrap_err();
        assert_eq!(
            null,
            "merge_type 'zip' needs arrays, but data2 is null (skip_none=true drops null inputs)"
        );
    }

    #[test]
    fn merge_dict_merges_objects_left_to_right() {
        let dict = merged(
            json!({"merge_type": "merge_dict", "data1": {"a": 1, "b": 1}, "data2": null, "data3": {"b": 2}}),
        );
        assert_eq!(dict.unwrap(), json!({"a": 1, "b": 2}));
        let list = merged(json!({"merge_type": "merge_dict", "data1": {"a": 1}, "data2": [1]}))
            .unwrap_err();
        assert_eq!(
            list,
            "merge_type 'merge_dict' needs objects, but data2 is an array"
        );
        let null = merged(
            json!({"merge_type": "merge_dict", "data1": {}, "data2": null, "skip_none": false}),
        );
        assert!(null.unwrap_err().contains("data2 is null (skip_none=true"));
    }

    #[test]
    fn a_key_joins_rows_of_both_modes() {
        let customers = json!([{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}]);
        let orders =
            json!([{"id": 2, "total": 5}, {"id": 3, "total": 7}, {"id": 1, "name": "Anna"}]);
        let expected = json!([
            {"id": 1, "name": "Anna"},
            {"id": 2, "name": "Bob", "total": 5},
            {"id": 3, "total": 7},
        ]);
        for merge_type in ["concat", "merge_dict"] {
            let params =
                json!({"merge_type": merge_type, "key": "id", "data1": customers, "data2": orders});
            assert_eq!(merged(params).unwrap(), expected, "{merge_type}");
        }
        let unkeyed =
            merged(json!({"key": "id", "data1": customers, "data2": [{"name": "x"}]})).unwrap_err();
        assert_eq!(unkeyed, "data2[0] has no 'id' to join on");
        let scalars = merged(json!({"key": "id", "data1": [1]})).unwrap_err();
        assert_eq!(
            scalars,
            "joining on 'id' needs objects, but data1[0] is a number"
        );
    }

    #[test]
    fn bad_parameters_fail_clearly() {
        let unknown = merged(json!({"merge_type": "union", "data1": [1]})).unwrap_err();
        assert_eq!(
            unknown,
            "merge_type 'union' is unknown; use one of concat, zip, merge_dict"
        );
        assert!(
            merged(json!({"skip_none": "yes"}))
                .unwrap_err()
                .contains("'skip_none' must be a boolean")
        );
        assert!(
            merged(json!({"key": 5}))
                .unwrap_err()
                .contains("'key' must be a string")
        );
    }
}
