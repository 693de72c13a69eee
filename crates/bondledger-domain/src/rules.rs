//! The rules of domain §4 as data: their identifiers, severities, whether a
//! historical import may record a movement that breaks them, and the table of
//! supervision-mode codes each movement accepts.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::movement::{Disposal, MovementKind, TradeMode};

macro_rules! rules {
    ($( $variant:ident = $id:literal, $severity:ident, $recordable:literal; )*) => {
        /// A rule identifier of domain §4, exactly as tests and users see it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum RuleId { $( #[serde(rename = $id)] $variant ),* }

        impl RuleId {
            pub const ALL: &'static [RuleId] = &[ $( RuleId::$variant ),* ];

            pub fn as_str(self) -> &'static str {
                match self { $( RuleId::$variant => $id ),* }
            }

            pub fn severity(self) -> Severity {
                match self { $( RuleId::$variant => Severity::$severity ),* }
            }

            /// Whether `import --record` keeps a movement that breaks this
            /// rule (with the finding attached) rather than refusing it.
            pub fn recordable(self) -> bool {
                match self { $( RuleId::$variant => $recordable ),* }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $id => Some(RuleId::$variant), )* _ => None }
            }
        }
    };
}

rules! {
    ManualUnknown = "manual.unknown", Error, false;
    ManualDuplicate = "manual.duplicate", Error, false;
    ManualClosed = "manual.closed", Error, true;
    ManualExpired = "manual.expired", Error, true;
    ManualNotAccountBook = "manual.not_account_book", Error, false;
    ItemUnknown = "item.unknown", Error, false;
    ItemUnitMismatch = "item.unit_mismatch", Error, false;
    ItemDuplicate = "item.duplicate", Error, false;
    QuantityInvalid = "quantity.invalid", Error, false;
    ImportExceedsRegistered = "import.exceeds_registered", Error, true;
    ExportExceedsRegistered = "export.exceeds_registered", Error, true;
    BalanceInsufficient = "balance.insufficient", Error, true;
    UnitConsumptionInvalid = "unit_consumption.invalid", Error, true;
    UnitConsumptionClosed = "unit_consumption.closed", Error, true;
    UnitConsumptionMissing = "unit_consumption.missing", Error, true;
    SubstitutionConsigned = "substitution.consigned", Error, true;
    SubstitutionOtherEnterprise = "substitution.other_enterprise", Error, true;
    SubstitutionNotEquivalent = "substitution.not_equivalent", Error, true;
    OutwardNotApproved = "outward.not_approved", Error, true;
    OutwardReoutsourced = "outward.reoutsourced", Error, true;
    OutwardOutstanding = "outward.outstanding", Error, true;
    ExchangeProcessed = "exchange.processed", Error, true;
    DomesticSaleNotApproved = "domestic_sale.not_approved", Error, true;
    DomesticSaleInterestMismatch = "domestic_sale.interest_mismatch", Error, true;
    ModeMismatch = "mode.mismatch", Error, true;
    RemnantMismatch = "remnant.mismatch", Error, true;
    CarryoverMismatch = "carryover.mismatch", Error, true;
    CarryoverOrder = "carryover.order", Error, true;
    CarryoverLate = "carryover.late", Error, true;
    ScrapExceedsAllowance = "scrap.exceeds_allowance", Error, true;
    SealLateReport = "seal.late_report", Error, true;
    VerificationLate = "verification.late", Error, true;
    VerificationShort = "verification.short", Error, true;
    VerificationSurplus = "verification.surplus", Warning, true;
    WorkOrderDeviation = "work_order.deviation", Warning, true;
    ReversalUnknown = "reversal.unknown", Error, false;
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A movement refused by a rule: nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {message}")]
pub struct Refusal {
    pub rule: RuleId,
    pub message: String,
}

impl Refusal {
    pub fn new(rule: RuleId, message: impl Into<String>) -> Self {
        Refusal {
            rule,
            message: message.into(),
        }
    }
}

/// Which trade modes (and zone books) a code fits.
#[derive(Debug, Clone, Copy)]
enum Fits {
    Purchased,
    Consigned,
    Both,
    /// Only on a special-zone book, of either trade mode.
    Zone,
    ZonePurchased,
    ZoneConsigned,
}

/// Interchange §1, "Supervision-mode codes accepted": one row per
/// (movement, code). `disposal` narrows scrap codes to their disposal.
const MODE_TABLE: &[(MovementKind, &str, Fits, Option<Disposal>)] = {
    use Fits::*;
    use MovementKind as K;
    &[
        (K::MaterialImported, "0615", Purchased, None),
        (K::MaterialImported, "0715", Purchased, None),
        (K::MaterialImported, "0214", Consigned, None),
        (K::MaterialImported, "5000", Zone, None),
        (K::MaterialImported, "5014", ZoneConsigned, None),
        (K::MaterialImported, "5015", ZonePurchased, None),
        (K::ProductExported, "0615", Purchased, None),
        (K::ProductExported, "0715", Purchased, None),
        (K::ProductExported, "0744", Purchased, None),
        (K::ProductExported, "0642", Purchased, None),
        (K::ProductExported, "0214", Consigned, None),
        (K::ProductExported, "0345", Consigned, None),
        (K::ProductExported, "0243", Consigned, None),
        (K::ProductExported, "5100", Zone, None),
        (K::ProductExported, "5014", ZoneConsigned, None),
        (K::ProductExported, "5015", ZonePurchased, None),
        (K::CarryoverOut, "0654", Purchased, None),
        (K::CarryoverOut, "0255", Consigned, None),
        (K::CarryoverOut, "5100", Zone, None),
        (K::CarryoverIn, "0654", Purchased, None),
        (K::CarryoverIn, "0255", Consigned, None),
        (K::CarryoverIn, "5000", Zone, None),
        (K::RemnantOut, "0657", Purchased, None),
        (K::RemnantOut, "0258", Consigned, None),
        (K::RemnantOut, "5000", Zone, None),
        (K::RemnantIn, "0657", Purchased, None),
        (K::RemnantIn, "0258", Consigned, None),
        (K::RemnantIn, "5000", Zone, None),
        (K::DomesticSale, "0644", Purchased, None),
        (K::DomesticSale, "0245", Consigned, None),
        (K::DomesticSale, "5000", Zone, None),
        (K::DomesticSale, "5100", Zone, None),
        (K::MaterialsReturned, "0664", Purchased, None),
        (K::MaterialsReturned, "0265", Consigned, None),
        (K::MaterialsReturned, "5000", Zone, None),
        (K::MaterialsExchanged, "0700", Purchased, None),
        (K::MaterialsExchanged, "0300", Consigned, None),
        (K::ProductReturned, "4600", Purchased, None),
        (K::ProductReturned, "4400", Consigned, None),
        (K::ProductReexported, "4600", Purchased, None),
        (K::ProductReexported, "4400", Consigned, None),
        (
            K::ScrapDisposed,
            "0844",
            Purchased,
            Some(Disposal::DomesticSale),
        ),
        (
            K::ScrapDisposed,
            "0864",
            Purchased,
            Some(Disposal::ReExport),
        ),
        (
            K::ScrapDisposed,
            "0845",
            Consigned,
            Some(Disposal::DomesticSale),
        ),
        (
            K::ScrapDisposed,
            "0865",
            Consigned,
            Some(Disposal::ReExport),
        ),
        (K::ScrapDisposed, "0400", Both, Some(Disposal::Destroyed)),
        (K::Destroyed, "0200", Both, None),
    ]
};

/// Whether `code` is accepted on `kind` for a book of this trade mode (and
/// zone), with the scrap `disposal` where there is one.
pub fn mode_fits(
    kind: MovementKind,
    code: &str,
    trade_mode: TradeMode,
    zone: bool,
    disposal: Option<Disposal>,
) -> bool {
    MODE_TABLE
        .iter()
        .any(|&(row_kind, row_code, fits, row_disposal)| {
            let trade_fits = match fits {
                Fits::Both => true,
                Fits::Purchased => trade_mode == TradeMode::Purchased,
                Fits::Consigned => trade_mode == TradeMode::Consigned,
                Fits::Zone => zone,
                Fits::ZonePurchased => zone && trade_mode == TradeMode::Purchased,
                Fits::ZoneConsigned => zone && trade_mode == TradeMode::Consigned,
            };
            row_kind == kind
                && row_code == code
                && trade_fits
                && (row_disposal.is_none() || row_disposal == disposal)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip_and_are_unique() {
        for rule in RuleId::ALL {
            assert_eq!(RuleId::from_name(rule.as_str()), Some(*rule));
        }
        let mut names: Vec<_> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RuleId::ALL.len());
    }

    #[test]
    fn only_surplus_and_deviation_are_warnings() {
        let warnings: Vec<_> = RuleId::ALL
            .iter()
            .filter(|r| r.severity() == Severity::Warning)
            .map(|r| r.as_str())
            .collect();
        assert_eq!(warnings, ["verification.surplus", "work_order.deviation"]);
    }

    #[test]
    fn mode_table_follows_trade_mode_zone_and_disposal() {
        use MovementKind as K;
        assert!(mode_fits(
            K::MaterialImported,
            "0615",
            TradeMode::Purchased,
            false,
            None
        ));
        assert!(!mode_fits(
            K::MaterialImported,
            "0615",
            TradeMode::Consigned,
            false,
            None
        ));
        assert!(!mode_fits(
            K::MaterialImported,
            "5015",
            TradeMode::Purchased,
            false,
            None
        ));
        assert!(mode_fits(
            K::MaterialImported,
            "5015",
            TradeMode::Purchased,
            true,
            None
        ));
        assert!(!mode_fits(
            K::MaterialImported,
            "5015",
            TradeMode::Consigned,
            true,
            None
        ));
        assert!(mode_fits(
            K::ScrapDisposed,
            "0844",
            TradeMode::Purchased,
            false,
            Some(Disposal::DomesticSale)
        ));
        assert!(!mode_fits(
            K::ScrapDisposed,
            "0844",
            TradeMode::Purchased,
            false,
            Some(Disposal::ReExport)
        ));
        assert!(mode_fits(
            K::ScrapDisposed,
            "0400",
            TradeMode::Consigned,
            false,
            Some(Disposal::Destroyed)
        ));
        assert!(!mode_fits(
            K::MaterialsExchanged,
            "5000",
            TradeMode::Consigned,
            true,
            None
        ));
    }
}
