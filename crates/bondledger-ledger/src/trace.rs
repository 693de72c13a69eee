//! Unit-consumption traceability (单耗追溯) from the store: a manual's
//! stream replayed twice, once for what was reversed, once through the
//! domain's tracer.

use bondledger_domain::movement::ItemNo;
use bondledger_domain::trace::{TraceRow, Tracer};
use bondledger_domain::Replay;
use bondledger_store::MAX_PAGE_EVENTS;

use crate::query::{decode, event_reference};
use crate::{AsOf, Ledger, LedgerError};

impl Ledger {
    /// Which receipts of material (imports, carry-overs and remnants in,
    /// exchanges, returned products) the movements of `product` draw on,
    /// first in, first out, in ledger order; rows without an import are
    /// shortfalls, rows without a material are movements no unit
    /// consumption converts. `None`: no such manual. A product the manual
    /// does not list gives no rows.
    #[tracing::instrument(name = "bondledger.ledger.trace", skip(self))]
    pub async fn trace(
        &self,
        manual: &str,
        product: u32,
    ) -> Result<Option<Vec<TraceRow>>, LedgerError> {
        // A movement reversed later must not count before its reversal
        // either, so the reversed ids come from a first, whole replay.
        let Some(replayed) = self.replay(manual, AsOf::Latest).await? else {
            return Ok(None);
        };
        let mut tracer = Tracer::new(&replayed, Some(ItemNo(product)));
        // Lots are opened by the first movements of the stream, so this pass
        // reads it from its start: `replay` may resume from a snapshot and
        // hand its callback only the events after it. It stops at the
        // version the first pass saw; events appended in between are left
        // for the next trace.
        let mut replay = Replay::new();
        let mut next_version = 1;
        'pages: loop {
            let page = self
                .reads
                .read_stream(manual, next_version, MAX_PAGE_EVENTS)
                .await?;
            let Some(last) = page.last() else { break };
            next_version = last.version + 1;
            for stored in &page {
                if stored.version > replayed.version {
                    break 'pages;
                }
                let recorded = decode(stored)?;
                let event = event_reference(stored);
                if let Some(before) = replay.state() {
                    tracer.apply(&before.unit_consumptions, &recorded, &event);
                }
                replay.apply(&recorded, &event);
            }
        }
        Ok(Some(tracer.into_rows()))
    }
}

#[cfg(test)]
mod tests {
    use bondledger_domain::movement::MovementKind;
    use bondledger_domain::Mode;
    use rust_decimal::Decimal;

    use crate::Ledger;

    const HISTORY: &str = r#"{"id":"reg","type":"manual_registered","manual":"C22012600001","date":"2026-01-05","trade_mode":"purchased","enterprise":"3202930001","valid_until":"2026-12-31","materials":[{"item":1,"hs":"3901100000","name":"低密度聚乙烯","spec":"LDPE","unit":"千克","qty":"1000"}],"products":[{"item":1,"hs":"3923210000","name":"聚乙烯袋","spec":"30x40","unit":"千克","qty":"1000"}]}
{"id":"u1","type":"unit_consumption_declared","manual":"C22012600001","date":"2026-01-06","product":1,"version":"1","lines":[{"material":1,"net":"1.9","loss_rate":"0.05"}]}
{"id":"i1","type":"material_imported","manual":"C22012600001","date":"2026-01-10","material":1,"qty":"100","declaration":"220120261000010001","mode":"0615"}
{"id":"i2","type":"material_imported","manual":"C22012600001","date":"2026-02-10","material":1,"qty":"200","declaration":"220120261000020002","mode":"0615"}
{"id":"e1","type":"product_exported","manual":"C22012600001","date":"2026-03-01","product":1,"qty":"20","declaration":"220120261000030001","mode":"0615"}
{"id":"x1","type":"reversed","manual":"C22012600001","date":"2026-03-02","event":"e1","reason":"entered in error"}
{"id":"e2","type":"product_exported","manual":"C22012600001","date":"2026-03-15","product":1,"qty":"70","declaration":"220120261000030002","mode":"0615"}
"#;

    #[tokio::test]
    async fn traces_a_stored_manual_leaving_reversed_movements_out() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let ledger = Ledger::open(&url).await.expect("a ledger");
        ledger
            .import_text("history.jsonl", HISTORY, Mode::Strict, None)
            .await
            .expect("the history imports");

        let rows = ledger
            .trace("C22012600001", 1)
            .await
            .expect("a trace")
            .expect("the manual exists");
        // e1 was reversed; e2's 70 bags take 140: i1's 100, then 40 of i2.
        let drawn: Vec<_> = rows
            .iter()
            .map(|r| (r.export_event.as_str(), r.import_event.as_deref(), r.qty))
            .collect();
        assert_eq!(
            drawn,
            vec![
                ("e2", Some("i1"), Decimal::from(100)),
                ("e2", Some("i2"), Decimal::from(40)),
            ]
        );
        assert!(rows
            .iter()
            .all(|r| r.export_kind == MovementKind::ProductExported
                && r.material_qty == Decimal::from(140)));

        assert!(ledger
            .trace("C22012600099", 1)
            .await
            .expect("a trace")
            .is_none());
    }
}
