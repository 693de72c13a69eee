//! A manual's state, evolved one recorded movement at a time, and the
//! balance arithmetic of domain §3.
//!
//! Memory grows with the number of items, products and declared versions,
//! never with the number of events: figures are kept as running totals per
//! column, and products are kept as quantities per (product, named version)
//! so that a later unit-consumption declaration converts them afresh.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::event::{AttachedFinding, RecordedMovement};
use crate::movement::{
    Book, Disposal, EnterpriseCode, Envelope, HsCode, ItemNo, ManualNo, ManualRegistered,
    MaterialSpec, Movement, MovementKind, ProductSpec, TradeMode,
};
use crate::rules::RuleId;

/// Representation error tolerated when a balance is compared with zero:
/// divisions are carried to 28 significant digits, so a balance that is
/// exactly zero on paper may come out a few units of 10⁻²⁰ either side.
pub const EXACTNESS_SLACK: Decimal = Decimal::from_parts(1, 0, 0, false, 18);

/// A material item (料件) as registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaterialItem {
    pub item: ItemNo,
    pub hs: HsCode,
    pub name: String,
    pub spec: String,
    pub unit: String,
    pub registered_qty: Decimal,
}

/// A product item (成品) as registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductItem {
    pub item: ItemNo,
    pub hs: HsCode,
    pub name: String,
    pub spec: String,
    pub unit: String,
    pub registered_qty: Decimal,
}

impl From<&MaterialSpec> for MaterialItem {
    fn from(m: &MaterialSpec) -> Self {
        MaterialItem {
            item: m.item,
            hs: m.hs.clone(),
            name: m.name.clone(),
            spec: m.spec.clone(),
            unit: m.unit.clone(),
            registered_qty: m.qty.value(),
        }
    }
}

impl From<&ProductSpec> for ProductItem {
    fn from(p: &ProductSpec) -> Self {
        ProductItem {
            item: p.item,
            hs: p.hs.clone(),
            name: p.name.clone(),
            spec: p.spec.clone(),
            unit: p.unit.clone(),
            registered_qty: p.qty.value(),
        }
    }
}

/// What customs registered (备案) for a manual, as amended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub manual: ManualNo,
    pub registered_on: NaiveDate,
    pub trade_mode: TradeMode,
    pub enterprise: EnterpriseCode,
    pub processing_enterprise: EnterpriseCode,
    pub customs: Option<String>,
    pub book: Book,
    pub zone: bool,
    pub valid_until: NaiveDate,
    pub materials: BTreeMap<ItemNo, MaterialItem>,
    pub products: BTreeMap<ItemNo, ProductItem>,
}

impl Registration {
    fn new(manual: &ManualNo, date: NaiveDate, r: &ManualRegistered) -> Self {
        Registration {
            manual: manual.clone(),
            registered_on: date,
            trade_mode: r.trade_mode,
            enterprise: r.enterprise.clone(),
            processing_enterprise: r
                .processing_enterprise
                .clone()
                .unwrap_or_else(|| r.enterprise.clone()),
            customs: r.customs.clone(),
            book: r.book.unwrap_or_default(),
            zone: r.zone.unwrap_or(false),
            valid_until: r.valid_until.0,
            materials: r
                .materials
                .iter()
                .map(|m| (m.item, MaterialItem::from(m)))
                .collect(),
            products: r
                .products
                .iter()
                .map(|p| (p.item, ProductItem::from(p)))
                .collect(),
        }
    }
}

/// One material line of a unit-consumption declaration (单耗), with what one
/// product uses worked out once, as it is declared: deciding a taking sums it
/// over every product made, and a division each time cost more than the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DeclaredLine")]
pub struct BomLine {
    net: Decimal,
    loss_rate: Decimal,
    tangible_loss_rate: Decimal,
    bonded_share: Decimal,
    /// net ÷ (1 − loss rate), when it can be worked out.
    #[serde(skip)]
    unit: Option<Decimal>,
    /// `unit` × bonded share.
    #[serde(skip)]
    bonded: Option<Decimal>,
}

/// A [`BomLine`] as kept in a snapshot: what was declared.
#[derive(Deserialize)]
struct DeclaredLine {
    net: Decimal,
    loss_rate: Decimal,
    tangible_loss_rate: Decimal,
    bonded_share: Decimal,
}

impl From<DeclaredLine> for BomLine {
    fn from(line: DeclaredLine) -> Self {
        BomLine::new(
            line.net,
            line.loss_rate,
            line.tangible_loss_rate,
            line.bonded_share,
        )
    }
}

impl BomLine {
    pub fn new(
        net: Decimal,
        loss_rate: Decimal,
        tangible_loss_rate: Decimal,
        bonded_share: Decimal,
    ) -> Self {
        let kept = Decimal::ONE - loss_rate;
        let unit = (kept > Decimal::ZERO)
            .then(|| net.checked_div(kept))
            .flatten();
        BomLine {
            net,
            loss_rate,
            tangible_loss_rate,
            bonded_share,
            unit,
            bonded: unit.and_then(|uc| uc.checked_mul(bonded_share)),
        }
    }

    pub fn net(&self) -> Decimal {
        self.net
    }

    pub fn loss_rate(&self) -> Decimal {
        self.loss_rate
    }

    pub fn bonded_share(&self) -> Decimal {
        self.bonded_share
    }

    /// net ÷ (1 − loss rate): what one product uses, bonded or not.
    /// None where the declaration cannot be converted (a loss rate of 1 or
    /// more, kept only because history was recorded).
    pub fn unit_consumption(&self) -> Option<Decimal> {
        self.unit
    }

    /// What one product takes from the bonded balance.
    pub fn bonded_consumption(&self) -> Option<Decimal> {
        self.bonded
    }

    /// The scrap one product may leave: the tangible part of the loss.
    pub fn scrap_allowance(&self) -> Option<Decimal> {
        self.bonded
            .and_then(|c| c.checked_mul(self.tangible_loss_rate))
    }
}

/// A product's bill of materials in one version.
pub type Bom = BTreeMap<ItemNo, BomLine>;

/// Every declared version of every product, and which was declared last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitConsumptions {
    versions: BTreeMap<ItemNo, BTreeMap<String, Bom>>,
    latest: BTreeMap<ItemNo, String>,
}

impl UnitConsumptions {
    /// The version a movement names, or else the product's latest.
    pub fn resolve(&self, product: ItemNo, version: Option<&str>) -> Option<&Bom> {
        let version = match version {
            Some(v) => v,
            None => self.latest.get(&product)?.as_str(),
        };
        self.versions.get(&product)?.get(version)
    }

    pub fn latest(&self, product: ItemNo) -> Option<&Bom> {
        self.resolve(product, None)
    }

    pub fn latest_version(&self, product: ItemNo) -> Option<&str> {
        self.latest.get(&product).map(String::as_str)
    }

    fn declare(&mut self, product: ItemNo, version: String, bom: Bom) {
        self.versions
            .entry(product)
            .or_default()
            .insert(version.clone(), bom);
        self.latest.insert(product, version);
    }
}

/// The balance columns of domain §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Imported,
    CarriedIn,
    RemnantIn,
    ExchangedIn,
    MaterialsSoldDomestic,
    Returned,
    ExchangedOut,
    RemnantOut,
    Abandoned,
    Destroyed,
    DisasterLoss,
    ScrapDisposed,
}

/// How a column counts in `expected_remaining`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    /// Recorded, but never changes the balance (scrap).
    Neither,
}

/// Each column's direction (domain §3, `in` and `out`).
pub const COLUMN_DIRECTIONS: &[(Column, Direction)] = &[
    (Column::Imported, Direction::In),
    (Column::CarriedIn, Direction::In),
    (Column::RemnantIn, Direction::In),
    (Column::ExchangedIn, Direction::In),
    (Column::MaterialsSoldDomestic, Direction::Out),
    (Column::Returned, Direction::Out),
    (Column::ExchangedOut, Direction::Out),
    (Column::RemnantOut, Direction::Out),
    (Column::Abandoned, Direction::Out),
    (Column::Destroyed, Direction::Out),
    (Column::DisasterLoss, Direction::Out),
    (Column::ScrapDisposed, Direction::Neither),
];

impl Column {
    pub fn direction(self) -> Direction {
        COLUMN_DIRECTIONS
            .iter()
            .find(|(c, _)| *c == self)
            .map_or(Direction::Neither, |(_, d)| *d)
    }
}

/// Which column a movement's one material quantity (`material`, `qty`) fills.
pub const MATERIAL_COLUMNS: &[(MovementKind, Column)] = &[
    (MovementKind::MaterialImported, Column::Imported),
    (MovementKind::CarryoverIn, Column::CarriedIn),
    (MovementKind::RemnantIn, Column::RemnantIn),
    (MovementKind::RemnantOut, Column::RemnantOut),
    (MovementKind::MaterialsReturned, Column::Returned),
    (MovementKind::Abandoned, Column::Abandoned),
    (MovementKind::Destroyed, Column::Destroyed),
    (MovementKind::DisasterLoss, Column::DisasterLoss),
    (MovementKind::ScrapDisposed, Column::ScrapDisposed),
];

/// The sign with which a movement's products count in Q_j (`consumed`).
pub const PRODUCT_SIGNS: &[(MovementKind, i32)] = &[
    (MovementKind::ProductExported, 1),
    (MovementKind::CarryoverOut, 1),
    (MovementKind::ProductReexported, 1),
    (MovementKind::DefectiveDisposed, 1),
    (MovementKind::DomesticSale, 1),
    (MovementKind::ProductReturned, -1),
];

/// The sign with which an outward-processing movement counts at contractors.
pub const OUTWARD_SIGNS: &[(MovementKind, i32)] = &[
    (MovementKind::OutwardShipped, 1),
    (MovementKind::OutwardReturned, -1),
];

fn lookup<T: Copy>(table: &[(MovementKind, T)], kind: MovementKind) -> Option<T> {
    table.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
}

/// One change a movement makes to the figures; a reversal makes the same
/// changes negated.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Material {
        column: Column,
        item: ItemNo,
        qty: Decimal,
    },
    /// Products that count in Q_j, with the version the movement names.
    Products {
        item: ItemNo,
        version: Option<String>,
        qty: Decimal,
    },
    AtContractorMaterial {
        item: ItemNo,
        qty: Decimal,
    },
    AtContractorProduct {
        item: ItemNo,
        qty: Decimal,
    },
    WorkOrder {
        product: ItemNo,
        completed: Decimal,
        issued: Vec<(ItemNo, Decimal)>,
    },
}

impl Effect {
    /// The same change taken back, as a reversal makes it.
    pub fn negated(&self) -> Effect {
        match self {
            Effect::Material { column, item, qty } => Effect::Material {
                column: *column,
                item: *item,
                qty: -*qty,
            },
            Effect::Products { item, version, qty } => Effect::Products {
                item: *item,
                version: version.clone(),
                qty: -*qty,
            },
            Effect::AtContractorMaterial { item, qty } => Effect::AtContractorMaterial {
                item: *item,
                qty: -*qty,
            },
            Effect::AtContractorProduct { item, qty } => Effect::AtContractorProduct {
                item: *item,
                qty: -*qty,
            },
            Effect::WorkOrder {
                product,
                completed,
                issued,
            } => Effect::WorkOrder {
                product: *product,
                completed: -*completed,
                issued: issued.iter().map(|(i, q)| (*i, -*q)).collect(),
            },
        }
    }
}

/// The effects of one movement on the figures (domain §3, "which movement
/// fills which column").
pub fn effects(movement: &Movement) -> Vec<Effect> {
    let kind = movement.kind();
    let mut out = Vec::new();
    if let (Some(column), Some((item, qty))) =
        (lookup(MATERIAL_COLUMNS, kind), single_material(movement))
    {
        out.push(Effect::Material { column, item, qty });
    }
    if let Some(sign) = lookup(PRODUCT_SIGNS, kind) {
        let sign = Decimal::from(sign);
        for (item, qty, version) in moved_products(movement) {
            out.push(Effect::Products {
                item,
                version,
                qty: qty * sign,
            });
        }
    }
    if let Some(sign) = lookup(OUTWARD_SIGNS, kind) {
        let sign = Decimal::from(sign);
        let (materials, products) = match movement {
            Movement::OutwardShipped(o) => (&o.materials, &o.products),
            Movement::OutwardReturned(o) => (&o.materials, &o.products),
            _ => unreachable!("only outward movements have outward signs"),
        };
        out.extend(materials.iter().map(|m| Effect::AtContractorMaterial {
            item: m.item,
            qty: m.qty.value() * sign,
        }));
        out.extend(products.iter().map(|p| Effect::AtContractorProduct {
            item: p.item,
            qty: p.qty.value() * sign,
        }));
    }
    match movement {
        Movement::DomesticSale(sale) => {
            out.extend(sale.materials.iter().map(|m| Effect::Material {
                column: Column::MaterialsSoldDomestic,
                item: m.item,
                qty: m.qty.value(),
            }))
        }
        Movement::MaterialsExchanged(x) => {
            out.push(Effect::Material {
                column: Column::ExchangedOut,
                item: x.material,
                qty: x.qty_out.value(),
            });
            out.push(Effect::Material {
                column: Column::ExchangedIn,
                item: x.material,
                qty: x.qty_in.value(),
            });
        }
        Movement::WorkOrderCompleted(w) => out.push(Effect::WorkOrder {
            product: w.product,
            completed: w.qty.value(),
            issued: w.issued.iter().map(|i| (i.item, i.qty.value())).collect(),
        }),
        _ => {}
    }
    out
}

/// The material a single-material movement moves, with its quantity.
pub fn single_material(movement: &Movement) -> Option<(ItemNo, Decimal)> {
    Some(match movement {
        Movement::MaterialImported(m) => (m.material, m.qty.value()),
        Movement::CarryoverIn(m) => (m.material, m.qty.value()),
        Movement::RemnantOut(m) => (m.material, m.qty.value()),
        Movement::RemnantIn(m) => (m.material, m.qty.value()),
        Movement::Substituted(m) => (m.material, m.qty.value()),
        Movement::MaterialsReturned(m) => (m.material, m.qty.value()),
        Movement::MaterialsExchanged(m) => (m.material, m.qty_out.value()),
        Movement::Abandoned(m) | Movement::DisasterLoss(m) => (m.material, m.qty.value()),
        Movement::Destroyed(m) => (m.material, m.qty.value()),
        Movement::ScrapDisposed(m) => (m.material, m.qty.value()),
        _ => return None,
    })
}

/// The products a movement moves: (item, quantity, the version it names).
pub fn moved_products(movement: &Movement) -> Vec<(ItemNo, Decimal, Option<String>)> {
    match movement {
        Movement::ProductExported(p) | Movement::ProductReexported(p) => {
            vec![(p.product, p.qty.value(), p.uc_version.clone())]
        }
        Movement::ProductReturned(p) => vec![(p.product, p.qty.value(), None)],
        Movement::CarryoverOut(p) => vec![(p.product, p.qty.value(), p.uc_version.clone())],
        Movement::DefectiveDisposed(p) => vec![(p.product, p.qty.value(), None)],
        Movement::DomesticSale(s) => s
            .products
            .iter()
            .map(|p| (p.item, p.qty.value(), None))
            .collect(),
        Movement::OutwardShipped(o) => o
            .products
            .iter()
            .map(|p| (p.item, p.qty.value(), None))
            .collect(),
        Movement::OutwardReturned(o) => o
            .products
            .iter()
            .map(|p| (p.item, p.qty.value(), None))
            .collect(),
        _ => Vec::new(),
    }
}

/// Running totals of one material in the open period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnTotals(BTreeMap<Column, Decimal>);

impl ColumnTotals {
    pub fn get(&self, column: Column) -> Decimal {
        self.0.get(&column).copied().unwrap_or_default()
    }
    fn add(&mut self, column: Column, qty: Decimal) {
        let total = self.0.entry(column).or_default();
        *total = total.saturating_add(qty);
    }
}

/// Per product and material, over work orders: Σ completed and Σ issued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkOrderTotals {
    pub completed: Decimal,
    pub issued: Decimal,
}

/// What the open period has seen (the whole history, for a manual).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodTotals {
    pub columns: BTreeMap<ItemNo, ColumnTotals>,
    /// Q_j per (product, the version the movements named).
    #[serde(with = "pairs")]
    pub products: BTreeMap<(ItemNo, Option<String>), Decimal>,
    #[serde(with = "pairs")]
    pub work_orders: BTreeMap<(ItemNo, ItemNo), WorkOrderTotals>,
}

/// A finding about one movement, kept while the movement stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFinding {
    pub rule: RuleId,
    /// The movement's id (its caller id, or the store's event id).
    pub event: String,
    pub message: String,
}

/// A carry-over kept for matching with the other side (domain §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarryoverRecord {
    pub event: String,
    pub outgoing: bool,
    /// The item this side moves: the product sent or the material received.
    pub item: ItemNo,
    pub qty: Decimal,
    pub counterparty_manual: ManualNo,
    pub batch: Option<String>,
    /// The out side's declared HS code (what the receiver declares).
    pub hs: Option<HsCode>,
    pub date: NaiveDate,
    /// Shipped on (out) or received on (in).
    pub moved_on: NaiveDate,
}

/// The records a snapshot keeps apart from its state, each as its JSON, in
/// order (see [`ManualState::to_snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordsApart {
    pub sales: Vec<String>,
    pub carryovers: Vec<String>,
}

fn read_records<T: serde::de::DeserializeOwned>(records: &[String]) -> serde_json::Result<Vec<T>> {
    records
        .iter()
        .map(|record| serde_json::from_str(record))
        .collect()
}

/// A domestic sale whose stated interest is to be checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaleRecord {
    pub event: String,
    pub date: NaiveDate,
    pub duty_and_vat: Decimal,
    pub interest_rate_annual: Decimal,
    pub interest: Decimal,
}

/// The last report (报核) of the open period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRecord {
    pub event: String,
    pub date: NaiveDate,
    pub declared_remaining: BTreeMap<ItemNo, Decimal>,
}

/// Everything known of one manual after some prefix of its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualState {
    pub registration: Registration,
    /// The number of events of the stream applied (its version).
    pub version: i64,
    pub unit_consumptions: UnitConsumptions,
    pub period: PeriodTotals,
    /// Opening balances of the open period (account books).
    pub opening: BTreeMap<ItemNo, Decimal>,
    pub at_contractor_materials: BTreeMap<ItemNo, Decimal>,
    pub at_contractor_products: BTreeMap<ItemNo, Decimal>,
    /// Cumulative `material_imported` and `product_exported`, whole history.
    pub imported_total: BTreeMap<ItemNo, Decimal>,
    pub exported_total: BTreeMap<ItemNo, Decimal>,
    /// Enterprises that received goods of this manual as contractors.
    pub contractors: BTreeSet<EnterpriseCode>,
    /// Ids of movements reversed so far.
    pub reversed: BTreeSet<String>,
    pub closed: bool,
    pub report: Option<ReportRecord>,
    /// The last report before any period close, for the next opening.
    pub last_declared: Option<BTreeMap<ItemNo, Decimal>>,
    /// Dates of exports still standing, counted, for the report deadline.
    pub export_dates: BTreeMap<NaiveDate, u32>,
    /// Dates of imports still standing, counted: the first one starts the
    /// deferred-duty interest of a domestic sale.
    pub import_dates: BTreeMap<NaiveDate, u32>,
    pub period_closes: Vec<NaiveDate>,
    pub findings: Vec<EventFinding>,
    /// Movements whose products may have no unit consumption, by product
    /// and named version; emptied once that version can be resolved.
    #[serde(with = "pairs")]
    pub unconverted: BTreeMap<(ItemNo, Option<String>), Vec<String>>,
    pub carryovers: Vec<CarryoverRecord>,
    pub sales: Vec<SaleRecord>,
}

/// The figures of one material (domain §3), exact.
#[derive(Debug, Clone, PartialEq)]
pub struct MaterialFigures {
    pub item: ItemNo,
    pub opening: Decimal,
    pub imported: Decimal,
    pub carried_in: Decimal,
    pub remnant_in: Decimal,
    pub exchanged_in: Decimal,
    pub consumed: Decimal,
    pub materials_sold_domestic: Decimal,
    pub returned: Decimal,
    pub exchanged_out: Decimal,
    pub remnant_out: Decimal,
    pub abandoned: Decimal,
    pub destroyed: Decimal,
    pub disaster_loss: Decimal,
    pub scrap_allowance: Decimal,
    pub scrap_disposed: Decimal,
    pub at_contractors: Decimal,
    pub expected_remaining: Decimal,
}

impl ManualState {
    /// A manual as its registration creates it.
    pub fn registered(envelope: &Envelope, registration: &ManualRegistered) -> Self {
        ManualState {
            registration: Registration::new(&envelope.manual, envelope.date, registration),
            version: 1,
            unit_consumptions: UnitConsumptions::default(),
            period: PeriodTotals::default(),
            opening: BTreeMap::new(),
            at_contractor_materials: BTreeMap::new(),
            at_contractor_products: BTreeMap::new(),
            imported_total: BTreeMap::new(),
            exported_total: BTreeMap::new(),
            contractors: BTreeSet::new(),
            reversed: BTreeSet::new(),
            closed: false,
            report: None,
            last_declared: None,
            export_dates: BTreeMap::new(),
            import_dates: BTreeMap::new(),
            period_closes: Vec::new(),
            findings: Vec::new(),
            unconverted: BTreeMap::new(),
            carryovers: Vec::new(),
            sales: Vec::new(),
        }
    }

    /// The state's JSON as a snapshot keeps it: without its per-sale and
    /// carry-over records, which grow with the manual's events and are kept
    /// apart, each once (see [`ManualState::from_snapshot`]). Takes `&mut`
    /// only to lift them out while the rest is written; they are put back.
    pub fn to_snapshot(&mut self) -> serde_json::Result<String> {
        let sales = std::mem::take(&mut self.sales);
        let carryovers = std::mem::take(&mut self.carryovers);
        let state = serde_json::to_string(self);
        self.sales = sales;
        self.carryovers = carryovers;
        state
    }

    /// A state from a snapshot's JSON and its records kept apart (each a
    /// [`SaleRecord`]'s or a [`CarryoverRecord`]'s JSON, in order). A
    /// snapshot written before a kind of record was kept apart holds those
    /// in its state and has none of them apart; without `apart` the state
    /// has neither (enough for balances, not for verification or the
    /// read models).
    pub fn from_snapshot(
        state: &str,
        apart: Option<&RecordsApart>,
    ) -> serde_json::Result<ManualState> {
        let mut restored: ManualState = serde_json::from_str(state)?;
        if let Some(apart) = apart {
            if !apart.sales.is_empty() {
                restored.sales = read_records(&apart.sales)?;
            }
            if !apart.carryovers.is_empty() {
                restored.carryovers = read_records(&apart.carryovers)?;
            }
        }
        Ok(restored)
    }

    pub fn is_account_book(&self) -> bool {
        self.registration.book == Book::AccountBook
    }

    /// Q_j × factor per material, for products counted under `version`.
    fn convert(
        &self,
        product: ItemNo,
        version: Option<&str>,
        qty: Decimal,
        factor: fn(&BomLine) -> Option<Decimal>,
        into: &mut BTreeMap<ItemNo, Decimal>,
    ) {
        let Some(bom) = self.unit_consumptions.resolve(product, version) else {
            return;
        };
        for (material, line) in bom {
            if let Some(per_product) = factor(line) {
                let total = into.entry(*material).or_default();
                *total = total.saturating_add(qty.saturating_mul(per_product));
            }
        }
    }

    /// Every material's figures for the open period.
    pub fn figures(&self) -> BTreeMap<ItemNo, MaterialFigures> {
        let mut consumed = BTreeMap::new();
        let mut allowance = BTreeMap::new();
        for ((product, version), qty) in &self.period.products {
            self.convert(
                *product,
                version.as_deref(),
                *qty,
                BomLine::bonded_consumption,
                &mut consumed,
            );
            self.convert(
                *product,
                version.as_deref(),
                *qty,
                BomLine::scrap_allowance,
                &mut allowance,
            );
        }
        let mut at_contractors = self.at_contractor_materials.clone();
        for (product, qty) in &self.at_contractor_products {
            self.convert(
                *product,
                None,
                *qty,
                BomLine::bonded_consumption,
                &mut at_contractors,
            );
        }
        let empty = ColumnTotals::default();
        self.registration
            .materials
            .keys()
            .map(|item| {
                let columns = self.period.columns.get(item).unwrap_or(&empty);
                let get = |column| columns.get(column);
                let mut figures = MaterialFigures {
                    item: *item,
                    opening: self.opening.get(item).copied().unwrap_or_default(),
                    imported: get(Column::Imported),
                    carried_in: get(Column::CarriedIn),
                    remnant_in: get(Column::RemnantIn),
                    exchanged_in: get(Column::ExchangedIn),
                    consumed: consumed.get(item).copied().unwrap_or_default(),
                    materials_sold_domestic: get(Column::MaterialsSoldDomestic),
                    returned: get(Column::Returned),
                    exchanged_out: get(Column::ExchangedOut),
                    remnant_out: get(Column::RemnantOut),
                    abandoned: get(Column::Abandoned),
                    destroyed: get(Column::Destroyed),
                    disaster_loss: get(Column::DisasterLoss),
                    scrap_allowance: allowance.get(item).copied().unwrap_or_default(),
                    scrap_disposed: get(Column::ScrapDisposed),
                    at_contractors: at_contractors.get(item).copied().unwrap_or_default(),
                    expected_remaining: Decimal::ZERO,
                };
                figures.expected_remaining = expected_remaining(&figures, columns);
                (*item, figures)
            })
            .collect()
    }

    /// `expected_remaining` of the materials `items`, as [`ManualState::balances`]
    /// gives them, without working out the other figures (deciding a taking
    /// needs only these).
    pub fn balances_of(&self, items: &BTreeSet<ItemNo>) -> BTreeMap<ItemNo, Decimal> {
        let mut consumed = BTreeMap::new();
        for ((product, version), qty) in &self.period.products {
            let Some(bom) = self.unit_consumptions.resolve(*product, version.as_deref()) else {
                continue;
            };
            // The same sums in the same order as `convert`, for these materials only.
            for (material, line) in bom.iter().filter(|(m, _)| items.contains(m)) {
                if let Some(per_product) = line.bonded_consumption() {
                    let total: &mut Decimal = consumed.entry(*material).or_default();
                    *total = total.saturating_add(qty.saturating_mul(per_product));
                }
            }
        }
        let empty = ColumnTotals::default();
        items
            .iter()
            .filter(|item| self.registration.materials.contains_key(item))
            .map(|item| {
                let columns = self.period.columns.get(item).unwrap_or(&empty);
                let opening = self.opening.get(item).copied().unwrap_or_default();
                let consumed = consumed.get(item).copied().unwrap_or_default();
                (*item, remaining(opening, consumed, columns))
            })
            .collect()
    }

    /// `expected_remaining` of every material, the open period's balance.
    pub fn balances(&self) -> BTreeMap<ItemNo, Decimal> {
        self.figures()
            .into_iter()
            .map(|(item, f)| (item, f.expected_remaining))
            .collect()
    }

    /// What `effects` change in each material's balance under the unit
    /// consumption known now: positive adds, negative takes out.
    pub fn balance_delta(&self, effects: &[Effect]) -> BTreeMap<ItemNo, Decimal> {
        let mut delta: BTreeMap<ItemNo, Decimal> = BTreeMap::new();
        for effect in effects {
            match effect {
                Effect::Material { column, item, qty } => {
                    let signed = match column.direction() {
                        Direction::In => *qty,
                        Direction::Out => -*qty,
                        Direction::Neither => continue,
                    };
                    let total = delta.entry(*item).or_default();
                    *total = total.saturating_add(signed);
                }
                Effect::Products { item, version, qty } => {
                    let mut consumed = BTreeMap::new();
                    self.convert(
                        *item,
                        version.as_deref(),
                        *qty,
                        BomLine::bonded_consumption,
                        &mut consumed,
                    );
                    for (material, used) in consumed {
                        let total = delta.entry(material).or_default();
                        *total = total.saturating_sub(used);
                    }
                }
                _ => {}
            }
        }
        delta
    }

    /// Applies one recorded movement. `event` is its id as findings name it.
    pub fn apply(&mut self, recorded: &RecordedMovement, event: &str) {
        self.version += 1;
        let envelope = &recorded.envelope;
        for finding in &recorded.findings {
            self.findings.push(EventFinding {
                rule: finding.rule,
                event: event.to_owned(),
                message: finding.message.clone(),
            });
        }
        match &envelope.movement {
            Movement::ManualRegistered(_) => {}
            Movement::ManualAmended(amendment) => {
                let registration = &mut self.registration;
                if let Some(valid_until) = amendment.valid_until {
                    registration.valid_until = valid_until.0;
                }
                for m in &amendment.add_materials {
                    registration.materials.insert(m.item, MaterialItem::from(m));
                }
                for p in &amendment.add_products {
                    registration.products.insert(p.item, ProductItem::from(p));
                }
                for set in &amendment.set_quantities {
                    let qty = set.qty.value();
                    match set.kind {
                        crate::movement::ItemKind::Material => {
                            if let Some(m) = registration.materials.get_mut(&set.item) {
                                m.registered_qty = qty;
                            }
                        }
                        crate::movement::ItemKind::Product => {
                            if let Some(p) = registration.products.get_mut(&set.item) {
                                p.registered_qty = qty;
                            }
                        }
                    }
                }
            }
            Movement::UnitConsumptionDeclared(declaration) => {
                let bom = declaration
                    .lines
                    .iter()
                    .map(|line| {
                        let loss_rate = line.loss_rate.map_or(Decimal::ZERO, |d| d.value());
                        (
                            line.material,
                            BomLine::new(
                                line.net.value(),
                                loss_rate,
                                line.tangible_loss_rate.map_or(loss_rate, |d| d.value()),
                                line.bonded_share.map_or(Decimal::ONE, |d| d.value()),
                            ),
                        )
                    })
                    .collect();
                let version = declaration
                    .version
                    .clone()
                    .unwrap_or_else(|| "1".to_owned());
                self.unit_consumptions
                    .declare(declaration.product, version, bom);
                let consumptions = &self.unit_consumptions;
                self.unconverted.retain(|(product, version), _| {
                    consumptions.resolve(*product, version.as_deref()).is_none()
                });
            }
            Movement::Reported(report) => {
                let declared: BTreeMap<ItemNo, Decimal> = report
                    .declared_remaining
                    .iter()
                    .map(|d| (d.item, d.qty.value()))
                    .collect();
                self.last_declared = Some(declared.clone());
                self.report = Some(ReportRecord {
                    event: event.to_owned(),
                    date: envelope.date,
                    declared_remaining: declared,
                });
            }
            Movement::Closed(_) => self.closed = true,
            Movement::PeriodClosed(_) => self.close_period(envelope.date),
            Movement::Reversed(reversal) => {
                self.reversed.insert(reversal.event.clone());
                if let Some(target) = &recorded.reverses {
                    self.forget(&reversal.event, target);
                    for effect in effects(&target.movement) {
                        self.apply_effect(&effect.negated());
                    }
                }
            }
            movement => {
                self.remember(event, envelope);
                for effect in effects(movement) {
                    self.apply_effect(&effect);
                }
            }
        }
    }

    fn close_period(&mut self, date: NaiveDate) {
        self.opening = self.last_declared.clone().unwrap_or_default();
        self.period = PeriodTotals::default();
        self.report = None;
        self.findings.clear();
        self.unconverted.clear();
        self.carryovers.clear();
        self.sales.clear();
        self.period_closes.push(date);
    }

    fn apply_effect(&mut self, effect: &Effect) {
        fn add(map: &mut BTreeMap<ItemNo, Decimal>, item: ItemNo, qty: Decimal) {
            let total = map.entry(item).or_default();
            *total = total.saturating_add(qty);
        }
        match effect {
            Effect::Material { column, item, qty } => {
                self.period
                    .columns
                    .entry(*item)
                    .or_default()
                    .add(*column, *qty);
                if *column == Column::Imported {
                    add(&mut self.imported_total, *item, *qty);
                }
            }
            Effect::Products { item, version, qty } => {
                let total = self
                    .period
                    .products
                    .entry((*item, version.clone()))
                    .or_default();
                *total = total.saturating_add(*qty);
            }
            Effect::AtContractorMaterial { item, qty } => {
                add(&mut self.at_contractor_materials, *item, *qty)
            }
            Effect::AtContractorProduct { item, qty } => {
                add(&mut self.at_contractor_products, *item, *qty)
            }
            Effect::WorkOrder {
                product,
                completed,
                issued,
            } => {
                for (material, qty) in issued {
                    let totals = self
                        .period
                        .work_orders
                        .entry((*product, *material))
                        .or_default();
                    totals.completed = totals.completed.saturating_add(*completed);
                    totals.issued = totals.issued.saturating_add(*qty);
                }
            }
        }
    }

    /// Keeps what later checks need to know of a standing movement.
    fn remember(&mut self, event: &str, envelope: &Envelope) {
        let date = envelope.date;
        let movement = &envelope.movement;
        let kind = movement.kind();
        if is_export(kind) {
            *self.export_dates.entry(date).or_default() += 1;
        }
        if let Movement::ProductExported(p) = movement {
            let total = self.exported_total.entry(p.product).or_default();
            *total = total.saturating_add(p.qty.value());
        }
        if kind == MovementKind::MaterialImported {
            *self.import_dates.entry(date).or_default() += 1;
        }
        if let Movement::OutwardShipped(o) = movement {
            self.contractors.insert(o.contractor.clone());
        }
        for (product, _, version) in moved_products(movement) {
            if self
                .unit_consumptions
                .resolve(product, version.as_deref())
                .is_none()
            {
                self.unconverted
                    .entry((product, version))
                    .or_default()
                    .push(event.to_owned());
            }
        }
        match movement {
            Movement::CarryoverOut(c) => self.carryovers.push(CarryoverRecord {
                event: event.to_owned(),
                outgoing: true,
                item: c.product,
                qty: c.qty.value(),
                counterparty_manual: c.counterparty_manual.clone(),
                batch: c.batch.clone(),
                hs: Some(c.hs.clone()),
                date,
                moved_on: c.shipped_on.0,
            }),
            Movement::CarryoverIn(c) => self.carryovers.push(CarryoverRecord {
                event: event.to_owned(),
                outgoing: false,
                item: c.material,
                qty: c.qty.value(),
                counterparty_manual: c.counterparty_manual.clone(),
                batch: c.batch.clone(),
                hs: None,
                date,
                moved_on: c.received_on.0,
            }),
            Movement::DomesticSale(sale) => {
                if let (Some(rate), Some(interest)) = (sale.interest_rate, sale.interest) {
                    let duty = sale.duty.map_or(Decimal::ZERO, |d| d.value());
                    let vat = sale.vat.map_or(Decimal::ZERO, |d| d.value());
                    self.sales.push(SaleRecord {
                        event: event.to_owned(),
                        date,
                        duty_and_vat: duty.saturating_add(vat),
                        interest_rate_annual: rate.value(),
                        interest: interest.value(),
                    });
                }
            }
            _ => {}
        }
        self.findings
            .extend(crate::verify::movement_findings(self, event, envelope));
    }

    /// Drops what was kept of a movement now reversed.
    fn forget(&mut self, event: &str, target: &Envelope) {
        let movement = &target.movement;
        if is_export(movement.kind()) {
            uncount(&mut self.export_dates, target.date);
        }
        if movement.kind() == MovementKind::MaterialImported {
            uncount(&mut self.import_dates, target.date);
        }
        if let Movement::ProductExported(p) = movement {
            let total = self.exported_total.entry(p.product).or_default();
            *total = total.saturating_sub(p.qty.value());
        }
        // Findings this ledger computed about the movement go with it; those
        // attached at a historical import stay, as what happened.
        self.findings
            .retain(|f| f.event != event || !f.rule.is_computed_about_movement());
        for events in self.unconverted.values_mut() {
            events.retain(|e| e != event);
        }
        self.unconverted.retain(|_, events| !events.is_empty());
        // Only the kind of movement that made a record looks for it, and by
        // its date first: the lists are long in a long period, reversals many.
        let date = target.date;
        match movement {
            Movement::CarryoverOut(_) | Movement::CarryoverIn(_) => {
                self.carryovers
                    .retain(|c| c.date != date || c.event != event);
            }
            Movement::DomesticSale(_) => {
                self.sales.retain(|s| s.date != date || s.event != event);
            }
            _ => {}
        }
    }
}

/// Takes one occurrence of `date` out of a counted set of dates.
fn uncount(dates: &mut BTreeMap<NaiveDate, u32>, date: NaiveDate) {
    if let Some(count) = dates.get_mut(&date) {
        *count -= 1;
        if *count == 0 {
            dates.remove(&date);
        }
    }
}

impl ManualState {
    /// The date of the first import still standing.
    pub fn first_import(&self) -> Option<NaiveDate> {
        self.import_dates.keys().next().copied()
    }
}

/// Exports for the report deadline (domain §3, "deadlines").
pub fn is_export(kind: MovementKind) -> bool {
    matches!(
        kind,
        MovementKind::ProductExported
            | MovementKind::CarryoverOut
            | MovementKind::ProductReexported
    )
}

fn expected_remaining(figures: &MaterialFigures, columns: &ColumnTotals) -> Decimal {
    remaining(figures.opening, figures.consumed, columns)
}

fn remaining(opening: Decimal, consumed: Decimal, columns: &ColumnTotals) -> Decimal {
    let mut remaining = opening;
    for (column, direction) in COLUMN_DIRECTIONS {
        match direction {
            Direction::In => remaining = remaining.saturating_add(columns.get(*column)),
            Direction::Out => remaining = remaining.saturating_sub(columns.get(*column)),
            Direction::Neither => {}
        }
    }
    remaining.saturating_sub(consumed)
}

impl RuleId {
    /// Findings worked out from a movement as it stands (not attached at
    /// import): they go away when the movement is reversed.
    pub fn is_computed_about_movement(self) -> bool {
        matches!(
            self,
            RuleId::SealLateReport
                | RuleId::CarryoverLate
                | RuleId::CarryoverOrder
                | RuleId::CarryoverMismatch
                | RuleId::DomesticSaleInterestMismatch
        )
    }
}

/// Disposals that leave the manual as exports would, for reading scrap codes.
pub fn disposal_of(movement: &Movement) -> Option<Disposal> {
    match movement {
        Movement::ScrapDisposed(s) => Some(s.disposal),
        Movement::DefectiveDisposed(d) => Some(d.disposal),
        _ => None,
    }
}

/// Adds a finding attached at import to a recorded movement.
pub fn attach(recorded: &mut RecordedMovement, rule: RuleId, message: String) {
    recorded.findings.push(AttachedFinding { rule, message });
}

/// Maps with compound keys, written as a list of `[key, value]` pairs
/// (JSON objects take only string keys).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}
