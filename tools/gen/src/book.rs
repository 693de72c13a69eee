//! The generator's own bookkeeping of one manual: what it registered, the
//! running balances every movement is checked against before it is written,
//! and the totals from which the expected balances are worked out at the
//! end by the formula of domain §3. Nothing here comes from the ledger's
//! code: the point is to check the ledger against an independent reckoning.

use std::collections::{BTreeMap, VecDeque};

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};

/// A movement never leaves a balance closer to zero than this: the ledger
/// carries divisions to 28 significant digits, so the last digit of a
/// quotient may differ from the generator's, and a generated history must be
/// accepted whatever that digit is.
pub const BALANCE_MARGIN: Decimal = Decimal::from_parts(1, 0, 0, false, 9);

/// Reversible movements remembered per manual: the latest ones.
pub const MAX_REVERSIBLE: usize = 16;
/// Outward-processing jobs open at once per manual.
pub const MAX_OUTWARD_JOBS: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeMode {
    /// 进料加工
    Purchased,
    /// 来料加工
    Consigned,
}

impl TradeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeMode::Purchased => "purchased",
            TradeMode::Consigned => "consigned",
        }
    }
}

/// The material columns of domain §3 (`consumed` aside, which comes from
/// products).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// Each column, in the order of the enum, with its sign in `in − out`.
pub const COLUMN_SIGNS: [(Column, i64); COLUMNS] = [
    (Column::Imported, 1),
    (Column::CarriedIn, 1),
    (Column::RemnantIn, 1),
    (Column::ExchangedIn, 1),
    (Column::MaterialsSoldDomestic, -1),
    (Column::Returned, -1),
    (Column::ExchangedOut, -1),
    (Column::RemnantOut, -1),
    (Column::Abandoned, -1),
    (Column::Destroyed, -1),
    (Column::DisasterLoss, -1),
];
pub const COLUMNS: usize = 11;

impl Column {
    fn index(self) -> usize {
        self as usize
    }

    fn sign(self) -> Decimal {
        Decimal::from(COLUMN_SIGNS[self.index()].1)
    }
}

pub struct Material {
    pub item: u32,
    pub hs: String,
    pub name: String,
    pub spec: String,
    pub unit: String,
    pub places: u32,
    pub lot: Decimal,
    pub registered: Decimal,
    pub unit_price: Decimal,
    pub currency: String,
    pub origin: String,
    /// Received by carry-over from the previous manual, whose product it is.
    pub carried: bool,
}

/// One material line of a unit-consumption declaration (单耗).
pub struct BomLine {
    /// Index into the manual's materials.
    pub material: usize,
    pub net: Decimal,
    pub loss_rate: Decimal,
    /// As declared; left out means equal to the loss rate.
    pub tangible_loss_rate: Option<Decimal>,
    /// As declared; left out means 1.
    pub bonded_share: Option<Decimal>,
}

impl BomLine {
    fn tangible(&self) -> Decimal {
        self.tangible_loss_rate.unwrap_or(self.loss_rate)
    }

    fn share(&self) -> Decimal {
        self.bonded_share.unwrap_or(Decimal::ONE)
    }

    /// Q × net × bonded share ÷ (1 − loss rate): what Q products take from
    /// the bonded balance (domain §3, `consumed`).
    pub fn bonded(&self, products: Decimal) -> Decimal {
        products * self.net * self.share() / (Decimal::ONE - self.loss_rate)
    }

    /// What Q products leave as scrap at most: the tangible part of the loss.
    pub fn scrap_allowance(&self, products: Decimal) -> Decimal {
        self.bonded(products) * self.tangible()
    }

    /// net ÷ (1 − loss rate) for one product, bonded or not (work orders).
    pub fn used_per_unit(&self) -> Decimal {
        self.net / (Decimal::ONE - self.loss_rate)
    }
}

pub struct Version {
    pub name: String,
    pub lines: Vec<BomLine>,
}

pub struct Product {
    pub item: u32,
    pub hs: String,
    pub name: String,
    pub spec: String,
    pub unit: String,
    pub places: u32,
    pub lot: Decimal,
    pub registered: Decimal,
    /// Declared in order; the last is the latest, which applies where a
    /// movement names none. All are declared before any product moves.
    pub versions: Vec<Version>,
}

impl Product {
    pub fn latest(&self) -> usize {
        self.versions.len() - 1
    }
}

/// What a movement does to the figures; a reversal does it negated.
#[derive(Debug, Clone)]
pub enum Change {
    Material {
        column: Column,
        material: usize,
        qty: Decimal,
    },
    /// Products counted in Q_j under a version (negative: returned).
    Products {
        product: usize,
        version: usize,
        qty: Decimal,
    },
}

/// A movement that may be reversed later, with what it did.
pub struct Reversible {
    pub id: String,
    pub changes: Vec<Change>,
    pub date: NaiveDate,
    pub kind: ReversibleKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversibleKind {
    Import { material: usize },
    Export { product: usize },
    Other,
}

/// Goods at an outward-processing contractor (外发加工), awaiting return.
pub struct OutwardJob {
    pub contractor: String,
    pub work: OutwardWork,
    /// Materials shipped (none when products went out for finishing).
    pub materials: Vec<(usize, Decimal)>,
    pub product: usize,
    /// Products shipped for finishing, or to be made of the materials.
    pub products: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutwardWork {
    /// Materials processed (dyed, plated…) and returned as they went.
    Materials,
    /// Materials made into products, which come back with the spare.
    Products,
    /// Products finished (printed, packed…) and returned as they went.
    Finishing,
}

/// The expected figures of one material.
pub struct MaterialExpectation {
    pub item: u32,
    pub balance: Decimal,
    pub imported: Decimal,
    pub consumed: Decimal,
    pub at_contractors: Decimal,
}

pub struct Book {
    pub number: String,
    pub trade_mode: TradeMode,
    pub zone: bool,
    pub enterprise: String,
    pub processing_enterprise: String,
    pub customs: &'static str,
    pub materials: Vec<Material>,
    pub products: Vec<Product>,
    /// Movements still to write on this manual.
    pub remaining_movements: u64,
    lines_written: u64,
    /// Exact totals per material and column.
    columns: Vec<[Decimal; COLUMNS]>,
    /// Exact Q per product and version.
    product_totals: Vec<Vec<Decimal>>,
    /// Running figures, for checking movements before they are written.
    balance: Vec<Decimal>,
    allowance: Vec<Decimal>,
    scrap_disposed: Vec<Decimal>,
    at_contractor_materials: Vec<Decimal>,
    at_contractor_products: Vec<Decimal>,
    pub imported_total: Vec<Decimal>,
    pub exported_total: Vec<Decimal>,
    /// Products outside that could come back (exported, carried out,
    /// re-exported, less returned).
    pub returnable: Vec<Decimal>,
    /// Products returned and not yet re-exported.
    pub returned_pending: Vec<Decimal>,
    /// Dates of imports standing, counted: the first starts deferred-duty interest.
    import_dates: BTreeMap<NaiveDate, u32>,
    pub reversible: VecDeque<Reversible>,
    pub outward_jobs: VecDeque<OutwardJob>,
}

impl Book {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        number: String,
        trade_mode: TradeMode,
        zone: bool,
        enterprise: String,
        processing_enterprise: String,
        customs: &'static str,
        materials: Vec<Material>,
        products: Vec<Product>,
        movements: u64,
    ) -> Self {
        let zeros = |n: usize| vec![Decimal::ZERO; n];
        let (m, p) = (materials.len(), products.len());
        Book {
            number,
            trade_mode,
            zone,
            enterprise,
            processing_enterprise,
            customs,
            columns: vec![[Decimal::ZERO; COLUMNS]; m],
            product_totals: products
                .iter()
                .map(|product| zeros(product.versions.len()))
                .collect(),
            balance: zeros(m),
            allowance: zeros(m),
            scrap_disposed: zeros(m),
            at_contractor_materials: zeros(m),
            at_contractor_products: zeros(p),
            imported_total: zeros(m),
            exported_total: zeros(p),
            returnable: zeros(p),
            returned_pending: zeros(p),
            import_dates: BTreeMap::new(),
            reversible: VecDeque::new(),
            outward_jobs: VecDeque::new(),
            materials,
            products,
            remaining_movements: movements,
            lines_written: 0,
        }
    }

    /// Whether a movement may be spent here and still leave one for each
    /// open outward job to come back in.
    pub fn has_spare_movement(&self) -> bool {
        self.remaining_movements > self.outward_jobs.len() as u64
    }

    /// The id of the next line written on this manual.
    pub fn next_id(&mut self) -> String {
        self.lines_written += 1;
        format!("{}-{}", self.number, self.lines_written)
    }

    pub fn balance(&self, material: usize) -> Decimal {
        self.balance[material]
    }

    /// What the changes, applied `sign` times (1 or −1), do to each
    /// material's balance, by the running arithmetic.
    fn balance_delta(&self, changes: &[Change], sign: Decimal) -> Vec<Decimal> {
        let mut delta = vec![Decimal::ZERO; self.materials.len()];
        for change in changes {
            match change {
                Change::Material {
                    column,
                    material,
                    qty,
                } => delta[*material] += column.sign() * *qty * sign,
                Change::Products {
                    product,
                    version,
                    qty,
                } => {
                    for line in &self.products[*product].versions[*version].lines {
                        delta[line.material] -= line.bonded(*qty * sign);
                    }
                }
            }
        }
        delta
    }

    /// Whether the changes, applied `sign` times, leave every balance they
    /// lower at least [`BALANCE_MARGIN`] above zero, and the scrap already
    /// disposed within the allowance.
    pub fn fits(&self, changes: &[Change], sign: Decimal) -> bool {
        let delta = self.balance_delta(changes, sign);
        let balances_hold = delta.iter().zip(&self.balance).all(|(change, balance)| {
            *change >= Decimal::ZERO || balance + change >= BALANCE_MARGIN
        });
        balances_hold && self.allowance_holds(changes, sign)
    }

    fn allowance_holds(&self, changes: &[Change], sign: Decimal) -> bool {
        let mut allowance = self.allowance.clone();
        for change in changes {
            if let Change::Products {
                product,
                version,
                qty,
            } = change
            {
                for line in &self.products[*product].versions[*version].lines {
                    allowance[line.material] += line.scrap_allowance(*qty * sign);
                }
            }
        }
        allowance
            .iter()
            .zip(&self.scrap_disposed)
            .all(|(allowance, disposed)| allowance >= disposed)
    }

    /// Applies the changes `sign` times: 1 for a movement, −1 for its reversal.
    pub fn apply(&mut self, changes: &[Change], sign: Decimal) {
        let delta = self.balance_delta(changes, sign);
        for (balance, change) in self.balance.iter_mut().zip(delta) {
            *balance += change;
        }
        for change in changes {
            match change {
                Change::Material {
                    column,
                    material,
                    qty,
                } => {
                    self.columns[*material][column.index()] += *qty * sign;
                    if *column == Column::Imported {
                        self.imported_total[*material] += *qty * sign;
                    }
                }
                Change::Products {
                    product,
                    version,
                    qty,
                } => {
                    self.product_totals[*product][*version] += *qty * sign;
                    for line in &self.products[*product].versions[*version].lines {
                        self.allowance[line.material] += line.scrap_allowance(*qty * sign);
                    }
                }
            }
        }
    }

    /// The most products of a version the balances allow, by the running arithmetic.
    pub fn capacity(&self, product: usize, version: usize) -> Decimal {
        self.products[product].versions[version]
            .lines
            .iter()
            .map(|line| {
                let per_unit = line.bonded(Decimal::ONE);
                if per_unit.is_zero() {
                    Decimal::MAX
                } else {
                    self.balance[line.material].max(Decimal::ZERO) / per_unit
                }
            })
            .min()
            .unwrap_or(Decimal::ZERO)
    }

    /// Scrap that may still be disposed of within the allowance.
    pub fn scrap_room(&self, material: usize) -> Decimal {
        self.allowance[material] - self.scrap_disposed[material]
    }

    pub fn dispose_scrap(&mut self, material: usize, qty: Decimal) {
        self.scrap_disposed[material] += qty;
    }

    pub fn ship_outward(&mut self, materials: &[(usize, Decimal)], products: &[(usize, Decimal)]) {
        for (material, qty) in materials {
            self.at_contractor_materials[*material] += *qty;
        }
        for (product, qty) in products {
            self.at_contractor_products[*product] += *qty;
        }
    }

    pub fn return_outward(
        &mut self,
        materials: &[(usize, Decimal)],
        products: &[(usize, Decimal)],
    ) {
        for (material, qty) in materials {
            self.at_contractor_materials[*material] -= *qty;
        }
        for (product, qty) in products {
            self.at_contractor_products[*product] -= *qty;
        }
    }

    /// What one material is at contractors now, products converted at their
    /// latest version, as the ledger's `at_contractors` counts it.
    pub fn at_contractors(&self, material: usize) -> Decimal {
        let mut total = self.at_contractor_materials[material];
        for (product, q) in self.products.iter().zip(&self.at_contractor_products) {
            for line in &product.versions[product.latest()].lines {
                if line.material == material {
                    total += line.bonded(*q);
                }
            }
        }
        total
    }

    /// What the open outward jobs hold of one material, by the same count.
    pub fn held_by_open_jobs(&self, material: usize) -> Decimal {
        let mut total = Decimal::ZERO;
        for job in &self.outward_jobs {
            for (m, qty) in &job.materials {
                if *m == material {
                    total += *qty;
                }
            }
            if job.work == OutwardWork::Finishing {
                let product = &self.products[job.product];
                for line in &product.versions[product.latest()].lines {
                    if line.material == material {
                        total += line.bonded(job.products);
                    }
                }
            }
        }
        total
    }

    pub fn count_import(&mut self, date: NaiveDate, sign: i32) {
        let count = self.import_dates.entry(date).or_insert(0);
        if sign > 0 {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.import_dates.remove(&date);
            }
        }
    }

    /// The date of the first import standing.
    pub fn first_import(&self) -> Option<NaiveDate> {
        self.import_dates.keys().next().copied()
    }

    pub fn remember(&mut self, reversible: Reversible) {
        if self.reversible.len() == MAX_REVERSIBLE {
            self.reversible.pop_front();
        }
        self.reversible.push_back(reversible);
    }

    /// The expected figures of every material, from the exact totals:
    ///
    /// ```text
    /// in       = imported + carried_in + remnant_in + exchanged_in
    /// out      = consumed + materials_sold_domestic + returned + exchanged_out
    ///            + remnant_out + abandoned + destroyed + disaster_loss
    /// consumed = Σ over products j and versions v of Q_jv × net × bonded_share ÷ (1 − loss_rate)
    /// balance  = in − out
    /// ```
    ///
    /// At contractors: materials shipped less returned, and products shipped
    /// less returned converted at their latest version, bonded share included.
    pub fn expected(&self) -> Vec<MaterialExpectation> {
        let mut consumed = vec![Decimal::ZERO; self.materials.len()];
        let mut at_contractors = self.at_contractor_materials.clone();
        for (product, totals) in self.products.iter().zip(&self.product_totals) {
            for (version, q) in product.versions.iter().zip(totals) {
                for line in &version.lines {
                    consumed[line.material] +=
                        q * line.net * line.share() / (Decimal::ONE - line.loss_rate);
                }
            }
        }
        for (product, q) in self.products.iter().zip(&self.at_contractor_products) {
            for line in &product.versions[product.latest()].lines {
                at_contractors[line.material] +=
                    q * line.net * line.share() / (Decimal::ONE - line.loss_rate);
            }
        }
        self.materials
            .iter()
            .enumerate()
            .map(|(index, material)| {
                let columns = &self.columns[index];
                let in_minus_out: Decimal = COLUMN_SIGNS
                    .iter()
                    .map(|(column, sign)| Decimal::from(*sign) * columns[column.index()])
                    .sum();
                MaterialExpectation {
                    item: material.item,
                    balance: in_minus_out - consumed[index],
                    imported: columns[Column::Imported.index()],
                    consumed: consumed[index],
                    at_contractors: at_contractors[index],
                }
            })
            .collect()
    }
}

/// round6 (domain §3): six places, halves away from zero, written with six places.
pub fn format6(value: Decimal) -> String {
    let mut rounded = value.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero);
    if rounded.is_zero() {
        rounded = Decimal::ZERO;
    }
    rounded.rescale(6);
    rounded.to_string()
}

/// A quantity cut down to `places` decimals (never rounded up: a quantity
/// taken out must not grow past what was checked).
pub fn floor_to(value: Decimal, places: u32) -> Decimal {
    value.round_dp_with_strategy(places, RoundingStrategy::ToZero)
}

/// A quantity rounded up to `places` decimals.
pub fn ceil_to(value: Decimal, places: u32) -> Decimal {
    value.round_dp_with_strategy(places, RoundingStrategy::AwayFromZero)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse()
            .unwrap_or_else(|_| panic!("{text} is a decimal"))
    }

    #[test]
    fn columns_are_listed_in_the_order_of_the_enum() {
        for (index, (column, _)) in COLUMN_SIGNS.iter().enumerate() {
            assert_eq!(column.index(), index);
        }
    }

    #[test]
    fn consumption_follows_domain_section_3() {
        // The plastic-bag sample: 8000 bags of net 0.92, loss 5%.
        let line = BomLine {
            material: 0,
            net: dec("0.92"),
            loss_rate: dec("0.05"),
            tangible_loss_rate: Some(dec("0.04")),
            bonded_share: None,
        };
        assert_eq!(format6(line.bonded(dec("8000"))), "7747.368421");
        assert_eq!(format6(line.scrap_allowance(dec("8000"))), "309.894737");
        let shared = BomLine {
            bonded_share: Some(dec("0.5")),
            ..line
        };
        assert_eq!(format6(shared.bonded(dec("8000"))), "3873.684211");
    }

    #[test]
    fn printing_rounds_halves_away_from_zero() {
        assert_eq!(format6(dec("0.0000005")), "0.000001");
        assert_eq!(format6(dec("-0.0000005")), "-0.000001");
        assert_eq!(format6(dec("-0.0000001")), "0.000000");
        assert_eq!(format6(dec("12")), "12.000000");
    }
}
