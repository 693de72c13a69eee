//! Access tokens of the HTTP API. The store keeps what a token may do and the
//! SHA-256 of its secret, never the secret: a stolen database grants nothing.
//! It does not know what a role allows; it only refuses to hold anything
//! that is not shaped like a hash.
//!
//! The SQL is the same on both backends, written once and instantiated for
//! each, as the read models are.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// A SHA-256 written as lowercase hex.
pub const TOKEN_HASH_HEX_CHARS: usize = 64;
/// The longest label a token may carry.
pub const MAX_TOKEN_LABEL_CHARS: usize = 200;

/// A token to keep: the hash of its secret and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub hash: String,
    /// `recorder`, `auditor` or `admin`.
    pub role: String,
    /// A recorder's enterprise code; `None` for the other roles.
    pub enterprise: Option<String>,
    pub label: Option<String>,
}

/// A token as held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// UUID v7, made by the store.
    pub id: String,
    pub hash: String,
    pub role: String,
    pub enterprise: Option<String>,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it stopped signing anything in; `None` while it still does.
    pub revoked_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Keeps a new token.
    async fn insert_token(&self, token: NewToken) -> Result<TokenRow, StoreError>;

    /// Keeps a new token only if the ledger holds none yet (a ledger's first
    /// admin); `None` when it already held one. Two callers racing on an
    /// empty ledger never both get theirs kept.
    async fn insert_first_token(&self, token: NewToken) -> Result<Option<TokenRow>, StoreError>;

    /// The token whose secret hashes to `hash`.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError>;

    /// Every token held, revoked ones too, oldest first.
    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError>;

    /// Marks a token revoked at `at`, unless it already was (then it keeps
    /// its first revocation); the token as held afterwards, `None` when there
    /// is no such token. The row stays: events name the token that appended them.
    async fn revoke_token(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<TokenRow>, StoreError>;

    /// Every token held, revoked ones too.
    async fn token_count(&self) -> Result<i64, StoreError>;
}

/// Refuses what must never reach the table: anything but a hash where the
/// hash goes (a secret passed by mistake), an over-long label.
pub(crate) fn validate_new_token(token: &NewToken) -> Result<(), StoreError> {
    if !is_token_hash(&token.hash) {
        return Err(StoreError::InvalidInput(format!(
            "a token hash is {TOKEN_HASH_HEX_CHARS} lowercase hex characters"
        )));
    }
    if token
        .label
        .as_ref()
        .is_some_and(|label| label.chars().count() > MAX_TOKEN_LABEL_CHARS)
    {
        return Err(StoreError::InvalidInput(format!(
            "a token label is at most {MAX_TOKEN_LABEL_CHARS} characters"
        )));
    }
    Ok(())
}

pub(crate) fn is_token_hash(text: &str) -> bool {
    text.len() == TOKEN_HASH_HEX_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The columns of a token row, in the order `token_from_row` reads them.
pub(crate) type TokenColumns = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);

/// The columns `TokenColumns` reads, for every query that reads a token.
pub(crate) const TOKEN_COLUMNS: &str = "id, hash, role, enterprise, label, created_at, revoked_at";

pub(crate) fn token_from_row(row: TokenColumns) -> Result<TokenRow, StoreError> {
    let (id, hash, role, enterprise, label, created_at, revoked_at) = row;
    let moment = |column: &str, text: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|moment| moment.with_timezone(&Utc))
            .map_err(|error| {
                StoreError::Integrity(format!("token {id}: unreadable {column}: {error}"))
            })
    };
    let created_at = moment("created_at", &created_at)?;
    let revoked_at = revoked_at
        .map(|text| moment("revoked_at", &text))
        .transpose()?;
    Ok(TokenRow {
        id,
        hash,
        role,
        enterprise,
        label,
        created_at,
        revoked_at,
    })
}

/// Whether text is a token id the store could have made (a UUID); anything
/// else is no token's, and is not looked up.
pub(crate) fn is_token_id(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok()
}

/// A moment as the store keeps it: microseconds.
pub(crate) fn to_micros(moment: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(moment.timestamp_micros()).unwrap_or(moment)
}

/// Implements [`TokenStore`] for a backend; `$write` and `$read` are pools,
/// `$lock` a statement that keeps concurrent first-token inserts apart where
/// the backend needs one (SQLite has one writer and needs none).
macro_rules! impl_token_store {
    ($store:ty, $db:ty, $write:ident, $read:ident, $lock:expr) => {
        #[async_trait::async_trait]
        impl $crate::tokens::TokenStore for $store {
            async fn insert_token(
                &self,
                token: $crate::tokens::NewToken,
            ) -> Result<$crate::tokens::TokenRow, $crate::StoreError> {
                $crate::tokens::validate_new_token(&token)?;
                let mut tx = self.$write.begin().await?;
                let row = insert_token_in(&mut tx, token).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn insert_first_token(
                &self,
                token: $crate::tokens::NewToken,
            ) -> Result<Option<$crate::tokens::TokenRow>, $crate::StoreError> {
                $crate::tokens::validate_new_token(&token)?;
                let mut tx = self.$write.begin().await?;
                let lock: Option<&str> = $lock;
                if let Some(lock) = lock {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                let (held,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM access_tokens")
                    .fetch_one(&mut *tx)
                    .await?;
                if held > 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let row = insert_token_in(&mut tx, token).await?;
                tx.commit().await?;
                Ok(Some(row))
            }

            async fn token_by_hash(
                &self,
                hash: &str,
            ) -> Result<Option<$crate::tokens::TokenRow>, $crate::StoreError> {
                if !$crate::tokens::is_token_hash(hash) {
                    return Ok(None);
                }
                let row: Option<$crate::tokens::TokenColumns> = sqlx::query_as(&format!(
                    "SELECT {} FROM access_tokens WHERE hash = $1",
                    $crate::tokens::TOKEN_COLUMNS
                ))
                .bind(hash)
                .fetch_optional(&self.$read)
                .await?;
                row.map($crate::tokens::token_from_row).transpose()
            }

            async fn list_tokens(
                &self,
            ) -> Result<Vec<$crate::tokens::TokenRow>, $crate::StoreError> {
                let rows: Vec<$crate::tokens::TokenColumns> = sqlx::query_as(&format!(
                    "SELECT {} FROM access_tokens ORDER BY created_at, id",
                    $crate::tokens::TOKEN_COLUMNS
                ))
                .fetch_all(&self.$read)
                .await?;
                rows.into_iter()
                    .map($crate::tokens::token_from_row)
                    .collect()
            }

            async fn revoke_token(
                &self,
                id: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<$crate::tokens::TokenRow>, $crate::StoreError> {
                if !$crate::tokens::is_token_id(id) {
                    return Ok(None);
                }
                let at = $crate::tokens::to_micros(at);
                let mut tx = self.$write.begin().await?;
                sqlx::query(
                    "UPDATE access_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind($crate::chain::format_recorded_at(&at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let row: Option<$crate::tokens::TokenColumns> = sqlx::query_as(&format!(
                    "SELECT {} FROM access_tokens WHERE id = $1",
                    $crate::tokens::TOKEN_COLUMNS
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                row.map($crate::tokens::token_from_row).transpose()
            }

            async fn token_count(&self) -> Result<i64, $crate::StoreError> {
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM access_tokens")
                    .fetch_one(&self.$read)
                    .await?;
                Ok(count)
            }
        }

        async fn insert_token_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            token: $crate::tokens::NewToken,
        ) -> Result<$crate::tokens::TokenRow, $crate::StoreError> {
            let now = chrono::Utc::now();
            let row = $crate::tokens::TokenRow {
                id: uuid::Uuid::now_v7().to_string(),
                hash: token.hash,
                role: token.role,
                enterprise: token.enterprise,
                label: token.label,
                created_at: $crate::tokens::to_micros(now),
                revoked_at: None,
            };
            sqlx::query(
                "INSERT INTO access_tokens (id, hash, role, enterprise, label, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(row.id.clone())
            .bind(row.hash.clone())
            .bind(row.role.clone())
            .bind(row.enterprise.clone())
            .bind(row.label.clone())
            .bind($crate::chain::format_recorded_at(&row.created_at))
            .execute(&mut **tx)
            .await?;
            Ok(row)
        }
    };
}

pub(crate) use impl_token_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_sha256_hex_is_a_hash() {
        let hash = "0123456789abcdef".repeat(4);
        assert!(is_token_hash(&hash));
        assert!(!is_token_hash(&hash.to_uppercase()));
        assert!(!is_token_hash(&hash[1..]));
        assert!(!is_token_hash(&format!("bl_{}", &hash[3..])));
    }

    #[test]
    fn a_secret_passed_for_a_hash_is_refused() {
        let token = NewToken {
            hash: format!("bl_{}", "ab".repeat(32)),
            role: "admin".into(),
            enterprise: None,
            label: None,
        };
        assert!(matches!(
            validate_new_token(&token),
            Err(StoreError::InvalidInput(_))
        ));
    }
}
