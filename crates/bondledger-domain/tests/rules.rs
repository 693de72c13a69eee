//! Every rule of domain §4, as given/when/then cases: for a rule that
//! rejects, the nearest movement it accepts and one it refuses naming exactly
//! that rule, and what record mode does with it; for a finding, the nearest
//! history without it and one with it, keyed by `material` or `event`.
//!
//! The fixtures are a purchased-processing (进料加工) plastic-bag manual, the
//! manual of the packaging enterprise that receives its film by carry-over,
//! and a consigned-processing (来料加工) toy manual. Every figure asserted is
//! worked out by hand in the comment next to it.

use bondledger_domain::testing::{given, MemoryLedger};
use bondledger_domain::{Mode, RuleId, Severity};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Purchased processing (进料加工): the bag maker's manual.
const PURCHASED: &str = "C22012600001";
/// The same enterprise's next manual, for remnant carry-over (余料结转).
const NEXT: &str = "C22012600011";
/// The packaging enterprise that receives film by carry-over (深加工结转).
const RECEIVER: &str = "C22012600007";
/// Consigned processing (来料加工): a toy maker's manual.
const CONSIGNED: &str = "B22012600002";
/// An electronic account book (电子账册), verified period by period.
const BOOK: &str = "E22012600003";
/// A special-zone account book.
const ZONE: &str = "H22012600004";

const OPERATING_ENTERPRISE: &str = "3202930001";
const PROCESSING_ENTERPRISE: &str = "3202930002";
const CONTRACTOR: &str = "3202990031";
const SECOND_CONTRACTOR: &str = "3202990032";

/// Small edits of a fixture line, so each case states only what differs.
trait Line {
    fn with(self, field: &str, value: impl Into<Value>) -> Value;
    fn without(self, field: &str) -> Value;
    fn id(self, id: &str) -> Value;
    fn on(self, date: &str) -> Value;
}

impl Line for Value {
    fn with(mut self, field: &str, value: impl Into<Value>) -> Value {
        self.as_object_mut()
            .expect("a line is an object")
            .insert(field.to_owned(), value.into());
        self
    }
    fn without(mut self, field: &str) -> Value {
        self.as_object_mut()
            .expect("a line is an object")
            .remove(field);
        self
    }
    fn id(self, id: &str) -> Value {
        self.with("id", id)
    }
    fn on(self, date: &str) -> Value {
        self.with("date", date)
    }
}

/// The supervision-mode code for the manual's trade mode: by customs
/// convention a manual number starting with B is consigned (来料), any other
/// here purchased (进料).
fn code(manual: &str, purchased: &str, consigned: &str) -> String {
    if manual.starts_with('B') {
        consigned.to_owned()
    } else {
        purchased.to_owned()
    }
}

fn items(list: &[(u32, &str)]) -> Value {
    list.iter()
        .map(|(item, qty)| json!({"item": item, "qty": qty}))
        .collect()
}

fn ldpe() -> Value {
    json!({"item": 1, "hs": "3901100000", "name": "低密度聚乙烯", "spec": "LDPE 2426H", "unit": "千克",
           "qty": "30000", "unit_price": "1.32", "currency": "USD", "origin": "KR"})
}

fn masterbatch() -> Value {
    json!({"item": 2, "hs": "3206499000", "name": "色母粒", "spec": "白色 W-70", "unit": "千克",
           "qty": "1500", "unit_price": "2.10", "currency": "USD", "origin": "JP"})
}

fn film_material() -> Value {
    json!({"item": 1, "hs": "3920109090", "name": "聚乙烯薄膜卷", "spec": "50μm", "unit": "千克", "qty": "8000"})
}

/// Materials: 1 LDPE 30000 kg, 2 masterbatch 1500 kg. Products: 1 printed
/// bags 20000 kg, 2 film rolls 8000 kg. Valid until 2026-12-31.
fn purchased_manual() -> Value {
    json!({"type": "manual_registered", "manual": PURCHASED, "date": "2026-01-05",
           "trade_mode": "purchased", "enterprise": OPERATING_ENTERPRISE,
           "processing_enterprise": PROCESSING_ENTERPRISE, "customs": "2201",
           "valid_until": "2026-12-31",
           "materials": [ldpe(), masterbatch()],
           "products": [
               {"item": 1, "hs": "3923210000", "name": "印刷聚乙烯袋", "spec": "30x40cm", "unit": "千克", "qty": "20000"},
               {"item": 2, "hs": "3920109090", "name": "聚乙烯薄膜卷", "spec": "50μm", "unit": "千克", "qty": "8000"}]})
}

/// The same enterprise's next manual: same enterprises, trade mode and LDPE.
fn next_manual() -> Value {
    purchased_manual().with("manual", NEXT).on("2026-06-01")
}

/// The packaging enterprise: material 1 is film (3920109090, kg).
fn receiver_manual() -> Value {
    json!({"type": "manual_registered", "manual": RECEIVER, "date": "2026-01-20",
           "trade_mode": "purchased", "enterprise": "3202960002", "valid_until": "2026-12-31",
           "materials": [film_material()],
           "products": [{"item": 1, "hs": "4819100000", "name": "复合包装盒", "spec": "A4", "unit": "千克", "qty": "9000"}]})
}

/// A zone account book that also receives film by carry-over.
fn zone_book() -> Value {
    receiver_manual()
        .with("manual", ZONE)
        .with("enterprise", "3202970004")
        .with("book", "account_book")
        .with("zone", true)
}

/// The bag maker's operations kept as an account book.
fn account_book() -> Value {
    purchased_manual()
        .with("manual", BOOK)
        .with("book", "account_book")
}

/// Materials: 1 ABS 20000 kg, 2 batteries 5000 pieces. Product: 1 toy car,
/// 5000 pieces. Valid until 2026-10-31.
fn consigned_manual() -> Value {
    json!({"type": "manual_registered", "manual": CONSIGNED, "date": "2026-01-08",
           "trade_mode": "consigned", "enterprise": "4403930002", "valid_until": "2026-10-31",
           "materials": [
               {"item": 1, "hs": "3903300000", "name": "ABS塑料粒子", "spec": "注塑级 黑", "unit": "千克", "qty": "20000"},
               {"item": 2, "hs": "8507600090", "name": "锂离子电池", "spec": "3.7V 500mAh", "unit": "个", "qty": "5000"}],
           "products": [{"item": 1, "hs": "9503008900", "name": "电动玩具车", "spec": "RC-12", "unit": "个", "qty": "5000"}]})
}

fn uc_line(material: u32, net: &str, loss_rate: &str) -> Value {
    json!({"material": material, "net": net, "loss_rate": loss_rate})
}

fn unit_consumption(manual: &str, product: u32, lines: Vec<Value>) -> Value {
    json!({"type": "unit_consumption_declared", "manual": manual, "date": "2026-01-18",
           "product": product, "version": "1", "lines": lines})
}

/// Bags: LDPE 0.95 ÷ (1 − 0.05) = 1 kg per kg, 0.04 of it tangible loss
/// (scrap allowance 0.04 kg per kg); masterbatch 0.02 kg per kg, no loss.
fn bag_unit_consumption() -> Value {
    unit_consumption(
        PURCHASED,
        1,
        vec![
            uc_line(1, "0.95", "0.05").with("tangible_loss_rate", "0.04"),
            uc_line(2, "0.02", "0"),
        ],
    )
}

/// Film: LDPE 0.98 ÷ (1 − 0.02) = 1 kg per kg; masterbatch 0.015 kg per kg.
fn film_unit_consumption() -> Value {
    unit_consumption(
        PURCHASED,
        2,
        vec![uc_line(1, "0.98", "0.02"), uc_line(2, "0.015", "0")],
    )
}

/// Toy car: ABS 0.36 ÷ (1 − 0.1) = 0.4 kg; one battery.
fn toy_unit_consumption() -> Value {
    unit_consumption(
        CONSIGNED,
        1,
        vec![uc_line(1, "0.36", "0.1"), uc_line(2, "1", "0")],
    )
}

fn import(manual: &str, material: u32, qty: &str) -> Value {
    json!({"type": "material_imported", "manual": manual, "date": "2026-01-22",
           "material": material, "qty": qty, "declaration": "220120261000010001",
           "mode": code(manual, "0615", "0214")})
}

fn export(manual: &str, product: u32, qty: &str) -> Value {
    json!({"type": "product_exported", "manual": manual, "date": "2026-02-14",
           "product": product, "qty": qty, "declaration": "220120261000020031",
           "mode": code(manual, "0615", "0214")})
}

fn domestic_sale(manual: &str, materials: &[(u32, &str)], products: &[(u32, &str)]) -> Value {
    let mut line = json!({"type": "domestic_sale", "manual": manual, "date": "2026-05-20",
           "approval": "NX2026-0088", "declaration": "220120261000050140",
           "mode": code(manual, "0644", "0245")});
    if !materials.is_empty() {
        line = line.with("materials", items(materials));
    }
    if !products.is_empty() {
        line = line.with("products", items(products));
    }
    line
}

fn exchange(manual: &str, material: u32, qty_out: &str, qty_in: &str) -> Value {
    json!({"type": "materials_exchanged", "manual": manual, "date": "2026-03-02",
           "material": material, "qty_out": qty_out, "qty_in": qty_in,
           "declaration": "220120261000030011", "mode": code(manual, "0700", "0300")})
}

/// Counterpart goods of a substitution (串换).
fn counterpart(enterprise: &str, hs: &str, spec: &str, qty: &str) -> Value {
    json!({"bonded": false, "enterprise": enterprise, "hs": hs, "spec": spec, "qty": qty})
}

/// 500 kg of bonded LDPE swapped for the processing enterprise's own
/// equivalent LDPE.
fn substitution() -> Value {
    json!({"type": "substituted", "manual": PURCHASED, "date": "2026-03-10",
           "material": 1, "qty": "500", "approval": "CH2026-0007",
           "counterpart": counterpart(PROCESSING_ENTERPRISE, "3901100000", "LDPE 2426H", "500")})
}

fn outward_shipped(manual: &str, contractor: &str, materials: &[(u32, &str)]) -> Value {
    json!({"type": "outward_shipped", "manual": manual, "date": "2026-02-20",
           "contractor": contractor, "approval": "WF2026-0117", "materials": items(materials)})
}

fn outward_returned(manual: &str, contractor: &str, materials: &[(u32, &str)]) -> Value {
    json!({"type": "outward_returned", "manual": manual, "date": "2026-03-06",
           "contractor": contractor, "materials": items(materials)})
}

fn remnant_out(manual: &str, material: u32, qty: &str, to_manual: &str) -> Value {
    json!({"type": "remnant_out", "manual": manual, "date": "2026-06-20",
           "material": material, "qty": qty, "to_manual": to_manual,
           "approval": "YL2026-0003", "mode": code(manual, "0657", "0258")})
}

fn remnant_in(manual: &str, material: u32, qty: &str, from_manual: &str) -> Value {
    json!({"type": "remnant_in", "manual": manual, "date": "2026-06-21",
           "material": material, "qty": qty, "from_manual": from_manual,
           "approval": "YL2026-0003", "mode": code(manual, "0657", "0258")})
}

/// Film (product 2) carried over to the packaging enterprise, shipped on
/// 2026-03-15 and declared on 2026-03-19.
fn carryover_out(qty: &str, batch: &str) -> Value {
    json!({"type": "carryover_out", "manual": PURCHASED, "date": "2026-03-19",
           "product": 2, "qty": qty, "declaration": "220120261000030109", "mode": "0654",
           "counterparty_manual": RECEIVER, "counterparty_enterprise": "3202960002",
           "hs": "3920109090", "shipped_on": "2026-03-15", "plan": "JZ2026-0031", "batch": batch})
}

/// The receiving side, received on 2026-03-15 and declared on 2026-03-18.
fn carryover_in(manual: &str, qty: &str, batch: &str) -> Value {
    json!({"type": "carryover_in", "manual": manual, "date": "2026-03-18",
           "material": 1, "qty": qty, "declaration": "220120261000030102", "mode": "0654",
           "counterparty_manual": PURCHASED, "counterparty_enterprise": OPERATING_ENTERPRISE,
           "received_on": "2026-03-15", "plan": "JZ2026-0031", "batch": batch})
}

fn scrap_sold(manual: &str, material: u32, qty: &str) -> Value {
    json!({"type": "scrap_disposed", "manual": manual, "date": "2026-05-06",
           "material": material, "qty": qty, "disposal": "domestic_sale",
           "declaration": "220120261000050012", "mode": code(manual, "0844", "0845")})
}

fn work_order(manual: &str, product: u32, qty: &str, issued: &[(u32, &str)]) -> Value {
    json!({"type": "work_order_completed", "manual": manual, "date": "2026-02-10",
           "order": "WO-2602-01", "product": product, "qty": qty, "issued": items(issued)})
}

fn goods_sealed(manual: &str, sealed_on: &str, reported_on: &str) -> Value {
    json!({"type": "goods_sealed", "manual": manual, "date": reported_on,
           "authority": "南京市鼓楼区人民法院", "sealed_on": sealed_on})
}

fn reported(manual: &str, date: &str, declared_remaining: &[(u32, &str)]) -> Value {
    json!({"type": "reported", "manual": manual, "date": date,
           "declared_remaining": items(declared_remaining)})
}

fn closed(manual: &str) -> Value {
    json!({"type": "closed", "manual": manual, "date": "2026-08-20", "notice": "HX2026-0042"})
}

fn period_closed(manual: &str) -> Value {
    json!({"type": "period_closed", "manual": manual, "date": "2026-06-30", "notice": "HX2026-Q2"})
}

fn reversal(manual: &str, event: &str) -> Value {
    json!({"type": "reversed", "manual": manual, "date": "2026-03-20",
           "event": event, "reason": "录入错误"})
}

/// The bag manual with both bills of materials declared, 10000 kg of LDPE
/// (`p-imp-1`) and 200 kg of masterbatch (`p-imp-2`) imported.
fn stocked_purchased() -> Vec<Value> {
    vec![
        purchased_manual(),
        bag_unit_consumption(),
        film_unit_consumption(),
        import(PURCHASED, 1, "10000").id("p-imp-1"),
        import(PURCHASED, 2, "200").id("p-imp-2"),
    ]
}

/// The toy manual with its bill of materials, 2000 kg of ABS and 3000
/// batteries imported.
fn stocked_consigned() -> Vec<Value> {
    vec![
        consigned_manual(),
        toy_unit_consumption(),
        import(CONSIGNED, 1, "2000"),
        import(CONSIGNED, 2, "3000"),
    ]
}

fn lines(parts: impl IntoIterator<Item = Vec<Value>>) -> Vec<Value> {
    parts.into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------
// Reading the verification report
// ---------------------------------------------------------------------------

/// What a finding is about: a material's totals, or one movement.
#[derive(Debug, Clone, Copy)]
enum About<'a> {
    Material(u32),
    Event(&'a str),
}

fn findings_of(ledger: &MemoryLedger, manual: &str, rule: RuleId) -> Vec<Value> {
    let report = ledger.report(manual);
    report["findings"]
        .as_array()
        .expect("findings is a list")
        .iter()
        .filter(|f| f["rule"] == rule.as_str())
        .cloned()
        .collect()
}

/// Exactly one finding of `rule`, about that material or event, with the
/// rule's severity and the other key null.
fn assert_finding(ledger: &MemoryLedger, manual: &str, rule: RuleId, about: About) {
    let found = findings_of(ledger, manual, rule);
    assert_eq!(found.len(), 1, "one {rule} finding on {manual}: {found:?}");
    let finding = &found[0];
    let severity = match rule.severity() {
        Severity::Warning => "warning",
        Severity::Error => "error",
    };
    assert_eq!(finding["severity"], severity, "{finding}");
    match about {
        About::Material(item) => {
            assert_eq!(finding["material"], item, "{finding}");
            assert_eq!(finding["event"], Value::Null, "{finding}");
        }
        About::Event(event) => {
            assert_eq!(finding["event"], event, "{finding}");
            assert_eq!(finding["material"], Value::Null, "{finding}");
        }
    }
}

fn assert_no_finding(ledger: &MemoryLedger, manual: &str, rule: RuleId) {
    let found = findings_of(ledger, manual, rule);
    assert!(found.is_empty(), "no {rule} finding on {manual}: {found:?}");
}

/// A printed figure of one material of the report (six places).
fn figure(ledger: &MemoryLedger, manual: &str, item: u32, column: &str) -> String {
    let report = ledger.report(manual);
    let material = report["materials"]
        .as_array()
        .expect("materials is a list")
        .iter()
        .find(|m| m["item"] == item)
        .unwrap_or_else(|| panic!("material {item} in the report of {manual}"))
        .clone();
    material[column]
        .as_str()
        .unwrap_or_else(|| panic!("{column} of material {item} is a string: {material}"))
        .to_owned()
}

// ---------------------------------------------------------------------------
// 1. manual.duplicate, manual.unknown
// ---------------------------------------------------------------------------

#[test]
fn manual_unknown_accepts_a_movement_on_a_registered_manual() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "1000"))
        .then_accepted();
}

#[test]
fn manual_unknown_refuses_a_movement_on_a_manual_never_registered() {
    given([purchased_manual()])
        .when(import("C22012609999", 1, "1000"))
        .then_refused(RuleId::ManualUnknown);
}

#[test]
fn manual_unknown_comes_before_what_the_movement_refers_to() {
    // Item 9 is unknown too, but there is no manual to look it up in.
    given([purchased_manual()])
        .when(import("C22012609999", 9, "0"))
        .then_refused(RuleId::ManualUnknown);
}

#[test]
fn manual_unknown_is_refused_even_in_record_mode() {
    given([purchased_manual()])
        .when_recorded(import("C22012609999", 1, "1000"))
        .then_refused(RuleId::ManualUnknown);
}

#[test]
fn manual_duplicate_accepts_registering_another_manual_number() {
    given([purchased_manual()])
        .when(next_manual())
        .then_accepted();
}

#[test]
fn manual_duplicate_refuses_registering_a_manual_number_twice() {
    given([purchased_manual()])
        .when(purchased_manual().on("2026-02-01"))
        .then_refused(RuleId::ManualDuplicate);
}

#[test]
fn manual_duplicate_is_refused_even_in_record_mode() {
    given([purchased_manual()])
        .when_recorded(purchased_manual().on("2026-02-01"))
        .then_refused(RuleId::ManualDuplicate);
}

// ---------------------------------------------------------------------------
// 2. What the movement refers to
// ---------------------------------------------------------------------------

#[test]
fn item_unknown_accepts_a_registered_material() {
    given([purchased_manual()])
        .when(import(PURCHASED, 2, "100"))
        .then_accepted();
}

#[test]
fn item_unknown_refuses_a_material_the_manual_does_not_list() {
    given([purchased_manual()])
        .when(import(PURCHASED, 3, "100"))
        .then_refused(RuleId::ItemUnknown);
}

#[test]
fn item_unknown_refuses_unit_consumption_of_a_product_the_manual_does_not_list() {
    given([purchased_manual()])
        .when(bag_unit_consumption().with("product", 3))
        .then_refused(RuleId::ItemUnknown);
}

#[test]
fn item_unknown_refuses_setting_the_quantity_of_an_unregistered_item() {
    let amendment = json!({"type": "manual_amended", "manual": PURCHASED, "date": "2026-02-01",
        "set_quantities": [{"kind": "product", "item": 3, "qty": "100"}]});
    given([purchased_manual()])
        .when(amendment)
        .then_refused(RuleId::ItemUnknown);
}

#[test]
fn item_unknown_comes_before_an_invalid_quantity() {
    given([purchased_manual()])
        .when(import(PURCHASED, 3, "0"))
        .then_refused(RuleId::ItemUnknown);
}

#[test]
fn item_unknown_in_one_list_comes_before_an_invalid_quantity_in_another() {
    // The materials sold carry a zero quantity, the products an unknown item:
    // everything the movement refers to is checked before any quantity.
    given(stocked_purchased())
        .when(domestic_sale(PURCHASED, &[(1, "0")], &[(3, "10")]))
        .then_refused(RuleId::ItemUnknown);
}

#[test]
fn item_unknown_in_set_quantities_comes_before_an_invalid_added_quantity() {
    let amendment = json!({"type": "manual_amended", "manual": PURCHASED, "date": "2026-02-01",
        "add_materials": [{"item": 3, "hs": "3215110000", "name": "印刷油墨", "spec": "凹印 黑",
                           "unit": "千克", "qty": "0"}],
        "set_quantities": [{"kind": "product", "item": 3, "qty": "100"}]});
    given([purchased_manual()])
        .when(amendment)
        .then_refused(RuleId::ItemUnknown);
}

#[test]
fn item_unknown_comes_before_the_manual_being_closed() {
    given([purchased_manual(), closed(PURCHASED)])
        .when(import(PURCHASED, 3, "100").on("2026-08-21"))
        .then_refused(RuleId::ItemUnknown);
}

#[test]
fn item_unknown_is_refused_even_in_record_mode() {
    given([purchased_manual()])
        .when_recorded(import(PURCHASED, 3, "100"))
        .then_refused(RuleId::ItemUnknown);
}

#[test]
fn item_unit_mismatch_accepts_the_registered_unit() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "1000").with("unit", "千克"))
        .then_accepted();
}

#[test]
fn item_unit_mismatch_refuses_a_unit_other_than_the_registered_one() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "1").with("unit", "吨"))
        .then_refused(RuleId::ItemUnitMismatch);
}

#[test]
fn item_unit_mismatch_refuses_a_product_unit_other_than_the_registered_one() {
    given(stocked_consigned())
        .when(export(CONSIGNED, 1, "10").with("unit", "千克"))
        .then_refused(RuleId::ItemUnitMismatch);
}

#[test]
fn item_unit_mismatch_comes_before_an_invalid_quantity() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "0").with("unit", "吨"))
        .then_refused(RuleId::ItemUnitMismatch);
}

#[test]
fn item_unit_mismatch_is_refused_even_in_record_mode() {
    given([purchased_manual()])
        .when_recorded(import(PURCHASED, 1, "1").with("unit", "吨"))
        .then_refused(RuleId::ItemUnitMismatch);
}

fn printing_ink(item: u32) -> Value {
    json!({"type": "manual_amended", "manual": PURCHASED, "date": "2026-02-01",
           "add_materials": [{"item": item, "hs": "3215110000", "name": "印刷油墨", "spec": "凹印 黑",
                              "unit": "千克", "qty": "800"}]})
}

#[test]
fn item_duplicate_accepts_adding_a_new_item_number() {
    let ledger = given([purchased_manual()])
        .when(printing_ink(3))
        .then_accepted();
    // The added material is in the report, with nothing moved yet.
    assert_eq!(
        figure(&ledger, PURCHASED, 3, "expected_remaining"),
        "0.000000"
    );
}

#[test]
fn item_duplicate_refuses_adding_an_item_number_already_registered() {
    given([purchased_manual()])
        .when(printing_ink(2))
        .then_refused(RuleId::ItemDuplicate);
}

#[test]
fn item_duplicate_refuses_adding_a_product_number_already_registered() {
    let amendment = json!({"type": "manual_amended", "manual": PURCHASED, "date": "2026-02-01",
        "add_products": [{"item": 1, "hs": "3923290000", "name": "背心袋", "spec": "25x45cm",
                          "unit": "千克", "qty": "5000"}]});
    given([purchased_manual()])
        .when(amendment)
        .then_refused(RuleId::ItemDuplicate);
}

#[test]
fn item_duplicate_is_refused_even_in_record_mode() {
    given([purchased_manual()])
        .when_recorded(printing_ink(2))
        .then_refused(RuleId::ItemDuplicate);
}

#[test]
fn quantity_invalid_accepts_a_small_positive_quantity() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "0.001"))
        .then_accepted();
}

#[test]
fn quantity_invalid_refuses_a_zero_quantity() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "0"))
        .then_refused(RuleId::QuantityInvalid);
}

#[test]
fn quantity_invalid_refuses_a_negative_quantity() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "-5"))
        .then_refused(RuleId::QuantityInvalid);
}

#[test]
fn quantity_invalid_refuses_a_zero_quantity_in_a_list() {
    given(stocked_purchased())
        .when(outward_shipped(
            PURCHASED,
            CONTRACTOR,
            &[(1, "100"), (2, "0")],
        ))
        .then_refused(RuleId::QuantityInvalid);
}

#[test]
fn quantity_invalid_refuses_a_zero_quantity_exchanged_in() {
    given(stocked_purchased())
        .when(exchange(PURCHASED, 1, "100", "0"))
        .then_refused(RuleId::QuantityInvalid);
}

#[test]
fn quantity_invalid_refuses_a_zero_quantity_issued_to_a_work_order() {
    given(stocked_purchased())
        .when(work_order(PURCHASED, 1, "1000", &[(1, "1000"), (2, "0")]))
        .then_refused(RuleId::QuantityInvalid);
}

#[test]
fn quantity_invalid_refuses_registering_a_zero_quantity() {
    let zero_ldpe = ldpe().with("qty", "0");
    given([])
        .when(purchased_manual().with("materials", json!([zero_ldpe, masterbatch()])))
        .then_refused(RuleId::QuantityInvalid);
}

#[test]
fn quantity_invalid_accepts_a_declared_remaining_of_zero_but_not_below() {
    given([purchased_manual()])
        .when(reported(PURCHASED, "2026-07-01", &[(1, "0"), (2, "0")]))
        .then_accepted();
    given([purchased_manual()])
        .when(reported(PURCHASED, "2026-07-01", &[(1, "-1")]))
        .then_refused(RuleId::QuantityInvalid);
}

#[test]
fn quantity_invalid_comes_before_balance_insufficient() {
    // 20000 kg of LDPE is twice the balance, but the zero masterbatch
    // quantity is named first.
    given(stocked_purchased())
        .when(domestic_sale(PURCHASED, &[(1, "20000"), (2, "0")], &[]))
        .then_refused(RuleId::QuantityInvalid);
}

#[test]
fn quantity_invalid_is_refused_even_in_record_mode() {
    given([purchased_manual()])
        .when_recorded(import(PURCHASED, 1, "0"))
        .then_refused(RuleId::QuantityInvalid);
}

#[test]
fn reversal_unknown_accepts_reversing_a_standing_movement() {
    let ledger = given(stocked_purchased())
        .when(reversal(PURCHASED, "p-imp-2"))
        .then_accepted();
    assert_eq!(figure(&ledger, PURCHASED, 2, "imported"), "0.000000");
}

#[test]
fn reversal_unknown_refuses_reversing_an_event_the_ledger_does_not_hold() {
    given(stocked_purchased())
        .when(reversal(PURCHASED, "p-imp-9"))
        .then_refused(RuleId::ReversalUnknown);
}

#[test]
fn reversal_unknown_refuses_reversing_what_is_not_a_movement() {
    let report = reported(PURCHASED, "2026-07-01", &[(1, "10000"), (2, "200")]).id("p-rep");
    let not_movements = [
        purchased_manual().id("p-reg"),
        bag_unit_consumption().id("p-uc"),
        report,
    ];
    for line in not_movements {
        let event = line["id"].as_str().expect("an id").to_owned();
        let mut history = stocked_purchased();
        if line["type"] == "manual_registered" {
            history[0] = line;
        } else {
            history.push(line);
        }
        given(history)
            .when(reversal(PURCHASED, &event))
            .then_refused(RuleId::ReversalUnknown);
    }
}

#[test]
fn reversal_unknown_refuses_reversing_a_reversal() {
    given(lines([
        stocked_purchased(),
        vec![reversal(PURCHASED, "p-imp-2").id("p-rev")],
    ]))
    .when(reversal(PURCHASED, "p-rev"))
    .then_refused(RuleId::ReversalUnknown);
}

#[test]
fn reversal_unknown_refuses_reversing_a_movement_twice() {
    given(lines([
        stocked_purchased(),
        vec![reversal(PURCHASED, "p-imp-2")],
    ]))
    .when(reversal(PURCHASED, "p-imp-2"))
    .then_refused(RuleId::ReversalUnknown);
}

#[test]
fn reversal_unknown_refuses_reversing_a_movement_of_another_manual() {
    given(lines([
        stocked_purchased(),
        vec![next_manual(), import(NEXT, 1, "100").id("n-imp-1")],
    ]))
    .when(reversal(PURCHASED, "n-imp-1"))
    .then_refused(RuleId::ReversalUnknown);
}

#[test]
fn reversal_unknown_is_refused_even_in_record_mode() {
    given(stocked_purchased())
        .when_recorded(reversal(PURCHASED, "p-imp-9"))
        .then_refused(RuleId::ReversalUnknown);
}

#[test]
fn manual_not_account_book_accepts_closing_a_period_of_an_account_book() {
    given([account_book()])
        .when(period_closed(BOOK))
        .then_accepted();
}

#[test]
fn manual_not_account_book_refuses_closing_a_period_of_a_manual() {
    given([purchased_manual()])
        .when(period_closed(PURCHASED))
        .then_refused(RuleId::ManualNotAccountBook);
}

#[test]
fn manual_not_account_book_comes_before_the_manual_being_closed() {
    given([purchased_manual(), closed(PURCHASED)])
        .when(period_closed(PURCHASED).on("2026-09-30"))
        .then_refused(RuleId::ManualNotAccountBook);
}

#[test]
fn manual_not_account_book_is_refused_even_in_record_mode() {
    given([purchased_manual()])
        .when_recorded(period_closed(PURCHASED))
        .then_refused(RuleId::ManualNotAccountBook);
}

// ---------------------------------------------------------------------------
// 3. manual.closed, unit_consumption.closed, manual.expired, mode.mismatch
// ---------------------------------------------------------------------------

fn reported_and_closed() -> Vec<Value> {
    lines([
        stocked_purchased(),
        vec![
            reported(PURCHASED, "2026-07-01", &[(1, "10000"), (2, "200")]),
            closed(PURCHASED),
        ],
    ])
}

#[test]
fn manual_closed_accepts_a_movement_on_a_reported_manual_not_yet_closed() {
    given(lines([
        stocked_purchased(),
        vec![reported(
            PURCHASED,
            "2026-07-01",
            &[(1, "10000"), (2, "200")],
        )],
    ]))
    .when(import(PURCHASED, 1, "100").on("2026-07-02"))
    .then_accepted();
}

#[test]
fn manual_closed_refuses_any_movement_after_closure() {
    given(reported_and_closed())
        .when(import(PURCHASED, 1, "100").on("2026-08-21"))
        .then_refused(RuleId::ManualClosed);
    given(reported_and_closed())
        .when(reported(
            PURCHASED,
            "2026-08-21",
            &[(1, "10000"), (2, "200")],
        ))
        .then_refused(RuleId::ManualClosed);
    given(reported_and_closed())
        .when(reversal(PURCHASED, "p-imp-2"))
        .then_refused(RuleId::ManualClosed);
}

#[test]
fn manual_closed_comes_before_a_supervision_mode_that_does_not_fit() {
    given(reported_and_closed())
        .when(
            import(PURCHASED, 1, "100")
                .on("2026-08-21")
                .with("mode", "0214"),
        )
        .then_refused(RuleId::ManualClosed);
}

#[test]
fn manual_closed_comes_before_manual_expired() {
    given(reported_and_closed())
        .when(import(PURCHASED, 1, "100").on("2027-01-04"))
        .then_refused(RuleId::ManualClosed);
}

#[test]
fn manual_closed_is_recorded_with_the_finding_in_record_mode() {
    let ledger = given(reported_and_closed())
        .when_recorded(import(PURCHASED, 1, "100").on("2026-08-21").id("late-imp"))
        .then_recorded_with(RuleId::ManualClosed);
    // Applied as if accepted: 10000 + 100 imported.
    assert_eq!(figure(&ledger, PURCHASED, 1, "imported"), "10100.000000");
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::ManualClosed,
        About::Event("late-imp"),
    );
}

#[test]
fn manual_closed_is_the_only_finding_attached_when_the_mode_does_not_fit_either() {
    // Record mode attaches the rule strict mode would have named, and only it.
    let ledger = given(reported_and_closed())
        .when_recorded(
            import(PURCHASED, 1, "100")
                .on("2026-08-21")
                .with("mode", "0214")
                .id("late-imp"),
        )
        .then_recorded_with(RuleId::ManualClosed);
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::ManualClosed,
        About::Event("late-imp"),
    );
    assert_no_finding(&ledger, PURCHASED, RuleId::ModeMismatch);
}

#[test]
fn unit_consumption_closed_accepts_changing_unit_consumption_after_the_report() {
    // 003 Art. 11: it may be changed until the manual is closed.
    given(lines([
        stocked_purchased(),
        vec![reported(
            PURCHASED,
            "2026-07-01",
            &[(1, "10000"), (2, "200")],
        )],
    ]))
    .when(bag_unit_consumption().with("version", "2").on("2026-07-05"))
    .then_accepted();
}

#[test]
fn unit_consumption_closed_refuses_declaring_unit_consumption_on_a_closed_manual() {
    given(reported_and_closed())
        .when(bag_unit_consumption().with("version", "2").on("2026-08-21"))
        .then_refused(RuleId::UnitConsumptionClosed);
}

#[test]
fn unit_consumption_closed_comes_before_unit_consumption_invalid() {
    let invalid = unit_consumption(PURCHASED, 1, vec![uc_line(1, "0.95", "1")]).on("2026-08-21");
    given(reported_and_closed())
        .when(invalid)
        .then_refused(RuleId::UnitConsumptionClosed);
}

#[test]
fn unit_consumption_closed_is_recorded_with_the_finding_in_record_mode() {
    given(reported_and_closed())
        .when_recorded(bag_unit_consumption().with("version", "2").on("2026-08-21"))
        .then_recorded_with(RuleId::UnitConsumptionClosed);
}

#[test]
fn manual_expired_accepts_an_import_on_the_valid_until_date() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "100").on("2026-12-31"))
        .then_accepted();
}

#[test]
fn manual_expired_refuses_an_import_the_day_after_the_valid_until_date() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "100").on("2027-01-01"))
        .then_refused(RuleId::ManualExpired);
}

#[test]
fn manual_expired_refuses_exports_and_carry_overs_after_the_valid_until_date() {
    given(stocked_purchased())
        .when(export(PURCHASED, 1, "100").on("2027-01-01"))
        .then_refused(RuleId::ManualExpired);
    given(stocked_purchased())
        .when(carryover_out("100", "FH-0001").on("2027-01-01"))
        .then_refused(RuleId::ManualExpired);
    given([receiver_manual()])
        .when(carryover_in(RECEIVER, "100", "FH-0001").on("2027-01-01"))
        .then_refused(RuleId::ManualExpired);
}

#[test]
fn manual_expired_does_not_apply_to_returning_materials_abroad() {
    let returned = json!({"type": "materials_returned", "manual": PURCHASED, "date": "2027-01-15",
        "material": 2, "qty": "50", "declaration": "220120271000010003", "mode": "0664"});
    given(stocked_purchased()).when(returned).then_accepted();
}

#[test]
fn manual_expired_accepts_an_import_within_an_extended_validity() {
    let extended = json!({"type": "manual_amended", "manual": PURCHASED, "date": "2026-12-01",
        "valid_until": "2027-06-30"});
    given([purchased_manual(), extended])
        .when(import(PURCHASED, 1, "100").on("2027-01-01"))
        .then_accepted();
}

#[test]
fn manual_expired_comes_before_a_supervision_mode_that_does_not_fit() {
    given([purchased_manual()])
        .when(
            import(PURCHASED, 1, "100")
                .on("2027-01-01")
                .with("mode", "0214"),
        )
        .then_refused(RuleId::ManualExpired);
}

#[test]
fn manual_expired_comes_before_import_exceeds_registered() {
    given([purchased_manual()])
        .when(import(PURCHASED, 2, "1500.5").on("2027-01-01"))
        .then_refused(RuleId::ManualExpired);
}

#[test]
fn manual_expired_is_recorded_with_the_finding_in_record_mode() {
    let ledger = given([purchased_manual()])
        .when_recorded(import(PURCHASED, 1, "100").on("2027-01-01"))
        .then_recorded_with(RuleId::ManualExpired);
    assert_eq!(figure(&ledger, PURCHASED, 1, "imported"), "100.000000");
}

#[test]
fn mode_mismatch_accepts_the_codes_of_the_manuals_trade_mode() {
    for mode in ["0615", "0715"] {
        given([purchased_manual()])
            .when(import(PURCHASED, 1, "100").with("mode", mode))
            .then_accepted();
    }
    given([consigned_manual()])
        .when(import(CONSIGNED, 1, "100").with("mode", "0214"))
        .then_accepted();
}

#[test]
fn mode_mismatch_refuses_a_purchased_code_on_a_consigned_manual() {
    given([consigned_manual()])
        .when(import(CONSIGNED, 1, "100").with("mode", "0615"))
        .then_refused(RuleId::ModeMismatch);
}

#[test]
fn mode_mismatch_refuses_a_consigned_code_on_a_purchased_manual() {
    given([purchased_manual()])
        .when(import(PURCHASED, 1, "100").with("mode", "0214"))
        .then_refused(RuleId::ModeMismatch);
}

#[test]
fn mode_mismatch_accepts_a_zone_code_only_on_a_zone_book() {
    given([receiver_manual()])
        .when(import(RECEIVER, 1, "100").with("mode", "5015"))
        .then_refused(RuleId::ModeMismatch);
    given([zone_book()])
        .when(import(ZONE, 1, "100").with("mode", "5015"))
        .then_accepted();
    // 5014 is the consigned zone code.
    given([zone_book()])
        .when(import(ZONE, 1, "100").with("mode", "5014"))
        .then_refused(RuleId::ModeMismatch);
}

#[test]
fn mode_mismatch_refuses_a_scrap_code_that_does_not_fit_the_disposal() {
    let re_export = scrap_sold(PURCHASED, 1, "10").with("disposal", "re_export");
    given(stocked_purchased())
        .when(re_export.clone().with("mode", "0864"))
        .then_accepted();
    given(stocked_purchased())
        .when(re_export.with("mode", "0844"))
        .then_refused(RuleId::ModeMismatch);
}

#[test]
fn mode_mismatch_comes_before_the_movements_own_rules() {
    // Over the registered 1500 kg and with a consigned code.
    given([purchased_manual()])
        .when(import(PURCHASED, 2, "1500.5").with("mode", "0214"))
        .then_refused(RuleId::ModeMismatch);
}

#[test]
fn mode_mismatch_is_recorded_with_the_finding_in_record_mode() {
    let ledger = given([consigned_manual()])
        .when_recorded(import(CONSIGNED, 1, "100").with("mode", "0615"))
        .then_recorded_with(RuleId::ModeMismatch);
    assert_eq!(figure(&ledger, CONSIGNED, 1, "imported"), "100.000000");
}

// ---------------------------------------------------------------------------
// 4. The movement's own rules
// ---------------------------------------------------------------------------

#[test]
fn unit_consumption_invalid_accepts_rates_at_their_bounds() {
    let at_bounds = [
        uc_line(1, "0.95", "0.05")
            .with("tangible_loss_rate", "0.04")
            .with("bonded_share", "0.8"),
        uc_line(1, "0.95", "0.999999"),
        uc_line(1, "0.95", "0.05").with("tangible_loss_rate", "0.05"),
        uc_line(1, "0.95", "0.05").with("tangible_loss_rate", "0"),
        uc_line(1, "0.95", "0").with("bonded_share", "1"),
        uc_line(1, "0.000001", "0"),
    ];
    for line in at_bounds {
        given([purchased_manual()])
            .when(unit_consumption(PURCHASED, 1, vec![line]))
            .then_accepted();
    }
}

#[test]
fn unit_consumption_invalid_refuses_rates_outside_their_bounds() {
    let outside = [
        uc_line(1, "0", "0.05"),
        uc_line(1, "-0.95", "0.05"),
        uc_line(1, "0.95", "1"),
        uc_line(1, "0.95", "-0.01"),
        uc_line(1, "0.95", "0.05").with("tangible_loss_rate", "0.06"),
        uc_line(1, "0.95", "0.05").with("tangible_loss_rate", "-0.01"),
        uc_line(1, "0.95", "0").with("tangible_loss_rate", "0.01"),
        uc_line(1, "0.95", "0.05").with("bonded_share", "0"),
        uc_line(1, "0.95", "0.05").with("bonded_share", "1.01"),
    ];
    for line in outside {
        let shown = line.to_string();
        let outcome = given([purchased_manual()])
            .when(unit_consumption(
                PURCHASED,
                1,
                vec![uc_line(2, "0.02", "0"), line],
            ))
            .outcome;
        match outcome {
            Err(refusal) => assert_eq!(refusal.rule, RuleId::UnitConsumptionInvalid, "{shown}"),
            Ok(recorded) => panic!("{shown}: expected unit_consumption.invalid, got {recorded:?}"),
        }
    }
}

#[test]
fn unit_consumption_invalid_is_recorded_with_the_finding_in_record_mode() {
    given([purchased_manual()])
        .when_recorded(unit_consumption(
            PURCHASED,
            1,
            vec![uc_line(1, "0.95", "1")],
        ))
        .then_recorded_with(RuleId::UnitConsumptionInvalid);
}

#[test]
fn import_exceeds_registered_accepts_imports_up_to_the_registered_quantity() {
    // 1000 + 500 = the 1500 kg of masterbatch registered.
    given([purchased_manual(), import(PURCHASED, 2, "1000")])
        .when(import(PURCHASED, 2, "500"))
        .then_accepted();
}

#[test]
fn import_exceeds_registered_refuses_an_import_over_the_registered_quantity() {
    given([purchased_manual(), import(PURCHASED, 2, "1000")])
        .when(import(PURCHASED, 2, "500.001"))
        .then_refused(RuleId::ImportExceedsRegistered);
}

#[test]
fn import_exceeds_registered_counts_a_reversed_import_out() {
    given([
        purchased_manual(),
        import(PURCHASED, 2, "1000").id("mb-1"),
        reversal(PURCHASED, "mb-1"),
    ])
    .when(import(PURCHASED, 2, "1500"))
    .then_accepted();
}

#[test]
fn import_exceeds_registered_follows_an_amended_registered_quantity() {
    let raised = json!({"type": "manual_amended", "manual": PURCHASED, "date": "2026-02-01",
        "set_quantities": [{"kind": "material", "item": 2, "qty": "1600"}]});
    given([purchased_manual(), import(PURCHASED, 2, "1000"), raised])
        .when(import(PURCHASED, 2, "600"))
        .then_accepted();
}

#[test]
fn import_exceeds_registered_is_recorded_with_the_finding_in_record_mode() {
    let ledger = given([purchased_manual(), import(PURCHASED, 2, "1000")])
        .when_recorded(import(PURCHASED, 2, "500.001"))
        .then_recorded_with(RuleId::ImportExceedsRegistered);
    // 1000 + 500.001, counted as if accepted.
    assert_eq!(figure(&ledger, PURCHASED, 2, "imported"), "1500.001000");
}

#[test]
fn export_exceeds_registered_accepts_exports_up_to_the_registered_quantity() {
    // 5000 + 3000 = the 8000 kg of film registered.
    given(lines([
        stocked_purchased(),
        vec![export(PURCHASED, 2, "5000")],
    ]))
    .when(export(PURCHASED, 2, "3000"))
    .then_accepted();
}

#[test]
fn export_exceeds_registered_refuses_an_export_over_the_registered_quantity() {
    given(lines([
        stocked_purchased(),
        vec![export(PURCHASED, 2, "5000")],
    ]))
    .when(export(PURCHASED, 2, "3000.001"))
    .then_refused(RuleId::ExportExceedsRegistered);
}

#[test]
fn export_exceeds_registered_comes_before_balance_insufficient() {
    // 10000.5 kg of film is over the 8000 registered and needs 10000.5 kg of
    // LDPE where 10000 are held.
    given(stocked_purchased())
        .when(export(PURCHASED, 2, "10000.5"))
        .then_refused(RuleId::ExportExceedsRegistered);
}

#[test]
fn export_exceeds_registered_is_recorded_with_the_finding_in_record_mode() {
    let ledger = given(lines([
        stocked_purchased(),
        vec![export(PURCHASED, 2, "5000")],
    ]))
    .when_recorded(export(PURCHASED, 2, "3000.001"))
    .then_recorded_with(RuleId::ExportExceedsRegistered);
    // 8000.001 kg of film at 1 kg of LDPE each.
    assert_eq!(figure(&ledger, PURCHASED, 1, "consumed"), "8000.001000");
}

#[test]
fn remnant_mismatch_accepts_remnants_to_the_same_enterprises_next_manual() {
    given(lines([stocked_purchased(), vec![next_manual()]]))
        .when(remnant_out(PURCHASED, 1, "3000", NEXT))
        .then_accepted();
    given(lines([stocked_purchased(), vec![next_manual()]]))
        .when(remnant_in(NEXT, 1, "3000", PURCHASED))
        .then_accepted();
}

#[test]
fn remnant_mismatch_accepts_remnants_to_a_manual_the_ledger_does_not_hold() {
    given(stocked_purchased())
        .when(remnant_out(PURCHASED, 1, "3000", "C22012609999"))
        .then_accepted();
}

#[test]
fn remnant_mismatch_refuses_remnants_to_another_operating_enterprise() {
    given(lines([stocked_purchased(), vec![receiver_manual()]]))
        .when(remnant_out(PURCHASED, 1, "3000", RECEIVER))
        .then_refused(RuleId::RemnantMismatch);
}

#[test]
fn remnant_mismatch_refuses_remnants_to_another_processing_enterprise() {
    let other_factory = next_manual().with("processing_enterprise", "3202930003");
    given(lines([stocked_purchased(), vec![other_factory]]))
        .when(remnant_out(PURCHASED, 1, "3000", NEXT))
        .then_refused(RuleId::RemnantMismatch);
}

#[test]
fn remnant_mismatch_refuses_remnants_to_another_trade_mode() {
    let consigned_next = next_manual().with("trade_mode", "consigned");
    given(lines([stocked_purchased(), vec![consigned_next]]))
        .when(remnant_out(PURCHASED, 1, "3000", NEXT))
        .then_refused(RuleId::RemnantMismatch);
}

#[test]
fn remnant_mismatch_refuses_remnants_to_a_manual_without_the_same_material() {
    let without_ldpe = next_manual().with("materials", json!([masterbatch()]));
    given(lines([stocked_purchased(), vec![without_ldpe]]))
        .when(remnant_out(PURCHASED, 1, "3000", NEXT))
        .then_refused(RuleId::RemnantMismatch);
}

#[test]
fn remnant_mismatch_is_recorded_with_the_finding_in_record_mode() {
    let ledger = given(lines([stocked_purchased(), vec![receiver_manual()]]))
        .when_recorded(remnant_out(PURCHASED, 1, "3000", RECEIVER))
        .then_recorded_with(RuleId::RemnantMismatch);
    // 10000 − 3000.
    assert_eq!(
        figure(&ledger, PURCHASED, 1, "expected_remaining"),
        "7000.000000"
    );
}

#[test]
fn domestic_sale_not_approved_accepts_a_sale_with_its_approval() {
    given(stocked_purchased())
        .when(domestic_sale(PURCHASED, &[(2, "150")], &[]))
        .then_accepted();
}

#[test]
fn domestic_sale_not_approved_refuses_a_sale_without_approval() {
    given(stocked_purchased())
        .when(domestic_sale(PURCHASED, &[(2, "150")], &[]).without("approval"))
        .then_refused(RuleId::DomesticSaleNotApproved);
}

#[test]
fn domestic_sale_not_approved_comes_before_balance_insufficient() {
    given(stocked_purchased())
        .when(domestic_sale(PURCHASED, &[(2, "250")], &[]).without("approval"))
        .then_refused(RuleId::DomesticSaleNotApproved);
}

#[test]
fn domestic_sale_not_approved_is_recorded_with_the_finding_in_record_mode() {
    let ledger = given(stocked_purchased())
        .when_recorded(domestic_sale(PURCHASED, &[(2, "150")], &[]).without("approval"))
        .then_recorded_with(RuleId::DomesticSaleNotApproved);
    assert_eq!(
        figure(&ledger, PURCHASED, 2, "materials_sold_domestic"),
        "150.000000"
    );
}

#[test]
fn substitution_consigned_accepts_the_same_substitution_under_purchased_processing() {
    given(stocked_purchased())
        .when(substitution())
        .then_accepted();
}

fn abs_substitution(enterprise: &str) -> Value {
    json!({"type": "substituted", "manual": CONSIGNED, "date": "2026-03-10",
           "material": 1, "qty": "500", "approval": "CH2026-0008",
           "counterpart": counterpart(enterprise, "3903300000", "注塑级 黑", "500")})
}

#[test]
fn substitution_consigned_refuses_substitution_under_consigned_processing() {
    given(stocked_consigned())
        .when(abs_substitution("4403930002"))
        .then_refused(RuleId::SubstitutionConsigned);
}

#[test]
fn substitution_consigned_comes_before_substitution_other_enterprise() {
    given(stocked_consigned())
        .when(abs_substitution("4403939999"))
        .then_refused(RuleId::SubstitutionConsigned);
}

#[test]
fn substitution_consigned_is_recorded_with_the_finding_in_record_mode() {
    given(stocked_consigned())
        .when_recorded(abs_substitution("4403930002"))
        .then_recorded_with(RuleId::SubstitutionConsigned);
}

#[test]
fn substitution_other_enterprise_accepts_goods_of_the_operating_or_processing_enterprise() {
    for enterprise in [OPERATING_ENTERPRISE, PROCESSING_ENTERPRISE] {
        let goods = counterpart(enterprise, "3901100000", "LDPE 2426H", "500");
        given(stocked_purchased())
            .when(substitution().with("counterpart", goods))
            .then_accepted();
    }
}

#[test]
fn substitution_other_enterprise_refuses_goods_of_another_enterprise() {
    let goods = counterpart("3202939999", "3901100000", "LDPE 2426H", "500");
    given(stocked_purchased())
        .when(substitution().with("counterpart", goods))
        .then_refused(RuleId::SubstitutionOtherEnterprise);
}

#[test]
fn substitution_other_enterprise_comes_before_substitution_not_equivalent() {
    let goods = counterpart("3202939999", "3901200000", "HDPE 5000S", "480");
    given(stocked_purchased())
        .when(substitution().with("counterpart", goods))
        .then_refused(RuleId::SubstitutionOtherEnterprise);
}

#[test]
fn substitution_other_enterprise_is_recorded_with_the_finding_in_record_mode() {
    let goods = counterpart("3202939999", "3901100000", "LDPE 2426H", "500");
    given(stocked_purchased())
        .when_recorded(substitution().with("counterpart", goods))
        .then_recorded_with(RuleId::SubstitutionOtherEnterprise);
}

#[test]
fn substitution_not_equivalent_accepts_the_same_hs_code_spec_and_quantity() {
    let goods = counterpart(PROCESSING_ENTERPRISE, "3901100000", "LDPE 2426H", "500.000");
    given(stocked_purchased())
        .when(substitution().with("counterpart", goods))
        .then_accepted();
}

#[test]
fn substitution_not_equivalent_refuses_another_hs_code_spec_or_quantity() {
    let different = [
        counterpart(PROCESSING_ENTERPRISE, "3901200000", "LDPE 2426H", "500"),
        counterpart(PROCESSING_ENTERPRISE, "3901100000", "LDPE 2420H", "500"),
        counterpart(PROCESSING_ENTERPRISE, "3901100000", "LDPE 2426H", "499.9"),
    ];
    for goods in different {
        given(stocked_purchased())
            .when(substitution().with("counterpart", goods))
            .then_refused(RuleId::SubstitutionNotEquivalent);
    }
}

#[test]
fn substitution_not_equivalent_is_recorded_with_the_finding_in_record_mode() {
    let goods = counterpart(PROCESSING_ENTERPRISE, "3901100000", "LDPE 2426H", "499.9");
    given(stocked_purchased())
        .when_recorded(substitution().with("counterpart", goods))
        .then_recorded_with(RuleId::SubstitutionNotEquivalent);
}

#[test]
fn outward_not_approved_accepts_outward_processing_with_its_approval() {
    given(stocked_purchased())
        .when(outward_shipped(PURCHASED, CONTRACTOR, &[(1, "2000")]))
        .then_accepted();
}

#[test]
fn outward_not_approved_refuses_outward_processing_without_approval() {
    given(stocked_purchased())
        .when(outward_shipped(PURCHASED, CONTRACTOR, &[(1, "2000")]).without("approval"))
        .then_refused(RuleId::OutwardNotApproved);
}

#[test]
fn outward_not_approved_is_recorded_with_the_finding_in_record_mode() {
    let ledger = given(stocked_purchased())
        .when_recorded(outward_shipped(PURCHASED, CONTRACTOR, &[(1, "2000")]).without("approval"))
        .then_recorded_with(RuleId::OutwardNotApproved);
    assert_eq!(
        figure(&ledger, PURCHASED, 1, "at_contractors"),
        "2000.000000"
    );
}

fn shipped_to_contractor() -> Vec<Value> {
    lines([
        stocked_purchased(),
        vec![outward_shipped(PURCHASED, CONTRACTOR, &[(1, "2000")])],
    ])
}

#[test]
fn outward_reoutsourced_accepts_shipping_from_an_enterprise_that_received_nothing() {
    given(shipped_to_contractor())
        .when(
            outward_shipped(PURCHASED, SECOND_CONTRACTOR, &[(1, "500")]).with("from", "3202990033"),
        )
        .then_accepted();
    given(shipped_to_contractor())
        .when(
            outward_shipped(PURCHASED, SECOND_CONTRACTOR, &[(1, "500")])
                .with("from", PROCESSING_ENTERPRISE),
        )
        .then_accepted();
}

#[test]
fn outward_reoutsourced_refuses_a_contractor_sending_the_goods_on() {
    given(shipped_to_contractor())
        .when(outward_shipped(PURCHASED, SECOND_CONTRACTOR, &[(1, "500")]).with("from", CONTRACTOR))
        .then_refused(RuleId::OutwardReoutsourced);
}

#[test]
fn outward_not_approved_comes_before_outward_reoutsourced() {
    given(shipped_to_contractor())
        .when(
            outward_shipped(PURCHASED, SECOND_CONTRACTOR, &[(1, "500")])
                .with("from", CONTRACTOR)
                .without("approval"),
        )
        .then_refused(RuleId::OutwardNotApproved);
}

#[test]
fn outward_reoutsourced_is_recorded_with_the_finding_in_record_mode() {
    given(shipped_to_contractor())
        .when_recorded(
            outward_shipped(PURCHASED, SECOND_CONTRACTOR, &[(1, "500")]).with("from", CONTRACTOR),
        )
        .then_recorded_with(RuleId::OutwardReoutsourced);
}

#[test]
fn exchange_processed_accepts_exchanging_out_the_whole_unprocessed_balance() {
    let ledger = given(stocked_purchased())
        .when(exchange(PURCHASED, 1, "10000", "9990"))
        .then_accepted();
    // 10000 − 10000 + 9990.
    assert_eq!(
        figure(&ledger, PURCHASED, 1, "expected_remaining"),
        "9990.000000"
    );
}

#[test]
fn exchange_processed_refuses_exchanging_out_more_than_the_balance() {
    given(stocked_purchased())
        .when(exchange(PURCHASED, 1, "10000.5", "10000.5"))
        .then_refused(RuleId::ExchangeProcessed);
}

#[test]
fn exchange_processed_is_named_where_the_balance_would_fall_below_zero() {
    // 10000 − 10000.5 + 0.5 is 0, but an exchange is judged by what it takes
    // out, and never as balance.insufficient.
    given(stocked_purchased())
        .when(exchange(PURCHASED, 1, "10000.5", "0.5"))
        .then_refused(RuleId::ExchangeProcessed);
    given(stocked_purchased())
        .when(exchange(PURCHASED, 1, "10001", "0.5"))
        .then_refused(RuleId::ExchangeProcessed);
}

#[test]
fn exchange_processed_counts_materials_already_consumed_as_processed() {
    // 6000 kg of bags used 6000 kg of LDPE: 4000 kg remain unprocessed.
    let history = lines([stocked_purchased(), vec![export(PURCHASED, 1, "6000")]]);
    given(history.clone())
        .when(exchange(PURCHASED, 1, "4000", "4000"))
        .then_accepted();
    given(history)
        .when(exchange(PURCHASED, 1, "4000.001", "4000.001"))
        .then_refused(RuleId::ExchangeProcessed);
}

#[test]
fn exchange_processed_is_recorded_with_the_finding_in_record_mode() {
    given(stocked_purchased())
        .when_recorded(exchange(PURCHASED, 1, "10000.5", "10000.5"))
        .then_recorded_with(RuleId::ExchangeProcessed);
}

// ---------------------------------------------------------------------------
// 5. balance.insufficient
// ---------------------------------------------------------------------------

#[test]
fn balance_insufficient_accepts_an_export_using_up_the_whole_balance() {
    // 10000 kg of bags use 10000 × 1 kg of LDPE and 10000 × 0.02 = 200 kg
    // of masterbatch: exactly what was imported.
    let ledger = given(stocked_purchased())
        .when(export(PURCHASED, 1, "10000"))
        .then_accepted();
    assert_eq!(
        figure(&ledger, PURCHASED, 1, "expected_remaining"),
        "0.000000"
    );
    assert_eq!(
        figure(&ledger, PURCHASED, 2, "expected_remaining"),
        "0.000000"
    );
}

#[test]
fn balance_insufficient_refuses_an_export_beyond_the_balance() {
    given(stocked_purchased())
        .when(export(PURCHASED, 1, "10000.5"))
        .then_refused(RuleId::BalanceInsufficient);
}

#[test]
fn balance_insufficient_adds_up_materials_and_products_of_one_domestic_sale() {
    // 5000 kg of LDPE sold as such and 5000 kg of bags (5000 kg of LDPE):
    // together exactly the 10000 kg held.
    given(stocked_purchased())
        .when(domestic_sale(PURCHASED, &[(1, "5000")], &[(1, "5000")]))
        .then_accepted();
    // Each part alone fits; together they take 10000.5 kg.
    given(stocked_purchased())
        .when(domestic_sale(PURCHASED, &[(1, "5000.5")], &[(1, "5000")]))
        .then_refused(RuleId::BalanceInsufficient);
}

#[test]
fn balance_insufficient_does_not_judge_products_without_unit_consumption() {
    // Film has no bill of materials yet: its export takes nothing out now.
    given([
        purchased_manual(),
        bag_unit_consumption(),
        import(PURCHASED, 1, "10"),
    ])
    .when(export(PURCHASED, 2, "5000"))
    .then_accepted();
}

#[test]
fn balance_insufficient_refuses_reversing_an_import_already_consumed() {
    let history = lines([stocked_purchased(), vec![export(PURCHASED, 1, "6000")]]);
    given(history)
        .when(reversal(PURCHASED, "p-imp-1"))
        .then_refused(RuleId::BalanceInsufficient);
}

#[test]
fn balance_insufficient_accepts_reversing_an_import_not_yet_consumed() {
    given(stocked_purchased())
        .when(reversal(PURCHASED, "p-imp-1"))
        .then_accepted();
}

#[test]
fn balance_insufficient_is_recorded_with_the_finding_in_record_mode() {
    let ledger = given(stocked_purchased())
        .when_recorded(export(PURCHASED, 1, "10000.5").id("over-export"))
        .then_recorded_with(RuleId::BalanceInsufficient);
    // 10000 − 10000.5 and 200 − 10000.5 × 0.02 = 200 − 200.01.
    assert_eq!(
        figure(&ledger, PURCHASED, 1, "expected_remaining"),
        "-0.500000"
    );
    assert_eq!(
        figure(&ledger, PURCHASED, 2, "expected_remaining"),
        "-0.010000"
    );
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::BalanceInsufficient,
        About::Event("over-export"),
    );
}

// ---------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------

fn report_everything(date: &str) -> Value {
    reported(PURCHASED, date, &[(1, "10000"), (2, "200")]).id("p-rep")
}

#[test]
fn unit_consumption_missing_is_found_for_a_product_moved_without_unit_consumption() {
    let ledger = given([
        purchased_manual(),
        bag_unit_consumption(),
        import(PURCHASED, 1, "10000"),
        export(PURCHASED, 2, "3000").id("film-out"),
        report_everything("2026-03-01"),
    ])
    .ledger;
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::UnitConsumptionMissing,
        About::Event("film-out"),
    );
    // The export adds nothing to consumed.
    assert_eq!(figure(&ledger, PURCHASED, 1, "consumed"), "0.000000");
}

#[test]
fn unit_consumption_missing_is_found_for_a_version_never_declared() {
    let ledger = given(lines([
        stocked_purchased(),
        vec![
            export(PURCHASED, 1, "3000")
                .with("uc_version", "2")
                .id("bags-v2"),
            report_everything("2026-03-01"),
        ],
    ]))
    .ledger;
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::UnitConsumptionMissing,
        About::Event("bags-v2"),
    );
}

#[test]
fn unit_consumption_missing_is_not_found_once_declared_before_the_report() {
    let ledger = given([
        purchased_manual(),
        bag_unit_consumption(),
        import(PURCHASED, 1, "10000"),
        import(PURCHASED, 2, "200"),
        export(PURCHASED, 2, "3000").id("film-out"),
        film_unit_consumption().on("2026-02-20"),
        report_everything("2026-03-01"),
    ])
    .ledger;
    assert_no_finding(&ledger, PURCHASED, RuleId::UnitConsumptionMissing);
    // Declared later, it still converts the earlier export: 3000 × 1 kg.
    assert_eq!(figure(&ledger, PURCHASED, 1, "consumed"), "3000.000000");
}

#[test]
fn unit_consumption_missing_is_not_found_before_the_manual_is_reported() {
    let ledger = given([
        purchased_manual(),
        import(PURCHASED, 1, "10000"),
        export(PURCHASED, 2, "3000").id("film-out"),
    ])
    .ledger;
    assert_no_finding(&ledger, PURCHASED, RuleId::UnitConsumptionMissing);
}

#[test]
fn outward_outstanding_is_found_for_goods_still_at_a_contractor_once_reported() {
    let ledger = given(lines([
        shipped_to_contractor(),
        vec![
            outward_returned(PURCHASED, CONTRACTOR, &[(1, "1999.5")]),
            report_everything("2026-07-01"),
        ],
    ]))
    .ledger;
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::OutwardOutstanding,
        About::Material(1),
    );
    // 2000 shipped − 1999.5 returned.
    assert_eq!(figure(&ledger, PURCHASED, 1, "at_contractors"), "0.500000");
}

#[test]
fn outward_outstanding_is_not_found_when_everything_came_back() {
    let ledger = given(lines([
        shipped_to_contractor(),
        vec![
            outward_returned(PURCHASED, CONTRACTOR, &[(1, "2000")]),
            report_everything("2026-07-01"),
        ],
    ]))
    .ledger;
    assert_no_finding(&ledger, PURCHASED, RuleId::OutwardOutstanding);
}

#[test]
fn outward_outstanding_is_not_found_when_products_came_back_for_the_materials() {
    // 2000 kg of LDPE out, 2000 kg of film back at 1 kg of LDPE each.
    let products_back = json!({"type": "outward_returned", "manual": PURCHASED, "date": "2026-03-06",
        "contractor": CONTRACTOR, "products": items(&[(2, "2000")])});
    let ledger = given(lines([
        shipped_to_contractor(),
        vec![products_back, report_everything("2026-07-01")],
    ]))
    .ledger;
    assert_no_finding(&ledger, PURCHASED, RuleId::OutwardOutstanding);
    assert_eq!(figure(&ledger, PURCHASED, 1, "at_contractors"), "0.000000");
}

#[test]
fn outward_outstanding_is_not_found_before_the_manual_is_reported() {
    let ledger = given(shipped_to_contractor()).ledger;
    assert_no_finding(&ledger, PURCHASED, RuleId::OutwardOutstanding);
}

/// 100 kg of LDPE at a contractor when the account book's first period
/// closes; the next period is reported with or without it back.
fn account_book_with_goods_out(returned_in_next_period: bool) -> MemoryLedger {
    let mut history = vec![
        account_book(),
        import(BOOK, 1, "1000"),
        outward_shipped(BOOK, CONTRACTOR, &[(1, "100")]),
        reported(BOOK, "2026-03-31", &[(1, "1000")]),
        period_closed(BOOK).on("2026-03-31"),
    ];
    if returned_in_next_period {
        history.push(outward_returned(BOOK, CONTRACTOR, &[(1, "100")]).on("2026-04-10"));
    }
    history.push(reported(BOOK, "2026-06-30", &[(1, "1000")]));
    given(history).ledger
}

#[test]
fn outward_outstanding_is_found_across_account_book_periods() {
    // Periods do not reset what is at contractors.
    let ledger = account_book_with_goods_out(false);
    assert_finding(
        &ledger,
        BOOK,
        RuleId::OutwardOutstanding,
        About::Material(1),
    );
    assert_eq!(figure(&ledger, BOOK, 1, "at_contractors"), "100.000000");
}

#[test]
fn outward_outstanding_is_not_found_once_returned_in_a_later_period() {
    let ledger = account_book_with_goods_out(true);
    assert_no_finding(&ledger, BOOK, RuleId::OutwardOutstanding);
}

/// 150 kg of masterbatch sold at home on 2026-05-20, 118 days after the
/// first import on 2026-01-22: (136.50 + 372.05) × 118 × 0.0035 ÷ 360 =
/// 0.583419…, which is 0.58.
fn masterbatch_sold_with_interest(interest: &str) -> Vec<Value> {
    let sale = domestic_sale(PURCHASED, &[(2, "150")], &[])
        .with("duty", "136.50")
        .with("vat", "372.05")
        .with("interest_rate", "0.0035")
        .with("interest", interest)
        .id("p-sale");
    lines([stocked_purchased(), vec![sale]])
}

#[test]
fn domestic_sale_interest_mismatch_is_not_found_within_a_fen_of_the_computed_interest() {
    for interest in ["0.58", "0.59", "0.57"] {
        let ledger = given(masterbatch_sold_with_interest(interest)).ledger;
        assert_no_finding(&ledger, PURCHASED, RuleId::DomesticSaleInterestMismatch);
    }
}

#[test]
fn domestic_sale_interest_mismatch_is_found_more_than_a_fen_from_the_computed_interest() {
    for interest in ["0.60", "0.56", "0"] {
        let ledger = given(masterbatch_sold_with_interest(interest)).ledger;
        assert_finding(
            &ledger,
            PURCHASED,
            RuleId::DomesticSaleInterestMismatch,
            About::Event("p-sale"),
        );
    }
}

/// A sale reversed is no longer judged: its record goes with it, however
/// many sales stand beside it.
#[test]
fn domestic_sale_interest_mismatch_is_not_found_on_a_reversed_sale() {
    let other = domestic_sale(PURCHASED, &[(2, "1")], &[])
        .with("duty", "1.00")
        .with("vat", "1.00")
        .with("interest_rate", "0.0035")
        .with("interest", "9.99")
        .id("p-other-sale");
    let ledger = given(lines([
        masterbatch_sold_with_interest("0"),
        vec![other, reversal(PURCHASED, "p-sale")],
    ]))
    .ledger;
    let found = findings_of(&ledger, PURCHASED, RuleId::DomesticSaleInterestMismatch);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].to_string().contains("p-other-sale"), "{found:?}");
}

/// Interest runs from the first import still standing: with the imports of
/// 2026-01-22 reversed, from the one of 2026-02-01 — 108 days to the sale,
/// (136.50 + 372.05) × 108 × 0.0035 ÷ 360 = 0.533977…, which is 0.53.
#[test]
fn domestic_sale_interest_mismatch_counts_from_the_first_import_still_standing() {
    let history = |interest: &str| {
        let mut lines = stocked_purchased();
        lines.push(import(PURCHASED, 2, "200").on("2026-02-01").id("p-imp-3"));
        lines.push(reversal(PURCHASED, "p-imp-1"));
        lines.push(reversal(PURCHASED, "p-imp-2"));
        let sale = domestic_sale(PURCHASED, &[(2, "150")], &[])
            .with("duty", "136.50")
            .with("vat", "372.05")
            .with("interest_rate", "0.0035")
            .with("interest", interest)
            .id("p-sale");
        lines.push(sale);
        given(lines).ledger
    };
    assert_no_finding(
        &history("0.53"),
        PURCHASED,
        RuleId::DomesticSaleInterestMismatch,
    );
    assert_finding(
        &history("0.58"),
        PURCHASED,
        RuleId::DomesticSaleInterestMismatch,
        About::Event("p-sale"),
    );
}

#[test]
fn domestic_sale_interest_mismatch_is_not_judged_without_a_stated_rate() {
    let sale = domestic_sale(PURCHASED, &[(2, "150")], &[])
        .with("duty", "136.50")
        .with("vat", "372.05")
        .with("interest", "9.99");
    let ledger = given(lines([stocked_purchased(), vec![sale]])).ledger;
    assert_no_finding(&ledger, PURCHASED, RuleId::DomesticSaleInterestMismatch);
}

/// The account book's masterbatch: imported 2026-01-22, reported and its
/// period closed on 2026-03-31, 150 kg sold at home on 2026-05-20. Interest
/// runs from the period close: 50 days, (136.50 + 372.05) × 50 × 0.0035 ÷
/// 360 = 0.247211…, which is 0.25.
fn account_book_sale_with_interest(interest: &str) -> MemoryLedger {
    let sale = domestic_sale(BOOK, &[(2, "150")], &[])
        .with("duty", "136.50")
        .with("vat", "372.05")
        .with("interest_rate", "0.0035")
        .with("interest", interest)
        .id("book-sale");
    given([
        account_book(),
        import(BOOK, 2, "200"),
        reported(BOOK, "2026-03-31", &[(2, "200")]),
        period_closed(BOOK).on("2026-03-31"),
        sale,
    ])
    .ledger
}

#[test]
fn domestic_sale_interest_mismatch_counts_from_the_period_close_of_an_account_book() {
    for interest in ["0.25", "0.26"] {
        let ledger = account_book_sale_with_interest(interest);
        assert_no_finding(&ledger, BOOK, RuleId::DomesticSaleInterestMismatch);
    }
    // 0.58 would be right from the first import, not from the period close.
    let ledger = account_book_sale_with_interest("0.58");
    assert_finding(
        &ledger,
        BOOK,
        RuleId::DomesticSaleInterestMismatch,
        About::Event("book-sale"),
    );
}

fn film_carried_over(out: Value, incoming: Value) -> MemoryLedger {
    given(lines([
        stocked_purchased(),
        vec![receiver_manual(), incoming, out.id("co-out")],
    ]))
    .ledger
}

#[test]
fn carryover_mismatch_is_not_found_when_both_sides_agree() {
    let ledger = film_carried_over(
        carryover_out("5000", "FH-0001"),
        carryover_in(RECEIVER, "5000", "FH-0001"),
    );
    assert_no_finding(&ledger, PURCHASED, RuleId::CarryoverMismatch);
    assert_no_finding(&ledger, PURCHASED, RuleId::CarryoverOrder);
    // 5000 kg of film at 1 kg of LDPE each left the sender.
    assert_eq!(figure(&ledger, PURCHASED, 1, "consumed"), "5000.000000");
    assert_eq!(figure(&ledger, RECEIVER, 1, "carried_in"), "5000.000000");
}

#[test]
fn carryover_mismatch_is_found_when_the_quantities_differ() {
    let ledger = film_carried_over(
        carryover_out("5000", "FH-0001"),
        carryover_in(RECEIVER, "4990", "FH-0001"),
    );
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::CarryoverMismatch,
        About::Event("co-out"),
    );
    // A finding of the sending manual only.
    assert_no_finding(&ledger, RECEIVER, RuleId::CarryoverMismatch);
}

#[test]
fn carryover_mismatch_is_found_when_the_hs_headings_differ() {
    // 3921 is not the 3920 heading of the receiving material.
    let ledger = film_carried_over(
        carryover_out("5000", "FH-0001").with("hs", "3921909090"),
        carryover_in(RECEIVER, "5000", "FH-0001"),
    );
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::CarryoverMismatch,
        About::Event("co-out"),
    );
}

#[test]
fn carryover_mismatch_is_not_found_when_only_the_hs_subheading_differs() {
    let ledger = film_carried_over(
        carryover_out("5000", "FH-0001").with("hs", "3920209090"),
        carryover_in(RECEIVER, "5000", "FH-0001"),
    );
    assert_no_finding(&ledger, PURCHASED, RuleId::CarryoverMismatch);
}

#[test]
fn carryover_mismatch_is_found_when_the_units_differ() {
    let film_in_metres = film_material().with("unit", "米");
    let receiver = receiver_manual().with("materials", json!([film_in_metres]));
    let ledger = given(lines([
        stocked_purchased(),
        vec![
            receiver,
            carryover_in(RECEIVER, "5000", "FH-0001"),
            carryover_out("5000", "FH-0001").id("co-out"),
        ],
    ]))
    .ledger;
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::CarryoverMismatch,
        About::Event("co-out"),
    );
}

#[test]
fn carryover_mismatch_is_not_found_between_different_batches() {
    let ledger = film_carried_over(
        carryover_out("5000", "FH-0001"),
        carryover_in(RECEIVER, "4990", "FH-0002"),
    );
    assert_no_finding(&ledger, PURCHASED, RuleId::CarryoverMismatch);
}

#[test]
fn carryover_order_is_not_found_when_both_sides_declare_the_same_day() {
    let ledger = film_carried_over(
        carryover_out("5000", "FH-0001").on("2026-03-18"),
        carryover_in(RECEIVER, "5000", "FH-0001"),
    );
    assert_no_finding(&ledger, PURCHASED, RuleId::CarryoverOrder);
}

#[test]
fn carryover_order_is_found_when_the_sending_side_declares_first() {
    let ledger = film_carried_over(
        carryover_out("5000", "FH-0001").on("2026-03-17"),
        carryover_in(RECEIVER, "5000", "FH-0001"),
    );
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::CarryoverOrder,
        About::Event("co-out"),
    );
    assert_no_finding(&ledger, PURCHASED, RuleId::CarryoverMismatch);
}

#[test]
fn carryover_late_is_not_found_exactly_90_days_after_receipt() {
    // Received 2026-03-15, declared 2026-06-13: 90 days.
    let ledger = given([
        receiver_manual(),
        carryover_in(RECEIVER, "5000", "FH-0001")
            .on("2026-06-13")
            .id("co-in"),
    ])
    .ledger;
    assert_no_finding(&ledger, RECEIVER, RuleId::CarryoverLate);
}

#[test]
fn carryover_late_is_found_91_days_after_receipt() {
    let ledger = given([
        receiver_manual(),
        carryover_in(RECEIVER, "5000", "FH-0001")
            .on("2026-06-14")
            .id("co-in"),
    ])
    .ledger;
    assert_finding(
        &ledger,
        RECEIVER,
        RuleId::CarryoverLate,
        About::Event("co-in"),
    );
}

#[test]
fn carryover_late_is_found_91_days_after_shipment_on_the_sending_side() {
    // Shipped 2026-03-15: declared 2026-06-13 is in time, 2026-06-14 late.
    let in_time = given(lines([
        stocked_purchased(),
        vec![carryover_out("5000", "FH-0001")
            .on("2026-06-13")
            .id("co-out")],
    ]))
    .ledger;
    assert_no_finding(&in_time, PURCHASED, RuleId::CarryoverLate);
    let late = given(lines([
        stocked_purchased(),
        vec![carryover_out("5000", "FH-0001")
            .on("2026-06-14")
            .id("co-out")],
    ]))
    .ledger;
    assert_finding(
        &late,
        PURCHASED,
        RuleId::CarryoverLate,
        About::Event("co-out"),
    );
}

#[test]
fn carryover_late_is_not_found_exactly_30_days_after_receipt_on_a_zone_book() {
    let ledger = given([
        zone_book(),
        carryover_in(ZONE, "5000", "FH-0003")
            .with("mode", "5000")
            .on("2026-04-14")
            .id("zone-in"),
    ])
    .ledger;
    assert_no_finding(&ledger, ZONE, RuleId::CarryoverLate);
}

#[test]
fn carryover_late_is_found_31_days_after_receipt_on_a_zone_book() {
    let ledger = given([
        zone_book(),
        carryover_in(ZONE, "5000", "FH-0003")
            .with("mode", "5000")
            .on("2026-04-15")
            .id("zone-in"),
    ])
    .ledger;
    assert_finding(
        &ledger,
        ZONE,
        RuleId::CarryoverLate,
        About::Event("zone-in"),
    );
    // The same 31 days on an ordinary manual are in time.
    let ordinary = given([
        receiver_manual(),
        carryover_in(RECEIVER, "5000", "FH-0003").on("2026-04-15"),
    ])
    .ledger;
    assert_no_finding(&ordinary, RECEIVER, RuleId::CarryoverLate);
}

/// 1000 kg of bags exported: a scrap allowance of 1000 × 1 × 0.04 = 40 kg
/// of LDPE.
fn bags_exported_and_scrap_sold(scrap: &str) -> MemoryLedger {
    given(lines([
        stocked_purchased(),
        vec![
            export(PURCHASED, 1, "1000"),
            scrap_sold(PURCHASED, 1, scrap),
        ],
    ]))
    .ledger
}

#[test]
fn scrap_exceeds_allowance_is_not_found_for_scrap_up_to_the_allowance() {
    let ledger = bags_exported_and_scrap_sold("40");
    assert_eq!(
        figure(&ledger, PURCHASED, 1, "scrap_allowance"),
        "40.000000"
    );
    assert_no_finding(&ledger, PURCHASED, RuleId::ScrapExceedsAllowance);
    // Compared on rounded figures: 40.0000004 prints as 40.000000.
    let ledger = bags_exported_and_scrap_sold("40.0000004");
    assert_no_finding(&ledger, PURCHASED, RuleId::ScrapExceedsAllowance);
}

#[test]
fn scrap_exceeds_allowance_is_found_for_scrap_beyond_the_allowance() {
    let ledger = bags_exported_and_scrap_sold("40.000001");
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::ScrapExceedsAllowance,
        About::Material(1),
    );
    // Scrap never changes the balance: 10000 − 1000.
    assert_eq!(
        figure(&ledger, PURCHASED, 1, "expected_remaining"),
        "9000.000000"
    );
}

#[test]
fn scrap_exceeds_allowance_is_found_for_a_material_with_no_tangible_loss() {
    // Masterbatch has no loss at all: any scrap of it is beyond allowance.
    let ledger = given(lines([
        stocked_purchased(),
        vec![
            export(PURCHASED, 1, "1000"),
            scrap_sold(PURCHASED, 2, "0.5"),
        ],
    ]))
    .ledger;
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::ScrapExceedsAllowance,
        About::Material(2),
    );
}

/// Bags whose LDPE is only 80% bonded: 1 kg per kg, 0.8 kg of it charged
/// to the bonded balance, and a scrap allowance of 1 × 0.04 × 0.8 = 0.032
/// kg per kg.
fn partly_bonded_bags() -> Vec<Value> {
    let partly_bonded = unit_consumption(
        PURCHASED,
        1,
        vec![
            uc_line(1, "0.95", "0.05")
                .with("tangible_loss_rate", "0.04")
                .with("bonded_share", "0.8"),
            uc_line(2, "0.02", "0"),
        ],
    );
    vec![
        purchased_manual(),
        partly_bonded,
        import(PURCHASED, 1, "10000"),
        import(PURCHASED, 2, "200"),
    ]
}

#[test]
fn scrap_exceeds_allowance_charges_only_the_bonded_share() {
    // 1000 kg of bags: allowance 1000 × 0.032 = 32 kg, consumed 800 kg.
    let within = given(lines([
        partly_bonded_bags(),
        vec![export(PURCHASED, 1, "1000"), scrap_sold(PURCHASED, 1, "32")],
    ]))
    .ledger;
    assert_eq!(
        figure(&within, PURCHASED, 1, "scrap_allowance"),
        "32.000000"
    );
    assert_eq!(figure(&within, PURCHASED, 1, "consumed"), "800.000000");
    assert_no_finding(&within, PURCHASED, RuleId::ScrapExceedsAllowance);
    let beyond = given(lines([
        partly_bonded_bags(),
        vec![
            export(PURCHASED, 1, "1000"),
            scrap_sold(PURCHASED, 1, "32.000001"),
        ],
    ]))
    .ledger;
    assert_finding(
        &beyond,
        PURCHASED,
        RuleId::ScrapExceedsAllowance,
        About::Material(1),
    );
}

#[test]
fn seal_late_report_is_not_found_five_working_days_after_sealing() {
    // Sealed Friday 2026-05-22; Friday 2026-05-29 is the fifth working day,
    // and Sunday 2026-05-31 adds none.
    for reported_on in ["2026-05-29", "2026-05-31"] {
        let ledger = given([
            purchased_manual(),
            goods_sealed(PURCHASED, "2026-05-22", reported_on),
        ])
        .ledger;
        assert_no_finding(&ledger, PURCHASED, RuleId::SealLateReport);
    }
}

#[test]
fn seal_late_report_is_found_six_working_days_after_sealing() {
    // Monday 2026-06-01 is the sixth working day after Friday 2026-05-22.
    let ledger = given([
        purchased_manual(),
        goods_sealed(PURCHASED, "2026-05-22", "2026-06-01").id("seal"),
    ])
    .ledger;
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::SealLateReport,
        About::Event("seal"),
    );
}

/// Bags exported on 2026-06-11: the report is due 30 days later, by
/// 2026-07-11.
fn exported_on_june_11() -> Vec<Value> {
    lines([
        stocked_purchased(),
        vec![export(PURCHASED, 1, "1000").on("2026-06-11").id("june-out")],
    ])
}

#[test]
fn verification_late_is_not_found_30_days_after_the_last_export() {
    let ledger = given(lines([
        exported_on_june_11(),
        vec![report_everything("2026-07-11")],
    ]))
    .ledger;
    assert_no_finding(&ledger, PURCHASED, RuleId::VerificationLate);
}

#[test]
fn verification_late_is_found_31_days_after_the_last_export() {
    let ledger = given(lines([
        exported_on_june_11(),
        vec![report_everything("2026-07-12")],
    ]))
    .ledger;
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::VerificationLate,
        About::Event("p-rep"),
    );
}

#[test]
fn verification_late_is_found_on_the_last_report() {
    let ledger = given(lines([
        exported_on_june_11(),
        vec![
            reported(PURCHASED, "2026-07-01", &[(1, "9000"), (2, "180")]).id("first-rep"),
            reported(PURCHASED, "2026-07-20", &[(1, "9000"), (2, "180")]).id("second-rep"),
        ],
    ]))
    .ledger;
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::VerificationLate,
        About::Event("second-rep"),
    );
}

#[test]
fn verification_late_leaves_a_reversed_export_out() {
    // Exports on 2026-05-01 and 2026-06-11; once the later one is reversed
    // the report is due by 2026-05-31.
    let history = lines([
        stocked_purchased(),
        vec![
            export(PURCHASED, 1, "1000").on("2026-05-01"),
            export(PURCHASED, 1, "1000").on("2026-06-11").id("june-out"),
        ],
    ]);
    let standing = given(lines([
        history.clone(),
        vec![report_everything("2026-06-15")],
    ]))
    .ledger;
    assert_no_finding(&standing, PURCHASED, RuleId::VerificationLate);
    let reversed = given(lines([
        history,
        vec![
            reversal(PURCHASED, "june-out").on("2026-06-12"),
            report_everything("2026-06-15"),
        ],
    ]))
    .ledger;
    assert_finding(
        &reversed,
        PURCHASED,
        RuleId::VerificationLate,
        About::Event("p-rep"),
    );
}

#[test]
fn verification_late_counts_from_expiry_without_any_export() {
    // Valid until 2026-12-31: due by 2027-01-30.
    let in_time = given(lines([
        stocked_purchased(),
        vec![report_everything("2027-01-30")],
    ]))
    .ledger;
    assert_no_finding(&in_time, PURCHASED, RuleId::VerificationLate);
    let late = given(lines([
        stocked_purchased(),
        vec![report_everything("2027-01-31")],
    ]))
    .ledger;
    assert_finding(
        &late,
        PURCHASED,
        RuleId::VerificationLate,
        About::Event("p-rep"),
    );
}

#[test]
fn verification_late_counts_from_expiry_when_it_is_earlier_than_the_last_export() {
    // An export recorded after expiry (2026-12-31): the report is still due
    // 30 days after expiry, by 2027-01-30, not 30 days after the export.
    let expired_export = given(stocked_purchased())
        .when_recorded(export(PURCHASED, 1, "1000").on("2027-01-10"))
        .then_recorded_with(RuleId::ManualExpired);
    let mut in_time = expired_export.clone();
    in_time
        .record(report_everything("2027-01-30"), Mode::Strict)
        .expect("a report is accepted");
    assert_no_finding(&in_time, PURCHASED, RuleId::VerificationLate);
    let mut late = expired_export;
    late.record(report_everything("2027-02-05"), Mode::Strict)
        .expect("a report is accepted");
    assert_finding(
        &late,
        PURCHASED,
        RuleId::VerificationLate,
        About::Event("p-rep"),
    );
}

#[test]
fn verification_late_is_not_found_for_an_account_book() {
    let ledger = given([
        account_book(),
        import(BOOK, 1, "100"),
        reported(BOOK, "2027-06-30", &[(1, "100")]),
    ])
    .ledger;
    assert_no_finding(&ledger, BOOK, RuleId::VerificationLate);
}

/// 6000 kg of bags exported: LDPE 10000 − 6000 = 4000 kg remain, and
/// masterbatch 200 − 6000 × 0.02 = 80 kg.
fn bags_exported_and_reported(ldpe_remaining: &str) -> MemoryLedger {
    given(lines([
        stocked_purchased(),
        vec![
            export(PURCHASED, 1, "6000"),
            reported(PURCHASED, "2026-03-01", &[(1, ldpe_remaining), (2, "80")]),
        ],
    ]))
    .ledger
}

#[test]
fn verification_short_and_surplus_are_not_found_when_the_declared_remaining_balances() {
    for declared in ["4000", "4000.0000004"] {
        let ledger = bags_exported_and_reported(declared);
        assert_no_finding(&ledger, PURCHASED, RuleId::VerificationShort);
        assert_no_finding(&ledger, PURCHASED, RuleId::VerificationSurplus);
        assert_eq!(ledger.report(PURCHASED)["status"], "balanced");
    }
}

#[test]
fn verification_short_is_found_when_less_remains_than_expected() {
    let ledger = bags_exported_and_reported("3999.5");
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::VerificationShort,
        About::Material(1),
    );
    assert_no_finding(&ledger, PURCHASED, RuleId::VerificationSurplus);
    assert_eq!(figure(&ledger, PURCHASED, 1, "difference"), "-0.500000");
    assert_eq!(figure(&ledger, PURCHASED, 1, "status"), "short");
    assert_eq!(ledger.report(PURCHASED)["status"], "short");
}

#[test]
fn verification_short_is_found_for_a_material_the_report_leaves_out() {
    let ledger = given(lines([
        stocked_purchased(),
        vec![
            export(PURCHASED, 1, "6000"),
            reported(PURCHASED, "2026-03-01", &[(1, "4000")]),
        ],
    ]))
    .ledger;
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::VerificationShort,
        About::Material(2),
    );
    assert_eq!(figure(&ledger, PURCHASED, 2, "difference"), "-80.000000");
}

#[test]
fn verification_short_counts_from_the_opening_of_an_account_books_open_period() {
    // Period 1 ends with 1000 kg of LDPE and 20 kg of masterbatch declared.
    // Period 2 exports 500 kg of bags: 1000 − 500 = 500 and 20 − 10 = 10
    // expected, against 499 and 10 declared.
    let ledger = given([
        account_book(),
        bag_unit_consumption().with("manual", BOOK),
        import(BOOK, 1, "1000"),
        import(BOOK, 2, "20"),
        reported(BOOK, "2026-03-31", &[(1, "1000"), (2, "20")]),
        period_closed(BOOK).on("2026-03-31"),
        export(BOOK, 1, "500").on("2026-04-15"),
        reported(BOOK, "2026-06-30", &[(1, "499"), (2, "10")]),
    ])
    .ledger;
    assert_eq!(figure(&ledger, BOOK, 1, "opening"), "1000.000000");
    assert_eq!(figure(&ledger, BOOK, 1, "imported"), "0.000000");
    assert_eq!(figure(&ledger, BOOK, 1, "expected_remaining"), "500.000000");
    assert_finding(&ledger, BOOK, RuleId::VerificationShort, About::Material(1));
    assert_eq!(figure(&ledger, BOOK, 1, "difference"), "-1.000000");
    assert_eq!(figure(&ledger, BOOK, 2, "status"), "balanced");
}

#[test]
fn verification_surplus_is_found_when_more_remains_than_expected() {
    let ledger = bags_exported_and_reported("4000.25");
    assert_finding(
        &ledger,
        PURCHASED,
        RuleId::VerificationSurplus,
        About::Material(1),
    );
    assert_no_finding(&ledger, PURCHASED, RuleId::VerificationShort);
    assert_eq!(figure(&ledger, PURCHASED, 1, "difference"), "0.250000");
    assert_eq!(ledger.report(PURCHASED)["status"], "surplus");
}

#[test]
fn verification_short_and_surplus_are_not_found_before_the_manual_is_reported() {
    let ledger = given(lines([
        stocked_purchased(),
        vec![export(PURCHASED, 1, "6000")],
    ]))
    .ledger;
    assert_no_finding(&ledger, PURCHASED, RuleId::VerificationShort);
    assert_no_finding(&ledger, PURCHASED, RuleId::VerificationSurplus);
    assert_eq!(ledger.report(PURCHASED)["status"], "not_reported");
}

/// A work order of 1000 kg of bags, against a declared 1 kg of LDPE per kg.
fn bags_work_order(ldpe_issued: &str) -> MemoryLedger {
    given(lines([
        stocked_purchased(),
        vec![work_order(PURCHASED, 1, "1000", &[(1, ldpe_issued)])],
    ]))
    .ledger
}

fn work_order_deviation(ledger: &MemoryLedger) -> Value {
    ledger.report(PURCHASED)["work_orders"][0]["deviation"].clone()
}

#[test]
fn work_order_deviation_is_not_found_within_two_percent() {
    // 1020 ÷ 1000 = 1.02 against 1: exactly 2%, not beyond.
    for (issued, deviation) in [("1020", "0.020000"), ("980", "-0.020000")] {
        let ledger = bags_work_order(issued);
        assert_eq!(work_order_deviation(&ledger), deviation);
        assert_no_finding(&ledger, PURCHASED, RuleId::WorkOrderDeviation);
    }
}

#[test]
fn work_order_deviation_is_found_beyond_two_percent() {
    for (issued, deviation) in [("1020.001", "0.020001"), ("979.999", "-0.020001")] {
        let ledger = bags_work_order(issued);
        assert_eq!(work_order_deviation(&ledger), deviation);
        assert_finding(
            &ledger,
            PURCHASED,
            RuleId::WorkOrderDeviation,
            About::Material(1),
        );
    }
}

#[test]
fn work_order_deviation_is_not_found_against_unit_consumption_without_bonded_share() {
    // Declared 1 kg per kg whatever the bonded share: 1020 is 2% off.
    let ledger = given(lines([
        partly_bonded_bags(),
        vec![work_order(PURCHASED, 1, "1000", &[(1, "1020")])],
    ]))
    .ledger;
    let line = &ledger.report(PURCHASED)["work_orders"][0];
    assert_eq!(line["declared_unit_consumption"], "1.000000");
    assert_eq!(line["deviation"], "0.020000");
    assert_no_finding(&ledger, PURCHASED, RuleId::WorkOrderDeviation);
}

// ---------------------------------------------------------------------------
// Every rule is covered
// ---------------------------------------------------------------------------

macro_rules! coverage {
    ($( $rule:ident => [$($test:ident),* $(,)?] ),* $(,)?) => {
        /// Each rule with the tests that pin it down (the functions must
        /// exist, so the table cannot name a test that is not there).
        fn coverage() -> Vec<(RuleId, Vec<&'static str>)> {
            vec![ $( (RuleId::$rule, vec![ $( { let _: fn() = $test; stringify!($test) } ),* ]) ),* ]
        }
    };
}

coverage! {
    ManualUnknown => [
        manual_unknown_accepts_a_movement_on_a_registered_manual,
        manual_unknown_refuses_a_movement_on_a_manual_never_registered,
        manual_unknown_comes_before_what_the_movement_refers_to,
        manual_unknown_is_refused_even_in_record_mode,
    ],
    ManualDuplicate => [
        manual_duplicate_accepts_registering_another_manual_number,
        manual_duplicate_refuses_registering_a_manual_number_twice,
        manual_duplicate_is_refused_even_in_record_mode,
    ],
    ManualClosed => [
        manual_closed_is_the_only_finding_attached_when_the_mode_does_not_fit_either,
        manual_closed_accepts_a_movement_on_a_reported_manual_not_yet_closed,
        manual_closed_refuses_any_movement_after_closure,
        manual_closed_comes_before_a_supervision_mode_that_does_not_fit,
        manual_closed_comes_before_manual_expired,
        manual_closed_is_recorded_with_the_finding_in_record_mode,
    ],
    ManualExpired => [
        manual_expired_accepts_an_import_on_the_valid_until_date,
        manual_expired_refuses_an_import_the_day_after_the_valid_until_date,
        manual_expired_refuses_exports_and_carry_overs_after_the_valid_until_date,
        manual_expired_does_not_apply_to_returning_materials_abroad,
        manual_expired_accepts_an_import_within_an_extended_validity,
        manual_expired_comes_before_a_supervision_mode_that_does_not_fit,
        manual_expired_comes_before_import_exceeds_registered,
        manual_expired_is_recorded_with_the_finding_in_record_mode,
    ],
    ManualNotAccountBook => [
        manual_not_account_book_accepts_closing_a_period_of_an_account_book,
        manual_not_account_book_refuses_closing_a_period_of_a_manual,
        manual_not_account_book_comes_before_the_manual_being_closed,
        manual_not_account_book_is_refused_even_in_record_mode,
    ],
    ItemUnknown => [
        item_unknown_accepts_a_registered_material,
        item_unknown_refuses_a_material_the_manual_does_not_list,
        item_unknown_refuses_unit_consumption_of_a_product_the_manual_does_not_list,
        item_unknown_refuses_setting_the_quantity_of_an_unregistered_item,
        item_unknown_comes_before_an_invalid_quantity,
        item_unknown_in_one_list_comes_before_an_invalid_quantity_in_another,
        item_unknown_in_set_quantities_comes_before_an_invalid_added_quantity,
        item_unknown_comes_before_the_manual_being_closed,
        item_unknown_is_refused_even_in_record_mode,
    ],
    ItemUnitMismatch => [
        item_unit_mismatch_accepts_the_registered_unit,
        item_unit_mismatch_refuses_a_unit_other_than_the_registered_one,
        item_unit_mismatch_refuses_a_product_unit_other_than_the_registered_one,
        item_unit_mismatch_comes_before_an_invalid_quantity,
        item_unit_mismatch_is_refused_even_in_record_mode,
    ],
    ItemDuplicate => [
        item_duplicate_accepts_adding_a_new_item_number,
        item_duplicate_refuses_adding_an_item_number_already_registered,
        item_duplicate_refuses_adding_a_product_number_already_registered,
        item_duplicate_is_refused_even_in_record_mode,
    ],
    QuantityInvalid => [
        quantity_invalid_accepts_a_small_positive_quantity,
        quantity_invalid_refuses_a_zero_quantity,
        quantity_invalid_refuses_a_negative_quantity,
        quantity_invalid_refuses_a_zero_quantity_in_a_list,
        quantity_invalid_refuses_a_zero_quantity_exchanged_in,
        quantity_invalid_refuses_a_zero_quantity_issued_to_a_work_order,
        quantity_invalid_refuses_registering_a_zero_quantity,
        quantity_invalid_accepts_a_declared_remaining_of_zero_but_not_below,
        quantity_invalid_comes_before_balance_insufficient,
        quantity_invalid_is_refused_even_in_record_mode,
    ],
    ImportExceedsRegistered => [
        import_exceeds_registered_accepts_imports_up_to_the_registered_quantity,
        import_exceeds_registered_refuses_an_import_over_the_registered_quantity,
        import_exceeds_registered_counts_a_reversed_import_out,
        import_exceeds_registered_follows_an_amended_registered_quantity,
        import_exceeds_registered_is_recorded_with_the_finding_in_record_mode,
    ],
    ExportExceedsRegistered => [
        export_exceeds_registered_accepts_exports_up_to_the_registered_quantity,
        export_exceeds_registered_refuses_an_export_over_the_registered_quantity,
        export_exceeds_registered_comes_before_balance_insufficient,
        export_exceeds_registered_is_recorded_with_the_finding_in_record_mode,
    ],
    BalanceInsufficient => [
        balance_insufficient_accepts_an_export_using_up_the_whole_balance,
        balance_insufficient_refuses_an_export_beyond_the_balance,
        balance_insufficient_adds_up_materials_and_products_of_one_domestic_sale,
        balance_insufficient_does_not_judge_products_without_unit_consumption,
        balance_insufficient_refuses_reversing_an_import_already_consumed,
        balance_insufficient_accepts_reversing_an_import_not_yet_consumed,
        balance_insufficient_is_recorded_with_the_finding_in_record_mode,
    ],
    UnitConsumptionInvalid => [
        unit_consumption_invalid_accepts_rates_at_their_bounds,
        unit_consumption_invalid_refuses_rates_outside_their_bounds,
        unit_consumption_invalid_is_recorded_with_the_finding_in_record_mode,
    ],
    UnitConsumptionClosed => [
        unit_consumption_closed_accepts_changing_unit_consumption_after_the_report,
        unit_consumption_closed_refuses_declaring_unit_consumption_on_a_closed_manual,
        unit_consumption_closed_comes_before_unit_consumption_invalid,
        unit_consumption_closed_is_recorded_with_the_finding_in_record_mode,
    ],
    UnitConsumptionMissing => [
        unit_consumption_missing_is_found_for_a_product_moved_without_unit_consumption,
        unit_consumption_missing_is_found_for_a_version_never_declared,
        unit_consumption_missing_is_not_found_once_declared_before_the_report,
        unit_consumption_missing_is_not_found_before_the_manual_is_reported,
    ],
    SubstitutionConsigned => [
        substitution_consigned_accepts_the_same_substitution_under_purchased_processing,
        substitution_consigned_refuses_substitution_under_consigned_processing,
        substitution_consigned_comes_before_substitution_other_enterprise,
        substitution_consigned_is_recorded_with_the_finding_in_record_mode,
    ],
    SubstitutionOtherEnterprise => [
        substitution_other_enterprise_accepts_goods_of_the_operating_or_processing_enterprise,
        substitution_other_enterprise_refuses_goods_of_another_enterprise,
        substitution_other_enterprise_comes_before_substitution_not_equivalent,
        substitution_other_enterprise_is_recorded_with_the_finding_in_record_mode,
    ],
    SubstitutionNotEquivalent => [
        substitution_not_equivalent_accepts_the_same_hs_code_spec_and_quantity,
        substitution_not_equivalent_refuses_another_hs_code_spec_or_quantity,
        substitution_not_equivalent_is_recorded_with_the_finding_in_record_mode,
    ],
    OutwardNotApproved => [
        outward_not_approved_accepts_outward_processing_with_its_approval,
        outward_not_approved_refuses_outward_processing_without_approval,
        outward_not_approved_comes_before_outward_reoutsourced,
        outward_not_approved_is_recorded_with_the_finding_in_record_mode,
    ],
    OutwardReoutsourced => [
        outward_reoutsourced_accepts_shipping_from_an_enterprise_that_received_nothing,
        outward_reoutsourced_refuses_a_contractor_sending_the_goods_on,
        outward_reoutsourced_is_recorded_with_the_finding_in_record_mode,
    ],
    OutwardOutstanding => [
        outward_outstanding_is_found_across_account_book_periods,
        outward_outstanding_is_not_found_once_returned_in_a_later_period,
        outward_outstanding_is_found_for_goods_still_at_a_contractor_once_reported,
        outward_outstanding_is_not_found_when_everything_came_back,
        outward_outstanding_is_not_found_when_products_came_back_for_the_materials,
        outward_outstanding_is_not_found_before_the_manual_is_reported,
    ],
    ExchangeProcessed => [
        exchange_processed_accepts_exchanging_out_the_whole_unprocessed_balance,
        exchange_processed_refuses_exchanging_out_more_than_the_balance,
        exchange_processed_is_named_where_the_balance_would_fall_below_zero,
        exchange_processed_counts_materials_already_consumed_as_processed,
        exchange_processed_is_recorded_with_the_finding_in_record_mode,
    ],
    DomesticSaleNotApproved => [
        domestic_sale_not_approved_accepts_a_sale_with_its_approval,
        domestic_sale_not_approved_refuses_a_sale_without_approval,
        domestic_sale_not_approved_comes_before_balance_insufficient,
        domestic_sale_not_approved_is_recorded_with_the_finding_in_record_mode,
    ],
    DomesticSaleInterestMismatch => [
        domestic_sale_interest_mismatch_counts_from_the_period_close_of_an_account_book,
        domestic_sale_interest_mismatch_is_not_found_within_a_fen_of_the_computed_interest,
        domestic_sale_interest_mismatch_is_found_more_than_a_fen_from_the_computed_interest,
        domestic_sale_interest_mismatch_is_not_judged_without_a_stated_rate,
    ],
    ModeMismatch => [
        mode_mismatch_accepts_the_codes_of_the_manuals_trade_mode,
        mode_mismatch_refuses_a_purchased_code_on_a_consigned_manual,
        mode_mismatch_refuses_a_consigned_code_on_a_purchased_manual,
        mode_mismatch_accepts_a_zone_code_only_on_a_zone_book,
        mode_mismatch_refuses_a_scrap_code_that_does_not_fit_the_disposal,
        mode_mismatch_comes_before_the_movements_own_rules,
        mode_mismatch_is_recorded_with_the_finding_in_record_mode,
    ],
    RemnantMismatch => [
        remnant_mismatch_accepts_remnants_to_the_same_enterprises_next_manual,
        remnant_mismatch_accepts_remnants_to_a_manual_the_ledger_does_not_hold,
        remnant_mismatch_refuses_remnants_to_another_operating_enterprise,
        remnant_mismatch_refuses_remnants_to_another_processing_enterprise,
        remnant_mismatch_refuses_remnants_to_another_trade_mode,
        remnant_mismatch_refuses_remnants_to_a_manual_without_the_same_material,
        remnant_mismatch_is_recorded_with_the_finding_in_record_mode,
    ],
    CarryoverMismatch => [
        carryover_mismatch_is_not_found_when_both_sides_agree,
        carryover_mismatch_is_found_when_the_quantities_differ,
        carryover_mismatch_is_found_when_the_hs_headings_differ,
        carryover_mismatch_is_not_found_when_only_the_hs_subheading_differs,
        carryover_mismatch_is_found_when_the_units_differ,
        carryover_mismatch_is_not_found_between_different_batches,
    ],
    CarryoverOrder => [
        carryover_order_is_not_found_when_both_sides_declare_the_same_day,
        carryover_order_is_found_when_the_sending_side_declares_first,
    ],
    CarryoverLate => [
        carryover_late_is_not_found_exactly_90_days_after_receipt,
        carryover_late_is_found_91_days_after_receipt,
        carryover_late_is_found_91_days_after_shipment_on_the_sending_side,
        carryover_late_is_not_found_exactly_30_days_after_receipt_on_a_zone_book,
        carryover_late_is_found_31_days_after_receipt_on_a_zone_book,
    ],
    ScrapExceedsAllowance => [
        scrap_exceeds_allowance_charges_only_the_bonded_share,
        scrap_exceeds_allowance_is_not_found_for_scrap_up_to_the_allowance,
        scrap_exceeds_allowance_is_found_for_scrap_beyond_the_allowance,
        scrap_exceeds_allowance_is_found_for_a_material_with_no_tangible_loss,
    ],
    SealLateReport => [
        seal_late_report_is_not_found_five_working_days_after_sealing,
        seal_late_report_is_found_six_working_days_after_sealing,
    ],
    VerificationLate => [
        verification_late_counts_from_expiry_when_it_is_earlier_than_the_last_export,
        verification_late_is_not_found_30_days_after_the_last_export,
        verification_late_is_found_31_days_after_the_last_export,
        verification_late_is_found_on_the_last_report,
        verification_late_leaves_a_reversed_export_out,
        verification_late_counts_from_expiry_without_any_export,
        verification_late_is_not_found_for_an_account_book,
    ],
    VerificationShort => [
        verification_short_counts_from_the_opening_of_an_account_books_open_period,
        verification_short_and_surplus_are_not_found_when_the_declared_remaining_balances,
        verification_short_is_found_when_less_remains_than_expected,
        verification_short_is_found_for_a_material_the_report_leaves_out,
        verification_short_and_surplus_are_not_found_before_the_manual_is_reported,
    ],
    VerificationSurplus => [
        verification_short_and_surplus_are_not_found_when_the_declared_remaining_balances,
        verification_surplus_is_found_when_more_remains_than_expected,
        verification_short_and_surplus_are_not_found_before_the_manual_is_reported,
    ],
    WorkOrderDeviation => [
        work_order_deviation_is_not_found_against_unit_consumption_without_bonded_share,
        work_order_deviation_is_not_found_within_two_percent,
        work_order_deviation_is_found_beyond_two_percent,
    ],
    ReversalUnknown => [
        reversal_unknown_accepts_reversing_a_standing_movement,
        reversal_unknown_refuses_reversing_an_event_the_ledger_does_not_hold,
        reversal_unknown_refuses_reversing_what_is_not_a_movement,
        reversal_unknown_refuses_reversing_a_reversal,
        reversal_unknown_refuses_reversing_a_movement_twice,
        reversal_unknown_refuses_reversing_a_movement_of_another_manual,
        reversal_unknown_is_refused_even_in_record_mode,
    ],
}

#[test]
fn every_rule_identifier_has_its_cases() {
    let table = coverage();
    let covered: Vec<RuleId> = table.iter().map(|(rule, _)| *rule).collect();
    for rule in RuleId::ALL {
        assert!(covered.contains(rule), "no case for {rule}");
    }
    for (rule, tests) in &table {
        assert!(!tests.is_empty(), "{rule} has no test");
        // A rule that rejects has a case it accepts and one it refuses; a
        // finding has a history without it and one with it.
        let accepts = tests.iter().any(|t| {
            t.contains("_accepts_") || t.contains("_not_found") || t.contains("_not_judged")
        });
        let refuses = tests.iter().any(|t| {
            t.contains("_refuses_") || t.contains("_is_found") || t.contains("_are_found")
        });
        assert!(accepts && refuses, "{rule}: {tests:?}");
    }
    assert_eq!(table.len(), RuleId::ALL.len(), "one row per rule");
}

#[test]
fn only_the_rules_that_cannot_be_applied_are_refused_in_record_mode() {
    let refused_in_record_mode: Vec<&str> = RuleId::ALL
        .iter()
        .filter(|rule| !rule.recordable())
        .map(|rule| rule.as_str())
        .collect();
    assert_eq!(
        refused_in_record_mode,
        [
            "manual.unknown",
            "manual.duplicate",
            "manual.not_account_book",
            "item.unknown",
            "item.unit_mismatch",
            "item.duplicate",
            "quantity.invalid",
            "reversal.unknown",
        ]
    );
}
