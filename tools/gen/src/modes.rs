//! Supervision-mode codes (监管方式) the generator writes, by movement and
//! trade mode (interchange §1, "Supervision-mode codes accepted"). The first
//! code of a list is the common one; the others appear now and then.

use crate::book::TradeMode;
use crate::random::Random;

pub struct ModeRow {
    pub movement: &'static str,
    pub purchased: &'static [&'static str],
    pub consigned: &'static [&'static str],
    /// Added on a special-zone book.
    pub zone_purchased: &'static [&'static str],
    pub zone_consigned: &'static [&'static str],
}

pub const MODES: &[ModeRow] = &[
    ModeRow {
        movement: "material_imported",
        purchased: &["0615", "0715"],
        consigned: &["0214"],
        zone_purchased: &["5015", "5000"],
        zone_consigned: &["5014", "5000"],
    },
    ModeRow {
        movement: "product_exported",
        purchased: &["0615", "0715", "0744", "0642"],
        consigned: &["0214", "0345", "0243"],
        zone_purchased: &["5100", "5015"],
        zone_consigned: &["5100", "5014"],
    },
    ModeRow {
        movement: "carryover_out",
        purchased: &["0654"],
        consigned: &["0255"],
        zone_purchased: &["5100"],
        zone_consigned: &["5100"],
    },
    ModeRow {
        movement: "carryover_in",
        purchased: &["0654"],
        consigned: &["0255"],
        zone_purchased: &["5000"],
        zone_consigned: &["5000"],
    },
    ModeRow {
        movement: "remnant",
        purchased: &["0657"],
        consigned: &["0258"],
        zone_purchased: &[],
        zone_consigned: &[],
    },
    ModeRow {
        movement: "domestic_sale",
        purchased: &["0644"],
        consigned: &["0245"],
        zone_purchased: &["5000", "5100"],
        zone_consigned: &["5000", "5100"],
    },
    ModeRow {
        movement: "materials_returned",
        purchased: &["0664"],
        consigned: &["0265"],
        zone_purchased: &["5000"],
        zone_consigned: &["5000"],
    },
    ModeRow {
        movement: "materials_exchanged",
        purchased: &["0700"],
        consigned: &["0300"],
        zone_purchased: &[],
        zone_consigned: &[],
    },
    ModeRow {
        movement: "product_returned",
        purchased: &["4600"],
        consigned: &["4400"],
        zone_purchased: &[],
        zone_consigned: &[],
    },
    ModeRow {
        movement: "destroyed",
        purchased: &["0200"],
        consigned: &["0200"],
        zone_purchased: &[],
        zone_consigned: &[],
    },
];

/// Scrap disposal, with its code by trade mode: the code must fit the disposal.
pub const SCRAP_MODES: &[(&str, &str, &str)] = &[
    ("domestic_sale", "0844", "0845"),
    ("re_export", "0864", "0865"),
    ("destroyed", "0400", "0400"),
];

/// A code for `movement` on a book of this trade mode: mostly the common
/// one, sometimes another that fits, on a zone book sometimes a zone code.
pub fn mode_for(
    random: &mut Random,
    movement: &str,
    trade_mode: TradeMode,
    zone: bool,
) -> &'static str {
    let Some(row) = MODES.iter().find(|row| row.movement == movement) else {
        unreachable!("every movement the generator writes a code for has a row: {movement}")
    };
    let (codes, zone_codes) = match trade_mode {
        TradeMode::Purchased => (row.purchased, row.zone_purchased),
        TradeMode::Consigned => (row.consigned, row.zone_consigned),
    };
    if zone && !zone_codes.is_empty() && random.chance(0.3) {
        return random.choose(zone_codes);
    }
    if codes.len() > 1 && random.chance(0.2) {
        return random.choose(codes);
    }
    codes[0]
}

/// A scrap disposal and the code that fits it.
pub fn scrap_mode(random: &mut Random, trade_mode: TradeMode) -> (&'static str, &'static str) {
    let (disposal, purchased, consigned) = random.choose(SCRAP_MODES);
    match trade_mode {
        TradeMode::Purchased => (disposal, purchased),
        TradeMode::Consigned => (disposal, consigned),
    }
}
