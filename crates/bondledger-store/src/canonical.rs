//! Canonical JSON text (see [`crate::chain`]) written straight from a value's
//! `Serialize`, without building a `serde_json::Value` first.
//!
//! [`CanonicalJson::of`] gives exactly the text that
//! `canonical_json(&serde_json::to_value(value)?)` gives: the same members
//! (a repeated key keeps its last value, as a `Value` map does), sorted the
//! same way, with every scalar printed as `serde_json` prints the scalar it
//! would have made. Members are written where they stand in the output, and
//! an object whose members did not come in order is put in order when it
//! ends, so a value costs no tree and no allocation per member.

use std::fmt;

use serde::ser::{self, Error as _, Serialize};
use serde_json::Value;

use crate::chain::canonical_json;

/// JSON text in canonical form: what the store keeps and hashes of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalJson(String);

impl CanonicalJson {
    /// `value` as canonical JSON, or why it has no JSON form (a map key that is
    /// not a string or number, an integer out of JSON's range).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        let mut out = Vec::with_capacity(256);
        value.serialize(Canonical { out: &mut out })?;
        // Everything written is serde_json's UTF-8 or ASCII punctuation.
        Ok(CanonicalJson(String::from_utf8(out).map_err(|_| {
            serde_json::Error::custom("canonical JSON came out as invalid UTF-8")
        })?))
    }

    /// The canonical text of a JSON value.
    pub fn from_value(value: &Value) -> Self {
        CanonicalJson(canonical_json(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The text read back as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0)
            .unwrap_or_else(|error| unreachable!("canonical JSON always parses: {error}"))
    }
}

impl From<Value> for CanonicalJson {
    fn from(value: Value) -> Self {
        CanonicalJson::from_value(&value)
    }
}

impl From<&Value> for CanonicalJson {
    fn from(value: &Value) -> Self {
        CanonicalJson::from_value(value)
    }
}

impl fmt::Display for CanonicalJson {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

type Result<T, E = serde_json::Error> = std::result::Result<T, E>;

/// Writes one value in canonical form at the end of `out`.
struct Canonical<'a> {
    out: &'a mut Vec<u8>,
}

impl Canonical<'_> {
    /// A scalar exactly as `serde_json` prints it.
    fn scalar<T: Serialize + ?Sized>(self, scalar: &T) -> Result<()> {
        serde_json::to_writer(&mut *self.out, scalar)
    }

    /// A scalar as `serde_json` prints the `Value` it would make of it (floats,
    /// whose non-finite values become `null`, and wide integers, refused past
    /// 64 bits).
    fn through_value<T: Serialize>(self, scalar: T) -> Result<()> {
        let value = serde_json::to_value(scalar)?;
        serde_json::to_writer(&mut *self.out, &value)
    }
}

/// `{"variant":` before the value of an enum variant with content.
fn open_variant(out: &mut Vec<u8>, variant: &'static str) -> Result<()> {
    out.push(b'{');
    serde_json::to_writer(&mut *out, variant)?;
    out.push(b':');
    Ok(())
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Elements<'a>;
    type SerializeTuple = Elements<'a>;
    type SerializeTupleStruct = Elements<'a>;
    type SerializeTupleVariant = Elements<'a>;
    type SerializeMap = Members<'a>;
    type SerializeStruct = Members<'a>;
    type SerializeStructVariant = Members<'a>;

    fn serialize_bool(self, value: bool) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_i8(self, value: i8) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_i16(self, value: i16) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_i32(self, value: i32) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_i64(self, value: i64) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_i128(self, value: i128) -> Result<()> {
        self.through_value(value)
    }
    fn serialize_u8(self, value: u8) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_u16(self, value: u16) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_u32(self, value: u32) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_u64(self, value: u64) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_u128(self, value: u128) -> Result<()> {
        self.through_value(value)
    }
    fn serialize_f32(self, value: f32) -> Result<()> {
        self.through_value(value)
    }
    fn serialize_f64(self, value: f64) -> Result<()> {
        self.through_value(value)
    }
    fn serialize_char(self, value: char) -> Result<()> {
        self.scalar(&value)
    }
    fn serialize_str(self, value: &str) -> Result<()> {
        self.scalar(value)
    }
    fn serialize_bytes(self, value: &[u8]) -> Result<()> {
        // A `Value` holds bytes as an array of numbers.
        self.scalar(&value.iter().collect::<Vec<_>>())
    }
    fn serialize_none(self) -> Result<()> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<()> {
        self.scalar(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        let out = self.out;
        open_variant(out, variant)?;
        value.serialize(Canonical { out: &mut *out })?;
        out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Elements<'a>> {
        Ok(Elements::open(self.out, false))
    }
    fn serialize_tuple(self, len: usize) -> Result<Elements<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Elements<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Elements<'a>> {
        open_variant(self.out, variant)?;
        Ok(Elements::open(self.out, true))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Members<'a>> {
        Ok(Members::open(self.out, false))
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Members<'a>> {
        if name.starts_with("$serde_json::private::") {
            // serde_json's raw values and arbitrary-precision numbers carry
            // text that a `Value` would have parsed first.
            return Err(serde_json::Error::custom(format!(
                "{name} has no canonical form here; canonicalize it as a Value"
            )));
        }
        Ok(Members::open(self.out, false))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Members<'a>> {
        open_variant(self.out, variant)?;
        Ok(Members::open(self.out, true))
    }
}

/// The elements of an array, written in order.
struct Elements<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Inside `{"variant":…}`, which closes after the array.
    in_variant: bool,
}

impl<'a> Elements<'a> {
    fn open(out: &'a mut Vec<u8>, in_variant: bool) -> Self {
        out.push(b'[');
        Elements {
            out,
            first: true,
            in_variant,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical {
            out: &mut *self.out,
        })
    }

    fn close(self) -> Result<()> {
        self.out.push(b']');
        if self.in_variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// serde's four kinds of array (sequence, tuple, tuple struct, tuple
/// variant) written alike: each element through [`Elements::element`].
macro_rules! elements_as {
    ($($kind:ident :: $add:ident),* $(,)?) => {$(
        impl ser::$kind for Elements<'_> {
            type Ok = ();
            type Error = serde_json::Error;
            fn $add<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                self.element(value)
            }
            fn end(self) -> Result<()> {
                self.close()
            }
        }
    )*};
}

elements_as!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

/// A member's key: a struct's field names are static, a map's keys are made.
enum Key {
    Field(&'static str),
    Made(String),
}

impl Key {
    fn as_str(&self) -> &str {
        match self {
            Key::Field(name) => name,
            Key::Made(name) => name,
        }
    }
}

/// The members of an object, each written where it comes as `"key":value`;
/// `end` puts them in key order if they did not come so.
struct Members<'a> {
    out: &'a mut Vec<u8>,
    /// Where the first member starts, just after `{`.
    start: usize,
    /// Each member's key and where its `"key":value` text lies in `out`.
    members: Vec<(Key, usize, usize)>,
    /// A map's key, waiting for its value.
    key: Option<String>,
    /// Inside `{"variant":…}`, which closes after the object.
    in_variant: bool,
}

impl<'a> Members<'a> {
    fn open(out: &'a mut Vec<u8>, in_variant: bool) -> Self {
        out.push(b'{');
        let start = out.len();
        Members {
            out,
            start,
            members: Vec::new(),
            key: None,
            in_variant,
        }
    }

    fn member<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) -> Result<()> {
        if !self.members.is_empty() {
            self.out.push(b',');
        }
        let from = self.out.len();
        serde_json::to_writer(&mut *self.out, key.as_str())?;
        self.out.push(b':');
        value.serialize(Canonical {
            out: &mut *self.out,
        })?;
        self.members.push((key, from, self.out.len()));
        Ok(())
    }

    fn close(self) -> Result<()> {
        let Members {
            out,
            start,
            mut members,
            in_variant,
            ..
        } = self;
        let in_order = members
            .windows(2)
            .all(|pair| pair[0].0.as_str().as_bytes() < pair[1].0.as_str().as_bytes());
        if !in_order {
            let written = out.split_off(start);
            // Stable: of members with the same key, the last one written stays last.
            members
                .sort_by(|left, right| left.0.as_str().as_bytes().cmp(right.0.as_str().as_bytes()));
            let mut first = true;
            for (index, (key, from, to)) in members.iter().enumerate() {
                let superseded = members
                    .get(index + 1)
                    .is_some_and(|next| next.0.as_str() == key.as_str());
                if superseded {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&written[from - start..to - start]);
            }
        }
        out.push(b'}');
        if in_variant {
            out.push(b'}');
        }
        Ok(())
    }
}

/// A map key as a `Value` map would hold it (serde_json's rules for keys:
/// strings, and numbers, booleans and characters as their text).
fn map_key<T: Serialize + ?Sized>(key: &T) -> Result<String> {
    struct Single<'k, K: ?Sized>(&'k K);
    impl<K: Serialize + ?Sized> Serialize for Single<'_, K> {
        fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeMap;
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(self.0, &())?;
            map.end()
        }
    }
    match serde_json::to_value(Single(key))? {
        Value::Object(map) => map
            .into_iter()
            .next()
            .map(|(key, _)| key)
            .ok_or_else(|| serde_json::Error::custom("a map key made no member")),
        _ => Err(serde_json::Error::custom("a map key made no object")),
    }
}

impl ser::SerializeMap for Members<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key = Some(map_key(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let key = self
            .key
            .take()
            .ok_or_else(|| serde_json::Error::custom("a map value came before its key"))?;
        self.member(Key::Made(key), value)
    }
    fn end(self) -> Result<()> {
        self.close()
    }
}

/// A struct and a struct variant written alike: each field a member.
macro_rules! fields_as_members {
    ($($kind:ident),*) => {$(
        impl ser::$kind for Members<'_> {
            type Ok = ();
            type Error = serde_json::Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<()> {
                self.member(Key::Field(key), value)
            }
            fn end(self) -> Result<()> {
                self.close()
            }
        }
    )*};
}

fields_as_members!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;
    use serde_json::json;

    use super::*;

    /// What the slow way gives: a `Value`, then its canonical text.
    fn through_value<T: Serialize>(value: &T) -> Result<String> {
        Ok(canonical_json(&serde_json::to_value(value)?))
    }

    fn same_as_through_value<T: Serialize + fmt::Debug>(value: &T) {
        assert_eq!(
            CanonicalJson::of(value)
                .map(CanonicalJson::into_string)
                .ok(),
            through_value(value).ok(),
            "{value:?}"
        );
    }

    #[derive(Debug, Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i32, String),
        Struct { zeta: bool, alpha: Option<f64> },
    }

    #[derive(Debug, Serialize)]
    struct Unordered {
        zulu: &'static str,
        alpha: Vec<Shape>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        mike: BTreeMap<i32, char>,
        nested: Nested,
        empty: Vec<u8>,
        unit: (),
    }

    #[derive(Debug, Serialize)]
    struct Nested {
        b: &'static str,
        a: [i64; 2],
        #[serde(rename = "\u{e9}t\u{e9}")]
        accented: u64,
        #[serde(rename = "Z")]
        upper: Option<String>,
    }

    #[derive(Debug, Serialize)]
    struct Flattened {
        #[serde(flatten)]
        first: BTreeMap<&'static str, u8>,
        #[serde(flatten)]
        second: BTreeMap<&'static str, u8>,
    }

    #[test]
    fn every_shape_comes_out_as_through_a_value() {
        same_as_through_value(&Unordered {
            zulu: "quote \" backslash \\ newline \n tab \t nul \u{0} 中文 €",
            alpha: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-3, "x".into()),
                Shape::Struct {
                    zeta: true,
                    alpha: Some(0.1),
                },
                Shape::Struct {
                    zeta: false,
                    alpha: Some(f64::NAN),
                },
            ],
            skipped: None,
            mike: BTreeMap::from([(10, 'a'), (-2, '"'), (3, '中')]),
            nested: Nested {
                b: "",
                a: [i64::MIN, i64::MAX],
                accented: u64::MAX,
                upper: None,
            },
            empty: Vec::new(),
            unit: (),
        });
        same_as_through_value(&json!({"b": [{"d": 1, "c": null}], "a": {"y": 1.5, "x": -0.0}}));
        same_as_through_value(&HashMap::from([("b", 1), ("a", 2), ("c", 3)]));
        same_as_through_value(&(1_u128, -1_i128, 'c', "s", b"\x00\xff".as_slice()));
        same_as_through_value(&Some(Some(3_u8)));
        same_as_through_value(&Vec::<Nested>::new());
        same_as_through_value(&BTreeMap::from([(true, 1), (false, 2)]));
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_a_value_map_does() {
        let value = Flattened {
            first: BTreeMap::from([("k", 1), ("a", 2)]),
            second: BTreeMap::from([("k", 3), ("b", 4)]),
        };
        same_as_through_value(&value);
        assert_eq!(
            CanonicalJson::of(&value)
                .map(CanonicalJson::into_string)
                .ok(),
            Some(r#"{"a":2,"b":4,"k":3}"#.to_owned())
        );
    }

    #[test]
    fn what_has_no_json_form_is_refused_alike() {
        assert!(CanonicalJson::of(&u128::MAX).is_err());
        assert!(through_value(&u128::MAX).is_err());
        let unit_keys = BTreeMap::from([((), 1)]);
        assert!(CanonicalJson::of(&unit_keys).is_err());
        assert!(through_value(&unit_keys).is_err());
    }

    #[test]
    fn members_already_in_order_are_left_where_they_were_written() {
        #[derive(Serialize)]
        struct Ordered {
            a: u8,
            b: [u8; 1],
            c: Option<u8>,
        }
        let text = CanonicalJson::of(&Ordered {
            a: 1,
            b: [2],
            c: None,
        });
        assert_eq!(
            text.map(CanonicalJson::into_string).ok(),
            Some(r#"{"a":1,"b":[2],"c":null}"#.to_owned())
        );
    }
}
