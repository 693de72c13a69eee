//! Laws over randomly generated valid histories of one or two manuals:
//! a replay from scratch equals the state kept as the ledger went; a
//! reversal restores every figure; recording the same lines again changes
//! nothing; independent manuals do not care how their lines interleave.
//!
//! A history is generated as a list of intended operations. Each is turned
//! into a movement line against the ledger as it stands (a reversal picks one
//! of the movements still standing), offered in strict mode, and kept only if
//! accepted: what remains is a valid history by construction.

use std::collections::{BTreeMap, BTreeSet};

use bondledger_domain::movement::ItemNo;
use bondledger_domain::state::MaterialFigures;
use bondledger_domain::testing::MemoryLedger;
use bondledger_domain::{ManualNo, ManualState, Mode, MovementKind, Replay};
use chrono::{Duration, NaiveDate};
use proptest::prelude::*;
use proptest::sample::Index;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const FIRST: &str = "C22012600101";
const SECOND: &str = "C22012600202";
const ENTERPRISE: &str = "3202930001";
const CONTRACTOR: &str = "3202990031";

/// Net consumption, loss rates (with half of each for a tangible part) and
/// bonded shares a bill of materials is drawn from. Some divide exactly,
/// some (0.92 ÷ 0.98) do not.
const NETS: &[&str] = &["0.5", "0.92", "1.2", "0.015", "2"];
const LOSS_RATES: &[&str] = &["0", "0.02", "0.05", "0.1"];
const HALF_LOSS_RATES: &[&str] = &["0", "0.01", "0.025", "0.05"];
const BONDED_SHARES: &[&str] = &["1", "0.8", "0.5", "0.35"];

/// One material line of a bill of materials, as indices into the tables.
#[derive(Debug, Clone, Copy)]
struct BomLine {
    net: usize,
    loss: usize,
    /// 0: no tangible loss, 1: half of the loss, 2: all of it (the default).
    tangible: usize,
    share: usize,
}

type Bom = [BomLine; 2];

#[derive(Debug, Clone)]
struct Plan {
    manual: &'static str,
    consigned: bool,
    /// The bills of materials of products 1 and 2, declared as version "1".
    boms: [Bom; 2],
}

/// What a history intends to do next. Quantities are in hundredths.
#[derive(Debug, Clone)]
enum Op {
    Import {
        material: u32,
        qty: u32,
    },
    Export {
        product: u32,
        qty: u32,
        named_version: bool,
    },
    ProductReturned {
        product: u32,
        qty: u32,
    },
    ProductReexported {
        product: u32,
        qty: u32,
    },
    CarryoverOut {
        product: u32,
        qty: u32,
    },
    CarryoverIn {
        material: u32,
        qty: u32,
    },
    RemnantOut {
        material: u32,
        qty: u32,
    },
    RemnantIn {
        material: u32,
        qty: u32,
    },
    DomesticSale {
        material: u32,
        product: u32,
        qty: u32,
        which: u8,
    },
    MaterialsReturned {
        material: u32,
        qty: u32,
    },
    Exchanged {
        material: u32,
        qty_out: u32,
        qty_in: u32,
    },
    WrittenOff {
        kind: u8,
        material: u32,
        qty: u32,
    },
    ScrapDisposed {
        material: u32,
        qty: u32,
    },
    DefectiveDisposed {
        product: u32,
        qty: u32,
    },
    OutwardShipped {
        material: u32,
        qty: u32,
        product: u32,
        product_qty: u32,
    },
    OutwardReturned {
        material: u32,
        qty: u32,
    },
    WorkOrder {
        product: u32,
        qty: u32,
        issued: u32,
    },
    Sealed {
        days_before: i64,
    },
    UnitConsumptionRevised {
        product: u32,
        bom: Bom,
    },
    Reported {
        remaining: u32,
    },
    Reverse {
        pick: Index,
    },
}

fn qty(hundredths: u32) -> String {
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

fn items(list: &[(u32, u32)]) -> Value {
    list.iter()
        .map(|(item, q)| json!({"item": item, "qty": qty(*q)}))
        .collect()
}

fn date_of(step: usize) -> String {
    let start = NaiveDate::from_ymd_opt(2026, 2, 1).expect("a calendar date");
    let offset = i64::try_from(step).expect("a small step");
    (start + Duration::days(offset))
        .format("%Y-%m-%d")
        .to_string()
}

fn bom_lines(bom: &Bom) -> Value {
    bom.iter()
        .enumerate()
        .map(|(index, line)| {
            let mut value = json!({
                "material": index + 1,
                "net": NETS[line.net],
                "loss_rate": LOSS_RATES[line.loss],
                "bonded_share": BONDED_SHARES[line.share],
            });
            let tangible = match line.tangible {
                0 => Some("0"),
                1 => Some(HALF_LOSS_RATES[line.loss]),
                _ => None,
            };
            if let Some(tangible) = tangible {
                value["tangible_loss_rate"] = json!(tangible);
            }
            value
        })
        .collect()
}

impl Plan {
    /// The supervision-mode code for this manual's trade mode.
    fn code(&self, purchased: &'static str, consigned: &'static str) -> &'static str {
        if self.consigned {
            consigned
        } else {
            purchased
        }
    }

    fn registration(&self) -> Value {
        let material = |item: u32, hs: &str, name: &str| json!({"item": item, "hs": hs, "name": name, "spec": "A", "unit": "千克", "qty": "1000000"});
        let product = |item: u32, hs: &str, name: &str| json!({"item": item, "hs": hs, "name": name, "spec": "B", "unit": "千克", "qty": "1000000"});
        json!({"type": "manual_registered", "manual": self.manual, "date": "2026-01-05",
               "id": format!("{}-reg", self.manual),
               "trade_mode": if self.consigned { "consigned" } else { "purchased" },
               "enterprise": ENTERPRISE, "valid_until": "2026-12-31",
               "materials": [material(1, "3901100000", "低密度聚乙烯"), material(2, "3206499000", "色母粒")],
               "products": [product(1, "3923210000", "印刷聚乙烯袋"), product(2, "3920109090", "聚乙烯薄膜卷")]})
    }

    fn unit_consumption(&self, product: u32, version: &str, bom: &Bom, id: String) -> Value {
        json!({"type": "unit_consumption_declared", "manual": self.manual, "date": "2026-01-18",
               "id": id, "product": product, "version": version, "lines": bom_lines(bom)})
    }

    /// The registration, version "1" of both bills of materials and a first
    /// import of each material, so that most outflows that follow fit.
    fn opening_lines(&self) -> Vec<Value> {
        let import = |material: u32| {
            json!({"type": "material_imported", "manual": self.manual, "date": "2026-01-22",
                   "id": format!("{}-imp{material}", self.manual), "material": material,
                   "qty": "5000", "declaration": "220120261000010001",
                   "mode": self.code("0615", "0214")})
        };
        vec![
            self.registration(),
            self.unit_consumption(1, "1", &self.boms[0], format!("{}-uc1", self.manual)),
            self.unit_consumption(2, "1", &self.boms[1], format!("{}-uc2", self.manual)),
            import(1),
            import(2),
        ]
    }

    /// The movement line an operation intends, against the ledger as it
    /// stands; None where there is nothing to do (nothing left to reverse).
    fn line(&self, op: &Op, step: usize, ledger: &MemoryLedger) -> Option<Value> {
        let manual = self.manual;
        let declaration = format!("2201202610{:08}", step);
        let mut line = match op {
            Op::Import { material, qty: q } => json!({"type": "material_imported",
                "material": material, "qty": qty(*q), "declaration": declaration,
                "mode": self.code("0615", "0214")}),
            Op::Export {
                product,
                qty: q,
                named_version,
            } => {
                let mut line = json!({"type": "product_exported", "product": product,
                    "qty": qty(*q), "declaration": declaration, "mode": self.code("0615", "0214")});
                if *named_version {
                    line["uc_version"] = json!("1");
                }
                line
            }
            Op::ProductReturned { product, qty: q } => json!({"type": "product_returned",
                "product": product, "qty": qty(*q), "declaration": declaration,
                "mode": self.code("4600", "4400")}),
            Op::ProductReexported { product, qty: q } => json!({"type": "product_reexported",
                "product": product, "qty": qty(*q), "declaration": declaration,
                "mode": self.code("4600", "4400")}),
            Op::CarryoverOut { product, qty: q } => json!({"type": "carryover_out",
                "product": product, "qty": qty(*q), "declaration": declaration,
                "mode": self.code("0654", "0255"), "counterparty_manual": "C99000000001",
                "counterparty_enterprise": "3202999999", "hs": "3920109090",
                "shipped_on": date_of(step), "batch": format!("FH-{step}")}),
            Op::CarryoverIn { material, qty: q } => json!({"type": "carryover_in",
                "material": material, "qty": qty(*q), "declaration": declaration,
                "mode": self.code("0654", "0255"), "counterparty_manual": "C99000000002",
                "counterparty_enterprise": "3202999998", "received_on": date_of(step)}),
            Op::RemnantOut { material, qty: q } => json!({"type": "remnant_out",
                "material": material, "qty": qty(*q), "to_manual": "C99000000003",
                "approval": "YL2026-0003", "mode": self.code("0657", "0258")}),
            Op::RemnantIn { material, qty: q } => json!({"type": "remnant_in",
                "material": material, "qty": qty(*q), "from_manual": "C99000000004",
                "approval": "YL2026-0004", "mode": self.code("0657", "0258")}),
            Op::DomesticSale {
                material,
                product,
                qty: q,
                which,
            } => {
                let mut line = json!({"type": "domestic_sale", "approval": "NX2026-0088",
                    "declaration": declaration, "mode": self.code("0644", "0245"),
                    "duty": "100", "vat": "130", "interest_rate": "0.0035", "interest": "0.5"});
                if *which != 1 {
                    line["materials"] = items(&[(*material, *q)]);
                }
                if *which != 0 {
                    line["products"] = items(&[(*product, *q)]);
                }
                line
            }
            Op::MaterialsReturned { material, qty: q } => json!({"type": "materials_returned",
                "material": material, "qty": qty(*q), "declaration": declaration,
                "mode": self.code("0664", "0265")}),
            Op::Exchanged {
                material,
                qty_out,
                qty_in,
            } => json!({"type": "materials_exchanged",
                "material": material, "qty_out": qty(*qty_out), "qty_in": qty(*qty_in),
                "declaration": declaration, "mode": self.code("0700", "0300")}),
            Op::WrittenOff {
                kind,
                material,
                qty: q,
            } => {
                let kind = ["abandoned", "destroyed", "disaster_loss"][usize::from(*kind % 3)];
                let mut line = json!({"type": kind, "material": material, "qty": qty(*q),
                    "approval": "XH2026-0001"});
                if kind == "destroyed" {
                    line["mode"] = json!("0200");
                }
                line
            }
            Op::ScrapDisposed { material, qty: q } => json!({"type": "scrap_disposed",
                "material": material, "qty": qty(*q), "disposal": "destroyed", "mode": "0400"}),
            Op::DefectiveDisposed { product, qty: q } => json!({"type": "defective_disposed",
                "product": product, "qty": qty(*q), "disposal": "destroyed"}),
            Op::OutwardShipped {
                material,
                qty: q,
                product,
                product_qty,
            } => {
                let mut line = json!({"type": "outward_shipped", "contractor": CONTRACTOR,
                    "approval": "WF2026-0117", "materials": items(&[(*material, *q)])});
                if *product_qty > 0 {
                    line["products"] = items(&[(*product, *product_qty)]);
                }
                line
            }
            Op::OutwardReturned { material, qty: q } => json!({"type": "outward_returned",
                "contractor": CONTRACTOR, "materials": items(&[(*material, *q)])}),
            Op::WorkOrder {
                product,
                qty: q,
                issued,
            } => json!({"type": "work_order_completed",
                "order": format!("WO-{step}"), "product": product, "qty": qty(*q),
                "issued": items(&[(1, *issued)])}),
            Op::Sealed { days_before } => {
                let sealed_on = NaiveDate::parse_from_str(&date_of(step), "%Y-%m-%d")
                    .expect("a date of this file")
                    - Duration::days(*days_before);
                json!({"type": "goods_sealed", "authority": "南京市鼓楼区人民法院",
                       "sealed_on": sealed_on.format("%Y-%m-%d").to_string()})
            }
            Op::UnitConsumptionRevised { product, bom } => {
                json!({"type": "unit_consumption_declared",
                "product": product, "version": "2", "lines": bom_lines(bom)})
            }
            Op::Reported { remaining } => json!({"type": "reported",
                "declared_remaining": [{"item": 1, "qty": qty(*remaining)}, {"item": 2, "qty": "0"}]}),
            Op::Reverse { pick } => {
                let standing = standing_movements(ledger, manual);
                if standing.is_empty() {
                    return None;
                }
                json!({"type": "reversed", "event": pick.get(&standing).clone(), "reason": "录入错误"})
            }
        };
        line["manual"] = json!(manual);
        line["date"] = json!(date_of(step));
        line["id"] = json!(format!("{manual}-{step}"));
        Some(line)
    }
}

/// Ids of the movements of `manual` that may still be reversed.
fn standing_movements(ledger: &MemoryLedger, manual: &str) -> Vec<String> {
    let Some(state) = ledger
        .states
        .values()
        .find(|s| s.registration.manual.as_str() == manual)
    else {
        return Vec::new();
    };
    ledger
        .log
        .iter()
        .filter(|r| r.envelope.manual.as_str() == manual && r.kind().is_reversible())
        .filter_map(|r| r.envelope.id.clone())
        .filter(|id| !state.reversed.contains(id))
        .collect()
}

/// A ledger grown from plans and operations, keeping what was accepted.
#[derive(Debug, Clone, Default)]
struct Driver {
    ledger: MemoryLedger,
    /// Every line accepted, in order.
    accepted: Vec<Value>,
    steps: BTreeMap<&'static str, usize>,
}

impl Driver {
    fn open(&mut self, plan: &Plan) {
        for line in plan.opening_lines() {
            let shown = line.to_string();
            match self.ledger.record(line.clone(), Mode::Strict) {
                Ok(Some(_)) => self.accepted.push(line),
                other => panic!("{shown}: {other:?}"),
            }
        }
    }

    /// Offers an operation's line; returns it if it was accepted.
    fn offer(&mut self, plan: &Plan, op: &Op) -> Option<Value> {
        let step = self.steps.entry(plan.manual).or_default();
        *step += 1;
        let line = plan.line(op, *step, &self.ledger)?;
        match self.ledger.record(line.clone(), Mode::Strict) {
            Ok(Some(_)) => {
                self.accepted.push(line.clone());
                Some(line)
            }
            Ok(None) => panic!("ids are never repeated: {line}"),
            Err(_) => None,
        }
    }
}

fn build(plans: &[&Plan], ops: &[(usize, Op)]) -> Driver {
    let mut driver = Driver::default();
    for plan in plans {
        driver.open(plan);
    }
    for (which, op) in ops {
        driver.offer(plans[which % plans.len()], op);
    }
    driver
}

fn figures(ledger: &MemoryLedger, manual: &str) -> BTreeMap<u32, MaterialFigures> {
    ledger
        .state(manual)
        .figures()
        .into_iter()
        .map(|(item, f)| (item.0, f))
        .collect()
}

fn no_balance_below_zero(ledger: &MemoryLedger, manual: &str) -> bool {
    ledger
        .state(manual)
        .balances()
        .values()
        .all(|b| *b >= Decimal::ZERO)
}

fn reversal_of(manual: &str, event: &str, id: &str) -> Value {
    json!({"type": "reversed", "manual": manual, "date": "2026-11-30", "id": id,
           "event": event, "reason": "录入错误"})
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn bom_line() -> impl Strategy<Value = BomLine> {
    (
        0..NETS.len(),
        0..LOSS_RATES.len(),
        0..3usize,
        0..BONDED_SHARES.len(),
    )
        .prop_map(|(net, loss, tangible, share)| BomLine {
            net,
            loss,
            tangible,
            share,
        })
}

fn bom() -> impl Strategy<Value = Bom> {
    [bom_line(), bom_line()]
}

fn plan(manual: &'static str) -> impl Strategy<Value = Plan> {
    (any::<bool>(), [bom(), bom()]).prop_map(move |(consigned, boms)| Plan {
        manual,
        consigned,
        boms,
    })
}

fn item() -> impl Strategy<Value = u32> {
    1..=2u32
}

/// Inflows up to 2000 units, outflows up to 200: most outflows fit.
fn inflow() -> impl Strategy<Value = u32> {
    100..=200_000u32
}

fn outflow() -> impl Strategy<Value = u32> {
    1..=20_000u32
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (item(), inflow()).prop_map(|(material, qty)| Op::Import { material, qty }),
        6 => (item(), outflow(), any::<bool>())
            .prop_map(|(product, qty, named_version)| Op::Export { product, qty, named_version }),
        2 => (item(), outflow()).prop_map(|(product, qty)| Op::ProductReturned { product, qty }),
        1 => (item(), outflow()).prop_map(|(product, qty)| Op::ProductReexported { product, qty }),
        1 => (item(), outflow()).prop_map(|(product, qty)| Op::CarryoverOut { product, qty }),
        1 => (item(), outflow()).prop_map(|(material, qty)| Op::CarryoverIn { material, qty }),
        1 => (item(), outflow()).prop_map(|(material, qty)| Op::RemnantOut { material, qty }),
        1 => (item(), outflow()).prop_map(|(material, qty)| Op::RemnantIn { material, qty }),
        3 => (item(), item(), outflow(), 0..3u8).prop_map(|(material, product, qty, which)| {
            Op::DomesticSale { material, product, qty, which }
        }),
        1 => (item(), outflow()).prop_map(|(material, qty)| Op::MaterialsReturned { material, qty }),
        2 => (item(), outflow(), outflow())
            .prop_map(|(material, qty_out, qty_in)| Op::Exchanged { material, qty_out, qty_in }),
        2 => (0..3u8, item(), outflow())
            .prop_map(|(kind, material, qty)| Op::WrittenOff { kind, material, qty }),
        1 => (item(), outflow()).prop_map(|(material, qty)| Op::ScrapDisposed { material, qty }),
        1 => (item(), outflow()).prop_map(|(product, qty)| Op::DefectiveDisposed { product, qty }),
        2 => (item(), outflow(), item(), 0..2_000u32).prop_map(|(material, qty, product, product_qty)| {
            Op::OutwardShipped { material, qty, product, product_qty }
        }),
        1 => (item(), outflow()).prop_map(|(material, qty)| Op::OutwardReturned { material, qty }),
        1 => (item(), outflow(), outflow())
            .prop_map(|(product, qty, issued)| Op::WorkOrder { product, qty, issued }),
        1 => (0..15i64).prop_map(|days_before| Op::Sealed { days_before }),
        1 => (item(), bom()).prop_map(|(product, bom)| Op::UnitConsumptionRevised { product, bom }),
        1 => (0..100_000u32).prop_map(|remaining| Op::Reported { remaining }),
        5 => any::<Index>().prop_map(|pick| Op::Reverse { pick }),
    ]
}

/// Operations of two manuals: each paired with which manual it is for.
fn two_manual_ops() -> impl Strategy<Value = Vec<(usize, Op)>> {
    prop::collection::vec((0..2usize, op()), 0..40)
}

fn one_manual_ops() -> impl Strategy<Value = Vec<(usize, Op)>> {
    prop::collection::vec(op().prop_map(|op| (0usize, op)), 0..30)
}

// ---------------------------------------------------------------------------
// Laws
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The state kept as movements were recorded is the state a replay of
    /// the log from scratch gives, manual by manual.
    #[test]
    fn a_replay_from_scratch_equals_the_state_kept_incrementally(
        first in plan(FIRST),
        second in plan(SECOND),
        ops in two_manual_ops(),
    ) {
        let driver = build(&[&first, &second], &ops);
        let ledger = &driver.ledger;
        let mut replays: BTreeMap<ManualNo, Replay> = BTreeMap::new();
        for recorded in &ledger.log {
            let event = recorded.envelope.id.clone().expect("every generated line has an id");
            let counted = replays
                .entry(recorded.envelope.manual.clone())
                .or_default()
                .apply(recorded, &event);
            prop_assert!(counted, "{event} counted");
        }
        prop_assert_eq!(replays.len(), ledger.states.len());
        for (manual, replay) in replays {
            let replayed: ManualState = replay.into_state().expect("a registered manual");
            let kept = &ledger.states[&manual];
            prop_assert_eq!(replayed.figures(), kept.figures(), "figures of {}", manual);
            prop_assert_eq!(&replayed, kept, "state of {}", manual);
        }
    }

    /// The balances of some materials, worked out alone, are those of the
    /// whole manual's figures, after every movement of a history.
    #[test]
    fn the_balances_of_some_materials_are_those_of_all(
        first in plan(FIRST),
        ops in one_manual_ops(),
        picked in proptest::collection::btree_set(0_u32..6, 0..4),
    ) {
        let driver = build(&[&first], &ops);
        let mut replay = Replay::new();
        for recorded in &driver.ledger.log {
            let event = recorded.envelope.id.clone().expect("every generated line has an id");
            replay.apply(recorded, &event);
            let Some(state) = replay.state() else { continue };
            let items: BTreeSet<ItemNo> = picked.iter().map(|item| ItemNo(*item)).collect();
            let all = state.balances();
            let expected: BTreeMap<ItemNo, Decimal> = all
                .into_iter()
                .filter(|(item, _)| items.contains(item))
                .collect();
            prop_assert_eq!(state.balances_of(&items), expected, "after {}", event);
        }
    }

    /// Reversing a movement right after it was accepted restores every
    /// figure of its manual; and where no balance was below zero before the
    /// movement, that reversal is always accepted.
    #[test]
    fn reversing_a_movement_restores_every_figure(
        first in plan(FIRST),
        ops in one_manual_ops(),
    ) {
        let mut driver = Driver::default();
        driver.open(&first);
        for (_, op) in &ops {
            let before = driver.ledger.clone();
            let Some(line) = driver.offer(&first, op) else { continue };
            let kind = MovementKind::from_name(line["type"].as_str().expect("a type"))
                .expect("a movement type");
            if !kind.is_reversible() {
                continue;
            }
            let event = line["id"].as_str().expect("an id");
            let mut probe = driver.ledger.clone();
            let outcome = probe.record(reversal_of(FIRST, event, "probe"), Mode::Strict);
            match outcome {
                Ok(Some(_)) => {
                    prop_assert_eq!(
                        figures(&probe, FIRST),
                        figures(&before, FIRST),
                        "{} and its reversal", line
                    );
                }
                other => prop_assert!(
                    !no_balance_below_zero(&before, FIRST),
                    "reversal of {} refused: {:?}", line, other
                ),
            }
        }
    }

    /// Reversing any movement still standing, however long ago, gives the
    /// figures of the same history without that movement.
    #[test]
    fn reversing_an_earlier_movement_equals_the_history_without_it(
        first in plan(FIRST),
        ops in one_manual_ops(),
    ) {
        let driver = build(&[&first], &ops);
        for event in standing_movements(&driver.ledger, FIRST) {
            let mut reversed = driver.ledger.clone();
            let outcome = reversed.record(reversal_of(FIRST, &event, "probe"), Mode::Strict);
            if !matches!(outcome, Ok(Some(_))) {
                // Taking it out would leave a balance below zero: the
                // reversal is refused and there is nothing to compare.
                continue;
            }
            let mut without = MemoryLedger::new();
            for line in driver.accepted.iter().filter(|l| l["id"] != event.as_str()) {
                let outcome = without.record(line.clone(), Mode::Record);
                prop_assert!(matches!(outcome, Ok(Some(_))), "{} without {}: {:?}", line, event, outcome);
            }
            prop_assert_eq!(figures(&reversed, FIRST), figures(&without, FIRST), "without {}", event);
        }
    }

    /// Recording lines the ledger already holds, in either mode, appends
    /// nothing and changes no state.
    #[test]
    fn recording_the_same_lines_twice_changes_nothing(
        first in plan(FIRST),
        second in plan(SECOND),
        ops in two_manual_ops(),
    ) {
        let driver = build(&[&first, &second], &ops);
        let mut again = driver.ledger.clone();
        for mode in [Mode::Strict, Mode::Record] {
            for line in &driver.accepted {
                let outcome = again.record(line.clone(), mode);
                prop_assert!(matches!(outcome, Ok(None)), "{} again: {:?}", line, outcome);
            }
        }
        prop_assert_eq!(again.log.len(), driver.ledger.log.len());
        prop_assert_eq!(&again.states, &driver.ledger.states);
    }

    /// Two manuals that do not refer to each other end in the same states
    /// whichever way their lines are interleaved.
    #[test]
    fn the_interleaving_of_independent_manuals_changes_neither(
        first in plan(FIRST),
        second in plan(SECOND),
        first_ops in one_manual_ops(),
        second_ops in one_manual_ops(),
        interleaving in prop::collection::vec(any::<bool>(), 0..80),
    ) {
        let alone_first = build(&[&first], &first_ops);
        let alone_second = build(&[&second], &second_ops);
        let mut first_lines = alone_first.accepted.iter();
        let mut second_lines = alone_second.accepted.iter();
        let mut merged = Vec::new();
        for take_first in interleaving {
            let next = if take_first { first_lines.next() } else { second_lines.next() };
            merged.extend(next.cloned());
        }
        merged.extend(first_lines.cloned());
        merged.extend(second_lines.cloned());
        prop_assert_eq!(
            merged.len(),
            alone_first.accepted.len() + alone_second.accepted.len()
        );

        let mut together = MemoryLedger::new();
        for line in merged {
            let outcome = together.record(line.clone(), Mode::Strict);
            prop_assert!(matches!(outcome, Ok(Some(_))), "{} interleaved: {:?}", line, outcome);
        }
        for (manual, alone) in [(FIRST, &alone_first), (SECOND, &alone_second)] {
            prop_assert_eq!(figures(&together, manual), figures(&alone.ledger, manual));
            prop_assert_eq!(together.state(manual), alone.ledger.state(manual));
            prop_assert_eq!(together.report(manual), alone.ledger.report(manual));
        }
    }
}
