//! Deciding: a manual's state and a movement in, the movement to record or a
//! refusal out (domain §4). Rules are checked in the order §4 gives and the
//! first broken one is named.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use crate::event::{AttachedFinding, RecordedMovement};
use crate::movement::{
    Book, Envelope, ItemKind, ItemNo, ItemQty, ManualNo, Movement, MovementKind, TradeMode,
};
use crate::rules::{mode_fits, Refusal, RuleId};
use crate::state::{disposal_of, effects, Effect, ManualState, Registration, EXACTNESS_SLACK};

/// Live recording refuses a rule-breaking movement; a historical import
/// keeps it with the finding attached (domain §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Record,
}

/// The event a reversal names, as the ledger holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReversalTarget {
    pub manual: ManualNo,
    pub recorded: RecordedMovement,
}

/// What a decision may need to know beyond the manual's own state.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub mode: Mode,
    /// The other manual of a remnant carry-over, where the ledger holds it.
    pub counterparty: Option<&'a Registration>,
    /// The event a reversal names, where the ledger holds it.
    pub reversal_target: Option<&'a ReversalTarget>,
}

impl Context<'_> {
    pub fn new(mode: Mode) -> Self {
        Context {
            mode,
            counterparty: None,
            reversal_target: None,
        }
    }
}

/// Decides one movement against the state of its manual (`None`: the ledger
/// holds no such manual).
pub fn decide(
    state: Option<&ManualState>,
    envelope: Envelope,
    context: &Context,
) -> Result<RecordedMovement, Refusal> {
    let state = match (&envelope.movement, state) {
        (Movement::ManualRegistered(_), Some(_)) => {
            return Err(refuse(
                RuleId::ManualDuplicate,
                format!("manual {} is already registered", envelope.manual),
            ));
        }
        (Movement::ManualRegistered(registration), None) => {
            let materials = registration
                .materials
                .iter()
                .map(|m| ("materials", m.item, m.qty.value()));
            let products = registration
                .products
                .iter()
                .map(|p| ("products", p.item, p.qty.value()));
            for (list, item, qty) in materials.chain(products) {
                positive(qty, &format!("{list} item {item}"))?;
            }
            return Ok(RecordedMovement::new(envelope));
        }
        (_, None) => {
            return Err(refuse(
                RuleId::ManualUnknown,
                format!("manual {} is not registered", envelope.manual),
            ));
        }
        (_, Some(state)) => state,
    };
    check_references(state, &envelope, context)?;
    let reversed = reversal_effects(&envelope, context);
    let broken = check_standing(state, &envelope)
        .and_then(|()| check_own_rules(state, &envelope, context))
        .and_then(|()| check_balance(state, &envelope, reversed.as_deref()));
    let mut recorded = RecordedMovement::new(envelope);
    if let Some(target) = context
        .reversal_target
        .filter(|_| recorded.kind() == MovementKind::Reversed)
    {
        recorded.reverses = Some(Box::new(target.recorded.envelope.clone()));
    }
    match broken {
        Ok(()) => Ok(recorded),
        Err(refusal) if context.mode == Mode::Record && refusal.rule.recordable() => {
            recorded.findings.push(AttachedFinding {
                rule: refusal.rule,
                message: refusal.message,
            });
            Ok(recorded)
        }
        Err(refusal) => Err(refusal),
    }
}

fn refuse(rule: RuleId, message: impl Into<String>) -> Refusal {
    Refusal::new(rule, message)
}

fn positive(qty: Decimal, what: &str) -> Result<(), Refusal> {
    if qty > Decimal::ZERO {
        Ok(())
    } else {
        Err(refuse(
            RuleId::QuantityInvalid,
            format!("{what}: quantity {qty} must be greater than zero"),
        ))
    }
}

/// The effects a reversal takes out, negated (None for other movements).
fn reversal_effects(envelope: &Envelope, context: &Context) -> Option<Vec<Effect>> {
    if envelope.movement.kind() != MovementKind::Reversed {
        return None;
    }
    let target = context.reversal_target?;
    Some(
        effects(&target.recorded.envelope.movement)
            .iter()
            .map(Effect::negated)
            .collect(),
    )
}

/// Level 2 of §4: what the movement refers to. Never recordable.
fn check_references(
    state: &ManualState,
    envelope: &Envelope,
    context: &Context,
) -> Result<(), Refusal> {
    let registration = &state.registration;
    let movement = &envelope.movement;
    let material = |item: ItemNo| {
        registration
            .materials
            .get(&item)
            .map(|m| m.unit.as_str())
            .ok_or_else(|| {
                refuse(
                    RuleId::ItemUnknown,
                    format!(
                        "material item {item} is not registered on {}",
                        registration.manual
                    ),
                )
            })
    };
    let product = |item: ItemNo| {
        registration
            .products
            .get(&item)
            .map(|p| p.unit.as_str())
            .ok_or_else(|| {
                refuse(
                    RuleId::ItemUnknown,
                    format!(
                        "product item {item} is not registered on {}",
                        registration.manual
                    ),
                )
            })
    };
    let unit_fits = |registered: &str, unit: &Option<String>, item: ItemNo| match unit {
        Some(unit) if unit != registered => Err(refuse(
            RuleId::ItemUnitMismatch,
            format!("item {item} is registered in {registered}, not {unit}"),
        )),
        _ => Ok(()),
    };
    let known = |entries: &[ItemQty], kind: ItemKind| -> Result<(), Refusal> {
        entries.iter().try_for_each(|entry| match kind {
            ItemKind::Material => material(entry.item).map(drop),
            ItemKind::Product => product(entry.item).map(drop),
        })
    };
    let quantities = |entries: &[ItemQty], what: &str, allow_zero: bool| -> Result<(), Refusal> {
        entries
            .iter()
            .filter(|entry| !(allow_zero && entry.qty.value().is_zero()))
            .try_for_each(|entry| {
                positive(entry.qty.value(), &format!("{what} item {}", entry.item))
            })
    };
    // §4 level 2 is ordered: every item a movement names is looked up before
    // any of its quantities is judged, across all of its lists.
    let materials_and_products = |materials: &[ItemQty], products: &[ItemQty]| {
        known(materials, ItemKind::Material)?;
        known(products, ItemKind::Product)?;
        quantities(materials, "materials", false)?;
        quantities(products, "products", false)
    };
    match movement {
        Movement::ManualRegistered(_) => Ok(()),
        Movement::ManualAmended(amendment) => {
            for m in &amendment.add_materials {
                if registration.materials.contains_key(&m.item) {
                    return Err(refuse(
                        RuleId::ItemDuplicate,
                        format!("material item {} is already registered", m.item),
                    ));
                }
            }
            for p in &amendment.add_products {
                if registration.products.contains_key(&p.item) {
                    return Err(refuse(
                        RuleId::ItemDuplicate,
                        format!("product item {} is already registered", p.item),
                    ));
                }
            }
            for set in &amendment.set_quantities {
                let known = match set.kind {
                    ItemKind::Material => {
                        registration.materials.contains_key(&set.item)
                            || amendment.add_materials.iter().any(|m| m.item == set.item)
                    }
                    ItemKind::Product => {
                        registration.products.contains_key(&set.item)
                            || amendment.add_products.iter().any(|p| p.item == set.item)
                    }
                };
                if !known {
                    return Err(refuse(
                        RuleId::ItemUnknown,
                        format!("item {} is not registered", set.item),
                    ));
                }
            }
            for m in &amendment.add_materials {
                positive(m.qty.value(), &format!("add_materials item {}", m.item))?;
            }
            for p in &amendment.add_products {
                positive(p.qty.value(), &format!("add_products item {}", p.item))?;
            }
            for set in &amendment.set_quantities {
                positive(
                    set.qty.value(),
                    &format!("set_quantities item {}", set.item),
                )?;
            }
            Ok(())
        }
        Movement::UnitConsumptionDeclared(declaration) => {
            product(declaration.product)?;
            for line in &declaration.lines {
                material(line.material)?;
            }
            Ok(())
        }
        Movement::ProductExported(p) | Movement::ProductReexported(p) => {
            unit_fits(product(p.product)?, &p.unit, p.product)?;
            positive(p.qty.value(), "qty")
        }
        Movement::ProductReturned(p) => {
            unit_fits(product(p.product)?, &p.unit, p.product)?;
            positive(p.qty.value(), "qty")
        }
        Movement::CarryoverOut(c) => {
            unit_fits(product(c.product)?, &c.unit, c.product)?;
            positive(c.qty.value(), "qty")
        }
        Movement::DefectiveDisposed(d) => {
            unit_fits(product(d.product)?, &d.unit, d.product)?;
            positive(d.qty.value(), "qty")
        }
        Movement::MaterialsExchanged(x) => {
            unit_fits(material(x.material)?, &x.unit, x.material)?;
            positive(x.qty_out.value(), "qty_out")?;
            positive(x.qty_in.value(), "qty_in")
        }
        Movement::Substituted(s) => {
            unit_fits(material(s.material)?, &s.unit, s.material)?;
            positive(s.qty.value(), "qty")?;
            positive(s.counterpart.qty.value(), "counterpart.qty")
        }
        Movement::OutwardShipped(o) => materials_and_products(&o.materials, &o.products),
        Movement::OutwardReturned(o) => materials_and_products(&o.materials, &o.products),
        Movement::DomesticSale(s) => materials_and_products(&s.materials, &s.products),
        Movement::WorkOrderCompleted(w) => {
            unit_fits(product(w.product)?, &w.unit, w.product)?;
            known(&w.issued, ItemKind::Material)?;
            quantities(&w.issued, "issued", false)?;
            positive(w.qty.value(), "qty")
        }
        Movement::Reported(r) => {
            let declared_scrap = r.declared_scrap.as_deref().unwrap_or_default();
            known(&r.declared_remaining, ItemKind::Material)?;
            known(declared_scrap, ItemKind::Material)?;
            quantities(&r.declared_remaining, "declared_remaining", true)?;
            quantities(declared_scrap, "declared_scrap", true)
        }
        Movement::PeriodClosed(_) if registration.book != Book::AccountBook => Err(refuse(
            RuleId::ManualNotAccountBook,
            format!(
                "{} is a manual, not an account book: it has no periods",
                registration.manual
            ),
        )),
        Movement::Reversed(reversal) => {
            let Some(target) = context.reversal_target else {
                return Err(refuse(
                    RuleId::ReversalUnknown,
                    format!("the ledger holds no event {:?}", reversal.event),
                ));
            };
            let kind = target.recorded.kind();
            if target.manual != registration.manual {
                Err(refuse(
                    RuleId::ReversalUnknown,
                    format!("event {:?} is on manual {}", reversal.event, target.manual),
                ))
            } else if !kind.is_reversible() {
                Err(refuse(
                    RuleId::ReversalUnknown,
                    format!("event {:?} is a {kind}, not a movement", reversal.event),
                ))
            } else if state.reversed.contains(&reversal.event) {
                Err(refuse(
                    RuleId::ReversalUnknown,
                    format!("event {:?} is already reversed", reversal.event),
                ))
            } else {
                Ok(())
            }
        }
        Movement::GoodsSealed(_) | Movement::Closed(_) | Movement::PeriodClosed(_) => Ok(()),
        single => {
            let (item, qty) = crate::state::single_material(single)
                .unwrap_or_else(|| unreachable!("every other movement moves one material"));
            unit_fits(material(item)?, &unit_of(single), item)?;
            positive(qty, "qty")
        }
    }
}

fn unit_of(movement: &Movement) -> Option<String> {
    match movement {
        Movement::MaterialImported(m) => m.unit.clone(),
        Movement::CarryoverIn(m) => m.unit.clone(),
        Movement::RemnantOut(m) => m.unit.clone(),
        Movement::RemnantIn(m) => m.unit.clone(),
        Movement::MaterialsReturned(m) => m.unit.clone(),
        Movement::Abandoned(m) | Movement::DisasterLoss(m) => m.unit.clone(),
        Movement::Destroyed(m) => m.unit.clone(),
        Movement::ScrapDisposed(m) => m.unit.clone(),
        _ => None,
    }
}

/// The supervision-mode code a movement carries, if any.
fn mode_of(movement: &Movement) -> Option<&str> {
    match movement {
        Movement::MaterialImported(m) => Some(&m.mode),
        Movement::ProductExported(m) | Movement::ProductReexported(m) => Some(&m.mode),
        Movement::ProductReturned(m) => Some(&m.mode),
        Movement::CarryoverOut(m) => Some(&m.mode),
        Movement::CarryoverIn(m) => Some(&m.mode),
        Movement::RemnantOut(m) => m.mode.as_deref(),
        Movement::RemnantIn(m) => m.mode.as_deref(),
        Movement::DomesticSale(m) => Some(&m.mode),
        Movement::MaterialsReturned(m) => Some(&m.mode),
        Movement::MaterialsExchanged(m) => Some(&m.mode),
        Movement::Destroyed(m) => m.mode.as_deref(),
        Movement::ScrapDisposed(m) => m.mode.as_deref(),
        _ => None,
    }
}

/// Level 3 of §4: the manual is open, valid, and the code fits.
fn check_standing(state: &ManualState, envelope: &Envelope) -> Result<(), Refusal> {
    let registration = &state.registration;
    let movement = &envelope.movement;
    let kind = movement.kind();
    if state.closed {
        let rule = if kind == MovementKind::UnitConsumptionDeclared {
            RuleId::UnitConsumptionClosed
        } else {
            RuleId::ManualClosed
        };
        return Err(refuse(
            rule,
            format!("manual {} is closed", registration.manual),
        ));
    }
    let dated = matches!(
        kind,
        MovementKind::MaterialImported
            | MovementKind::ProductExported
            | MovementKind::CarryoverOut
            | MovementKind::CarryoverIn
    );
    if dated && envelope.date > registration.valid_until {
        return Err(refuse(
            RuleId::ManualExpired,
            format!(
                "{}: manual {} was valid until {}",
                envelope.date, registration.manual, registration.valid_until
            ),
        ));
    }
    if let Some(code) = mode_of(movement) {
        if !mode_fits(
            kind,
            code,
            registration.trade_mode,
            registration.zone,
            disposal_of(movement),
        ) {
            let zone = if registration.zone { " zone" } else { "" };
            return Err(refuse(
                RuleId::ModeMismatch,
                format!(
                    "code {code} does not fit {kind} on a {}{zone} manual",
                    registration.trade_mode.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// Level 4 of §4: the movement's own rules.
fn check_own_rules(
    state: &ManualState,
    envelope: &Envelope,
    context: &Context,
) -> Result<(), Refusal> {
    let registration = &state.registration;
    match &envelope.movement {
        Movement::UnitConsumptionDeclared(declaration) => {
            for line in &declaration.lines {
                let loss = line.loss_rate.map_or(Decimal::ZERO, |d| d.value());
                let tangible = line.tangible_loss_rate.map_or(loss, |d| d.value());
                let share = line.bonded_share.map_or(Decimal::ONE, |d| d.value());
                let problem = if line.net.value() <= Decimal::ZERO {
                    Some("net consumption must be greater than zero")
                } else if loss < Decimal::ZERO || loss >= Decimal::ONE {
                    Some("loss rate must be at least 0 and below 1")
                } else if tangible < Decimal::ZERO || tangible > loss {
                    Some("tangible loss rate must be between 0 and the loss rate")
                } else if share <= Decimal::ZERO || share > Decimal::ONE {
                    Some("bonded share must be above 0 and at most 1")
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(refuse(
                        RuleId::UnitConsumptionInvalid,
                        format!("material {}: {problem}", line.material),
                    ));
                }
            }
            Ok(())
        }
        Movement::MaterialImported(import) => {
            let registered = registration
                .materials
                .get(&import.material)
                .map_or(Decimal::ZERO, |m| m.registered_qty);
            let before = state
                .imported_total
                .get(&import.material)
                .copied()
                .unwrap_or_default();
            exceeds(
                RuleId::ImportExceedsRegistered,
                "imported",
                import.material,
                before,
                import.qty.value(),
                registered,
            )
        }
        Movement::ProductExported(export) => {
            let registered = registration
                .products
                .get(&export.product)
                .map_or(Decimal::ZERO, |p| p.registered_qty);
            let before = state
                .exported_total
                .get(&export.product)
                .copied()
                .unwrap_or_default();
            exceeds(
                RuleId::ExportExceedsRegistered,
                "exported",
                export.product,
                before,
                export.qty.value(),
                registered,
            )
        }
        Movement::RemnantOut(remnant) => {
            remnant_fits(registration, remnant.material, &remnant.to_manual, context)
        }
        Movement::RemnantIn(remnant) => remnant_fits(
            registration,
            remnant.material,
            &remnant.from_manual,
            context,
        ),
        Movement::DomesticSale(sale) if sale.approval.is_none() => Err(refuse(
            RuleId::DomesticSaleNotApproved,
            "a domestic sale needs the approval reference",
        )),
        Movement::Substituted(substitution) => {
            let counterpart = &substitution.counterpart;
            if registration.trade_mode == TradeMode::Consigned {
                return Err(refuse(
                    RuleId::SubstitutionConsigned,
                    "materials under consigned processing may not be substituted",
                ));
            }
            if counterpart.enterprise != registration.enterprise
                && counterpart.enterprise != registration.processing_enterprise
            {
                return Err(refuse(
                    RuleId::SubstitutionOtherEnterprise,
                    format!(
                        "goods of {} are not the manual's enterprise's",
                        counterpart.enterprise
                    ),
                ));
            }
            let material = registration.materials.get(&substitution.material);
            let equivalent = material
                .is_some_and(|m| m.hs == counterpart.hs && m.spec == counterpart.spec)
                && counterpart.qty == substitution.qty;
            if equivalent {
                Ok(())
            } else {
                Err(refuse(
                    RuleId::SubstitutionNotEquivalent,
                    "substitution needs the same HS code, specification and quantity",
                ))
            }
        }
        Movement::OutwardShipped(outward) => {
            if outward.approval.is_none() {
                return Err(refuse(
                    RuleId::OutwardNotApproved,
                    "outward processing needs the approval reference",
                ));
            }
            let sender = outward
                .from
                .as_ref()
                .unwrap_or(&registration.processing_enterprise);
            if *sender != registration.processing_enterprise && state.contractors.contains(sender) {
                return Err(refuse(
                    RuleId::OutwardReoutsourced,
                    format!(
                        "{sender} received these goods as a contractor and may not send them on"
                    ),
                ));
            }
            Ok(())
        }
        Movement::MaterialsExchanged(exchange) => {
            let balance = state
                .balances()
                .get(&exchange.material)
                .copied()
                .unwrap_or_default();
            if exchange.qty_out.value() > balance + EXACTNESS_SLACK {
                Err(refuse(
                    RuleId::ExchangeProcessed,
                    format!(
                        "exchanging out {} of material {} but only {balance} is unprocessed",
                        exchange.qty_out.value(),
                        exchange.material
                    ),
                ))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

fn exceeds(
    rule: RuleId,
    verb: &str,
    item: ItemNo,
    before: Decimal,
    qty: Decimal,
    registered: Decimal,
) -> Result<(), Refusal> {
    match before.checked_add(qty) {
        Some(total) if total <= registered => Ok(()),
        total => Err(refuse(
            rule,
            format!(
                "item {item}: {verb} {} in all, registered {registered}",
                total.map_or_else(|| "more than can be counted".to_owned(), |t| t.to_string())
            ),
        )),
    }
}

fn remnant_fits(
    registration: &Registration,
    material: ItemNo,
    other: &ManualNo,
    context: &Context,
) -> Result<(), Refusal> {
    let Some(counterparty) = context.counterparty.filter(|c| c.manual == *other) else {
        return Ok(());
    };
    let hs = registration.materials.get(&material).map(|m| &m.hs);
    let problem = if counterparty.enterprise != registration.enterprise {
        Some("another operating enterprise")
    } else if counterparty.processing_enterprise != registration.processing_enterprise {
        Some("another processing enterprise")
    } else if counterparty.trade_mode != registration.trade_mode {
        Some("another trade mode")
    } else if !counterparty.materials.values().any(|m| Some(&m.hs) == hs) {
        Some("no material of the same HS code")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(refuse(
            RuleId::RemnantMismatch,
            format!("manual {other} has {problem}"),
        )),
    }
}

/// Level 5 of §4: nothing taken out beyond the balance, all of the
/// movement's takings added up.
fn check_balance(
    state: &ManualState,
    envelope: &Envelope,
    reversed: Option<&[Effect]>,
) -> Result<(), Refusal> {
    let movement = &envelope.movement;
    if movement.kind() == MovementKind::MaterialsExchanged {
        return Ok(());
    }
    let own;
    let effects = match reversed {
        Some(effects) => effects,
        None => {
            own = effects(movement);
            &own
        }
    };
    let delta = state.balance_delta(effects);
    if delta.values().all(|d| *d >= Decimal::ZERO) {
        return Ok(());
    }
    let taken: BTreeSet<ItemNo> = delta
        .iter()
        .filter(|(_, d)| **d < Decimal::ZERO)
        .map(|(item, _)| *item)
        .collect();
    let balances: BTreeMap<ItemNo, Decimal> = state.balances_of(&taken);
    for (item, change) in delta.iter().filter(|(_, d)| **d < Decimal::ZERO) {
        let before = balances.get(item).copied().unwrap_or_default();
        let after = before.saturating_add(*change);
        if after < -EXACTNESS_SLACK {
            return Err(refuse(
                RuleId::BalanceInsufficient,
                format!(
                    "material {item}: balance {} would fall to {}",
                    before.normalize(),
                    after.normalize()
                ),
            ));
        }
    }
    Ok(())
}
