//! The lines of a movement file (interchange §1), as written. Only the
//! fields the format defines are ever written: any other is malformed.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

/// A quantity, rate or amount: a decimal string, trailing zeros dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qty(pub Decimal);

impl Serialize for Qty {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.normalize())
    }
}

/// One line: the common fields, then the movement's own.
#[derive(Serialize)]
pub struct Line {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub manual: String,
    pub date: NaiveDate,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Body {
    ManualRegistered(ManualRegistered),
    ManualAmended(ManualAmended),
    UnitConsumptionDeclared(UnitConsumptionDeclared),
    MaterialImported(MaterialImported),
    ProductMoved(ProductMoved),
    CarryoverOut(CarryoverOut),
    CarryoverIn(CarryoverIn),
    RemnantOut(RemnantOut),
    RemnantIn(RemnantIn),
    Substituted(Substituted),
    Outward(Outward),
    DomesticSale(DomesticSale),
    MaterialsReturned(MaterialsReturned),
    MaterialsExchanged(MaterialsExchanged),
    WrittenOff(WrittenOff),
    ScrapDisposed(ScrapDisposed),
    DefectiveDisposed(DefectiveDisposed),
    WorkOrderCompleted(WorkOrderCompleted),
    GoodsSealed(GoodsSealed),
    Reported(Reported),
    Reversed(Reversed),
}

#[derive(Serialize)]
pub struct ItemQty {
    pub item: u32,
    pub qty: Qty,
}

#[derive(Serialize)]
pub struct MaterialSpec {
    pub item: u32,
    pub hs: String,
    pub name: String,
    pub spec: String,
    pub unit: String,
    pub qty: Qty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Qty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Serialize)]
pub struct ProductSpec {
    pub item: u32,
    pub hs: String,
    pub name: String,
    pub spec: String,
    pub unit: String,
    pub qty: Qty,
}

#[derive(Serialize)]
pub struct ManualRegistered {
    pub trade_mode: &'static str,
    pub enterprise: String,
    pub processing_enterprise: String,
    pub customs: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub zone: bool,
    pub valid_until: NaiveDate,
    pub materials: Vec<MaterialSpec>,
    pub products: Vec<ProductSpec>,
}

#[derive(Serialize)]
pub struct SetQuantity {
    pub kind: &'static str,
    pub item: u32,
    pub qty: Qty,
}

#[derive(Serialize)]
pub struct ManualAmended {
    pub set_quantities: Vec<SetQuantity>,
}

#[derive(Serialize)]
pub struct ConsumptionLine {
    pub material: u32,
    pub net: Qty,
    pub loss_rate: Qty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tangible_loss_rate: Option<Qty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bonded_share: Option<Qty>,
}

#[derive(Serialize)]
pub struct UnitConsumptionDeclared {
    pub product: u32,
    pub version: String,
    pub lines: Vec<ConsumptionLine>,
}

#[derive(Serialize)]
pub struct MaterialImported {
    pub material: u32,
    pub qty: Qty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub declaration: String,
    pub mode: &'static str,
    pub value: Qty,
    pub currency: String,
}

/// `product_exported`, `product_returned` and `product_reexported`.
#[derive(Serialize)]
pub struct ProductMoved {
    pub product: u32,
    pub qty: Qty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub declaration: String,
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uc_version: Option<String>,
}

#[derive(Serialize)]
pub struct CarryoverOut {
    pub product: u32,
    pub qty: Qty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub declaration: String,
    pub mode: &'static str,
    pub counterparty_manual: String,
    pub counterparty_enterprise: String,
    pub hs: String,
    pub shipped_on: NaiveDate,
    pub plan: String,
    pub batch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uc_version: Option<String>,
}

#[derive(Serialize)]
pub struct CarryoverIn {
    pub material: u32,
    pub qty: Qty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub declaration: String,
    pub mode: &'static str,
    pub counterparty_manual: String,
    pub counterparty_enterprise: String,
    pub received_on: NaiveDate,
    pub plan: String,
    pub batch: String,
}

#[derive(Serialize)]
pub struct RemnantOut {
    pub material: u32,
    pub qty: Qty,
    pub to_manual: String,
    pub approval: String,
    pub declaration: String,
    pub mode: &'static str,
}

#[derive(Serialize)]
pub struct RemnantIn {
    pub material: u32,
    pub qty: Qty,
    pub from_manual: String,
    pub approval: String,
    pub declaration: String,
    pub mode: &'static str,
}

#[derive(Serialize)]
pub struct Counterpart {
    pub bonded: bool,
    pub enterprise: String,
    pub hs: String,
    pub spec: String,
    pub qty: Qty,
}

#[derive(Serialize)]
pub struct Substituted {
    pub material: u32,
    pub qty: Qty,
    pub approval: String,
    pub counterpart: Counterpart,
}

/// `outward_shipped` (with its approval) and `outward_returned`.
#[derive(Serialize)]
pub struct Outward {
    pub contractor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<ItemQty>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ItemQty>,
}

#[derive(Serialize)]
pub struct DomesticSale {
    pub approval: String,
    pub declaration: String,
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<ItemQty>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ItemQty>,
    pub duty: Qty,
    pub vat: Qty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interest_rate: Option<Qty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interest: Option<Qty>,
}

#[derive(Serialize)]
pub struct MaterialsReturned {
    pub material: u32,
    pub qty: Qty,
    pub declaration: String,
    pub mode: &'static str,
}

#[derive(Serialize)]
pub struct MaterialsExchanged {
    pub material: u32,
    pub qty_out: Qty,
    pub qty_in: Qty,
    pub declaration: String,
    pub mode: &'static str,
}

/// `abandoned`, `destroyed` (which may carry its mode) and `disaster_loss`.
#[derive(Serialize)]
pub struct WrittenOff {
    pub material: u32,
    pub qty: Qty,
    pub approval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
}

#[derive(Serialize)]
pub struct ScrapDisposed {
    pub material: u32,
    pub qty: Qty,
    pub disposal: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declaration: Option<String>,
    pub mode: &'static str,
}

#[derive(Serialize)]
pub struct DefectiveDisposed {
    pub product: u32,
    pub qty: Qty,
    pub disposal: &'static str,
}

#[derive(Serialize)]
pub struct WorkOrderCompleted {
    pub order: String,
    pub product: u32,
    pub qty: Qty,
    pub issued: Vec<ItemQty>,
}

#[derive(Serialize)]
pub struct GoodsSealed {
    pub authority: &'static str,
    pub sealed_on: NaiveDate,
}

#[derive(Serialize)]
pub struct Reported {
    pub declared_remaining: Vec<ItemQty>,
}

#[derive(Serialize)]
pub struct Reversed {
    pub event: String,
    pub reason: &'static str,
}
