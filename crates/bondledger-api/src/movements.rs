//! `POST /api/v1/movements`: one movement or a batch, all or nothing, with
//! the rules, refusals and idempotency of `import`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bondledger_domain::{parse_line, Envelope, Mode};
use bondledger_ledger::{AppendedMovement, ImportOutcome, Ledger, MAX_LINE_BYTES};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::docs::{AppendedBody, ErrorBody, MovementsRequest, RefusalBody};
use crate::error::ApiError;
use crate::{AppState, MAX_BATCH_MOVEMENTS};

/// Appends one movement (an object) or a batch (an array of them).
#[utoipa::path(
    post,
    path = "/api/v1/movements",
    tag = "movements",
    request_body(
        content = MovementsRequest,
        description = "One movement (a line of interchange §1) or an array of them, taken all or nothing",
    ),
    responses(
        (status = 201, description = "Appended; movements already held are listed apart", body = AppendedBody),
        (status = 200, description = "Every movement was already held: nothing appended", body = AppendedBody),
        (status = 400, description = "Malformed: the field and the movement's index are named", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "The token may not append these movements", body = ErrorBody),
        (status = 413, description = "The body or the batch is too large", body = ErrorBody),
        (status = 422, description = "A movement was refused by a rule; nothing of the batch was appended", body = RefusalBody),
        (status = 503, description = "The ledger is busy; try again", body = ErrorBody),
    ),
)]
pub async fn append_movements(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let principal = caller.principal;
    if !principal.may_append() {
        return Err(ApiError::forbidden(format!(
            "a token of role {} appends nothing",
            principal.role
        )));
    }
    let envelopes = parse_batch(&body?)?;
    let ledger = state.ledger.clone();
    // The append runs on a task of its own, tracked by the server: a client
    // that goes away, a timeout or a shutdown does not cut it short.
    let token_id = principal.token_id.clone();
    let (outcome, written_at) = state
        .appends
        .spawn(async move {
            ledger.authorize_batch(&principal, &envelopes).await?;
            let outcome = ledger
                .import_envelopes(
                    &envelopes,
                    Mode::Strict,
                    Some(&principal.actor()),
                    "request",
                )
                .await?;
            refresh_read_models(&ledger).await;
            // Where the primary's log stands now holds this append and the
            // read models it moved: a read by this token waits for it.
            let written_at = match ledger.has_replica() {
                true => ledger.write_mark().await.unwrap_or_else(|error| {
                    tracing::warn!(%error, "the primary's log position could not be read");
                    None
                }),
                false => None,
            };
            Ok::<_, ApiError>((outcome, written_at))
        })
        .await
        .map_err(|error| {
            tracing::error!(%error, "the append task failed");
            ApiError::Internal(
                "the append stopped before answering; its ids make a retry harmless".into(),
            )
        })??;
    let status = if outcome.appended.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = (status, Json(outcome_json(&outcome))).into_response();
    if let Some(mark) = written_at {
        state.writes.record(&token_id, mark);
        if let Ok(value) = HeaderValue::from_str(&mark.to_string()) {
            response
                .headers_mut()
                .insert(crate::replica::WRITTEN_AT, value);
        }
    }
    Ok(response)
}

/// The read models follow the log; one that lags is caught up by the next
/// query, so a failure here does not undo the answer.
async fn refresh_read_models(ledger: &Ledger) {
    if let Err(error) = ledger.catch_up(&mut |_, _, _| {}).await {
        tracing::warn!(%error, "read models not caught up after an append");
    }
}

/// Reads a body as one movement or an array of them (at most
/// [`MAX_BATCH_MOVEMENTS`]), each as a line of a movement file: the same
/// checks, the same limits; the first at fault named by index and field.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Envelope>, ApiError> {
    let not_json =
        |error: serde_json::Error| ApiError::malformed(None, format!("not JSON: {error}"));
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let raw: Vec<&RawValue> = match first {
        Some(b'[') => serde_json::from_slice(body).map_err(not_json)?,
        Some(b'{') => vec![serde_json::from_slice(body).map_err(not_json)?],
        _ => {
            return Err(ApiError::malformed(
                None,
                "the body is one movement (a JSON object) or an array of them",
            ))
        }
    };
    if raw.len() > MAX_BATCH_MOVEMENTS {
        return Err(ApiError::TooLarge(format!(
            "a batch holds at most {MAX_BATCH_MOVEMENTS} movements, not {}",
            raw.len()
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, text)| parse_movement(index, text))
        .collect()
}

fn parse_movement(index: usize, raw: &RawValue) -> Result<Envelope, ApiError> {
    let malformed = |field: Option<String>, message: String| ApiError::Malformed {
        message,
        field,
        index: Some(index),
    };
    if raw.get().len() > MAX_LINE_BYTES {
        return Err(malformed(
            None,
            format!("a movement is at most {MAX_LINE_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|error| malformed(None, format!("not JSON: {error}")))?;
    parse_line(value).map_err(|m| malformed(m.field.clone(), m.to_string()))
}

fn outcome_json(outcome: &ImportOutcome) -> Value {
    let listed = |movements: &[AppendedMovement]| -> Vec<Value> {
        movements
            .iter()
            .map(|m| {
                // A movement held twice in one batch has no place of its own.
                let known = |n: i64| (n > 0).then_some(n);
                json!({
                    "index": m.line,
                    "id": m.id,
                    "manual": m.manual,
                    "version": known(m.version),
                    "position": known(m.position),
                })
            })
            .collect()
    };
    json!({
        "appended": listed(&outcome.appended),
        "already_held": listed(&outcome.already_held),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movement(id: &str) -> Value {
        json!({"id": id, "type": "material_imported", "manual": "C31012600042", "date": "2026-02-10",
            "material": 1, "qty": "10", "declaration": "310120261000010001", "mode": "0615"})
    }

    #[test]
    fn one_movement_or_an_array_of_them() {
        let one = serde_json::to_vec(&movement("a")).expect("json");
        assert_eq!(parse_batch(&one).expect("one").len(), 1);
        let many = serde_json::to_vec(&json!([movement("a"), movement("b")])).expect("json");
        let parsed = parse_batch(&many).expect("two");
        assert_eq!(parsed[1].id.as_deref(), Some("b"));
        assert!(parse_batch(b"[]").expect("none").is_empty());
    }

    #[test]
    fn a_malformed_movement_names_its_field_and_index() {
        let mut bad = movement("b");
        bad["qty"] = json!(10);
        let body = serde_json::to_vec(&json!([movement("a"), bad])).expect("json");
        match parse_batch(&body) {
            Err(ApiError::Malformed { field, index, .. }) => {
                assert_eq!(field.as_deref(), Some("qty"));
                assert_eq!(index, Some(1));
            }
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn what_is_not_a_movement_is_malformed() {
        for body in [&b"42"[..], b"\"text\"", b"", b"{\"type\":", b"[1]"] {
            assert!(
                matches!(parse_batch(body), Err(ApiError::Malformed { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_batch_over_its_limit_is_too_large() {
        let body = format!("[{}]", vec!["{}"; MAX_BATCH_MOVEMENTS + 1].join(","));
        assert!(matches!(
            parse_batch(body.as_bytes()),
            Err(ApiError::TooLarge(_))
        ));
    }
}
