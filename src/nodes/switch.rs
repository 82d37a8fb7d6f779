//! `SwitchNode`: routes data down one branch or another by a condition on one of its fields.
//!
//! Boolean mode puts the data on `true_output` or `false_output`; cases mode puts it on the
//! `case_<value>` output of the matching case, or on `default`. The outputs not taken are
//! null, which the engine reads as "branch not taken" and skips the nodes fed only by them.
//! An array with a `condition_field` is filtered element by element instead (Kailash's list
//! mode): every output then carries the matching elements, possibly none.

use std::{cmp::Ordering, collections::BTreeMap, future::ready};

use kailash_actors::engine::node::{
    NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, ParamSpec, ParamType, PortSpec,
};
use serde_json::{Map, Number, Value, json};

use super::files::{kind_of, native_node, optional_str, output, schema, wrong_type};

const DEFAULT_OPERATOR: &str = "==";

/// Every operator by name, in the order the schema lists them.
const OPERATORS: [(&str, Operator); 10] = [
    ("==", Operator::Equal),
    ("!=", Operator::NotEqual),
    (">", Operator::Greater),
    ("<", Operator::Less),
    (">=", Operator::GreaterOrEqual),
    ("<=", Operator::LessOrEqual),
    ("in", Operator::In),
    ("contains", Operator::Contains),
    ("is_null", Operator::IsNull),
    ("is_not_null", Operator::IsNotNull),
];

pub fn register(registry: &mut NodeRegistry) {
    registry.register(native_node(switch_schema(), |call| ready(switch(call))).branching());
}

fn switch_schema() -> NodeSchema {
    schema(
        "SwitchNode",
        "logic",
        "Routes data to one branch or another by a condition on one of its fields.",
        vec![
            ParamSpec::optional(
                "input_data",
                ParamType::Any,
                None,
                "The data examined and routed.",
            ),
            ParamSpec::optional(
                "condition_field",
                ParamType::String,
                None,
                "A dotted path to the field tested (`customer.tier`, `items.0`); without it, \
                 the data itself. With an array as data, the field of each element.",
            ),
            ParamSpec::optional(
                "operator",
                ParamType::String,
                Some(json!(DEFAULT_OPERATOR)),
                "How the field is compared with value.",
            )
            .options(OPERATORS.map(|(name, _)| Value::from(name))),
            ParamSpec::optional(
                "value",
                ParamType::Any,
                None,
                "What the field is compared with.",
            ),
            ParamSpec::optional(
                "cases",
                ParamType::Array,
                None,
                "Values the field is matched against with ==; each gets a `case_<value>` output.",
            ),
        ],
        vec![PortSpec::input(
            "input_data",
            ParamType::Any,
            false,
            "The data examined and routed.",
        )],
        vec![
            PortSpec::output(
                "true_output",
                ParamType::Any,
                "The data when the condition holds, else null.",
            ),
            PortSpec::output(
                "false_output",
                ParamType::Any,
                "The data when the condition fails, else null.",
            ),
            PortSpec::output(
                "condition_result",
                ParamType::Any,
                "Whether the condition held; in cases mode the matched case value, or null.",
            ),
            PortSpec::output(
                "default",
                ParamType::Any,
                "Cases mode: the data when no case matched, else null.",
            ),
        ],
    )
}

#[derive(Clone, Copy)]
enum Operator {
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterOrEqual,
    LessOrEqual,
    In,
    Contains,
    IsNull,
    IsNotNull,
}

/// A test of one field of the data.
struct Condition<'a> {
    field: Option<&'a str>,
    operator: Operator,
    operator_name: &'a str,
    value: &'a Value,
}

impl Condition<'_> {
    fn holds(&self, data: &Value) -> Result<bool, NodeError> {
        let field = field_of(data, self.field);
        let ordered = |accept: fn(Ordering) -> bool| self.order(field).map(accept);
        match self.operator {
            Operator::Equal => Ok(equal(field, self.value)),
            Operator::NotEqual => Ok(!equal(field, self.value)),
            Operator::Greater => ordered(Ordering::is_gt),
            Operator::Less => ordered(Ordering::is_lt),
            Operator::GreaterOrEqual => ordered(Ordering::is_ge),
            Operator::LessOrEqual => ordered(Ordering::is_le),
            Operator::In => self.contains(self.value, field),
            Operator::Contains => self.contains(field, self.value),
            Operator::IsNull => Ok(field.is_null()),
            Operator::IsNotNull => Ok(!field.is_null()),
        }
    }

    /// The field against the value: numbers by value, strings lexicographically.
    fn order(&self, field: &Value) -> Result<Ordering, NodeError> {
        match (field, self.value) {
            (Value::Number(a), Value::Number(b)) => Ok(compare_numbers(a, b)),
            (Value::String(a), Value::String(b)) => Ok(a.cmp(b)),
            _ => Err(NodeError::new(format!(
                "operator '{}' compares numbers with numbers or strings with strings, \
                 but {} is {} and value is {}",
                self.operator_name,
                self.field_name(),
                kind_of(field),
                kind_of(self.value)
            ))),
        }
    }

    /// Whether `needle` is an element of an array, a substring of a string, or a key of an
    /// object `haystack`.
    fn contains(&self, haystack: &Value, needle: &Value) -> Result<bool, NodeError> {
        match (haystack, needle) {
            (Value::Array(items), _) => Ok(items.iter().any(|item| equal(item, needle))),
            (Value::String(text), Value::String(part)) => Ok(text.contains(part.as_str())),
            (Value::Object(fields), Value::String(key)) => Ok(fields.contains_key(key)),
            _ => Err(NodeError::new(format!(
                "operator '{}' cannot look for {} in {} ({} against value): \
                 it finds elements in arrays, substrings in strings and keys in objects",
                self.operator_name,
                kind_of(needle),
                kind_of(haystack),
                self.field_name()
            ))),
        }
    }

    fn field_name(&self) -> String {
        self.field.map_or_else(
            || "input_data".to_owned(),
            |field| format!("field '{field}'"),
        )
    }
}

/// The value at a dotted `path` in `data` (array elements by index), null when absent.
fn field_of<'v>(data: &'v Value, path: Option<&str>) -> &'v Value {
    let Some(path) = path else { return data };
    path.split('.')
        .try_fold(data, |value, part| match value {
            Value::Object(fields) => fields.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
        .unwrap_or(&Value::Null)
}

/// JSON equality, except that numbers compare by value (`1 == 1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b).is_eq(),
        _ => a == b,
    }
}

/// Integers exactly, anything else as floats.
fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    let exact = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (exact(a), exact(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        // JSON numbers are never NaN, so the comparison always has an answer.
        _ => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(Ordering::Equal),
    }
}

fn switch(mut call: NodeCall) -> Result<NodeOutput, NodeError> {
    let data = call.params.remove("input_data").unwrap_or(Value::Null);
    let field = optional_str(&call, "condition_field")?.filter(|field| !field.is_empty());
    let operator_name = optional_str(&call, "operator")?.unwrap_or(DEFAULT_OPERATOR);
    let operator = OPERATORS
        .iter()
        .find(|(name, _)| *name == operator_name)
        .map(|(_, operator)| *operator)
        .ok_or_else(|| {
            let known: Vec<&str> = OPERATORS.iter().map(|(name, _)| *name).collect();
            NodeError::new(format!(
                "operator '{operator_name}' is unknown; use one of {}",
                known.join(" ")
            ))
        })?;
    let value = call.param("value").unwrap_or(&Value::Null);
    let condition = Condition {
        field,
        operator,
        operator_name,
        value,
    };
    let cases = match call.param("cases") {
        None => None,
        Some(Value::Array(cases)) => Some(cases),
        Some(other) => return Err(wrong_type("cases", "an array", other)),
    };
    // An array is filtered element by element only when there is a field to look at in each.
    match (cases, data) {
        (None, Value::Array(items)) if field.is_some() => filter_list(&condition, items),
        (None, data) => branch(&condition, data),
        (Some(cases), Value::Array(items)) if field.is_some() => {
            Ok(cases_for_list(cases, field, items))
        }
        (Some(cases), data) => Ok(cases_for_value(cases, field, data)),
    }
}

/// Boolean mode: the data on the output the condition chooses.
fn branch(condition: &Condition<'_>, data: Value) -> Result<NodeOutput, NodeError> {
    let holds = condition.holds(&data)?;
    let (true_output, false_output) = if holds {
        (data, Value::Null)
    } else {
        (Value::Null, data)
    };
    Ok(output([
        ("true_output", true_output),
        ("false_output", false_output),
        ("condition_result", holds.into()),
    ]))
}

/// Boolean list mode: the elements that pass on `true_output`, the others on `false_output`.
fn filter_list(condition: &Condition<'_>, items: Vec<Value>) -> Result<NodeOutput, NodeError> {
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for item in items {
        if condition.holds(&item)? {
            passed.push(item);
        } else {
            failed.push(item);
        }
    }
    let any = !passed.is_empty();
    Ok(output([
        ("true_output", passed.into()),
        ("false_output", failed.into()),
        ("condition_result", any.into()),
    ]))
}

/// Cases mode: the data on the output of every case equal to the field, else on `default`.
fn cases_for_value(cases: &[Value], field: Option<&str>, data: Value) -> NodeOutput {
    let subject = field_of(&data, field);
    let mut result = Map::new();
    let mut first_match = None;
    for case in cases {
        // Two cases may render alike (`1` and `"1"`): a match is never overwritten by a miss.
        let slot = result.entry(case_key(case)).or_insert(Value::Null);
        if equal(subject, case) {
            *slot = data.clone();
            first_match.get_or_insert(case);
        }
    }
    let default = if first_match.is_some() {
        Value::Null
    } else {
        data
    };
    result.insert("default".to_owned(), default);
    result.insert("condition_result".to_owned(), first_match.cloned().into());
    result
}

/// Cases list mode: each case's output holds the elements whose field equals it, `default`
/// those no case matched, `condition_result` the cases that matched any element.
fn cases_for_list(cases: &[Value], field: Option<&str>, items: Vec<Value>) -> NodeOutput {
    let mut groups: Vec<Vec<Value>> = vec![Vec::new(); cases.len()];
    let mut unmatched = Vec::new();
    for item in items {
        let subject = field_of(&item, field);
        let hits: Vec<usize> = (0..cases.len())
            .filter(|&i| equal(subject, &cases[i]))
            .collect();
        let Some((&first, others)) = hits.split_first() else {
            unmatched.push(item);
            continue;
        };
        for &i in others {
            groups[i].push(item.clone());
        }
        groups[first].push(item);
    }
    let mut outputs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut matched = Vec::new();
    for (case, group) in cases.iter().zip(groups) {
        if !group.is_empty() {
            matched.push(case.clone());
        }
        outputs.entry(case_key(case)).or_default().extend(group);
    }
    let mut result: NodeOutput = outputs
        .into_iter()
        .map(|(key, group)| (key, group.into()))
        .collect();
    result.insert("default".to_owned(), unmatched.into());
    result.insert("condition_result".to_owned(), matched.into());
    result
}

/// `case_gold`, `case_3`: the case value as plain text.
fn case_key(case: &Value) -> String {
    match case {
        Value::String(text) => format!("case_{text}"),
        other => format!("case_{other}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::nodes::files::testing::run_node;

    fn route(params: Value) -> Result<NodeOutput, String> {
        let mut registry = NodeRegistry::new();
        register(&mut registry);
        assert!(registry.get("SwitchNode").unwrap().is_branching());
        run_node(&registry, "SwitchNode", params)
    }

    #[test]
    fn every_operator_decides_the_branch() {
        let cases = [
            (json!("gold"), "==", json!("gold"), true),
            (json!(1), "==", json!(1.0), true),
            (json!(1), "!=", json!(2), true),
            (json!("a"), "!=", json!("a"), false),
            (json!(5), ">", json!(3), true),
            (json!(5), "<", json!(3.5), false),
            (json!(3), ">=", json!(3.0), true),
            (json!(2.5), "<=", json!(2), false),
            (json!("b"), ">", json!("a"), true),
            (json!("apple"), "<", json!("banana"), true),
            (json!("x"), "in", json!(["x", "y"]), true),
            (json!(2), "in", json!([1.0, 2.0]), true),
            (json!("ell"), "in", json!("hello"), true),
            (json!("k"), "in", json!({"k": 1}), true),
            (json!("z"), "in", json!(["x"]), false),
            (json!([1, 2]), "contains", json!(2), true),
            (json!("hello"), "contains", json!("ell"), true),
            (json!({"k": 1}), "contains", json!("k"), true),
            (json!(["a"]), "contains", json!("b"), false),
            (Value::Null, "is_null", Value::Null, true),
            (json!(0), "is_null", Value::Null, false),
            (json!(0), "is_not_null", Value::Null, true),
        ];
        for (field, operator, value, expected) in cases {
            let data = json!({"f": field});
            let params = json!({"input_data": data, "condition_field": "f", "operator": operator, "value": value});
            let out = route(params).unwrap();
            let case = format!("{field} {operator} {value}");
            assert_eq!(out["condition_result"], json!(expected), "{case}");
            let (taken, not_taken) = if expected {
                ("true_output", "false_output")
            } else {
                ("false_output", "true_output")
            };
            assert_eq!(
                (&out[taken], &out[not_taken]),
                (&data, &Value::Null),
                "{case}"
            );
        }
    }

    #[test]
    fn fields_are_found_by_dotted_path_or_are_the_data_itself() {
        let data = json!({"customer": {"tier": "gold", "orders": [3, 9]}});
        let deep = route(
            json!({"input_data": data, "condition_field": "customer.orders.1", "operator": ">", "value": 5}),
        );
        assert_eq!(deep.unwrap()["true_output"], data);
        let missing = route(
            json!({"input_data": data, "condition_field": "customer.age", "operator": "is_null"}),
        );
        assert_eq!(missing.unwrap()["condition_result"], json!(true));
        let itself =
            route(json!({"input_data": 7, "value": 7, "unknown_extra": "ignored"})).unwrap();
        assert_eq!(itself["true_output"], json!(7));
        assert_eq!(
            route(json!({"operator": "is_null"})).unwrap()["condition_result"],
            json!(true)
        );
    }

    #[test]
    fn wrong_types_and_operators_fail_clearly() {
        let fail = |params| route(params).unwrap_err();
        let mixed = fail(
            json!({"input_data": {"age": "old"}, "condition_field": "age", "operator": ">", "value": 3}),
        );
        assert_eq!(
            mixed,
            "operator '>' compares numbers with numbers or strings with strings, \
             but field 'age' is a string and value is a number"
        );
        assert!(
            fail(json!({"input_data": 5, "operator": "contains", "value": 5}))
                .starts_with("operator 'contains' cannot look for a number in a number")
        );
        assert!(
            fail(json!({"input_data": 5, "operator": "in", "value": "text"}))
                .contains("for a number in a string (input_data against value)")
        );
        assert!(
            fail(json!({"input_data": 5, "operator": "~="}))
                .starts_with("operator '~=' is unknown; use one of ==")
        );
        assert!(
            fail(json!({"input_data": 5, "operator": 1})).contains("'operator' must be a string")
        );
        assert!(
            fail(json!({"input_data": 5, "cases": "gold"})).contains("'cases' must be an array")
        );
    }

    #[test]
    fn cases_route_to_the_matching_output_or_default() {
        let data = json!({"tier": "gold", "level": 2});
        let params =
            |field, cases| json!({"input_data": data, "condition_field": field, "cases": cases});
        let gold = route(params("tier", json!(["gold", "silver"]))).unwrap();
        let expected = json!({"case_gold": data, "case_silver": null, "default": null, "condition_result": "gold"});
        assert_eq!(Value::Object(gold), expected);
        let none = route(params("tier", json!(["bronze"]))).unwrap();
        assert_eq!(
            (
                &none["default"],
                &none["case_bronze"],
                &none["condition_result"]
            ),
            (&data, &Value::Null, &Value::Null)
        );
        let numeric = route(params("level", json!([1, 2.0, "2"]))).unwrap();
        assert_eq!(
            (&numeric["case_2.0"], &numeric["case_2"]),
            (&data, &Value::Null)
        );
        assert_eq!(numeric["condition_result"], json!(2.0));
    }

    #[test]
    fn arrays_are_filtered_element_by_element() {
        let people =
            json!([{"name": "a", "age": 20}, {"name": "b", "age": 40}, {"name": "c", "age": 50}]);
        let adults = route(
            json!({"input_data": people, "condition_field": "age", "operator": ">=", "value": 40}),
        )
        .unwrap();
        assert_eq!(adults["true_output"], json!([people[1], people[2]]));
        assert_eq!(adults["false_output"], json!([people[0]]));
        assert_eq!(adults["condition_result"], json!(true));
        let nobody = route(
            json!({"input_data": people, "condition_field": "age", "operator": ">", "value": 99}),
        )
        .unwrap();
        assert_eq!(
            (&nobody["true_output"], &nobody["condition_result"]),
            (&json!([]), &json!(false))
        );

        let grouped =
            route(json!({"input_data": people, "condition_field": "age", "cases": [40, 50, 60]}))
                .unwrap();
        assert_eq!(grouped["case_40"], json!([people[1]]));
        assert_eq!(grouped["case_60"], json!([]));
        assert_eq!(grouped["default"], json!([people[0]]));
        assert_eq!(grouped["condition_result"], json!([40, 50]));
    }
}
