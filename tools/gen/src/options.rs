//! What a generated history looks like: its size, its mix of movements and
//! its seed.

use chrono::{Datelike, NaiveDate};

/// Limits on every knob: a typo must not ask for a history that fills the disk.
pub const MAX_MANUALS: u32 = 10_000;
pub const MAX_ITEMS: u32 = 50;
pub const MAX_MOVEMENTS_PER_MANUAL: u64 = 100_000_000;
pub const MAX_DAYS: u32 = 3_650;
pub const MAX_TAG_CHARS: usize = 8;
pub const MAX_WEIGHT: u32 = 1_000_000;

/// The movements drawn at random, beside carry-overs and reversals (whose
/// shares are separate knobs). Each has a name for `--mix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `material_imported` (料件进口).
    Import,
    /// `product_exported` (成品出口).
    Export,
    /// `work_order_completed` (工单).
    WorkOrder,
    /// `domestic_sale` of materials and products, approved (内销).
    DomesticSale,
    /// `product_returned` and later `product_reexported` (成品退换).
    ProductReturn,
    /// `outward_shipped` and `outward_returned`, approved (外发加工).
    Outward,
    /// `scrap_disposed` within the allowance (边角料).
    Scrap,
    /// `defective_disposed` (残次品).
    Defective,
    /// `materials_returned` abroad (退运复出).
    MaterialsReturn,
    /// `materials_exchanged` (退换).
    Exchange,
    /// `abandoned`, `destroyed` and `disaster_loss`.
    WriteOff,
    /// `substituted`, on purchased manuals only (串换).
    Substitution,
    /// `remnant_out` and `remnant_in` between two manuals of one enterprise (余料结转).
    Remnant,
    /// `goods_sealed` (封存).
    Seal,
}

/// Every kind with its `--mix` name and its default weight.
pub const KINDS: &[(Kind, &str, u32)] = &[
    (Kind::Import, "import", 30),
    (Kind::Export, "export", 24),
    (Kind::WorkOrder, "work_order", 8),
    (Kind::DomesticSale, "domestic_sale", 4),
    (Kind::ProductReturn, "product_return", 3),
    (Kind::Outward, "outward", 5),
    (Kind::Scrap, "scrap", 4),
    (Kind::Defective, "defective", 2),
    (Kind::MaterialsReturn, "materials_return", 2),
    (Kind::Exchange, "exchange", 2),
    (Kind::WriteOff, "write_off", 3),
    (Kind::Substitution, "substitution", 1),
    (Kind::Remnant, "remnant", 1),
    (Kind::Seal, "seal", 1),
];

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub manuals: u32,
    /// Materials per manual (a receiving manual has one more: the carried-in one).
    pub materials: u32,
    pub products: u32,
    /// Movement lines per manual; registrations, declarations, amendments
    /// and the closing report come on top.
    pub movements: u64,
    /// Share of steps that are a carry-over between neighbouring manuals.
    pub carryover_share: f64,
    /// Share of steps that reverse an earlier movement.
    pub reversal_share: f64,
    pub mix: Vec<(Kind, u32)>,
    pub start: NaiveDate,
    /// Days the movements are spread over, after `start`.
    pub days: u32,
    /// Put into every manual number, so several histories can share a ledger.
    pub tag: String,
    /// End every manual with a report (报核) declaring its expected balances.
    pub report: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            manuals: 4,
            materials: 4,
            products: 3,
            movements: 1_000,
            carryover_share: 0.04,
            reversal_share: 0.02,
            mix: default_mix(),
            start: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default(),
            days: 330,
            tag: String::new(),
            report: true,
        }
    }
}

impl Options {
    pub fn check(&self) -> Result<(), String> {
        let share = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(format!("{name} is a share from 0 to 1, not {value}"))
            }
        };
        if !(1..=MAX_MANUALS).contains(&self.manuals) {
            return Err(format!("--manuals is 1 to {MAX_MANUALS}"));
        }
        if !(1..=MAX_ITEMS).contains(&self.materials) || !(1..=MAX_ITEMS).contains(&self.products) {
            return Err(format!("--materials and --products are 1 to {MAX_ITEMS}"));
        }
        if self.movements > MAX_MOVEMENTS_PER_MANUAL {
            return Err(format!("--movements is at most {MAX_MOVEMENTS_PER_MANUAL}"));
        }
        share("--carryover-share", self.carryover_share)?;
        share("--reversal-share", self.reversal_share)?;
        if self.carryover_share + self.reversal_share > 1.0 {
            return Err("--carryover-share and --reversal-share add up to more than 1".into());
        }
        if !(1..=MAX_DAYS).contains(&self.days) {
            return Err(format!("--days is 1 to {MAX_DAYS}"));
        }
        if !(1..=9_000).contains(&self.start.year()) {
            return Err("--start is a date of the years 1 to 9000".into());
        }
        if self.tag.len() > MAX_TAG_CHARS
            || !self
                .tag
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(format!("--tag is up to {MAX_TAG_CHARS} of A-Z 0-9"));
        }
        if self.mix.iter().all(|(_, weight)| *weight == 0) {
            return Err("--mix leaves no movement with a weight".into());
        }
        Ok(())
    }
}

pub fn default_mix() -> Vec<(Kind, u32)> {
    KINDS
        .iter()
        .map(|(kind, _, weight)| (*kind, *weight))
        .collect()
}

/// The default mix with the weights `text` gives: `import=30,export=20,…`.
pub fn parse_mix(text: &str) -> Result<Vec<(Kind, u32)>, String> {
    let mut mix = default_mix();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("--mix: {part:?} is not NAME=WEIGHT"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .ok()
            .filter(|w| *w <= MAX_WEIGHT)
            .ok_or_else(|| format!("--mix: {part:?}: a weight is 0 to {MAX_WEIGHT}"))?;
        let names: Vec<&str> = KINDS.iter().map(|(_, n, _)| *n).collect();
        let Some((kind, _, _)) = KINDS.iter().find(|(_, n, _)| *n == name.trim()) else {
            return Err(format!(
                "--mix: no movement named {name:?} (there are: {})",
                names.join(", ")
            ));
        };
        if let Some(entry) = mix.iter_mut().find(|(k, _)| k == kind) {
            entry.1 = weight;
        }
    }
    Ok(mix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_overrides_only_the_weights_it_names() {
        let mix = parse_mix("export=5, seal=0").unwrap_or_default();
        assert!(mix.contains(&(Kind::Export, 5)));
        assert!(mix.contains(&(Kind::Seal, 0)));
        assert!(mix.contains(&(Kind::Import, 30)));
        assert!(parse_mix("exports=5").is_err());
        assert!(parse_mix("export").is_err());
    }

    #[test]
    fn knobs_out_of_range_are_refused() {
        assert!(Options::default().check().is_ok());
        let refused = [
            Options {
                manuals: 0,
                ..Options::default()
            },
            Options {
                reversal_share: 1.5,
                ..Options::default()
            },
            Options {
                tag: "lower".into(),
                ..Options::default()
            },
            Options {
                mix: parse_mix("import=0,export=0,work_order=0,domestic_sale=0,product_return=0,outward=0,scrap=0,defective=0,materials_return=0,exchange=0,write_off=0,substitution=0,remnant=0,seal=0").unwrap_or_default(),
                ..Options::default()
            },
        ];
        for options in refused {
            assert!(options.check().is_err(), "{options:?}");
        }
    }
}
