//! The SQL nodes' value codec: JSON parameters to bound PostgreSQL values, and result
//! columns, read from the binary format, to JSON. The mapping is documented on the parent
//! module.

use std::{error::Error as StdError, fmt::Write as _};

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use kailash_actors::engine::node::NodeError;
use serde_json::{Map, Number, Value};
use tokio_postgres::{
    Row,
    types::{Format, FromSql, IsNull, Kind, ToSql, Type, to_sql_checked},
};
use uuid::Uuid;

use super::super::files::kind_of;

type BoxError = Box<dyn StdError + Sync + Send>;

/// A parameter in PostgreSQL's text format, parsed by the server as the parameter's type;
/// `None` is NULL.
#[derive(Debug)]
pub(super) struct TextParam(Option<String>);

impl ToSql for TextParam {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let Some(text) = &self.0 else {
            return Ok(IsNull::Yes);
        };
        out.extend_from_slice(text.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// The JSON `value` as parameter `$index` of type `ty`.
pub(super) fn bind(index: usize, ty: &Type, value: &Value) -> Result<TextParam, NodeError> {
    if let (Value::Array(items), Kind::Array(element)) = (value, ty.kind()) {
        return array_literal(index, element, items).map(|literal| TextParam(Some(literal)));
    }
    let is_text = <&str as FromSql>::accepts(ty);
    let text = match value {
        Value::Null => return Ok(TextParam(None)),
        Value::String(text) => text.clone(),
        _ if *ty == Type::JSON || *ty == Type::JSONB => value.to_string(),
        Value::Bool(flag) if *ty == Type::BOOL || is_text => flag.to_string(),
        Value::Number(number) if is_text || number_fits(ty, number) => number.to_string(),
        Value::Array(_) | Value::Object(_) if is_text => value.to_string(),
        _ => {
            let given = kind_of(value);
            return Err(NodeError::new(format!(
                "parameter ${index}: cannot bind {given} to type {ty}"
            )));
        }
    };
    Ok(TextParam(Some(text)))
}

fn number_fits(ty: &Type, number: &Number) -> bool {
    let integer = number.as_i64();
    match *ty {
        Type::INT2 => integer.is_some_and(|n| i16::try_from(n).is_ok()),
        Type::INT4 => integer.is_some_and(|n| i32::try_from(n).is_ok()),
        Type::INT8 => integer.is_some(),
        Type::OID => integer.is_some_and(|n| u32::try_from(n).is_ok()),
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => true,
        _ => false,
    }
}

/// A JSON list as an array literal, `{"a","b",NULL}`; nested lists are further dimensions.
fn array_literal(index: usize, element: &Type, items: &[Value]) -> Result<String, NodeError> {
    let parts = items
        .iter()
        .map(|item| match item {
            Value::Array(inner) => array_literal(index, element, inner),
            _ => Ok(match bind(index, element, item)?.0 {
                None => "NULL".to_owned(),
                Some(text) => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("{{{}}}", parts.join(",")))
}

/// A column value's raw binary bytes, for [`Decoder`]; accepts every type.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Self(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Self(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A row as an object keyed by column name, each column read by its decoder.
pub(super) fn decode_row(
    row: &Row,
    columns: &[(String, Decoder)],
) -> Result<Map<String, Value>, NodeError> {
    let mut object = Map::new();
    for (i, (name, decoder)) in columns.iter().enumerate() {
        let value = match row.try_get::<_, Raw>(i) {
            Ok(Raw(None)) => Ok(Value::Null),
            Ok(Raw(Some(raw))) => decoder.decode(raw),
            Err(error) => Err(error.into()),
        };
        let value =
            value.map_err(|e| NodeError::new(format!("cannot read column \"{name}\": {e}")))?;
        object.insert(name.clone(), value);
    }
    Ok(object)
}

/// How a column's binary value becomes JSON; chosen once per column from its type.
#[derive(Debug, Clone)]
pub(super) enum Decoder {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    Json,
    Jsonb,
    Uuid,
    Timestamp,
    TimestampTz,
    Date,
    Time,
    Bytea,
    /// `void` (what `SELECT pg_sleep(1)` returns) reads as null.
    Void,
    Array(Box<Decoder>),
}

impl Decoder {
    pub(super) fn for_type(ty: &Type) -> Option<Self> {
        Some(match *ty {
            Type::BOOL => Self::Bool,
            Type::INT2 => Self::Int2,
            Type::INT4 => Self::Int4,
            Type::INT8 => Self::Int8,
            Type::OID => Self::Oid,
            Type::FLOAT4 => Self::Float4,
            Type::FLOAT8 => Self::Float8,
            Type::NUMERIC => Self::Numeric,
            Type::JSON => Self::Json,
            Type::JSONB => Self::Jsonb,
            Type::UUID => Self::Uuid,
            Type::TIMESTAMP => Self::Timestamp,
            Type::TIMESTAMPTZ => Self::TimestampTz,
            Type::DATE => Self::Date,
            Type::TIME => Self::Time,
            Type::BYTEA => Self::Bytea,
            Type::VOID => Self::Void,
            _ => match ty.kind() {
                Kind::Array(element) => Self::Array(Box::new(Self::for_type(element)?)),
                Kind::Domain(base) => Self::for_type(base)?,
                // An enum's binary form is its label.
                Kind::Enum(_) => Self::Text,
                _ => return <&str as FromSql>::accepts(ty).then_some(Self::Text),
            },
        })
    }

    fn decode(&self, raw: &[u8]) -> Result<Value, BoxError> {
        if matches!(self, Self::Timestamp | Self::TimestampTz | Self::Date)
            && let Some(infinite) = infinity(raw)
        {
            return Ok(infinite.into());
        }
        Ok(match self {
            Self::Bool => bool::from_sql(&Type::BOOL, raw)?.into(),
            Self::Int2 => i16::from_sql(&Type::INT2, raw)?.into(),
            Self::Int4 => i32::from_sql(&Type::INT4, raw)?.into(),
            Self::Int8 => i64::from_sql(&Type::INT8, raw)?.into(),
            Self::Oid => u32::from_sql(&Type::OID, raw)?.into(),
            // Through its shortest text, so a float4 0.1 reads 0.1, not 0.10000000149011612.
            Self::Float4 => float(f32::from_sql(&Type::FLOAT4, raw)?.to_string().parse()?),
            Self::Float8 => float(f64::from_sql(&Type::FLOAT8, raw)?),
            Self::Numeric => numeric(raw)?.into(),
            Self::Text => <&str as FromSql>::from_sql(&Type::TEXT, raw)?.into(),
            Self::Json => Value::from_sql(&Type::JSON, raw)?,
            Self::Jsonb => Value::from_sql(&Type::JSONB, raw)?,
            Self::Uuid => Uuid::from_sql(&Type::UUID, raw)?.to_string().into(),
            Self::Timestamp => NaiveDateTime::from_sql(&Type::TIMESTAMP, raw)?
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string()
                .into(),
            Self::TimestampTz => DateTime::<Utc>::from_sql(&Type::TIMESTAMPTZ, raw)?
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
                .into(),
            Self::Date => NaiveDate::from_sql(&Type::DATE, raw)?.to_string().into(),
            Self::Time => NaiveTime::from_sql(&Type::TIME, raw)?.to_string().into(),
            Self::Void => Value::Null,
            Self::Bytea => raw
                .iter()
                .fold(String::from("\\x"), |mut hex, byte| {
                    let _ = write!(hex, "{byte:02x}");
                    hex
                })
                .into(),
            Self::Array(element) => array(element, raw)?,
        })
    }
}

/// A float as a JSON number, or NaN/Infinity/-Infinity spelled as PostgreSQL prints them.
fn float(value: f64) -> Value {
    Number::from_f64(value).map_or_else(
        || {
            Value::from(if value.is_nan() {
                "NaN"
            } else if value > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            })
        },
        Value::Number,
    )
}

/// PostgreSQL stores `infinity`/`-infinity` dates and timestamps as the extreme integers.
fn infinity(raw: &[u8]) -> Option<&'static str> {
    let (first, rest) = raw.split_first()?;
    match first {
        0x7f if rest.iter().all(|b| *b == 0xff) => Some("infinity"),
        0x80 if rest.iter().all(|b| *b == 0) => Some("-infinity"),
        _ => None,
    }
}

/// Reads big-endian fields off a binary value.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BoxError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or("the value is truncated")?;
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, BoxError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }

    fn i32(&mut self) -> Result<i32, BoxError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }
}

/// A binary NUMERIC — base-10000 digits, the first at power `weight` — as exact decimal text.
fn numeric(raw: &[u8]) -> Result<String, BoxError> {
    let mut cursor = Cursor(raw);
    let (count, weight, sign, scale) = (
        cursor.u16()?,
        cursor.u16()?.cast_signed(),
        cursor.u16()?,
        cursor.u16()?,
    );
    let digits = (0..count)
        .map(|_| cursor.u16())
        .collect::<Result<Vec<_>, _>>()?;
    let special = match sign {
        0xC000 => Some("NaN"),
        0xD000 => Some("Infinity"),
        0xF000 => Some("-Infinity"),
        _ => None,
    };
    if let Some(special) = special {
        return Ok(special.to_owned());
    }
    let digit = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut text = String::from(if sign == 0x4000 { "-" } else { "" });
    if weight < 0 {
        text.push('0');
    } else {
        let _ = write!(text, "{}", digit(0));
        for i in 1..=i32::from(weight) {
            let _ = write!(text, "{:04}", digit(i));
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut i = i32::from(weight) + 1;
        while fraction.len() < usize::from(scale) {
            let _ = write!(fraction, "{:04}", digit(i));
            i += 1;
        }
        fraction.truncate(usize::from(scale));
        text = format!("{text}.{fraction}");
    }
    Ok(text)
}

/// A binary array — dimensions, then every element in row-major order — as nested lists.
fn array(element: &Decoder, raw: &[u8]) -> Result<Value, BoxError> {
    let mut cursor = Cursor(raw);
    let dimensions = cursor.i32()?;
    cursor.take(8)?; // the has-nulls flag and the element type's oid
    let lengths = (0..dimensions)
        .map(|_| {
            let length = usize::try_from(cursor.i32()?)?;
            cursor.take(4)?; // the lower bound
            Ok(length)
        })
        .collect::<Result<Vec<usize>, BoxError>>()?;
    let mut values = Vec::new();
    while !cursor.0.is_empty() {
        let length = cursor.i32()?;
        values.push(match usize::try_from(length) {
            Ok(length) => element.decode(cursor.take(length)?)?,
            Err(_) => Value::Null, // length -1
        });
    }
    if lengths.is_empty() {
        return Ok(Value::Array(values));
    }
    Ok(nest(&mut values.into_iter(), &lengths))
}

fn nest(values: &mut impl Iterator<Item = Value>, lengths: &[usize]) -> Value {
    match lengths.split_first() {
        None => values.next().unwrap_or(Value::Null),
        Some((length, inner)) => Value::Array((0..*length).map(|_| nest(values, inner)).collect()),
    }
}
