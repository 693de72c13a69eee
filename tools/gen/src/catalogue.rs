//! What the generated enterprises process: families of materials (料件) and
//! the products (成品) made from them, with real HS codes, customs units and
//! typical lot sizes. A manual takes its items from one family.

/// A material as a family knows it.
pub struct MaterialKind {
    pub hs: &'static str,
    pub name: &'static str,
    pub spec: &'static str,
    pub unit: &'static str,
    /// Decimal places a quantity of it is written with (0: counted pieces).
    pub places: u32,
    /// A typical import lot, in its unit.
    pub lot: i64,
    /// Unit price in `currency`, a decimal string.
    pub unit_price: &'static str,
    pub currency: &'static str,
    pub origin: &'static str,
}

/// A product as a family knows it.
pub struct ProductKind {
    pub hs: &'static str,
    pub name: &'static str,
    pub spec: &'static str,
    pub unit: &'static str,
    pub places: u32,
}

pub struct Family {
    pub materials: &'static [MaterialKind],
    pub products: &'static [ProductKind],
}

// A table row reads best as one call with every column.
#[allow(clippy::too_many_arguments)]
const fn material(
    hs: &'static str,
    name: &'static str,
    spec: &'static str,
    unit: &'static str,
    places: u32,
    lot: i64,
    unit_price: &'static str,
    origin: &'static str,
) -> MaterialKind {
    MaterialKind {
        hs,
        name,
        spec,
        unit,
        places,
        lot,
        unit_price,
        currency: "USD",
        origin,
    }
}

const fn product(
    hs: &'static str,
    name: &'static str,
    spec: &'static str,
    unit: &'static str,
    places: u32,
) -> ProductKind {
    ProductKind {
        hs,
        name,
        spec,
        unit,
        places,
    }
}

pub const FAMILIES: &[Family] = &[
    // plastic packaging
    Family {
        materials: &[
            material(
                "3901100000",
                "低密度聚乙烯",
                "LDPE 2426H",
                "千克",
                2,
                20_000,
                "1.32",
                "KR",
            ),
            material(
                "3206499000",
                "色母粒",
                "白色 W-70",
                "千克",
                2,
                1_000,
                "2.10",
                "JP",
            ),
            material(
                "3215110000",
                "印刷油墨",
                "凹印 黑",
                "千克",
                3,
                400,
                "4.80",
                "DE",
            ),
            material(
                "3506919000",
                "复合胶粘剂",
                "聚氨酯 双组分",
                "千克",
                2,
                800,
                "3.60",
                "US",
            ),
            material(
                "3920201090",
                "聚丙烯薄膜",
                "BOPP 20μm",
                "千克",
                2,
                6_000,
                "1.75",
                "TH",
            ),
        ],
        products: &[
            product("3923210000", "印刷聚乙烯袋", "30x40cm", "千克", 2),
            product("3920109090", "聚乙烯薄膜卷", "50μm", "千克", 2),
            product("3923290000", "复合包装袋", "自立袋 500ml", "千克", 2),
        ],
    },
    // consumer electronics
    Family {
        materials: &[
            material(
                "8542319000",
                "集成电路",
                "MCU 32位",
                "个",
                0,
                50_000,
                "0.85",
                "TW",
            ),
            material(
                "8532241000",
                "多层瓷介电容器",
                "0603 100nF",
                "个",
                0,
                400_000,
                "0.004",
                "JP",
            ),
            material(
                "8534009000",
                "印刷电路板",
                "4层 FR-4",
                "块",
                0,
                20_000,
                "0.62",
                "KR",
            ),
            material(
                "7408110000",
                "精炼铜线",
                "Φ0.5mm",
                "千克",
                3,
                2_000,
                "9.10",
                "CL",
            ),
            material(
                "3926909090",
                "塑料外壳",
                "PC+ABS 黑",
                "个",
                0,
                30_000,
                "0.18",
                "VN",
            ),
            material(
                "8536690000",
                "连接器",
                "USB-C 24针",
                "个",
                0,
                60_000,
                "0.07",
                "TW",
            ),
        ],
        products: &[
            product("8504401400", "电源适配器", "65W USB-C", "个", 0),
            product("8518300000", "蓝牙耳机", "TWS 入耳式", "个", 0),
            product("8507600090", "移动电源", "10000mAh", "个", 0),
        ],
    },
    // garments
    Family {
        materials: &[
            material(
                "6006220000",
                "棉针织布",
                "180g/m² 染色",
                "米",
                1,
                40_000,
                "2.40",
                "PK",
            ),
            material(
                "9606220000",
                "金属纽扣",
                "17mm",
                "个",
                0,
                200_000,
                "0.02",
                "IT",
            ),
            material(
                "5806200000",
                "弹性织带",
                "25mm",
                "米",
                1,
                30_000,
                "0.11",
                "KR",
            ),
            material(
                "5401101000",
                "涤纶缝纫线",
                "40S/2",
                "千克",
                2,
                600,
                "6.20",
                "TW",
            ),
            material(
                "9607190000",
                "拉链",
                "5号 尼龙",
                "条",
                0,
                50_000,
                "0.09",
                "JP",
            ),
        ],
        products: &[
            product("6104620000", "女式针织长裤", "M", "条", 0),
            product("6110200090", "针织开衫", "L", "件", 0),
            product("6109100021", "针织T恤", "XL", "件", 0),
        ],
    },
    // toys
    Family {
        materials: &[
            material(
                "3903200000",
                "ABS塑料粒子",
                "通用级 750A",
                "千克",
                2,
                18_000,
                "1.65",
                "KR",
            ),
            material(
                "8501109990",
                "微型电机",
                "130型 3V",
                "个",
                0,
                50_000,
                "0.31",
                "CN",
            ),
            material(
                "8507800090",
                "锂电池",
                "3.7V 500mAh",
                "个",
                0,
                20_000,
                "0.95",
                "KR",
            ),
            material(
                "8526920090",
                "遥控模块",
                "2.4GHz",
                "个",
                0,
                20_000,
                "0.74",
                "TW",
            ),
            material(
                "3208100090",
                "水性油漆",
                "亮红",
                "千克",
                2,
                500,
                "5.40",
                "DE",
            ),
        ],
        products: &[
            product("9503008900", "遥控玩具车", "1:24", "个", 0),
            product("9503002100", "电动玩具", "小车", "个", 0),
        ],
    },
    // metal goods
    Family {
        materials: &[
            material(
                "7208510000",
                "热轧钢板",
                "Q235B 12mm",
                "千克",
                1,
                60_000,
                "0.62",
                "JP",
            ),
            material(
                "7209170000",
                "冷轧钢卷",
                "SPCC 0.8mm",
                "千克",
                1,
                40_000,
                "0.71",
                "KR",
            ),
            material(
                "7304411000",
                "不锈钢无缝管",
                "304 Φ25",
                "千克",
                2,
                8_000,
                "3.90",
                "SE",
            ),
            material(
                "7318158090",
                "螺栓",
                "M8x30 8.8级",
                "个",
                0,
                300_000,
                "0.03",
                "TW",
            ),
            material(
                "8311100000",
                "焊条",
                "E4303 Φ3.2",
                "千克",
                2,
                2_000,
                "1.20",
                "DE",
            ),
        ],
        products: &[
            product("9403200000", "钢制货架", "2000x900x400", "件", 0),
            product("7326909000", "钢制支架", "L型 镀锌", "千克", 1),
            product("7308900000", "钢结构件", "H型 焊接", "千克", 1),
        ],
    },
];

/// Every HS code a generated history may name, materials and products.
pub fn hs_codes() -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = FAMILIES
        .iter()
        .flat_map(|f| {
            let materials = f.materials.iter().map(|m| m.hs);
            materials.chain(f.products.iter().map(|p| p.hs))
        })
        .collect();
    codes.sort_unstable();
    codes.dedup();
    codes
}

/// Customs offices (关区) the manuals are registered at.
pub const CUSTOMS_OFFICES: &[&str] = &["2201", "2233", "3502", "4406", "5316", "0202"];

/// Courts and authorities that seal goods (封存).
pub const AUTHORITIES: &[&str] = &[
    "南京市中级人民法院",
    "厦门市思明区人民法院",
    "东莞市公安局",
    "苏州工业园区市场监督管理局",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_has_a_ten_digit_hs_code_and_a_lot() {
        for family in FAMILIES {
            assert!(!family.materials.is_empty() && !family.products.is_empty());
            for m in family.materials {
                assert!(m.hs.len() == 10 && m.hs.bytes().all(|b| b.is_ascii_digit()));
                assert!(m.lot > 0, "{}", m.name);
                assert!(m.unit_price.parse::<rust_decimal::Decimal>().is_ok());
            }
            for p in family.products {
                assert!(p.hs.len() == 10 && p.hs.bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
