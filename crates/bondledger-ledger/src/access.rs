//! Who may do what (interchange §2 `token`, §4): access tokens, of which only
//! a SHA-256 hash is kept; the three roles; and which manuals a token may
//! append to or read. A manual belongs to its operating and its processing
//! enterprise, as its registration (the first event of its stream) names
//! them; no later movement changes either.

use std::collections::HashMap;
use std::fmt;

use bondledger_domain::movement::{EnterpriseCode, Movement};
use bondledger_domain::{Envelope, ManualNo};
use bondledger_store::tokens::{NewToken, TokenRow};
use bondledger_store::StoreError;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::query::decode;
use crate::{Ledger, LedgerError};

/// How a token starts: tells it apart from other secrets in a config file.
pub const TOKEN_PREFIX: &str = "bl_";
/// Random bytes in a token's secret.
const SECRET_BYTES: usize = 32;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Appends to and reads the manuals of its enterprise.
    Recorder,
    /// Reads everything, appends nothing.
    Auditor,
    /// Everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Recorder, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Recorder => "recorder",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a request reads or appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Append,
}

/// The enterprises a manual belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualOwners {
    pub enterprise: String,
    pub processing_enterprise: String,
}

/// Who a request acts as: the token presented, never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub role: Role,
    /// A recorder's enterprise.
    pub enterprise: Option<String>,
}

impl Principal {
    /// Whether this token reads every manual (and the whole ledger's audit).
    pub fn reads_everything(&self) -> bool {
        matches!(self.role, Role::Auditor | Role::Admin)
    }

    pub fn may_append(&self) -> bool {
        matches!(self.role, Role::Recorder | Role::Admin)
    }

    /// Whether this token may read or append to a manual of these owners.
    pub fn allows(&self, access: Access, owners: &ManualOwners) -> bool {
        match (self.role, access) {
            (Role::Admin, _) | (Role::Auditor, Access::Read) => true,
            (Role::Auditor, Access::Append) => false,
            (Role::Recorder, _) => self.enterprise.as_deref().is_some_and(|code| {
                owners.enterprise == code || owners.processing_enterprise == code
            }),
        }
    }

    /// The text kept as the actor of the events this token appends.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }
}

/// A token just made: the only moment its secret exists outside the caller.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// `bl_` and 64 hex digits; shown once, never kept.
    pub secret: String,
    pub principal: Principal,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for IssuedToken {
    // A secret must not reach a log through a debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("secret", &"(not shown)")
            .field("principal", &self.principal)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A token as listed: what it may do and when it was made or revoked;
/// never its secret, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub principal: Principal,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn token_info(row: &TokenRow) -> Result<TokenInfo, LedgerError> {
    Ok(TokenInfo {
        principal: principal_of(row)?,
        label: row.label.clone(),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    })
}

/// Why a token was not made or a request not allowed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The token asked for cannot exist (a recorder without an enterprise...).
    #[error("{0}")]
    InvalidToken(String),
    /// The token does not allow it; `index` is the movement of a batch at fault.
    #[error("{message}")]
    Denied {
        index: Option<usize>,
        message: String,
    },
    #[error("no randomness for a token's secret: {0}")]
    NoRandomness(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<StoreError> for AccessError {
    fn from(error: StoreError) -> Self {
        AccessError::Ledger(LedgerError::Store(error))
    }
}

/// The SHA-256 of a presented token, as the store keeps it.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether text is shaped like a token; anything else is not looked up.
fn looks_like_token(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 2 * SECRET_BYTES
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn new_secret() -> Result<String, AccessError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| AccessError::NoRandomness(error.to_string()))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

fn principal_of(row: &TokenRow) -> Result<Principal, LedgerError> {
    let role = Role::from_name(&row.role).ok_or_else(|| {
        LedgerError::Store(StoreError::Integrity(format!(
            "token {} has an unknown role {:?}",
            row.id, row.role
        )))
    })?;
    Ok(Principal {
        token_id: row.id.clone(),
        role,
        enterprise: row.enterprise.clone(),
    })
}

/// Checks what a new token would be: a recorder names exactly one
/// enterprise, the other roles none.
fn new_token(
    role: Role,
    enterprise: Option<&str>,
    label: Option<&str>,
) -> Result<(String, NewToken), AccessError> {
    let enterprise = match (role, enterprise) {
        (Role::Recorder, Some(code)) => Some(
            EnterpriseCode::try_from(code.to_owned())
                .map_err(AccessError::InvalidToken)?
                .to_string(),
        ),
        (Role::Recorder, None) => {
            return Err(AccessError::InvalidToken(
                "a recorder's token needs the enterprise whose manuals it records".into(),
            ))
        }
        (_, Some(_)) => {
            return Err(AccessError::InvalidToken(format!(
                "an {role}'s token is not bound to an enterprise"
            )))
        }
        (_, None) => None,
    };
    let secret = new_secret()?;
    let token = NewToken {
        hash: token_hash(&secret),
        role: role.as_str().to_owned(),
        enterprise,
        label: label.map(str::to_owned),
    };
    Ok((secret, token))
}

fn issued(secret: String, row: &TokenRow) -> Result<IssuedToken, LedgerError> {
    Ok(IssuedToken {
        secret,
        principal: principal_of(row)?,
        created_at: row.created_at,
    })
}

impl Ledger {
    /// Makes a token; its secret is in the answer and nowhere else.
    #[tracing::instrument(name = "bondledger.ledger.create_token", skip(self))]
    pub async fn create_token(
        &self,
        role: Role,
        enterprise: Option<&str>,
        label: Option<&str>,
    ) -> Result<IssuedToken, AccessError> {
        let (secret, token) = new_token(role, enterprise, label)?;
        let row = self.store.insert_token(token).await?;
        Ok(issued(secret, &row)?)
    }

    /// Makes an admin token if the ledger has no token at all yet, so a new
    /// ledger can be signed in to; `None` when it already had one.
    pub async fn create_first_admin_token(
        &self,
        label: &str,
    ) -> Result<Option<IssuedToken>, AccessError> {
        let (secret, token) = new_token(Role::Admin, None, Some(label))?;
        match self.store.insert_first_token(token).await? {
            Some(row) => Ok(Some(issued(secret, &row)?)),
            None => Ok(None),
        }
    }

    /// Who a presented token is; `None` for anything that is not a token
    /// this ledger made.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Principal>, LedgerError> {
        if !looks_like_token(presented) {
            return Ok(None);
        }
        let hash = token_hash(presented);
        let Some(row) = self.store.token_by_hash(&hash).await? else {
            return Ok(None);
        };
        // The database found the row by its hash; comparing again in
        // constant time keeps timing from telling how much of it matched.
        if !bool::from(row.hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Ok(None);
        }
        if row.revoked_at.is_some() {
            return Ok(None);
        }
        principal_of(&row).map(Some)
    }

    /// Every token made on this ledger, revoked ones too, oldest first;
    /// never a secret or a hash.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, LedgerError> {
        let rows = self.store.list_tokens().await?;
        rows.iter().map(token_info).collect()
    }

    /// Revokes a token: from now on it signs nothing in. Revoking one
    /// already revoked changes nothing; `None` when there is no such token.
    #[tracing::instrument(name = "bondledger.ledger.revoke_token", skip(self))]
    pub async fn revoke_token(&self, id: &str) -> Result<Option<TokenInfo>, LedgerError> {
        let row = self.store.revoke_token(id, Utc::now()).await?;
        row.as_ref().map(token_info).transpose()
    }

    pub async fn token_count(&self) -> Result<i64, LedgerError> {
        Ok(self.store.token_count().await?)
    }

    /// The enterprises a manual belongs to, from its registration; `None`
    /// when there is no such manual.
    pub async fn manual_owners(&self, manual: &str) -> Result<Option<ManualOwners>, LedgerError> {
        if ManualNo::try_from(manual.to_owned()).is_err() {
            return Ok(None);
        }
        let first = self.reads.read_stream(manual, 1, 1).await?;
        let Some(stored) = first.first() else {
            return Ok(None);
        };
        match decode(stored)?.envelope.movement {
            Movement::ManualRegistered(registration) => Ok(Some(owners_of(&registration))),
            _ => Err(LedgerError::Corrupt {
                stream: manual.to_owned(),
                version: stored.version,
                message: "a manual's first event is not its registration".into(),
            }),
        }
    }

    /// Whether `principal` may append every movement of a batch: an
    /// auditor appends nothing; a recorder only to manuals of its
    /// enterprise, registered before or earlier in the same batch. (A
    /// manual's owners never change once it is registered, so what is
    /// checked here still holds when the batch is decided.)
    pub async fn authorize_batch(
        &self,
        principal: &Principal,
        envelopes: &[Envelope],
    ) -> Result<(), AccessError> {
        match principal.role {
            Role::Admin => return Ok(()),
            Role::Auditor => {
                return Err(AccessError::Denied {
                    index: None,
                    message: "an auditor's token reads; it appends nothing".into(),
                })
            }
            Role::Recorder => {}
        }
        let mut owners: HashMap<ManualNo, Option<ManualOwners>> = HashMap::new();
        for (index, envelope) in envelopes.iter().enumerate() {
            if !owners.contains_key(&envelope.manual) {
                let held = self.manual_owners(envelope.manual.as_str()).await?;
                owners.insert(envelope.manual.clone(), held);
            }
            let entry = owners.entry(envelope.manual.clone()).or_default();
            if entry.is_none() {
                if let Movement::ManualRegistered(registration) = &envelope.movement {
                    *entry = Some(owners_of(registration));
                }
            }
            let denied = |message: String| AccessError::Denied {
                index: Some(index),
                message,
            };
            let enterprise = principal.enterprise.as_deref().unwrap_or_default();
            match entry {
                None => {
                    return Err(denied(format!(
                        "manual {} is not registered; a recorder of {enterprise} appends only to its enterprise's manuals",
                        envelope.manual
                    )))
                }
                Some(found) if !principal.allows(Access::Append, found) => {
                    return Err(denied(format!(
                        "manual {} belongs to enterprise {} (processing {}), not to {enterprise}",
                        envelope.manual, found.enterprise, found.processing_enterprise
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

fn owners_of(registration: &bondledger_domain::movement::ManualRegistered) -> ManualOwners {
    let enterprise = registration.enterprise.to_string();
    ManualOwners {
        processing_enterprise: registration
            .processing_enterprise
            .as_ref()
            .map_or_else(|| enterprise.clone(), ToString::to_string),
        enterprise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, enterprise: Option<&str>) -> Principal {
        Principal {
            token_id: "t".into(),
            role,
            enterprise: enterprise.map(str::to_owned),
        }
    }

    fn owners(enterprise: &str, processing: &str) -> ManualOwners {
        ManualOwners {
            enterprise: enterprise.into(),
            processing_enterprise: processing.into(),
        }
    }

    #[test]
    fn a_recorder_touches_manuals_it_operates_or_processes() {
        let recorder = principal(Role::Recorder, Some("3101960042"));
        for access in [Access::Read, Access::Append] {
            assert!(recorder.allows(access, &owners("3101960042", "3101960042")));
            assert!(recorder.allows(access, &owners("4403960001", "3101960042")));
            assert!(!recorder.allows(access, &owners("4403960001", "4403960002")));
        }
    }

    #[test]
    fn an_auditor_reads_everything_and_appends_nothing() {
        let auditor = principal(Role::Auditor, None);
        let other = owners("4403960001", "4403960002");
        assert!(auditor.allows(Access::Read, &other));
        assert!(!auditor.allows(Access::Append, &other));
        assert!(auditor.reads_everything() && !auditor.may_append());
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let (first, kept) = new_token(Role::Admin, None, None).expect("a token");
        let (second, _) = new_token(Role::Admin, None, None).expect("a token");
        assert!(looks_like_token(&first), "{first}");
        assert_ne!(first, second);
        assert_eq!(kept.hash, token_hash(&first));
        assert!(!kept.hash.contains(&first[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn roles_and_enterprises_go_together() {
        assert!(matches!(
            new_token(Role::Recorder, None, None),
            Err(AccessError::InvalidToken(_))
        ));
        assert!(matches!(
            new_token(Role::Recorder, Some("not-a-code"), None),
            Err(AccessError::InvalidToken(_))
        ));
        assert!(matches!(
            new_token(Role::Auditor, Some("3101960042"), None),
            Err(AccessError::InvalidToken(_))
        ));
        let (_, recorder) =
            new_token(Role::Recorder, Some("3101960042"), Some("line 2")).expect("a recorder");
        assert_eq!(recorder.enterprise.as_deref(), Some("3101960042"));
    }

    #[test]
    fn a_debug_print_hides_the_secret() {
        let token = IssuedToken {
            secret: format!("{TOKEN_PREFIX}{}", "ab".repeat(SECRET_BYTES)),
            principal: principal(Role::Admin, None),
            created_at: Utc::now(),
        };
        assert!(!format!("{token:?}").contains(&token.secret));
    }
}
