//! Movements: what an enterprise declares, one per line of a movement file
//! (interchange §1) and one per event on its manual's stream.
//!
//! The same shapes are used to read a line and to store an event's payload,
//! so a movement round-trips unchanged. Reading is strict: unknown fields,
//! wrong JSON types and values outside the format are refused with the path
//! of the field at fault.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::decimal::Dec;

/// Longest text a movement field may carry (names, specs, references).
pub const MAX_TEXT_CHARS: usize = 512;
/// Most entries one list of a movement may carry (items, lines, issues).
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// Longest caller id (interchange §1).
pub const MAX_ID_CHARS: usize = 64;

/// A line or payload that does not fit the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The field at fault, as a path (`materials[0].qty`), when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl Malformed {
    fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Malformed {
            field: Some(field.into()),
            message: message.into(),
        }
    }
    fn whole(message: impl Into<String>) -> Self {
        Malformed {
            field: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// No text of a movement holds a control character (U+0000 to U+001F,
/// U+007F to U+009F): none belongs in customs data, and some (NUL) no
/// database keeps. `path` names the field, as `materials[0].name`.
fn refuse_control_characters(path: &str, value: &Value) -> Result<(), Malformed> {
    match value {
        Value::String(text) => match text.chars().find(|c| c.is_control()) {
            Some(c) => Err(Malformed::at(
                path,
                format!("holds the control character U+{:04X}", u32::from(c)),
            )),
            None => Ok(()),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| refuse_control_characters(&format!("{path}[{i}]"), item)),
        Value::Object(fields) => fields.iter().try_for_each(|(name, item)| {
            if name.chars().any(char::is_control) {
                return Err(Malformed::at(
                    path,
                    "a field name holds a control character",
                ));
            }
            refuse_control_characters(&format!("{path}.{name}"), item)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> Result<Self, String> {
                let check: fn(&str) -> bool = $check;
                if check(&text) {
                    Ok($name(text))
                } else {
                    Err(format!("{text:?} is not {}", $what))
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn upper_alphanumeric(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

checked_string!(
    /// A manual or account-book number (手册编号): 1–32 of `A-Z 0-9`.
    ManualNo, "a manual number (1-32 of A-Z 0-9)",
    |t| (1..=32).contains(&t.len()) && upper_alphanumeric(t)
);
checked_string!(
    /// An enterprise's 10-character customs code.
    EnterpriseCode, "an enterprise code (10 of A-Z 0-9)",
    |t| t.len() == 10 && upper_alphanumeric(t)
);
checked_string!(
    /// A 10-digit HS code (商品编号).
    HsCode, "an HS code (10 digits)",
    |t| t.len() == 10 && t.bytes().all(|b| b.is_ascii_digit())
);
checked_string!(
    /// A customs declaration number (报关单号): 18 digits.
    DeclarationNo, "a declaration number (18 digits)",
    |t| t.len() == 18 && t.bytes().all(|b| b.is_ascii_digit())
);

/// An item number (序号) of a material or product: 1, 2, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct ItemNo(pub u32);

impl TryFrom<u64> for ItemNo {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, String> {
        match u32::try_from(value) {
            Ok(n) if n >= 1 => Ok(ItemNo(n)),
            _ => Err(format!("{value} is not an item number (an integer from 1)")),
        }
    }
}

impl From<ItemNo> for u64 {
    fn from(value: ItemNo) -> u64 {
        u64::from(value.0)
    }
}

impl fmt::Display for ItemNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A business date written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Date(pub NaiveDate);

impl TryFrom<String> for Date {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        parse_date(&text).map(Date)
    }
}

impl From<Date> for String {
    fn from(value: Date) -> String {
        value.0.format("%Y-%m-%d").to_string()
    }
}

/// Parses exactly `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shaped {
        return Err(format!("{text:?} is not a date (YYYY-MM-DD)"));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a calendar date"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeMode {
    /// 来料加工: the foreign party supplies the materials.
    Consigned,
    /// 进料加工: the enterprise buys the materials.
    Purchased,
}

impl TradeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeMode::Consigned => "consigned",
            TradeMode::Purchased => "purchased",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Book {
    /// 手册: verified once, after its contract ends.
    #[default]
    Manual,
    /// 电子账册: verified period by period.
    AccountBook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposal {
    DomesticSale,
    ReExport,
    Destroyed,
}

impl Disposal {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposal::DomesticSale => "domestic_sale",
            Disposal::ReExport => "re_export",
            Disposal::Destroyed => "destroyed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Material,
    Product,
}

/// `{"item": 1, "qty": "10"}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemQty {
    pub item: ItemNo,
    pub qty: Dec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialSpec {
    pub item: ItemNo,
    pub hs: HsCode,
    pub name: String,
    pub spec: String,
    pub unit: String,
    pub qty: Dec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSpec {
    pub item: ItemNo,
    pub hs: HsCode,
    pub name: String,
    pub spec: String,
    pub unit: String,
    pub qty: Dec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualRegistered {
    pub trade_mode: TradeMode,
    pub enterprise: EnterpriseCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_enterprise: Option<EnterpriseCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book: Option<Book>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<bool>,
    pub valid_until: Date,
    pub materials: Vec<MaterialSpec>,
    pub products: Vec<ProductSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    pub kind: ItemKind,
    pub item: ItemNo,
    pub qty: Dec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualAmended {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Date>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_materials: Vec<MaterialSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_products: Vec<ProductSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_quantities: Vec<SetQuantity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitConsumptionLine {
    pub material: ItemNo,
    pub net: Dec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_rate: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tangible_loss_rate: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonded_share: Option<Dec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitConsumptionDeclared {
    pub product: ItemNo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub lines: Vec<UnitConsumptionLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialImported {
    pub material: ItemNo,
    pub qty: Dec,
    pub declaration: DeclarationNo,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// Products going out for good: `product_exported`, `product_reexported`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductOut {
    pub product: ItemNo,
    pub qty: Dec,
    pub declaration: DeclarationNo,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uc_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductReturned {
    pub product: ItemNo,
    pub qty: Dec,
    pub declaration: DeclarationNo,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarryoverOut {
    pub product: ItemNo,
    pub qty: Dec,
    pub declaration: DeclarationNo,
    pub mode: String,
    pub counterparty_manual: ManualNo,
    pub counterparty_enterprise: EnterpriseCode,
    pub hs: HsCode,
    pub shipped_on: Date,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uc_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarryoverIn {
    pub material: ItemNo,
    pub qty: Dec,
    pub declaration: DeclarationNo,
    pub mode: String,
    pub counterparty_manual: ManualNo,
    pub counterparty_enterprise: EnterpriseCode,
    pub received_on: Date,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemnantOut {
    pub material: ItemNo,
    pub qty: Dec,
    pub to_manual: ManualNo,
    pub approval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration: Option<DeclarationNo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemnantIn {
    pub material: ItemNo,
    pub qty: Dec,
    pub from_manual: ManualNo,
    pub approval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration: Option<DeclarationNo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counterpart {
    pub bonded: bool,
    pub enterprise: EnterpriseCode,
    pub hs: HsCode,
    pub spec: String,
    pub qty: Dec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<ManualNo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<ItemNo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Substituted {
    pub material: ItemNo,
    pub qty: Dec,
    pub approval: String,
    pub counterpart: Counterpart,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutwardShipped {
    pub contractor: EnterpriseCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<EnterpriseCode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<ItemQty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ItemQty>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutwardReturned {
    pub contractor: EnterpriseCode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<ItemQty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ItemQty>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomesticSale {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    pub declaration: DeclarationNo,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<ItemQty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ItemQty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest_rate: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest: Option<Dec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialsReturned {
    pub material: ItemNo,
    pub qty: Dec,
    pub declaration: DeclarationNo,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialsExchanged {
    pub material: ItemNo,
    pub qty_out: Dec,
    pub qty_in: Dec,
    pub declaration: DeclarationNo,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// Materials leaving by customs approval: `abandoned`, `disaster_loss`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialWrittenOff {
    pub material: ItemNo,
    pub qty: Dec,
    pub approval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destroyed {
    pub material: ItemNo,
    pub qty: Dec,
    pub approval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapDisposed {
    pub material: ItemNo,
    pub qty: Dec,
    pub disposal: Disposal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration: Option<DeclarationNo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefectiveDisposed {
    pub product: ItemNo,
    pub qty: Dec,
    pub disposal: Disposal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration: Option<DeclarationNo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkOrderCompleted {
    pub order: String,
    pub product: ItemNo,
    pub qty: Dec,
    pub issued: Vec<ItemQty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodsSealed {
    pub authority: String,
    pub sealed_on: Date,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reported {
    pub declared_remaining: Vec<ItemQty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_scrap: Option<Vec<ItemQty>>,
}

/// `closed` and `period_closed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closure {
    pub notice: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reversed {
    pub event: String,
    pub reason: String,
}

macro_rules! movements {
    ($( $variant:ident($body:ident) = $name:literal ),* $(,)?) => {
        /// One movement, by type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Movement { $( $variant($body) ),* }

        /// The movement types of interchange §1.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MovementKind { $( $variant ),* }

        impl MovementKind {
            pub const ALL: &'static [MovementKind] = &[ $( MovementKind::$variant ),* ];

            /// The `type` name of the interchange format.
            pub fn as_str(self) -> &'static str {
                match self { $( MovementKind::$variant => $name ),* }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $name => Some(MovementKind::$variant), )* _ => None }
            }
        }

        impl Movement {
            pub fn kind(&self) -> MovementKind {
                match self { $( Movement::$variant(_) => MovementKind::$variant ),* }
            }

            /// Serializes the movement's own fields (what [`Movement::fields`]
            /// holds), without making a JSON tree of them.
            pub fn serialize_fields<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Movement::$variant(body) => body.serialize(serializer) ),*
                }
            }

            /// The movement's own fields, as written in a movement file.
            pub fn fields(&self) -> Map<String, Value> {
                let value = match self {
                    $( Movement::$variant(body) => serde_json::to_value(body) ),*
                };
                match value {
                    Ok(Value::Object(map)) => map,
                    // Every body is a plain struct with string keys.
                    _ => unreachable!("a movement body always serializes to an object"),
                }
            }

            /// Reads the fields of a stored movement (a JSON object): as
            /// [`Movement::from_fields`], without copying them first when they
            /// read as they should.
            pub fn from_stored_fields(kind: MovementKind, value: &Value) -> Result<Self, Malformed> {
                let Value::Object(fields) = value else {
                    return Err(Malformed::whole("the movement is not a JSON object"));
                };
                check_limits(fields)?;
                let decoded = match kind {
                    $( MovementKind::$variant => $body::deserialize(value).map(Movement::$variant).ok() ),*
                };
                match decoded {
                    Some(movement) => Ok(movement),
                    // Decoded again to name the field at fault.
                    None => Movement::from_fields(kind, fields.clone()),
                }
            }

            /// Decodes the fields of a stored movement of `kind` from a JSON
            /// object read by `deserializer`, straight into its type, with no
            /// check of [`MAX_TEXT_CHARS`] or [`MAX_LIST_ENTRIES`]: for a
            /// caller that checked a text holding it ([`within_limits_by_length`]).
            pub(crate) fn deserialize_stored_fields<'de, D: serde::Deserializer<'de>>(
                kind: MovementKind,
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let object = ObjectOnly(deserializer);
                match kind {
                    $( MovementKind::$variant => $body::deserialize(object).map(Movement::$variant) ),*
                }
            }

            /// Reads the fields of a stored movement from their JSON text,
            /// straight into its type when the text is too short to hold
            /// anything past [`MAX_TEXT_CHARS`] or [`MAX_LIST_ENTRIES`] and
            /// reads as it should; else as [`Movement::from_stored_fields`].
            pub fn from_stored_text(kind: MovementKind, text: &str) -> Result<Self, Malformed> {
                if within_limits_by_length(text) {
                    let decoded = match kind {
                        $( MovementKind::$variant => serde_json::from_str::<$body>(text).map(Movement::$variant).ok() ),*
                    };
                    if let Some(movement) = decoded {
                        return Ok(movement);
                    }
                }
                let value: Value = serde_json::from_str(text)
                    .map_err(|error| Malformed::whole(format!("the movement is not JSON: {error}")))?;
                Movement::from_stored_fields(kind, &value)
            }

            /// Reads a movement's own fields (no `type`, `manual`, `date`, `id`).
            pub fn from_fields(kind: MovementKind, fields: Map<String, Value>) -> Result<Self, Malformed> {
                check_limits(&fields)?;
                let value = Value::Object(fields);
                match kind { $( MovementKind::$variant => decode::<$body>(value).map(Movement::$variant) ),* }
            }
        }
    };
}

movements! {
    ManualRegistered(ManualRegistered) = "manual_registered",
    ManualAmended(ManualAmended) = "manual_amended",
    UnitConsumptionDeclared(UnitConsumptionDeclared) = "unit_consumption_declared",
    MaterialImported(MaterialImported) = "material_imported",
    ProductExported(ProductOut) = "product_exported",
    ProductReturned(ProductReturned) = "product_returned",
    ProductReexported(ProductOut) = "product_reexported",
    CarryoverOut(CarryoverOut) = "carryover_out",
    CarryoverIn(CarryoverIn) = "carryover_in",
    RemnantOut(RemnantOut) = "remnant_out",
    RemnantIn(RemnantIn) = "remnant_in",
    Substituted(Substituted) = "substituted",
    OutwardShipped(OutwardShipped) = "outward_shipped",
    OutwardReturned(OutwardReturned) = "outward_returned",
    DomesticSale(DomesticSale) = "domestic_sale",
    MaterialsReturned(MaterialsReturned) = "materials_returned",
    MaterialsExchanged(MaterialsExchanged) = "materials_exchanged",
    Abandoned(MaterialWrittenOff) = "abandoned",
    Destroyed(Destroyed) = "destroyed",
    DisasterLoss(MaterialWrittenOff) = "disaster_loss",
    ScrapDisposed(ScrapDisposed) = "scrap_disposed",
    DefectiveDisposed(DefectiveDisposed) = "defective_disposed",
    WorkOrderCompleted(WorkOrderCompleted) = "work_order_completed",
    GoodsSealed(GoodsSealed) = "goods_sealed",
    Reported(Reported) = "reported",
    Closed(Closure) = "closed",
    PeriodClosed(Closure) = "period_closed",
    Reversed(Reversed) = "reversed",
}

impl fmt::Display for MovementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MovementKind {
    /// Whether a `reversed` may name an event of this kind (domain §4):
    /// registrations, declarations, reports, closures and reversals are not
    /// movements; they are superseded by declaring or reporting again.
    pub fn is_reversible(self) -> bool {
        !matches!(
            self,
            MovementKind::ManualRegistered
                | MovementKind::ManualAmended
                | MovementKind::UnitConsumptionDeclared
                | MovementKind::Reported
                | MovementKind::Closed
                | MovementKind::PeriodClosed
                | MovementKind::Reversed
        )
    }
}

/// A movement with the fields every line has: its manual, business date and
/// the caller's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub manual: ManualNo,
    pub date: NaiveDate,
    pub id: Option<String>,
    pub movement: Movement,
}

impl Envelope {
    /// The whole line as written in a movement file.
    pub fn to_line(&self) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("type".into(), Value::from(self.movement.kind().as_str()));
        line.insert("manual".into(), Value::from(self.manual.as_str()));
        line.insert(
            "date".into(),
            Value::from(self.date.format("%Y-%m-%d").to_string()),
        );
        if let Some(id) = &self.id {
            line.insert("id".into(), Value::from(id.as_str()));
        }
        line.extend(self.movement.fields());
        line
    }
}

/// Reads one line of a movement file, already parsed as JSON.
pub fn parse_line(value: Value) -> Result<Envelope, Malformed> {
    let Value::Object(mut fields) = value else {
        return Err(Malformed::whole("a line must be a JSON object"));
    };
    for (name, value) in &fields {
        refuse_control_characters(name, value)?;
    }
    let kind_name = match fields.remove("type") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(Malformed::at("type", "must be a string")),
        None => return Err(Malformed::at("type", "missing")),
    };
    let kind = MovementKind::from_name(&kind_name)
        .ok_or_else(|| Malformed::at("type", format!("unknown movement type {kind_name:?}")))?;
    let manual = match fields.remove("manual") {
        Some(Value::String(text)) => {
            ManualNo::try_from(text).map_err(|e| Malformed::at("manual", e))?
        }
        Some(_) => return Err(Malformed::at("manual", "must be a string")),
        None => return Err(Malformed::at("manual", "missing")),
    };
    let date = match fields.remove("date") {
        Some(Value::String(text)) => parse_date(&text).map_err(|e| Malformed::at("date", e))?,
        Some(_) => return Err(Malformed::at("date", "must be a string")),
        None => return Err(Malformed::at("date", "missing")),
    };
    let id = match fields.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if (1..=MAX_ID_CHARS).contains(&id.chars().count()) => Some(id),
        Some(Value::String(_)) => return Err(Malformed::at("id", "must be 1-64 characters")),
        Some(_) => return Err(Malformed::at("id", "must be a string")),
    };
    let movement = Movement::from_fields(kind, fields)?;
    check_semantics(&movement)?;
    Ok(Envelope {
        manual,
        date,
        id,
        movement,
    })
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Malformed> {
    // Tracking the path costs on every field; it is only needed to name the
    // field at fault, so it runs only once the plain decode has failed.
    if let Ok(decoded) = T::deserialize(&value) {
        return Ok(decoded);
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        // serde names an unknown or missing field in its message, at the
        // path of the object holding it.
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_owned());
        match (path.as_str(), named) {
            (".", Some(name)) => Malformed::at(name, message),
            (".", None) => Malformed::whole(message),
            (_, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
                Malformed::at(path, message)
            }
            (_, Some(name)) => Malformed::at(format!("{path}.{name}"), message),
            (_, None) => Malformed::at(path, message),
        }
    })
}

/// A deserializer that reads a struct only from a JSON object, as a JSON
/// tree's `Value::Object` would hold it (serde_json reads one from an array as
/// well).
struct ObjectOnly<D>(D);

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Whether the JSON text of a movement is an object that cannot break a
/// bound of [`check_limits`]: no string spans more than [`MAX_TEXT_CHARS`]
/// bytes of text (a character takes at least one), and there are fewer than
/// [`MAX_LIST_ENTRIES`] commas outside strings (a list of more entries needs
/// that many). Conservative: `false` sends the text the long way. What holds
/// of a text holds of any part of it, such as a payload's movement.
pub(crate) fn within_limits_by_length(text: &str) -> bool {
    if !text.starts_with('{') {
        return false;
    }
    // No string of a text this short can be longer, nor can it hold as many
    // entries (most movements are).
    if text.len() <= MAX_TEXT_CHARS {
        return true;
    }
    let mut commas = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut string_bytes = 0_usize;
    for &byte in text.as_bytes() {
        if !in_string {
            match byte {
                b'"' => {
                    in_string = true;
                    string_bytes = 0;
                }
                b',' => commas += 1,
                _ => {}
            }
        } else if escaped {
            escaped = false;
            string_bytes += 1;
        } else if byte == b'"' {
            in_string = false;
            if string_bytes > MAX_TEXT_CHARS {
                return false;
            }
        } else {
            escaped = byte == b'\\';
            string_bytes += 1;
        }
    }
    commas < MAX_LIST_ENTRIES
}

/// Bounds on what one movement may carry, checked before it is decoded.
fn check_limits(fields: &Map<String, Value>) -> Result<(), Malformed> {
    /// The path of the first value past a bound, from the innermost step out;
    /// built only when there is one.
    fn walk(value: &Value) -> Option<(Vec<String>, String)> {
        match value {
            Value::String(text) if text.chars().count() > MAX_TEXT_CHARS => Some((
                Vec::new(),
                format!("longer than {MAX_TEXT_CHARS} characters"),
            )),
            Value::Array(entries) if entries.len() > MAX_LIST_ENTRIES => {
                Some((Vec::new(), format!("more than {MAX_LIST_ENTRIES} entries")))
            }
            Value::Array(entries) => entries.iter().enumerate().find_map(|(i, v)| {
                walk(v).map(|(mut path, message)| {
                    path.push(format!("[{i}]"));
                    (path, message)
                })
            }),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                walk(v).map(|(mut path, message)| {
                    path.push(format!(".{k}"));
                    (path, message)
                })
            }),
            _ => None,
        }
    }
    match fields.iter().find_map(|(key, value)| {
        walk(value).map(|(mut path, message)| {
            path.push(key.clone());
            (path, message)
        })
    }) {
        None => Ok(()),
        Some((path, message)) => {
            let path: String = path.into_iter().rev().collect();
            Err(Malformed::at(path, message))
        }
    }
}

/// What the format itself requires beyond field types: item numbers not
/// repeated within one list, lists that move something.
fn check_semantics(movement: &Movement) -> Result<(), Malformed> {
    fn unique<'a>(field: &str, items: impl Iterator<Item = &'a ItemNo>) -> Result<(), Malformed> {
        let mut seen = std::collections::BTreeSet::new();
        for (index, item) in items.enumerate() {
            if !seen.insert(*item) {
                return Err(Malformed::at(
                    format!("{field}[{index}].item"),
                    format!("item {item} is listed twice"),
                ));
            }
        }
        Ok(())
    }
    fn something(
        field: &str,
        materials: &[ItemQty],
        products: &[ItemQty],
    ) -> Result<(), Malformed> {
        if materials.is_empty() && products.is_empty() {
            return Err(Malformed::at(
                field,
                "moves nothing: give materials or products",
            ));
        }
        unique("materials", materials.iter().map(|m| &m.item))?;
        unique("products", products.iter().map(|p| &p.item))
    }
    match movement {
        Movement::ManualRegistered(m) => {
            unique("materials", m.materials.iter().map(|x| &x.item))?;
            unique("products", m.products.iter().map(|x| &x.item))
        }
        Movement::ManualAmended(m) => {
            unique("add_materials", m.add_materials.iter().map(|x| &x.item))?;
            unique("add_products", m.add_products.iter().map(|x| &x.item))
        }
        Movement::UnitConsumptionDeclared(d) => {
            if d.lines.is_empty() {
                return Err(Malformed::at("lines", "declares no material"));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (index, line) in d.lines.iter().enumerate() {
                if !seen.insert(line.material) {
                    return Err(Malformed::at(
                        format!("lines[{index}].material"),
                        format!("material {} is listed twice", line.material),
                    ));
                }
            }
            Ok(())
        }
        Movement::OutwardShipped(o) => something("materials", &o.materials, &o.products),
        Movement::OutwardReturned(o) => something("materials", &o.materials, &o.products),
        Movement::DomesticSale(s) => something("materials", &s.materials, &s.products),
        Movement::WorkOrderCompleted(w) => unique("issued", w.issued.iter().map(|x| &x.item)),
        Movement::Reported(r) => {
            unique(
                "declared_remaining",
                r.declared_remaining.iter().map(|x| &x.item),
            )?;
            unique(
                "declared_scrap",
                r.declared_scrap.iter().flatten().map(|x| &x.item),
            )
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_movement_reads_alike_from_text_and_from_a_json_tree() {
        let long = "长".repeat(MAX_TEXT_CHARS);
        let longer = "长".repeat(MAX_TEXT_CHARS + 1);
        let many: Vec<Value> = (0..=MAX_LIST_ENTRIES)
            .map(|_| json!({"item":1,"qty":"1"}))
            .collect();
        let cases = [
            json!({"material":1,"qty":"24000","declaration":"220120261000010001","mode":"0615"}),
            // Within the bound, though longer than it in bytes: the long way.
            json!({"material":1,"qty":"1","declaration":"220120261000010001","mode":"0615","unit":long}),
            json!({"material":1,"qty":"1","declaration":"220120261000010001","mode":"0615","unit":longer}),
            json!({"material":1,"qty":"1","declaration":"220120261000010001","mode":"0615","unit":"a\"b,\\"}),
            json!({"material":1,"qty":24000,"declaration":"220120261000010001","mode":"0615"}),
            json!({"material":1,"qty":"1","declaration":"220120261000010001","mode":"0615","qyt":"1"}),
            json!([1, "24000", "220120261000010001", "0615"]),
            json!(null),
        ];
        for fields in &cases {
            let text = fields.to_string();
            let from_text = Movement::from_stored_text(MovementKind::MaterialImported, &text)
                .map_err(|e| e.to_string());
            let from_tree = Movement::from_stored_fields(MovementKind::MaterialImported, fields)
                .map_err(|e| e.to_string());
            assert_eq!(from_text, from_tree, "{text}");
        }
        assert!(
            Movement::from_stored_text(MovementKind::MaterialImported, &cases[1].to_string())
                .is_ok()
        );
        let refused =
            Movement::from_stored_text(MovementKind::MaterialImported, &cases[2].to_string())
                .expect_err("past the bound");
        assert_eq!(refused.field.as_deref(), Some("unit"));
        let listed = json!({"contractor":"3202990031","materials":many}).to_string();
        let refused = Movement::from_stored_text(MovementKind::OutwardShipped, &listed)
            .expect_err("too many entries");
        assert_eq!(refused.field.as_deref(), Some("materials"));
        assert!(!within_limits_by_length(&listed));
        assert!(within_limits_by_length(&cases[3].to_string()));
    }

    #[test]
    fn reads_a_line_and_writes_it_back() {
        let line = json!({"id":"pb-005","type":"material_imported","manual":"C22012600001","date":"2026-01-22",
            "material":1,"qty":"24000","declaration":"220120261000010001","mode":"0615","value":"31680","currency":"USD"});
        let envelope = parse_line(line.clone()).expect("valid line");
        assert_eq!(envelope.movement.kind(), MovementKind::MaterialImported);
        assert_eq!(Value::Object(envelope.to_line()), line);
    }

    #[test]
    fn refuses_control_characters_in_any_text_and_names_where() {
        let registration = |name: &str| {
            json!({"type":"manual_registered","manual":"C22012600001","date":"2026-01-02","trade_mode":"purchased",
                "enterprise":"2201960001","valid_until":"2026-12-31","materials":[{"item":1,"hs":"3901100000",
                "name":name,"spec":"-","unit":"千克","qty":"1"}],"products":[]})
        };
        assert!(parse_line(registration("低密度聚乙烯 LDPE\u{3000}(粒)")).is_ok());
        for control in ['\u{0}', '\u{7}', '\t', '\n', '\u{1b}', '\u{7f}', '\u{85}'] {
            let refused = parse_line(registration(&format!("聚乙烯{control}")))
                .expect_err("a control character is refused");
            assert_eq!(
                refused.field.as_deref(),
                Some("materials[0].name"),
                "{control:?}"
            );
            assert!(refused.message.contains("control character"), "{refused}");
        }
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases = [
            (
                json!({"type":"material_imported","manual":"C1","date":"2026-01-22","material":1,"qty":24000,"declaration":"220120261000010001","mode":"0615"}),
                "qty",
            ),
            (
                json!({"type":"material_imported","manual":"C1","date":"2026-01-22","material":"1","qty":"1","declaration":"220120261000010001","mode":"0615"}),
                "material",
            ),
            (
                json!({"type":"material_imported","manual":"C1","date":"2026-01-22","material":1,"qty":"1","declaration":"220120261000010001","mode":"0615","qyt":"1"}),
                ".",
            ),
            (
                json!({"type":"outward_shipped","manual":"C1","date":"2026-01-22","contractor":"3202990031","materials":[{"item":1,"qty":"NaN"}]}),
                "materials[0].qty",
            ),
            (
                json!({"type":"material_imported","manual":"c1","date":"2026-01-22"}),
                "manual",
            ),
            (
                json!({"type":"material_imported","manual":"C1","date":"2026-1-22"}),
                "date",
            ),
            (
                json!({"type":"teleported","manual":"C1","date":"2026-01-22"}),
                "type",
            ),
        ];
        for (line, field) in cases {
            let error = parse_line(line.clone()).expect_err("malformed");
            let text = error.to_string();
            let expected = if field == "." { "qyt" } else { field };
            assert_eq!(error.field.as_deref(), Some(expected), "{line}: {text}");
        }
    }

    #[test]
    fn every_kind_has_a_unique_name() {
        let mut names: Vec<_> = MovementKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MovementKind::ALL.len());
        for kind in MovementKind::ALL {
            assert_eq!(MovementKind::from_name(kind.as_str()), Some(*kind));
        }
    }
}
