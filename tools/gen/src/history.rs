//! Writing a history: manuals registered, unit consumption declared, then
//! movements drawn at random, each checked against the generator's own
//! books before it is written, so that strict import accepts every line.
//!
//! Only the books are kept in memory, never the history: a manual's state
//! is a few figures per item, a bounded list of reversible movements and a
//! bounded list of outward-processing jobs.

use std::io::{self, Write};

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::book::{
    ceil_to, floor_to, format6, BomLine, Book, Change, Column, Material, MaterialExpectation,
    OutwardJob, OutwardWork, Product, Reversible, ReversibleKind, TradeMode, Version,
    MAX_OUTWARD_JOBS,
};
use crate::catalogue::{Family, AUTHORITIES, CUSTOMS_OFFICES, FAMILIES};
use crate::modes::{mode_for, scrap_mode};
use crate::options::{Kind, Options};
use crate::random::Random;
use crate::wire::{self, Body, ItemQty, Line, Qty};

/// Manuals stay valid this long after the last movement date.
const VALIDITY_MARGIN_DAYS: i64 = 90;
/// Yuan per US dollar, for duty on domestic sales.
const CNY_PER_USD: Decimal = Decimal::from_parts(71, 0, 0, false, 1);
const DUTY_RATE: Decimal = Decimal::from_parts(65, 0, 0, false, 3);
const VAT_RATE: Decimal = Decimal::from_parts(13, 0, 0, false, 2);
/// The demand-deposit rate of deferred-duty interest (缓税利息).
const INTEREST_RATE_ANNUAL: Decimal = Decimal::from_parts(35, 0, 0, false, 4);
const INTEREST_YEAR_DAYS: i64 = 360;
const BONDED_SHARES: &[&str] = &["0.6", "0.75", "0.8", "0.9", "0.95"];
const REVERSAL_REASONS: &[&str] = &[
    "报关单已撤销, 重新申报",
    "数量申报错误",
    "重复申报",
    "商品编号申报有误",
];

/// The expected figures of a generated history.
pub struct Expected {
    pub seed: u64,
    pub lines: u64,
    pub movements: u64,
    pub manuals: Vec<(String, Vec<MaterialExpectation>)>,
}

impl Expected {
    /// Per manual, per material: `balance` (and `imported`, `consumed`,
    /// `at_contractors`), each rounded to 6 places, halves away from zero.
    pub fn to_json(&self) -> serde_json::Value {
        let manuals: Vec<serde_json::Value> = self
            .manuals
            .iter()
            .map(|(manual, materials)| {
                let materials: Vec<serde_json::Value> = materials
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "item": m.item,
                            "balance": format6(m.balance),
                            "imported": format6(m.imported),
                            "consumed": format6(m.consumed),
                            "at_contractors": format6(m.at_contractors),
                        })
                    })
                    .collect();
                serde_json::json!({"manual": manual, "materials": materials})
            })
            .collect();
        serde_json::json!({
            "seed": self.seed,
            "lines": self.lines,
            "movements": self.movements,
            "manuals": manuals,
        })
    }
}

/// Writes the history `options` describe to `out` (JSON Lines) and returns
/// its expected balances.
pub fn generate<W: Write>(options: &Options, out: W) -> io::Result<Expected> {
    options
        .check()
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    let mut generator = Generator::new(options, out);
    generator.run()?;
    let manuals = generator
        .books
        .iter()
        .map(|book| (book.number.clone(), book.expected()))
        .collect();
    generator.out.flush()?;
    Ok(Expected {
        seed: options.seed,
        lines: generator.lines,
        movements: generator.movements,
        manuals,
    })
}

/// What the two manuals of one enterprise share.
struct Group {
    family: &'static Family,
    trade_mode: TradeMode,
    zone: bool,
    enterprise: String,
    processing_enterprise: String,
    customs: &'static str,
}

struct Generator<'a, W: Write> {
    options: &'a Options,
    random: Random,
    books: Vec<Book>,
    out: W,
    lines: u64,
    movements: u64,
    date: NaiveDate,
    declarations: u64,
    references: u64,
    mix_total: u64,
}

impl<'a, W: Write> Generator<'a, W> {
    fn new(options: &'a Options, out: W) -> Self {
        let mut generator = Generator {
            options,
            random: Random::seeded(options.seed),
            books: Vec::new(),
            out,
            lines: 0,
            movements: 0,
            date: options.start,
            declarations: options.seed.wrapping_mul(7_919) % 1_000_000,
            references: 0,
            mix_total: options.mix.iter().map(|(_, w)| u64::from(*w)).sum(),
        };
        let groups = generator.groups();
        for index in 0..options.manuals as usize {
            let book = generator.book(index, &groups[index / 2]);
            generator.books.push(book);
        }
        generator
    }

    fn run(&mut self) -> io::Result<()> {
        self.header()?;
        for index in 0..self.books.len() {
            self.register(index)?;
        }
        for index in 0..self.books.len() {
            self.declare_unit_consumption(index)?;
        }
        let total: u64 = self.books.iter().map(|b| b.remaining_movements).sum();
        let mut active: Vec<usize> = (0..self.books.len())
            .filter(|i| self.books[*i].remaining_movements > 0)
            .collect();
        while !active.is_empty() {
            let index = active[self.random.index(active.len())];
            self.date = self.options.start
                + Duration::days(
                    1 + (self.movements * u64::from(self.options.days) / total) as i64,
                );
            self.step(index)?;
            let finished: Vec<usize> = active
                .iter()
                .copied()
                .filter(|i| self.books[*i].remaining_movements == 0)
                .collect();
            if !finished.is_empty() {
                active.retain(|i| self.books[*i].remaining_movements > 0);
                // Reported the day of its last movement, an export: on time.
                for index in finished.into_iter().filter(|_| self.options.report) {
                    self.report(index)?;
                }
            }
        }
        if self.options.report && total == 0 {
            // Manuals given no movements are reported once registered.
            for index in 0..self.books.len() {
                self.report(index)?;
            }
        }
        Ok(())
    }

    fn last_date(&self) -> NaiveDate {
        self.options.start + Duration::days(i64::from(self.options.days))
    }

    fn header(&mut self) -> io::Result<()> {
        let o = self.options;
        writeln!(
            self.out,
            "# bondledger-gen: seed {}, {} manuals x {} movements, {} materials and {} products each, carry-over share {}, reversal share {}",
            o.seed, o.manuals, o.movements, o.materials, o.products, o.carryover_share, o.reversal_share
        )
    }

    // ---- the manuals ----

    fn groups(&mut self) -> Vec<Group> {
        let count = (self.options.manuals as usize).div_ceil(2);
        (0..count)
            .map(|index| {
                let family =
                    &FAMILIES[(index as u64 + self.options.seed) as usize % FAMILIES.len()];
                let trade_mode = if self.random.chance(0.5) {
                    TradeMode::Purchased
                } else {
                    TradeMode::Consigned
                };
                let customs = self.random.choose(CUSTOMS_OFFICES);
                let enterprise = format!("{customs}93{:04}", index % 10_000);
                let processing_enterprise = if self.random.chance(0.3) {
                    format!("{customs}94{:04}", index % 10_000)
                } else {
                    enterprise.clone()
                };
                Group {
                    family,
                    trade_mode,
                    zone: self.random.chance(0.2),
                    enterprise,
                    processing_enterprise,
                    customs,
                }
            })
            .collect()
    }

    fn book(&mut self, index: usize, group: &Group) -> Book {
        let options = self.options;
        let family = group.family;
        let letter = match group.trade_mode {
            TradeMode::Consigned => 'B',
            TradeMode::Purchased => 'C',
        };
        let number = format!(
            "{letter}{}{:02}{}{:05}",
            group.customs,
            options.start.year() % 100,
            options.tag,
            (index + 1) % 100_000
        );
        // Registered for a share of the imports a manual may see; the
        // generator amends the registration when imports run past it.
        let lots = Decimal::from(
            (options.movements / 5 / u64::from(options.materials)).clamp(10, 100_000),
        );
        let mut materials: Vec<Material> = (0..options.materials as usize)
            .map(|i| {
                let kind = &family.materials[i % family.materials.len()];
                let lot = floor_to(Decimal::from(kind.lot) * self.random.permille(700, 1300), 0)
                    .max(Decimal::ONE);
                Material {
                    item: (i + 1) as u32,
                    hs: kind.hs.to_owned(),
                    name: kind.name.to_owned(),
                    spec: variant(kind.spec, i, family.materials.len()),
                    unit: kind.unit.to_owned(),
                    places: kind.places,
                    lot,
                    registered: lot * lots,
                    unit_price: kind.unit_price.parse().unwrap_or(Decimal::ONE),
                    currency: kind.currency.to_owned(),
                    origin: kind.origin.to_owned(),
                    carried: false,
                }
            })
            .collect();
        // A receiving manual takes the previous manual's first product as a
        // material, by carry-over (深加工结转): same HS code, same unit.
        if let Some(sender) = index.checked_sub(1).and_then(|s| self.books.get(s)) {
            let product = &sender.products[0];
            let value_usd: Decimal = product.versions[product.latest()]
                .lines
                .iter()
                .map(|line| line.bonded(Decimal::ONE) * sender.materials[line.material].unit_price)
                .sum();
            materials.push(Material {
                item: materials.len() as u32 + 1,
                hs: product.hs.clone(),
                name: product.name.clone(),
                spec: product.spec.clone(),
                unit: product.unit.clone(),
                places: product.places,
                lot: product.lot,
                registered: product.lot * lots,
                unit_price: value_usd.round_dp(2).max(Decimal::new(1, 2)),
                currency: "USD".to_owned(),
                origin: "CN".to_owned(),
                carried: true,
            });
        }
        let products = (0..options.products as usize)
            .map(|j| self.product(j, family, &materials, lots))
            .collect();
        Book::new(
            number,
            group.trade_mode,
            group.zone,
            group.enterprise.clone(),
            group.processing_enterprise.clone(),
            group.customs,
            materials,
            products,
            options.movements,
        )
    }

    fn product(
        &mut self,
        j: usize,
        family: &Family,
        materials: &[Material],
        lots: Decimal,
    ) -> Product {
        let kind = &family.products[j % family.products.len()];
        let own = materials.iter().filter(|m| !m.carried).count();
        // A production run the nets are sized for: a lot of each material
        // makes about one to three runs, so no material idles in stock.
        let run = Decimal::from(self.random.between(2_000, 20_000));
        let mut lines = Vec::new();
        for (index, material) in materials.iter().enumerate() {
            let used = if material.carried {
                j == 0 || self.random.chance(0.4)
            } else {
                index == j % own || self.random.chance(0.5)
            };
            if used {
                lines.push(self.bom_line(index, material, run));
            }
        }
        let mut versions = vec![Version {
            name: "1".to_owned(),
            lines,
        }];
        if self.random.chance(0.3) {
            let revised = versions[0]
                .lines
                .iter()
                .map(|line| self.revised_line(line, &materials[line.material]))
                .collect();
            versions.push(Version {
                name: "2".to_owned(),
                lines: revised,
            });
        }
        // A lot of products uses up a lot of its scarcest material.
        let lot = versions
            .iter()
            .flat_map(|v| &v.lines)
            .map(|line| materials[line.material].lot / line.used_per_unit())
            .min()
            .unwrap_or(Decimal::ONE);
        let lot = floor_to(lot, kind.places).max(Decimal::ONE);
        Product {
            item: (j + 1) as u32,
            hs: kind.hs.to_owned(),
            name: kind.name.to_owned(),
            spec: variant(kind.spec, j, family.products.len()),
            unit: kind.unit.to_owned(),
            places: kind.places,
            lot,
            registered: lot * lots,
            versions,
        }
    }

    fn bom_line(&mut self, index: usize, material: &Material, run: Decimal) -> BomLine {
        let net = material.lot / run * self.random.permille(300, 1_000);
        // Pieces go into a product whole; other units to the gram or millimetre.
        let net = if material.places == 0 {
            net.round().max(Decimal::ONE)
        } else {
            net.round_dp(3).max(Decimal::new(1, 3))
        };
        let loss_thousandths = self.random.between(0, 80);
        let loss_rate = Decimal::new(loss_thousandths, 3);
        let roll = self.random.between(0, 9);
        let tangible_loss_rate = match roll {
            0..=4 => None,
            5..=7 => Some(Decimal::new(self.random.between(0, loss_thousandths), 3)),
            _ => Some(Decimal::ZERO),
        };
        let bonded_share = self.random.chance(0.2).then(|| {
            self.random
                .pick(BONDED_SHARES)
                .parse()
                .unwrap_or(Decimal::ONE)
        });
        BomLine {
            material: index,
            net,
            loss_rate,
            tangible_loss_rate,
            bonded_share,
        }
    }

    /// A second version of a line: the net a little off, the loss rate too.
    fn revised_line(&mut self, line: &BomLine, material: &Material) -> BomLine {
        let net = if material.places == 0 {
            line.net
        } else {
            (line.net * (Decimal::ONE + Decimal::new(self.random.between(-30, 30), 3)))
                .round_dp(3)
                .max(Decimal::new(1, 3))
        };
        let loss_rate = (line.loss_rate + Decimal::new(self.random.between(-5, 5), 3))
            .clamp(Decimal::ZERO, Decimal::new(95, 3));
        BomLine {
            material: line.material,
            net,
            loss_rate,
            tangible_loss_rate: line.tangible_loss_rate.map(|t| t.min(loss_rate)),
            bonded_share: line.bonded_share,
        }
    }

    fn register(&mut self, index: usize) -> io::Result<()> {
        let valid_until = self.last_date() + Duration::days(VALIDITY_MARGIN_DAYS);
        let book = &self.books[index];
        let body = wire::ManualRegistered {
            trade_mode: book.trade_mode.as_str(),
            enterprise: book.enterprise.clone(),
            processing_enterprise: book.processing_enterprise.clone(),
            customs: book.customs.to_owned(),
            zone: book.zone,
            valid_until,
            materials: book
                .materials
                .iter()
                .map(|m| wire::MaterialSpec {
                    item: m.item,
                    hs: m.hs.clone(),
                    name: m.name.clone(),
                    spec: m.spec.clone(),
                    unit: m.unit.clone(),
                    qty: Qty(m.registered),
                    unit_price: Some(Qty(m.unit_price)),
                    currency: Some(m.currency.clone()),
                    origin: Some(m.origin.clone()),
                })
                .collect(),
            products: book
                .products
                .iter()
                .map(|p| wire::ProductSpec {
                    item: p.item,
                    hs: p.hs.clone(),
                    name: p.name.clone(),
                    spec: p.spec.clone(),
                    unit: p.unit.clone(),
                    qty: Qty(p.registered),
                })
                .collect(),
        };
        self.write(index, "manual_registered", Body::ManualRegistered(body))
            .map(drop)
    }

    fn declare_unit_consumption(&mut self, index: usize) -> io::Result<()> {
        let mut declarations = Vec::new();
        let book = &self.books[index];
        for product in &book.products {
            for version in &product.versions {
                let lines = version
                    .lines
                    .iter()
                    .map(|line| wire::ConsumptionLine {
                        material: book.materials[line.material].item,
                        net: Qty(line.net),
                        loss_rate: Qty(line.loss_rate),
                        tangible_loss_rate: line.tangible_loss_rate.map(Qty),
                        bonded_share: line.bonded_share.map(Qty),
                    })
                    .collect();
                declarations.push(wire::UnitConsumptionDeclared {
                    product: product.item,
                    version: version.name.clone(),
                    lines,
                });
            }
        }
        for declaration in declarations {
            self.write(
                index,
                "unit_consumption_declared",
                Body::UnitConsumptionDeclared(declaration),
            )?;
        }
        Ok(())
    }

    fn report(&mut self, index: usize) -> io::Result<()> {
        let declared_remaining = self.books[index]
            .expected()
            .iter()
            .map(|m| ItemQty {
                item: m.item,
                qty: Qty(m
                    .balance
                    .round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
                    .max(Decimal::ZERO)),
            })
            .collect();
        self.write(
            index,
            "reported",
            Body::Reported(wire::Reported { declared_remaining }),
        )
        .map(drop)
    }

    // ---- writing ----

    fn write(&mut self, index: usize, kind: &'static str, body: Body) -> io::Result<String> {
        let book = &mut self.books[index];
        let id = book.next_id();
        let line = Line {
            id: id.clone(),
            kind,
            manual: book.number.clone(),
            date: self.date,
            body,
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        self.lines += 1;
        Ok(id)
    }

    /// Counts a movement against its manual's budget.
    fn count(&mut self, index: usize) {
        let book = &mut self.books[index];
        book.remaining_movements = book.remaining_movements.saturating_sub(1);
        self.movements += 1;
    }

    /// An 18-digit declaration number (报关单号): customs office, year, serial.
    fn declaration(&mut self, index: usize) -> String {
        self.declarations = (self.declarations + 1) % 1_000_000_000;
        format!(
            "{}{:04}1{:09}",
            self.books[index].customs,
            self.date.year(),
            self.declarations
        )
    }

    /// An approval, plan or batch reference.
    fn reference(&mut self, prefix: &str) -> String {
        self.references += 1;
        format!("{prefix}{}-{:06}", self.date.year(), self.references)
    }

    fn days_before(&mut self, most: i64) -> NaiveDate {
        (self.date - Duration::days(self.random.between(0, most))).max(self.options.start)
    }

    // ---- the movements ----

    fn step(&mut self, index: usize) -> io::Result<()> {
        let book = &self.books[index];
        if book.remaining_movements <= book.outward_jobs.len() as u64 {
            // Goods at contractors all come back before the manual's last movement.
            return self.outward_returned(index).map(drop);
        }
        let roll = (self.random.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let carryover = self.options.carryover_share;
        let done = if book.remaining_movements == book.outward_jobs.len() as u64 + 1 {
            self.closing_export(index)?
        } else if roll < carryover {
            self.carryover(index)?
        } else if roll < carryover + self.options.reversal_share {
            self.reversal(index)?
        } else {
            let kind = self.drawn_kind();
            self.movement(kind, index)?
        };
        if !done {
            // Imports are always possible: the fallback when the drawn
            // movement has nothing to move.
            self.import(index)?;
        }
        Ok(())
    }

    fn drawn_kind(&mut self) -> Kind {
        let mut ticket = self.random.below(self.mix_total);
        for (kind, weight) in &self.options.mix {
            let weight = u64::from(*weight);
            if ticket < weight {
                return *kind;
            }
            ticket -= weight;
        }
        Kind::Import
    }

    fn movement(&mut self, kind: Kind, index: usize) -> io::Result<bool> {
        match kind {
            Kind::Import => self.import(index).map(|()| true),
            Kind::Export => self.export(index),
            Kind::WorkOrder => self.work_order(index),
            Kind::DomesticSale => self.domestic_sale(index),
            Kind::ProductReturn => self.product_return(index),
            Kind::Outward => self.outward(index),
            Kind::Scrap => self.scrap(index),
            Kind::Defective => self.defective(index),
            Kind::MaterialsReturn => self.materials_returned(index),
            Kind::Exchange => self.exchange(index),
            Kind::WriteOff => self.write_off(index),
            Kind::Substitution => self.substitution(index),
            Kind::Remnant => self.remnant(index),
            Kind::Seal => self.seal(index),
        }
    }

    /// A material with something on its balance, or None.
    fn stocked_material(&mut self, index: usize) -> Option<usize> {
        let count = self.books[index].materials.len();
        let material = self.random.index(count);
        (self.books[index].balance(material) > Decimal::ONE).then_some(material)
    }

    /// The version a product movement names: mostly none (the latest).
    fn version_named(&mut self, index: usize, product: usize) -> (usize, Option<String>) {
        let versions = &self.books[index].products[product].versions;
        let latest = versions.len() - 1;
        if latest > 0 && self.random.chance(0.3) {
            (0, Some(versions[0].name.clone()))
        } else if self.random.chance(0.1) {
            (latest, Some(versions[latest].name.clone()))
        } else {
            (latest, None)
        }
    }

    /// How many products to move: about `low`–`high` thousandths of a lot,
    /// within `share` thousandths of what the balances allow.
    fn product_qty(
        &mut self,
        index: usize,
        product: usize,
        version: usize,
        (low, high): (i64, i64),
        share: (i64, i64),
    ) -> Decimal {
        let book = &self.books[index];
        let (lot, places) = (book.products[product].lot, book.products[product].places);
        let capacity = book.capacity(product, version);
        let wanted = lot * self.random.permille(low, high);
        let allowed = capacity * self.random.permille(share.0, share.1);
        floor_to(wanted.min(allowed), places)
    }

    fn import(&mut self, index: usize) -> io::Result<()> {
        let count = self.books[index].materials.len();
        let (first, second) = (self.random.index(count), self.random.index(count));
        let book = &self.books[index];
        let cover = |m: usize| book.balance(m) / book.materials[m].lot;
        // Of two materials drawn, the one with the fewer lots in stock.
        let material = if cover(first) <= cover(second) {
            first
        } else {
            second
        };
        let m = &book.materials[material];
        let qty = floor_to(m.lot * self.random.permille(400, 1_500), m.places).max(Decimal::ONE);
        let value = (qty * m.unit_price).round_dp(2);
        let (item, unit, currency) = (m.item, m.unit.clone(), m.currency.clone());
        if book.imported_total[material] + qty > m.registered {
            let registered = ceil_to((book.imported_total[material] + qty) * Decimal::TWO, 0);
            self.amend(index, "material", item, registered)?;
            self.books[index].materials[material].registered = registered;
        }
        let mode = mode_for(
            &mut self.random,
            "material_imported",
            self.books[index].trade_mode,
            self.books[index].zone,
        );
        let unit = self.random.chance(0.3).then_some(unit);
        let declaration = self.declaration(index);
        let body = wire::MaterialImported {
            material: item,
            qty: Qty(qty),
            unit,
            declaration,
            mode,
            value: Qty(value),
            currency,
        };
        let id = self.write(index, "material_imported", Body::MaterialImported(body))?;
        let changes = vec![Change::Material {
            column: Column::Imported,
            material,
            qty,
        }];
        let date = self.date;
        let book = &mut self.books[index];
        book.apply(&changes, Decimal::ONE);
        book.count_import(date, 1);
        book.remember(Reversible {
            id,
            changes,
            date,
            kind: ReversibleKind::Import { material },
        });
        self.count(index);
        Ok(())
    }

    fn amend(
        &mut self,
        index: usize,
        kind: &'static str,
        item: u32,
        qty: Decimal,
    ) -> io::Result<()> {
        let body = wire::ManualAmended {
            set_quantities: vec![wire::SetQuantity {
                kind,
                item,
                qty: Qty(qty),
            }],
        };
        self.write(index, "manual_amended", Body::ManualAmended(body))
            .map(drop)
    }

    fn export(&mut self, index: usize) -> io::Result<bool> {
        let product = self.random.index(self.books[index].products.len());
        self.export_product(index, product)
    }

    /// A manual's last movement is an export of what it can make most of,
    /// so that its report, due 30 days after its last export, is on time.
    fn closing_export(&mut self, index: usize) -> io::Result<bool> {
        let book = &self.books[index];
        let most = (0..book.products.len()).max_by_key(|p| {
            let product = &book.products[*p];
            book.capacity(*p, product.latest()) / product.lot
        });
        match most {
            Some(product) => self.export_product(index, product),
            None => Ok(false),
        }
    }

    fn export_product(&mut self, index: usize, product: usize) -> io::Result<bool> {
        let (version, named) = self.version_named(index, product);
        let qty = self.product_qty(index, product, version, (300, 1_000), (500, 800));
        let changes = vec![Change::Products {
            product,
            version,
            qty,
        }];
        if qty <= Decimal::ZERO || !self.books[index].fits(&changes, Decimal::ONE) {
            return Ok(false);
        }
        let book = &self.books[index];
        let p = &book.products[product];
        let (item, unit) = (p.item, p.unit.clone());
        if book.exported_total[product] + qty > p.registered {
            let registered = ceil_to((book.exported_total[product] + qty) * Decimal::TWO, 0);
            self.amend(index, "product", item, registered)?;
            self.books[index].products[product].registered = registered;
        }
        let mode = mode_for(
            &mut self.random,
            "product_exported",
            self.books[index].trade_mode,
            self.books[index].zone,
        );
        let unit = self.random.chance(0.2).then_some(unit);
        let declaration = self.declaration(index);
        let body = wire::ProductMoved {
            product: item,
            qty: Qty(qty),
            unit,
            declaration,
            mode,
            uc_version: named,
        };
        let id = self.write(index, "product_exported", Body::ProductMoved(body))?;
        let date = self.date;
        let book = &mut self.books[index];
        book.apply(&changes, Decimal::ONE);
        book.exported_total[product] += qty;
        book.returnable[product] += qty;
        book.remember(Reversible {
            id,
            changes,
            date,
            kind: ReversibleKind::Export { product },
        });
        self.count(index);
        Ok(true)
    }

    /// A deep-processing carry-over (深加工结转) from a manual to the next:
    /// the receiving side declares first (先报进后报出), with the same batch.
    fn carryover(&mut self, index: usize) -> io::Result<bool> {
        let manuals = self.books.len();
        let has_budget = |books: &[Book], i: usize| books[i].has_spare_movement();
        let sender = if index + 1 < manuals && has_budget(&self.books, index + 1) {
            index
        } else if index > 0 && has_budget(&self.books, index - 1) {
            index - 1
        } else {
            return Ok(false);
        };
        let receiver = sender + 1;
        let (version, named) = self.version_named(sender, 0);
        let qty = self.product_qty(sender, 0, version, (300, 1_000), (500, 800));
        let out_changes = vec![Change::Products {
            product: 0,
            version,
            qty,
        }];
        if qty <= Decimal::ZERO || !self.books[sender].fits(&out_changes, Decimal::ONE) {
            return Ok(false);
        }
        let Some(material) = self.books[receiver]
            .materials
            .iter()
            .position(|m| m.carried)
        else {
            return Ok(false);
        };
        let moved_on = self.days_before(3);
        let plan = self.reference("JZ");
        let batch = self.reference("FH");
        let (in_declaration, out_declaration) =
            (self.declaration(receiver), self.declaration(sender));
        let in_mode = mode_for(
            &mut self.random,
            "carryover_in",
            self.books[receiver].trade_mode,
            self.books[receiver].zone,
        );
        let out_mode = mode_for(
            &mut self.random,
            "carryover_out",
            self.books[sender].trade_mode,
            self.books[sender].zone,
        );
        let with_unit = self.random.chance(0.3);
        let (from, to) = (&self.books[sender], &self.books[receiver]);
        let product = &from.products[0];
        let received = wire::CarryoverIn {
            material: to.materials[material].item,
            qty: Qty(qty),
            unit: with_unit.then(|| to.materials[material].unit.clone()),
            declaration: in_declaration,
            mode: in_mode,
            counterparty_manual: from.number.clone(),
            counterparty_enterprise: from.enterprise.clone(),
            received_on: moved_on,
            plan: plan.clone(),
            batch: batch.clone(),
        };
        let shipped = wire::CarryoverOut {
            product: product.item,
            qty: Qty(qty),
            unit: with_unit.then(|| product.unit.clone()),
            declaration: out_declaration,
            mode: out_mode,
            counterparty_manual: to.number.clone(),
            counterparty_enterprise: to.enterprise.clone(),
            hs: product.hs.clone(),
            shipped_on: moved_on,
            plan,
            batch,
            uc_version: named,
        };
        self.write(receiver, "carryover_in", Body::CarryoverIn(received))?;
        self.write(sender, "carryover_out", Body::CarryoverOut(shipped))?;
        let in_changes = [Change::Material {
            column: Column::CarriedIn,
            material,
            qty,
        }];
        self.books[receiver].apply(&in_changes, Decimal::ONE);
        self.books[sender].apply(&out_changes, Decimal::ONE);
        self.count(receiver);
        self.count(sender);
        Ok(true)
    }

    fn reversal(&mut self, index: usize) -> io::Result<bool> {
        let book = &self.books[index];
        if book.reversible.is_empty() {
            return Ok(false);
        }
        let slot = self.random.index(book.reversible.len());
        let candidate = &book.reversible[slot];
        let allowed = match candidate.kind {
            // The first import starts the interest of domestic sales: kept.
            ReversibleKind::Import { .. } => book.first_import() != Some(candidate.date),
            ReversibleKind::Export { product } => candidate.changes.iter().all(|c| match c {
                Change::Products { qty, .. } => book.returnable[product] >= *qty,
                Change::Material { .. } => true,
            }),
            ReversibleKind::Other => true,
        };
        if !allowed || !book.fits(&candidate.changes, -Decimal::ONE) {
            return Ok(false);
        }
        let reason = self.random.choose(REVERSAL_REASONS);
        let event = candidate.id.clone();
        self.write(
            index,
            "reversed",
            Body::Reversed(wire::Reversed { event, reason }),
        )?;
        let book = &mut self.books[index];
        let Some(reversed) = book.reversible.remove(slot) else {
            return Ok(false);
        };
        book.apply(&reversed.changes, -Decimal::ONE);
        match reversed.kind {
            ReversibleKind::Import { .. } => book.count_import(reversed.date, -1),
            ReversibleKind::Export { product } => {
                for change in &reversed.changes {
                    if let Change::Products { qty, .. } = change {
                        book.exported_total[product] -= *qty;
                        book.returnable[product] -= *qty;
                    }
                }
            }
            ReversibleKind::Other => {}
        }
        self.count(index);
        Ok(true)
    }

    fn work_order(&mut self, index: usize) -> io::Result<bool> {
        let product = self.random.index(self.books[index].products.len());
        let p = &self.books[index].products[product];
        let qty = floor_to(p.lot * self.random.permille(200, 800), p.places).max(Decimal::ONE);
        let mut issued = Vec::new();
        for line in &p.versions[p.latest()].lines {
            let material = &self.books[index].materials[line.material];
            let deviation = Decimal::ONE + Decimal::new(self.random.between(-10, 10), 3);
            let smallest = Decimal::new(1, material.places);
            let used = (qty * line.used_per_unit() * deviation)
                .round_dp_with_strategy(material.places, RoundingStrategy::MidpointAwayFromZero)
                .max(smallest);
            issued.push(ItemQty {
                item: material.item,
                qty: Qty(used),
            });
        }
        let item = p.item;
        let order = self.reference("WO");
        let body = wire::WorkOrderCompleted {
            order,
            product: item,
            qty: Qty(qty),
            issued,
        };
        self.write(
            index,
            "work_order_completed",
            Body::WorkOrderCompleted(body),
        )?;
        self.count(index);
        Ok(true)
    }

    fn domestic_sale(&mut self, index: usize) -> io::Result<bool> {
        let mut changes = Vec::new();
        if self.random.chance(0.7) {
            if let Some(material) = self.stocked_material(index) {
                let m = &self.books[index].materials[material];
                let qty = floor_to(
                    self.books[index].balance(material) * self.random.permille(20, 150),
                    m.places,
                );
                if qty > Decimal::ZERO {
                    changes.push(Change::Material {
                        column: Column::MaterialsSoldDomestic,
                        material,
                        qty,
                    });
                }
            }
        }
        if changes.is_empty() || self.random.chance(0.4) {
            let product = self.random.index(self.books[index].products.len());
            let version = self.books[index].products[product].latest();
            let qty = self.product_qty(index, product, version, (20, 200), (20, 150));
            if qty > Decimal::ZERO {
                changes.push(Change::Products {
                    product,
                    version,
                    qty,
                });
            }
        }
        if changes.is_empty() || !self.books[index].fits(&changes, Decimal::ONE) {
            return Ok(false);
        }
        let book = &self.books[index];
        let mut materials = Vec::new();
        let mut products = Vec::new();
        let mut value_usd = Decimal::ZERO;
        for change in &changes {
            match change {
                Change::Material { material, qty, .. } => {
                    let m = &book.materials[*material];
                    materials.push(ItemQty {
                        item: m.item,
                        qty: Qty(*qty),
                    });
                    value_usd += *qty * m.unit_price;
                }
                Change::Products {
                    product,
                    version,
                    qty,
                } => {
                    let p = &book.products[*product];
                    products.push(ItemQty {
                        item: p.item,
                        qty: Qty(*qty),
                    });
                    for line in &p.versions[*version].lines {
                        value_usd += line.bonded(*qty) * book.materials[line.material].unit_price;
                    }
                }
            }
        }
        let value = value_usd * CNY_PER_USD;
        let duty = round_cents(value * DUTY_RATE);
        let vat = round_cents((value + duty) * VAT_RATE);
        // Deferred-duty interest from the first import to the sale (公告2009年第13号).
        let interest = book.first_import().map(|first| {
            let days = Decimal::from((self.date - first).num_days());
            round_cents(
                (duty + vat) * days * INTEREST_RATE_ANNUAL / Decimal::from(INTEREST_YEAR_DAYS),
            )
        });
        let mode = mode_for(
            &mut self.random,
            "domestic_sale",
            book.trade_mode,
            book.zone,
        );
        let approval = self.reference("NX");
        let declaration = self.declaration(index);
        let body = wire::DomesticSale {
            approval,
            declaration,
            mode,
            materials,
            products,
            duty: Qty(duty),
            vat: Qty(vat),
            interest_rate: interest.map(|_| Qty(INTEREST_RATE_ANNUAL)),
            interest: interest.map(Qty),
        };
        let id = self.write(index, "domestic_sale", Body::DomesticSale(body))?;
        self.apply_reversible(index, id, changes);
        Ok(true)
    }

    fn apply_reversible(&mut self, index: usize, id: String, changes: Vec<Change>) {
        let date = self.date;
        let book = &mut self.books[index];
        book.apply(&changes, Decimal::ONE);
        book.remember(Reversible {
            id,
            changes,
            date,
            kind: ReversibleKind::Other,
        });
        self.count(index);
    }

    /// Products coming back (成品退换), or returned ones going out again.
    fn product_return(&mut self, index: usize) -> io::Result<bool> {
        let product = self.random.index(self.books[index].products.len());
        let book = &self.books[index];
        let p = &book.products[product];
        let (item, places, latest) = (p.item, p.places, p.latest());
        let reexport = book.returned_pending[product] > Decimal::ZERO && self.random.chance(0.6);
        let (kind, qty) = if reexport {
            let pending = book.returned_pending[product];
            (
                "product_reexported",
                floor_to(pending * self.random.permille(500, 1_000), places),
            )
        } else {
            let returnable = book.returnable[product];
            (
                "product_returned",
                floor_to(returnable * self.random.permille(5, 40), places),
            )
        };
        let sign = if reexport {
            Decimal::ONE
        } else {
            -Decimal::ONE
        };
        let changes = vec![Change::Products {
            product,
            version: latest,
            qty: qty * sign,
        }];
        if qty <= Decimal::ZERO || !self.books[index].fits(&changes, Decimal::ONE) {
            return Ok(false);
        }
        let mode = mode_for(
            &mut self.random,
            "product_returned",
            self.books[index].trade_mode,
            false,
        );
        let declaration = self.declaration(index);
        let body = wire::ProductMoved {
            product: item,
            qty: Qty(qty),
            unit: None,
            declaration,
            mode,
            uc_version: None,
        };
        self.write(index, kind, Body::ProductMoved(body))?;
        let book = &mut self.books[index];
        book.apply(&changes, Decimal::ONE);
        if reexport {
            book.returned_pending[product] -= qty;
            book.returnable[product] += qty;
        } else {
            book.returned_pending[product] += qty;
            book.returnable[product] -= qty;
        }
        self.count(index);
        Ok(true)
    }

    /// Outward processing (外发加工): materials processed and returned as
    /// they went, materials made into products that come back with the
    /// spare, or products finished and returned as they went.
    fn outward(&mut self, index: usize) -> io::Result<bool> {
        let jobs = self.books[index].outward_jobs.len();
        // A job shipped now must still find a movement to come back in.
        let closing = self.books[index].remaining_movements <= jobs as u64 + 1;
        if closing || jobs == MAX_OUTWARD_JOBS || (jobs > 0 && self.random.chance(0.5)) {
            return self.outward_returned(index);
        }
        let product = self.random.index(self.books[index].products.len());
        let work = self.random.choose(&[
            OutwardWork::Materials,
            OutwardWork::Products,
            OutwardWork::Products,
            OutwardWork::Finishing,
        ]);
        let version = self.books[index].products[product].latest();
        let qty = self.product_qty(index, product, version, (50, 300), (100, 300));
        if qty <= Decimal::ZERO {
            return Ok(false);
        }
        let book = &self.books[index];
        let spare = Decimal::new(102, 2);
        let materials: Vec<(usize, Decimal)> = match work {
            OutwardWork::Finishing => Vec::new(),
            OutwardWork::Materials | OutwardWork::Products => book.products[product].versions
                [version]
                .lines
                .iter()
                .map(|line| {
                    let places = book.materials[line.material].places;
                    (line.material, ceil_to(line.bonded(qty) * spare, places))
                })
                .collect(),
        };
        // Goods at a contractor stay on the balance; never ship more than is there.
        if materials
            .iter()
            .any(|(m, q)| *q + book.at_contractors(*m) >= book.balance(*m))
        {
            return Ok(false);
        }
        let products = match work {
            OutwardWork::Finishing => vec![(product, qty)],
            OutwardWork::Materials | OutwardWork::Products => Vec::new(),
        };
        let contractor = format!(
            "{}99{:04}",
            book.customs,
            (index * 3 + self.random.index(3)) % 10_000
        );
        let approval = self.reference("WF");
        let body = wire::Outward {
            contractor: contractor.clone(),
            approval: Some(approval),
            materials: self.item_list(index, &materials, false),
            products: self.item_list(index, &products, true),
        };
        self.write(index, "outward_shipped", Body::Outward(body))?;
        let book = &mut self.books[index];
        book.ship_outward(&materials, &products);
        book.outward_jobs.push_back(OutwardJob {
            contractor,
            work,
            materials,
            product,
            products: qty,
        });
        self.count(index);
        Ok(true)
    }

    fn outward_returned(&mut self, index: usize) -> io::Result<bool> {
        let Some(job) = self.books[index].outward_jobs.pop_front() else {
            return Ok(false);
        };
        let book = &self.books[index];
        let (materials, products) = match job.work {
            OutwardWork::Materials => (job.materials.clone(), Vec::new()),
            OutwardWork::Finishing => (Vec::new(), vec![(job.product, job.products)]),
            OutwardWork::Products => {
                // The products come back counted at their unit consumption;
                // the spare comes back to six places, whatever is left at
                // the contractor beyond the open jobs (a remainder under
                // half a millionth) with it, so remainders never pile up.
                let p = &book.products[job.product];
                let latest = &p.versions[p.latest()];
                let spare = job
                    .materials
                    .iter()
                    .filter_map(|(material, _)| {
                        let used: Decimal = latest
                            .lines
                            .iter()
                            .filter(|line| line.material == *material)
                            .map(|line| line.bonded(job.products))
                            .sum();
                        let left = book.at_contractors(*material)
                            - used
                            - book.held_by_open_jobs(*material);
                        let back =
                            left.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero);
                        (back > Decimal::ZERO).then_some((*material, back))
                    })
                    .collect();
                (spare, vec![(job.product, job.products)])
            }
        };
        let body = wire::Outward {
            contractor: job.contractor.clone(),
            approval: None,
            materials: self.item_list(index, &materials, false),
            products: self.item_list(index, &products, true),
        };
        self.write(index, "outward_returned", Body::Outward(body))?;
        self.books[index].return_outward(&materials, &products);
        self.count(index);
        Ok(true)
    }

    fn item_list(
        &self,
        index: usize,
        entries: &[(usize, Decimal)],
        products: bool,
    ) -> Vec<ItemQty> {
        let book = &self.books[index];
        entries
            .iter()
            .map(|(i, qty)| ItemQty {
                item: if products {
                    book.products[*i].item
                } else {
                    book.materials[*i].item
                },
                qty: Qty(*qty),
            })
            .collect()
    }

    fn scrap(&mut self, index: usize) -> io::Result<bool> {
        let material = self.random.index(self.books[index].materials.len());
        let book = &self.books[index];
        let m = &book.materials[material];
        let qty = floor_to(
            book.scrap_room(material) * self.random.permille(100, 500),
            m.places,
        );
        if qty <= Decimal::ZERO {
            return Ok(false);
        }
        let item = m.item;
        let (disposal, mode) = scrap_mode(&mut self.random, book.trade_mode);
        let declaration = (disposal != "destroyed").then(|| self.declaration(index));
        let body = wire::ScrapDisposed {
            material: item,
            qty: Qty(qty),
            disposal,
            declaration,
            mode,
        };
        self.write(index, "scrap_disposed", Body::ScrapDisposed(body))?;
        self.books[index].dispose_scrap(material, qty);
        self.count(index);
        Ok(true)
    }

    fn defective(&mut self, index: usize) -> io::Result<bool> {
        let product = self.random.index(self.books[index].products.len());
        let version = self.books[index].products[product].latest();
        let qty = self.product_qty(index, product, version, (5, 30), (50, 200));
        let changes = vec![Change::Products {
            product,
            version,
            qty,
        }];
        if qty <= Decimal::ZERO || !self.books[index].fits(&changes, Decimal::ONE) {
            return Ok(false);
        }
        let disposal = *self
            .random
            .pick(&["destroyed", "domestic_sale", "re_export"]);
        let body = wire::DefectiveDisposed {
            product: self.books[index].products[product].item,
            qty: Qty(qty),
            disposal,
        };
        let id = self.write(index, "defective_disposed", Body::DefectiveDisposed(body))?;
        self.apply_reversible(index, id, changes);
        Ok(true)
    }

    /// A share of one material's balance, as a quantity of it.
    fn share_of_balance(&mut self, index: usize, material: usize, share: (i64, i64)) -> Decimal {
        let book = &self.books[index];
        let places = book.materials[material].places;
        floor_to(
            book.balance(material) * self.random.permille(share.0, share.1),
            places,
        )
    }

    fn materials_returned(&mut self, index: usize) -> io::Result<bool> {
        let Some(material) = self.stocked_material(index) else {
            return Ok(false);
        };
        let qty = self.share_of_balance(index, material, (20, 150));
        if qty <= Decimal::ZERO {
            return Ok(false);
        }
        let book = &self.books[index];
        let mode = mode_for(
            &mut self.random,
            "materials_returned",
            book.trade_mode,
            book.zone,
        );
        let body = wire::MaterialsReturned {
            material: book.materials[material].item,
            qty: Qty(qty),
            declaration: self.declaration(index),
            mode,
        };
        let id = self.write(index, "materials_returned", Body::MaterialsReturned(body))?;
        let changes = vec![Change::Material {
            column: Column::Returned,
            material,
            qty,
        }];
        self.apply_reversible(index, id, changes);
        Ok(true)
    }

    fn exchange(&mut self, index: usize) -> io::Result<bool> {
        let Some(material) = self.stocked_material(index) else {
            return Ok(false);
        };
        let qty_out = self.share_of_balance(index, material, (10, 100));
        if qty_out <= Decimal::ZERO {
            return Ok(false);
        }
        let places = self.books[index].materials[material].places;
        let qty_in = if self.random.chance(0.8) {
            qty_out
        } else {
            floor_to(qty_out * self.random.permille(950, 999), places).max(Decimal::new(1, places))
        };
        let book = &self.books[index];
        let mode = mode_for(
            &mut self.random,
            "materials_exchanged",
            book.trade_mode,
            false,
        );
        let body = wire::MaterialsExchanged {
            material: book.materials[material].item,
            qty_out: Qty(qty_out),
            qty_in: Qty(qty_in),
            declaration: self.declaration(index),
            mode,
        };
        self.write(index, "materials_exchanged", Body::MaterialsExchanged(body))?;
        let changes = [
            Change::Material {
                column: Column::ExchangedOut,
                material,
                qty: qty_out,
            },
            Change::Material {
                column: Column::ExchangedIn,
                material,
                qty: qty_in,
            },
        ];
        self.books[index].apply(&changes, Decimal::ONE);
        self.count(index);
        Ok(true)
    }

    /// Abandoned (放弃), destroyed (销毁) or lost to a disaster (受灾).
    fn write_off(&mut self, index: usize) -> io::Result<bool> {
        let Some(material) = self.stocked_material(index) else {
            return Ok(false);
        };
        let qty = self.share_of_balance(index, material, (5, 40));
        if qty <= Decimal::ZERO {
            return Ok(false);
        }
        let (kind, column, prefix) = self.random.choose(&[
            ("abandoned", Column::Abandoned, "FQ"),
            ("destroyed", Column::Destroyed, "XH"),
            ("disaster_loss", Column::DisasterLoss, "SZ"),
        ]);
        let mode = (kind == "destroyed" && self.random.chance(0.5)).then(|| {
            mode_for(
                &mut self.random,
                "destroyed",
                self.books[index].trade_mode,
                false,
            )
        });
        let body = wire::WrittenOff {
            material: self.books[index].materials[material].item,
            qty: Qty(qty),
            approval: self.reference(prefix),
            mode,
        };
        let id = self.write(index, kind, Body::WrittenOff(body))?;
        let changes = vec![Change::Material {
            column,
            material,
            qty,
        }];
        self.apply_reversible(index, id, changes);
        Ok(true)
    }

    /// Substitution (串换) with the enterprise's own non-bonded goods of the
    /// same kind: purchased processing only (Art. 27).
    fn substitution(&mut self, index: usize) -> io::Result<bool> {
        if self.books[index].trade_mode != TradeMode::Purchased {
            return Ok(false);
        }
        let Some(material) = self.stocked_material(index) else {
            return Ok(false);
        };
        let qty = self.share_of_balance(index, material, (50, 300));
        if qty <= Decimal::ZERO {
            return Ok(false);
        }
        let approval = self.reference("CH");
        let book = &self.books[index];
        let m = &book.materials[material];
        let body = wire::Substituted {
            material: m.item,
            qty: Qty(qty),
            approval,
            counterpart: wire::Counterpart {
                bonded: false,
                enterprise: book.enterprise.clone(),
                hs: m.hs.clone(),
                spec: m.spec.clone(),
                qty: Qty(qty),
            },
        };
        self.write(index, "substituted", Body::Substituted(body))?;
        self.count(index);
        Ok(true)
    }

    /// Remnant carry-over (余料结转) from the first manual of an enterprise to
    /// its second: same enterprises, same trade mode, same material.
    fn remnant(&mut self, index: usize) -> io::Result<bool> {
        let sender = index - index % 2;
        let receiver = sender + 1;
        if receiver >= self.books.len()
            || !self.books[sender].has_spare_movement()
            || !self.books[receiver].has_spare_movement()
        {
            return Ok(false);
        }
        let Some(material) = self.stocked_material(sender) else {
            return Ok(false);
        };
        let (from, to) = (&self.books[sender], &self.books[receiver]);
        let m = &from.materials[material];
        let Some(received) = to.materials.iter().position(|r| !r.carried && r.hs == m.hs) else {
            return Ok(false);
        };
        if m.carried {
            return Ok(false);
        }
        let qty = self.share_of_balance(sender, material, (50, 200));
        if qty <= Decimal::ZERO {
            return Ok(false);
        }
        let approval = self.reference("YL");
        let mode = mode_for(
            &mut self.random,
            "remnant",
            self.books[sender].trade_mode,
            false,
        );
        let (out_declaration, in_declaration) =
            (self.declaration(sender), self.declaration(receiver));
        let (from, to) = (&self.books[sender], &self.books[receiver]);
        let sent = wire::RemnantOut {
            material: from.materials[material].item,
            qty: Qty(qty),
            to_manual: to.number.clone(),
            approval: approval.clone(),
            declaration: out_declaration,
            mode,
        };
        let taken = wire::RemnantIn {
            material: to.materials[received].item,
            qty: Qty(qty),
            from_manual: from.number.clone(),
            approval,
            declaration: in_declaration,
            mode,
        };
        self.write(sender, "remnant_out", Body::RemnantOut(sent))?;
        self.write(receiver, "remnant_in", Body::RemnantIn(taken))?;
        self.books[sender].apply(
            &[Change::Material {
                column: Column::RemnantOut,
                material,
                qty,
            }],
            Decimal::ONE,
        );
        self.books[receiver].apply(
            &[Change::Material {
                column: Column::RemnantIn,
                material: received,
                qty,
            }],
            Decimal::ONE,
        );
        self.count(sender);
        self.count(receiver);
        Ok(true)
    }

    /// Goods sealed by an authority, reported within 5 working days.
    fn seal(&mut self, index: usize) -> io::Result<bool> {
        let sealed_on = self.days_before(2);
        let body = wire::GoodsSealed {
            authority: self.random.choose(AUTHORITIES),
            sealed_on,
        };
        self.write(index, "goods_sealed", Body::GoodsSealed(body))?;
        self.count(index);
        Ok(true)
    }
}

/// An item's specification, told apart when a family's list comes round again.
fn variant(spec: &str, index: usize, family_len: usize) -> String {
    match index / family_len {
        0 => spec.to_owned(),
        round => format!("{spec} 规格{}", round + 1),
    }
}

fn round_cents(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}
