//! Database URLs, as the interchange specification (§2) writes them.

use std::path::PathBuf;

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// An SQLite file, created when missing.
    SqliteFile(PathBuf),
    /// A PostgreSQL URL, passed to the driver as given.
    Postgres(String),
}

/// `sqlite://relative/path`, `sqlite:///abs/path` (and sqlx's `sqlite:path`);
/// `postgres://…` or `postgresql://…`.
pub(crate) fn parse_database_url(url: &str) -> Result<Location, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Location::Postgres(url.to_owned()));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(StoreError::InvalidUrl(format!(
            "{url:?}: expected sqlite://PATH, postgres://… or postgresql://…"
        )));
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() {
        return Err(StoreError::InvalidUrl(format!(
            "{url:?}: the SQLite file path is empty"
        )));
    }
    if path.starts_with(":memory:") || path.contains("mode=memory") {
        return Err(StoreError::InvalidUrl(format!(
            "{url:?}: an in-memory database cannot hold a ledger; give a file path"
        )));
    }
    if path.contains('?') {
        return Err(StoreError::InvalidUrl(format!(
            "{url:?}: SQLite URLs take no parameters; the store sets its own"
        )));
    }
    Ok(Location::SqliteFile(PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_relative_or_absolute() {
        let relative = parse_database_url("sqlite://data/ledger.db").expect("valid");
        assert_eq!(
            relative,
            Location::SqliteFile(PathBuf::from("data/ledger.db"))
        );
        let absolute = parse_database_url("sqlite:///var/lib/ledger.db").expect("valid");
        assert_eq!(
            absolute,
            Location::SqliteFile(PathBuf::from("/var/lib/ledger.db"))
        );
        let bare = parse_database_url("sqlite:bondledger.db").expect("valid");
        assert_eq!(bare, Location::SqliteFile(PathBuf::from("bondledger.db")));
    }

    #[test]
    fn both_postgres_schemes_are_accepted() {
        for url in ["postgres://u@h/db", "postgresql://u@h/db?sslmode=disable"] {
            assert_eq!(
                parse_database_url(url).expect("valid"),
                Location::Postgres(url.to_owned())
            );
        }
    }

    #[test]
    fn other_urls_are_refused() {
        for url in [
            "",
            "mysql://h/db",
            "sqlite://",
            "sqlite::memory:",
            "sqlite://x.db?mode=ro",
            "ledger.db",
        ] {
            assert!(
                matches!(parse_database_url(url), Err(StoreError::InvalidUrl(_))),
                "{url}"
            );
        }
    }
}
