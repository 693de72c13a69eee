//! The JSON shapes of interchange §2 that the CLI prints and the API answers
//! with, built in one place so the two never drift apart.

use std::collections::BTreeMap;

use bondledger_domain::format6;
use bondledger_domain::movement::ItemNo;
use bondledger_store::readmodel::ManualRow;
use bondledger_store::StoredEvent;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::{Balances, Deadline, HistoryEntry, IssuedToken, TokenInfo};

/// `balance --format json`: every material's balance (its expected
/// remaining) and what is at contractors.
pub fn balance_json(balances: &Balances) -> Value {
    let figures = balances.figures();
    let materials: Vec<Value> = balances
        .materials()
        .map(|m| {
            let f = figures.get(&m.item);
            json!({
                "item": m.item.0, "hs": m.hs.as_str(), "name": m.name, "unit": m.unit,
                "balance": format6(f.map_or(Decimal::ZERO, |f| f.expected_remaining)),
                "at_contractors": format6(f.map_or(Decimal::ZERO, |f| f.at_contractors)),
            })
        })
        .collect();
    json!({"manual": balances.manual().as_str(), "materials": materials})
}

/// The JSON object of one event (`history` and `timeline`): its place in
/// the ledger and the movement's own fields.
pub fn event_json(stored: &StoredEvent) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("manual".into(), Value::from(stored.stream.as_str()));
    object.insert("version".into(), Value::from(stored.version));
    object.insert("position".into(), Value::from(stored.position));
    object.insert("type".into(), Value::from(stored.event_type.as_str()));
    object.insert(
        "date".into(),
        Value::from(bondledger_store::chain::format_business_date(
            &stored.business_date,
        )),
    );
    object.insert(
        "recorded_at".into(),
        Value::from(
            stored
                .recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ),
    );
    object.insert(
        "id".into(),
        stored.caller_id.clone().map_or(Value::Null, Value::from),
    );
    object.insert("event_id".into(), Value::from(stored.event_id.to_string()));
    object.insert("hash".into(), Value::from(stored.hash.as_str()));
    if let Some(Value::Object(fields)) = stored.payload.get("movement") {
        for (key, value) in fields {
            object.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    if let Some(findings) = stored.payload.get("findings") {
        object.insert("findings".into(), findings.clone());
    }
    object
}

/// The balance of every material after an event, as `history` adds it.
pub fn balances_json(balances: &BTreeMap<ItemNo, Decimal>) -> Value {
    Value::Array(
        balances
            .iter()
            .map(|(item, balance)| json!({"item": item.0, "balance": format6(*balance)}))
            .collect(),
    )
}

/// One element of `history --format json`.
pub fn history_entry_json(entry: &HistoryEntry) -> Value {
    let mut object = event_json(&entry.stored);
    object.insert("balances".into(), balances_json(&entry.balances));
    Value::Object(object)
}

/// A manual as the list of manuals shows it: trade mode, enterprises,
/// validity and status, from the manuals read model.
pub fn manual_json(row: &ManualRow) -> Value {
    json!({
        "manual": row.manual,
        "trade_mode": row.trade_mode,
        "book": row.book,
        "zone": row.zone,
        "enterprise": row.enterprise,
        "processing_enterprise": row.processing_enterprise,
        "valid_until": row.valid_until,
        "version": row.version,
        "status": row.status,
        "closed": row.closed,
        "findings": row.findings,
    })
}

/// A moment as every JSON answer writes it: RFC 3339, microseconds, `Z`.
fn moment_json(moment: &chrono::DateTime<chrono::Utc>) -> Value {
    Value::from(moment.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// `token list --format json` and `GET /api/v1/tokens`: a token without
/// its secret or hash.
pub fn token_json(token: &TokenInfo) -> Value {
    json!({
        "id": token.principal.token_id,
        "role": token.principal.role.as_str(),
        "enterprise": token.principal.enterprise,
        "label": token.label,
        "created_at": moment_json(&token.created_at),
        "revoked_at": token.revoked_at.as_ref().map(moment_json),
    })
}

/// `token create --format json` and `POST /api/v1/tokens`: the new token
/// with its secret, shown this once.
pub fn issued_token_json(issued: &IssuedToken) -> Value {
    json!({
        "token": issued.secret,
        "id": issued.principal.token_id,
        "role": issued.principal.role.as_str(),
        "enterprise": issued.principal.enterprise,
        "created_at": moment_json(&issued.created_at),
    })
}

/// `deadlines --format json` and `GET /api/v1/deadlines`: one deadline.
pub fn deadline_json(deadline: &Deadline) -> Value {
    json!({
        "due": deadline.due.to_string(),
        "days_remaining": deadline.days_remaining,
        "overdue": deadline.days_remaining < 0,
        "manual": deadline.manual,
        "enterprise": deadline.enterprise,
        "kind": deadline.kind,
        "event": deadline.event,
        "detail": deadline.detail,
    })
}
