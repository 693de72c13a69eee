//! Unit-consumption traceability (单耗追溯, domain §5): which receipts of
//! material the products of a manual draw on, first in, first out, and how
//! much of each.
//!
//! A [`Tracer`] is fed a manual's recorded movements in ledger order. Every
//! receipt of material opens a lot; every outflow that takes bonded material
//! draws the oldest lots first. What a product movement draws is written out
//! as [`TraceRow`]s; what no lot covers is written out too, unsourced, since
//! that is a shortfall an investigator must see.
//!
//! Which movement receives and which draws is not decided here: it is read
//! from [`effects`], the same table the balance arithmetic of domain §3 uses
//! (a column's direction, a product's sign), so the trace and the balance
//! cannot disagree on what moves material.
//!
//! Modelling choices:
//! - **Order**: ledger order, as the movements were recorded, not business
//!   dates. A receipt recorded after an outflow never covers it.
//! - **Reversals**: a movement reversed at any point of the stream never
//!   counts, neither before nor after its reversal; the caller hands the
//!   tracer the set of reversed ids from a first replay
//!   ([`ManualState::reversed`]). A reversal itself moves nothing.
//! - **Versions**: products are converted with the unit consumption in force
//!   when they moved: the version the movement names, else the product's
//!   latest version at that point. Where that version was not declared yet
//!   at that point, the declarations of the whole stream are used (003
//!   Art. 9 lets unit consumption be declared up to the report). This follows
//!   the goods as they moved; the balance of domain §3 instead applies a
//!   later revision to earlier movements that named no version, so after
//!   such a revision the trace and `consumed` may differ.
//! - **Quantities**: a material's bonded draw is Q × net × bonded share ÷
//!   (1 − loss rate), multiplied before dividing so that it is exact
//!   whenever the true figure has at most 28 significant digits. A line that
//!   cannot be converted (a loss rate of 1 or more, kept only as history)
//!   draws nothing, as it adds nothing to `consumed`.
//! - **Returned products** (`product_returned`, 成品退换): their materials,
//!   converted like an export, come back as one new lot per material at the
//!   *front* of the queue, named after the return. The returned goods are on
//!   hand and are what leaves next (typically re-exported), and their
//!   materials are older than any lot still open.
//! - **Materials exchanged** (退换): the material going out draws first, then
//!   the replacement opens a lot of its own (at the back).
//! - **Periods** of an account book do not reset the lots: goods stay where
//!   they are when a period closes.
//!
//! Memory: one lot per receipt still open, one row per (product movement,
//! material, lot drawn).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::event::RecordedMovement;
use crate::movement::{DeclarationNo, ItemNo, Movement, MovementKind};
use crate::state::{effects, BomLine, Direction, Effect, ManualState, UnitConsumptions};

/// One receipt of a material, drawn down first in, first out.
#[derive(Debug, Clone, PartialEq)]
pub struct Lot {
    pub material: ItemNo,
    /// The id of the movement that received it.
    pub event: String,
    /// `material_imported`, `carryover_in`, `remnant_in`,
    /// `materials_exchanged` or `product_returned`.
    pub kind: MovementKind,
    /// The receipt's declaration number (报关单号), or its event id where it
    /// has none (a `remnant_in` may carry none).
    pub declaration: String,
    /// The receipt's business date.
    pub date: NaiveDate,
    pub received_qty: Decimal,
    pub remaining_qty: Decimal,
}

/// What one product movement drew from one lot of one material.
///
/// Three shapes:
/// - sourced: `material` and `import_*` are set, `qty` came from that lot;
/// - unsourced: `material` is set, `import_*` are `None`: `qty` of the
///   bonded draw no lot covered (a shortfall);
/// - unconverted: `material` is `None`, `material_qty` and `qty` are zero:
///   no unit consumption could convert the movement's products.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    /// The id of the product movement.
    pub export_event: String,
    /// `product_exported`, `carryover_out`, `product_reexported`,
    /// `defective_disposed` or `domestic_sale`.
    pub export_kind: MovementKind,
    /// Its declaration number, or its event id where it has none (a
    /// `defective_disposed` may carry none).
    pub export_declaration: String,
    pub export_date: NaiveDate,
    pub product: ItemNo,
    /// Products moved by the movement.
    pub product_qty: Decimal,
    /// The unit-consumption version that converted them.
    pub uc_version: Option<String>,
    pub material: Option<ItemNo>,
    /// The movement's whole bonded draw of `material`: the sum of `qty` over
    /// the rows of this movement and material.
    pub material_qty: Decimal,
    pub import_event: Option<String>,
    pub import_kind: Option<MovementKind>,
    /// The lot's declaration number, or its event id where it has none.
    pub import_declaration: Option<String>,
    pub import_date: Option<NaiveDate>,
    /// What this row draws from that lot (or leaves unsourced).
    pub qty: Decimal,
}

impl TraceRow {
    /// Bonded material no lot covered: a shortfall.
    pub fn is_unsourced(&self) -> bool {
        self.material.is_some() && self.import_event.is_none()
    }

    /// Products no unit consumption could convert.
    pub fn is_unconverted(&self) -> bool {
        self.material.is_none()
    }
}

/// The movement being traced, as rows and lots name it.
struct Origin<'a> {
    event: &'a str,
    kind: MovementKind,
    declaration: String,
    date: NaiveDate,
}

/// Follows a manual's material lots through its movements.
#[derive(Debug, Clone)]
pub struct Tracer {
    /// Rows are written for this product only (`None`: every product);
    /// every product draws lots all the same.
    product: Option<ItemNo>,
    reversed: BTreeSet<String>,
    /// The declarations of the whole stream, for movements made before
    /// their version was declared.
    declared_last: UnitConsumptions,
    lots: BTreeMap<ItemNo, VecDeque<Lot>>,
    unsourced: BTreeMap<ItemNo, Decimal>,
    rows: Vec<TraceRow>,
}

impl Tracer {
    /// A tracer for a manual whose whole stream replayed into `replayed`
    /// (it gives the reversed ids and the last declarations); rows are
    /// written for `product`, or for every product.
    pub fn new(replayed: &ManualState, product: Option<ItemNo>) -> Self {
        Tracer {
            product,
            reversed: replayed.reversed.clone(),
            declared_last: replayed.unit_consumptions.clone(),
            lots: BTreeMap::new(),
            unsourced: BTreeMap::new(),
            rows: Vec::new(),
        }
    }

    /// Follows one movement, in ledger order. `in_force` is the unit
    /// consumption of the manual when the movement was made: the state's
    /// before it, or equally after it, since a movement that moves goods
    /// never declares unit consumption. `event` is its id as reversals name
    /// it.
    pub fn apply(&mut self, in_force: &UnitConsumptions, recorded: &RecordedMovement, event: &str) {
        if self.reversed.contains(event) {
            return;
        }
        let envelope = &recorded.envelope;
        let origin = Origin {
            event,
            kind: envelope.movement.kind(),
            declaration: declaration(&envelope.movement)
                .map_or_else(|| event.to_owned(), |d| d.as_str().to_owned()),
            date: envelope.date,
        };
        for effect in effects(&envelope.movement) {
            match effect {
                Effect::Material { column, item, qty } => match column.direction() {
                    Direction::In => self.receive(item, qty, &origin, false),
                    Direction::Out => {
                        self.draw(item, qty, None);
                    }
                    Direction::Neither => {}
                },
                Effect::Products { item, version, qty } => {
                    if qty > Decimal::ZERO {
                        self.consume(in_force, item, version.as_deref(), qty, &origin);
                    } else if qty < Decimal::ZERO {
                        self.give_back(in_force, item, -qty, &origin);
                    }
                }
                // Outward processing and work orders move nothing off the
                // bonded balance.
                Effect::AtContractorMaterial { .. }
                | Effect::AtContractorProduct { .. }
                | Effect::WorkOrder { .. } => {}
            }
        }
    }

    /// The rows written so far, in ledger order.
    pub fn rows(&self) -> &[TraceRow] {
        &self.rows
    }

    pub fn into_rows(self) -> Vec<TraceRow> {
        self.rows
    }

    /// A material's lots not yet drawn down, oldest first (a returned
    /// product's lot ahead of them).
    pub fn open_lots(&self, material: ItemNo) -> impl Iterator<Item = &Lot> {
        self.lots.get(&material).into_iter().flatten()
    }

    /// Per material, what outflows of any kind (not only those of the traced
    /// product) drew beyond every lot.
    pub fn unsourced(&self) -> &BTreeMap<ItemNo, Decimal> {
        &self.unsourced
    }

    fn receive(&mut self, material: ItemNo, qty: Decimal, origin: &Origin, in_front: bool) {
        if qty <= Decimal::ZERO {
            return;
        }
        let lot = Lot {
            material,
            event: origin.event.to_owned(),
            kind: origin.kind,
            declaration: origin.declaration.clone(),
            date: origin.date,
            received_qty: qty,
            remaining_qty: qty,
        };
        let queue = self.lots.entry(material).or_default();
        if in_front {
            queue.push_front(lot);
        } else {
            queue.push_back(lot);
        }
    }

    /// Draws `qty` of a material, oldest lot first; with `row` set, writes a
    /// row for each lot drawn and one for what no lot covered.
    fn draw(&mut self, material: ItemNo, qty: Decimal, row: Option<&TraceRow>) {
        let queue = self.lots.entry(material).or_default();
        let mut left = qty;
        while left > Decimal::ZERO {
            let Some(lot) = queue.front_mut() else { break };
            let taken = left.min(lot.remaining_qty);
            debug_assert!(taken > Decimal::ZERO, "an exhausted lot is never left open");
            lot.remaining_qty -= taken;
            left -= taken;
            if let Some(row) = row {
                self.rows.push(TraceRow {
                    import_event: Some(lot.event.clone()),
                    import_kind: Some(lot.kind),
                    import_declaration: Some(lot.declaration.clone()),
                    import_date: Some(lot.date),
                    qty: taken,
                    ..row.clone()
                });
            }
            if lot.remaining_qty <= Decimal::ZERO {
                queue.pop_front();
            }
        }
        if left > Decimal::ZERO {
            let total = self.unsourced.entry(material).or_default();
            *total = total.saturating_add(left);
            if let Some(row) = row {
                self.rows.push(TraceRow {
                    qty: left,
                    ..row.clone()
                });
            }
        }
    }

    /// Products leaving (or consumed): their bonded materials draw lots.
    fn consume(
        &mut self,
        in_force: &UnitConsumptions,
        product: ItemNo,
        named: Option<&str>,
        product_qty: Decimal,
        origin: &Origin,
    ) {
        let traced = self.product.is_none() || self.product == Some(product);
        let conversion = self.convert(in_force, product, named, product_qty);
        let template = TraceRow {
            export_event: origin.event.to_owned(),
            export_kind: origin.kind,
            export_declaration: origin.declaration.clone(),
            export_date: origin.date,
            product,
            product_qty,
            uc_version: None,
            material: None,
            material_qty: Decimal::ZERO,
            import_event: None,
            import_kind: None,
            import_declaration: None,
            import_date: None,
            qty: Decimal::ZERO,
        };
        let Some((version, draws)) = conversion else {
            if traced {
                self.rows.push(TraceRow {
                    uc_version: named.map(str::to_owned),
                    ..template
                });
            }
            return;
        };
        for (material, material_qty) in draws {
            let row = TraceRow {
                uc_version: Some(version.clone()),
                material: Some(material),
                material_qty,
                ..template.clone()
            };
            self.draw(material, material_qty, traced.then_some(&row));
        }
    }

    /// Products returned (成品退换): their materials come back, ahead of
    /// every open lot.
    fn give_back(
        &mut self,
        in_force: &UnitConsumptions,
        product: ItemNo,
        product_qty: Decimal,
        origin: &Origin,
    ) {
        let Some((_, draws)) = self.convert(in_force, product, None, product_qty) else {
            return;
        };
        for (material, qty) in draws {
            self.receive(material, qty, origin, true);
        }
    }

    /// The version converting a product movement and the bonded quantity of
    /// each material it stands for, or `None` where no declaration, then or
    /// later, gives that version.
    fn convert(
        &self,
        in_force: &UnitConsumptions,
        product: ItemNo,
        named: Option<&str>,
        product_qty: Decimal,
    ) -> Option<(String, Vec<(ItemNo, Decimal)>)> {
        let (version, bom) =
            [in_force, &self.declared_last]
                .into_iter()
                .find_map(|declarations| {
                    let version = match named {
                        Some(version) => version,
                        None => declarations.latest_version(product)?,
                    };
                    let bom = declarations.resolve(product, Some(version))?;
                    Some((version.to_owned(), bom))
                })?;
        let draws = bom
            .iter()
            .filter_map(|(material, line)| {
                bonded_draw(line, product_qty).map(|qty| (*material, qty))
            })
            .filter(|(_, qty)| *qty > Decimal::ZERO)
            .collect();
        Some((version, draws))
    }
}

/// What `products` take from the bonded balance of one material: products ×
/// net × bonded share ÷ (1 − loss rate), dividing last so the figure is
/// exact whenever it can be.
fn bonded_draw(line: &BomLine, products: Decimal) -> Option<Decimal> {
    let kept = Decimal::ONE.checked_sub(line.loss_rate())?;
    if kept <= Decimal::ZERO {
        return None;
    }
    products
        .checked_mul(line.net())?
        .checked_mul(line.bonded_share())?
        .checked_div(kept)
}

/// The declaration number a movement carries, if any.
fn declaration(movement: &Movement) -> Option<&DeclarationNo> {
    match movement {
        Movement::MaterialImported(m) => Some(&m.declaration),
        Movement::ProductExported(p) | Movement::ProductReexported(p) => Some(&p.declaration),
        Movement::ProductReturned(p) => Some(&p.declaration),
        Movement::CarryoverOut(c) => Some(&c.declaration),
        Movement::CarryoverIn(c) => Some(&c.declaration),
        Movement::RemnantOut(r) => r.declaration.as_ref(),
        Movement::RemnantIn(r) => r.declaration.as_ref(),
        Movement::DomesticSale(s) => Some(&s.declaration),
        Movement::MaterialsReturned(m) => Some(&m.declaration),
        Movement::MaterialsExchanged(x) => Some(&x.declaration),
        Movement::ScrapDisposed(s) => s.declaration.as_ref(),
        Movement::DefectiveDisposed(d) => d.declaration.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::decide::Mode;
    use crate::replay::Replay;
    use crate::state::EXACTNESS_SLACK;
    use crate::testing::MemoryLedger;

    const MANUAL: &str = "C22012600001";

    fn dec(text: &str) -> Decimal {
        text.parse().expect("a decimal literal")
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a date literal")
    }

    /// Two materials (film, ink) and two products (bags, rolls).
    fn registered() -> Value {
        json!({"id":"reg","type":"manual_registered","manual":MANUAL,"date":"2026-01-05",
            "trade_mode":"purchased","enterprise":"3202930001","valid_until":"2026-12-31",
            "materials":[
                {"item":1,"hs":"3901100000","name":"低密度聚乙烯","spec":"LDPE","unit":"千克","qty":"100000"},
                {"item":2,"hs":"3215110000","name":"印刷油墨","spec":"黑","unit":"千克","qty":"100000"}],
            "products":[
                {"item":1,"hs":"3923210000","name":"聚乙烯袋","spec":"30x40","unit":"千克","qty":"100000"},
                {"item":2,"hs":"3920109090","name":"薄膜卷","spec":"50μm","unit":"千克","qty":"100000"}]})
    }

    /// Product 1 uses 1.9 ÷ (1 − 0.05) = 2 of material 1 (version "1").
    fn bags_use_two() -> Value {
        declared("u1", "1", "1.9")
    }

    /// Product 1 in `version`, material 1 at `net` with a 5% loss.
    fn declared(id: &str, version: &str, net: &str) -> Value {
        json!({"id":id,"type":"unit_consumption_declared","manual":MANUAL,"date":"2026-01-06",
            "product":1,"version":version,"lines":[{"material":1,"net":net,"loss_rate":"0.05"}]})
    }

    /// Product 2: material 1 at 0.5 with 60% bonded (0.3), material 2 at
    /// 0.18 ÷ (1 − 0.1) = 0.2.
    fn rolls_use_two_materials() -> Value {
        json!({"id":"u2","type":"unit_consumption_declared","manual":MANUAL,"date":"2026-01-06",
            "product":2,"version":"1","lines":[
                {"material":1,"net":"0.5","bonded_share":"0.6"},
                {"material":2,"net":"0.18","loss_rate":"0.1"}]})
    }

    fn imported(id: &str, material: u32, qty: &str, declaration: &str, date: &str) -> Value {
        json!({"id":id,"type":"material_imported","manual":MANUAL,"date":date,"material":material,
            "qty":qty,"declaration":declaration,"mode":"0615"})
    }

    fn exported(id: &str, product: u32, qty: &str, declaration: &str, date: &str) -> Value {
        json!({"id":id,"type":"product_exported","manual":MANUAL,"date":date,"product":product,
            "qty":qty,"declaration":declaration,"mode":"0615"})
    }

    fn reversal(id: &str, event: &str) -> Value {
        json!({"id":id,"type":"reversed","manual":MANUAL,"date":"2026-03-10","event":event,
            "reason":"entered in error"})
    }

    fn ledger(mode: Mode, lines: impl IntoIterator<Item = Value>) -> MemoryLedger {
        let mut ledger = MemoryLedger::new();
        for line in lines {
            let shown = line.to_string();
            if let Err(refusal) = ledger.record(line, mode) {
                panic!("{shown}: refused {refusal}");
            }
        }
        ledger
    }

    /// The two replays the ledger makes: the whole stream for the reversed
    /// ids, then each movement with the state before it.
    fn trace(ledger: &MemoryLedger, manual: &str, product: Option<u32>) -> Tracer {
        let mut tracer = Tracer::new(ledger.state(manual), product.map(ItemNo));
        let mut replay = Replay::new();
        for (index, recorded) in ledger.log.iter().enumerate() {
            if recorded.envelope.manual.as_str() != manual {
                continue;
            }
            // MemoryLedger's ids: the caller's, else the place in its log.
            let event = recorded
                .envelope
                .id
                .clone()
                .unwrap_or_else(|| format!("#{}", index + 1));
            if let Some(before) = replay.state() {
                tracer.apply(&before.unit_consumptions, recorded, &event);
            }
            replay.apply(recorded, &event);
        }
        tracer
    }

    /// (export event, material, lot drawn, quantity drawn) of each row.
    fn drawn(rows: &[TraceRow]) -> Vec<(String, Option<u32>, Option<String>, Decimal)> {
        rows.iter()
            .map(|row| {
                (
                    row.export_event.clone(),
                    row.material.map(|m| m.0),
                    row.import_event.clone(),
                    row.qty,
                )
            })
            .collect()
    }

    fn row(
        export: &str,
        material: u32,
        lot: Option<&str>,
        qty: &str,
    ) -> (String, Option<u32>, Option<String>, Decimal) {
        (
            export.to_owned(),
            Some(material),
            lot.map(str::to_owned),
            dec(qty),
        )
    }

    fn open(tracer: &Tracer, material: u32) -> Vec<(String, Decimal)> {
        tracer
            .open_lots(ItemNo(material))
            .map(|lot| (lot.event.clone(), lot.remaining_qty))
            .collect()
    }

    fn lot(event: &str, qty: &str) -> (String, Decimal) {
        (event.to_owned(), dec(qty))
    }

    #[test]
    fn exports_draw_the_oldest_import_first_and_span_into_the_next() {
        let ledger = ledger(
            Mode::Strict,
            [
                registered(),
                bags_use_two(),
                imported("i1", 1, "100", "220120261000010001", "2026-01-10"),
                imported("i2", 1, "200", "220120261000020002", "2026-02-10"),
                // 30 bags take 60: from i1, which keeps 40.
                exported("e1", 1, "30", "220120261000030001", "2026-03-01"),
                // 50 bags take 100: i1's last 40, then 60 of i2.
                exported("e2", 1, "50", "220120261000030002", "2026-03-15"),
            ],
        );
        let tracer = trace(&ledger, MANUAL, Some(1));
        assert_eq!(
            drawn(tracer.rows()),
            vec![
                row("e1", 1, Some("i1"), "60"),
                row("e2", 1, Some("i1"), "40"),
                row("e2", 1, Some("i2"), "60"),
            ]
        );
        let spanning = &tracer.rows()[2];
        assert_eq!(spanning.export_kind, MovementKind::ProductExported);
        assert_eq!(spanning.export_declaration, "220120261000030002");
        assert_eq!(spanning.export_date, day("2026-03-15"));
        assert_eq!(spanning.product, ItemNo(1));
        assert_eq!(spanning.product_qty, dec("50"));
        assert_eq!(spanning.uc_version.as_deref(), Some("1"));
        assert_eq!(spanning.material_qty, dec("100"));
        assert_eq!(
            spanning.import_declaration.as_deref(),
            Some("220120261000020002")
        );
        assert_eq!(spanning.import_date, Some(day("2026-02-10")));
        assert_eq!(spanning.import_kind, Some(MovementKind::MaterialImported));
        assert_eq!(open(&tracer, 1), vec![lot("i2", "140")]);
        assert!(tracer.unsourced().is_empty());
    }

    #[test]
    fn a_reversed_movement_neither_receives_nor_draws() {
        let ledger = ledger(
            Mode::Strict,
            [
                registered(),
                bags_use_two(),
                imported("i1", 1, "100", "220120261000010001", "2026-01-10"),
                imported("i2", 1, "100", "220120261000020002", "2026-02-10"),
                exported("e1", 1, "20", "220120261000030001", "2026-03-01"),
                reversal("x1", "e1"),
                reversal("x2", "i1"),
                // i1 never counted, nor did e1: 30 bags take 60 of i2.
                exported("e2", 1, "30", "220120261000030002", "2026-03-15"),
            ],
        );
        let tracer = trace(&ledger, MANUAL, Some(1));
        assert_eq!(drawn(tracer.rows()), vec![row("e2", 1, Some("i2"), "60")]);
        assert_eq!(open(&tracer, 1), vec![lot("i2", "40")]);
        let balance = ledger.state(MANUAL).balances()[&ItemNo(1)];
        assert_eq!(balance, dec("40"));
    }

    #[test]
    fn what_no_lot_covers_is_written_out_unsourced() {
        let ledger = ledger(
            Mode::Record,
            [
                registered(),
                bags_use_two(),
                imported("i1", 1, "50", "220120261000010001", "2026-01-10"),
                // 40 bags take 80: i1 has 50, 30 come from nowhere.
                exported("e1", 1, "40", "220120261000030001", "2026-03-01"),
                // An import recorded later does not cover the earlier export.
                imported("i2", 1, "100", "220120261000020002", "2026-03-05"),
                exported("e2", 1, "10", "220120261000030002", "2026-03-15"),
            ],
        );
        let tracer = trace(&ledger, MANUAL, Some(1));
        assert_eq!(
            drawn(tracer.rows()),
            vec![
                row("e1", 1, Some("i1"), "50"),
                row("e1", 1, None, "30"),
                row("e2", 1, Some("i2"), "20"),
            ]
        );
        let shortfall = &tracer.rows()[1];
        assert!(shortfall.is_unsourced());
        assert_eq!(shortfall.import_declaration, None);
        assert_eq!(shortfall.import_date, None);
        assert_eq!(shortfall.material_qty, dec("80"));
        assert_eq!(tracer.unsourced()[&ItemNo(1)], dec("30"));
        assert_eq!(open(&tracer, 1), vec![lot("i2", "80")]);
        // The balance nets the shortfall off what is left: 80 − 30.
        assert_eq!(ledger.state(MANUAL).balances()[&ItemNo(1)], dec("50"));
    }

    #[test]
    fn a_product_of_two_materials_draws_its_bonded_share_of_each() {
        let ledger = ledger(
            Mode::Strict,
            [
                registered(),
                bags_use_two(),
                rolls_use_two_materials(),
                imported("i1", 1, "100", "220120261000010001", "2026-01-10"),
                imported("j1", 2, "50", "220120261000010002", "2026-01-10"),
                // Bags are not traced but draw all the same: 20 of i1.
                exported("e1", 1, "10", "220120261000030001", "2026-03-01"),
                // 100 rolls: material 1, 100 × 0.5 × 0.6 = 30; material 2,
                // 100 × 0.18 ÷ 0.9 = 20.
                exported("e2", 2, "100", "220120261000030002", "2026-03-15"),
            ],
        );
        let tracer = trace(&ledger, MANUAL, Some(2));
        assert_eq!(
            drawn(tracer.rows()),
            vec![
                row("e2", 1, Some("i1"), "30"),
                row("e2", 2, Some("j1"), "20"),
            ]
        );
        assert_eq!(tracer.rows()[0].material_qty, dec("30"));
        assert_eq!(tracer.rows()[1].material_qty, dec("20"));
        assert_eq!(open(&tracer, 1), vec![lot("i1", "50")]);
        assert_eq!(open(&tracer, 2), vec![lot("j1", "30")]);
        let balances = ledger.state(MANUAL).balances();
        assert_eq!(balances[&ItemNo(1)], dec("50"));
        assert_eq!(balances[&ItemNo(2)], dec("30"));
    }

    #[test]
    fn returned_products_come_back_ahead_of_older_lots() {
        let ledger = ledger(
            Mode::Strict,
            [
                registered(),
                bags_use_two(),
                imported("i1", 1, "100", "220120261000010001", "2026-01-10"),
                exported("e1", 1, "10", "220120261000030001", "2026-03-01"),
                // 5 bags back: a lot of 10 at the front.
                json!({"id":"r1","type":"product_returned","manual":MANUAL,"date":"2026-03-20",
                    "product":1,"qty":"5","declaration":"220120261000030009","mode":"4600"}),
                // 8 bags out again take 16: the 10 returned, then 6 of i1.
                json!({"id":"e2","type":"product_reexported","manual":MANUAL,"date":"2026-04-01",
                    "product":1,"qty":"8","declaration":"220120261000040001","mode":"4600"}),
            ],
        );
        let tracer = trace(&ledger, MANUAL, Some(1));
        assert_eq!(
            drawn(tracer.rows()),
            vec![
                row("e1", 1, Some("i1"), "20"),
                row("e2", 1, Some("r1"), "10"),
                row("e2", 1, Some("i1"), "6"),
            ]
        );
        let from_return = &tracer.rows()[1];
        assert_eq!(from_return.export_kind, MovementKind::ProductReexported);
        assert_eq!(from_return.import_kind, Some(MovementKind::ProductReturned));
        assert_eq!(
            from_return.import_declaration.as_deref(),
            Some("220120261000030009")
        );
        assert_eq!(open(&tracer, 1), vec![lot("i1", "74")]);
        assert_eq!(ledger.state(MANUAL).balances()[&ItemNo(1)], dec("74"));
    }

    #[test]
    fn every_receipt_opens_a_lot_and_every_outflow_draws() {
        let ledger = ledger(
            Mode::Strict,
            [
                registered(),
                bags_use_two(),
                imported("i1", 1, "100", "220120261000010001", "2026-01-10"),
                json!({"id":"c1","type":"carryover_in","manual":MANUAL,"date":"2026-01-20",
                    "material":1,"qty":"40","declaration":"220120261000010003","mode":"0654",
                    "counterparty_manual":"C22012600009","counterparty_enterprise":"3202960002",
                    "received_on":"2026-01-18"}),
                json!({"id":"n1","type":"remnant_in","manual":MANUAL,"date":"2026-01-25",
                    "material":1,"qty":"30","from_manual":"C22012500008","approval":"YL-2026-01"}),
                // Direct outflows, all from i1: 20 + 10 + 5 + 5 + 5 + 5 + 5.
                json!({"id":"b1","type":"materials_returned","manual":MANUAL,"date":"2026-02-01",
                    "material":1,"qty":"20","declaration":"220120261000020004","mode":"0664"}),
                json!({"id":"x1","type":"materials_exchanged","manual":MANUAL,"date":"2026-02-02",
                    "material":1,"qty_out":"10","qty_in":"10","declaration":"220120261000020005",
                    "mode":"0700"}),
                // 10 bags (20) and 5 of material 1 sold at home.
                json!({"id":"s1","type":"domestic_sale","manual":MANUAL,"date":"2026-02-03",
                    "approval":"NX-2026-01","declaration":"220120261000020006","mode":"0644",
                    "materials":[{"item":1,"qty":"5"}],"products":[{"item":1,"qty":"10"}]}),
                json!({"id":"o1","type":"remnant_out","manual":MANUAL,"date":"2026-02-04",
                    "material":1,"qty":"5","to_manual":"C22012500008","approval":"YL-2026-02"}),
                json!({"id":"a1","type":"abandoned","manual":MANUAL,"date":"2026-02-05",
                    "material":1,"qty":"5","approval":"FQ-1"}),
                json!({"id":"d1","type":"destroyed","manual":MANUAL,"date":"2026-02-06",
                    "material":1,"qty":"5","approval":"XH-1"}),
                json!({"id":"l1","type":"disaster_loss","manual":MANUAL,"date":"2026-02-07",
                    "material":1,"qty":"5","approval":"SZ-1"}),
                // 50 bags take 100: i1's last 25, c1's 40, n1's 30, 5 of x1.
                exported("e1", 1, "50", "220120261000030001", "2026-03-01"),
            ],
        );
        let tracer = trace(&ledger, MANUAL, Some(1));
        assert_eq!(
            drawn(tracer.rows()),
            vec![
                row("s1", 1, Some("i1"), "20"),
                row("e1", 1, Some("i1"), "25"),
                row("e1", 1, Some("c1"), "40"),
                row("e1", 1, Some("n1"), "30"),
                row("e1", 1, Some("x1"), "5"),
            ]
        );
        let rows = tracer.rows();
        assert_eq!(rows[0].export_kind, MovementKind::DomesticSale);
        assert_eq!(rows[2].import_kind, Some(MovementKind::CarryoverIn));
        // A remnant received without a declaration is named by its event.
        assert_eq!(rows[3].import_kind, Some(MovementKind::RemnantIn));
        assert_eq!(rows[3].import_declaration.as_deref(), Some("n1"));
        assert_eq!(rows[4].import_kind, Some(MovementKind::MaterialsExchanged));
        assert_eq!(
            rows[4].import_declaration.as_deref(),
            Some("220120261000020005")
        );
        assert_eq!(open(&tracer, 1), vec![lot("x1", "5")]);
        assert_eq!(ledger.state(MANUAL).balances()[&ItemNo(1)], dec("5"));
    }

    #[test]
    fn products_convert_by_the_version_in_force_when_they_moved() {
        let ledger = ledger(
            Mode::Strict,
            [
                registered(),
                imported("i1", 1, "1000", "220120261000010001", "2026-01-10"),
                // Before any declaration: the one declared last, "2" (3 each).
                exported("e0", 1, "10", "220120261000030000", "2026-02-01"),
                declared("u1", "1", "1.9"),
                exported("e1", 1, "10", "220120261000030001", "2026-02-02"),
                declared("u2", "2", "2.85"),
                exported("e2", 1, "10", "220120261000030002", "2026-02-03"),
                json!({"id":"e3","type":"product_exported","manual":MANUAL,"date":"2026-02-04",
                    "product":1,"qty":"10","declaration":"220120261000030003","mode":"0615",
                    "uc_version":"1"}),
                json!({"id":"e4","type":"product_exported","manual":MANUAL,"date":"2026-02-05",
                    "product":1,"qty":"10","declaration":"220120261000030004","mode":"0615",
                    "uc_version":"9"}),
            ],
        );
        let tracer = trace(&ledger, MANUAL, Some(1));
        let versions: Vec<_> = tracer
            .rows()
            .iter()
            .map(|row| {
                (
                    row.export_event.as_str(),
                    row.uc_version.as_deref(),
                    row.material_qty,
                )
            })
            .collect();
        assert_eq!(
            versions,
            vec![
                ("e0", Some("2"), dec("30")),
                ("e1", Some("1"), dec("20")),
                ("e2", Some("2"), dec("30")),
                ("e3", Some("1"), dec("20")),
                ("e4", Some("9"), dec("0")),
            ]
        );
        let never_declared = &tracer.rows()[4];
        assert!(never_declared.is_unconverted());
        assert!(!never_declared.is_unsourced());
        assert_eq!(never_declared.qty, Decimal::ZERO);
        assert_eq!(open(&tracer, 1), vec![lot("i1", "900")]);
    }

    /// Over every product, what the lots hold less what no lot covered is
    /// the balance of domain §3 (these samples revise no unit consumption
    /// after a movement that names none, and are manuals, not account books).
    #[test]
    fn open_lots_less_unsourced_give_the_balance_of_each_sample_manual() {
        for name in ["plastic-bags", "toys-consigned", "garments-record"] {
            let path = bondledger_tests::samples_dir().join(format!("{name}.jsonl"));
            let text = std::fs::read_to_string(path).expect("a sample");
            let mode = if text.lines().next() == Some("# record") {
                Mode::Record
            } else {
                Mode::Strict
            };
            let lines = text
                .lines()
                .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
                .map(|line| serde_json::from_str(line).expect("a JSON line"));
            let ledger = ledger(mode, lines);
            for (manual, state) in &ledger.states {
                let tracer = trace(&ledger, manual.as_str(), None);
                for (material, balance) in state.balances() {
                    let held: Decimal = tracer.open_lots(material).map(|l| l.remaining_qty).sum();
                    let unsourced = tracer
                        .unsourced()
                        .get(&material)
                        .copied()
                        .unwrap_or_default();
                    let difference = (held - unsourced - balance).abs();
                    assert!(
                        difference <= EXACTNESS_SLACK,
                        "{name} {manual} material {material}: lots {held} less unsourced \
                         {unsourced}, balance {balance}"
                    );
                }
            }
        }
    }
}
