//! Large appends under the lock write their events and keys with `COPY … FROM
//! STDIN (FORMAT binary)` rather than as arrays unnested in one statement: the
//! server then stores each row as it arrives, with no array to take apart and
//! no common table expression to hold the rows, which was most of what a bulk
//! import cost it beyond the inserts themselves. A timeline commit copies the
//! keys of the blocks it opens the same way (see [`copy_new_timeline_keys`]).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgConnection;

use super::EVENT_COLUMNS;
use crate::event::EventRow;
use crate::readmodel::TimelineKeyRow;
use crate::StoreError;

/// From this many rows, an append under the lock copies its events and keys
/// rather than inserting them from arrays (three round trips instead of one).
pub(super) const COPY_FROM_ROWS: usize = 256;
/// The copy data is sent in pieces of about this many bytes.
const SEND_BYTES: usize = 1 << 20;

const COPY_KEYS: &str =
    "COPY event_keys (event_id, caller_id, position) FROM STDIN (FORMAT binary)";
const COPY_TIMELINE_KEYS: &str =
    "COPY rm_timeline_keys (kind, value, block, positions) FROM STDIN (FORMAT binary)";

/// The start of PostgreSQL's binary copy format: its signature, no flags and
/// no header extension.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// What ends the rows.
const TRAILER: i16 = -1;

/// Copies `rows` into `events`, then their ids into `event_keys`. The events
/// come first: the keys' constraints refuse an id already taken, as the
/// statement form does.
pub(super) async fn copy_rows(
    connection: &mut PgConnection,
    rows: &[EventRow],
) -> Result<(), StoreError> {
    // `encode_event` writes the fields in the order of `EVENT_COLUMNS`.
    let events = format!("COPY events ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)");
    copy(connection, &events, rows, 12, encode_event).await?;
    copy(connection, COPY_KEYS, rows, 3, encode_key).await
}

/// Copies key rows of blocks no earlier commit wrote into (so none of them
/// can be there yet) into `rm_timeline_keys`: the server stores them as they
/// come, without the look-up before each row that an upsert makes.
pub(super) async fn copy_new_timeline_keys(
    connection: &mut PgConnection,
    keys: &[TimelineKeyRow<'_>],
) -> Result<(), StoreError> {
    copy(connection, COPY_TIMELINE_KEYS, keys, 4, encode_timeline_key).await
}

async fn copy<T>(
    connection: &mut PgConnection,
    statement: &str,
    rows: &[T],
    fields: i16,
    encode: fn(&mut CopyRow<'_>, &T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut copy_in = connection.copy_in_raw(statement).await?;
    let mut buffer = Vec::with_capacity(SEND_BYTES + (SEND_BYTES >> 3));
    buffer.extend_from_slice(SIGNATURE);
    buffer.extend_from_slice(&0_i32.to_be_bytes());
    buffer.extend_from_slice(&0_i32.to_be_bytes());
    for row in rows {
        buffer.extend_from_slice(&fields.to_be_bytes());
        let encoded = encode(&mut CopyRow(&mut buffer), row);
        if let Err(error) = encoded {
            copy_in.abort(error.to_string()).await?;
            return Err(error);
        }
        if buffer.len() >= SEND_BYTES {
            copy_in.send(buffer.as_slice()).await?;
            buffer.clear();
        }
    }
    buffer.extend_from_slice(&TRAILER.to_be_bytes());
    copy_in.send(buffer.as_slice()).await?;
    let copied = copy_in.finish().await?;
    if copied != rows.len() as u64 {
        return Err(StoreError::Integrity(format!(
            "{statement}: {copied} rows copied of {}",
            rows.len()
        )));
    }
    Ok(())
}

fn encode_event(out: &mut CopyRow<'_>, row: &EventRow) -> Result<(), StoreError> {
    out.bigint(row.position);
    out.field(row.event_id.as_bytes());
    out.text(row.caller_id.as_deref());
    out.field(row.stream.as_bytes());
    out.bigint(row.version);
    out.field(row.event_type.as_bytes());
    out.field(&row.schema_version.to_be_bytes());
    out.field(row.payload_json.as_bytes());
    out.field(row.metadata_json.as_bytes());
    out.field(&days_since_2000(row.business_date)?.to_be_bytes());
    out.bigint(microseconds_since_2000(row.recorded_at)?);
    out.field(row.hash.as_bytes());
    Ok(())
}

fn encode_key(out: &mut CopyRow<'_>, row: &EventRow) -> Result<(), StoreError> {
    out.field(row.event_id.as_bytes());
    out.text(row.caller_id.as_deref());
    out.bigint(row.position);
    Ok(())
}

fn encode_timeline_key(
    out: &mut CopyRow<'_>,
    (kind, value, block, positions): &TimelineKeyRow<'_>,
) -> Result<(), StoreError> {
    out.field(kind.as_bytes());
    out.field(value.as_bytes());
    out.bigint(*block);
    out.field(positions.as_bytes());
    Ok(())
}

/// The fields of one row, each its length and then its bytes in the type's
/// binary form.
struct CopyRow<'a>(&'a mut Vec<u8>);

impl CopyRow<'_> {
    /// Every field is far below the 1 GB a field can hold: appends bound their
    /// payloads' size before this.
    fn field(&mut self, bytes: &[u8]) {
        self.0
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn bigint(&mut self, value: i64) {
        self.field(&value.to_be_bytes());
    }

    /// NULL is a length of −1 and no bytes.
    fn text(&mut self, text: Option<&str>) {
        match text {
            Some(text) => self.field(text.as_bytes()),
            None => self.0.extend_from_slice(&(-1_i32).to_be_bytes()),
        }
    }
}

/// PostgreSQL's dates and times count from 2000-01-01.
fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or(NaiveDate::MIN)
}

fn days_since_2000(date: NaiveDate) -> Result<i32, StoreError> {
    i32::try_from((date - epoch()).num_days())
        .map_err(|_| StoreError::InvalidInput(format!("business date {date} is out of range")))
}

/// Whole microseconds, as sqlx binds a timestamp (a finer part is dropped).
fn microseconds_since_2000(time: DateTime<Utc>) -> Result<i64, StoreError> {
    let start = epoch().and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    (time - start)
        .num_microseconds()
        .ok_or_else(|| StoreError::InvalidInput(format!("recorded time {time} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_count_from_2000() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN);
        assert_eq!(days_since_2000(day(2000, 1, 1)).ok(), Some(0));
        assert_eq!(days_since_2000(day(1999, 12, 31)).ok(), Some(-1));
        assert_eq!(days_since_2000(day(2026, 12, 3)).ok(), Some(9833));
        let time = DateTime::parse_from_rfc3339("2000-01-02T00:00:01.000002Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(microseconds_since_2000(time).ok(), Some(86_401_000_002));
    }

    #[test]
    fn a_field_is_its_length_then_its_bytes_and_null_is_minus_one() {
        let mut buffer = Vec::new();
        let mut row = CopyRow(&mut buffer);
        row.text(Some("ab"));
        row.text(None);
        row.bigint(258);
        assert_eq!(
            buffer,
            [
                &[0, 0, 0, 2, b'a', b'b'][..],
                &[0xff, 0xff, 0xff, 0xff],
                &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2],
            ]
            .concat()
        );
    }
}
