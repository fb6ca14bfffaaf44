//! Conversion between JSON items and DynamoDB attribute values, and DynamoDB's item size rule.
//! Pure: no client, no I/O.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde_json::{Map, Number, Value};

use crate::item::Item;

/// A DynamoDB item.
pub type Attributes = HashMap<String, AttributeValue>;

/// A stored value that has no JSON form (an attribute type this service never writes, or a
/// number JSON cannot carry).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stored attribute cannot be shown as JSON: {0}")]
pub struct NotJson(pub String);

/// JSON item → DynamoDB item.
pub fn to_attributes(item: &Item) -> Attributes {
    item.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()
}

fn to_value(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(values) => AttributeValue::L(values.iter().map(to_value).collect()),
        Value::Object(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
        }
    }
}

/// DynamoDB item → JSON item.
pub fn to_item(attributes: &Attributes) -> Result<Item, NotJson> {
    attributes
        .iter()
        .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
        .collect()
}

fn to_json(value: &AttributeValue) -> Result<Value, NotJson> {
    Ok(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => Value::Number(number(n)?),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::B(b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
        }
        AttributeValue::L(values) => {
            Value::Array(values.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<Map<_, _>, NotJson>>()?,
        ),
        AttributeValue::Ss(values) => {
            Value::Array(values.iter().cloned().map(Value::String).collect())
        }
        AttributeValue::Ns(values) => Value::Array(
            values
                .iter()
                .map(|n| number(n).map(Value::Number))
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::Bs(values) => Value::Array(
            values
                .iter()
                .map(|b| {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
                })
                .collect(),
        ),
        other => return Err(NotJson(format!("{other:?}"))),
    })
}

fn number(text: &str) -> Result<Number, NotJson> {
    if let Ok(i) = text.parse::<i64>() {
        return Ok(i.into());
    }
    if let Ok(u) = text.parse::<u64>() {
        return Ok(u.into());
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or_else(|| NotJson(format!("number {text}")))
}

/// The size DynamoDB counts for an item: names plus values, with its per-type rules.
pub fn item_size(attributes: &Attributes) -> usize {
    attributes
        .iter()
        .map(|(k, v)| k.len() + value_size(v))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::Ss(values) => values.iter().map(String::len).sum(),
        AttributeValue::Ns(values) => values.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(values) => values.iter().map(|b: &Blob| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// Numbers take about one byte per two significant digits, plus one.
fn number_size(text: &str) -> usize {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let digits = mantissa.chars().filter(char::is_ascii_digit).count();
    digits.div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips() {
        let item = json!({
            "item_id": "a", "n": 5, "neg": -3, "f": 1.5, "b": true, "z": null,
            "list": [1, "two", {"three": [3]}], "map": {"k": "v"}, "empty": ""
        });
        let item = item.as_object().unwrap().clone();
        assert_eq!(to_item(&to_attributes(&item)).unwrap(), item);
    }

    #[test]
    fn sizes_follow_dynamodb_rules() {
        let item = json!({"ab": "xyz", "n": 12345, "t": true});
        let attrs = to_attributes(item.as_object().unwrap());
        // "ab"+3, "n"+(3+1), "t"+1
        assert_eq!(item_size(&attrs), 5 + 5 + 2);
        let big = json!({"s": "x".repeat(1000)});
        assert_eq!(item_size(&to_attributes(big.as_object().unwrap())), 1001);
    }
}
