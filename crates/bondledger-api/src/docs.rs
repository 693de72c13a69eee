//! The OpenAPI document: the paths come from the handlers' annotations, the
//! shapes below describe the answers. Most answers are built as JSON by
//! `bondledger_ledger::json` (the same the CLI prints), so these types are
//! descriptions, never built; the API tests hold every answer to them.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bondledger",
        version = "1",
        description = "The ledger of bonded goods under processing-trade supervision (加工贸易保税监管): \
            movements appended with the rules of `bondledger import`, manuals and the ledger read. \
            Every request under /api/v1 carries `Authorization: Bearer TOKEN` (`bondledger token create`); \
            no or an unknown token is 401, a token whose role or enterprise does not allow the request 403.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "movements", description = "Appending movements, all or nothing"),
        (name = "manuals", description = "One manual: balance, verification, history"),
        (name = "ledger", description = "Across manuals: timeline, deadlines, audit and live updates"),
        (name = "tokens", description = "Access tokens, for an admin's token only"),
        (name = "service", description = "Liveness and this document"),
    ),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of `bondledger token create`: `bl_` and 64 hex digits",
                    ))
                    .build(),
            ),
        );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "service",
    security(()),
    responses((status = 200, description = "The OpenAPI document of this API", body = Object)),
)]
pub async fn openapi_json(State(state): State<AppState>) -> Json<Value> {
    Json(Value::clone(&state.openapi))
}

/// Liveness: the server answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    security(()),
    responses((status = 200, description = "The server is up", body = Health)),
)]
pub async fn healthz() -> Json<Value> {
    Json(serde_json::json!({"status": "ok"}))
}

// The types below are descriptions of answers built elsewhere.
#[allow(dead_code)]
mod shapes {
    use super::*;

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Health {
        /// `ok`.
        status: String,
    }

    /// A line of interchange §1: `type`, `manual`, `date`, `id` and the
    /// movement's own fields.
    #[derive(Serialize, ToSchema)]
    pub struct MovementLine {
        /// The movement, e.g. `material_imported`.
        #[serde(rename = "type")]
        kind: String,
        /// Manual number, 1–32 of A-Z 0-9.
        manual: String,
        /// Business date, YYYY-MM-DD.
        #[schema(format = Date)]
        date: String,
        /// The caller's unique id: a movement whose id is held appends nothing.
        id: Option<String>,
        #[serde(flatten)]
        fields: BTreeMap<String, Value>,
    }

    /// One movement, or an array of them taken all or nothing.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum MovementsRequest {
        One(MovementLine),
        Batch(Vec<MovementLine>),
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AppendedMovement {
        /// The movement's place in the request (0 for a single one).
        index: usize,
        id: Option<String>,
        manual: String,
        /// Its number in its manual's stream; null for an id held twice in one batch.
        version: Option<i64>,
        /// Its place in the whole ledger; null as `version`.
        position: Option<i64>,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AppendedBody {
        appended: Vec<AppendedMovement>,
        /// Movements whose id the ledger already held with the same content.
        already_held: Vec<AppendedMovement>,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ErrorBody {
        /// `unauthorized`, `forbidden`, `not_found`, `malformed`, `id_conflict`,
        /// `too_large`, `method_not_allowed`, `busy`, `timeout` or `internal`.
        error: String,
        message: String,
        /// The field at fault, for a malformed request.
        field: Option<String>,
        /// The movement at fault in a batch.
        index: Option<usize>,
    }

    /// A movement the rules refuse; nothing of its batch was appended.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RefusalBody {
        /// The rule broken, e.g. `balance.insufficient`.
        rule: String,
        message: String,
        /// The movement refused, its place in the request.
        index: usize,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ManualSummary {
        manual: String,
        /// `purchased` (进料加工) or `consigned` (来料加工).
        trade_mode: String,
        /// `manual` (手册) or `account_book` (电子账册).
        book: String,
        zone: bool,
        enterprise: String,
        processing_enterprise: String,
        valid_until: String,
        /// Events in the manual's stream.
        version: i64,
        status: String,
        closed: bool,
        /// Rule findings attached so far.
        findings: i64,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct BalanceMaterial {
        item: u32,
        hs: String,
        name: String,
        unit: String,
        /// The expected remaining, a decimal string.
        balance: String,
        at_contractors: String,
    }

    /// `balance --format json`.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Balance {
        manual: String,
        materials: Vec<BalanceMaterial>,
    }

    /// One material of the report; every quantity a decimal string.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ReportMaterial {
        item: u32,
        hs: String,
        name: String,
        unit: String,
        opening: String,
        imported: String,
        carried_in: String,
        remnant_in: String,
        exchanged_in: String,
        consumed: String,
        materials_sold_domestic: String,
        returned: String,
        exchanged_out: String,
        remnant_out: String,
        abandoned: String,
        destroyed: String,
        disaster_loss: String,
        expected_remaining: String,
        /// Null until reported.
        declared_remaining: Option<String>,
        difference: Option<String>,
        /// `balanced`, `short`, `surplus` or `not_reported`.
        status: String,
        scrap_allowance: String,
        scrap_disposed: String,
        at_contractors: String,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct WorkOrder {
        product: u32,
        material: u32,
        completed: String,
        issued: String,
        actual_unit_consumption: String,
        declared_unit_consumption: Option<String>,
        /// A signed fraction.
        deviation: Option<String>,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Finding {
        rule: String,
        /// `error` or `warning`.
        severity: String,
        material: Option<u32>,
        /// The movement's id, where there is one.
        event: Option<String>,
        message: String,
    }

    /// The verification report of interchange §3 (`verify --format json`).
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct VerificationReport {
        manual: String,
        trade_mode: String,
        reported: bool,
        status: String,
        materials: Vec<ReportMaterial>,
        work_orders: Vec<WorkOrder>,
        findings: Vec<Finding>,
    }

    /// An event as `timeline --format json` prints it: its place in the
    /// ledger and the movement's own fields.
    #[derive(Serialize, ToSchema)]
    pub struct TimelineEvent {
        manual: String,
        /// Its number in its manual's stream, from 1.
        version: i64,
        /// Its place in the whole ledger.
        position: i64,
        #[serde(rename = "type")]
        kind: String,
        #[schema(format = Date)]
        date: String,
        #[schema(format = DateTime)]
        recorded_at: String,
        id: Option<String>,
        event_id: String,
        /// SHA-256 chaining the event to the previous one of its stream.
        hash: String,
        #[serde(flatten)]
        fields: BTreeMap<String, Value>,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ItemBalance {
        item: u32,
        balance: String,
    }

    /// An event as `history --format json` prints it, with the balances after it.
    #[derive(Serialize, ToSchema)]
    pub struct HistoryEvent {
        manual: String,
        version: i64,
        position: i64,
        #[serde(rename = "type")]
        kind: String,
        #[schema(format = Date)]
        date: String,
        #[schema(format = DateTime)]
        recorded_at: String,
        id: Option<String>,
        event_id: String,
        hash: String,
        balances: Vec<ItemBalance>,
        #[serde(flatten)]
        fields: BTreeMap<String, Value>,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AuditBreak {
        /// `chain` (the hash chain of a stream) or `projection` (a read model).
        kind: String,
        manual: String,
        version: Option<i64>,
        /// The read model, for a projection break.
        projection: Option<String>,
        what: String,
    }

    /// Something due: a report, a manual's expiry, or the receipt of goods
    /// carried over.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct DeadlineBody {
        #[schema(format = Date)]
        due: String,
        /// Days from the server's date to `due`; negative when overdue.
        days_remaining: i64,
        overdue: bool,
        manual: String,
        enterprise: String,
        /// `report`, `expiry` or `carryover_receipt`.
        kind: String,
        event: Option<String>,
        detail: String,
    }

    /// An access token as listed: never its secret or its hash.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct TokenBody {
        id: String,
        /// `recorder`, `auditor` or `admin`.
        role: String,
        /// A recorder's enterprise.
        enterprise: Option<String>,
        label: Option<String>,
        #[schema(format = DateTime)]
        created_at: String,
        /// When it was revoked; a revoked token signs nothing in.
        #[schema(format = DateTime)]
        revoked_at: Option<String>,
    }

    /// A token just made, with its secret: shown this once, only its hash is kept.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct IssuedTokenBody {
        /// The secret to send as `Authorization: Bearer TOKEN`.
        token: String,
        id: String,
        role: String,
        enterprise: Option<String>,
        #[schema(format = DateTime)]
        created_at: String,
    }

    /// The ledger's head position, as the live updates announce it.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct HeadBody {
        position: i64,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AuditBody {
        intact: bool,
        breaks: Vec<AuditBreak>,
    }
}

pub use shapes::*;
